//! Outgoing webhooks end to end: configuration over both APIs, signed deliveries, retries across
//! a receiver outage and a server restart, evidence, redelivery, disabling, rotation, SSRF.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use ezw::webhooks::{verify, SigningSecret};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::support::{eventually, TestServer};

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Got {
    headers: HashMap<String, String>,
    body: String,
    answered: u16,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// Verifies the Standard Webhooks signature as a receiver would.
    fn verifies_with(&self, secret: &str) -> bool {
        let secret = SigningSecret::parse(secret).unwrap();
        let ts: i64 = self.header("webhook-timestamp").parse().unwrap();
        verify(&secret, self.header("webhook-id"), ts, self.body.as_bytes(), self.header("webhook-signature"), ts)
            .is_ok()
    }
}

#[derive(Default)]
struct ReceiverState {
    /// What to answer (200 unless told otherwise), with an optional `Retry-After`.
    answer: (u16, Option<String>),
    got: Vec<Got>,
}

/// A webhook receiver on a fixed loopback port that can be stopped (connections refused) and
/// started again.
struct Receiver {
    port: u16,
    state: Arc<Mutex<ReceiverState>>,
    stop: Option<oneshot::Sender<()>>,
}

async fn receive(State(state): State<Arc<Mutex<ReceiverState>>>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let mut s = state.lock().unwrap();
    let (status, retry_after) = s.answer.clone();
    s.got.push(Got {
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        answered: status,
    });
    let mut out = HeaderMap::new();
    if let Some(after) = retry_after {
        out.insert("retry-after", after.parse().unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), out, format!("answered {status}"))
}

impl Receiver {
    async fn start() -> Self {
        let state = Arc::new(Mutex::new(ReceiverState { answer: (200, None), got: Vec::new() }));
        let mut r = Self { port: 0, state, stop: None };
        r.listen().await;
        r
    }

    async fn listen(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(receive).with_state(self.state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        self.stop = Some(tx);
    }

    /// Stops listening: connections are refused until [`listen`](Self::listen).
    async fn close(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Wait until the port refuses connections.
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("receiver did not stop");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn answer(&self, status: u16, retry_after: Option<&str>) {
        self.state.lock().unwrap().answer = (status, retry_after.map(str::to_owned));
    }

    fn got(&self) -> Vec<Got> {
        self.state.lock().unwrap().got.clone()
    }
}

async fn post_json(t: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    let res = t.http.post(t.url(path)).bearer_auth(token).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A `messages.post` webhook of the demo line to `receiver`, created with the line token.
async fn messages_webhook(t: &TestServer, receiver: &Receiver) -> Value {
    let body = json!({ "targetUrl": receiver.url(), "events": ["messages.post"] });
    let (status, hook) = post_json(t, "/api/v1/webhooks", &t.demo.line_token, body).await;
    assert_eq!(status, 201, "{hook}");
    hook
}

/// Enables a webhook again (`PATCH {"enabled": true}`).
async fn enable(t: &TestServer, hook_path: &str) {
    let res = t.http.patch(t.url(hook_path)).bearer_auth(&t.demo.line_token).json(&json!({ "enabled": true }));
    assert_eq!(res.send().await.unwrap().status(), 201);
}

async fn send(t: &TestServer, key: &str, to: &str, body: &str) -> String {
    let (status, msg) = t.send_text(&t.demo.line_token, Some(key), json!({ "to": to, "body": body })).await;
    assert_eq!(status, 202, "{msg}");
    msg["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn deliveries_are_signed_carry_the_headers_and_follow_the_messages() {
    let t = TestServer::start().await;
    let receiver = Receiver::start().await;
    let token = t.demo.line_token.clone();
    let (status, hook) = post_json(
        &t,
        "/api/v1/webhooks",
        &token,
        json!({ "targetUrl": receiver.url(), "events": ["messages.post", "statuses.post", "chats.post"] }),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() >= 6 + 32, "{secret}");
    assert_eq!(hook["payloadFormat"], "ezw");
    assert_eq!(hook["enabled"], true);
    let webhook_id = hook["id"].as_str().unwrap().to_owned();

    let message_id = send(&t, "wh-1", "+972501234567", "hello hooks").await;
    // chats.post, messages.post, then statuses sent -> delivered -> read as the simulator moves.
    let got = eventually(&t.clock, Duration::from_millis(250), || async {
        let got = receiver.got();
        got.iter().any(|g| g.json()["data"]["message"]["status"] == "read").then_some(got)
    })
    .await;
    for g in &got {
        assert!(g.verifies_with(&secret), "signature of {}", g.body);
        assert_eq!(g.header("x-ezw-line-id"), t.demo.line_id);
        assert_eq!(g.header("x-ezw-webhook-id"), webhook_id);
        assert_eq!(g.header("x-ezw-delivery-id"), g.header("webhook-id"));
        assert!(g.header("webhook-id").starts_with("dlv_"));
        assert_eq!(g.header("content-type"), "application/json");
        assert_eq!(g.header("x-ezw-webhook-event"), g.json()["type"].as_str().unwrap());
        assert_eq!(g.json()["lineId"], t.demo.line_id.as_str());
    }
    let events: Vec<String> = got.iter().map(|g| g.header("x-ezw-webhook-event").to_owned()).collect();
    assert!(events.contains(&"chats.post".to_owned()), "{events:?}");
    let created = got.iter().find(|g| g.header("x-ezw-webhook-event") == "messages.post").unwrap().json();
    assert_eq!(created["data"]["message"]["id"], message_id.as_str());
    assert_eq!(created["data"]["message"]["direction"], "outbound");
    assert_eq!(created["data"]["contactPhone"], "+972501234567");
    let statuses: Vec<Value> = got
        .iter()
        .filter(|g| g.header("x-ezw-webhook-event") == "statuses.post")
        .map(|g| g.json()["data"]["message"]["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!("sent"), json!("delivered"), json!("read")]);
    // Each event arrived once: no two deliveries share an id.
    let mut ids: Vec<&str> = got.iter().map(|g| g.header("webhook-id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), got.len());
}

#[tokio::test]
async fn a_receiver_down_for_hours_gets_every_event_with_stable_delivery_ids_across_a_restart() {
    let t = TestServer::start().await;
    let mut receiver = Receiver::start().await;
    let token = t.demo.line_token.clone();
    let hook = messages_webhook(&t, &receiver).await;
    let webhook_id = hook["id"].as_str().unwrap().to_owned();
    let secret = hook["secret"].as_str().unwrap().to_owned();

    // Down: connections refused.
    receiver.close().await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(send(&t, &format!("down-{i}"), &format!("+97250123450{i}"), &format!("while down {i}")).await);
    }
    // Every delivery fails its first attempt (connection refused).
    let deliveries_path = format!("/api/v1/webhooks/{webhook_id}/deliveries");
    let failed_ids: Vec<String> = eventually(&t.clock, Duration::from_millis(100), || async {
        let (_, list) = t.get_json(&deliveries_path, &token).await;
        let list = list["deliveries"].as_array().cloned().unwrap_or_default();
        (list.len() == 5 && list.iter().all(|d| d["attempts"].as_u64() >= Some(1)))
            .then(|| list.iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>())
    })
    .await;
    let (_, one) = t.get_json(&format!("{deliveries_path}/{}", failed_ids[0]), &token).await;
    assert_eq!(one["status"], "pending", "{one}");
    assert!(one["attemptLog"][0]["error"].as_str().unwrap().starts_with("connect"), "{one}");
    assert!(one["nextAttemptAt"].is_string(), "{one}");

    // Back up, but answering 503 with Retry-After: the next attempts fail too.
    receiver.listen().await;
    receiver.answer(503, Some("120"));
    eventually(&t.clock, Duration::from_secs(1), || async { (receiver.got().len() >= 5).then_some(()) }).await;
    assert!(receiver.got().iter().all(|g| g.answered == 503));

    // The server restarts (same data, same clock) while deliveries are pending.
    let (dir, clock) = t.stop().await;
    let t = TestServer::start_in(dir, clock).await;
    // Nothing is retried before the receiver's Retry-After.
    t.clock.advance(Duration::from_secs(100));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.got().len(), 5, "no retry before Retry-After: 120");

    // The receiver recovers; hours of clock time pass along the retry schedule.
    receiver.answer(200, None);
    let ok = eventually(&t.clock, Duration::from_secs(30), || async {
        let ok: Vec<Got> = receiver.got().into_iter().filter(|g| g.answered == 200).collect();
        (ok.len() >= 5).then_some(ok)
    })
    .await;
    let mut delivered: Vec<String> = ok.iter().map(|g| g.header("webhook-id").to_owned()).collect();
    delivered.sort();
    let mut expected = failed_ids.clone();
    expected.sort();
    assert_eq!(delivered, expected, "the same delivery ids as the failed attempts");
    let bodies: Vec<String> =
        ok.iter().map(|g| g.json()["data"]["message"]["id"].as_str().unwrap().to_owned()).collect();
    for id in &sent {
        assert!(bodies.contains(id), "message {id} arrived");
    }
    for g in &ok {
        assert!(g.verifies_with(&secret));
    }
    // The 503 attempts carried the same ids as the successes, and the evidence shows all three.
    let mut refused_503: Vec<String> =
        receiver.got().iter().filter(|g| g.answered == 503).map(|g| g.header("webhook-id").to_owned()).collect();
    refused_503.sort();
    refused_503.dedup();
    assert_eq!(refused_503, expected);
    let (_, one) = t.get_json(&format!("{deliveries_path}/{}", failed_ids[0]), &token).await;
    assert_eq!(one["status"], "succeeded", "{one}");
    let log = one["attemptLog"].as_array().unwrap();
    assert_eq!(log.len(), 3, "{one}");
    assert_eq!(log[1]["httpStatus"], 503);
    assert_eq!(log[1]["responseExcerpt"], "answered 503");
    assert_eq!(log[2]["httpStatus"], 200);
}

#[tokio::test]
async fn workspace_managers_configure_webhooks_and_others_cannot() {
    let t = TestServer::start().await;
    let receiver = Receiver::start().await;
    let id_token = t.login().await;
    let base = format!("/api/lines/{}/webhooks", t.demo.line_id);
    let (status, hook) = post_json(
        &t,
        &base,
        &id_token,
        json!({ "targetUrl": receiver.url(), "events": ["messages.post", "statuses.post"], "enabled": true }),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let id = hook["id"].as_str().unwrap().to_owned();

    // The same target again updates the same webhook (201), here to the whapi format.
    let (status, again) =
        post_json(&t, &base, &id_token, json!({ "targetUrl": receiver.url(), "payloadFormat": "whapi" })).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["payloadFormat"], "whapi");
    assert_eq!(again["secret"], hook["secret"]);

    // Listed for the workspace and for the line token alike.
    let (status, list) = t.get_json(&base, &id_token).await;
    assert_eq!(status, 200);
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
    let (_, list) = t.get_json("/api/v1/webhooks", &t.demo.line_token).await;
    assert_eq!(list["webhooks"][0]["id"], id.as_str());

    // Update and validation errors.
    let res = t
        .http
        .patch(t.url(&format!("{base}/{id}")))
        .bearer_auth(&id_token)
        .json(&json!({ "events": ["channel.patch", "chats.patch"], "maxConcurrency": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["events"], json!(["chats.patch", "channel.patch"]));
    for (body, code) in [
        (json!({ "targetUrl": receiver.url(), "events": ["nope.post"] }), "invalid_webhook_events"),
        (json!({ "targetUrl": receiver.url(), "events": [] }), "invalid_webhook_events"),
        (json!({ "targetUrl": receiver.url(), "payloadFormat": "xml" }), "invalid_payload_format"),
        (json!({ "targetUrl": receiver.url(), "maxConcurrency": 0 }), "invalid_webhook_concurrency"),
        (json!({ "targetUrl": receiver.url(), "ratePerSecond": -1 }), "invalid_webhook_rate"),
        (json!({ "events": ["messages.post"] }), "missing_target_url"),
        (json!({ "targetUrl": "ftp://example.com/x" }), "invalid_webhook_url"),
        (json!({ "targetUrl": receiver.url(), "surprise": 1 }), "invalid_request"),
    ] {
        let (status, err) = post_json(&t, &base, &id_token, body.clone()).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some(code)), "{body} -> {err}");
    }

    // Another organization's owner sees a 404; an unknown webhook id is a 404.
    crate::support::new_org(&t.server().ezw, "Other", "owner@other.example").await;
    let other_token = t.login_as("owner@other.example", "owner-password").await;
    let (status, _) = t.get_json(&base, &other_token).await;
    assert_eq!(status, 404);
    let (status, _) = t.get_json(&format!("{base}/wh_01JZZZZZZZZZZZZZZZZZZZZZZZ"), &id_token).await;
    assert_eq!(status, 404);

    // Config changes are in the audit trail, without secrets.
    let (status, audit) = t.get_json("/api/audit-logs?eventType=webhook.", &id_token).await;
    assert_eq!(status, 200, "{audit}");
    let actions: Vec<&str> =
        audit["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["webhook.updated", "webhook.updated", "webhook.created"]);
    assert!(!audit.to_string().contains("whsec_"));

    // Delete.
    let res = t.http.delete(t.url(&format!("{base}/{id}"))).bearer_auth(&id_token).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let (status, _) = t.get_json(&format!("{base}/{id}"), &id_token).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn gone_disables_the_webhook_and_redelivery_reuses_the_delivery_id() {
    let t = TestServer::start().await;
    let receiver = Receiver::start().await;
    let token = t.demo.line_token.clone();
    let hook = messages_webhook(&t, &receiver).await;
    let webhook_id = hook["id"].as_str().unwrap().to_owned();
    receiver.answer(410, None);
    send(&t, "gone-1", "+972501234567", "first").await;
    let hook_path = format!("/api/v1/webhooks/{webhook_id}");
    let disabled = eventually(&t.clock, Duration::from_millis(100), || async {
        let (_, w) = t.get_json(&hook_path, &token).await;
        (w["enabled"] == false).then_some(w)
    })
    .await;
    assert_eq!(disabled["disabledReason"], "gone");
    let first = receiver.got()[0].header("webhook-id").to_owned();

    // While disabled, new events are not queued for it.
    send(&t, "gone-2", "+972501234567", "second").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, list) = t.get_json(&format!("{hook_path}/deliveries"), &token).await;
    assert_eq!(list["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(list["deliveries"][0]["status"], "failed");

    // Re-enabled and redelivered: the same delivery id arrives again and succeeds.
    receiver.answer(204, None);
    enable(&t, &hook_path).await;
    let (status, again) = post_json(&t, &format!("{hook_path}/deliveries/{first}/redeliver"), &token, json!({})).await;
    assert_eq!(status, 202, "{again}");
    let ok = eventually(&t.clock, Duration::from_millis(100), || async {
        receiver.got().into_iter().find(|g| g.answered == 204)
    })
    .await;
    assert_eq!(ok.header("webhook-id"), first);
    let (_, one) = t.get_json(&format!("{hook_path}/deliveries/{first}"), &token).await;
    assert_eq!(one["status"], "succeeded");
    assert_eq!(one["attempts"], 2);

    // The automatic disable is audited as a system action.
    let id_token = t.login().await;
    let (_, audit) = t.get_json("/api/audit-logs", &id_token).await;
    let disabled = audit["events"].as_array().unwrap().iter().find(|e| e["action"] == "webhook.disabled").cloned();
    let disabled = disabled.expect("audited");
    assert_eq!(disabled["actor"]["kind"], "system");
    assert_eq!(disabled["details"]["reason"], "gone");
}

#[tokio::test]
async fn a_webhook_failing_for_five_days_is_disabled_and_its_events_are_held() {
    let t = TestServer::start().await;
    let receiver = Receiver::start().await;
    let token = t.demo.line_token.clone();
    let hook = messages_webhook(&t, &receiver).await;
    let webhook_id = hook["id"].as_str().unwrap().to_owned();
    let hook_path = format!("/api/v1/webhooks/{webhook_id}");
    receiver.answer(500, None);
    // One send a day keeps the webhook failing continuously.
    let mut day = 0;
    let disabled = loop {
        send(&t, &format!("fail-{day}"), "+972501234567", &format!("day {day}")).await;
        let (_, w) = t.get_json(&hook_path, &token).await;
        if w["enabled"] == false {
            break w;
        }
        assert!(day < 8, "never disabled: {w}");
        for _ in 0..24 {
            t.clock.advance(Duration::from_secs(3600));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        day += 1;
    };
    assert_eq!(disabled["disabledReason"], "failing");
    assert!((5..=7).contains(&day), "disabled after {day} days");
    let (_, list) = t.get_json(&format!("{hook_path}/deliveries?limit=200"), &token).await;
    assert!(list["deliveries"].as_array().unwrap().iter().any(|d| d["status"] == "held"), "{list}");
    // Enabled again with a working receiver: the held deliveries go out.
    receiver.answer(200, None);
    enable(&t, &hook_path).await;
    eventually(&t.clock, Duration::from_millis(100), || async {
        let (_, list) = t.get_json(&format!("{hook_path}/deliveries?limit=200"), &token).await;
        list["deliveries"].as_array().unwrap().iter().all(|d| d["status"] != "held").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_rotated_secret_signs_with_both_during_the_grace_period() {
    let t = TestServer::start().await;
    let receiver = Receiver::start().await;
    let token = t.demo.line_token.clone();
    let hook = messages_webhook(&t, &receiver).await;
    let (old, id) = (hook["secret"].as_str().unwrap().to_owned(), hook["id"].as_str().unwrap().to_owned());
    let (status, rotated) = post_json(&t, &format!("/api/v1/webhooks/{id}/secret"), &token, json!({})).await;
    assert_eq!(status, 201, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    send(&t, "rot-1", "+972501234567", "during grace").await;
    let got = eventually(&t.clock, Duration::from_millis(100), || async { receiver.got().pop() }).await;
    assert_eq!(got.header("webhook-signature").split(' ').count(), 2);
    assert!(got.verifies_with(&old) && got.verifies_with(&new));
    // After the grace period only the new secret signs.
    t.clock.advance(Duration::from_secs(86_401));
    send(&t, "rot-2", "+972501234568", "after grace").await;
    let got = eventually(&t.clock, Duration::from_millis(100), || async {
        let got = receiver.got();
        (got.len() == 2).then(|| got[1].clone())
    })
    .await;
    assert_eq!(got.header("webhook-signature").split(' ').count(), 1);
    assert!(got.verifies_with(&new) && !got.verifies_with(&old));
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ezw::ManualClock::new(ezw::Timestamp::from_unix_ms(1_795_000_000_000));
    let t = TestServer::start_with(dir, clock, |o| o.allow_private_webhook_targets(false)).await;
    let token = t.demo.line_token.clone();
    for url in [
        "http://localhost:8080/hook",
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://10.0.0.8/hook",
        "http://192.168.1.20/hook",
        "http://[fd00:ec2::254]/",
    ] {
        let (status, err) = post_json(&t, "/api/v1/webhooks", &token, json!({ "targetUrl": url })).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some("webhook_target_private")), "{url}: {err}");
    }
    let (status, err) = post_json(&t, "/api/v1/webhooks", &token, json!({ "targetUrl": "http://" })).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_webhook_url")), "{err}");
    let (_, list) = t.get_json("/api/v1/webhooks", &token).await;
    assert_eq!(list["webhooks"], json!([]), "nothing was stored");
}
