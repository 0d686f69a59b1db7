use serde_json::json;

use super::render_whapi;
use crate::ids::{ContactId, ConversationId, EventId, LineId, MessageId, OrganizationId, UserId};
use crate::model::{
    Conversation, Direction, EffectiveSendState, LifecycleState, MediaKind, MediaRef, Message, MessageContent,
    MessageError, MessageKind, MessageStatus, StatusTimestamps,
};
use crate::phone::PhoneNumber;
use crate::time::Timestamp;
use crate::webhooks::{EventEnvelope, LineStateChange, WebhookEvent};

const LINE_PHONE: &str = "+972501234567";
const CONTACT_PHONE: &str = "+14155550123";
const CONTACT_CHAT: &str = "14155550123@s.whatsapp.net";
/// 2026-11-21T21:52:33.120Z.
const T0: i64 = 1_795_297_953_120;

fn at(offset_secs: i64) -> Timestamp {
    Timestamp::from_unix_ms(T0 + offset_secs * 1000)
}

fn envelope(event: WebhookEvent) -> EventEnvelope {
    EventEnvelope {
        id: EventId::from_raw("evt_01"),
        organization_id: OrganizationId::from_raw("org_01"),
        line_id: LineId::from_raw("line_01"),
        line_phone: PhoneNumber::from_raw(LINE_PHONE),
        occurred_at: at(60),
        event,
    }
}

fn message(direction: Direction, kind: MessageKind, content: MessageContent) -> Message {
    Message {
        id: MessageId::from_raw("msg_01"),
        organization_id: OrganizationId::from_raw("org_01"),
        line_id: LineId::from_raw("line_01"),
        conversation_id: ConversationId::from_raw("conv_01"),
        direction,
        kind,
        content,
        status: if direction == Direction::Inbound { MessageStatus::Received } else { MessageStatus::Queued },
        status_timestamps: StatusTimestamps { queued_at: Some(at(0)), ..StatusTimestamps::default() },
        provider_message_id: None,
        error: None,
        attempts: 0,
        sent_by_user_id: None,
        idempotency_key: None,
        created_at: at(0),
    }
}

fn conversation(assignee: Option<&str>) -> Conversation {
    Conversation {
        id: ConversationId::from_raw("conv_01"),
        organization_id: OrganizationId::from_raw("org_01"),
        line_id: LineId::from_raw("line_01"),
        contact_id: ContactId::from_raw("ct_01"),
        contact_phone: PhoneNumber::from_raw(CONTACT_PHONE),
        version: 1,
        assignee_id: assignee.map(UserId::from_raw),
        status_key: None,
        last_message_at: None,
        last_inbound_at: None,
        created_at: at(0),
    }
}

fn message_event(message: Message) -> WebhookEvent {
    WebhookEvent::Message { message: Box::new(message), contact_phone: PhoneNumber::from_raw(CONTACT_PHONE) }
}

fn status_event(message: Message) -> WebhookEvent {
    WebhookEvent::Status { message: Box::new(message), contact_phone: PhoneNumber::from_raw(CONTACT_PHONE) }
}

fn assert_event_block(body: &serde_json::Value, resource: &str, method: &str) {
    assert_eq!(body["event"], json!({ "type": resource, "event": method, "method": method }));
    assert_eq!(body["channel_id"], "line_01");
}

fn assert_no_nulls(value: &serde_json::Value) {
    match value {
        serde_json::Value::Null => panic!("null in whapi payload"),
        serde_json::Value::Array(items) => items.iter().for_each(assert_no_nulls),
        serde_json::Value::Object(map) => map.values().for_each(assert_no_nulls),
        _ => {}
    }
}

#[test]
fn inbound_text_message() {
    let mut m = message(
        Direction::Inbound,
        MessageKind::Text,
        MessageContent { body: Some("Hi there".into()), reply_to: Some("wamid.QUOTED".into()), ..Default::default() },
    );
    m.provider_message_id = Some("wamid.IN1".into());
    let body = render_whapi(&envelope(message_event(m)));

    assert_event_block(&body, "messages", "post");
    assert_no_nulls(&body);
    assert_eq!(
        body["messages"],
        json!([{
            "id": "wamid.IN1",
            "type": "text",
            "chat_id": CONTACT_CHAT,
            "from": "14155550123",
            "from_me": false,
            "timestamp": 1_795_297_953,
            "text": { "body": "Hi there" },
            "context": { "quoted_id": "wamid.QUOTED" },
            "ezw_message_id": "msg_01",
            "ezw_conversation_id": "conv_01",
        }])
    );
}

#[test]
fn outbound_image_with_caption() {
    let media = MediaRef {
        kind: MediaKind::Image,
        url: Some("https://cdn.example.com/p.jpg".into()),
        attachment_id: None,
        provider_media_id: None,
        sha256: None,
        caption: Some("Your receipt".into()),
        filename: None,
        mime_type: Some("image/jpeg".into()),
    };
    let content = MessageContent { body: Some("Your receipt".into()), media: Some(media), ..Default::default() };
    let mut m = message(Direction::Outbound, MessageKind::Image, content);
    m.sent_by_user_id = Some(UserId::from_raw("usr_01"));
    let body = render_whapi(&envelope(message_event(m)));

    assert_event_block(&body, "messages", "post");
    assert_no_nulls(&body);
    let msg = &body["messages"][0];
    assert_eq!(msg["id"], "msg_01", "no provider id yet: our id");
    assert_eq!(msg["type"], "image");
    assert_eq!(msg["from_me"], true);
    assert_eq!(msg["from"], "972501234567");
    assert_eq!(msg["chat_id"], CONTACT_CHAT);
    assert_eq!(msg["source"], "api");
    assert_eq!(msg["status"], "pending");
    assert_eq!(msg["timestamp"], 1_795_297_953);
    assert_eq!(msg["ezw_sent_by_user_id"], "usr_01");
    assert_eq!(
        msg["image"],
        json!({ "link": "https://cdn.example.com/p.jpg", "mime_type": "image/jpeg", "caption": "Your receipt" })
    );
    assert!(msg.get("text").is_none());
}

#[test]
fn status_delivered() {
    let mut m = message(Direction::Outbound, MessageKind::Text, MessageContent::default());
    m.provider_message_id = Some("wamid.OUT1".into());
    m.status = MessageStatus::Delivered;
    m.status_timestamps.sent_at = Some(at(2));
    m.status_timestamps.delivered_at = Some(at(5));
    let body = render_whapi(&envelope(status_event(m)));

    assert_event_block(&body, "statuses", "post");
    assert_no_nulls(&body);
    assert_eq!(
        body["statuses"],
        json!([{
            "id": "wamid.OUT1",
            "code": 3,
            "status": "delivered",
            "recipient_id": CONTACT_CHAT,
            "timestamp": "1795297958",
            "ezw_message_id": "msg_01",
            "ezw_conversation_id": "conv_01",
            "ezw_status": "delivered",
        }])
    );
}

#[test]
fn status_failed_carries_errors() {
    let mut m = message(Direction::Outbound, MessageKind::Text, MessageContent::default());
    m.status = MessageStatus::Failed;
    m.status_timestamps.failed_at = Some(at(7));
    m.error = Some(MessageError { code: "131026".into(), message: "receiver is not on WhatsApp".into() });
    let body = render_whapi(&envelope(status_event(m.clone())));

    let status = &body["statuses"][0];
    assert_eq!(status["code"], 0);
    assert_eq!(status["status"], "failed");
    assert_eq!(status["timestamp"], "1795297960");
    assert_eq!(
        status["errors"],
        json!([{ "code": 131_026, "message": "receiver is not on WhatsApp", "ezw_error_code": "131026" }])
    );

    // A non-numeric code cannot fill the spec's integer `code`: it is left out, not null.
    m.error = Some(MessageError { code: "line_not_found".into(), message: "the line no longer exists".into() });
    let body = render_whapi(&envelope(status_event(m)));
    assert_no_nulls(&body);
    assert_eq!(
        body["statuses"][0]["errors"],
        json!([{ "message": "the line no longer exists", "ezw_error_code": "line_not_found" }])
    );
}

#[test]
fn status_without_reached_time_uses_event_time() {
    let mut m = message(Direction::Outbound, MessageKind::Text, MessageContent::default());
    m.status = MessageStatus::Unknown;
    let body = render_whapi(&envelope(status_event(m)));
    let status = &body["statuses"][0];
    assert_eq!((status["status"].as_str(), status["code"].as_u64()), (Some("pending"), Some(1)));
    assert_eq!(status["timestamp"], "1795298013");
    assert_eq!(status["ezw_status"], "unknown");
}

#[test]
fn chat_created() {
    let event = WebhookEvent::ChatCreated { conversation: Box::new(conversation(Some("usr_01"))) };
    let body = render_whapi(&envelope(event));

    assert_event_block(&body, "chats", "post");
    assert_no_nulls(&body);
    assert_eq!(
        body["chats"],
        json!([{
            "id": CONTACT_CHAT,
            "type": "contact",
            "timestamp": 1_795_297_953,
            "ezw_conversation_id": "conv_01",
            "ezw_contact_id": "ct_01",
            "ezw_assignee_id": "usr_01",
        }])
    );
}

#[test]
fn chat_updated_assignment() {
    let before = conversation(None);
    let mut after = conversation(Some("usr_02"));
    after.version = 2;
    let event = WebhookEvent::ChatUpdated {
        before: Box::new(before),
        after: Box::new(after),
        by: Some(UserId::from_raw("usr_09")),
    };
    let body = render_whapi(&envelope(event));

    assert_event_block(&body, "chats", "patch");
    assert_no_nulls(&body);
    let update = &body["chats_updates"][0];
    assert_eq!(update["changes"], json!(["ezw_assignee_id"]));
    assert_eq!(update["before_update"]["id"], CONTACT_CHAT);
    assert!(update["before_update"].get("ezw_assignee_id").is_none());
    assert_eq!(update["after_update"]["ezw_assignee_id"], "usr_02");
    assert_eq!(update["ezw_changed_by"], "usr_09");
}

#[test]
fn channel_patch_qr_required() {
    let change = LineStateChange {
        previous_state: LifecycleState::Connected,
        lifecycle_state: LifecycleState::QrRequired,
        effective_send_state: EffectiveSendState::QrRequired,
        sendable: false,
        reason: None,
    };
    let body = render_whapi(&envelope(WebhookEvent::LineState(change)));

    assert_event_block(&body, "channel", "patch");
    assert_no_nulls(&body);
    assert_eq!(
        body["health"],
        json!({
            "channel_id": "line_01",
            "status": { "code": 3, "text": "QR" },
            "ezw_lifecycle_state": "qr_required",
            "ezw_previous_state": "connected",
            "ezw_effective_send_state": "qr_required",
            "ezw_sendable": false,
        })
    );
}

#[test]
fn inbound_reply_reaction_and_location_follow_spec_types() {
    use crate::model::{InteractiveReply, Location, Reaction};

    let render = |kind, content| {
        let body = render_whapi(&envelope(message_event(message(Direction::Inbound, kind, content))));
        assert_no_nulls(&body);
        body["messages"][0].clone()
    };

    let reply =
        InteractiveReply { kind: "list_reply".into(), id: "opt_2".into(), title: "Billing".into(), description: None };
    let msg = render(MessageKind::Interactive, MessageContent { interactive_reply: Some(reply), ..Default::default() });
    assert_eq!(msg["type"], "reply");
    assert_eq!(msg["reply"], json!({ "type": "list_reply", "list_reply": { "id": "opt_2", "title": "Billing" } }));

    let reaction = Reaction { message_id: "wamid.OUT1".into(), emoji: "👍".into() };
    let msg = render(MessageKind::Reaction, MessageContent { reaction: Some(reaction), ..Default::default() });
    assert_eq!(msg["type"], "action");
    assert_eq!(msg["action"], json!({ "type": "reaction", "target": "wamid.OUT1", "emoji": "👍" }));

    let location = Location { latitude: 32.08, longitude: 34.78, name: Some("Office".into()), address: None };
    let msg = render(MessageKind::Location, MessageContent { location: Some(location), ..Default::default() });
    assert_eq!(msg["type"], "location");
    assert_eq!(msg["location"], json!({ "latitude": 32.08, "longitude": 34.78, "name": "Office" }));
}
