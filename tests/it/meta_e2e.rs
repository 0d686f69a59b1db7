//! Meta Cloud API lines end to end through the server: configuration, signed webhooks, sends
//! to a local Graph API mock, status reconciliation, inbound media.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{eventually, TestServer};
use crate::vendor_mock::VendorMock;

pub(crate) const PHONE_NUMBER_ID: &str = "106540352242922";
const APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
const ACCESS_TOKEN: &str = "EAAGtestaccesstoken1234567890";

fn signature(body: &[u8]) -> String {
    let mac = ezw::core::crypto::hmac_sha256(APP_SECRET.as_bytes(), body);
    format!("sha256={}", mac.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A demo server with a Meta line whose Graph API is a local mock.
pub(crate) struct MetaLine {
    pub(crate) t: TestServer,
    pub(crate) graph: VendorMock,
    pub(crate) id_token: String,
    pub(crate) line_id: String,
    pub(crate) line_token: String,
}

pub(crate) async fn meta_line() -> MetaLine {
    let t = TestServer::start().await;
    let graph = VendorMock::start().await;
    let id_token = t.login().await;
    let res = t
        .http
        .post(t.url("/api/lines"))
        .bearer_auth(&id_token)
        .json(&json!({
            "displayName": "Meta support",
            "phoneNumber": "+15550783881",
            "provider": {
                "kind": "meta", "phoneNumberId": PHONE_NUMBER_ID, "wabaId": "102290129340398",
                "appId": "1234567890", "appSecret": APP_SECRET, "accessToken": ACCESS_TOKEN,
                "verifyToken": "verify-me-please", "apiBaseUrl": graph.url
            }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let line: Value = res.json().await.unwrap();
    let text = line.to_string();
    assert!(!text.contains(ACCESS_TOKEN) && !text.contains(APP_SECRET) && !text.contains("verify-me-please"), "{text}");
    assert_eq!(line["provider"]["kind"], "meta");
    assert_eq!(line["provider"]["phoneNumberId"], PHONE_NUMBER_ID);
    assert_eq!(line["sendable"], true);
    let line_id = line["id"].as_str().unwrap().to_owned();
    assert_eq!(line["webhookUrl"], format!("{}/hooks/meta/{line_id}", t.base));
    let res =
        t.http.post(t.url(&format!("/api/lines/{line_id}/api-token"))).bearer_auth(&id_token).send().await.unwrap();
    let line_token = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    MetaLine { t, graph, id_token, line_id, line_token }
}

fn webhook(value: Value) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]})
        .to_string()
        .into_bytes()
}

fn inbound_text(wamid: &str, body: &str) -> Vec<u8> {
    webhook(json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        "messages": [{"from": "16505551234", "id": wamid, "timestamp": "1749416383", "type": "text", "text": {"body": body}}]
    }))
}

fn status(wamid: &str, status: &str, ts: &str) -> Vec<u8> {
    webhook(json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "statuses": [{"id": wamid, "status": status, "timestamp": ts, "recipient_id": "16505551234"}]
    }))
}

impl MetaLine {
    async fn post_hook(&self, body: Vec<u8>, signature: Option<String>) -> u16 {
        let mut req = self
            .t
            .http
            .post(self.t.url(&format!("/hooks/meta/{}", self.line_id)))
            .header("content-type", "application/json")
            .body(body);
        if let Some(sig) = signature {
            req = req.header("x-hub-signature-256", sig);
        }
        req.send().await.unwrap().status().as_u16()
    }

    async fn conversations(&self) -> Vec<Value> {
        let (s, body) = self.t.get_json(&format!("/api/conversations?lineId={}", self.line_id), &self.id_token).await;
        assert_eq!(s, 200);
        body["conversations"].as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn verification_handshake_checks_the_verify_token() {
    let m = meta_line().await;
    let url = |token: &str| {
        m.t.url(&format!(
            "/hooks/meta/{}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            m.line_id
        ))
    };
    let res = m.t.http.get(url("verify-me-please")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "1158201444");
    let res = m.t.http.get(url("wrong")).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn signed_inbound_text_creates_conversation_and_message_once() {
    let m = meta_line().await;
    let body = inbound_text(
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
        "Does it come in another color?",
    );
    assert_eq!(m.post_hook(body.clone(), Some(signature(&body))).await, 200);
    let convs = m.conversations().await;
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0]["contactPhone"], "+16505551234");
    let conv = convs[0]["id"].as_str().unwrap();
    let messages = m.t.messages(&m.id_token, conv).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["direction"], "inbound");
    assert_eq!(messages[0]["body"], "Does it come in another color?");
    assert_eq!(messages[0]["providerMessageId"], "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=");
    // Meta redelivers: nothing changes.
    assert_eq!(m.post_hook(body.clone(), Some(signature(&body))).await, 200);
    assert_eq!(m.t.messages(&m.id_token, conv).await.len(), 1);
}

#[tokio::test]
async fn forged_or_missing_signatures_store_nothing() {
    let m = meta_line().await;
    let body = inbound_text("wamid.forged", "hello");
    assert_eq!(m.post_hook(body.clone(), None).await, 401);
    assert_eq!(m.post_hook(body.clone(), Some(signature(b"another body"))).await, 401);
    assert_eq!(m.post_hook(body.clone(), Some("sha256=00".into())).await, 401);
    let mut tampered = body.clone();
    let sig = signature(&body);
    tampered.extend_from_slice(b" ");
    assert_eq!(m.post_hook(tampered, Some(sig)).await, 401);
    assert!(m.conversations().await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn sends_reach_the_graph_api_and_statuses_move_forward() {
    let m = meta_line().await;
    let path = format!("/v23.0/{PHONE_NUMBER_ID}/messages");
    m.graph.json(
        "POST",
        &path,
        200,
        json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
            "messages": [{"id": "wamid.sent-1", "message_status": "accepted"}]
        }),
    );
    let (s, msg) =
        m.t.send_text(&m.line_token, Some("meta-1"), json!({"to": "+16505551234", "body": "Your order is ready"}))
            .await;
    assert_eq!(s, 202, "{msg}");
    let id = msg["id"].as_str().unwrap().to_owned();
    let sent = eventually(&m.t.clock, Duration::from_millis(10), || async {
        let (_, m2) = m.t.get_json(&format!("/api/v1/messages/{id}"), &m.line_token).await;
        (m2["status"] == "sent").then_some(m2)
    })
    .await;
    assert_eq!(sent["providerMessageId"], "wamid.sent-1");
    let seen = m.graph.seen(&path);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].headers["authorization"], format!("Bearer {ACCESS_TOKEN}"));
    assert_eq!(seen[0].headers["content-type"], "application/json");
    let body = seen[0].json();
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(body["to"], "16505551234");
    assert_eq!(body["type"], "text");
    assert_eq!(body["text"]["body"], "Your order is ready");

    // Status webhooks: delivered, then read; a late "sent" changes nothing.
    for (st, ts) in [("delivered", "1749416400"), ("read", "1749416460"), ("sent", "1749416390")] {
        let b = status("wamid.sent-1", st, ts);
        assert_eq!(m.post_hook(b.clone(), Some(signature(&b))).await, 200);
    }
    let (_, done) = m.t.get_json(&format!("/api/v1/messages/{id}"), &m.line_token).await;
    assert_eq!(done["status"], "read");
    assert_eq!(done["statusTimestamps"]["deliveredAt"], "2025-06-08T21:00:00.000Z");
    assert_eq!(done["statusTimestamps"]["readAt"], "2025-06-08T21:01:00.000Z");
}

#[tokio::test]
async fn a_closed_customer_window_fails_the_message_with_meta_code() {
    let m = meta_line().await;
    m.graph.json("POST", &format!("/v23.0/{PHONE_NUMBER_ID}/messages"), 400, json!({
        "error": {"message": "(#131047) Re-engagement message", "type": "OAuthException", "code": 131047,
                  "error_data": {"messaging_product": "whatsapp", "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
                  "fbtrace_id": "AbCdEf"}
    }));
    let (_, msg) = m.t.send_text(&m.line_token, None, json!({"to": "+16505551234", "body": "hi"})).await;
    let id = msg["id"].as_str().unwrap().to_owned();
    let failed = eventually(&m.t.clock, Duration::from_millis(10), || async {
        let (_, m2) = m.t.get_json(&format!("/api/v1/messages/{id}"), &m.line_token).await;
        (m2["status"] == "failed").then_some(m2)
    })
    .await;
    assert_eq!(failed["error"]["code"], "131047");
    assert_eq!(failed["attempts"], 1);
}

#[tokio::test]
async fn inbound_media_is_fetched_into_the_blob_store() {
    let m = meta_line().await;
    let media_url = format!("{}/lookaside/whatsapp_business/attachments/?mid=1013859600285441", m.graph.url);
    m.graph.json(
        "GET",
        "/v23.0/1013859600285441",
        200,
        json!({
            "messaging_product": "whatsapp", "url": media_url, "mime_type": "image/jpeg",
            "sha256": "9a2e0d4f", "file_size": 5, "id": "1013859600285441"
        }),
    );
    m.graph.route("GET", "/lookaside/whatsapp_business/attachments/", 200, "image/jpeg", b"\xff\xd8\xff\xe0J".to_vec());
    let body = webhook(json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        "messages": [{"from": "16505551234", "id": "wamid.image-1", "timestamp": "1749416383", "type": "image",
                      "image": {"caption": "the broken part", "mime_type": "image/jpeg", "sha256": "9a2e0d4f", "id": "1013859600285441"}}]
    }));
    assert_eq!(m.post_hook(body.clone(), Some(signature(&body))).await, 200);
    let conv = m.conversations().await[0]["id"].as_str().unwrap().to_owned();
    let message = eventually(&m.t.clock, Duration::from_millis(10), || async {
        let ms = m.t.messages(&m.id_token, &conv).await;
        ms.into_iter().find(|x| x["media"]["attachmentId"].is_string())
    })
    .await;
    assert_eq!(message["type"], "image");
    assert_eq!(message["body"], "the broken part");
    assert_eq!(message["media"]["mimeType"], "image/jpeg");
    let fetches = m.graph.seen("/lookaside/whatsapp_business/attachments/");
    assert_eq!(fetches[0].headers["authorization"], format!("Bearer {ACCESS_TOKEN}"));
    // The bytes are in the data directory's blob store.
    let att = message["media"]["attachmentId"].as_str().unwrap();
    let stored = walk(&m.t.dir.path().join("blobs")).into_iter().find(|p| p.ends_with(att)).expect("blob file");
    assert_eq!(std::fs::read(stored).unwrap(), b"\xff\xd8\xff\xe0J");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn health_wakeup_asks_meta_and_wakeup_false_does_not() {
    let m = meta_line().await;
    let path = format!("/v23.0/{PHONE_NUMBER_ID}");
    m.graph.json(
        "GET",
        &path,
        200,
        json!({"status": "FLAGGED", "quality_rating": "RED", "name_status": "APPROVED", "id": PHONE_NUMBER_ID}),
    );
    let (_, h) = m.t.get_json("/api/v1/health?wakeup=false", &m.line_token).await;
    assert_eq!(h["line"]["sendable"], true);
    assert!(m.graph.seen(&path).is_empty(), "wakeup=false never calls the vendor");
    let (_, h) = m.t.get_json("/api/v1/health?wakeup=true", &m.line_token).await;
    assert_eq!(m.graph.seen(&path).len(), 1);
    assert_eq!(h["line"]["lifecycleState"], "restricted");
    assert_eq!(h["line"]["sendable"], false);
    assert_eq!(h["health"]["status"]["text"], "ERROR");
}

#[tokio::test]
async fn webhooks_for_unknown_lines_or_the_wrong_provider_are_not_found() {
    let m = meta_line().await;
    let body = inbound_text("wamid.x", "hello");
    let sig = signature(&body);
    let post = |path: String, body: Vec<u8>, sig: String| {
        m.t.http
            .post(m.t.url(&path))
            .header("x-hub-signature-256", sig)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let res = post(format!("/hooks/twilio/{}", m.line_id), body.clone(), sig.clone()).await.unwrap();
    assert_eq!(res.status(), 404, "a Meta line has no Twilio webhook");
    let res = post("/hooks/meta/line_01M8000000000000000000000".into(), body.clone(), sig.clone()).await.unwrap();
    assert_eq!(res.status(), 404);
    let res = post("/hooks/meta/not-a-line".into(), body, sig).await.unwrap();
    assert_eq!(res.status(), 404);
    let huge = vec![b' '; 2 * 1024 * 1024];
    let res = post(format!("/hooks/meta/{}", m.line_id), huge.clone(), signature(&huge)).await.unwrap();
    assert_eq!(res.status(), 413);
    assert!(m.conversations().await.is_empty());
}
