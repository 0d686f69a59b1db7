//! Members of an organization: invitations, roles, disabling.
