//! The Channel API v1 quickstart, end to end over HTTP.

use std::time::Duration;

use ezw::model::LifecycleState;
use ezw::{LineId, PhoneNumber};
use serde_json::{json, Value};

use crate::support::{eventually, TestServer};

async fn status_of(t: &TestServer, token: &str, id: &str) -> Value {
    let (status, body) = t.get_json(&format!("/api/v1/messages/{id}"), token).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn wait_status(t: &TestServer, token: &str, id: &str, want: &str) -> Value {
    eventually(&t.clock, Duration::from_millis(250), || async {
        let m = status_of(t, token, id).await;
        (m["status"] == want).then_some(m)
    })
    .await
}

#[tokio::test]
async fn quickstart_send_reaches_delivered_then_read() {
    let t = TestServer::start().await;
    let id_token = t.login().await;

    // Step 2: create (rotate) the line token.
    let res = t
        .http
        .post(t.url(&format!("/api/lines/{}/api-token", t.demo.line_id)))
        .bearer_auth(&id_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let token_body: Value = res.json().await.unwrap();
    let token = token_body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ezw_line_"));
    assert_eq!(token_body["rotated"], true);

    // Step 3: health.
    let (status, health) = t.get_json("/api/v1/health?wakeup=false&channel_type=web", &token).await;
    assert_eq!(status, 200);
    assert_eq!(health["channelId"], t.demo.line_id.as_str());
    assert_eq!(health["channelType"], "web");
    assert_eq!(health["wakeupRequested"], false);
    assert_eq!(health["health"]["status"], json!({"code": 4, "text": "AUTH"}));
    assert_eq!(health["line"]["lifecycleState"], "connected");
    assert_eq!(health["line"]["effectiveSendState"], "sendable");
    assert_eq!(health["line"]["sendable"], true);
    assert_eq!(health["line"]["phoneNumber"], "+15550100001");

    // Step 4: send.
    let (status, msg) = t
        .send_text(&token, Some("client-order-123"), json!({"to": "+972501234567", "body": "Your order is ready"}))
        .await;
    assert_eq!(status, 202, "{msg}");
    assert_eq!(msg["status"], "queued");
    let id = msg["id"].as_str().unwrap().to_owned();
    let conversation = msg["conversationId"].as_str().unwrap().to_owned();

    let sent = wait_status(&t, &token, &id, "sent").await;
    assert_eq!(sent["providerMessageId"], format!("sim.{id}"));
    assert_eq!(sent["attempts"], 1);
    let delivered = wait_status(&t, &token, &id, "delivered").await;
    assert!(delivered["statusTimestamps"]["deliveredAt"].is_string());
    wait_status(&t, &token, &id, "read").await;

    // The workspace sees the same message in the conversation timeline.
    let messages = t.messages(&id_token, &conversation).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["id"], id.as_str());
    assert_eq!(messages[0]["status"], "read");
    assert_eq!(messages[0]["body"], "Your order is ready");

    // Listing conversations of the line shows it.
    let (status, list) = t.get_json(&format!("/api/conversations?lineId={}&limit=25", t.demo.line_id), &id_token).await;
    assert_eq!(status, 200);
    assert_eq!(list["conversations"][0]["id"], conversation.as_str());
    assert_eq!(list["conversations"][0]["contactPhone"], "+972501234567");
}

#[tokio::test]
async fn replies_by_conversation_id_use_the_same_conversation() {
    let t = TestServer::start().await;
    let token = t.demo.line_token.clone();
    let (_, first) = t.send_text(&token, None, json!({"to": "+972501234567", "body": "one"})).await;
    let conv = first["conversationId"].as_str().unwrap();
    let (status, second) = t.send_text(&token, None, json!({"conversationId": conv, "body": "two"})).await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["conversationId"], conv);
    let (status, third) = t.send_text(&token, None, json!({"conversation_id": conv, "body": "three"})).await;
    assert_eq!(status, 202, "{third}");
    let id_token = t.login().await;
    let bodies: Vec<String> =
        t.messages(&id_token, conv).await.iter().map(|m| m["body"].as_str().unwrap().to_owned()).collect();
    assert_eq!(bodies, ["three", "two", "one"]);
}

#[tokio::test]
async fn messages_of_one_conversation_go_out_in_order() {
    let t = TestServer::start().await;
    let token = t.demo.line_token.clone();
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, m) = t.send_text(&token, None, json!({"to": "+972501234567", "body": format!("m{i}")})).await;
        assert_eq!(status, 202);
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    wait_status(&t, &token, ids.last().unwrap(), "sent").await;
    let order: Vec<String> = t.server().sim.accepted().into_iter().map(|(_, _, id)| id).collect();
    assert_eq!(order, ids);
}

#[tokio::test]
async fn media_by_url_is_sent() {
    let t = TestServer::start().await;
    let token = t.demo.line_token.clone();
    let res = t
        .http
        .post(t.url("/api/v1/messages/media"))
        .bearer_auth(&token)
        .json(&json!({"to": "+972501234567", "type": "document", "url": "https://example.com/invoice.pdf",
                      "caption": "Your invoice", "filename": "invoice.pdf", "mimeType": "application/pdf"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let m: Value = res.json().await.unwrap();
    assert_eq!(m["type"], "document");
    assert_eq!(m["media"]["url"], "https://example.com/invoice.pdf");
    assert_eq!(m["media"]["filename"], "invoice.pdf");
    wait_status(&t, &token, m["id"].as_str().unwrap(), "delivered").await;
}

#[tokio::test]
async fn line_state_drives_health_and_sendability() {
    let t = TestServer::start().await;
    let token = t.demo.line_token.clone();
    let line = LineId::parse(&t.demo.line_id).unwrap();
    t.server().sim.set_line_state(&line, LifecycleState::QrRequired);
    let health = eventually(&t.clock, Duration::from_millis(10), || async {
        let (_, h) = t.get_json("/api/v1/health?wakeup=false", &token).await;
        (h["line"]["lifecycleState"] == "qr_required").then_some(h)
    })
    .await;
    assert_eq!(health["health"]["status"], json!({"code": 3, "text": "QR"}));
    assert_eq!(health["line"]["sendable"], false);
    assert_eq!(health["line"]["effectiveSendState"], "qr_required");

    let (status, err) = t.send_text(&token, Some("k1"), json!({"to": "+972501234567", "body": "hi"})).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], "line_not_sendable");
    assert_eq!(err["error"]["effectiveSendState"], "qr_required");

    // The provider reports the line back; wakeup=true asks it and records the state.
    t.server().sim.set_line_state(&line, LifecycleState::Connected);
    let (_, h) = t.get_json("/api/v1/health?wakeup=true&channel_type=web", &token).await;
    assert_eq!(h["wakeupRequested"], true);
    assert_eq!(h["line"]["sendable"], true);
    let (status, _) = t.send_text(&token, Some("k1"), json!({"to": "+972501234567", "body": "hi"})).await;
    assert_eq!(status, 202);
}

async fn create_sim_line(t: &TestServer, id_token: &str, phone: &str, provider: Value) -> (String, String) {
    let res = t
        .http
        .post(t.url("/api/lines"))
        .bearer_auth(id_token)
        .json(&json!({"displayName": "Second", "phoneNumber": phone, "provider": provider}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let line: Value = res.json().await.unwrap();
    assert_eq!(line["sendable"], true);
    let line_id = line["id"].as_str().unwrap().to_owned();
    let res =
        t.http.post(t.url(&format!("/api/lines/{line_id}/api-token"))).bearer_auth(id_token).send().await.unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["rotated"], false);
    (line_id, body["token"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn permanent_failures_fail_with_the_provider_code() {
    let t = TestServer::start().await;
    let id_token = t.login().await;
    let (_, token) = create_sim_line(
        &t,
        &id_token,
        "+15550100002",
        json!({"kind": "simulator", "failRecipients": {"+972500000000": "permanent"}}),
    )
    .await;
    let (status, m) = t.send_text(&token, None, json!({"to": "+972500000000", "body": "hi"})).await;
    assert_eq!(status, 202);
    let failed = wait_status(&t, &token, m["id"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["error"]["code"], "sim_rejected");
    assert_eq!(failed["attempts"], 1);
    assert!(failed["statusTimestamps"]["failedAt"].is_string());
}

#[tokio::test]
async fn transient_failures_retry_then_send() {
    let t = TestServer::start().await;
    let token = t.demo.line_token.clone();
    t.server().sim.fail_next(2, ezw::providers::sim::SimFailure::Transient);
    let (_, m) = t.send_text(&token, None, json!({"to": "+972501234567", "body": "retry me"})).await;
    let sent = wait_status(&t, &token, m["id"].as_str().unwrap(), "sent").await;
    assert_eq!(sent["attempts"], 3);
    assert_eq!(t.server().sim.calls(), 3);
}

#[tokio::test]
async fn inbound_messages_join_the_conversation() {
    let t = TestServer::start().await;
    let token = t.demo.line_token.clone();
    let (_, m) = t.send_text(&token, None, json!({"to": "+972501234567", "body": "hello"})).await;
    let conv = m["conversationId"].as_str().unwrap().to_owned();
    let server = t.server();
    let principal = server.ezw.auth().authenticate_line_token(&token).await.unwrap();
    let line = server.ezw.lines().get(&principal, &LineId::parse(&t.demo.line_id).unwrap()).await.unwrap();
    server.sim.inject_inbound(&line, &PhoneNumber::parse("+972501234567").unwrap(), Some("Dana"), "Thanks!");
    let id_token = t.login().await;
    let messages = eventually(&t.clock, Duration::from_millis(10), || async {
        let ms = t.messages(&id_token, &conv).await;
        (ms.len() == 2).then_some(ms)
    })
    .await;
    assert_eq!(messages[0]["direction"], "inbound");
    assert_eq!(messages[0]["status"], "received");
    assert_eq!(messages[0]["body"], "Thanks!");
}

#[tokio::test]
async fn restart_keeps_messages_tokens_and_demo() {
    let t = TestServer::start().await;
    let token = t.demo.line_token.clone();
    let (_, m) = t.send_text(&token, Some("persist-1"), json!({"to": "+972501234567", "body": "durable"})).await;
    let id = m["id"].as_str().unwrap().to_owned();
    wait_status(&t, &token, &id, "sent").await;
    let demo = t.demo.clone();
    let (dir, clock) = t.stop().await;

    let t = TestServer::start_in(dir, clock).await;
    let mut reused = t.demo.clone();
    reused.base_url = demo.base_url.clone();
    assert_eq!(reused, demo, "the demo workspace is reused, password and token included");
    let m = status_of(&t, &token, &id).await;
    assert_eq!(m["body"], "durable");
    // The same key after a restart is still the same message.
    let (status, again) =
        t.send_text(&token, Some("persist-1"), json!({"to": "+972501234567", "body": "durable"})).await;
    assert_eq!(status, 202);
    assert_eq!(again["id"], id.as_str());
}
