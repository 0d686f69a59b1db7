//! Exact send requests and error classification against the local mock.

use std::time::Duration;

use ezw_core::model::{CtaUrlButton, LifecycleState, MediaKind, MediaRef, MessageContent, MessageKind, TemplateRef};
use ezw_core::ports::{LineProvider, OutboundMessage, ProviderError, ProviderErrorKind};
use serde_json::{json, Value};

use super::super::client::parse_error;
use super::{http_with_timeout, line, outbound, provider, provider_with, PNID, TOKEN};
use crate::mock::{MockServer, Reply};

const WAMID: &str = "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA";

fn accepted(status: Option<&str>) -> Reply {
    let mut message = json!({"id": WAMID});
    if let Some(s) = status {
        message["message_status"] = s.into();
    }
    Reply::json(
        200,
        json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
            "messages": [message],
        }),
    )
}

/// Sends `message`, asserts the one request's method, path and headers, and returns its body.
async fn sent_body(message: OutboundMessage) -> Value {
    let mock = MockServer::start().await;
    mock.reply(accepted(None));
    let receipt = provider().send(&line(&mock.url()), &message).await.expect("send accepted");
    assert_eq!(receipt.provider_message_id, WAMID);
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/v23.0/{PNID}/messages"));
    assert_eq!(r.query, None);
    assert_eq!(r.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

fn text(body: &str) -> MessageContent {
    MessageContent { body: Some(body.into()), ..MessageContent::default() }
}

fn envelope(kind: &str, object: Value) -> Value {
    let mut v =
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234", "type": kind});
    v[kind] = object;
    v
}

fn media(kind: MediaKind, caption: Option<&str>, filename: Option<&str>) -> MessageContent {
    MessageContent {
        body: caption.map(str::to_owned),
        media: Some(MediaRef {
            kind,
            url: Some("https://cdn.example.com/file.bin".into()),
            attachment_id: None,
            provider_media_id: None,
            sha256: None,
            caption: caption.map(str::to_owned),
            filename: filename.map(str::to_owned),
            mime_type: None,
        }),
        ..MessageContent::default()
    }
}

#[tokio::test]
async fn text_with_and_without_link_preview() {
    let body = sent_body(outbound(MessageKind::Text, text("Hello there"))).await;
    assert_eq!(body, envelope("text", json!({"body": "Hello there", "preview_url": false})));
    let body = sent_body(outbound(MessageKind::Text, text("Track it at https://ship.example/t/1"))).await;
    assert_eq!(body, envelope("text", json!({"body": "Track it at https://ship.example/t/1", "preview_url": true})));
}

#[tokio::test]
async fn reply_carries_context() {
    let content = MessageContent { reply_to: Some("wamid.original".into()), ..text("Sure") };
    let body = sent_body(outbound(MessageKind::Text, content)).await;
    let mut expected = envelope("text", json!({"body": "Sure", "preview_url": false}));
    expected["context"] = json!({"message_id": "wamid.original"});
    assert_eq!(body, expected);
}

#[tokio::test]
async fn cta_url_button() {
    let content = MessageContent {
        cta_url_button: Some(CtaUrlButton {
            display_text: "Open order".into(),
            url: "https://shop.example/o/1".into(),
        }),
        ..text("Your order shipped")
    };
    let body = sent_body(outbound(MessageKind::Text, content)).await;
    assert_eq!(
        body,
        envelope(
            "interactive",
            json!({
                "type": "cta_url",
                "body": {"text": "Your order shipped"},
                "action": {"name": "cta_url", "parameters": {"display_text": "Open order", "url": "https://shop.example/o/1"}},
            })
        )
    );
}

#[tokio::test]
async fn media_by_link() {
    let link = "https://cdn.example.com/file.bin";
    let cases = [
        (
            MessageKind::Image,
            media(MediaKind::Image, Some("A photo"), None),
            "image",
            json!({"link": link, "caption": "A photo"}),
        ),
        (MessageKind::Image, media(MediaKind::Image, None, None), "image", json!({"link": link})),
        (
            MessageKind::Video,
            media(MediaKind::Video, Some("A clip"), None),
            "video",
            json!({"link": link, "caption": "A clip"}),
        ),
        (MessageKind::Audio, media(MediaKind::Audio, None, None), "audio", json!({"link": link})),
        (
            MessageKind::Document,
            media(MediaKind::Document, Some("Your invoice"), Some("invoice.pdf")),
            "document",
            json!({"link": link, "caption": "Your invoice", "filename": "invoice.pdf"}),
        ),
    ];
    for (kind, content, name, object) in cases {
        assert_eq!(sent_body(outbound(kind, content)).await, envelope(name, object), "{name}");
    }
}

#[tokio::test]
async fn templates() {
    let components = json!([{"type": "body", "parameters": [{"type": "text", "text": "Ada"}]}]);
    let content = MessageContent {
        template: Some(TemplateRef {
            name: "order_update".into(),
            language: Some("pt_BR".into()),
            components: Some(components.clone()),
        }),
        ..MessageContent::default()
    };
    let body = sent_body(outbound(MessageKind::Template, content)).await;
    assert_eq!(
        body,
        envelope(
            "template",
            json!({"name": "order_update", "language": {"policy": "deterministic", "code": "pt_BR"}, "components": components})
        )
    );
    let content = MessageContent {
        template: Some(TemplateRef { name: "hello_world".into(), language: None, components: None }),
        ..MessageContent::default()
    };
    let body = sent_body(outbound(MessageKind::Template, content)).await;
    assert_eq!(
        body,
        envelope("template", json!({"name": "hello_world", "language": {"policy": "deterministic", "code": "en_US"}}))
    );
}

#[tokio::test]
async fn held_for_quality_assessment_is_still_accepted() {
    let mock = MockServer::start().await;
    mock.reply(accepted(Some("held_for_quality_assessment")));
    let receipt = provider().send(&line(&mock.url()), &outbound(MessageKind::Text, text("hi"))).await.unwrap();
    assert_eq!(receipt.provider_message_id, WAMID);
}

#[tokio::test]
async fn unsendable_messages_make_no_request() {
    let mock = MockServer::start().await;
    let l = line(&mock.url());
    let no_body = provider().send(&l, &outbound(MessageKind::Text, MessageContent::default())).await.unwrap_err();
    assert_eq!((no_body.kind, no_body.code.as_str()), (ProviderErrorKind::Permanent, "invalid_message"));
    let sticker = provider().send(&l, &outbound(MessageKind::Sticker, text("x"))).await.unwrap_err();
    assert_eq!(sticker.kind, ProviderErrorKind::Unsupported);
    let mut upload = media(MediaKind::Image, None, None);
    upload.media.as_mut().unwrap().url = None;
    let upload = provider().send(&l, &outbound(MessageKind::Image, upload)).await.unwrap_err();
    assert_eq!(upload.kind, ProviderErrorKind::Unsupported);
    let mut broken = l.clone();
    broken.provider_config = json!({"phoneNumberId": PNID});
    let e = provider().send(&broken, &outbound(MessageKind::Text, text("hi"))).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "invalid_line_config"));
    assert!(mock.requests().is_empty());
}

async fn send_error(reply: Reply) -> ProviderError {
    let mock = MockServer::start().await;
    mock.reply(reply);
    let e = provider().send(&line(&mock.url()), &outbound(MessageKind::Text, text("hi"))).await.unwrap_err();
    assert_eq!(mock.requests().len(), 1);
    assert!(!e.message.contains(TOKEN) && !format!("{e:?} {e}").contains(TOKEN));
    e
}

fn meta_error(code: i64, message: &str, details: Option<&str>) -> Value {
    let mut error = json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEfGh"});
    if let Some(d) = details {
        error["error_data"] = json!({"messaging_product": "whatsapp", "details": d});
    }
    json!({"error": error})
}

#[tokio::test]
async fn rate_limits_are_retryable_with_delay() {
    let e = send_error(Reply::json(400, meta_error(130_429, "(#130429) Rate limit hit", None))).await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Retryable, "130429"));
    assert_eq!(e.retry_after, Some(Duration::from_secs(60)));
    let e =
        send_error(Reply::json(429, meta_error(130_429, "(#130429) Rate limit hit", None)).header("retry-after", "17"))
            .await;
    assert_eq!(
        (e.kind, e.code.as_str(), e.retry_after),
        (ProviderErrorKind::Retryable, "130429", Some(Duration::from_secs(17)))
    );
    let e = send_error(Reply::json(
        400,
        meta_error(131_056, "(#131056) (Business Account, Consumer Account) pair rate limit hit", None),
    ))
    .await;
    assert_eq!(
        (e.kind, e.code.as_str(), e.retry_after),
        (ProviderErrorKind::Retryable, "131056", Some(Duration::from_secs(6)))
    );
    for code in [4, 80_007] {
        let e = parse_error(400, None, meta_error(code, "rate limit", None).to_string().as_bytes());
        assert_eq!(
            (e.kind, e.code.clone(), e.retry_after),
            (ProviderErrorKind::Retryable, code.to_string(), Some(Duration::from_secs(60)))
        );
    }
}

#[tokio::test]
async fn closed_customer_service_window_is_permanent() {
    let e = send_error(Reply::json(
        400,
        meta_error(
            131_047,
            "Re-engagement message",
            Some("Message failed to send because more than 24 hours have passed since the customer last replied to this number."),
        ),
    ))
    .await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "131047"));
    assert!(e.message.contains("24-hour customer service window is closed"), "{}", e.message);
    assert!(e.message.contains("template"), "{}", e.message);
    assert!(e.message.contains("more than 24 hours have passed"), "{}", e.message);
}

#[tokio::test]
async fn undeliverable_and_other_4xx_are_permanent_with_meta_code() {
    let e = send_error(Reply::json(400, meta_error(131_026, "Message Undeliverable.", None))).await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "131026"));
    assert!(e.message.contains("Message Undeliverable."));
    let e = send_error(Reply::json(
        400,
        meta_error(100, "(#100) Invalid parameter", Some("Parameter 'to' is not a valid phone number")),
    ))
    .await;
    assert_eq!((e.kind, e.code.as_str(), e.retry_after), (ProviderErrorKind::Permanent, "100", None));
    assert!(e.message.contains("(#100) Invalid parameter"), "{}", e.message);
    assert!(e.message.contains("Parameter 'to' is not a valid phone number"), "{}", e.message);
    assert_eq!(e.line_state, None);
}

#[tokio::test]
async fn expired_token_marks_the_line_auth_failed() {
    let body = json!({"error": {
        "message": "Error validating access token: Session has expired on Friday, 20-Nov-26 10:00:00 PST.",
        "type": "OAuthException", "code": 190, "error_subcode": 463, "fbtrace_id": "Az8or2yhqkZfEZ"}});
    let e = send_error(Reply::json(401, body)).await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::LineUnavailable, "190"));
    assert_eq!(e.line_state, Some(LifecycleState::AuthFailed));
}

#[test]
fn line_wide_conditions_hold_the_line() {
    for (code, state) in
        [(131_031, LifecycleState::Blocked), (368, LifecycleState::Restricted), (133_010, LifecycleState::Blocked)]
    {
        let e = parse_error(400, None, meta_error(code, "line-wide", None).to_string().as_bytes());
        assert_eq!(e.kind, ProviderErrorKind::LineUnavailable, "{code}");
        assert_eq!(e.line_state, Some(state), "{code}");
        assert_eq!(e.code, code.to_string());
    }
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let e = send_error(Reply::bytes(500, "text/html", b"<html>oops</html>")).await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Retryable, "http_500"));
    let e = send_error(Reply::json(503, meta_error(131_000, "Something went wrong", None)).header("retry-after", "5"))
        .await;
    assert_eq!(
        (e.kind, e.code.as_str(), e.retry_after),
        (ProviderErrorKind::Retryable, "131000", Some(Duration::from_secs(5)))
    );
    let e = send_error(Reply::bytes(429, "text/plain", b"slow down")).await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Retryable, "http_429"));
    let e = parse_error(404, None, b"");
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "http_404"));
}

#[tokio::test]
async fn token_never_appears_in_error_messages() {
    let e = send_error(Reply::json(400, meta_error(100, &format!("bad token {TOKEN}"), Some(TOKEN)))).await;
    assert!(e.message.contains("[redacted]"), "{}", e.message);
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let e = provider().send(&line(&url), &outbound(MessageKind::Text, text("hi"))).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Retryable, "connect_error"), "{e:?}");
}

#[tokio::test]
async fn timeout_after_sending_is_ambiguous() {
    // Accepts connections and reads nothing back: the request is sent and never answered.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let p = provider_with(http_with_timeout(Duration::from_millis(300)));
    let e = p.send(&line(&url), &outbound(MessageKind::Text, text("hi"))).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Ambiguous, "timeout"), "{e:?}");
    server.abort();
}

#[tokio::test]
async fn a_2xx_without_a_message_id_is_ambiguous() {
    let e = send_error(Reply::json(200, json!({"messaging_product": "whatsapp", "messages": []}))).await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Ambiguous, "invalid_response"));
}
