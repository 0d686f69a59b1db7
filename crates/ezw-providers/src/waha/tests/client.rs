//! Exact wire requests against the mock (sessions, sends, media) and error classification.

use std::time::Duration;

use ezw_core::model::{LifecycleState, Location, MediaKind, MediaRef, MessageContent, MessageKind, TemplateRef};
use ezw_core::ports::{LineProvider, ProviderErrorKind};
use serde_json::json;

use super::mock::{IdStyle, WahaMock};
use super::{harness, harness_with, line, outbound, ACCOUNT, API_KEY, HMAC_KEY, LINE_ID, SESSION};
use crate::waha::client::parse_error;

fn text(body: &str) -> MessageContent {
    MessageContent { body: Some(body.into()), ..MessageContent::default() }
}

fn media(kind: MediaKind, url: &str) -> MessageContent {
    MessageContent {
        media: Some(MediaRef {
            kind,
            url: Some(url.into()),
            attachment_id: None,
            provider_media_id: None,
            sha256: None,
            caption: Some("Your order".into()),
            filename: None,
            mime_type: None,
        }),
        ..MessageContent::default()
    }
}

async fn working() -> WahaMock {
    let mock = WahaMock::start(Some(API_KEY)).await;
    mock.add_session(SESSION, "WORKING", Some(ACCOUNT));
    mock
}

#[tokio::test]
async fn open_session_creates_the_session_with_the_signed_webhook_then_updates_it() {
    let mock = WahaMock::start(Some(API_KEY)).await;
    let h = harness();
    let created = line(&h.provider, &mock.url(), LifecycleState::Created);
    h.provider.open_session(&created).await.unwrap();
    // PUT finds nothing, so the session is created, not started (nothing to start it with).
    assert_eq!(mock.calls(), [format!("PUT /api/sessions/{SESSION}"), "POST /api/sessions".to_owned()]);
    let create = mock.exchanges()[1].json();
    assert_eq!(create["name"], SESSION);
    assert_eq!(create["start"], false);
    assert_eq!(
        create["config"],
        json!({
            "webhooks": [{
                "url": format!("https://ezw.example.com/hooks/waha/{LINE_ID}"),
                "events": ["session.status", "message", "message.ack"],
                "hmac": {"key": HMAC_KEY},
            }],
            "metadata": {"ezw.lineId": LINE_ID},
        })
    );
    assert_eq!(mock.status(SESSION).as_deref(), Some("STOPPED"));
    assert_eq!(mock.config(SESSION).unwrap(), create["config"]);
    // Taken again (a paired line this time): update in place and start with the stored credentials.
    mock.clear();
    let paired = line(&h.provider, &mock.url(), LifecycleState::Connected);
    h.provider.open_session(&paired).await.unwrap();
    assert_eq!(mock.calls(), [format!("PUT /api/sessions/{SESSION}"), format!("POST /api/sessions/{SESSION}/start")]);
    assert_eq!(mock.exchanges()[0].json(), json!({"config": create["config"]}));
    assert!(mock.exchanges().iter().all(|e| e.header("x-api-key") == Some(API_KEY)));
}

#[tokio::test]
async fn text_sends_go_to_send_text_and_the_receipt_is_the_ack_id() {
    let mock = working().await;
    let h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Connected);
    let receipt = h.provider.send(&line, &outbound(MessageKind::Text, text("Hello from EZW"))).await.unwrap();
    let e = &mock.exchanges()[0];
    assert_eq!((e.method.as_str(), e.path.as_str()), ("POST", "/api/sendText"));
    assert_eq!(e.json(), json!({"session": SESSION, "chatId": "972501234567@c.us", "text": "Hello from EZW"}));
    assert_eq!(e.header("x-api-key"), Some(API_KEY));
    assert_eq!(receipt.provider_message_id, "true_972501234567@c.us_3EB00000000000000001");
    // A reply names the quoted message.
    let mut reply = text("Yes");
    reply.reply_to = Some("false_972501234567@c.us_3EB0A1B2C3D4E5F60718".into());
    h.provider.send(&line, &outbound(MessageKind::Text, reply)).await.unwrap();
    assert_eq!(mock.exchanges()[1].json()["reply_to"], "false_972501234567@c.us_3EB0A1B2C3D4E5F60718");
}

#[tokio::test]
async fn every_engines_message_id_spelling_gives_the_same_receipt() {
    for style in [IdStyle::String, IdStyle::Serialized, IdStyle::Key] {
        let mock = working().await;
        mock.id_style(style);
        let h = harness();
        let line = line(&h.provider, &mock.url(), LifecycleState::Connected);
        let receipt = h.provider.send(&line, &outbound(MessageKind::Text, text("hi"))).await.unwrap();
        assert_eq!(receipt.provider_message_id, "true_972501234567@c.us_3EB00000000000000001", "{style:?}");
    }
}

#[tokio::test]
async fn media_goes_to_send_image_or_send_file_by_url() {
    let mock = working().await;
    let h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Connected);
    h.provider
        .send(&line, &outbound(MessageKind::Image, media(MediaKind::Image, "https://cdn.example.com/a.png?v=2")))
        .await
        .unwrap();
    let mut doc = media(MediaKind::Document, "https://cdn.example.com/download");
    let m = doc.media.as_mut().unwrap();
    m.filename = Some("invoice.pdf".into());
    m.mime_type = Some("application/pdf".into());
    doc.reply_to = Some("false_972501234567@c.us_3EB0A1B2C3D4E5F60718".into());
    h.provider.send(&line, &outbound(MessageKind::Document, doc)).await.unwrap();
    // Audio carries no caption on WhatsApp.
    h.provider
        .send(&line, &outbound(MessageKind::Audio, media(MediaKind::Audio, "https://cdn.example.com/v.ogg")))
        .await
        .unwrap();
    let e = mock.exchanges();
    assert_eq!(e[0].path, "/api/sendImage");
    assert_eq!(
        e[0].json(),
        json!({
            "session": SESSION,
            "chatId": "972501234567@c.us",
            "file": {"url": "https://cdn.example.com/a.png?v=2", "mimetype": "image/png"},
            "caption": "Your order",
        })
    );
    assert_eq!(e[1].path, "/api/sendFile");
    assert_eq!(
        e[1].json(),
        json!({
            "session": SESSION,
            "chatId": "972501234567@c.us",
            "file": {"url": "https://cdn.example.com/download", "mimetype": "application/pdf", "filename": "invoice.pdf"},
            "caption": "Your order",
            "reply_to": "false_972501234567@c.us_3EB0A1B2C3D4E5F60718",
        })
    );
    assert_eq!(e[2].path, "/api/sendFile");
    assert_eq!(e[2].json()["file"]["mimetype"], "audio/ogg");
    assert!(e[2].json().get("caption").is_none());
}

#[tokio::test]
async fn what_a_web_session_cannot_send_is_unsupported_without_a_call() {
    let mock = working().await;
    let h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Connected);
    let template = MessageContent {
        template: Some(TemplateRef { name: "order_update".into(), language: Some("en".into()), components: None }),
        ..MessageContent::default()
    };
    let location = MessageContent {
        location: Some(Location { latitude: 1.0, longitude: 2.0, name: None, address: None }),
        ..MessageContent::default()
    };
    let mut no_url = media(MediaKind::Image, "x");
    no_url.media.as_mut().unwrap().url = None;
    for (kind, content) in [
        (MessageKind::Template, template),
        (MessageKind::Location, location),
        (MessageKind::Image, no_url),
        (MessageKind::Text, MessageContent::default()),
    ] {
        let e = h.provider.send(&line, &outbound(kind, content)).await.unwrap_err();
        assert_eq!(e.kind, ProviderErrorKind::Unsupported, "{kind:?}");
    }
    assert!(mock.calls().is_empty());
}

#[test]
fn parse_error_classifies_every_answer() {
    let cases = [
        (429, None, json!({}), ProviderErrorKind::Retryable, "rate_limited"),
        (
            401,
            None,
            json!({"statusCode": 401, "message": "Unauthorized"}),
            ProviderErrorKind::LineUnavailable,
            "unauthorized",
        ),
        (403, None, json!({}), ProviderErrorKind::LineUnavailable, "unauthorized"),
        (
            404,
            None,
            json!({"statusCode": 404, "message": "Session \"x\" does not exist"}),
            ProviderErrorKind::LineUnavailable,
            "session_not_found",
        ),
        (
            422,
            None,
            json!({"statusCode": 422, "message": "Session status is not as expected", "status": "STARTING", "expected": ["WORKING"]}),
            ProviderErrorKind::LineUnavailable,
            "session_not_working",
        ),
        (
            422,
            None,
            json!({"statusCode": 422, "message": "Session 'x' already exists"}),
            ProviderErrorKind::Permanent,
            "http_422",
        ),
        (
            400,
            None,
            json!({"statusCode": 400, "message": ["chatId must be a string"]}),
            ProviderErrorKind::Permanent,
            "http_400",
        ),
        (
            500,
            Some("7"),
            json!({"statusCode": 500, "message": "Internal server error"}),
            ProviderErrorKind::Retryable,
            "http_500",
        ),
        (502, None, json!("<html>bad gateway</html>"), ProviderErrorKind::Retryable, "http_502"),
    ];
    for (status, retry_after, body, kind, code) in cases {
        let e = parse_error(status, retry_after, body.to_string().as_bytes());
        assert_eq!((e.kind, e.code.as_str()), (kind, code), "{status} {body}");
    }
    let limited = parse_error(429, Some("30"), b"{}");
    assert_eq!(limited.retry_after, Some(Duration::from_secs(30)));
    assert_eq!(parse_error(429, None, b"").retry_after, Some(Duration::from_secs(1)));
    assert_eq!(parse_error(500, Some("7"), b"").retry_after, Some(Duration::from_secs(7)));
    assert_eq!(parse_error(401, None, b"").line_state, Some(LifecycleState::AuthFailed));
    let validation = parse_error(400, None, br#"{"message": ["chatId must be a string", "text should not be empty"]}"#);
    assert!(validation.message.contains("chatId must be a string; text should not be empty"), "{}", validation.message);
}

#[tokio::test]
async fn sidecar_failures_are_classified_end_to_end() {
    let mock = working().await;
    let h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Connected);
    let message = outbound(MessageKind::Text, text("hi"));
    let send = || h.provider.send(&line, &message);
    mock.fail("/api/sendText", 500, json!({"statusCode": 500, "message": "boom"}));
    assert_eq!(send().await.unwrap_err().kind, ProviderErrorKind::Retryable);
    mock.fail("/api/sendText", 400, json!({"statusCode": 400, "message": ["chatId must be a string"]}));
    assert_eq!(send().await.unwrap_err().kind, ProviderErrorKind::Permanent);
    // The session is not working: hold the line's queue.
    mock.set_status(SESSION, "STARTING");
    let e = send().await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str(), e.line_state),
        (ProviderErrorKind::LineUnavailable, "session_not_working", None)
    );
    // A wrong API key: the line is held as auth_failed, the key never appears in the error.
    let wrong = WahaMock::start(Some("another-key")).await;
    wrong.add_session(SESSION, "WORKING", Some(ACCOUNT));
    let line = super::line(&h.provider, &wrong.url(), LifecycleState::Connected);
    let e = h.provider.send(&line, &outbound(MessageKind::Text, text("hi"))).await.unwrap_err();
    assert_eq!((e.kind, e.line_state), (ProviderErrorKind::LineUnavailable, Some(LifecycleState::AuthFailed)));
    assert!(!format!("{e:?} {e}").contains(API_KEY));
}

#[tokio::test]
async fn a_timeout_after_the_send_left_is_ambiguous_and_an_unreachable_sidecar_retryable() {
    let mock = working().await;
    mock.delay("/api/sendText", Duration::from_secs(3));
    let h = harness_with(reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap());
    let l = line(&h.provider, &mock.url(), LifecycleState::Connected);
    let e = h.provider.send(&l, &outbound(MessageKind::Text, text("hi"))).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Ambiguous, "timeout"));
    // Idempotent calls (the session status) are retryable after a timeout.
    mock.delay(&format!("/api/sessions/{SESSION}/start"), Duration::from_secs(3));
    let e = h.provider.reconnect(&l).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Retryable, "timeout"));
    // Nothing listens: the request never left.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let l = line(&h.provider, &url, LifecycleState::Connected);
    let e = h.provider.send(&l, &outbound(MessageKind::Text, text("hi"))).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Retryable, "connect_error"));
}

#[tokio::test]
async fn inbound_media_is_fetched_from_the_sidecar_only() {
    let mock = working().await;
    mock.add_file("ezw-support/3EB0IMAGE.jpeg", "image/jpeg", b"\xff\xd8\xff\xe0jpeg");
    let h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Connected);
    let mut media =
        media(MediaKind::Image, &format!("{}/api/files/ezw-support/3EB0IMAGE.jpeg", mock.url())).media.unwrap();
    let fetched = h.provider.fetch_media(&line, &media).await.unwrap();
    assert_eq!((fetched.bytes.as_slice(), fetched.content_type.as_str()), (&b"\xff\xd8\xff\xe0jpeg"[..], "image/jpeg"));
    assert_eq!(mock.exchanges()[0].header("x-api-key"), Some(API_KEY));
    // Another origin never gets the API key.
    media.url = Some("https://attacker.example.com/api/files/x.jpeg".into());
    let e = h.provider.fetch_media(&line, &media).await.unwrap_err();
    assert_eq!(e.code, "untrusted_media_url");
    assert_eq!(mock.calls().len(), 1);
}

#[tokio::test]
async fn logout_forgets_the_credentials_and_stops_the_session() {
    let mock = working().await;
    let h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Connected);
    h.provider.logout(&line).await.unwrap();
    assert_eq!(
        mock.calls(),
        [format!("POST /api/sessions/{SESSION}/logout"), format!("POST /api/sessions/{SESSION}/stop")]
    );
    assert_eq!(mock.status(SESSION).as_deref(), Some("STOPPED"));
    // A session the sidecar never had has nothing to forget.
    let empty = WahaMock::start(Some(API_KEY)).await;
    let line = super::line(&h.provider, &empty.url(), LifecycleState::Connected);
    h.provider.logout(&line).await.unwrap();
}
