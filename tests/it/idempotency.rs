//! Idempotent sends over HTTP.

use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn fifty_concurrent_sends_with_one_key_make_one_message() {
    let t = TestServer::start().await;
    let token = t.demo.line_token.clone();
    let body = json!({"to": "+972501234567", "body": "exactly once"});
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (http, url, token, body) = (t.http.clone(), t.url("/api/v1/messages/text"), token.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let res = http
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", "same-key-50")
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let (status, m) = task.await.unwrap();
        assert_eq!(status, 202, "{m}");
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 50);
    assert!(ids.iter().all(|id| id == &ids[0]), "every response carries the same message id");
    let id_token = t.login().await;
    let (_, m) = t.get_json(&format!("/api/v1/messages/{}", ids[0]), &token).await;
    let messages = t.messages(&id_token, m["conversationId"].as_str().unwrap()).await;
    assert_eq!(messages.len(), 1, "exactly one message exists");
}

#[tokio::test]
async fn key_reuse_with_a_different_request_is_a_conflict() {
    let t = TestServer::start().await;
    let token = t.demo.line_token.clone();
    let (s, first) = t.send_text(&token, Some("order-1"), json!({"to": "+972501234567", "body": "A"})).await;
    assert_eq!(s, 202);
    let res = t
        .http
        .post(t.url("/api/v1/messages/text"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "order-1")
        .json(&json!({"to": "+972501234567", "body": "A"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    let replay: serde_json::Value = res.json().await.unwrap();
    assert_eq!(replay["id"], first["id"]);

    let (s, err) = t.send_text(&token, Some("order-1"), json!({"to": "+972501234567", "body": "B"})).await;
    assert_eq!(s, 409);
    assert_eq!(err["error"]["code"], "idempotency_key_reused");
    assert_eq!(err["error"]["messageId"], first["id"]);
    let (s, err) = t.send_text(&token, Some("order-1"), json!({"to": "+972501234568", "body": "A"})).await;
    assert_eq!((s, err["error"]["code"].as_str()), (409, Some("idempotency_key_reused")));
}

#[tokio::test]
async fn header_key_wins_over_body_key() {
    let t = TestServer::start().await;
    let token = t.demo.line_token.clone();
    let (_, a) =
        t.send_text(&token, None, json!({"to": "+972501234567", "body": "A", "idempotencyKey": "body-key"})).await;
    assert_eq!(a["idempotencyKey"], "body-key");
    // The same body key again replays.
    let (_, again) =
        t.send_text(&token, None, json!({"to": "+972501234567", "body": "A", "idempotencyKey": "body-key"})).await;
    assert_eq!(again["id"], a["id"]);
    // A header overrides the body key: a new message under the header key.
    let (s, b) = t
        .send_text(
            &token,
            Some("header-key"),
            json!({"to": "+972501234567", "body": "A", "idempotencyKey": "body-key"}),
        )
        .await;
    assert_eq!(s, 202);
    assert_eq!(b["idempotencyKey"], "header-key");
    assert_ne!(b["id"], a["id"]);
}
