use serde::Serialize;

use crate::ids::{ConversationId, LineId, MessageId, OrganizationId, UserId};
use crate::time::Timestamp;

/// Inbound (from the customer) or outbound (to the customer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the customer.
    Inbound,
    /// To the customer.
    Outbound,
}

impl Direction {
    /// Stable storage name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }

    /// Parses a storage name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inbound" => Some(Self::Inbound),
            "outbound" => Some(Self::Outbound),
            _ => None,
        }
    }
}

/// The type of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MessageKind {
    /// Text (optionally with a CTA URL button).
    Text,
    /// Image.
    Image,
    /// Video.
    Video,
    /// Audio.
    Audio,
    /// Document.
    Document,
    /// Sticker (inbound).
    Sticker,
    /// Location (inbound).
    Location,
    /// Shared contacts (inbound).
    Contacts,
    /// Interactive reply (inbound).
    Interactive,
    /// Reaction (inbound).
    Reaction,
    /// Template.
    Template,
    /// Anything a provider sends that EZW does not model yet.
    Unsupported,
}

impl MessageKind {
    /// Stable storage name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Sticker => "sticker",
            Self::Location => "location",
            Self::Contacts => "contacts",
            Self::Interactive => "interactive",
            Self::Reaction => "reaction",
            Self::Template => "template",
            Self::Unsupported => "unsupported",
        }
    }

    /// Parses a storage name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "text" => Self::Text,
            "image" => Self::Image,
            "video" => Self::Video,
            "audio" => Self::Audio,
            "document" => Self::Document,
            "sticker" => Self::Sticker,
            "location" => Self::Location,
            "contacts" => Self::Contacts,
            "interactive" => Self::Interactive,
            "reaction" => Self::Reaction,
            "template" => Self::Template,
            "unsupported" => Self::Unsupported,
            _ => return None,
        })
    }
}

/// Media types that can be sent by URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// Image (JPEG, PNG).
    Image,
    /// Video (MP4, 3GPP).
    Video,
    /// Audio (AAC, MP3, OGG/Opus, AMR).
    Audio,
    /// Document (any file).
    Document,
}

impl MediaKind {
    /// Parses the API name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "image" => Self::Image,
            "video" => Self::Video,
            "audio" => Self::Audio,
            "document" => Self::Document,
            _ => return None,
        })
    }

    /// The message kind for this media kind.
    #[must_use]
    pub fn message_kind(self) -> MessageKind {
        match self {
            Self::Image => MessageKind::Image,
            Self::Video => MessageKind::Video,
            Self::Audio => MessageKind::Audio,
            Self::Document => MessageKind::Document,
        }
    }

    /// Whether a caption may accompany this kind (WhatsApp: not for audio).
    #[must_use]
    pub fn allows_caption(self) -> bool {
        !matches!(self, Self::Audio)
    }
}

/// A call-to-action URL button attached to a text message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CtaUrlButton {
    /// Button label.
    pub display_text: String,
    /// An http(s) URL.
    pub url: String,
}

/// A media reference: an external URL or a stored attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaRef {
    /// The kind of media.
    pub kind: MediaKind,
    /// External http(s) URL, for URL sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Stored attachment id (inbound media once fetched, workspace uploads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<String>,
    /// The provider's media handle for inbound media (Meta media id), used to download it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_media_id: Option<String>,
    /// SHA-256 the provider reported for the media, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// File name (documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// MIME type, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// The content of a message beyond its text body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageContent {
    /// Text body (or media caption for display).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaRef>,
    /// CTA URL button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cta_url_button: Option<CtaUrlButton>,
    /// The provider message id this message replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// A shared location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Shared contact cards, as the provider sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contacts: Option<serde_json::Value>,
    /// A reply to buttons or a list (interactive, template quick-reply buttons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactive_reply: Option<InteractiveReply>,
    /// A reaction to another message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<Reaction>,
    /// A template to send (name, language, components).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
}

/// A shared location.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// Latitude.
    pub latitude: f64,
    /// Longitude.
    pub longitude: f64,
    /// Place name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Eq for Location {}

/// The customer's choice from buttons or a list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InteractiveReply {
    /// `button_reply`, `list_reply` or `button` (template quick reply).
    pub kind: String,
    /// The option's id or payload.
    pub id: String,
    /// The option's title or text.
    pub title: String,
    /// The list option's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A reaction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    /// The provider id of the message reacted to.
    pub message_id: String,
    /// The emoji; empty when a reaction was removed.
    pub emoji: String,
}

/// A template message to send.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    /// Template name (Meta) or Content SID (Twilio, `HX...`).
    pub name: String,
    /// Language code (Meta), e.g. `en_US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Meta components, or Twilio content variables (an object), as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<serde_json::Value>,
}

/// Delivery status of a message. Provider status events only move it forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Accepted and waiting for the delivery worker.
    Queued,
    /// A send attempt's outcome is unknown (it may have reached the provider); not re-sent
    /// blindly where that could double-send.
    Unknown,
    /// Accepted by the provider.
    Sent,
    /// Delivered to the recipient's device.
    Delivered,
    /// Read by the recipient.
    Read,
    /// Failed permanently.
    Failed,
    /// An inbound message, received.
    Received,
}

impl MessageStatus {
    /// Stable storage name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Unknown => "unknown",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Received => "received",
        }
    }

    /// Parses a storage name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "unknown" => Self::Unknown,
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "failed" => Self::Failed,
            "received" => Self::Received,
            _ => return None,
        })
    }

    /// Progress rank: a status event may only move a message to a higher rank.
    /// `failed` may follow queued/unknown/sent, never delivered or read.
    #[must_use]
    pub fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Unknown => 1,
            Self::Sent => 2,
            Self::Failed => 3,
            Self::Delivered => 4,
            Self::Read => 5,
            Self::Received => 6,
        }
    }

    /// Whether a message in `self` may move to `next`.
    #[must_use]
    pub fn can_advance_to(self, next: MessageStatus) -> bool {
        if self == Self::Failed || self == Self::Received || next == Self::Received {
            return false;
        }
        next.rank() > self.rank()
    }

    /// Whether no further delivery work happens (failed, delivered, read, received).
    #[must_use]
    pub fn is_terminal_for_delivery(self) -> bool {
        matches!(self, Self::Failed | Self::Delivered | Self::Read | Self::Received)
    }
}

/// When each status was reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusTimestamps {
    /// Queued (outbound) or received (inbound).
    pub queued_at: Option<Timestamp>,
    /// Accepted by the provider.
    pub sent_at: Option<Timestamp>,
    /// Delivered.
    pub delivered_at: Option<Timestamp>,
    /// Read.
    pub read_at: Option<Timestamp>,
    /// Failed.
    pub failed_at: Option<Timestamp>,
}

/// Why a message failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageError {
    /// Machine-readable code (the provider's own code where it gave one).
    pub code: String,
    /// Human message.
    pub message: String,
}

/// A message in a conversation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Id.
    pub id: MessageId,
    /// Organization.
    pub organization_id: OrganizationId,
    /// Line.
    pub line_id: LineId,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Direction.
    pub direction: Direction,
    /// Type.
    #[serde(rename = "type")]
    pub kind: MessageKind,
    /// Text body, media and buttons.
    #[serde(flatten)]
    pub content: MessageContent,
    /// Current status.
    pub status: MessageStatus,
    /// When each status was reached.
    pub status_timestamps: StatusTimestamps,
    /// The provider's id for this message, once known.
    pub provider_message_id: Option<String>,
    /// Why it failed.
    pub error: Option<MessageError>,
    /// Send attempts made.
    pub attempts: u32,
    /// The user who sent it from the workspace, if any.
    pub sent_by_user_id: Option<UserId>,
    /// The idempotency key it was accepted under.
    pub idempotency_key: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::MessageStatus::*;

    #[test]
    fn statuses_only_move_forward() {
        assert!(Queued.can_advance_to(Sent));
        assert!(Sent.can_advance_to(Delivered));
        assert!(Delivered.can_advance_to(Read));
        assert!(Queued.can_advance_to(Read));
        assert!(Sent.can_advance_to(Failed));
        assert!(Unknown.can_advance_to(Sent));
        assert!(!Read.can_advance_to(Delivered));
        assert!(!Delivered.can_advance_to(Failed));
        assert!(!Failed.can_advance_to(Sent));
        assert!(!Sent.can_advance_to(Sent));
    }
}
