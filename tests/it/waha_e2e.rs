//! WAHA lines end to end through the server: a `message` event signed with the line's
//! `webhookHmacKey` (HMAC-SHA512 computed here, independently of the code under test) becomes an
//! inbound message in the inbox; a forged or missing signature is `401` and stores nothing.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use crate::support::{eventually, TestServer};

const HMAC_KEY: &str = "waha-e2e-hmac-key-0123456789";

fn sign(key: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha512> as Mac>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn message_event(text: &str, id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": format!("evt_{id}"),
        "timestamp": 1_767_225_600_123u64,
        "session": "ezw-e2e",
        "engine": "NOWEB",
        "event": "message",
        "payload": {
            "id": format!("false_972501234567@c.us_{id}"),
            "timestamp": 1_767_225_599,
            "from": "972501234567@c.us",
            "fromMe": false,
            "to": "15550170200@c.us",
            "body": text,
            "hasMedia": false,
            "ack": 1,
            "ackName": "SERVER",
            "_data": {"pushName": "Dana Levi"}
        },
        "me": {"id": "15550170200@c.us", "pushName": "EZW Line"}
    }))
    .unwrap()
}

async fn deliver(t: &TestServer, line: &str, body: Vec<u8>, signature: Option<&str>) -> u16 {
    let mut req = t.http.post(t.url(&format!("/hooks/waha/{line}"))).header("content-type", "application/json");
    if let Some(signature) = signature {
        req = req.header("x-webhook-hmac", signature).header("x-webhook-hmac-algorithm", "sha512");
    }
    req.body(body).send().await.unwrap().status().as_u16()
}

async fn conversations(t: &TestServer, token: &str, line: &str) -> Vec<Value> {
    let (status, body) = t.get_json(&format!("/api/conversations?lineId={line}"), token).await;
    assert_eq!(status, 200, "{body}");
    body["conversations"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn signed_waha_events_reach_the_inbox_and_forged_ones_are_refused() {
    let t = TestServer::start().await;
    let token = t.login().await;
    // The sidecar itself is not needed for webhooks; nothing listens at this address.
    let res = t
        .http
        .post(t.url("/api/lines"))
        .bearer_auth(&token)
        .json(&json!({
            "displayName": "WAHA support",
            "phoneNumber": "+15550170200",
            "provider": {"kind": "waha", "baseUrl": "http://127.0.0.1:9", "session": "ezw-e2e",
                         "webhookHmacKey": HMAC_KEY}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let line: Value = res.json().await.unwrap();
    let line_id = line["id"].as_str().unwrap().to_owned();
    assert_eq!(line["lifecycleState"], "created", "a QR line starts unpaired");
    assert_ne!(line["provider"]["webhookHmacKey"], HMAC_KEY, "the key is masked: {}", line["provider"]);

    // Forged: another key, a changed body, no header. Nothing is stored.
    let body = message_event("forged", "3EB0FORGED");
    assert_eq!(deliver(&t, &line_id, body.clone(), Some(&sign("another-key-0123456789", &body))).await, 401);
    let mut tampered = body.clone();
    let signature = sign(HMAC_KEY, &body);
    *tampered.iter_mut().rev().nth(3).unwrap() ^= 1;
    assert_eq!(deliver(&t, &line_id, tampered, Some(&signature)).await, 401);
    assert_eq!(deliver(&t, &line_id, body, None).await, 401);
    assert!(conversations(&t, &token, &line_id).await.is_empty(), "a refused webhook stores nothing");

    // Genuine: stored once, even when WAHA delivers it twice.
    let body = message_event("Hi, is the store open today?", "3EB0A1B2C3D4");
    let signature = sign(HMAC_KEY, &body);
    assert_eq!(deliver(&t, &line_id, body.clone(), Some(&signature)).await, 200);
    assert_eq!(deliver(&t, &line_id, body, Some(&signature)).await, 200);
    let conversation = eventually(&t.clock, std::time::Duration::from_millis(10), || async {
        conversations(&t, &token, &line_id).await.into_iter().next()
    })
    .await;
    let messages = t.messages(&token, conversation["id"].as_str().unwrap()).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["direction"], "inbound");
    assert_eq!(messages[0]["body"], "Hi, is the store open today?");
    assert_eq!(
        (conversation["contactPhone"].as_str(), conversation["contactProfileName"].as_str()),
        (Some("+972501234567"), Some("Dana Levi")),
        "{conversation}"
    );
}
