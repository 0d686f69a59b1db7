//! Webhook verification and normalisation against Meta's documented payloads.

use ezw_core::model::{InteractiveReply, Location, MediaKind, MessageKind, MessageStatus, Reaction};
use ezw_core::ports::{InboundRequest, LineProvider, NewInbound, ProviderErrorKind, ProviderEvent, StatusUpdate};
use ezw_core::Timestamp;

use super::super::config::MetaConfig;
use super::super::ingest::{ingest, signature, verify_signature, SIGNATURE_HEADER};
use super::{cipher, line, provider, APP_SECRET, PNID, VERIFY_TOKEN};

const SENDER_WAMID: &str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=";

fn config() -> MetaConfig {
    MetaConfig::from_stored(&line("https://graph.facebook.com").provider_config, &cipher()).unwrap()
}

fn signed_post(body: &str) -> InboundRequest {
    InboundRequest {
        method: "POST".into(),
        public_url: "https://ezw.example/hooks/meta/line_test".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (SIGNATURE_HEADER.into(), signature(APP_SECRET.as_bytes(), body.as_bytes())),
        ],
        body: body.as_bytes().to_vec(),
        ..InboundRequest::default()
    }
}

fn events(body: &str) -> Vec<ProviderEvent> {
    let l = line("https://graph.facebook.com");
    let outcome = ingest(&l, &config(), &signed_post(body)).expect("ingest");
    assert_eq!((outcome.response.status, outcome.response.body.as_str()), (200, "{}"));
    assert_eq!(outcome.response.content_type, "application/json");
    outcome.events
}

fn one_inbound(body: &str) -> NewInbound {
    let mut ev = events(body);
    assert_eq!(ev.len(), 1, "{ev:?}");
    match ev.remove(0) {
        ProviderEvent::Inbound(m) => {
            assert_eq!(m.organization_id.as_str(), "org_test");
            assert_eq!(m.line_id.as_str(), "line_test");
            assert_eq!(m.from.as_str(), "+16505551234");
            assert_eq!(m.profile_name.as_deref(), Some("Sheena Nelson"));
            *m
        }
        other => panic!("expected an inbound message, got {other:?}"),
    }
}

fn one_status(body: &str) -> StatusUpdate {
    let mut ev = events(body);
    assert_eq!(ev.len(), 1, "{ev:?}");
    match ev.remove(0) {
        ProviderEvent::Status(s) => {
            assert_eq!(s.line_id.as_str(), "line_test");
            assert_eq!(s.provider_message_id, "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA");
            s
        }
        other => panic!("expected a status, got {other:?}"),
    }
}

#[test]
fn published_signature_vector() {
    let expected = "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914";
    assert_eq!(signature(b"secret", b"test"), expected);
    assert!(verify_signature(b"secret", Some(expected), b"test").is_ok());
    for bad in [
        Some("sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0915"),
        Some("0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"),
        Some("sha1=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"),
        Some(""),
        None,
    ] {
        let e = verify_signature(b"secret", bad, b"test").unwrap_err();
        assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Unauthorized, "invalid_signature"), "{bad:?}");
    }
    assert!(verify_signature(b"other", Some(expected), b"test").is_err());
    assert!(verify_signature(b"secret", Some(expected), b"test ").is_err());
}

#[test]
fn wrong_or_missing_signature_is_refused_before_parsing() {
    let l = line("https://graph.facebook.com");
    let body = include_str!("../fixtures/text.json");
    let mut missing = signed_post(body);
    missing.headers.retain(|(k, _)| k != SIGNATURE_HEADER);
    let mut wrong = signed_post(body);
    wrong.headers[1].1 = signature(b"not the app secret", body.as_bytes());
    let mut tampered = signed_post(body);
    tampered.body = body.replace("another color", "another colour").into_bytes();
    // Garbage with a bad signature is Unauthorized, not a parse error.
    let mut garbage = signed_post("not json");
    garbage.headers[1].1 = "sha256=00".into();
    for request in [missing, wrong, tampered, garbage] {
        let e = ingest(&l, &config(), &request).unwrap_err();
        assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Unauthorized, "invalid_signature"));
    }
    // A correctly signed body that is not the webhook JSON.
    for body in ["not json", r#"{"entry":[]}"#, "[]"] {
        let e = ingest(&l, &config(), &signed_post(body)).unwrap_err();
        assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "invalid_payload"), "{body}");
    }
}

#[tokio::test]
async fn get_challenge_is_answered_only_with_the_verify_token() {
    let l = line("https://graph.facebook.com");
    let get = |mode: &str, token: &str| InboundRequest {
        method: "GET".into(),
        query: vec![
            ("hub.mode".into(), mode.into()),
            ("hub.challenge".into(), "1158201444".into()),
            ("hub.verify_token".into(), token.into()),
        ],
        ..InboundRequest::default()
    };
    let ok = provider().ingest(&l, &get("subscribe", VERIFY_TOKEN)).await.unwrap();
    assert!(ok.events.is_empty());
    assert_eq!(ok.response.status, 200);
    assert_eq!(ok.response.content_type, "text/plain");
    assert_eq!(ok.response.body, "1158201444");
    for request in [
        get("subscribe", "wrong-token"),
        get("subscribe", ""),
        get("unsubscribe", VERIFY_TOKEN),
        InboundRequest { method: "GET".into(), ..InboundRequest::default() },
    ] {
        let e = provider().ingest(&l, &request).await.unwrap_err();
        assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Unauthorized, "invalid_verify_token"));
    }
}

#[tokio::test]
async fn provider_ingest_verifies_and_normalises() {
    let l = line("https://graph.facebook.com");
    let outcome = provider().ingest(&l, &signed_post(include_str!("../fixtures/text.json"))).await.unwrap();
    assert_eq!(outcome.events.len(), 1);
    let mut unsigned = signed_post(include_str!("../fixtures/text.json"));
    unsigned.headers.clear();
    assert_eq!(provider().ingest(&l, &unsigned).await.unwrap_err().kind, ProviderErrorKind::Unauthorized);
}

#[test]
fn text_and_reply_context() {
    let m = one_inbound(include_str!("../fixtures/text.json"));
    assert_eq!(m.provider_message_id, SENDER_WAMID);
    assert_eq!(m.kind, MessageKind::Text);
    assert_eq!(m.content.body.as_deref(), Some("Does it come in another color?"));
    assert_eq!(m.content.reply_to, None);
    assert_eq!(m.received_at, Timestamp::from_unix_ms(1_749_416_383_000));
    let m = one_inbound(include_str!("../fixtures/text_reply.json"));
    assert_eq!(m.content.body.as_deref(), Some("Yes, that one please"));
    assert_eq!(m.content.reply_to.as_deref(), Some("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA"));
}

#[test]
fn media_messages() {
    let cases = [
        (include_str!("../fixtures/image.json"), MessageKind::Image, MediaKind::Image, "image/jpeg", Some("Taj Mahal")),
        (
            include_str!("../fixtures/video.json"),
            MessageKind::Video,
            MediaKind::Video,
            "video/mp4",
            Some("My vacation video"),
        ),
        (include_str!("../fixtures/audio.json"), MessageKind::Audio, MediaKind::Audio, "audio/ogg; codecs=opus", None),
        (
            include_str!("../fixtures/document.json"),
            MessageKind::Document,
            MediaKind::Document,
            "application/pdf",
            Some("Receipt for your order"),
        ),
    ];
    for (body, kind, media_kind, mime, caption) in cases {
        let m = one_inbound(body);
        assert_eq!(m.kind, kind);
        assert_eq!(m.received_at, Timestamp::from_unix_ms(1_744_344_496_000));
        let media = m.content.media.clone().expect("media");
        assert_eq!(media.kind, media_kind);
        assert_eq!(media.mime_type.as_deref(), Some(mime));
        assert_eq!(media.caption.as_deref(), caption);
        assert_eq!(m.content.body.as_deref(), caption);
        assert!(media.provider_media_id.is_some() && media.sha256.is_some());
        assert_eq!((media.url, media.attachment_id), (None, None));
        let filename = (kind == MessageKind::Document).then_some("receipt.pdf");
        assert_eq!(media.filename.as_deref(), filename);
    }
    let image = one_inbound(include_str!("../fixtures/image.json")).content.media.unwrap();
    assert_eq!(image.provider_media_id.as_deref(), Some("1003383421387256"));
    assert_eq!(image.sha256.as_deref(), Some("SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI="));
}

#[test]
fn sticker_location_contacts() {
    let m = one_inbound(include_str!("../fixtures/sticker.json"));
    assert_eq!(m.kind, MessageKind::Sticker);
    assert_eq!(m.content.body, None);
    let media = m.content.media.unwrap();
    assert_eq!(media.kind, MediaKind::Image);
    assert_eq!(media.provider_media_id.as_deref(), Some("1003383421387257"));
    assert_eq!(media.mime_type.as_deref(), Some("image/webp"));

    let m = one_inbound(include_str!("../fixtures/location.json"));
    assert_eq!(m.kind, MessageKind::Location);
    assert_eq!(
        m.content.location,
        Some(Location {
            latitude: 37.44221496582,
            longitude: -122.16165924072,
            name: Some("Philz Coffee".into()),
            address: Some("101 Forest Ave, Palo Alto, CA 94301".into()),
        })
    );

    let m = one_inbound(include_str!("../fixtures/contacts.json"));
    assert_eq!(m.kind, MessageKind::Contacts);
    let contacts = m.content.contacts.unwrap();
    assert_eq!(contacts[0]["name"]["formatted_name"], "Lucía Gómez");
    assert_eq!(contacts[0]["phones"][0]["wa_id"], "19835552319");
}

#[test]
fn interactive_replies_buttons_and_reactions() {
    let context = Some("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJGMzEyNzhENTZDMzNGODlDRDgA");
    let m = one_inbound(include_str!("../fixtures/interactive_button_reply.json"));
    assert_eq!(m.kind, MessageKind::Interactive);
    assert_eq!(m.content.body.as_deref(), Some("Cancel"));
    assert_eq!(m.content.reply_to.as_deref(), context);
    assert_eq!(
        m.content.interactive_reply,
        Some(InteractiveReply {
            kind: "button_reply".into(),
            id: "cancel-button".into(),
            title: "Cancel".into(),
            description: None
        })
    );

    let m = one_inbound(include_str!("../fixtures/interactive_list_reply.json"));
    assert_eq!(m.kind, MessageKind::Interactive);
    assert_eq!(m.content.body.as_deref(), Some("Priority Mail Express"));
    assert_eq!(m.content.reply_to.as_deref(), context);
    assert_eq!(
        m.content.interactive_reply,
        Some(InteractiveReply {
            kind: "list_reply".into(),
            id: "priority_express".into(),
            title: "Priority Mail Express".into(),
            description: Some("Next Day to 2 Days".into()),
        })
    );

    let m = one_inbound(include_str!("../fixtures/button.json"));
    assert_eq!(m.kind, MessageKind::Interactive);
    assert_eq!(m.content.body.as_deref(), Some("Unsubscribe"));
    assert_eq!(m.content.reply_to.as_deref(), Some("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJFNjk2OTMwNEZCQjhGMzUyQUYA"));
    assert_eq!(
        m.content.interactive_reply,
        Some(InteractiveReply {
            kind: "button".into(),
            id: "Unsubscribe".into(),
            title: "Unsubscribe".into(),
            description: None
        })
    );

    let m = one_inbound(include_str!("../fixtures/reaction.json"));
    assert_eq!(m.kind, MessageKind::Reaction);
    assert_eq!(m.content.body, None);
    assert_eq!(
        m.content.reaction,
        Some(Reaction {
            message_id: "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0RTJEOTc2ODVERUY5RDlGNkYA".into(),
            emoji: "👍".into()
        })
    );
}

#[test]
fn unknown_types_are_kept_as_unsupported() {
    let m = one_inbound(include_str!("../fixtures/unsupported.json"));
    assert_eq!(m.kind, MessageKind::Unsupported);
    assert_eq!(m.provider_message_id, "wamid.HBgLMTQyMDU1NTA3NDkVAgASGBI5N0MwRjg0RTVBNUI1RDA2OTkA");
    assert_eq!(m.content.body, None);
    let order = include_str!("../fixtures/text.json")
        .replace(r#""type": "text""#, r#""type": "order""#)
        .replace(r#""text": {"#, r#""order": {"catalog_id": "194836987003835", "#);
    assert_eq!(one_inbound(&order).kind, MessageKind::Unsupported);
}

#[test]
fn statuses() {
    for (body, status, secs) in [
        (include_str!("../fixtures/status_sent.json"), MessageStatus::Sent, 1_750_263_773),
        (include_str!("../fixtures/status_delivered.json"), MessageStatus::Delivered, 1_750_263_775),
        (include_str!("../fixtures/status_read.json"), MessageStatus::Read, 1_750_263_801),
    ] {
        let s = one_status(body);
        assert_eq!(s.status, status);
        assert_eq!(s.at, Timestamp::from_unix_ms(secs * 1000));
        assert_eq!(s.error, None);
    }
    let s = one_status(include_str!("../fixtures/status_failed.json"));
    assert_eq!(s.status, MessageStatus::Failed);
    assert_eq!(s.at, Timestamp::from_unix_ms(1_744_344_496_000));
    let error = s.error.unwrap();
    assert_eq!(error.code, "131049");
    assert_eq!(
        error.message,
        "This message was not delivered to maintain healthy ecosystem engagement.: In order to maintain a healthy \
         ecosystem engagement, the message failed to be delivered."
    );
    // Statuses EZW does not track are skipped.
    let deleted = include_str!("../fixtures/status_read.json").replace(r#""status": "read""#, r#""status": "deleted""#);
    assert!(events(&deleted).is_empty());
}

#[test]
fn value_level_errors_produce_no_event() {
    assert!(events(include_str!("../fixtures/value_errors.json")).is_empty());
}

#[test]
fn other_numbers_and_fields_are_skipped_and_order_is_kept() {
    let other_number = include_str!("../fixtures/text.json").replace(PNID, "999999999999");
    assert!(events(&other_number).is_empty());
    let other_field =
        include_str!("../fixtures/text.json").replace(r#""field": "messages""#, r#""field": "account_update""#);
    assert!(events(&other_field).is_empty());

    // Two entries (one for another number) and two changes: events keep payload order.
    let text: serde_json::Value = serde_json::from_str(include_str!("../fixtures/text.json")).unwrap();
    let read: serde_json::Value = serde_json::from_str(include_str!("../fixtures/status_read.json")).unwrap();
    let image: serde_json::Value = serde_json::from_str(include_str!("../fixtures/image.json")).unwrap();
    let mut foreign = image["entry"][0].clone();
    foreign["changes"][0]["value"]["metadata"]["phone_number_id"] = "999".into();
    let combined = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "102290129340398", "changes": [read["entry"][0]["changes"][0], text["entry"][0]["changes"][0]]},
            foreign,
            image["entry"][0],
        ],
    });
    let ev = events(&combined.to_string());
    assert_eq!(ev.len(), 3);
    assert!(matches!(&ev[0], ProviderEvent::Status(s) if s.status == MessageStatus::Read));
    assert!(matches!(&ev[1], ProviderEvent::Inbound(m) if m.kind == MessageKind::Text));
    assert!(matches!(&ev[2], ProviderEvent::Inbound(m) if m.kind == MessageKind::Image));
}

#[test]
fn unparsable_senders_are_skipped_and_profile_falls_back() {
    let bad_sender = include_str!("../fixtures/text.json").replace(r#""from": "16505551234""#, r#""from": "abc""#);
    assert!(events(&bad_sender).is_empty());
    let other_wa_id = include_str!("../fixtures/text.json").replace(r#""wa_id": "16505551234""#, r#""wa_id": "1""#);
    let m = one_inbound(&other_wa_id);
    assert_eq!(m.profile_name.as_deref(), Some("Sheena Nelson"));
}
