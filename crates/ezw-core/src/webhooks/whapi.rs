//! The `whapi` payload format: bodies shaped like the `WebhookPayload` of the Whapi.Cloud OpenAPI
//! spec, so receivers written for Whapi.Cloud accept EZW deliveries.
//!
//! Every body is `{"<key>": ..., "event": {"type", "event", "method"}, "channel_id": "<line id>"}`.
//! The event block carries the method under both `event` (what Whapi sends) and `method` (what the
//! spec's `Event` schema names it). Conventions:
//!
//! - Chat ids are the phone digits followed by `@s.whatsapp.net`; `from` is the sender's digits.
//! - Message and chat timestamps are Unix seconds (numbers); status timestamps are Unix seconds as a
//!   *string*, as the spec's `Status.timestamp` is typed.
//! - Message ids are the provider's (WhatsApp) id when known, else EZW's message id. EZW's own ids
//!   travel in extra `ezw_*` fields so receivers can call the EZW API.
//! - Fields EZW cannot fill truthfully are omitted, never `null`.

use serde_json::{json, Map, Value};

use super::{chat_changes, EventEnvelope, LineStateChange, WebhookEvent};
use crate::ids::{LineId, UserId};
use crate::model::{Conversation, Direction, MediaRef, Message, MessageError, MessageKind, MessageStatus};
use crate::phone::PhoneNumber;
use crate::time::Timestamp;

/// The `whapi` payload of an event:
///
/// - `messages.post`: `{"messages": [Message]}`
/// - `statuses.post`: `{"statuses": [Status]}`
/// - `chats.post`: `{"chats": [Chat]}`
/// - `chats.patch`: `{"chats_updates": [{"before_update", "after_update", "changes"}]}`, where
///   `changes` names the changed fields of the rendered chats (`ezw_assignee_id`, `ezw_status_key`)
/// - `channel.patch`: `{"health": {"channel_id", "status": {"code", "text"}, ...}}` (`start_at` and
///   `uptime` are omitted: EZW does not track them)
#[must_use]
pub fn render_whapi(envelope: &EventEnvelope) -> Value {
    let line = &envelope.line_phone;
    let (key, data) = match &envelope.event {
        WebhookEvent::Message { message, contact_phone } => {
            ("messages", json!([message_json(message, contact_phone, line)]))
        }
        WebhookEvent::Status { message, contact_phone } => {
            ("statuses", json!([status_json(message, contact_phone, line, envelope.occurred_at)]))
        }
        WebhookEvent::ChatCreated { conversation } => ("chats", json!([chat_json(conversation)])),
        WebhookEvent::ChatUpdated { before, after, by } => {
            ("chats_updates", json!([chat_update_json(before, after, by.as_ref())]))
        }
        WebhookEvent::LineState(change) => ("health", health_json(change, &envelope.line_id)),
    };
    let kind = envelope.event.kind();
    let mut body = Map::new();
    body.insert(key.to_owned(), data);
    body.insert(
        "event".to_owned(),
        json!({ "type": kind.resource(), "event": kind.method(), "method": kind.method() }),
    );
    body.insert("channel_id".to_owned(), json!(envelope.line_id));
    let mut body = Value::Object(body);
    drop_nulls(&mut body);
    body
}

/// A spec `Message`. The content object sits under the key named by `type`.
fn message_json(m: &Message, contact: &PhoneNumber, line: &PhoneNumber) -> Value {
    let outbound = m.direction == Direction::Outbound;
    let kind = message_type(m.kind);
    let mut out = json!({
        "id": whatsapp_id(m),
        "type": kind,
        "chat_id": chat_id(contact),
        "from": if outbound { line.digits() } else { contact.digits() },
        "from_me": outbound,
        "source": outbound.then_some("api"),
        "timestamp": m.created_at.unix_secs(),
        "status": outbound.then(|| whapi_status(m.status).0),
        "context": m.content.reply_to.as_ref().map(|id| json!({ "quoted_id": id })),
        "ezw_message_id": m.id,
        "ezw_conversation_id": m.conversation_id,
        "ezw_sent_by_user_id": m.sent_by_user_id,
    });
    if let Some(content) = content_json(m) {
        out[kind] = content;
    }
    out
}

/// The spec's `MessageType` for a kind. Reactions are `action` messages (the enum has no
/// `reaction`), interactive replies are `reply`, templates `hsm`.
fn message_type(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Text => "text",
        MessageKind::Image => "image",
        MessageKind::Video => "video",
        MessageKind::Audio => "audio",
        MessageKind::Document => "document",
        MessageKind::Sticker => "sticker",
        MessageKind::Location => "location",
        MessageKind::Contacts => "contact_list",
        MessageKind::Interactive => "reply",
        MessageKind::Reaction => "action",
        MessageKind::Template => "hsm",
        MessageKind::Unsupported => "unknown",
    }
}

/// The content object of a message, when the model holds data for its type.
fn content_json(m: &Message) -> Option<Value> {
    let c = &m.content;
    match m.kind {
        MessageKind::Text => c.body.as_ref().map(|body| json!({ "body": body })),
        MessageKind::Image | MessageKind::Video | MessageKind::Audio | MessageKind::Document | MessageKind::Sticker => {
            c.media.as_ref().map(media_json)
        }
        MessageKind::Location => c
            .location
            .as_ref()
            .map(|l| json!({ "latitude": l.latitude, "longitude": l.longitude, "name": l.name, "address": l.address })),
        // Names from the provider's cards (Meta's `name.formatted_name`); the cards themselves as given.
        MessageKind::Contacts => c.contacts.as_ref().map(|cards| {
            let list: Vec<Value> = cards
                .as_array()
                .into_iter()
                .flatten()
                .map(|card| json!({ "name": card.pointer("/name/formatted_name") }))
                .collect();
            json!({ "list": list, "ezw_cards": cards })
        }),
        MessageKind::Interactive => c.interactive_reply.as_ref().map(|r| {
            let kind = if r.kind == "list_reply" { "list_reply" } else { "buttons_reply" };
            json!({ "type": kind, kind: { "id": r.id, "title": r.title, "description": r.description } })
        }),
        MessageKind::Reaction => {
            c.reaction.as_ref().map(|r| json!({ "type": "reaction", "target": r.message_id, "emoji": r.emoji }))
        }
        MessageKind::Template => c
            .template
            .as_ref()
            .map(|t| json!({ "body": c.body, "ezw_template": { "name": t.name, "language": t.language } })),
        MessageKind::Unsupported => None,
    }
}

/// A spec `MediaFile`: `id` is the provider's media id, else EZW's attachment id.
fn media_json(media: &MediaRef) -> Value {
    json!({
        "id": media.provider_media_id.as_ref().or(media.attachment_id.as_ref()),
        "link": media.url,
        "mime_type": media.mime_type,
        "file_name": media.filename,
        "sha256": media.sha256,
        "caption": media.caption,
        "ezw_attachment_id": media.attachment_id,
    })
}

/// A spec `Status`, timed when the message reached its status (else when the event happened).
fn status_json(m: &Message, contact: &PhoneNumber, line: &PhoneNumber, occurred_at: Timestamp) -> Value {
    let (status, code) = whapi_status(m.status);
    let recipient = if m.direction == Direction::Outbound { contact } else { line };
    let failed = m.status == MessageStatus::Failed;
    json!({
        "id": whatsapp_id(m),
        "code": code,
        "status": status,
        "recipient_id": chat_id(recipient),
        "timestamp": status_reached_at(m).unwrap_or(occurred_at).unix_secs().to_string(),
        "errors": m.error.as_ref().filter(|_| failed).map(|e| json!([error_json(e)])),
        "ezw_message_id": m.id,
        "ezw_conversation_id": m.conversation_id,
        "ezw_status": m.status.as_str(),
    })
}

/// The spec's `StatusEnum` value and numeric code of a status. The spec numbers no codes; the code
/// is the value's position in `StatusEnum` (failed 0, pending 1, sent 2, delivered 3, read 4).
/// Queued and unknown (outcome not confirmed) are `pending`; received (inbound) is `delivered`.
fn whapi_status(status: MessageStatus) -> (&'static str, u8) {
    match status {
        MessageStatus::Failed => ("failed", 0),
        MessageStatus::Queued | MessageStatus::Unknown => ("pending", 1),
        MessageStatus::Sent => ("sent", 2),
        MessageStatus::Delivered | MessageStatus::Received => ("delivered", 3),
        MessageStatus::Read => ("read", 4),
    }
}

fn status_reached_at(m: &Message) -> Option<Timestamp> {
    let t = &m.status_timestamps;
    match m.status {
        MessageStatus::Queued | MessageStatus::Received => t.queued_at,
        MessageStatus::Sent => t.sent_at,
        MessageStatus::Delivered => t.delivered_at,
        MessageStatus::Read => t.read_at,
        MessageStatus::Failed => t.failed_at,
        MessageStatus::Unknown => None,
    }
}

/// A spec `Error`: its `code` is an integer, so only a numeric provider code fills it; the code as
/// recorded is always in `ezw_error_code`.
fn error_json(e: &MessageError) -> Value {
    json!({ "code": e.code.parse::<i64>().ok(), "message": e.message, "ezw_error_code": e.code })
}

/// A spec `Chat` (one contact conversation; EZW knows no chat name).
fn chat_json(c: &Conversation) -> Value {
    json!({
        "id": chat_id(&c.contact_phone),
        "type": "contact",
        "timestamp": c.last_message_at.unwrap_or(c.created_at).unix_secs(),
        "ezw_conversation_id": c.id,
        "ezw_contact_id": c.contact_id,
        "ezw_assignee_id": c.assignee_id,
        "ezw_status_key": c.status_key,
    })
}

/// A spec `ChatUpdate`; `changes` names the fields of the rendered chats that differ.
fn chat_update_json(before: &Conversation, after: &Conversation, by: Option<&UserId>) -> Value {
    let changes: Vec<&str> = chat_changes(before, after)
        .into_iter()
        .map(|field| match field {
            "assigneeId" => "ezw_assignee_id",
            "statusKey" => "ezw_status_key",
            other => other,
        })
        .collect();
    json!({
        "before_update": chat_json(before),
        "after_update": chat_json(after),
        "changes": changes,
        "ezw_changed_by": by,
    })
}

/// A spec `Health` with what EZW knows: the status and the line; EZW's own state as `ezw_*`.
fn health_json(change: &LineStateChange, line_id: &LineId) -> Value {
    let health = change.health();
    json!({
        "channel_id": line_id,
        "status": { "code": health.code, "text": health.text },
        "ezw_lifecycle_state": change.lifecycle_state.as_str(),
        "ezw_previous_state": change.previous_state.as_str(),
        "ezw_effective_send_state": change.effective_send_state.as_str(),
        "ezw_sendable": change.sendable,
        "ezw_reason": change.reason,
    })
}

/// The WhatsApp id of a message: the provider's, else EZW's.
fn whatsapp_id(m: &Message) -> &str {
    m.provider_message_id.as_deref().unwrap_or(m.id.as_str())
}

/// The WhatsApp chat id of a number (`972501234567@s.whatsapp.net`).
fn chat_id(phone: &PhoneNumber) -> String {
    format!("{}@s.whatsapp.net", phone.digits())
}

/// Removes `null` members everywhere: Whapi receivers expect absent optional fields, not nulls.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

#[cfg(test)]
#[path = "whapi_tests.rs"]
mod tests;
