//! Bad input of every kind gets a clear 4xx with a machine-readable code, and nothing is stored.

use serde_json::{json, Value};

use crate::support::TestServer;

async fn raw(
    t: &TestServer,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = t.http.post(t.url(path)).body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn send_text_rejects_bad_input_with_codes() {
    let t = TestServer::start().await;
    let token = t.demo.line_token.clone();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("empty body", json!({"to": "+972501234567", "body": ""}), 400, "empty_body"),
        ("blank body", json!({"to": "+972501234567", "body": "   "}), 400, "empty_body"),
        ("missing body field", json!({"to": "+972501234567"}), 400, "empty_body"),
        ("non-string body", json!({"to": "+972501234567", "body": 5}), 400, "invalid_request"),
        (
            "both targets",
            json!({"to": "+972501234567", "conversationId": "conv_01ABC", "body": "x"}),
            400,
            "ambiguous_target",
        ),
        ("no target", json!({"body": "x"}), 400, "missing_target"),
        ("malformed phone", json!({"to": "+12-abc", "body": "x"}), 400, "invalid_phone_number"),
        ("short phone", json!({"to": "+1234", "body": "x"}), 400, "invalid_phone_number"),
        ("malformed conversation id", json!({"conversationId": "nope", "body": "x"}), 400, "invalid_conversation_id"),
        (
            "unknown conversation",
            json!({"conversationId": "conv_01M8021QQ054RCN7TDYGBMDBDR", "body": "x"}),
            404,
            "not_found",
        ),
        (
            "cta with non-http url",
            json!({"to": "+972501234567", "body": "x", "ctaUrlButton": {"displayText": "Open", "url": "javascript:alert(1)"}}),
            400,
            "invalid_cta_url",
        ),
        (
            "cta ftp url",
            json!({"to": "+972501234567", "body": "x", "ctaUrlButton": {"text": "Open", "url": "ftp://example.com/x"}}),
            400,
            "invalid_cta_url",
        ),
        (
            "cta without text",
            json!({"to": "+972501234567", "body": "x", "ctaUrlButton": {"url": "https://example.com"}}),
            400,
            "invalid_cta_button",
        ),
        ("body too long", json!({"to": "+972501234567", "body": "x".repeat(4097)}), 400, "body_too_long"),
        ("array instead of object", json!(["x"]), 400, "invalid_request"),
    ];
    for (name, body, want_status, want_code) in cases {
        let (status, err) = t.send_text(&token, None, body).await;
        assert_eq!(status, want_status, "{name}: {err}");
        assert_eq!(err["error"]["code"], want_code, "{name}: {err}");
        assert!(err["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}");
    }
    // Bad idempotency keys.
    let (status, err) = t.send_text(&token, Some(&"k".repeat(256)), json!({"to": "+972501234567", "body": "x"})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_idempotency_key")));

    // A CTA with displayText and an https URL is fine.
    let ok = json!({"to": "+972501234567", "body": "x", "ctaUrlButton": {"displayText": "Open offer", "url": "https://example.com/offers/123"}});
    let (status, m) = t.send_text(&token, None, ok).await;
    assert_eq!(status, 202, "{m}");
    assert_eq!(m["ctaUrlButton"]["displayText"], "Open offer");

    // Nothing but that one message was stored.
    let id_token = t.login().await;
    let (_, list) = t.get_json("/api/conversations?limit=200", &id_token).await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn malformed_bodies_and_content_types() {
    let t = TestServer::start().await;
    let token = t.demo.line_token.clone();
    let path = "/api/v1/messages/text";
    let (s, e) = raw(&t, path, Some(&token), Some("application/json"), Vec::new()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("missing_body")));
    let (s, e) = raw(&t, path, Some(&token), None, Vec::new()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("missing_body")));
    let (s, e) = raw(&t, path, Some(&token), Some("application/json"), b"{\"to\": \"+97250".to_vec()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_json")));
    let (s, e) = raw(&t, path, Some(&token), Some("text/plain"), b"hello".to_vec()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("unsupported_content_type")));
    let huge = format!("{{\"to\":\"+972501234567\",\"body\":\"{}\"}}", "x".repeat(70 * 1024));
    let (s, e) = raw(&t, path, Some(&token), Some("application/json"), huge.into_bytes()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (413, Some("payload_too_large")));
    let (s, e) = raw(&t, path, Some(&token), Some("application/json"), vec![0xff, 0xfe, 0x00]).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_json")));
}

#[tokio::test]
async fn tokens_are_checked() {
    let t = TestServer::start().await;
    let body = json!({"to": "+972501234567", "body": "x"});
    let (s, e) = raw(&t, "/api/v1/messages/text", None, Some("application/json"), body.to_string().into_bytes()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("missing_token")));
    let (s, e) = t.send_text("ezw_line_unknownunknownunknownunknownunk", None, body.clone()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_line_token")));
    let (s, e) = t.send_text("not-a-token", None, body.clone()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_line_token")));

    // Rotation invalidates the old token at once.
    let id_token = t.login().await;
    let (s, _) = t.send_text(&t.demo.line_token, None, body.clone()).await;
    assert_eq!(s, 202);
    let res = t
        .http
        .post(t.url(&format!("/api/lines/{}/api-token", t.demo.line_id)))
        .bearer_auth(&id_token)
        .send()
        .await
        .unwrap();
    let new_token = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let (s, e) = t.send_text(&t.demo.line_token, None, body.clone()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_line_token")));
    let (s, _) = t.send_text(&new_token, None, body.clone()).await;
    assert_eq!(s, 202);

    // Each token family is refused on the other API.
    let (s, e) = t.send_text(&id_token, None, body).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_line_token")));
    let (s, e) = t.get_json("/api/auth/session", &new_token).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("wrong_token_type")));
    let (s, _) = t.get_json("/api/auth/session", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.AAAA").await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn media_sends_validate_type_and_url() {
    let t = TestServer::start().await;
    let token = t.demo.line_token.clone();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"to": "+972501234567", "type": "sticker", "url": "https://example.com/a.webp"}),
            "unsupported_media_type",
        ),
        (json!({"to": "+972501234567", "type": "gif", "url": "https://example.com/a.gif"}), "unsupported_media_type"),
        (json!({"to": "+972501234567", "url": "https://example.com/a.png"}), "missing_media_type"),
        (json!({"to": "+972501234567", "type": "image"}), "missing_media_url"),
        (json!({"to": "+972501234567", "type": "image", "url": "file:///etc/passwd"}), "invalid_media_url"),
        (json!({"to": "+972501234567", "type": "image", "url": "not a url"}), "invalid_media_url"),
        (
            json!({"to": "+972501234567", "type": "image", "url": "https://example.com/a.png", "mimeType": "application/pdf"}),
            "unsupported_media_type",
        ),
        (
            json!({"to": "+972501234567", "type": "audio", "url": "https://example.com/a.ogg", "caption": "x"}),
            "caption_not_allowed",
        ),
        (
            json!({"to": "+972501234567", "type": "image", "url": "https://example.com/a.png", "filename": "a.png"}),
            "filename_not_allowed",
        ),
    ];
    for (body, code) in cases {
        let res = t.http.post(t.url("/api/v1/messages/media")).bearer_auth(&token).json(&body).send().await.unwrap();
        let status = res.status().as_u16();
        let err: Value = res.json().await.unwrap();
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some(code)), "{body}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let t = TestServer::start().await;
    let (s, e) = t.get_json("/api/nope", "x").await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("route_not_found")));
    let (s, e) = t.get_json("/api/v1/messages/text", &t.demo.line_token).await;
    assert_eq!((s, e["error"]["code"].as_str()), (405, Some("method_not_allowed")));
    let (s, e) = t.get_json("/api/v1/health?wakeup=maybe", &t.demo.line_token).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_query")));
    let id_token = t.login().await;
    let (s, e) = t.get_json("/api/conversations/conv_x/messages?limit=abc", &id_token).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_query")));
    let (s, e) = t.get_json("/api/conversations?limit=0", &id_token).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_limit")));
    let res = t
        .http
        .post(t.url("/api/auth/login"))
        .json(&json!({"email": t.demo.email, "password": "wrong password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "invalid_credentials");
}

#[tokio::test]
async fn path_segments_that_are_not_utf8_get_the_json_envelope() {
    let t = TestServer::start().await;
    let id_token = t.login().await;
    for path in ["/api/lines/%FF", "/api/conversations/%C0%AF/messages", "/media/%FF"] {
        let res = t.http.get(t.url(path)).bearer_auth(&id_token).send().await.unwrap();
        let status = res.status().as_u16();
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"), "{path}");
        let e: Value = res.json().await.unwrap();
        assert_eq!((status, e["error"]["code"].as_str()), (400, Some("invalid_request")), "{path}: {e}");
    }
}
