//! QR lines end to end on the simulator: a line created with `"pairing": "qr"` starts unpaired,
//! its session driver shows rotating codes through `GET /api/lines/{id}/qr` (a PNG that decodes
//! back to the pairing string), the simulator's scan route pairs it, and the line connects, with
//! its transitions recorded, published as live hints and sent as `channel.patch` webhooks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ezw::service::LiveItem;
use ezw::LineId;
use serde_json::{json, Value};

use crate::support::{eventually, new_org, TestServer};

/// Clock step between polls: far below every code lifetime, so polling never expires a code.
const STEP: Duration = Duration::from_millis(10);

async fn post(t: &TestServer, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = t.http.post(t.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Creates a simulator line with `provider` extras; returns its id.
async fn create_line(t: &TestServer, token: &str, phone: &str, provider: Value) -> String {
    let mut p = json!({"kind": "simulator"});
    p.as_object_mut().unwrap().extend(provider.as_object().unwrap().clone());
    let body = json!({"displayName": "QR line", "phoneNumber": phone, "provider": p});
    let (status, line) = post(t, "/api/lines", token, Some(body)).await;
    assert_eq!(status, 201, "{line}");
    line["id"].as_str().unwrap().to_owned()
}

/// Polls `GET /qr` until it shows a code matching `accept`; returns `data`.
async fn wait_code(t: &TestServer, token: &str, line: &str, accept: impl Fn(&Value) -> bool) -> Value {
    eventually(&t.clock, STEP, || async {
        let (status, body) = t.get_json(&format!("/api/lines/{line}/qr"), token).await;
        (status == 200 && accept(&body["data"])).then(|| body["data"].clone())
    })
    .await
}

async fn wait_state(t: &TestServer, token: &str, line: &str, state: &str) -> Value {
    eventually(&t.clock, STEP, || async {
        let (_, body) = t.get_json(&format!("/api/lines/{line}"), token).await;
        (body["lifecycleState"] == state).then_some(body)
    })
    .await
}

/// Decodes a `data:image/png;base64,...` QR image back to its text.
fn decode_qr(data_url: &str) -> String {
    let b64 = data_url.strip_prefix("data:image/png;base64,").expect("a PNG data URL");
    let bytes = STANDARD.decode(b64).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().expect("the QR code decodes").1
}

/// The first string value of `key` anywhere in `value`.
fn find_key(value: &Value, key: &str) -> Option<String> {
    match value {
        Value::Object(map) => map
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| map.values().find_map(|v| find_key(v, key))),
        Value::Array(items) => items.iter().find_map(|v| find_key(v, key)),
        _ => None,
    }
}

/// A loopback webhook receiver that keeps every body.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = got.clone();
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let store = store.clone();
        async move {
            store.lock().unwrap().push(serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null));
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test]
async fn a_simulated_qr_line_pairs_through_the_qr_api() {
    let t = TestServer::start().await;
    let owner = t.login().await;
    let server = t.server();
    let principal = server.ezw.auth().authenticate_id_token(&owner).await.unwrap();
    let mut live = server.ezw.live_stream().open(&principal, None).await.unwrap();

    let line = create_line(&t, &owner, "+972501112233", json!({"pairing": "qr"})).await;
    let line_id = LineId::parse(&line).unwrap();
    let (_, view) = t.get_json(&format!("/api/lines/{line}"), &owner).await;
    assert_eq!(view["provider"], json!({"kind": "simulator", "pairing": "qr"}));
    assert_eq!(view["sendable"], false, "{view}");
    let (_, token) = post(&t, &format!("/api/lines/{line}/api-token"), &owner, None).await;
    let line_token = token["token"].as_str().unwrap().to_owned();
    let (url, hooks) = receiver().await;
    let (status, hook) =
        post(&t, "/api/v1/webhooks", &line_token, Some(json!({"targetUrl": url, "events": ["channel.patch"]}))).await;
    assert_eq!(status, 201, "{hook}");

    // The supervisor starts the pairing queued at creation; the first code shows.
    let code = wait_code(&t, &owner, &line, |_| true).await;
    assert_eq!(
        (code["status"].as_str(), code["method"].as_str(), code["rotation"].as_u64()),
        (Some("active"), Some("qr"), Some(1))
    );
    assert_eq!(code["lineId"], line.as_str());
    let expires_in = code["expiresInMs"].as_u64().unwrap();
    assert!(expires_in > 0 && expires_in <= 60_000, "{code}");
    assert!(code["expiresAt"].is_string());
    let decoded = decode_qr(code["qr"].as_str().unwrap());
    assert_eq!(decoded, code["code"].as_str().unwrap(), "the PNG encodes the pairing string");
    assert_eq!(server.sim.current_code(&line_id).as_deref(), Some(decoded.as_str()), "the simulator shows it");
    assert!(decoded.starts_with("2@") && decoded.split(',').count() == 4, "{decoded}");
    let res = t.http.get(t.url(&format!("/api/lines/{line}/qr"))).bearer_auth(&owner).send().await.unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    wait_state(&t, &owner, &line, "pairing").await;
    let (_, health) = t.get_json("/api/v1/health", &line_token).await;
    assert_eq!(health["health"]["status"], json!({"code": 3, "text": "QR"}), "{health}");
    assert_eq!(health["line"]["sendable"], false);

    // A wrong code does not pair; the shown one does.
    let scan = format!("/api/lines/{line}/simulator/scan");
    let (status, err) = post(&t, &scan, &owner, Some(json!({"code": "2@wrong,a,b,c"}))).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("qr_mismatch")), "{err}");
    let (status, ok) = post(&t, &scan, &owner, Some(json!({"code": decoded}))).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["data"], json!({"lineId": line, "scanned": true}));
    let connected = wait_state(&t, &owner, &line, "connected").await;
    assert_eq!(connected["sendable"], true);
    assert_eq!(connected["stateReason"], "972501112233", "{connected}");
    let (_, health) = t.get_json("/api/v1/health", &line_token).await;
    assert_eq!(health["health"]["status"], json!({"code": 4, "text": "AUTH"}), "{health}");
    assert_eq!(
        (health["line"]["sendable"].as_bool(), health["line"]["lifecycleState"].as_str()),
        (Some(true), Some("connected"))
    );
    assert_eq!(health["warnings"], json!([]));

    // Nothing left to scan; a connected line needs no pairing.
    let (status, err) = t.get_json(&format!("/api/lines/{line}/qr"), &owner).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("line_already_paired")));
    let (status, err) = post(&t, &format!("/api/lines/{line}/qr"), &owner, None).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("line_already_paired")));
    let (status, err) = post(&t, &scan, &owner, Some(json!({"code": decoded}))).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("no_pairing")));

    // The history, newest first, a page at a time.
    let (status, page) = t.get_json(&format!("/api/lines/{line}/transitions"), &owner).await;
    assert_eq!(status, 200, "{page}");
    let steps: Vec<(&str, &str, &str)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["from"].as_str().unwrap(), t["to"].as_str().unwrap(), t["trigger"].as_str().unwrap()))
        .collect();
    assert_eq!(steps, [("pairing", "connected", "paired"), ("created", "pairing", "pairing_requested")]);
    assert!(page["nextBefore"].is_null());
    let (_, first) = t.get_json(&format!("/api/lines/{line}/transitions?limit=1"), &owner).await;
    assert_eq!(first["data"][0]["to"], "connected");
    let before = first["nextBefore"].as_i64().expect("a cursor after a full page");
    let (_, older) = t.get_json(&format!("/api/lines/{line}/transitions?limit=1&before={before}"), &owner).await;
    assert_eq!(older["data"][0]["to"], "pairing");

    // The line sends now.
    let (status, sent) = t.send_text(&line_token, None, json!({"to": "+972501234567", "body": "paired"})).await;
    assert_eq!(status, 202, "{sent}");

    // Live hints: the pairing and both states, for this line.
    let mut seen = Vec::new();
    while !seen.contains(&("line.state".to_owned(), "connected".to_owned())) {
        let item = tokio::time::timeout(Duration::from_secs(30), live.next()).await.expect("a live hint").unwrap();
        if let LiveItem::Event(e) = item {
            if e.hint.line_id.as_ref() == Some(&line_id) {
                seen.push((e.hint.kind.to_owned(), e.hint.state.unwrap_or_default().to_owned()));
            }
        }
    }
    assert!(seen.contains(&("line.state".to_owned(), "pairing".to_owned())), "{seen:?}");
    assert!(seen.contains(&("line.pairing".to_owned(), "active".to_owned())), "{seen:?}");

    // The `channel.patch` webhook of the pairing (the line was pairing before the webhook existed).
    let patch = eventually(&t.clock, Duration::from_millis(100), || async {
        hooks.lock().unwrap().iter().find(|b| find_key(b, "lifecycleState").as_deref() == Some("connected")).cloned()
    })
    .await;
    assert_eq!(find_key(&patch, "previousState").as_deref(), Some("pairing"), "{patch}");
}

#[tokio::test]
async fn codes_rotate_run_out_and_can_be_requested_again() {
    let t = TestServer::start().await;
    let owner = t.login().await;
    let line = create_line(
        &t,
        &owner,
        "+972501112244",
        json!({"pairing": "qr", "qrTtlMs": 5000, "qrRotateMs": 5000, "qrCodes": 2}),
    )
    .await;
    let first = wait_code(&t, &owner, &line, |_| true).await;
    assert_eq!(first["rotation"], 1);

    // The first code's lifetime passes: the second one shows, and the first no longer scans.
    t.clock.advance(Duration::from_millis(5000));
    let second = wait_code(&t, &owner, &line, |d| d["rotation"] == 2).await;
    assert_ne!(first["code"], second["code"]);
    assert_eq!(decode_qr(second["qr"].as_str().unwrap()), second["code"].as_str().unwrap());
    let scan = format!("/api/lines/{line}/simulator/scan");
    let (status, err) = post(&t, &scan, &owner, Some(json!({"code": first["code"]}))).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("qr_mismatch")));

    // The codes run out: QR required, and GET /qr says why.
    t.clock.advance(Duration::from_millis(5000));
    wait_state(&t, &owner, &line, "qr_required").await;
    let (status, err) = t.get_json(&format!("/api/lines/{line}/qr"), &owner).await;
    assert_eq!((status, err["error"]["code"].as_str()), (404, Some("qr_codes_exhausted")), "{err}");

    // A new pairing, by phone code this time (the line's own number by default).
    let (status, p) = post(&t, &format!("/api/lines/{line}/qr"), &owner, Some(json!({"method": "phone_code"}))).await;
    assert_eq!(status, 202, "{p}");
    assert_eq!((p["data"]["method"].as_str(), p["data"]["status"].as_str()), (Some("phone_code"), Some("requested")));
    assert_eq!(p["data"]["phoneNumber"], "+972501112244");
    let code = wait_code(&t, &owner, &line, |d| d["pairingId"] == p["data"]["pairingId"]).await;
    assert!(code["qr"].is_null() && code["code"].is_null(), "{code}");
    let phone_code = code["phoneCode"].as_str().unwrap().to_owned();
    assert_eq!(phone_code.len(), 9, "{phone_code}");
    let (status, _) = post(&t, &scan, &owner, Some(json!({"code": phone_code}))).await;
    assert_eq!(status, 200);
    wait_state(&t, &owner, &line, "connected").await;
}

#[tokio::test]
async fn pairing_requests_are_validated_idempotent_and_scoped() {
    let t = TestServer::start().await;
    let owner = t.login().await;
    let line = create_line(&t, &owner, "+972501112255", json!({"pairing": "qr"})).await;
    let qr = format!("/api/lines/{line}/qr");

    // Bad bodies are 400s in the error envelope.
    for (body, code) in [
        (json!({"bogus": 1}), "invalid_request"),
        (json!({"method": "sms"}), "invalid_pairing_method"),
        (json!({"method": "qr", "phoneNumber": "+972501112255"}), "invalid_request"),
        (json!({"method": "phone_code", "phoneNumber": "+15550000000"}), "pairing_phone_mismatch"),
        (json!({"method": "phone_code", "phoneNumber": "not a phone"}), "invalid_phone_number"),
        (json!({"idempotencyKey": ""}), "invalid_idempotency_key"),
    ] {
        let (status, err) = post(&t, &qr, &owner, Some(body.clone())).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some(code)), "{body}: {err}");
    }
    let res = t
        .http
        .post(t.url(&qr))
        .bearer_auth(&owner)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "invalid_json");

    // The same key replays the same pairing; with another method it is a conflict.
    let (status, a) = post(&t, &qr, &owner, Some(json!({"idempotencyKey": "pair-1"}))).await;
    assert_eq!(status, 202, "{a}");
    let (status, b) = post(&t, &qr, &owner, Some(json!({"idempotencyKey": "pair-1"}))).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(a["data"]["pairingId"], b["data"]["pairingId"]);
    let (status, err) = post(&t, &qr, &owner, Some(json!({"idempotencyKey": "pair-1", "method": "phone_code"}))).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("idempotency_key_reused")), "{err}");
    // No body at all is a QR request.
    let (status, c) = post(&t, &qr, &owner, None).await;
    assert_eq!(status, 202, "{c}");
    assert_ne!(c["data"]["pairingId"], a["data"]["pairingId"]);

    let (status, err) = t.get_json(&format!("/api/lines/{line}/transitions?limit=0"), &owner).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_limit")));
    let (status, err) = t.get_json(&format!("/api/lines/{line}/transitions?before=x"), &owner).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_query")));

    // Another organization sees none of it.
    let (_, _) = new_org(&t.server().ezw, "Other", "other-qr@example.com").await;
    let other = t.login_as("other-qr@example.com", "owner-password").await;
    for (status, body) in [
        t.get_json(&qr, &other).await,
        post(&t, &qr, &other, None).await,
        t.get_json(&format!("/api/lines/{line}/transitions"), &other).await,
        post(&t, &format!("/api/lines/{line}/simulator/scan"), &other, Some(json!({"code": "x"}))).await,
    ] {
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    }

    // A line that is not paired by QR.
    let demo = &t.demo.line_id;
    let (status, err) = t.get_json(&format!("/api/lines/{demo}/qr"), &owner).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("line_not_qr_paired")));
    let (status, err) = post(&t, &format!("/api/lines/{demo}/qr"), &owner, None).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("line_not_qr_paired")));
}
