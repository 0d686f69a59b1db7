use serde::Serialize;

use crate::ids::{AttachmentId, ContactId, ConversationId, LineId, MessageId, NoteId, OrganizationId, UserId};
use crate::phone::PhoneNumber;
use crate::time::Timestamp;

/// A customer contact, unique per organization and phone number.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// Id.
    pub id: ContactId,
    /// Organization.
    pub organization_id: OrganizationId,
    /// The customer's number.
    pub phone_number: PhoneNumber,
    /// The internal display name set by the team.
    pub display_name: Option<String>,
    /// The WhatsApp profile name the provider reported.
    pub profile_name: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A conversation between one line and one contact.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    /// Id.
    pub id: ConversationId,
    /// Organization.
    pub organization_id: OrganizationId,
    /// Line.
    pub line_id: LineId,
    /// Contact.
    pub contact_id: ContactId,
    /// The contact's number (denormalized for listing).
    pub contact_phone: PhoneNumber,
    /// Optimistic-concurrency version; bumped by every ownership or status change.
    pub version: i64,
    /// Who owns the conversation.
    pub assignee_id: Option<UserId>,
    /// Kanban status field value, when the conversation is on the board.
    pub status_key: Option<String>,
    /// Last message time.
    pub last_message_at: Option<Timestamp>,
    /// Last inbound message (the 24-hour customer-care window starts here).
    pub last_inbound_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A conversation as the inbox lists it: the conversation with its contact's names.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxConversation {
    /// The conversation.
    #[serde(flatten)]
    pub conversation: Conversation,
    /// The contact's internal display name.
    pub contact_display_name: Option<String>,
    /// The contact's WhatsApp profile name.
    pub contact_profile_name: Option<String>,
}

/// An internal note on a conversation: seen by the team only, never sent to WhatsApp, never in
/// webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    /// Id.
    pub id: NoteId,
    /// Organization.
    #[serde(skip)]
    pub organization_id: OrganizationId,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// The conversation's line.
    pub line_id: LineId,
    /// Who wrote it.
    pub author_id: UserId,
    /// Text (1 to 4000 characters).
    pub body: String,
    /// Creation time.
    pub created_at: Timestamp,
}

/// Stored media: metadata here, bytes in the [`BlobStore`](crate::ports::BlobStore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// Id (also the blob key).
    pub id: AttachmentId,
    /// Organization.
    pub organization_id: OrganizationId,
    /// The message it belongs to, if any.
    pub message_id: Option<MessageId>,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    /// Original file name, when known.
    pub filename: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
}
