//! `/api/memberships`: invitations, roles, disabling.
