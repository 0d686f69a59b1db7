//! Outgoing webhooks: subscriptions, deliveries and their attempts, and the audit trail.

use serde::Serialize;

use crate::ids::{AuditEventId, DeliveryId, EventId, LineId, OrganizationId, WebhookId};
use crate::time::Timestamp;

/// An event a webhook can subscribe to (`resource.method`, as Whapi names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum WebhookEventKind {
    /// A message was recorded: inbound from a contact, or outbound accepted for sending.
    MessagesPost,
    /// A message's delivery status changed (sent, delivered, read, failed, unknown).
    StatusesPost,
    /// A conversation was opened.
    ChatsPost,
    /// A conversation changed: assignment, Kanban status.
    ChatsPatch,
    /// A line's state changed (connected, QR required, blocked, ...).
    ChannelPatch,
}

impl WebhookEventKind {
    /// Every kind, in a stable order.
    pub const ALL: [Self; 5] =
        [Self::MessagesPost, Self::StatusesPost, Self::ChatsPost, Self::ChatsPatch, Self::ChannelPatch];

    /// The wire name (`messages.post`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessagesPost => "messages.post",
            Self::StatusesPost => "statuses.post",
            Self::ChatsPost => "chats.post",
            Self::ChatsPatch => "chats.patch",
            Self::ChannelPatch => "channel.patch",
        }
    }

    /// Parses a wire name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The resource part (`messages`), Whapi's event `type`.
    #[must_use]
    pub fn resource(self) -> &'static str {
        self.as_str().split('.').next().unwrap_or_default()
    }

    /// The method part (`post`), Whapi's event `event`.
    #[must_use]
    pub fn method(self) -> &'static str {
        self.as_str().split('.').nth(1).unwrap_or_default()
    }

    /// This kind's bit in an event mask (how storage selects subscribers in one comparison).
    #[must_use]
    pub fn bit(self) -> i64 {
        1 << (self as u32)
    }

    /// The mask of a set of kinds.
    #[must_use]
    pub fn mask(kinds: &[Self]) -> i64 {
        kinds.iter().fold(0, |m, k| m | k.bit())
    }

    /// The kinds in a mask, in stable order.
    #[must_use]
    pub fn from_mask(mask: i64) -> Vec<Self> {
        Self::ALL.into_iter().filter(|k| mask & k.bit() != 0).collect()
    }
}

impl Serialize for WebhookEventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for WebhookEventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body format of a webhook's deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// EZW's own envelope (documented in `docs/webhooks.md`).
    #[default]
    Ezw,
    /// Compatible with Whapi.Cloud receivers.
    Whapi,
}

impl PayloadFormat {
    /// Stable name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ezw => "ezw",
            Self::Whapi => "whapi",
        }
    }

    /// Parses a stable name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ezw" => Some(Self::Ezw),
            "whapi" => Some(Self::Whapi),
            _ => None,
        }
    }
}

/// A line's outgoing webhook subscription. The signing secret is kept apart (sealed in storage,
/// shown only to those who manage the line).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Id.
    pub id: WebhookId,
    /// Organization.
    pub organization_id: OrganizationId,
    /// The line whose events it receives.
    pub line_id: LineId,
    /// Where deliveries are POSTed.
    pub target_url: String,
    /// Subscribed events.
    pub events: Vec<WebhookEventKind>,
    /// Body format.
    pub payload_format: PayloadFormat,
    /// Whether new events are delivered.
    pub enabled: bool,
    /// Whether failed deliveries are retried on the schedule (`false`: one attempt only).
    pub persistent: bool,
    /// Deliveries in flight at once.
    pub max_concurrency: u32,
    /// Deliveries started per second at most (`None`: no limit beyond the concurrency).
    pub rate_per_second: Option<f64>,
    /// Why the server disabled it (`gone` after a 410, `failing` after days of failures).
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed (cleared by a success).
    pub failing_since: Option<Timestamp>,
    /// When the previous secret stops being used to sign, during a rotation.
    pub previous_secret_expires_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Held because its webhook is disabled; resumes when it is enabled again.
    Held,
    /// The receiver answered 2xx.
    Succeeded,
    /// Every scheduled attempt failed, or the webhook is gone.
    Failed,
}

impl DeliveryStatus {
    /// Stable name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Held => "held",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Parses a stable name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "held" => Self::Held,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// One webhook's delivery of one event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// Id: the `webhook-id` header, the same on every attempt.
    pub id: DeliveryId,
    /// The event (shared with other webhooks' deliveries of it).
    pub event_id: EventId,
    /// Webhook.
    pub webhook_id: WebhookId,
    /// Organization.
    pub organization_id: OrganizationId,
    /// Line.
    pub line_id: LineId,
    /// Event kind.
    pub event: WebhookEventKind,
    /// Where it is.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<Timestamp>,
    /// The last attempt's HTTP status, if it got one.
    pub last_http_status: Option<u16>,
    /// The last attempt's error when it got no HTTP answer.
    pub last_error: Option<String>,
    /// When the event happened.
    pub created_at: Timestamp,
    /// When it succeeded.
    pub delivered_at: Option<Timestamp>,
    /// The exact body POSTed (the same on every attempt).
    #[serde(skip)]
    pub body: String,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// The receiver's HTTP status, if it answered.
    pub http_status: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// The first 4 KiB of the receiver's answer.
    pub response_excerpt: Option<String>,
    /// Why no usable answer came (`timeout`, `connect: ...`, `refused_target`).
    pub error: Option<String>,
}

/// Who did something recorded in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditActor {
    /// `user`, `line_token` or `system`.
    pub kind: &'static str,
    /// The user or line id, when there is one.
    pub id: Option<String>,
}

impl AuditActor {
    /// The server itself (automatic actions).
    #[must_use]
    pub fn system() -> Self {
        Self { kind: "system", id: None }
    }
}

/// An entry of an organization's audit trail.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Id.
    pub id: AuditEventId,
    /// Organization.
    pub organization_id: OrganizationId,
    /// Who.
    pub actor: AuditActor,
    /// What (`webhook.created`, `webhook.disabled`, ...).
    pub action: String,
    /// What it was done to (`webhook`, `line`, ...).
    pub target_kind: String,
    /// Its id.
    pub target_id: String,
    /// Details (never secrets).
    pub details: serde_json::Value,
    /// The target's relevant fields before the change (never secrets), when it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The target's relevant fields after the change (never secrets), when it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
    /// When.
    pub created_at: Timestamp,
}
