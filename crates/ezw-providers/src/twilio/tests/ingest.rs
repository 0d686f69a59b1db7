//! Webhook fixtures (form bodies as Twilio sends them) through `TwilioProvider::ingest`.

use ezw_core::model::{InteractiveReply, Location, MediaKind, MediaRef, MessageError, MessageKind, MessageStatus};
use ezw_core::ports::{IngestOutcome, LineProvider, NewInbound, ProviderErrorKind, ProviderEvent, StatusUpdate};
use ezw_core::Timestamp;

use super::{line, provider, signed, signed_with, CUSTOMER, LINE_ID, NOW_MS, ORG_ID};

const TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";
const MEDIA_BASE: &str = "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/MM5e4b9a0c2d1f3e6a7b8c9d0e1f2a3b4c/Media";
const OUTBOUND_SID: &str = "SM9f8e7d6c5b4a39281706f5e4d3c2b1a0";

async fn ingest(route: &str, body: &str) -> IngestOutcome {
    let p = provider();
    p.ingest(&line(&p, None), &signed(route, body)).await.unwrap()
}

async fn inbound(body: &str) -> Vec<NewInbound> {
    let outcome = ingest("", body).await;
    assert_eq!(outcome.response.status, 200);
    assert_eq!(outcome.response.content_type, "text/xml");
    assert_eq!(outcome.response.body, TWIML);
    outcome
        .events
        .into_iter()
        .map(|e| match e {
            ProviderEvent::Inbound(m) => *m,
            other => panic!("expected an inbound message, got {other:?}"),
        })
        .collect()
}

async fn status(body: &str) -> Vec<StatusUpdate> {
    let outcome = ingest("status", body).await;
    assert_eq!(outcome.response.status, 200);
    outcome
        .events
        .into_iter()
        .map(|e| match e {
            ProviderEvent::Status(s) => s,
            other => panic!("expected a status, got {other:?}"),
        })
        .collect()
}

fn assert_envelope(m: &NewInbound, provider_message_id: &str) {
    assert_eq!(m.organization_id.as_str(), ORG_ID);
    assert_eq!(m.line_id.as_str(), LINE_ID);
    assert_eq!(m.from.as_str(), CUSTOMER);
    assert_eq!(m.profile_name.as_deref(), Some("Jane Doe"));
    assert_eq!(m.provider_message_id, provider_message_id);
    assert_eq!(m.received_at, Timestamp::from_unix_ms(NOW_MS));
}

#[tokio::test]
async fn inbound_text() {
    let msgs = inbound(include_str!("../fixtures/inbound_text.txt")).await;
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_envelope(m, "SM1f0e8ae6ade43cb3c0ce4525424e404f");
    assert_eq!(m.kind, MessageKind::Text);
    assert_eq!(m.content.body.as_deref(), Some("Hello, my order #42 hasn't arrived 📦"));
    assert!(m.content.media.is_none() && m.content.reply_to.is_none() && m.content.location.is_none());
}

#[tokio::test]
async fn inbound_with_one_media() {
    let msgs = inbound(include_str!("../fixtures/inbound_media_one.txt")).await;
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_envelope(m, "MM5e4b9a0c2d1f3e6a7b8c9d0e1f2a3b4c");
    assert_eq!(m.kind, MessageKind::Image);
    assert_eq!(m.content.body.as_deref(), Some("Here is the receipt"));
    assert_eq!(
        m.content.media,
        Some(MediaRef {
            kind: MediaKind::Image,
            url: Some(format!("{MEDIA_BASE}/ME0a1b2c3d4e5f60718293a4b5c6d7e8f9")),
            attachment_id: None,
            provider_media_id: None,
            sha256: None,
            caption: Some("Here is the receipt".into()),
            filename: None,
            mime_type: Some("image/jpeg".into()),
        })
    );
}

#[tokio::test]
async fn inbound_with_two_media_becomes_two_messages() {
    let msgs = inbound(include_str!("../fixtures/inbound_media_two.txt")).await;
    assert_eq!(msgs.len(), 2);
    assert_envelope(&msgs[0], "MM5e4b9a0c2d1f3e6a7b8c9d0e1f2a3b4c");
    assert_eq!(msgs[0].kind, MessageKind::Document);
    let first = msgs[0].content.media.as_ref().unwrap();
    assert_eq!(first.kind, MediaKind::Document);
    assert_eq!(first.url.as_deref(), Some(format!("{MEDIA_BASE}/ME0a1b2c3d4e5f60718293a4b5c6d7e8f9").as_str()));
    assert_eq!(first.mime_type.as_deref(), Some("application/pdf"));
    assert_eq!(first.caption.as_deref(), Some("Invoice and unboxing video"));

    assert_envelope(&msgs[1], "MM5e4b9a0c2d1f3e6a7b8c9d0e1f2a3b4c:1");
    assert_eq!(msgs[1].kind, MessageKind::Video);
    assert_eq!(msgs[1].content.body, None);
    let second = msgs[1].content.media.as_ref().unwrap();
    assert_eq!(second.kind, MediaKind::Video);
    assert_eq!(second.url.as_deref(), Some(format!("{MEDIA_BASE}/ME1b2c3d4e5f60718293a4b5c6d7e8f9a0").as_str()));
    assert_eq!(second.mime_type.as_deref(), Some("video/mp4"));
    assert_eq!(second.caption, None);
}

#[tokio::test]
async fn inbound_location() {
    let msgs = inbound(include_str!("../fixtures/inbound_location.txt")).await;
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_envelope(m, "SM2a3b4c5d6e7f8091a2b3c4d5e6f70812");
    assert_eq!(m.kind, MessageKind::Location);
    assert_eq!(m.content.body, None);
    assert_eq!(
        m.content.location,
        Some(Location {
            latitude: 37.787_927_7,
            longitude: -122.393_750_8,
            name: Some("Twilio HQ".into()),
            address: Some("101 Spear St, San Francisco, CA 94105".into()),
        })
    );
}

#[tokio::test]
async fn inbound_quick_reply_button() {
    let msgs = inbound(include_str!("../fixtures/inbound_button.txt")).await;
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_envelope(m, "SM3b4c5d6e7f8091a2b3c4d5e6f708123");
    assert_eq!(m.kind, MessageKind::Interactive);
    assert_eq!(
        m.content.interactive_reply,
        Some(InteractiveReply {
            kind: "button".into(),
            id: "reschedule_yes_42".into(),
            title: "Yes, reschedule".into(),
            description: None,
        })
    );
    assert_eq!(m.content.body.as_deref(), Some("Yes, reschedule"));
}

#[tokio::test]
async fn inbound_reply_carries_context() {
    let msgs = inbound(include_str!("../fixtures/inbound_reply.txt")).await;
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_envelope(m, "SM4c5d6e7f8091a2b3c4d5e6f7081234");
    assert_eq!(m.kind, MessageKind::Text);
    assert_eq!(m.content.body.as_deref(), Some("Thanks, that works"));
    assert_eq!(m.content.reply_to.as_deref(), Some(OUTBOUND_SID));
}

fn assert_status(s: &StatusUpdate, status: MessageStatus, error: Option<MessageError>) {
    assert_eq!(s.line_id.as_str(), LINE_ID);
    assert_eq!(s.provider_message_id, OUTBOUND_SID);
    assert_eq!(s.status, status);
    assert_eq!(s.at, Timestamp::from_unix_ms(NOW_MS));
    assert_eq!(s.error, error);
}

#[tokio::test]
async fn status_sent_delivered_read() {
    for (body, expected) in [
        (include_str!("../fixtures/status_sent.txt"), MessageStatus::Sent),
        (include_str!("../fixtures/status_delivered.txt"), MessageStatus::Delivered),
        (include_str!("../fixtures/status_read.txt"), MessageStatus::Read),
    ] {
        let updates = status(body).await;
        assert_eq!(updates.len(), 1);
        assert_status(&updates[0], expected, None);
    }
}

#[tokio::test]
async fn status_failed_with_63016() {
    let updates = status(include_str!("../fixtures/status_failed.txt")).await;
    assert_eq!(updates.len(), 1);
    let error = updates[0].error.clone().unwrap();
    assert_eq!(error.code, "63016");
    assert!(error.message.contains("24-hour") && error.message.contains("ContentSid"), "{}", error.message);
    assert_status(&updates[0], MessageStatus::Failed, Some(error));
}

#[tokio::test]
async fn status_undelivered_without_code() {
    let updates = status(include_str!("../fixtures/status_undelivered.txt")).await;
    assert_eq!(updates.len(), 1);
    let error = updates[0].error.clone().unwrap();
    assert_eq!(error.code, "undelivered");
    assert!(!error.message.is_empty());
    assert_status(&updates[0], MessageStatus::Failed, Some(error));
}

#[tokio::test]
async fn status_error_message_is_passed_through() {
    let body =
        include_str!("../fixtures/status_undelivered.txt").to_owned() + "&ErrorCode=30008&ErrorMessage=Unknown+error";
    let updates = status(&body).await;
    let error = MessageError { code: "30008".into(), message: "Unknown error".into() };
    assert_status(&updates[0], MessageStatus::Failed, Some(error));
}

#[tokio::test]
async fn status_queued_and_other_interim_statuses_are_ignored() {
    let outcome = ingest("status", include_str!("../fixtures/status_queued.txt")).await;
    assert!(outcome.events.is_empty());
    assert_eq!(outcome.response.status, 200);
    for interim in ["accepted", "scheduled", "sending", "canceled", "partially_delivered"] {
        let body = include_str!("../fixtures/status_queued.txt").replace("=queued", &format!("={interim}"));
        assert!(ingest("status", &body).await.events.is_empty(), "{interim}");
    }
}

async fn ingest_err(route: &str, body: &str) -> (ProviderErrorKind, String) {
    let p = provider();
    let e = p.ingest(&line(&p, None), &signed(route, body)).await.unwrap_err();
    (e.kind, e.code)
}

#[tokio::test]
async fn signature_is_checked_before_any_field() {
    let p = provider();
    let l = line(&p, None);
    // Garbage and a foreign account, signed with another token: still only `invalid_signature`.
    for body in ["%%%", "AccountSid=ACffffffffffffffffffffffffffffffff&MessageSid=SM1", ""] {
        let req = signed_with("00000000000000000000000000000000", "", body);
        let e = p.ingest(&l, &req).await.unwrap_err();
        assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Unauthorized, "invalid_signature"));
    }
    let mut req = signed("", include_str!("../fixtures/inbound_text.txt"));
    req.headers.retain(|(k, _)| k != "x-twilio-signature");
    let e = p.ingest(&l, &req).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Unauthorized, "invalid_signature"));
    // Signed for the inbound route, replayed at the status route: the URL differs.
    let mut req = signed("", include_str!("../fixtures/status_sent.txt"));
    req.public_url = super::hook_url("status");
    req.route = "status".into();
    assert_eq!(p.ingest(&l, &req).await.unwrap_err().kind, ProviderErrorKind::Unauthorized);
}

#[tokio::test]
async fn account_mismatch_unknown_route_and_bad_payloads_are_permanent() {
    let foreign = include_str!("../fixtures/inbound_text.txt")
        .replace("AC0123456789abcdef0123456789abcdef", "ACffffffffffffffffffffffffffffffff");
    assert_eq!(ingest_err("", &foreign).await, (ProviderErrorKind::Permanent, "account_mismatch".into()));
    let foreign_status = include_str!("../fixtures/status_sent.txt")
        .replace("AC0123456789abcdef0123456789abcdef", "ACffffffffffffffffffffffffffffffff");
    assert_eq!(ingest_err("status", &foreign_status).await, (ProviderErrorKind::Permanent, "account_mismatch".into()));
    let text = include_str!("../fixtures/inbound_text.txt");
    assert_eq!(ingest_err("other", text).await, (ProviderErrorKind::Permanent, "unknown_route".into()));
    let invalid = (ProviderErrorKind::Permanent, "invalid_payload".to_owned());
    assert_eq!(ingest_err("", &text.replace("MessageSid=", "Xsid=")).await, invalid);
    assert_eq!(ingest_err("", &text.replace("NumMedia=0", "NumMedia=two")).await, invalid);
    assert_eq!(ingest_err("", &text.replace("NumMedia=0", "NumMedia=1")).await, invalid);
    assert_eq!(ingest_err("", &text.replace("From=whatsapp", "From=nope")).await.1, "invalid_payload");
    let location = include_str!("../fixtures/inbound_location.txt").replace("Latitude=37.7879277", "Latitude=north");
    assert_eq!(ingest_err("", &location).await, invalid);
    for bad in ["NaN", "inf", "91"] {
        let location =
            include_str!("../fixtures/inbound_location.txt").replace("Latitude=37.7879277", &format!("Latitude={bad}"));
        assert_eq!(ingest_err("", &location).await, invalid, "{bad}");
    }
    assert_eq!(ingest_err("status", "MessageSid=SM1").await, invalid);
    assert_eq!(ingest_err("", "").await, invalid);
}
