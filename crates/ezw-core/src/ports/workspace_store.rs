//! Storage for the team inbox: line permissions, default assignees, archived lines, claims and
//! assignments under `expectedVersion`, contacts, internal notes. A part of
//! [`Store`](super::Store).

use async_trait::async_trait;

use super::{ConversationQuery, LineContext, MessageChange, Page};
use crate::error::Result;
use crate::ids::{ContactId, ConversationId, LineId, OrganizationId, UserId};
use crate::model::{AuditEvent, Contact, Conversation, InboxConversation, Line, LinePermission, LineTokenRecord, Note};
use crate::time::Timestamp;

/// A line, its organization's billing state and one user's explicit permission on it, read
/// together (what authorizing a user's request on a line needs, in one read).
#[derive(Debug, Clone)]
pub struct LineAccessContext {
    /// The line and its organization's billing state.
    pub context: LineContext,
    /// The user's explicit permission on the line, if any.
    pub permission: Option<LinePermission>,
}

/// The idempotency part of a line creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineIdempotency {
    /// The caller's key (unique per organization; kept as long as the organization).
    pub key: String,
    /// SHA-256 (hex) over the fields that define the request.
    pub fingerprint: String,
}

/// A line to create: line row, idempotency record and audit entry in one transaction.
#[derive(Debug, Clone)]
pub struct CreateLine {
    /// The line.
    pub line: Line,
    /// The idempotency key and request fingerprint, when the caller gave a key.
    pub idempotency: Option<LineIdempotency>,
    /// The organization's line slots: the line is refused when this many lines that are not
    /// archived exist.
    pub max_active_lines: u32,
    /// The `line.created` audit entry.
    pub audit: AuditEvent,
}

/// The result of [`WorkspaceStore::create_line`].
#[derive(Debug, Clone)]
pub enum CreateLineOutcome {
    /// The line was created.
    Created(Box<Line>),
    /// The key was used before with the same request: the line it created.
    Replayed(Box<Line>),
    /// The key was used before with a different request.
    KeyReused {
        /// The line the key belongs to.
        line_id: LineId,
    },
    /// The organization's lines that are not archived already fill its line slots.
    SlotsExhausted,
}

/// The result of [`WorkspaceStore::archive_line`].
#[derive(Debug, Clone)]
pub struct ArchivedLine {
    /// The line, now archived.
    pub line: Line,
    /// False when the line was archived already (nothing changed).
    pub newly_archived: bool,
    /// Queued messages of the line that failed with `line_archived`.
    pub failed: Vec<MessageChange>,
}

/// A compare-and-set of a conversation's assignee.
#[derive(Debug, Clone)]
pub struct AssignConversation {
    /// Organization.
    pub organization_id: OrganizationId,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// The version the caller saw: the change applies only if the conversation still has it.
    pub expected_version: i64,
    /// The new assignee (`None` unassigns).
    pub assignee_id: Option<UserId>,
    /// Who makes the change (the `chats.patch` event names them).
    pub by: Option<UserId>,
    /// When.
    pub at: Timestamp,
}

/// The result of [`WorkspaceStore::assign_conversation`].
#[derive(Debug, Clone)]
pub enum AssignOutcome {
    /// Applied: the version was bumped.
    Assigned {
        /// Before the change.
        before: Box<Conversation>,
        /// After it.
        after: Box<Conversation>,
    },
    /// The conversation has another version now: nothing changed.
    Stale(Box<Conversation>),
    /// No such conversation in the organization.
    NotFound,
}

/// The team-inbox part of the storage port.
#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    // ---- line access ----

    /// A line of an organization with its billing state and `user`'s explicit permission on it,
    /// in one read.
    async fn get_line_access(
        &self,
        org: &OrganizationId,
        line: &LineId,
        user: &UserId,
    ) -> Result<Option<LineAccessContext>>;
    /// The lines of an organization `user`'s explicit permissions let them view, oldest first;
    /// `None` when no permission of theirs hides a line (every line is visible).
    async fn visible_line_ids(&self, org: &OrganizationId, user: &UserId) -> Result<Option<Vec<LineId>>>;
    /// One explicit permission.
    async fn get_line_permission(
        &self,
        org: &OrganizationId,
        line: &LineId,
        user: &UserId,
    ) -> Result<Option<LinePermission>>;
    /// A line's explicit permissions, oldest change first.
    async fn list_line_permissions(&self, org: &OrganizationId, line: &LineId) -> Result<Vec<LinePermission>>;
    /// Inserts or replaces an explicit permission, with its audit entry, atomically.
    async fn set_line_permission(&self, permission: &LinePermission, audit: &AuditEvent) -> Result<()>;
    /// Deletes an explicit permission; the audit entry is written (in the same transaction) only
    /// when one was deleted. Returns whether one was.
    async fn clear_line_permission(
        &self,
        org: &OrganizationId,
        line: &LineId,
        user: &UserId,
        audit: &AuditEvent,
    ) -> Result<bool>;

    // ---- lines ----

    /// Creates a line atomically: an earlier use of the idempotency key answers `Replayed` (same
    /// fingerprint) or `KeyReused`; then the slot check; then the line, the idempotency record and
    /// the audit entry.
    ///
    /// # Errors
    /// `Conflict` `line_exists` when the organization already has the number.
    async fn create_line(&self, new: &CreateLine) -> Result<CreateLineOutcome>;
    /// Revokes the line's current token (if any) and stores `token`, with the audit entry,
    /// atomically. Returns whether a token was revoked.
    async fn rotate_line_token(&self, token: &LineTokenRecord, audit: &AuditEvent) -> Result<bool>;
    /// Sets (or clears) a line's default assignee, with the audit entry; returns the line as it
    /// now is, or `None` when the organization has no such line. Conversations the line opens
    /// later (inbound or outbound) start assigned to them, as long as they are an active member
    /// who may view the line (an owner or admin, or an operator whose permission does not hide it).
    async fn set_default_assignee(
        &self,
        org: &OrganizationId,
        line: &LineId,
        assignee: Option<&UserId>,
        at: Timestamp,
        audit: &AuditEvent,
    ) -> Result<Option<Line>>;
    /// Archives a line: lifecycle `archived` (a later [`set_line_state`](super::Store::set_line_state)
    /// leaves it archived), its queued messages that are not in a provider call fail with
    /// `line_archived` (their outbox jobs are deleted), a `channel.patch` event, and the audit
    /// entry, in one transaction. A line archived already is returned unchanged (no audit entry).
    async fn archive_line(
        &self,
        org: &OrganizationId,
        line: &LineId,
        at: Timestamp,
        audit: &AuditEvent,
    ) -> Result<Option<ArchivedLine>>;

    // ---- inbox ----

    /// Conversations with their contacts' names, most recently active first.
    ///
    /// # Errors
    /// `invalid_cursor` (400) for a cursor this backend did not return.
    async fn list_inbox(&self, org: &OrganizationId, query: &ConversationQuery) -> Result<Page<InboxConversation>>;
    /// Sets a conversation's assignee if its version is still `expected_version`, bumping the
    /// version and queueing the `chats.patch` event in the same transaction.
    async fn assign_conversation(&self, change: &AssignConversation) -> Result<AssignOutcome>;
    /// A contact of an organization.
    async fn get_contact(&self, org: &OrganizationId, id: &ContactId) -> Result<Option<Contact>>;
    /// Sets (or clears) a contact's internal display name; returns the contact as it now is.
    async fn set_contact_display_name(
        &self,
        org: &OrganizationId,
        id: &ContactId,
        display_name: Option<&str>,
        at: Timestamp,
    ) -> Result<Option<Contact>>;
    /// Stores an internal note.
    async fn insert_note(&self, note: &Note) -> Result<()>;
    /// A conversation's notes, newest first.
    ///
    /// # Errors
    /// `invalid_cursor` (400) for a cursor this backend did not return.
    async fn list_notes(
        &self,
        org: &OrganizationId,
        conversation: &ConversationId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Note>>;
}
