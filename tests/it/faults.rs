//! The fault test: a Twilio mock answers 30% 503, 10% "timeouts" (it takes the message but the
//! answer never arrives in time; its signed status callback, which names our message, comes
//! later), 10% 429 with `Retry-After: 1`, and always rejects one recipient (21211). Every
//! message ends sent, none reaches the vendor twice, no retry comes before `Retry-After`, and
//! the permanent error fails at once with the vendor's code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "fedcba9876543210fedcba9876543210";
const REJECTED: &str = "+15550299999";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Unavailable,
    Timeout,
    TooMany,
    Created,
    Rejected,
}

struct Mock {
    rng: rand::rngs::StdRng,
    http: reqwest::Client,
    /// Per our message id: every request (time, answer).
    attempts: HashMap<String, Vec<(Instant, Answer)>>,
    /// Per our message id: how many times the "vendor" took the message.
    taken: HashMap<String, u32>,
    next_sid: u64,
}

fn sign(url: &str, params: &[(String, String)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(&k);
        data.push_str(&v);
    }
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(AUTH_TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn messages(State(mock): State<Arc<Mutex<Mock>>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let callback = form.get("StatusCallback").cloned().unwrap_or_default();
    let ours = url::Url::parse(&callback)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "message_id").map(|(_, v)| v.into_owned()))
        .unwrap_or_default();
    let (answer, sid, http) = {
        let mut m = mock.lock().unwrap();
        let answer = if form.get("To").map(String::as_str) == Some(&format!("whatsapp:{REJECTED}")) {
            Answer::Rejected
        } else {
            match m.rng.random_range(0..100) {
                0..30 => Answer::Unavailable,
                30..40 => Answer::Timeout,
                40..50 => Answer::TooMany,
                _ => Answer::Created,
            }
        };
        m.attempts.entry(ours.clone()).or_default().push((Instant::now(), answer));
        if matches!(answer, Answer::Timeout | Answer::Created) {
            *m.taken.entry(ours.clone()).or_default() += 1;
        }
        m.next_sid += 1;
        (answer, format!("SM{:032x}", m.next_sid), m.http.clone())
    };
    match answer {
        Answer::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response(),
        Answer::TooMany => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1"), ("content-type", "application/json")],
            json!({"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}).to_string(),
        )
            .into_response(),
        Answer::Rejected => (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            json!({"code": 21211, "message": "The 'To' number is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}).to_string(),
        )
            .into_response(),
        Answer::Created => (
            StatusCode::CREATED,
            [("content-type", "application/json")],
            json!({"sid": sid, "status": "queued", "account_sid": ACCOUNT_SID}).to_string(),
        )
            .into_response(),
        Answer::Timeout => {
            // The vendor took the message; our answer is lost. Its status callback follows.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(600)).await;
                let params = vec![
                    ("MessageSid".to_owned(), sid),
                    ("MessageStatus".to_owned(), "sent".to_owned()),
                    ("AccountSid".to_owned(), ACCOUNT_SID.to_owned()),
                ];
                let signature = sign(&callback, &params);
                let _ = http.post(&callback).header("x-twilio-signature", signature).form(&params).send().await;
            });
            tokio::time::sleep(Duration::from_secs(2)).await;
            (StatusCode::CREATED, "too late").into_response()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_retry_honour_retry_after_and_never_double_send() {
    let mock = Arc::new(Mutex::new(Mock {
        rng: rand::rngs::StdRng::seed_from_u64(20_261_121),
        http: reqwest::Client::new(),
        attempts: HashMap::new(),
        taken: HashMap::new(),
        next_sid: 0,
    }));
    let app = axum::Router::new()
        .route(&format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"), axum::routing::post(messages))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let mut config = ezw::EzwConfig::default();
    config.base_backoff = Duration::from_millis(50);
    config.max_backoff = Duration::from_millis(400);
    config.max_attempts = 40;
    let server = ezw::http::start(
        ezw::http::ServerOptions::new("127.0.0.1:0".parse().unwrap(), dir.path())
            .demo(true)
            .config(config)
            .provider_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let demo = server.demo.clone().unwrap();
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": demo.email, "password": demo.password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_token = login["idToken"].as_str().unwrap().to_owned();
    let line: Value = http
        .post(format!("{base}/api/lines"))
        .bearer_auth(&id_token)
        .json(&json!({
            "displayName": "Faulty", "phoneNumber": "+14155238886",
            "provider": {"kind": "twilio", "accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN,
                         "from": "whatsapp:+14155238886", "apiBaseUrl": mock_url},
            "pacing": {"perSecond": 1000, "maxInFlight": 32}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let line_id = line["id"].as_str().unwrap();
    let token: Value = http
        .post(format!("{base}/api/lines/{line_id}/api-token"))
        .bearer_auth(&id_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();

    let mut ids = Vec::new();
    for i in 0..150 {
        let to = if i % 30 == 29 { REJECTED.to_owned() } else { format!("+1555021{:04}", i % 25) };
        let res = http
            .post(format!("{base}/api/v1/messages/text"))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("fault-{i}"))
            .json(&json!({"to": to, "body": format!("message {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        let m: Value = res.json().await.unwrap();
        ids.push((m["id"].as_str().unwrap().to_owned(), to == REJECTED));
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    let finals = loop {
        let mut finals = Vec::new();
        for (id, _) in &ids {
            let m: Value = http
                .get(format!("{base}/api/v1/messages/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            finals.push(m);
        }
        let done = finals.iter().zip(&ids).all(
            |(m, (_, rejected))| {
                if *rejected {
                    m["status"] == "failed"
                } else {
                    m["status"] == "sent"
                }
            },
        );
        if done {
            break finals;
        }
        assert!(Instant::now() < deadline, "not every message reached its end state in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    server.shutdown().await;
    let m = mock.lock().unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (id, attempts) in &m.attempts {
        for (_, a) in attempts {
            *counts
                .entry(match a {
                    Answer::Unavailable => "503",
                    Answer::Timeout => "timeout",
                    Answer::TooMany => "429",
                    Answer::Created => "201",
                    Answer::Rejected => "400",
                })
                .or_default() += 1;
        }
        // No retry earlier than Retry-After (1 s) after a 429.
        for pair in attempts.windows(2) {
            if pair[0].1 == Answer::TooMany {
                let gap = pair[1].0.duration_since(pair[0].0);
                assert!(gap >= Duration::from_secs(1), "{id}: retried {gap:?} after a 429 with Retry-After: 1");
            }
        }
    }
    assert!(counts.get("503").copied().unwrap_or(0) > 0 && counts.get("timeout").copied().unwrap_or(0) > 0);
    assert!(counts.get("429").copied().unwrap_or(0) > 0);
    for ((id, rejected), m_final) in ids.iter().zip(&finals) {
        let taken = m.taken.get(id.as_str()).copied().unwrap_or(0);
        if *rejected {
            assert_eq!(m_final["error"]["code"], "21211", "{m_final}");
            assert_eq!(m_final["attempts"], 1, "a permanent error fails at once");
            assert_eq!(taken, 0);
        } else {
            assert_eq!(taken, 1, "{id} reached the vendor exactly once");
        }
    }
    println!("fault test: {} messages, vendor answers {counts:?}", ids.len());
}
