//! Storage for access control: refresh-token chains, invitations, memberships of an
//! organization, billing. A part of [`Store`](super::Store).
//!
//! Every method that changes access or billing takes the audit entries describing the change and
//! stores them in the same transaction. Conditions that must hold at the moment of the write (the
//! refresh token is still the current one, the membership is still as the service saw it, another
//! active owner remains) are checked inside that transaction.

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{OrganizationId, SessionId, UserId};
use crate::model::{AuditEvent, BillingState, Checkout, Member, MembershipStatus, Organization, Role, User};
use crate::time::Timestamp;

use super::SessionRecord;

/// What became of a presented refresh token ([`AccessStore::rotate_refresh_token`]).
#[derive(Debug, Clone)]
pub enum RefreshRotation {
    /// It was the session's current token: the session now holds the new hash (returned as it
    /// is after the swap) and the presented one is remembered as used.
    Rotated(SessionRecord),
    /// It was rotated before: the token was stolen or replayed, so the whole session is revoked
    /// (now, unless it already was).
    Reused(SessionId),
    /// It is the current token of a session that was revoked (logout, disabled member).
    Revoked(SessionId),
    /// It is the current token of a session whose refresh lifetime is over.
    Expired(SessionId),
    /// No session knows it.
    Unknown,
}

/// A membership's role and status, as a service saw them before deciding on a change.
pub type MembershipState = (Role, MembershipStatus);

/// An invitation to store ([`AccessStore::invite_member`]).
#[derive(Debug, Clone)]
pub struct NewInvitation {
    /// Organization.
    pub organization_id: OrganizationId,
    /// The invited user (an existing user, or [`NewInvitation::new_user`]'s id).
    pub user_id: UserId,
    /// A user to create first (an email nobody has yet; no password).
    pub new_user: Option<User>,
    /// The membership's role and status as the service saw them (`None`: no membership).
    pub expected: Option<MembershipState>,
    /// The role the member gets.
    pub role: Role,
    /// SHA-256 (hex) of the invitation token; replaces any earlier invitation of this member.
    pub token_hash: String,
    /// When the token stops working.
    pub expires_at: Timestamp,
    /// Who invited (a user id).
    pub invited_by: Option<UserId>,
    /// Now.
    pub created_at: Timestamp,
}

/// A stored invitation (the token itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRecord {
    /// Organization.
    pub organization_id: OrganizationId,
    /// The invited user.
    pub user_id: UserId,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When the token stops working.
    pub expires_at: Timestamp,
}

/// Accepting an invitation ([`AccessStore::accept_invitation`]).
#[derive(Debug, Clone)]
pub struct InvitationAcceptance {
    /// SHA-256 (hex) of the presented token.
    pub token_hash: String,
    /// The invitation as the service read it (the write checks it is still the same one).
    pub organization_id: OrganizationId,
    /// The invited user.
    pub user_id: UserId,
    /// A password hash to set; only applied when the user has no password yet.
    pub password_hash: Option<String>,
    /// A new display name.
    pub display_name: Option<String>,
    /// Now: the invitation must not have expired.
    pub at: Timestamp,
}

/// A change of a member's role or status ([`AccessStore::update_membership`]).
#[derive(Debug, Clone)]
pub struct MembershipUpdate {
    /// Organization.
    pub organization_id: OrganizationId,
    /// The member.
    pub user_id: UserId,
    /// Role and status as the service saw them; the write fails `membership_changed` otherwise.
    pub expected: MembershipState,
    /// The new role.
    pub role: Role,
    /// The new status.
    pub status: MembershipStatus,
    /// Refuse (`last_owner`) unless another active owner remains.
    pub keep_an_owner: bool,
    /// Revoke the member's sessions in this organization (disabling).
    pub revoke_sessions: bool,
    /// Now.
    pub at: Timestamp,
}

/// What billing status counts, in one read ([`AccessStore::billing_usage`]).
#[derive(Debug, Clone)]
pub struct BillingUsage {
    /// Lines that are not archived.
    pub lines_used: u32,
    /// Active memberships.
    pub active_seats: u32,
    /// Invited memberships.
    pub invited_seats: u32,
    /// The most recent checkout that is not settled.
    pub open_checkout: Option<Checkout>,
}

/// The access-control part of the storage port.
#[async_trait]
pub trait AccessStore: Send + Sync {
    // ---- refresh-token chains ----

    /// Rotates a refresh token in one atomic step: when `presented_hash` is the current token of
    /// a live session (not revoked, `expires_at` after `now`), the session gets `new_hash` and
    /// the presented hash is remembered as used. When `presented_hash` was used before, the
    /// session is revoked at `now`. Of two concurrent calls with one token, exactly one rotates.
    /// A rotation also forgets the used hashes of the user's sessions that expired by `now`
    /// (presenting one of those is then `Unknown`).
    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        new_hash: &str,
        now: Timestamp,
    ) -> Result<RefreshRotation>;
    /// Revokes a session (logout). Returns false when it does not exist; revoking twice keeps the
    /// first time.
    async fn revoke_session(&self, id: &SessionId, at: Timestamp) -> Result<bool>;

    // ---- members and invitations ----

    /// An organization's members (optionally one status), oldest membership first.
    async fn list_members(&self, org: &OrganizationId, status: Option<MembershipStatus>) -> Result<Vec<Member>>;
    /// One member of an organization.
    async fn get_member(&self, org: &OrganizationId, user: &UserId) -> Result<Option<Member>>;
    /// Invites a member, atomically: creates the user when `new_user` is set, sets the
    /// membership to `invited` with the role, replaces the member's invitation token, and stores
    /// the audit entry.
    ///
    /// # Errors
    /// `Conflict`: `already_member` when the membership is active, `membership_changed` when it
    /// is not as `expected`, `email_taken` when `new_user`'s email exists by now.
    async fn invite_member(&self, invite: &NewInvitation, audit: &AuditEvent) -> Result<Member>;
    /// The invitation a token hash belongs to, expired or not.
    async fn find_invitation(&self, token_hash: &str) -> Result<Option<InvitationRecord>>;
    /// Accepts an invitation, atomically: consumes the token (it must still exist, belong to the
    /// member named, and not have expired at `at`), makes the `invited` membership active, sets
    /// the password (only when the user has none) and display name, and stores the audit entry.
    /// Returns `None`, changing nothing, when the token or the invited membership is gone.
    async fn accept_invitation(&self, accept: &InvitationAcceptance, audit: &AuditEvent) -> Result<Option<Member>>;
    /// Changes a member's role and status with their audit entries, atomically; disabling also
    /// revokes the member's sessions in the organization (`revoke_sessions`) and any invitation
    /// token. Returns `None` when the organization has no such member.
    ///
    /// # Errors
    /// `Conflict`: `membership_changed` when the membership is not as `expected`; `last_owner`
    /// when `keep_an_owner` is set and no other active owner remains.
    async fn update_membership(&self, update: &MembershipUpdate, audit: &[AuditEvent]) -> Result<Option<Member>>;

    // ---- billing ----

    /// Lines used, seats, and the open checkout of an organization, in one read.
    async fn billing_usage(&self, org: &OrganizationId) -> Result<BillingUsage>;
    /// Stores a new checkout with its audit entry.
    async fn insert_checkout(&self, checkout: &Checkout, audit: &AuditEvent) -> Result<()>;
    /// A checkout by the gateway's id (system-level: any organization).
    async fn get_checkout(&self, id: &str) -> Result<Option<Checkout>>;
    /// Settles an open checkout at `at` and makes its organization's billing state `active`,
    /// with the audit entries, atomically. Returns the checkout and organization as they now are,
    /// `None` when no such checkout exists.
    ///
    /// # Errors
    /// `Conflict` `checkout_settled` when it was settled before.
    async fn settle_checkout(
        &self,
        id: &str,
        at: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<(Checkout, Organization)>>;
    /// Sets an organization's billing state with the audit entry, atomically. Returns the
    /// organization as it now is, `None` when it does not exist.
    async fn set_billing_state(
        &self,
        org: &OrganizationId,
        state: BillingState,
        audit: &AuditEvent,
    ) -> Result<Option<Organization>>;
}
