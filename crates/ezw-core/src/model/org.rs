use serde::Serialize;

use crate::ids::{OrganizationId, UserId};
use crate::time::Timestamp;

/// An organization (tenant). Every customer-owned row belongs to exactly one.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    /// Id.
    pub id: OrganizationId,
    /// Display name.
    pub name: String,
    /// Unique short name (`demo` for the demo workspace).
    pub slug: String,
    /// Billing state; a restricted organization cannot send.
    pub billing_state: BillingState,
    /// Number of lines the plan allows.
    pub line_slots: u32,
    /// The billing plan (`standard` unless an operator or a billing gateway says otherwise).
    pub plan: String,
    /// Creation time.
    pub created_at: Timestamp,
}

/// The plan new organizations get.
pub const DEFAULT_PLAN: &str = "standard";

/// The billing state of an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingState {
    /// Paid or free: everything works.
    Active,
    /// Signed up, payment not completed yet.
    Pending,
    /// Payment failed: sends are held until recovery.
    Restricted,
}

impl BillingState {
    /// Stable storage name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Pending => "pending",
            Self::Restricted => "restricted",
        }
    }

    /// Parses a storage name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "pending" => Self::Pending,
            "restricted" => Self::Restricted,
            _ => return None,
        })
    }

    /// Whether outbound work may run.
    #[must_use]
    pub fn allows_sending(self) -> bool {
        matches!(self, Self::Active | Self::Pending)
    }

    /// Whether new lines may be added (within the line slots).
    #[must_use]
    pub fn allows_new_lines(self) -> bool {
        matches!(self, Self::Active | Self::Pending)
    }

    /// Whether a recovery checkout may be started (the workspace is not paid up).
    #[must_use]
    pub fn needs_checkout(self) -> bool {
        matches!(self, Self::Restricted | Self::Pending)
    }
}

/// A person's account. A user may be a member of several organizations.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Login email, lower-cased.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Argon2id PHC string; never serialized.
    #[serde(skip)]
    pub password_hash: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A role within an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Operator: works conversations on the lines they may see.
    Operator,
    /// Admin: manages users, lines, tokens and webhooks.
    Admin,
    /// Owner: everything an admin does, plus billing and owners.
    Owner,
}

impl Role {
    /// Stable storage name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Operator => "operator",
        }
    }

    /// Parses a storage name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "owner" => Self::Owner,
            "admin" => Self::Admin,
            "operator" => Self::Operator,
            _ => return None,
        })
    }

    /// Owners and admins manage the workspace.
    #[must_use]
    pub fn is_manager(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

/// Whether a membership is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipStatus {
    /// Active member.
    Active,
    /// Invited, not yet accepted.
    Invited,
    /// Disabled: cannot log in to this organization.
    Disabled,
}

impl MembershipStatus {
    /// Stable storage name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Invited => "invited",
            Self::Disabled => "disabled",
        }
    }

    /// Parses a storage name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "invited" => Self::Invited,
            "disabled" => Self::Disabled,
            _ => return None,
        })
    }
}

/// A user's membership of an organization.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    /// Organization.
    pub organization_id: OrganizationId,
    /// User.
    pub user_id: UserId,
    /// Role.
    pub role: Role,
    /// Status.
    pub status: MembershipStatus,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A member of an organization as the team administration shows it: the membership with the
/// user's email and name.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// User.
    pub user_id: UserId,
    /// Login email.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Status.
    pub status: MembershipStatus,
    /// When the membership was created.
    pub created_at: Timestamp,
    /// When its role or status last changed.
    pub updated_at: Timestamp,
}

/// A billing checkout session (recovery or first payment), as created by a billing gateway.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkout {
    /// The gateway's id for it.
    pub id: String,
    /// Organization.
    pub organization_id: OrganizationId,
    /// The plan it pays for.
    pub plan: String,
    /// The line slots it pays for.
    pub line_slots: u32,
    /// The gateway's status (`awaiting_operator`, ...), or `settled` once paid.
    pub status: String,
    /// Where the customer pays, when the gateway has a payment page.
    pub url: Option<String>,
    /// What the customer should do, when the gateway says.
    pub instructions: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// When it was settled.
    pub settled_at: Option<Timestamp>,
}

impl Checkout {
    /// The status of a settled checkout.
    pub const SETTLED: &'static str = "settled";

    /// Whether it still waits for payment.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.settled_at.is_none()
    }
}
