//! Outbox throughput: queued -> provider-accepted messages/s across 100 Meta lines against a
//! local mock Graph API, beside the raw HTTP POST rate to the same mock from the same machine.
//!
//! Run with: `cargo bench --features http --bench outbox_throughput`
//! (`EZW_BENCH_MESSAGES` sets how many messages are queued, default 20000.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ezw::core::crypto::{derive_key, random_key, SecretCipher};
use ezw::model::ProviderKind;
use ezw::ports::Store as _;
use ezw::providers::meta::{MetaOptions, MetaProvider};
use ezw::service::{NewLine, SendRequest, SendTargetInput};
use ezw::storage::sqlite::SqliteStore;
use ezw::Ezw;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

mod common;

const LINES: usize = 100;
const CLIENTS: usize = 64;

async fn start_mock() -> (String, Arc<AtomicU64>) {
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/{version}/{phone_number_id}/messages",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let _ = body.len();
                axum::Json(json!({
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": "1", "wa_id": "1"}],
                    "messages": [{"id": format!("wamid.bench{n}")}]
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// The raw rate: `CLIENTS` keep-alive clients POSTing a Meta-sized JSON body for `secs`.
async fn raw_rate(url: &str, secs: f64) -> f64 {
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234",
                      "type": "text", "text": {"body": "Your order is ready", "preview_url": false}})
    .to_string();
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url, body) = (client.clone(), format!("{url}/v23.0/106540352242922/messages"), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < stop {
                let req = hyper::Request::post(&url)
                    .header("content-type", "application/json")
                    .header("authorization", "Bearer EAAGbenchtoken")
                    .body(Full::new(bytes::Bytes::from(body.clone())))
                    .unwrap();
                if let Ok(res) = client.request(req).await {
                    let _ = res.into_body().collect().await;
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let messages: usize = std::env::var("EZW_BENCH_MESSAGES").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let (mock_url, received) = start_mock().await;
        let raw = raw_rate(&mock_url, 5.0).await;
        println!("outbox_throughput: {LINES} Meta lines, {messages} messages, 2 cores");
        println!("baseline  raw HTTP POST to the mock ({CLIENTS} keep-alive clients): {raw:>10.0} req/s");

        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("ezw.db")).unwrap());
        let cipher = SecretCipher::new(&derive_key(&random_key(), "credentials"));
        let meta = MetaProvider::new(MetaOptions { http: reqwest::Client::new(), cipher });
        let ezw = Ezw::builder(store.clone()).provider(Arc::new(meta)).signing_key(&random_key()).build().unwrap();
        let (_, principal) = common::bench_org(&ezw, LINES as u32).await;
        let mut lines = Vec::new();
        for i in 0..LINES {
            let line = ezw
                .lines()
                .create_line(
                    &principal,
                    NewLine {
                        display_name: format!("Line {i}"),
                        phone_number: format!("+1555030{i:04}"),
                        provider_kind: ProviderKind::Meta,
                        provider_config: json!({
                            "phoneNumberId": format!("1065403522{i:05}"), "wabaId": "102290129340398", "appId": "1234567890",
                            "appSecret": "0123456789abcdef0123456789abcdef", "accessToken": "EAAGbenchtoken1234567890",
                            "verifyToken": "verify", "apiBaseUrl": mock_url
                        }),
                        pacing: Some(ezw::model::Pacing { per_second: 10_000.0, media_per_second: None, max_in_flight: 8, jitter_ms: 0 }),
                    },
                )
                .await
                .unwrap();
            lines.push(line.id);
        }

        // Queue everything first (workers off), then measure queued -> accepted.
        let queue_start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (ezw, principal, lines) = (ezw.clone(), principal.clone(), lines.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = c;
                while i < messages {
                    let req = SendRequest {
                        target: SendTargetInput { to: Some(format!("+1555040{:04}", i % 5000)), conversation_id: None },
                        body: Some(format!("Your order {i} is ready")),
                        idempotency_key: Some(format!("bench-{i}")),
                        ..SendRequest::default()
                    };
                    ezw.messages().send(&principal, &lines[i % LINES], req).await.unwrap();
                    i += CLIENTS;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        println!("ezw       queued {messages} messages in {:.1} s (not part of the figure below)", queue_start.elapsed().as_secs_f64());

        let before = store.writer_stats();
        let received_before = received.load(Ordering::Relaxed);
        let start = Instant::now();
        let workers = ezw.start().unwrap();
        loop {
            if store.outbox_depth().await.unwrap() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let after = store.writer_stats();
        let rate = messages as f64 / elapsed;
        let metrics = ezw.metrics_text().await.unwrap();
        let accepted = metrics
            .lines()
            .find(|l| l.starts_with("ezw_outbox_attempts_total{outcome=\"accepted\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("?")
            .to_owned();
        println!(
            "ezw       queued -> provider-accepted: {rate:>10.0} messages/s ({messages} in {elapsed:.2} s; {accepted} accepted, {} reached the mock)",
            received.load(Ordering::Relaxed) - received_before
        );
        println!("ezw       ratio to the raw HTTP rate: {:.2}", rate / raw);
        let txns = after.transactions - before.transactions;
        let jobs = after.jobs - before.jobs;
        println!(
            "ezw       writer: {txns} transactions, {jobs} jobs ({:.1} per transaction), busy {:.0}%, fsync {:.0}%",
            jobs as f64 / txns.max(1) as f64,
            100.0 * (after.busy_ns - before.busy_ns) as f64 / 1e9 / elapsed,
            100.0 * (after.commit_ns - before.commit_ns) as f64 / 1e9 / elapsed
        );
        workers.shutdown(Duration::from_secs(10)).await;
    });
}
