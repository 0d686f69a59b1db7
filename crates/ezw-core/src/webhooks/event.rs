//! Events that webhooks deliver, and the `ezw` payload format.

use serde::Serialize;
use serde_json::json;

use crate::ids::{EventId, LineId, OrganizationId, UserId};
use crate::model::{Conversation, EffectiveSendState, HealthStatus, LifecycleState, Message, WebhookEventKind};
use crate::phone::PhoneNumber;
use crate::time::Timestamp;

/// What happened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WebhookEvent {
    /// A message was recorded (inbound, or outbound accepted): `messages.post`.
    Message {
        /// The message.
        message: Box<Message>,
        /// The contact's number (the sender of inbound, the recipient of outbound messages).
        contact_phone: PhoneNumber,
    },
    /// A message's status changed: `statuses.post`.
    Status {
        /// The message after the change.
        message: Box<Message>,
        /// The contact's number.
        contact_phone: PhoneNumber,
    },
    /// A conversation was opened: `chats.post`.
    ChatCreated {
        /// The conversation.
        conversation: Box<Conversation>,
    },
    /// A conversation changed (assignment, Kanban status): `chats.patch`.
    ChatUpdated {
        /// Before the change.
        before: Box<Conversation>,
        /// After it.
        after: Box<Conversation>,
        /// The user who made the change, if a user did.
        by: Option<UserId>,
    },
    /// A line's state changed: `channel.patch`.
    LineState(LineStateChange),
}

/// A line's state after a change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineStateChange {
    /// The lifecycle state before.
    pub previous_state: LifecycleState,
    /// The lifecycle state now.
    pub lifecycle_state: LifecycleState,
    /// Whether the line may send now, and why not.
    pub effective_send_state: EffectiveSendState,
    /// Shorthand for `effectiveSendState == sendable`.
    pub sendable: bool,
    /// The provider's or operator's reason.
    pub reason: Option<String>,
}

impl LineStateChange {
    /// The Whapi-style health status of the new state.
    #[must_use]
    pub fn health(&self) -> HealthStatus {
        HealthStatus::from_lifecycle(self.lifecycle_state)
    }
}

impl WebhookEvent {
    /// The subscription kind this event is delivered under.
    #[must_use]
    pub fn kind(&self) -> WebhookEventKind {
        match self {
            Self::Message { .. } => WebhookEventKind::MessagesPost,
            Self::Status { .. } => WebhookEventKind::StatusesPost,
            Self::ChatCreated { .. } => WebhookEventKind::ChatsPost,
            Self::ChatUpdated { .. } => WebhookEventKind::ChatsPatch,
            Self::LineState(_) => WebhookEventKind::ChannelPatch,
        }
    }
}

/// An event with where and when it happened.
#[derive(Debug, Clone)]
pub struct EventEnvelope {
    /// Id, shared by every webhook's delivery of this event.
    pub id: EventId,
    /// Organization.
    pub organization_id: OrganizationId,
    /// The line it happened on.
    pub line_id: LineId,
    /// The line's own number.
    pub line_phone: PhoneNumber,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// What happened.
    pub event: WebhookEvent,
}

impl EventEnvelope {
    /// A new envelope with a fresh id.
    #[must_use]
    pub fn new(
        organization_id: OrganizationId,
        line_id: LineId,
        line_phone: PhoneNumber,
        occurred_at: Timestamp,
        event: WebhookEvent,
    ) -> Self {
        Self { id: EventId::generate(occurred_at.unix_ms()), organization_id, line_id, line_phone, occurred_at, event }
    }

    /// The `ezw` payload:
    /// `{"id","type","occurredAt","organizationId","lineId","linePhone","data":{...}}`.
    #[must_use]
    pub fn render_ezw(&self) -> serde_json::Value {
        let data = match &self.event {
            WebhookEvent::Message { message, contact_phone } | WebhookEvent::Status { message, contact_phone } => {
                json!({ "message": message, "contactPhone": contact_phone })
            }
            WebhookEvent::ChatCreated { conversation } => json!({ "conversation": conversation }),
            WebhookEvent::ChatUpdated { before, after, by } => {
                json!({ "conversation": after, "previous": before, "changes": chat_changes(before, after), "changedBy": by })
            }
            WebhookEvent::LineState(change) => {
                let health = change.health();
                json!({
                    "previousState": change.previous_state,
                    "lifecycleState": change.lifecycle_state,
                    "effectiveSendState": change.effective_send_state,
                    "sendable": change.sendable,
                    "reason": change.reason,
                    "status": { "code": health.code, "text": health.text },
                })
            }
        };
        json!({
            "id": self.id,
            "type": self.event.kind(),
            "occurredAt": self.occurred_at,
            "organizationId": self.organization_id,
            "lineId": self.line_id,
            "linePhone": self.line_phone,
            "data": data,
        })
    }
}

/// The fields that differ between two versions of a conversation (camelCase names).
#[must_use]
pub fn chat_changes(before: &Conversation, after: &Conversation) -> Vec<&'static str> {
    let mut changes = Vec::new();
    if before.assignee_id != after.assignee_id {
        changes.push("assigneeId");
    }
    if before.status_key != after.status_key {
        changes.push("statusKey");
    }
    changes
}
