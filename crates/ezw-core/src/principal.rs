//! Who is calling: every service call takes a [`Principal`].

use crate::ids::{LineId, LineTokenId, OrganizationId, SessionId, UserId};
use crate::model::Role;

/// A workspace user acting in one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPrincipal {
    /// User.
    pub user_id: UserId,
    /// Organization.
    pub organization_id: OrganizationId,
    /// Role in that organization (read fresh on every authentication).
    pub role: Role,
    /// Login session, when authenticated by an ID token.
    pub session_id: Option<SessionId>,
}

/// A machine client holding a line API token: reaches exactly one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinePrincipal {
    /// Organization.
    pub organization_id: OrganizationId,
    /// The one line.
    pub line_id: LineId,
    /// The token record.
    pub token_id: LineTokenId,
}

/// The caller of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A workspace user.
    User(UserPrincipal),
    /// A line API token.
    Line(LinePrincipal),
}

impl Principal {
    /// The organization every call is scoped to.
    #[must_use]
    pub fn organization_id(&self) -> &OrganizationId {
        match self {
            Self::User(u) => &u.organization_id,
            Self::Line(l) => &l.organization_id,
        }
    }

    /// The user, for user principals.
    #[must_use]
    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Self::User(u) => Some(&u.user_id),
            Self::Line(_) => None,
        }
    }
}

/// What a caller wants to do with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineAccess {
    /// See the line, its conversations and messages.
    View,
    /// Send from it.
    Send,
    /// Manage it (tokens, webhooks, settings).
    Manage,
}
