//! The storage port: domain-level atomic operations, not generic SQL. Every backend passes the
//! same conformance suite (`ezw-storage`'s `conformance` module).

use std::time::Duration;

use async_trait::async_trait;

use super::{AccessStore, ClusterStore, SessionStore, WorkspaceStore};
use crate::error::Result;
use crate::ids::{
    AttachmentId, ContactId, ConversationId, DeliveryId, LineId, LineTokenId, MessageId, OrganizationId, SessionId,
    UserId, WebhookId,
};
use crate::model::{
    Attachment, AuditEvent, BillingState, Conversation, DeliveryAttempt, LifecycleState, Line, LineTokenRecord,
    Membership, Message, MessageContent, MessageError, MessageKind, MessageStatus, Organization, User, Webhook,
    WebhookDelivery,
};
use crate::phone::PhoneNumber;
use crate::time::Timestamp;

/// One page of a cursor-paginated list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Who a send goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendTarget {
    /// A phone number: the contact and conversation are created when missing.
    Phone(PhoneNumber),
    /// An existing conversation of the line.
    Conversation(ConversationId),
}

/// The idempotency part of a send.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// The caller's key.
    pub key: String,
    /// SHA-256 (hex) over the fields that define the send.
    pub fingerprint: String,
    /// When the record may be purged.
    pub expires_at: Timestamp,
}

/// An outbound message to accept: message row `queued` + outbox job + idempotency record, in
/// one transaction.
#[derive(Debug, Clone)]
pub struct NewOutbound {
    /// Organization.
    pub organization_id: OrganizationId,
    /// Line.
    pub line_id: LineId,
    /// Recipient.
    pub target: SendTarget,
    /// The id the message gets if it is created.
    pub message_id: MessageId,
    /// Type.
    pub kind: MessageKind,
    /// Content.
    pub content: MessageContent,
    /// The workspace user sending, if any.
    pub sent_by_user_id: Option<UserId>,
    /// Idempotency key and fingerprint.
    pub idempotency: Option<IdempotencyClaim>,
    /// Acceptance time.
    pub created_at: Timestamp,
}

impl NewOutbound {
    /// The message this send creates, `queued` in `conversation_id` (what backends store and
    /// return as [`EnqueueOutcome::Created`]).
    #[must_use]
    pub fn queued_message(&self, conversation_id: ConversationId) -> Message {
        Message {
            id: self.message_id.clone(),
            organization_id: self.organization_id.clone(),
            line_id: self.line_id.clone(),
            conversation_id,
            direction: crate::model::Direction::Outbound,
            kind: self.kind,
            content: self.content.clone(),
            status: MessageStatus::Queued,
            status_timestamps: crate::model::StatusTimestamps {
                queued_at: Some(self.created_at),
                ..crate::model::StatusTimestamps::default()
            },
            provider_message_id: None,
            error: None,
            attempts: 0,
            sent_by_user_id: self.sent_by_user_id.clone(),
            idempotency_key: self.idempotency.as_ref().map(|i| i.key.clone()),
            created_at: self.created_at,
        }
    }
}

/// The result of [`Store::enqueue_outbound`].
#[derive(Debug, Clone)]
pub enum EnqueueOutcome {
    /// A new message was queued.
    Created(Message),
    /// The key was used before with the same request: the earlier message.
    Replayed(Message),
    /// The key was used before with a different request.
    KeyReused {
        /// The message the key belongs to.
        message_id: MessageId,
    },
}

/// A claimed outbox job: one outbound message to hand to its provider.
#[derive(Debug, Clone)]
pub struct OutboxJob {
    /// The message (status `queued`).
    pub message: Message,
    /// The recipient's number.
    pub recipient: PhoneNumber,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The lease this claim holds; completion is accepted only with it.
    pub lease_id: String,
    /// The job was dispatched under an earlier lease that ran out without a recorded outcome:
    /// that provider call may have reached the provider (a crashed or stalled worker).
    pub possibly_sent: bool,
}

/// How an attempt ended, for the attempt log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Accepted by the provider.
    Accepted,
    /// Failed transiently; will retry.
    Retry,
    /// Failed permanently.
    Failed,
    /// May or may not have reached the provider.
    Unknown,
}

impl AttemptOutcome {
    /// Stable storage name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Retry => "retry",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }
}

/// One recorded send attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// When the provider call started.
    pub started_at: Timestamp,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The provider's own error code.
    pub provider_code: Option<String>,
    /// Error text.
    pub error: Option<String>,
    /// How long the call took.
    pub latency: Duration,
}

/// What to do with a claimed job after the provider call.
#[derive(Debug, Clone)]
pub enum JobDisposition {
    /// Accepted: the message becomes `sent`, the job is done.
    Accepted {
        /// The provider's message id.
        provider_message_id: String,
        /// Acceptance time.
        at: Timestamp,
    },
    /// Try again at `at` (an attempt is counted when [`JobResult::attempt`] is set).
    Retry {
        /// Next attempt time.
        at: Timestamp,
    },
    /// Put back without counting an attempt (the line is not sendable).
    Hold {
        /// When to look again.
        until: Timestamp,
    },
    /// Failed for good.
    Failed {
        /// Why.
        error: MessageError,
        /// When.
        at: Timestamp,
    },
    /// The outcome is unknown and a re-send could duplicate: the message becomes `unknown`
    /// and the job is done until a status event or an operator resolves it.
    Unknown {
        /// When.
        at: Timestamp,
    },
}

impl JobDisposition {
    /// When the disposition was decided (or, for retries and holds, when the job is due).
    #[must_use]
    pub fn at(&self) -> Timestamp {
        match self {
            Self::Accepted { at, .. } | Self::Retry { at } | Self::Failed { at, .. } | Self::Unknown { at } => *at,
            Self::Hold { until } => *until,
        }
    }
}

/// The outcome of one claimed job.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// The message.
    pub message_id: MessageId,
    /// The lease from the claim.
    pub lease_id: String,
    /// The attempt, when a provider call was made.
    pub attempt: Option<AttemptRecord>,
    /// What happens next.
    pub disposition: JobDisposition,
}

/// A message whose delivery status changed (what workers publish as live hints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageChange {
    /// The message.
    pub id: MessageId,
    /// Organization.
    pub organization_id: OrganizationId,
    /// Line.
    pub line_id: LineId,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Its status now.
    pub status: MessageStatus,
}

/// What a line's send path needs in one read: the line and its organization's billing state.
#[derive(Debug, Clone)]
pub struct LineContext {
    /// The line.
    pub line: Line,
    /// The organization's billing state.
    pub billing_state: BillingState,
}

/// What an operator decided about a message whose send outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownResolution {
    /// Send it again (the operator accepts the risk of a duplicate).
    Resend,
    /// It did reach the customer: mark it sent.
    Sent,
    /// Give up: mark it failed (`operator_failed`).
    Fail,
}

/// Queue gauges for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Jobs waiting or in flight, per line.
    pub depth_by_line: Vec<(LineId, u64)>,
    /// Messages in status `unknown`.
    pub unknown_messages: u64,
}

/// A provider's status report for one message.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    /// The line it came from.
    pub line_id: LineId,
    /// The provider's message id.
    pub provider_message_id: String,
    /// Our message id when the provider echoes it back (Twilio: in our `StatusCallback` URL).
    /// Lets a report find a message whose provider id was never learned (an ambiguous send).
    pub message_id: Option<MessageId>,
    /// The reported status.
    pub status: MessageStatus,
    /// When it happened (provider time).
    pub at: Timestamp,
    /// Error for `failed`.
    pub error: Option<MessageError>,
}

/// An inbound message from a provider.
#[derive(Debug, Clone)]
pub struct NewInbound {
    /// Organization.
    pub organization_id: OrganizationId,
    /// Line.
    pub line_id: LineId,
    /// Sender.
    pub from: PhoneNumber,
    /// The sender's WhatsApp profile name.
    pub profile_name: Option<String>,
    /// The provider's message id (deduplication key per line).
    pub provider_message_id: String,
    /// Type.
    pub kind: MessageKind,
    /// Content.
    pub content: MessageContent,
    /// Provider time.
    pub received_at: Timestamp,
}

/// The result of recording one inbound message.
#[derive(Debug, Clone)]
pub enum InboundOutcome {
    /// Stored; the conversation as it is now.
    Created {
        /// The message.
        message: Box<Message>,
        /// Its conversation.
        conversation: Box<Conversation>,
    },
    /// Already stored earlier (same line and provider id): nothing changed.
    Duplicate,
}

/// A login session (the refresh-token chain).
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// Id (the `sid` of ID tokens).
    pub id: SessionId,
    /// User.
    pub user_id: UserId,
    /// Organization chosen at login.
    pub organization_id: OrganizationId,
    /// SHA-256 (hex) of the current refresh token.
    pub refresh_token_hash: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry of the refresh token.
    pub expires_at: Timestamp,
    /// Revocation time.
    pub revoked_at: Option<Timestamp>,
}

/// What a line token resolves to.
#[derive(Debug, Clone)]
pub struct LineTokenMatch {
    /// The token record.
    pub token_id: LineTokenId,
    /// The line.
    pub line: Line,
    /// The organization's billing state.
    pub billing_state: BillingState,
}

/// Conversation list filters; every filter that is set applies (AND).
#[derive(Debug, Clone, Default)]
pub struct ConversationQuery {
    /// Only this line.
    pub line_id: Option<LineId>,
    /// Only these lines (visibility), when set.
    pub visible_lines: Option<Vec<LineId>>,
    /// Only conversations assigned to this user.
    pub assignee_id: Option<UserId>,
    /// Only conversations without an assignee.
    pub unassigned: bool,
    /// Only conversations with this Kanban `status_key`.
    pub status_key: Option<String>,
    /// Only conversations whose contact matches: the text in the display name or WhatsApp
    /// profile name (case-insensitive), or its digits in the phone number. Matched literally
    /// (no wildcards).
    pub search: Option<String>,
    /// Cursor from a previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// A webhook with its sealed signing secrets (see `crypto::SecretCipher`).
#[derive(Debug, Clone)]
pub struct StoredWebhook {
    /// The webhook.
    pub webhook: Webhook,
    /// The current secret, sealed.
    pub secret: String,
    /// The secret before the last rotation, sealed, while it is still used to sign.
    pub previous_secret: Option<String>,
}

/// A claimed delivery: the delivery, its lease, and its webhook.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    /// The delivery (with its body and the attempts made so far).
    pub delivery: WebhookDelivery,
    /// The lease this claim holds; results must name it.
    pub lease_id: String,
    /// Its webhook.
    pub webhook: StoredWebhook,
}

/// What becomes of a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver accepted it.
    Succeeded,
    /// Try again at this time.
    Retry(Timestamp),
    /// No more attempts.
    Failed,
    /// Not attempted (its webhook was busy): back in the queue at this time, no attempt counted.
    Released(Timestamp),
}

/// The result of one claimed delivery.
#[derive(Debug, Clone)]
pub struct DeliveryResult {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The lease it was claimed under (stale leases are ignored).
    pub lease_id: String,
    /// Its webhook.
    pub webhook_id: WebhookId,
    /// The attempt made (none when released).
    pub attempt: Option<DeliveryAttempt>,
    /// What becomes of it.
    pub outcome: DeliveryOutcome,
    /// Disable the webhook (410, or failing too long): the reason and the audit entry saying so.
    pub disable_webhook: Option<(String, AuditEvent)>,
}

/// The storage port. Its access-control, team-inbox and multi-node parts are the supertraits
/// [`AccessStore`], [`WorkspaceStore`] and [`ClusterStore`].
#[async_trait]
pub trait Store: AccessStore + WorkspaceStore + ClusterStore + SessionStore + Send + Sync + 'static {
    // ---- organizations, users, sessions ----

    /// Creates an organization with `owner` as its owner; inserts the user when `new_user`.
    ///
    /// # Errors
    /// `Conflict` (`email_taken` / `slug_taken`) on duplicates.
    async fn create_organization(&self, org: &Organization, owner: &User, new_user: bool) -> Result<()>;
    /// An organization by id.
    async fn get_organization(&self, id: &OrganizationId) -> Result<Option<Organization>>;
    /// An organization by slug.
    async fn find_organization_by_slug(&self, slug: &str) -> Result<Option<Organization>>;
    /// Inserts a user. `Conflict` `email_taken` when the email exists.
    async fn insert_user(&self, user: &User) -> Result<()>;
    /// A user by id.
    async fn get_user(&self, id: &UserId) -> Result<Option<User>>;
    /// A user by (lower-cased) email.
    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>>;
    /// Replaces a user's password hash.
    async fn set_password_hash(&self, id: &UserId, hash: &str) -> Result<()>;
    /// Inserts or replaces a membership.
    async fn upsert_membership(&self, membership: &Membership) -> Result<()>;
    /// A membership.
    async fn get_membership(&self, org: &OrganizationId, user: &UserId) -> Result<Option<Membership>>;
    /// All memberships of a user.
    async fn list_user_memberships(&self, user: &UserId) -> Result<Vec<Membership>>;
    /// Stores a new session.
    async fn insert_session(&self, session: &SessionRecord) -> Result<()>;
    /// A session by id.
    async fn get_session(&self, id: &SessionId) -> Result<Option<SessionRecord>>;

    // ---- lines and tokens ----

    /// Inserts a line. `Conflict` `line_exists` when the organization already has the number.
    async fn insert_line(&self, line: &Line) -> Result<()>;
    /// A line of an organization.
    async fn get_line(&self, org: &OrganizationId, id: &LineId) -> Result<Option<Line>>;
    /// A line by id alone, for provider ingress and workers that start from a line id; never
    /// for caller-facing reads (those go through [`Store::get_line`] with the caller's org).
    async fn get_line_unscoped(&self, id: &LineId) -> Result<Option<Line>>;
    /// A line of an organization with the organization's billing state, in one read.
    async fn get_line_context(&self, org: &OrganizationId, id: &LineId) -> Result<Option<LineContext>>;
    /// An organization's lines, oldest first.
    async fn list_lines(&self, org: &OrganizationId) -> Result<Vec<Line>>;
    /// Sets a line's lifecycle state; returns the line as it now is.
    async fn set_line_state(
        &self,
        org: &OrganizationId,
        id: &LineId,
        state: LifecycleState,
        reason: Option<&str>,
        at: Timestamp,
    ) -> Result<Option<Line>>;
    /// Revokes the line's current token (if any) and stores `token`, atomically. Returns
    /// whether a token was revoked.
    async fn replace_line_token(&self, token: &LineTokenRecord) -> Result<bool>;
    /// Resolves an active token hash.
    async fn find_line_token(&self, token_hash: &str) -> Result<Option<LineTokenMatch>>;

    // ---- inbox ----

    /// A conversation of an organization.
    async fn get_conversation(&self, org: &OrganizationId, id: &ConversationId) -> Result<Option<Conversation>>;
    /// Conversations, most recently active first.
    async fn list_conversations(&self, org: &OrganizationId, query: &ConversationQuery) -> Result<Page<Conversation>>;
    /// A message of an organization.
    async fn get_message(&self, org: &OrganizationId, id: &MessageId) -> Result<Option<Message>>;
    /// A conversation's messages, newest first.
    async fn list_messages(
        &self,
        org: &OrganizationId,
        conversation: &ConversationId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Message>>;
    /// The contact id for a phone number, if the organization has one.
    async fn find_contact_id(&self, org: &OrganizationId, phone: &PhoneNumber) -> Result<Option<ContactId>>;

    // ---- sends and the outbox ----

    /// Accepts an outbound message: in one transaction, checks the idempotency key (same
    /// fingerprint: the earlier message; different: `KeyReused`), resolves or creates the
    /// contact and conversation, inserts the `queued` message, its outbox job and the
    /// idempotency record.
    ///
    /// # Errors
    /// `NotFound` when a target conversation is not on this line of this organization.
    async fn enqueue_outbound(&self, send: NewOutbound) -> Result<EnqueueOutcome>;
    /// Claims up to `limit` due jobs with a lease of `lease`, at most one per conversation
    /// (the oldest), so one conversation's messages go out in order.
    async fn claim_outbox(&self, now: Timestamp, lease: Duration, limit: u32) -> Result<Vec<OutboxJob>>;
    /// Records outcomes of claimed jobs; results whose lease is no longer held are ignored.
    /// Returns the messages whose status changed.
    async fn finish_outbox(&self, results: Vec<JobResult>) -> Result<Vec<MessageChange>>;
    /// Records, durably, that claimed jobs' provider calls start now (`(message, lease)` pairs).
    /// Returns for each whether its lease is still held. Only a job whose lease expires after
    /// this is `possibly_sent` when claimed again.
    async fn mark_dispatched(&self, leases: Vec<(MessageId, String)>, at: Timestamp) -> Result<Vec<bool>>;
    /// Number of jobs waiting (queued or leased).
    async fn outbox_depth(&self) -> Result<u64>;
    /// Resolves a message in status `unknown` (an operator's decision). Returns the message as it
    /// now is, or `None` when no such message of the organization exists.
    ///
    /// # Errors
    /// `Conflict` `not_unknown` when the message is not in status `unknown`.
    async fn resolve_unknown(
        &self,
        org: &OrganizationId,
        id: &MessageId,
        resolution: UnknownResolution,
        at: Timestamp,
    ) -> Result<Option<Message>>;
    /// Queue gauges: depth per line and the number of `unknown` messages.
    async fn outbox_stats(&self) -> Result<OutboxStats>;
    /// Applies provider status reports, forward only. Returns the messages that changed.
    async fn apply_status_updates(&self, updates: Vec<StatusUpdate>) -> Result<Vec<MessageChange>>;
    /// Records inbound messages, deduplicated by (line, provider message id).
    async fn record_inbound(&self, messages: Vec<NewInbound>) -> Result<Vec<InboundOutcome>>;
    /// Stores an attachment's metadata and, when it belongs to a message, records it on the
    /// message's media (`attachmentId`), in one transaction.
    async fn insert_attachment(&self, attachment: &Attachment) -> Result<()>;
    /// An attachment of an organization.
    async fn get_attachment(&self, org: &OrganizationId, id: &AttachmentId) -> Result<Option<Attachment>>;
    /// Deletes idempotency records whose expiry is at or before `now`; returns how many.
    async fn purge_idempotency(&self, now: Timestamp) -> Result<u64>;

    // ---- webhooks and audit ----
    //
    // Events reach webhooks without a call here: the operations above that change state
    // (enqueue_outbound, finish_outbox, apply_status_updates, record_inbound, resolve_unknown,
    // set_line_state) insert a delivery for every enabled, subscribed webhook of the line in the
    // same transaction (`ezw_core::webhooks::plan_deliveries`).

    /// Stores a new webhook with its sealed secret and the audit entry, atomically.
    ///
    /// # Errors
    /// `Conflict` `webhook_exists` when the line already has a webhook for this target URL.
    async fn insert_webhook(&self, webhook: &Webhook, sealed_secret: &str, audit: &AuditEvent) -> Result<()>;
    /// Replaces a webhook's settings with the audit entry, atomically. Disabling holds its
    /// pending deliveries; enabling releases held ones at `webhook.updated_at`. Returns false
    /// when the webhook does not exist in its organization.
    async fn update_webhook(&self, webhook: &Webhook, audit: &AuditEvent) -> Result<bool>;
    /// Replaces the signing secret, keeping the old one for signing until `previous_until`.
    async fn rotate_webhook_secret(
        &self,
        org: &OrganizationId,
        id: &WebhookId,
        sealed_secret: &str,
        previous_until: Timestamp,
        audit: &AuditEvent,
    ) -> Result<bool>;
    /// Deletes a webhook and its deliveries, with the audit entry.
    async fn delete_webhook(&self, org: &OrganizationId, id: &WebhookId, audit: &AuditEvent) -> Result<bool>;
    /// A webhook of an organization.
    async fn get_webhook(&self, org: &OrganizationId, id: &WebhookId) -> Result<Option<StoredWebhook>>;
    /// A line's webhooks, oldest first.
    async fn list_webhooks(&self, org: &OrganizationId, line: &LineId) -> Result<Vec<StoredWebhook>>;
    /// Claims up to `limit` pending deliveries due at `now`, oldest due first, leasing them
    /// until `now + lease` (an unfinished claim comes back after it).
    async fn claim_webhook_deliveries(&self, now: Timestamp, lease: Duration, limit: u32) -> Result<Vec<DeliveryJob>>;
    /// Records attempts and outcomes (results under a lease no longer held are ignored).
    async fn finish_webhook_deliveries(&self, results: Vec<DeliveryResult>) -> Result<()>;
    /// A webhook's deliveries, newest first.
    async fn list_webhook_deliveries(
        &self,
        org: &OrganizationId,
        webhook: &WebhookId,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<WebhookDelivery>>;
    /// One delivery with its attempts, oldest attempt first.
    async fn get_webhook_delivery(
        &self,
        org: &OrganizationId,
        id: &DeliveryId,
    ) -> Result<Option<(WebhookDelivery, Vec<DeliveryAttempt>)>>;
    /// Queues a delivery again for an attempt at `at` (whatever its status), keeping its id and
    /// attempt history; a held delivery stays held until its webhook is enabled.
    async fn redeliver_webhook_delivery(
        &self,
        org: &OrganizationId,
        id: &DeliveryId,
        at: Timestamp,
    ) -> Result<Option<WebhookDelivery>>;
    /// Appends to the audit trail.
    async fn record_audit(&self, event: &AuditEvent) -> Result<()>;
    /// An organization's audit trail, newest first; `action` keeps one action, or a family when
    /// it ends with a dot (`membership.`).
    ///
    /// # Errors
    /// `invalid_cursor` (400) for a cursor this backend did not return.
    async fn list_audit(
        &self,
        org: &OrganizationId,
        action: Option<&str>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<AuditEvent>>;
}
