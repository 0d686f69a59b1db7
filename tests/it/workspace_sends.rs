//! Workspace sends (`POST /api/lines/{lineId}/send`): JSON texts and forwards, multipart image
//! uploads stored as attachments and delivered through signed URLs, signed media URLs, billing
//! and organization scope.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ezw::Clock as _;
use serde_json::{json, Value};

use crate::meta_e2e::{meta_line, MetaLine, PHONE_NUMBER_ID};
use crate::support::{eventually, new_org, new_sim_line, TestServer};

const TO: &str = "+972501234567";
const OTHER: &str = "+972501234568";

/// PNG magic, then `fill` up to `len` bytes (only the magic decides the type).
fn png(fill: u8, len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.resize(len, fill);
    bytes
}

struct Part {
    name: &'static str,
    filename: Option<&'static str>,
    content_type: Option<&'static str>,
    data: Vec<u8>,
}

fn text(name: &'static str, value: &str) -> Part {
    Part { name, filename: None, content_type: None, data: value.as_bytes().to_vec() }
}

fn file(name: &'static str, filename: &'static str, content_type: &'static str, data: Vec<u8>) -> Part {
    Part { name, filename: Some(filename), content_type: Some(content_type), data }
}

/// A `multipart/form-data` body: (content type, bytes).
fn multipart(parts: &[Part]) -> (String, Vec<u8>) {
    let boundary = "ezw-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match p.filename {
            Some(f) => format!("Content-Disposition: form-data; name=\"{}\"; filename=\"{f}\"\r\n", p.name),
            None => format!("Content-Disposition: form-data; name=\"{}\"\r\n", p.name),
        };
        body.extend_from_slice(disposition.as_bytes());
        if let Some(ct) = p.content_type {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&p.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// POSTs a JSON workspace send; returns status, body and whether it was a replay.
async fn send_json(t: &TestServer, line: &str, token: &str, key: Option<&str>, body: Value) -> (u16, Value, bool) {
    let mut req = t.http.post(t.url(&format!("/api/lines/{line}/send"))).bearer_auth(token).json(&body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let res = req.send().await.unwrap();
    let replayed = res.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null), replayed)
}

/// POSTs a multipart workspace send; returns status, body and whether it was a replay.
async fn send_form(t: &TestServer, line: &str, token: &str, key: &str, parts: &[Part]) -> (u16, Value, bool) {
    let (content_type, body) = multipart(parts);
    let res = t
        .http
        .post(t.url(&format!("/api/lines/{line}/send")))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let replayed = res.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null), replayed)
}

/// Waits until a message of the demo line reaches `status` (the simulator advances on the clock).
/// Waits until the message reaches `status` or a later one (the simulator moves on from
/// `delivered` to `read` on its own, possibly between two polls).
async fn wait_status(t: &TestServer, id: &str, status: &str) -> Value {
    const ORDER: [&str; 4] = ["queued", "sent", "delivered", "read"];
    let rank = |s: &str| ORDER.iter().position(|o| *o == s);
    let wanted = rank(status);
    eventually(&t.clock, Duration::from_millis(50), || async {
        let (_, m) = t.get_json(&format!("/api/v1/messages/{id}"), &t.demo.line_token).await;
        let now = m["status"].as_str().unwrap_or_default();
        let reached = now == status || matches!((rank(now), wanted), (Some(n), Some(w)) if n >= w);
        reached.then_some(m)
    })
    .await
}

/// Media files in the server's blob store.
fn stored_blobs(t: &TestServer) -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&t.dir.path().join("blobs"), &mut out);
    out
}

async fn conversation_count(t: &TestServer, token: &str) -> usize {
    let (status, list) = t.get_json("/api/conversations?limit=200", token).await;
    assert_eq!(status, 200, "{list}");
    list["conversations"].as_array().unwrap().len()
}

/// Sets an organization's billing state directly in the database.
fn set_billing(t: &TestServer, org_id: &str, state: &str) {
    let conn = rusqlite::Connection::open(t.dir.path().join("ezw.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let n = conn.execute("UPDATE organizations SET billing_state = ?1 WHERE id = ?2", [state, org_id]).unwrap();
    assert_eq!(n, 1);
}

async fn get(t: &TestServer, url: &str) -> reqwest::Response {
    t.http.get(url).send().await.unwrap()
}

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

#[tokio::test]
async fn json_sends_reach_a_number_and_then_its_conversation() {
    let t = TestServer::start().await;
    let id_token = t.login().await;
    let line = t.demo.line_id.clone();
    let (s, m, replayed) =
        send_json(&t, &line, &id_token, Some("ws-1"), json!({"to": TO, "bodyText": "Hello from the inbox"})).await;
    assert_eq!((s, replayed), (202, false), "{m}");
    assert_eq!(m["status"], "queued");
    assert_eq!(m["type"], "text");
    assert_eq!(m["body"], "Hello from the inbox");
    assert_eq!(m["direction"], "outbound");
    assert_eq!(m["idempotencyKey"], "ws-1");
    assert!(m["sentByUserId"].as_str().is_some_and(|u| u.starts_with("usr_")), "{m}");
    let delivered = wait_status(&t, m["id"].as_str().unwrap(), "delivered").await;
    assert_eq!(delivered["attempts"], 1);

    let conv = m["conversationId"].as_str().unwrap();
    let (s, reply, _) =
        send_json(&t, &line, &id_token, Some("ws-2"), json!({"conversationId": conv, "bodyText": "Second"})).await;
    assert_eq!(s, 202, "{reply}");
    assert_eq!(reply["conversationId"], conv);
    wait_status(&t, reply["id"].as_str().unwrap(), "delivered").await;
    let bodies: Vec<Value> = t.messages(&id_token, conv).await.iter().map(|m| m["body"].clone()).collect();
    assert_eq!(bodies, [json!("Second"), json!("Hello from the inbox")]);
}

#[tokio::test]
async fn the_key_is_required_replays_the_first_message_and_bad_bodies_are_400() {
    let t = TestServer::start().await;
    let id_token = t.login().await;
    let line = t.demo.line_id.clone();
    let body = json!({"to": TO, "bodyText": "Once"});
    let (s, e, _) = send_json(&t, &line, &id_token, None, body.clone()).await;
    assert_eq!((s, code(&e)), (400, Some("missing_idempotency_key")), "{e}");

    let (s, first, _) = send_json(&t, &line, &id_token, Some("ws-replay"), body.clone()).await;
    assert_eq!(s, 202, "{first}");
    let (s, again, replayed) = send_json(&t, &line, &id_token, Some("ws-replay"), body.clone()).await;
    assert_eq!((s, replayed), (202, true), "{again}");
    assert_eq!(again["id"], first["id"]);
    let (s, e, _) = send_json(&t, &line, &id_token, Some("ws-replay"), json!({"to": TO, "bodyText": "Twice"})).await;
    assert_eq!((s, code(&e)), (409, Some("idempotency_key_reused")), "{e}");
    assert_eq!(e["error"]["messageId"], first["id"]);

    let cases = [
        (json!({"bodyText": "no target"}), "missing_target"),
        (json!({"to": TO, "conversationId": first["conversationId"], "bodyText": "both"}), "ambiguous_target"),
        (json!({"to": TO}), "empty_body"),
        (json!({"to": TO, "bodyText": "x", "forwardMessageId": first["id"]}), "invalid_request"),
        (json!({"to": TO, "bodyText": "x", "body": "unknown field"}), "invalid_request"),
        (json!({"to": TO, "bodyText": 5}), "invalid_request"),
        (json!({"to": "not a number", "bodyText": "x"}), "invalid_phone_number"),
    ];
    for (i, (body, expected)) in cases.into_iter().enumerate() {
        let (s, e, _) = send_json(&t, &line, &id_token, Some(&format!("bad-{i}")), body.clone()).await;
        assert_eq!((s, code(&e)), (400, Some(expected)), "{body} -> {e}");
    }
    // Line tokens are for the Channel API.
    let (s, e, _) = send_json(&t, &line, &t.demo.line_token, Some("lt"), json!({"to": TO, "bodyText": "x"})).await;
    assert_eq!((s, code(&e)), (401, Some("wrong_token_type")), "{e}");
    let (s, _, _) = send_json(&t, "line_nope", &id_token, Some("nl"), json!({"to": TO, "bodyText": "x"})).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn an_uploaded_png_is_stored_delivered_and_read_through_a_signed_url() {
    let t = TestServer::start().await;
    let id_token = t.login().await;
    let line = t.demo.line_id.clone();
    let image = png(7, 4096);
    let parts =
        [text("to", TO), text("bodyText", "Your receipt"), file("image", "receipt.png", "image/png", image.clone())];
    let (s, m, replayed) = send_form(&t, &line, &id_token, "up-1", &parts).await;
    assert_eq!((s, replayed), (202, false), "{m}");
    assert_eq!(m["type"], "image");
    assert_eq!(m["body"], "Your receipt");
    assert_eq!(m["media"]["caption"], "Your receipt");
    assert_eq!(m["media"]["mimeType"], "image/png");
    assert!(m["media"]["url"].is_null(), "{m}");
    let att = m["media"]["attachmentId"].as_str().unwrap().to_owned();
    assert!(att.starts_with("att_"), "{m}");
    let blobs = stored_blobs(&t);
    assert_eq!(blobs.len(), 1);
    assert!(blobs[0].ends_with(&att));
    assert_eq!(std::fs::read(&blobs[0]).unwrap(), image);
    wait_status(&t, m["id"].as_str().unwrap(), "delivered").await;

    // A replay answers the first message and stores nothing again; another image is a 409.
    let (s, again, replayed) = send_form(&t, &line, &id_token, "up-1", &parts).await;
    assert_eq!((s, replayed), (202, true), "{again}");
    assert_eq!(again["id"], m["id"]);
    assert_eq!(again["media"]["attachmentId"], att.as_str());
    let other =
        [text("to", TO), text("bodyText", "Your receipt"), file("image", "receipt.png", "image/png", png(8, 4096))];
    let (s, e, _) = send_form(&t, &line, &id_token, "up-1", &other).await;
    assert_eq!((s, code(&e)), (409, Some("idempotency_key_reused")), "{e}");
    assert_eq!(stored_blobs(&t).len(), 1);

    // A signed URL (default 300 s) reads the exact bytes without a bearer token.
    let (s, signed) = t.get_json(&format!("/api/attachments/{att}/url"), &id_token).await;
    assert_eq!(s, 200, "{signed}");
    let url = signed["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/media/{att}?expires=", t.base)), "{url}");
    assert!(url.contains("&signature="), "{url}");
    let expires = t.clock.now().unix_secs() + 300;
    assert_eq!(signed["expiresAt"], ezw::Timestamp::from_unix_ms(expires * 1000).to_rfc3339());
    let res = get(&t, &url).await;
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["content-length"], image.len().to_string().as_str());
    assert_eq!(h["cache-control"], "private, max-age=300");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-disposition"], "inline");
    assert_eq!(res.bytes().await.unwrap().as_ref(), image.as_slice());

    // Tampering with any part is 403 invalid_signature.
    let sig_at = url.find("&signature=").unwrap() + "&signature=".len();
    let mut bad_sig = url.clone();
    let flipped = if url.as_bytes()[sig_at] == b'A' { "B" } else { "A" };
    bad_sig.replace_range(sig_at..=sig_at, flipped);
    let bad_expiry = url.replace(&format!("expires={expires}"), &format!("expires={}", expires + 1000));
    let other_id = url.replace(&att, "att_01JZZZZZZZZZZZZZZZZZZZZZZZ");
    let unsigned = url[..sig_at - "&signature=".len()].to_owned();
    for tampered in [bad_sig, bad_expiry, other_id, unsigned, format!("{}/media/{att}", t.base)] {
        let res = get(&t, &tampered).await;
        assert_eq!(res.status(), 403, "{tampered}");
        let e: Value = res.json().await.unwrap();
        assert_eq!(code(&e), Some("invalid_signature"), "{tampered}");
    }

    // A short URL works until it expires on the server's clock.
    let (s, short) = t.get_json(&format!("/api/attachments/{att}/url?expiresInSeconds=60"), &id_token).await;
    assert_eq!(s, 200, "{short}");
    let short = short["url"].as_str().unwrap().to_owned();
    t.clock.advance(Duration::from_secs(59));
    let res = get(&t, &short).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "private, max-age=1");
    t.clock.advance(Duration::from_secs(1));
    let res = get(&t, &short).await;
    assert_eq!(res.status(), 403);
    assert_eq!(code(&res.json().await.unwrap()), Some("url_expired"));

    for bad in ["0", "3601", "-1", "abc", "1.5", ""] {
        let (s, e) = t.get_json(&format!("/api/attachments/{att}/url?expiresInSeconds={bad}"), &id_token).await;
        assert_eq!((s, code(&e)), (400, Some("invalid_expires_in")), "{bad}: {e}");
    }
    let (s, max) = t.get_json(&format!("/api/attachments/{att}/url?expiresInSeconds=3600"), &id_token).await;
    assert_eq!(s, 200, "{max}");
    let (s, _) = t.get_json("/api/attachments/att_01JZZZZZZZZZZZZZZZZZZZZZZZ/url", &id_token).await;
    assert_eq!(s, 404);
    let (s, _) = t.get_json(&format!("/api/attachments/{att}/url"), &t.demo.line_token).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn uploads_are_checked_before_anything_is_stored() {
    let t = TestServer::start().await;
    let id_token = t.login().await;
    let line = t.demo.line_id.clone();
    let big = png(1, 26_000_000);
    let (s, e, _) =
        send_form(&t, &line, &id_token, "big", &[text("to", TO), file("image", "big.png", "image/png", big)]).await;
    assert_eq!((s, code(&e)), (413, Some("payload_too_large")), "{e}");

    let gif = b"GIF89a\x01\0\x01\0\x80\0\0\0\0\0\xff\xff\xff!\xf9\x04".to_vec();
    let fake = b"this is a text file, not an image".to_vec();
    let cases: Vec<(Vec<Part>, u16, &str)> = vec![
        (vec![text("to", TO), file("image", "anim.gif", "image/gif", gif.clone())], 415, "unsupported_media_type"),
        (vec![text("to", TO), file("image", "anim.png", "image/png", gif)], 415, "unsupported_media_type"),
        (vec![text("to", TO), file("image", "notes.png", "image/png", fake)], 415, "unsupported_media_type"),
        (
            vec![
                text("to", TO),
                file("image", "a.png", "image/png", png(1, 64)),
                file("image", "b.png", "image/png", png(2, 64)),
            ],
            400,
            "too_many_files",
        ),
        (
            vec![
                text("to", TO),
                file("image", "a.png", "image/png", png(1, 64)),
                file("extra", "b.png", "image/png", png(2, 64)),
            ],
            400,
            "too_many_files",
        ),
        (vec![text("to", TO), text("bodyText", "no image")], 400, "missing_image"),
        (vec![text("to", TO), file("image", "empty.png", "image/png", Vec::new())], 400, "missing_image"),
        (
            vec![text("to", TO), text("note", "unknown"), file("image", "a.png", "image/png", png(1, 64))],
            400,
            "invalid_request",
        ),
        (vec![text("to", TO), text("to", TO), file("image", "a.png", "image/png", png(1, 64))], 400, "invalid_request"),
        (vec![file("image", "a.png", "image/png", png(1, 64))], 400, "missing_target"),
        (
            vec![
                text("to", TO),
                text("bodyText", &"x".repeat(17 * 1024)),
                file("image", "a.png", "image/png", png(1, 64)),
            ],
            413,
            "payload_too_large",
        ),
        (
            vec![text("to", TO), text("bodyText", &"x".repeat(1025)), file("image", "a.png", "image/png", png(1, 64))],
            400,
            "caption_too_long",
        ),
    ];
    for (i, (parts, status, expected)) in cases.iter().enumerate() {
        let (s, e, _) = send_form(&t, &line, &id_token, &format!("bad-{i}"), parts).await;
        assert_eq!((s, code(&e)), (*status, Some(*expected)), "case {i}: {e}");
    }
    let res = t
        .http
        .post(t.url(&format!("/api/lines/{line}/send")))
        .bearer_auth(&id_token)
        .header("Idempotency-Key", "no-boundary")
        .header("Content-Type", "multipart/form-data")
        .body("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(stored_blobs(&t).is_empty(), "nothing is stored: {:?}", stored_blobs(&t));
    assert_eq!(conversation_count(&t, &id_token).await, 0, "no message was accepted");

    // A JPEG is accepted like a PNG.
    let jpeg = [b"\xff\xd8\xff\xe0\0\x10JFIF\0".as_slice(), &[3u8; 100]].concat();
    let (s, m, _) =
        send_form(&t, &line, &id_token, "jpeg", &[text("to", TO), file("image", "p.jpg", "image/jpeg", jpeg)]).await;
    assert_eq!(s, 202, "{m}");
    assert_eq!(m["media"]["mimeType"], "image/jpeg");
    assert!(m["body"].is_null(), "{m}");
    wait_status(&t, m["id"].as_str().unwrap(), "delivered").await;
}

#[tokio::test]
async fn forwards_copy_texts_and_images_to_another_number() {
    let t = TestServer::start().await;
    let id_token = t.login().await;
    let line = t.demo.line_id.clone();
    let (s, original_text, _) =
        send_json(&t, &line, &id_token, Some("f-1"), json!({"to": TO, "bodyText": "Opening hours: 9-17"})).await;
    assert_eq!(s, 202, "{original_text}");
    let image = png(9, 2048);
    let (s, original_image, _) = send_form(
        &t,
        &line,
        &id_token,
        "f-2",
        &[text("to", TO), text("bodyText", "See the map"), file("image", "map.png", "image/png", image.clone())],
    )
    .await;
    assert_eq!(s, 202, "{original_image}");

    let (s, fwd_text, _) =
        send_json(&t, &line, &id_token, Some("f-3"), json!({"to": OTHER, "forwardMessageId": original_text["id"]}))
            .await;
    assert_eq!(s, 202, "{fwd_text}");
    assert_eq!(fwd_text["type"], "text");
    assert_eq!(fwd_text["body"], "Opening hours: 9-17");
    assert_ne!(fwd_text["conversationId"], original_text["conversationId"]);
    assert_ne!(fwd_text["id"], original_text["id"]);

    let (s, fwd_image, _) = send_json(
        &t,
        &line,
        &id_token,
        Some("f-4"),
        json!({"conversationId": fwd_text["conversationId"], "forwardMessageId": original_image["id"]}),
    )
    .await;
    assert_eq!(s, 202, "{fwd_image}");
    assert_eq!(fwd_image["type"], "image");
    assert_eq!(fwd_image["body"], "See the map");
    assert_eq!(fwd_image["media"]["caption"], "See the map");
    assert_eq!(fwd_image["media"]["attachmentId"], original_image["media"]["attachmentId"]);
    assert_eq!(fwd_image["conversationId"], fwd_text["conversationId"]);
    for m in [&original_text, &original_image, &fwd_text, &fwd_image] {
        wait_status(&t, m["id"].as_str().unwrap(), "delivered").await;
    }
    assert_eq!(stored_blobs(&t).len(), 1, "a forward refers to the stored attachment");
    let (s, again, replayed) = send_json(
        &t,
        &line,
        &id_token,
        Some("f-4"),
        json!({"conversationId": fwd_text["conversationId"], "forwardMessageId": original_image["id"]}),
    )
    .await;
    assert_eq!((s, replayed, &again["id"]), (202, true, &fwd_image["id"]));

    for missing in ["msg_01JZZZZZZZZZZZZZZZZZZZZZZZ", "not-an-id"] {
        let (s, e, _) =
            send_json(&t, &line, &id_token, Some("f-5"), json!({"to": OTHER, "forwardMessageId": missing})).await;
        assert_eq!((s, code(&e)), (404, Some("not_found")), "{e}");
    }
}

#[tokio::test]
async fn a_restricted_organization_cannot_send_on_either_api() {
    let t = TestServer::start().await;
    let id_token = t.login().await;
    let line = t.demo.line_id.clone();
    set_billing(&t, &t.demo.organization_id, "restricted");
    let (s, e, _) = send_json(&t, &line, &id_token, Some("r-1"), json!({"to": TO, "bodyText": "held"})).await;
    assert_eq!((s, code(&e)), (409, Some("billing_restricted")), "{e}");
    let (s, e) = t.send_text(&t.demo.line_token, Some("r-2"), json!({"to": TO, "body": "held"})).await;
    assert_eq!((s, code(&e)), (409, Some("billing_restricted")), "{e}");
    let parts = [text("to", TO), file("image", "a.png", "image/png", png(1, 64))];
    let (s, e, _) = send_form(&t, &line, &id_token, "r-3", &parts).await;
    assert_eq!((s, code(&e)), (409, Some("billing_restricted")), "{e}");
    assert!(stored_blobs(&t).is_empty());
    assert_eq!(conversation_count(&t, &id_token).await, 0);

    set_billing(&t, &t.demo.organization_id, "active");
    let (s, m, _) = send_json(&t, &line, &id_token, Some("r-1"), json!({"to": TO, "bodyText": "held"})).await;
    assert_eq!(s, 202, "{m}");
    let (s, m) = t.send_text(&t.demo.line_token, Some("r-2"), json!({"to": TO, "body": "held"})).await;
    assert_eq!(s, 202, "{m}");
}

#[tokio::test]
async fn another_organizations_lines_messages_and_attachments_are_not_found() {
    let t = TestServer::start().await;
    let id_token = t.login().await;
    let line = t.demo.line_id.clone();
    let (_, demo_image, _) =
        send_form(&t, &line, &id_token, "o-1", &[text("to", TO), file("image", "a.png", "image/png", png(4, 256))])
            .await;
    let demo_att = demo_image["media"]["attachmentId"].as_str().unwrap().to_owned();

    let ezw = &t.server().ezw;
    let (org2, p2) = new_org(ezw, "Other Co", "boss@other.example").await;
    let line2 = new_sim_line(ezw, &p2, "+15550100009", json!({})).await;
    let other = t.login_as("boss@other.example", "owner-password").await;

    let (s, e) = t.get_json(&format!("/api/attachments/{demo_att}/url"), &other).await;
    assert_eq!((s, code(&e)), (404, Some("not_found")), "{e}");
    let (s, e, _) = send_json(&t, &line, &other, Some("o-2"), json!({"to": TO, "bodyText": "hijack"})).await;
    assert_eq!((s, code(&e)), (404, Some("not_found")), "{e}");
    let (s, e, _) =
        send_json(&t, line2.id.as_str(), &other, Some("o-3"), json!({"to": TO, "forwardMessageId": demo_image["id"]}))
            .await;
    assert_eq!((s, code(&e)), (404, Some("not_found")), "{e}");
    let (s, e, _) = send_json(
        &t,
        line2.id.as_str(),
        &other,
        Some("o-4"),
        json!({"conversationId": demo_image["conversationId"], "bodyText": "hijack"}),
    )
    .await;
    assert_eq!((s, code(&e)), (404, Some("not_found")), "{e}");
    // Its own line works.
    let (s, m, _) = send_json(&t, line2.id.as_str(), &other, Some("o-5"), json!({"to": TO, "bodyText": "ours"})).await;
    assert_eq!(s, 202, "{m}");
    assert_eq!(m["organizationId"], org2.id.as_str());

    // An attachment not linked to a message has no URL.
    let now = ezw.clock().now();
    let loose = ezw::model::Attachment {
        id: ezw::core::AttachmentId::generate(now.unix_ms()),
        organization_id: ezw::OrganizationId::from_raw(t.demo.organization_id.clone()),
        message_id: None,
        content_type: "image/png".into(),
        size_bytes: 3,
        sha256: "00".repeat(32),
        filename: None,
        created_at: now,
    };
    ezw.store().insert_attachment(&loose).await.unwrap();
    let (s, _) = t.get_json(&format!("/api/attachments/{}/url", loose.id), &id_token).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_vendor_gets_a_fresh_signed_url_per_attempt_and_can_fetch_it() {
    let MetaLine { t, graph, id_token, line_id: line, .. } = meta_line().await;
    let path = format!("/v23.0/{PHONE_NUMBER_ID}/messages");
    graph.json("POST", &path, 503, json!({"error": {"message": "busy", "code": 2}}));

    let image = png(5, 1000);
    let parts =
        [text("to", "+16505551234"), text("bodyText", "Label"), file("image", "l.png", "image/png", image.clone())];
    let (s, m, _) = send_form(&t, &line, &id_token, "meta-up", &parts).await;
    assert_eq!(s, 202, "{m}");
    let att = m["media"]["attachmentId"].as_str().unwrap().to_owned();
    eventually(&t.clock, Duration::from_millis(50), || async { (!graph.seen(&path).is_empty()).then_some(()) }).await;
    graph.json(
        "POST",
        &path,
        200,
        json!({"messaging_product": "whatsapp", "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
               "messages": [{"id": "wamid.image-1"}]}),
    );
    let conv = m["conversationId"].as_str().unwrap().to_owned();
    eventually(&t.clock, Duration::from_millis(200), || async {
        let ms = t.messages(&id_token, &conv).await;
        (ms[0]["status"] == "sent").then_some(())
    })
    .await;
    let seen = graph.seen(&path);
    assert_eq!(seen.len(), 2);
    let links: Vec<String> = seen.iter().map(|s| s.json()["image"]["link"].as_str().unwrap().to_owned()).collect();
    assert_ne!(links[0], links[1], "each attempt gets a fresh URL");
    for (s, link) in seen.iter().zip(&links) {
        assert_eq!(s.json()["type"], "image");
        assert_eq!(s.json()["image"]["caption"], "Label");
        assert!(link.starts_with(&format!("{}/media/{att}?expires=", t.base)), "{link}");
    }
    // The URL is valid for an hour and serves the exact bytes.
    let res = get(&t, &links[1]).await;
    assert_eq!(res.status(), 200);
    let max_age: u64 =
        res.headers()["cache-control"].to_str().unwrap().strip_prefix("private, max-age=").unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&max_age), "{max_age}");
    assert_eq!(res.bytes().await.unwrap().as_ref(), image.as_slice());
    // The stored message keeps the attachment, not the signed URL.
    let stored = t.messages(&id_token, &conv).await;
    assert!(stored[0]["media"]["url"].is_null(), "{}", stored[0]);
}

#[tokio::test]
async fn without_a_public_base_url_attachment_sends_fail_media_url_unavailable() {
    use ezw::model::{MessageStatus, ProviderKind};
    use ezw::service::{ImageUpload, NewLine, SendTargetInput, WorkspaceSendRequest};

    let dir = tempfile::tempdir().unwrap();
    let clock = ezw::ManualClock::new(ezw::Timestamp::from_unix_ms(1_795_000_000_000));
    let store = Arc::new(ezw::storage::sqlite::SqliteStore::open(dir.path().join("ezw.db")).unwrap());
    let blobs = Arc::new(ezw::storage::blob::FsBlobStore::open(dir.path().join("blobs")).unwrap());
    let builder = ezw::Ezw::builder(store).clock(Arc::new(clock.clone())).blob_store(blobs);
    let sim = ezw::providers::sim::SimProvider::new(Arc::new(clock.clone()), builder.event_sink());
    let ezw = builder.provider(Arc::new(sim)).signing_key(&[9u8; 32]).build().unwrap();
    let workers = ezw.start().unwrap();
    let (_, owner) = new_org(&ezw, "Embedded", "me@embedded.example").await;
    let line = ezw
        .lines()
        .create_line(
            &owner,
            NewLine {
                display_name: "Support".into(),
                phone_number: "+15550100001".into(),
                provider_kind: ProviderKind::Simulator,
                provider_config: json!({}),
                pacing: None,
            },
        )
        .await
        .unwrap();
    let sent = ezw
        .messages()
        .send_from_workspace(
            &owner,
            &line.id,
            WorkspaceSendRequest {
                target: SendTargetInput { to: Some(TO.into()), conversation_id: None },
                image: Some(ImageUpload { bytes: png(1, 100), filename: Some("a.png".into()) }),
                idempotency_key: Some("embedded-1".into()),
                ..WorkspaceSendRequest::default()
            },
        )
        .await
        .unwrap();
    let failed = eventually(&clock, Duration::from_millis(50), || async {
        let m = ezw.messages().get(&owner, &sent.message.id).await.unwrap();
        (m.status == MessageStatus::Failed).then_some(m)
    })
    .await;
    assert_eq!(failed.error.unwrap().code, "media_url_unavailable");
    let att = sent.message.content.media.unwrap().attachment_id.unwrap();
    let e = ezw.media().attachment_url(&owner, &att, None).await.unwrap_err();
    assert_eq!((e.kind().http_status(), e.code()), (501, "media_url_unavailable"));
    workers.shutdown(Duration::from_secs(5)).await;
}

/// Adds an active operator to the demo organization; returns their user id and ID token.
async fn demo_operator(t: &TestServer) -> (String, String) {
    use ezw::model::{Membership, MembershipStatus, Role, User};
    let ezw = &t.server().ezw;
    let now = ezw.clock().now();
    let operator = User {
        id: ezw::UserId::generate(now.unix_ms()),
        email: "op@demo.ezw.local".into(),
        display_name: "Op".into(),
        password_hash: None,
        created_at: now,
    };
    ezw.store().insert_user(&operator).await.unwrap();
    ezw.orgs().set_password(&operator.id, &ezw::Secret::new("operator-pass")).await.unwrap();
    ezw.store()
        .upsert_membership(&Membership {
            organization_id: ezw::OrganizationId::from_raw(t.demo.organization_id.clone()),
            user_id: operator.id.clone(),
            role: Role::Operator,
            status: MembershipStatus::Active,
            created_at: now,
        })
        .await
        .unwrap();
    (operator.id.to_string(), t.login_as("op@demo.ezw.local", "operator-pass").await)
}

async fn set_line_permission(t: &TestServer, owner: &str, user: &str, can_view: bool, can_send: bool) {
    let res = t
        .http
        .put(t.url(&format!("/api/lines/{}/permissions/{user}", t.demo.line_id)))
        .bearer_auth(owner)
        .json(&json!({"canView": can_view, "canSend": can_send}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn operators_need_the_lines_send_permission_and_view_for_its_media() {
    let t = TestServer::start().await;
    let owner = t.login().await;
    let line = t.demo.line_id.clone();
    let (_, image, _) =
        send_form(&t, &line, &owner, "p-1", &[text("to", TO), file("image", "a.png", "image/png", png(6, 128))]).await;
    let att = image["media"]["attachmentId"].as_str().unwrap().to_owned();
    let (op_id, op) = demo_operator(&t).await;

    // By default an operator may send and read the line's media.
    let (s, m, _) = send_json(&t, &line, &op, Some("p-2"), json!({"to": TO, "bodyText": "from an operator"})).await;
    assert_eq!(s, 202, "{m}");
    assert_eq!(m["sentByUserId"], op_id.as_str());

    // View without send: 403 line_send_denied, for texts, forwards and uploads; media still readable.
    set_line_permission(&t, &owner, &op_id, true, false).await;
    let (s, e, _) = send_json(&t, &line, &op, Some("p-3"), json!({"to": TO, "bodyText": "denied"})).await;
    assert_eq!((s, code(&e)), (403, Some("line_send_denied")), "{e}");
    let (s, e, _) = send_json(&t, &line, &op, Some("p-4"), json!({"to": OTHER, "forwardMessageId": image["id"]})).await;
    assert_eq!((s, code(&e)), (403, Some("line_send_denied")), "{e}");
    let (s, e, _) =
        send_form(&t, &line, &op, "p-5", &[text("to", TO), file("image", "b.png", "image/png", png(7, 128))]).await;
    assert_eq!((s, code(&e)), (403, Some("line_send_denied")), "{e}");
    assert_eq!(stored_blobs(&t).len(), 1);
    let (s, signed) = t.get_json(&format!("/api/attachments/{att}/url"), &op).await;
    assert_eq!(s, 200, "{signed}");

    // Without view the line, its messages and its media do not exist for them.
    set_line_permission(&t, &owner, &op_id, false, false).await;
    let (s, e, _) = send_json(&t, &line, &op, Some("p-6"), json!({"to": TO, "bodyText": "hidden"})).await;
    assert_eq!((s, code(&e)), (404, Some("not_found")), "{e}");
    let (s, e) = t.get_json(&format!("/api/attachments/{att}/url"), &op).await;
    assert_eq!((s, code(&e)), (404, Some("not_found")), "{e}");
}

/// A blob store whose first `put` fails (a full disk, a crash before the write).
struct FailFirstPut {
    inner: ezw::storage::blob::FsBlobStore,
    failed: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl ezw::ports::BlobStore for FailFirstPut {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> ezw::Result<()> {
        if !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(ezw::Error::temporary("disk full"));
        }
        self.inner.put(key, bytes).await
    }

    async fn get(&self, key: &str) -> ezw::Result<Option<Vec<u8>>> {
        self.inner.get(key).await
    }
}

#[tokio::test]
async fn a_replay_stores_an_upload_the_first_request_could_not() {
    use ezw::model::{MessageStatus, ProviderKind};
    use ezw::service::{ImageUpload, NewLine, SendTargetInput, WorkspaceSendRequest};

    let dir = tempfile::tempdir().unwrap();
    let clock = ezw::ManualClock::new(ezw::Timestamp::from_unix_ms(1_795_000_000_000));
    let store = Arc::new(ezw::storage::sqlite::SqliteStore::open(dir.path().join("ezw.db")).unwrap());
    let blobs = Arc::new(FailFirstPut {
        inner: ezw::storage::blob::FsBlobStore::open(dir.path().join("blobs")).unwrap(),
        failed: std::sync::atomic::AtomicBool::new(false),
    });
    let mut config = ezw::EzwConfig::default();
    config.media_base_url = Some("https://ezw.example/base/".parse().unwrap());
    let builder = ezw::Ezw::builder(store).clock(Arc::new(clock.clone())).blob_store(blobs).config(config);
    let sim = ezw::providers::sim::SimProvider::new(Arc::new(clock.clone()), builder.event_sink());
    let ezw = builder.provider(Arc::new(sim.clone())).signing_key(&[9u8; 32]).build().unwrap();
    let workers = ezw.start().unwrap();
    let (_, owner) = new_org(&ezw, "Embedded", "me@embedded.example").await;
    let new_line = NewLine {
        display_name: "Support".into(),
        phone_number: "+15550100001".into(),
        provider_kind: ProviderKind::Simulator,
        provider_config: json!({}),
        pacing: None,
    };
    let line = ezw.lines().create_line(&owner, new_line).await.unwrap();
    let request = || WorkspaceSendRequest {
        target: SendTargetInput { to: Some(TO.into()), conversation_id: None },
        body_text: Some("Label".into()),
        image: Some(ImageUpload { bytes: png(2, 300), filename: Some("C:\\photos\\label.png".into()) }),
        idempotency_key: Some("retry-me".into()),
        ..WorkspaceSendRequest::default()
    };
    let e = ezw.messages().send_from_workspace(&owner, &line.id, request()).await.unwrap_err();
    assert_eq!(e.code(), "temporarily_unavailable");
    // The message was accepted, but its bytes are missing: the worker holds it, sending nothing.
    eventually(&clock, Duration::from_millis(100), || async {
        let metrics = ezw.metrics_text().await.unwrap();
        let held = metrics.lines().find_map(|l| l.strip_prefix("ezw_outbox_held_total ")).unwrap_or("0");
        (held.trim().parse::<u64>().unwrap() >= 2).then_some(())
    })
    .await;
    assert_eq!(sim.calls(), 0, "nothing is sent without the attachment");

    let replay = ezw.messages().send_from_workspace(&owner, &line.id, request()).await.unwrap();
    assert!(replay.replayed);
    assert_eq!((replay.message.status, replay.message.attempts), (MessageStatus::Queued, 0));
    let att = replay.message.content.media.as_ref().unwrap().attachment_id.clone().unwrap();
    let attachment = ezw
        .store()
        .get_attachment(owner.organization_id(), &ezw::core::AttachmentId::from_raw(att.clone()))
        .await
        .unwrap()
        .expect("stored by the replay");
    assert_eq!(attachment.filename.as_deref(), Some("label.png"));
    assert_eq!(attachment.size_bytes, 300);
    assert_eq!(attachment.content_type, "image/png");
    eventually(&clock, Duration::from_millis(100), || async {
        let m = ezw.messages().get(&owner, &replay.message.id).await.unwrap();
        (m.status == MessageStatus::Delivered).then_some(())
    })
    .await;
    let signed = ezw.media().attachment_url(&owner, &att, Some("10")).await.unwrap();
    assert!(signed.url.starts_with(&format!("https://ezw.example/base/media/{att}?expires=")), "{}", signed.url);
    workers.shutdown(Duration::from_secs(5)).await;
}
