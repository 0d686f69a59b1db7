//! Exact wire requests and error classification against the local vendor mock.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ezw_core::model::{CtaUrlButton, LifecycleState, MediaKind, MediaRef, MessageContent, MessageKind, TemplateRef};
use ezw_core::ports::{LineProvider, ProviderError, ProviderErrorKind, ProviderHealth};
use serde_json::json;

use super::{cipher, line, outbound, provider, provider_with, ACCOUNT_SID, AUTH_TOKEN};
use crate::mock::{MockServer, Reply};
use crate::twilio::client::{parse_error, Client};
use crate::twilio::TwilioConfig;

const SID: &str = "SM0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const STATUS_CALLBACK: &str =
    "https://ezw.example.com/hooks/twilio/line_01TWILIOTEST/status?message_id=msg_01TWILIOTEST";

fn created() -> Reply {
    Reply::json(
        201,
        json!({
            "account_sid": ACCOUNT_SID, "api_version": "2010-04-01", "body": "Hello",
            "date_created": "Thu, 01 Jan 2026 00:00:00 +0000", "date_sent": null,
            "date_updated": "Thu, 01 Jan 2026 00:00:00 +0000", "direction": "outbound-api",
            "error_code": null, "error_message": null, "from": "whatsapp:+14155238886",
            "messaging_service_sid": null, "num_media": "0", "num_segments": "1", "price": null,
            "price_unit": null, "sid": SID, "status": "queued",
            "subresource_uris": {"media": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{SID}/Media.json")},
            "to": "whatsapp:+14155550100", "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{SID}.json"),
        }),
    )
}

fn basic_auth() -> String {
    format!("Basic {}", STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}")))
}

fn text() -> MessageContent {
    MessageContent { body: Some("Hello".into()), ..MessageContent::default() }
}

/// Sends `content` through a mock answering `reply`; returns the result and the one request.
async fn send(
    kind: MessageKind,
    content: MessageContent,
    reply: Reply,
) -> (Result<String, ProviderError>, Vec<(String, String)>) {
    let mock = MockServer::start().await;
    mock.reply(reply);
    let p = provider();
    let result = p.send(&line(&p, Some(&mock.url())), &outbound(kind, content)).await.map(|r| r.provider_message_id);
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"));
    assert_eq!(r.query, None);
    assert_eq!(r.header("authorization"), Some(basic_auth().as_str()));
    assert_eq!(r.header("content-type"), Some("application/x-www-form-urlencoded"));
    (result, r.form())
}

fn fields(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out = vec![
        ("To".to_owned(), "whatsapp:+14155550100".to_owned()),
        ("From".to_owned(), "whatsapp:+14155238886".to_owned()),
        ("StatusCallback".to_owned(), STATUS_CALLBACK.to_owned()),
    ];
    out.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    out
}

#[tokio::test]
async fn sends_text() {
    let (result, form) = send(MessageKind::Text, text(), created()).await;
    assert_eq!(result.unwrap(), SID);
    assert_eq!(form, fields(&[("Body", "Hello")]));
}

#[tokio::test]
async fn sends_media_with_caption() {
    let media = MediaRef {
        kind: MediaKind::Image,
        url: Some("https://cdn.example.com/receipt.png?v=2".into()),
        attachment_id: None,
        provider_media_id: None,
        sha256: None,
        caption: Some("Your receipt".into()),
        filename: None,
        mime_type: Some("image/png".into()),
    };
    let content = MessageContent { media: Some(media.clone()), ..MessageContent::default() };
    let (result, form) = send(MessageKind::Image, content, created()).await;
    assert_eq!(result.unwrap(), SID);
    assert_eq!(form, fields(&[("Body", "Your receipt"), ("MediaUrl", "https://cdn.example.com/receipt.png?v=2")]));

    let bare = MediaRef { caption: None, ..media };
    let content = MessageContent { media: Some(bare), ..MessageContent::default() };
    let (_, form) = send(MessageKind::Image, content, created()).await;
    assert_eq!(form, fields(&[("MediaUrl", "https://cdn.example.com/receipt.png?v=2")]));
}

#[tokio::test]
async fn sends_template_with_content_variables() {
    let template = TemplateRef {
        name: "HX0123456789abcdef0123456789abcdef".into(),
        language: Some("en".into()),
        components: Some(json!({"1": "Jane", "2": "July 4"})),
    };
    let content = MessageContent { template: Some(template), ..MessageContent::default() };
    let (result, form) = send(MessageKind::Template, content, created()).await;
    assert_eq!(result.unwrap(), SID);
    assert_eq!(
        form,
        fields(&[
            ("ContentSid", "HX0123456789abcdef0123456789abcdef"),
            ("ContentVariables", r#"{"1":"Jane","2":"July 4"}"#)
        ])
    );
}

#[tokio::test]
async fn unsupported_content_makes_no_request() {
    let mock = MockServer::start().await;
    let p = provider();
    let l = line(&p, Some(&mock.url()));
    let cta = MessageContent {
        cta_url_button: Some(CtaUrlButton { display_text: "Open".into(), url: "https://example.com".into() }),
        ..text()
    };
    let no_url = MessageContent {
        media: Some(MediaRef {
            kind: MediaKind::Document,
            url: None,
            attachment_id: Some("att_01X".into()),
            provider_media_id: None,
            sha256: None,
            caption: None,
            filename: None,
            mime_type: None,
        }),
        ..MessageContent::default()
    };
    for (kind, content) in
        [(MessageKind::Text, cta), (MessageKind::Document, no_url), (MessageKind::Text, MessageContent::default())]
    {
        let e = p.send(&l, &outbound(kind, content)).await.unwrap_err();
        assert_eq!(e.kind, ProviderErrorKind::Unsupported);
    }
    let bad_vars = MessageContent {
        template: Some(TemplateRef { name: "HX1".into(), language: None, components: Some(json!([{"type": "body"}])) }),
        ..MessageContent::default()
    };
    let e = p.send(&l, &outbound(MessageKind::Template, bad_vars)).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "invalid_template"));
    assert!(mock.requests().is_empty());
}

fn twilio_error(status: u16, code: u32, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status}),
    )
}

async fn send_error(reply: Reply) -> ProviderError {
    send(MessageKind::Text, text(), reply).await.0.unwrap_err()
}

#[tokio::test]
async fn rate_limits_are_retryable_with_retry_after() {
    let e = send_error(twilio_error(429, 20429, "Too Many Requests").header("retry-after", "7")).await;
    assert_eq!(
        (e.kind, e.code.as_str(), e.retry_after),
        (ProviderErrorKind::Retryable, "20429", Some(Duration::from_secs(7)))
    );
    let e = send_error(twilio_error(429, 20429, "Too Many Requests")).await;
    assert_eq!(e.retry_after, Some(Duration::from_secs(1)));
    let e = send_error(twilio_error(400, 20429, "Too Many Requests")).await;
    assert_eq!((e.kind, e.retry_after), (ProviderErrorKind::Retryable, Some(Duration::from_secs(1))));
    let e = send_error(Reply::bytes(429, "text/plain", b"slow down")).await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Retryable, "http_429"));
}

#[tokio::test]
async fn vendor_codes_are_classified() {
    let e = send_error(twilio_error(
        400,
        63016,
        "Failed to send freeform message because you are outside the allowed window.",
    ))
    .await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "63016"));
    assert!(e.message.contains("ContentSid") && e.message.contains("template"), "{}", e.message);

    let e = send_error(twilio_error(400, 21211, "Invalid 'To' Phone Number")).await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "21211"));

    for reply in [
        twilio_error(401, 20003, "Authenticate"),
        Reply::bytes(401, "text/plain", b""),
        twilio_error(403, 20003, "Authenticate"),
    ] {
        let e = send_error(reply).await;
        assert_eq!(e.kind, ProviderErrorKind::LineUnavailable);
        assert_eq!(e.line_state, Some(LifecycleState::AuthFailed));
        assert!(!e.message.contains(AUTH_TOKEN));
    }

    let e = send_error(twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")).await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "21610"));
    assert!(
        e.message.contains("unsubscribed recipient") && e.message.contains("https://www.twilio.com/docs/errors/21610")
    );

    let e = send_error(Reply::bytes(404, "text/html", b"<html>not found</html>")).await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "http_404"));

    let e = send_error(twilio_error(500, 20500, "Internal Server Error")).await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Retryable, "20500"));
    let e = send_error(Reply::bytes(503, "text/plain", b"unavailable").header("retry-after", "30")).await;
    assert_eq!((e.kind, e.retry_after), (ProviderErrorKind::Retryable, Some(Duration::from_secs(30))));
}

#[tokio::test]
async fn an_unreadable_201_is_ambiguous() {
    let e = send_error(Reply::bytes(201, "application/json", b"{not json")).await;
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Ambiguous, "invalid_response"));
    let e = send_error(Reply::json(201, json!({"status": "queued"}))).await;
    assert_eq!(e.kind, ProviderErrorKind::Ambiguous);
}

#[test]
fn parse_error_is_pure() {
    let e = parse_error(429, Some(" 12 "), br#"{"code":20429,"message":"Too Many Requests"}"#);
    assert_eq!((e.kind, e.retry_after), (ProviderErrorKind::Retryable, Some(Duration::from_secs(12))));
    let e = parse_error(429, Some("Wed, 21 Oct 2026 07:28:00 GMT"), b"");
    assert_eq!(e.retry_after, Some(Duration::from_secs(1)));
    assert_eq!(parse_error(502, None, b"").kind, ProviderErrorKind::Retryable);
    assert_eq!(parse_error(400, None, b"").code, "http_400");
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let p = provider();
    let e = p.send(&line(&p, Some(&url)), &outbound(MessageKind::Text, text())).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Retryable, "connect_error"));
}

#[tokio::test]
async fn timeout_after_sending_is_ambiguous() {
    // A server that accepts and reads but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let p = provider_with(reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap());
    let e = p.send(&line(&p, Some(&url)), &outbound(MessageKind::Text, text())).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Ambiguous, "timeout"));
    server.abort();
}

fn media_ref(url: String) -> MediaRef {
    MediaRef {
        kind: MediaKind::Image,
        url: Some(url),
        attachment_id: None,
        provider_media_id: None,
        sha256: None,
        caption: None,
        filename: None,
        mime_type: Some("image/jpeg".into()),
    }
}

#[tokio::test]
async fn fetches_media_with_basic_auth() {
    let mock = MockServer::start().await;
    mock.reply(Reply::bytes(200, "image/png", b"\x89PNG-bytes"));
    let p = provider();
    let path = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/ME1");
    let fetched =
        p.fetch_media(&line(&p, Some(&mock.url())), &media_ref(format!("{}{path}", mock.url()))).await.unwrap();
    assert_eq!(fetched.bytes, b"\x89PNG-bytes");
    assert_eq!(fetched.content_type, "image/png");
    let r = &mock.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", path.as_str()));
    assert_eq!(r.header("authorization"), Some(basic_auth().as_str()));
}

#[tokio::test]
async fn media_redirects_drop_credentials_and_errors_classify() {
    let (api, cdn) = (MockServer::start().await, MockServer::start().await);
    api.reply(Reply::bytes(307, "text/plain", b"").header("location", &format!("{}/cdn/ME1", cdn.url())));
    cdn.reply(Reply::bytes(200, "", b"opaque"));
    let p = provider();
    let l = line(&p, Some(&api.url()));
    let fetched = p.fetch_media(&l, &media_ref(format!("{}/media/ME1", api.url()))).await.unwrap();
    assert_eq!((fetched.bytes.as_slice(), fetched.content_type.as_str()), (&b"opaque"[..], "image/jpeg"));
    assert_eq!(api.requests()[0].header("authorization"), Some(basic_auth().as_str()));
    assert_eq!(cdn.requests()[0].path, "/cdn/ME1");
    assert_eq!(cdn.requests()[0].header("authorization"), None);

    api.reply(twilio_error(404, 20404, "The requested resource was not found"));
    let e = p.fetch_media(&l, &media_ref(format!("{}/media/ME2", api.url()))).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "20404"));

    let e = p.fetch_media(&l, &media_ref("https://attacker.example.com/media/ME3".into())).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "untrusted_media_url"));
    assert_eq!(api.requests().len(), 2);
}

#[tokio::test]
async fn media_over_the_limit_is_refused() {
    let mock = MockServer::start().await;
    mock.reply(Reply::bytes(200, "video/mp4", &[0u8; 64]));
    let config = TwilioConfig::parse(&super::input_config(Some(&mock.url())), &cipher()).unwrap();
    let http = reqwest::Client::new();
    let e = Client::new(&http, &config).fetch_media(&format!("{}/m", mock.url()), 63).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "media_too_large"));
}

async fn health(reply: Option<Reply>, wakeup: bool) -> (ProviderHealth, usize) {
    let mock = MockServer::start().await;
    if let Some(reply) = reply {
        mock.reply(reply);
    }
    let p = provider();
    let h = p.health(&line(&p, Some(&mock.url())), wakeup).await.unwrap();
    let requests = mock.requests();
    if let Some(r) = requests.first() {
        assert_eq!((r.method.as_str(), r.path.clone()), ("GET", format!("/2010-04-01/Accounts/{ACCOUNT_SID}.json")));
        assert_eq!(r.header("authorization"), Some(basic_auth().as_str()));
    }
    (h, requests.len())
}

fn account(status: &str) -> Reply {
    Reply::json(
        200,
        json!({"sid": ACCOUNT_SID, "friendly_name": "Support", "status": status, "auth_token": AUTH_TOKEN, "type": "Full"}),
    )
}

#[tokio::test]
async fn health_with_wakeup_reads_the_account() {
    let (h, n) = health(Some(account("active")), true).await;
    assert_eq!((h, n), (ProviderHealth { lifecycle_state: LifecycleState::Connected, reason: None }, 1));
    for status in ["suspended", "closed"] {
        let (h, _) = health(Some(account(status)), true).await;
        assert_eq!(h, ProviderHealth { lifecycle_state: LifecycleState::Blocked, reason: Some(status.into()) });
    }
    let (h, _) = health(Some(twilio_error(401, 20003, "Authenticate")), true).await;
    assert_eq!(h.lifecycle_state, LifecycleState::AuthFailed);
    assert!(!h.reason.unwrap().contains(AUTH_TOKEN));
}

#[tokio::test]
async fn health_without_wakeup_makes_no_call() {
    let (h, n) = health(None, false).await;
    assert_eq!((h, n), (ProviderHealth { lifecycle_state: LifecycleState::Connected, reason: None }, 0));
}

#[tokio::test]
async fn health_transient_failures_are_errors() {
    let mock = MockServer::start().await;
    mock.reply(Reply::bytes(503, "text/plain", b"down"));
    let p = provider();
    let e = p.health(&line(&p, Some(&mock.url())), true).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Retryable);
}
