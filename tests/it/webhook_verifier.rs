//! EZW's signed webhooks checked by the official Standard Webhooks library (the npm package
//! `standardwebhooks`), as a customer's Node receiver would check them: `tests/webhook-verifier/`
//! is that receiver. `.ci/run` installs and starts it and runs this with `--ignored`; locally:
//! `npm ci --prefix tests/webhook-verifier && PORT=17120 node tests/webhook-verifier/receiver.mjs`,
//! then `EZW_WEBHOOK_VERIFIER_URL=http://127.0.0.1:17120 cargo test --features http --test it
//! webhook_verifier -- --ignored --nocapture`.
//!
//! The library checks `webhook-timestamp` against the real wall clock (5 minutes' tolerance), so
//! the server's manual clock starts at the real time and moves in small steps.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use ezw::{Clock, ManualClock, SystemClock};
use serde_json::{json, Value};

use crate::support::{eventually, TestServer};

/// How far the manual clock may run ahead of the wall clock before the verifier's 5-minute
/// tolerance is at risk.
const MAX_DRIFT: Duration = Duration::from_secs(120);

fn verifier_url() -> String {
    std::env::var("EZW_WEBHOOK_VERIFIER_URL").unwrap_or_else(|_| {
        panic!(
            "EZW_WEBHOOK_VERIFIER_URL must point at a running tests/webhook-verifier receiver (see this file's docs)"
        )
    })
}

/// Panics if the manual clock has run so far ahead of real time that timestamps would be refused.
fn assert_near_real_time(clock: &ManualClock) {
    let ahead = clock.now().since(SystemClock.now());
    assert!(ahead < MAX_DRIFT, "the manual clock ran {ahead:?} ahead of real time; the verifier would refuse it");
}

async fn post_json(t: &TestServer, url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = t.http.post(url).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The verifier's library and version, e.g. `standardwebhooks@1.1.1`.
async fn library(verifier: &str) -> String {
    let res = reqwest::get(format!("{verifier}/"))
        .await
        .unwrap_or_else(|e| panic!("the webhook verifier at {verifier} does not answer: {e}"));
    let body: Value = res.json().await.unwrap();
    body["library"].as_str().expect("the verifier names its library").to_owned()
}

/// Points the verifier at `secret` (clearing its results).
async fn configure(t: &TestServer, verifier: &str, secret: &str) {
    let (status, body) = post_json(t, &format!("{verifier}/config"), None, json!({ "secret": secret })).await;
    assert_eq!(status, 204, "verifier /config: {body}");
}

async fn results(t: &TestServer, verifier: &str) -> Vec<Value> {
    let res = t.http.get(format!("{verifier}/results")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Vec<Value>>().await.unwrap()
}

/// Sends a text to each number; returns the message ids by number.
async fn send_all(t: &TestServer, tag: &str, numbers: &[&str]) -> HashMap<String, String> {
    let mut ids = HashMap::new();
    for (i, to) in numbers.iter().enumerate() {
        let body = json!({ "to": to, "body": format!("{tag} {i}") });
        let (status, msg) = t.send_text(&t.demo.line_token, Some(&format!("{tag}-{i}")), body).await;
        assert_eq!(status, 202, "{msg}");
        ids.insert((*to).to_owned(), msg["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Whether the verified records hold, for every sent message, its `messages.post`, its
/// `statuses.post` for sent, delivered and read, and the `chats.post` of its new conversation.
fn complete(records: &[Value], sent: &HashMap<String, String>) -> bool {
    let verified: Vec<&Value> = records.iter().filter(|r| r["verified"] == true).collect();
    let has = |event: &str, pred: &dyn Fn(&Value) -> bool| {
        verified.iter().any(|r| r["event"] == event && r["payload"]["type"] == event && pred(&r["payload"]["data"]))
    };
    sent.iter().all(|(phone, id)| {
        has("chats.post", &|d| d["conversation"]["contactPhone"] == phone.as_str())
            && has("messages.post", &|d| d["message"]["id"] == id.as_str())
            && ["sent", "delivered", "read"].iter().all(|status| {
                has("statuses.post", &|d| d["message"]["id"] == id.as_str() && d["message"]["status"] == *status)
            })
    })
}

/// Advances the clock until the verifier has every expected delivery (or refused one), then
/// asserts all verified; returns the records.
async fn verified_deliveries(
    t: &TestServer,
    verifier: &str,
    sent: &HashMap<String, String>,
    signatures: usize,
) -> Vec<Value> {
    let records = eventually(&t.clock, Duration::from_millis(250), || async {
        assert_near_real_time(&t.clock);
        let records = results(t, verifier).await;
        (records.iter().any(|r| r["verified"] != true) || complete(&records, sent)).then_some(records)
    })
    .await;
    let refused: Vec<&Value> = records.iter().filter(|r| r["verified"] != true).collect();
    assert!(refused.is_empty(), "the verifier refused {} deliveries: {refused:#?}", refused.len());
    for r in &records {
        assert!(r["deliveryId"].as_str().is_some_and(|id| id.starts_with("dlv_")), "{r}");
        assert_eq!(r["signatures"], signatures, "{r}");
    }
    records
}

/// The webhook's deliveries once the server has recorded `n` of them, all succeeded.
async fn server_deliveries(t: &TestServer, webhook_id: &str, n: usize) -> Vec<Value> {
    let path = format!("/api/v1/webhooks/{webhook_id}/deliveries?limit=200");
    eventually(&t.clock, Duration::from_millis(250), || async {
        assert_near_real_time(&t.clock);
        let (status, list) = t.get_json(&path, &t.demo.line_token).await;
        assert_eq!(status, 200, "{list}");
        let list = list["deliveries"].as_array().cloned().unwrap_or_default();
        (list.len() >= n && list.iter().all(|d| d["status"] == "succeeded")).then_some(list)
    })
    .await
}

fn ids<'a>(items: impl IntoIterator<Item = &'a Value>, field: &str) -> BTreeSet<String> {
    items.into_iter().map(|v| v[field].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
#[ignore = "needs the Node Standard Webhooks verifier; .ci/run starts it"]
async fn the_standard_webhooks_library_verifies_every_delivery_and_a_rotated_secret() {
    let verifier = verifier_url();
    let library = library(&verifier).await;

    let dir = tempfile::tempdir().unwrap();
    let t = TestServer::start_with(dir, ManualClock::new(SystemClock.now()), |o| o).await;
    let token = t.demo.line_token.clone();
    let (status, hook) = post_json(
        &t,
        &t.url("/api/v1/webhooks"),
        Some(&token),
        json!({
            "targetUrl": format!("{verifier}/hook"),
            "events": ["messages.post", "statuses.post", "chats.post"],
        }),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    assert_eq!(hook["payloadFormat"], "ezw");
    let webhook_id = hook["id"].as_str().unwrap().to_owned();
    configure(&t, &verifier, hook["secret"].as_str().unwrap()).await;

    // Three new conversations: chats.post, messages.post and sent -> delivered -> read each.
    let sent = send_all(&t, "verify", &["+972501110001", "+972501110002", "+972501110003"]).await;
    let first = verified_deliveries(&t, &verifier, &sent, 1).await;
    let deliveries = server_deliveries(&t, &webhook_id, first.len()).await;
    assert_eq!(first.len(), deliveries.len(), "one verified request per delivery the server reports");
    assert_eq!(ids(&first, "deliveryId"), ids(&deliveries, "id"), "the same delivery ids");

    // Rotation: during the grace period deliveries carry both signatures; the verifier knows
    // only the new secret and still accepts them.
    let (status, rotated) =
        post_json(&t, &t.url(&format!("/api/v1/webhooks/{webhook_id}/secret")), Some(&token), json!({})).await;
    assert_eq!(status, 201, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_ne!(new_secret, hook["secret"].as_str().unwrap());
    configure(&t, &verifier, new_secret).await;
    let after = send_all(&t, "rotated", &["+972501110004"]).await;
    let second = verified_deliveries(&t, &verifier, &after, 2).await;
    let total = first.len() + second.len();
    let deliveries = server_deliveries(&t, &webhook_id, total).await;
    assert_eq!(total, deliveries.len(), "one verified request per delivery the server reports");
    assert_eq!(ids(first.iter().chain(&second), "deliveryId"), ids(&deliveries, "id"));
    assert_near_real_time(&t.clock);

    println!("webhook verifier: {total} deliveries verified by {library}");
}
