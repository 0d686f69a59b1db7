//! Webhook throughput: queued -> POSTed -> recorded `messages.post` deliveries/s from 4 simulator
//! lines (one webhook each, maxConcurrency 64, no rate limit) to a local receiver, beside the raw
//! HTTP POST rate of the same body to the same receiver from the same machine.
//!
//! Run with: `cargo bench --features http --bench webhook_throughput`
//! (`EZW_BENCH_EVENTS` sets how many deliveries are queued, default 20000.)
//!
//! The deliveries are queued first with the workers off (each accepted send writes its message,
//! its outbox job and one delivery row in one transaction), then the lines are put in
//! `qr_required` so the outbox holds its jobs without calling the provider, and the measured
//! phase runs from `Ezw::start` until the receiver has every request and the store shows every
//! delivery `succeeded`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::serve::ListenerExt as _;
use ezw::core::crypto::random_key;
use ezw::model::{LifecycleState, ProviderKind};
use ezw::ports::{WebhookRequest, WebhookTransport as _};
use ezw::providers::sim::SimProvider;
use ezw::providers::webhook::HttpWebhookTransport;
use ezw::service::{NewLine, SendRequest, SendTargetInput, WebhookInput};
use ezw::storage::sqlite::SqliteStore;
use ezw::webhooks::{signature_header, verify, SigningSecret};
use ezw::{Ezw, EzwConfig};
use serde_json::json;

mod common;

const LINES: usize = 4;
/// Per-webhook `maxConcurrency` (the highest allowed).
const WEBHOOK_CONCURRENCY: u32 = 64;
/// Concurrent senders while queueing.
const CLIENTS: usize = 64;
/// Distinct recipients (conversations) across all lines: few, so the outbox has few heads to hold.
const RECIPIENTS: usize = 100;
/// Deliveries whose signatures the receiver keeps for checking after the run.
const SIGNATURE_SAMPLE: usize = 100;

/// One delivery as the receiver got it (kept for the first [`SIGNATURE_SAMPLE`] only).
struct Sampled {
    webhook: String,
    id: String,
    timestamp: String,
    signature: String,
    body: axum::body::Bytes,
}

#[derive(Default)]
struct Receiver {
    hooks: AtomicU64,
    raw: AtomicU64,
    /// TCP connections accepted.
    connections: AtomicU64,
    sample: Mutex<Vec<Sampled>>,
}

/// A minimal receiver on loopback: 200 with an empty body; counts `/hook/*` and `/raw` apart.
async fn start_receiver() -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver::default());
    let shared = state.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
        let state = shared.clone();
        async move {
            if uri.path().starts_with("/hook/") {
                let n = state.hooks.fetch_add(1, Ordering::Relaxed);
                if (n as usize) < SIGNATURE_SAMPLE {
                    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    state.sample.lock().unwrap().push(Sampled {
                        webhook: h("x-ezw-webhook-id"),
                        id: h("webhook-id"),
                        timestamp: h("webhook-timestamp"),
                        signature: h("webhook-signature"),
                        body,
                    });
                }
            } else {
                state.raw.fetch_add(1, Ordering::Relaxed);
            }
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counted = state.clone();
    let listener = listener.tap_io(move |_| {
        counted.connections.fetch_add(1, Ordering::Relaxed);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

/// The raw rate: `total` POSTs of `body` (with headers shaped like a delivery's) through one
/// pooled reqwest client, `in_flight` at a time.
async fn raw_rate(client: reqwest::Client, url: String, body: String, total: u64, in_flight: usize) -> (f64, u64) {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (client, url, body, next) = (client.clone(), url.clone(), body.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let res = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("webhook-id", "dlv_01JBENCHRAW0000000000000000")
                    .header("webhook-timestamp", "1795000000")
                    .header("webhook-signature", "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=")
                    .header("x-ezw-webhook-event", "messages.post")
                    .body(body.clone())
                    .send()
                    .await;
                match res {
                    Ok(res) if res.status().is_success() => {
                        let _ = res.bytes().await;
                    }
                    _ => errors += 1,
                }
            }
            errors
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await.unwrap();
    }
    (total as f64 / start.elapsed().as_secs_f64(), errors)
}

/// The transport alone: `total` signed POSTs through [`HttpWebhookTransport`] (what the
/// dispatcher calls), `in_flight` at a time, with no store in the loop.
async fn transport_rate(url: String, body: String, total: u64, in_flight: usize) -> (f64, u64) {
    let transport = Arc::new(HttpWebhookTransport::new(true));
    let secret = [SigningSecret::generate()];
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (transport, url, body, next, secret) =
            (transport.clone(), url.clone(), body.clone(), next.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors = 0u64;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let id = format!("dlv_01JBENCHRAW{n:014}");
                let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
                let request = WebhookRequest {
                    url: url.clone(),
                    headers: vec![
                        ("webhook-id", id.clone()),
                        ("webhook-timestamp", ts.to_string()),
                        ("webhook-signature", signature_header(&secret, &id, ts, body.as_bytes())),
                        ("x-ezw-webhook-event", "messages.post".to_owned()),
                        ("x-ezw-line-id", "line_01JBENCHLINE00000000000000".to_owned()),
                        ("x-ezw-webhook-id", "wh_01JBENCHWEBHOOK00000000000000".to_owned()),
                        ("x-ezw-delivery-id", id),
                    ],
                    body: body.clone(),
                    timeout: Duration::from_secs(15),
                };
                match transport.post(request).await {
                    Ok(r) if r.status == 200 => {}
                    _ => errors += 1,
                }
            }
            errors
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await.unwrap();
    }
    (total as f64 / start.elapsed().as_secs_f64(), errors)
}

fn count(db: &rusqlite::Connection, sql: &str) -> u64 {
    db.query_row(sql, [], |r| r.get::<_, i64>(0)).map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

fn main() {
    let events: u64 = std::env::var("EZW_BENCH_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let (receiver_url, receiver) = start_receiver().await;
        println!(
            "webhook_throughput: {LINES} simulator lines x 1 webhook (messages.post, maxConcurrency {WEBHOOK_CONCURRENCY}, \
             no rate limit), {events} deliveries, {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );

        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let db_path = dir.path().join("ezw.db");
        let store = Arc::new(SqliteStore::open(&db_path).unwrap());
        let mut config = EzwConfig::default();
        // Held outbox jobs (their lines are qr_required) stay out of the way for the whole run.
        config.hold_interval = Duration::from_secs(600);
        let builder = Ezw::builder(store.clone()).config(config);
        let sim = SimProvider::new(builder.clock_handle(), builder.event_sink());
        let ezw = builder
            .provider(Arc::new(sim))
            .webhook_transport(Arc::new(HttpWebhookTransport::new(true)))
            .signing_key(&random_key())
            .build()
            .unwrap();
        let (org, principal) = common::bench_org(&ezw, LINES as u32).await;
        let mut lines = Vec::new();
        let mut secrets: HashMap<String, SigningSecret> = HashMap::new();
        for i in 0..LINES {
            let line = ezw
                .lines()
                .create_line(
                    &principal,
                    NewLine {
                        display_name: format!("Line {i}"),
                        phone_number: format!("+1555030{i:04}"),
                        provider_kind: ProviderKind::Simulator,
                        provider_config: json!({}),
                        pacing: None,
                    },
                )
                .await
                .unwrap();
            let (view, created) = ezw
                .webhooks()
                .upsert(
                    &principal,
                    &line.id,
                    WebhookInput {
                        target_url: Some(format!("{receiver_url}/hook/{i}")),
                        events: Some(vec!["messages.post".into()]),
                        max_concurrency: Some(WEBHOOK_CONCURRENCY),
                        rate_per_second: Some(None),
                        ..WebhookInput::default()
                    },
                )
                .await
                .unwrap();
            assert!(created);
            secrets.insert(view.webhook.id.to_string(), SigningSecret::parse(&view.secret).unwrap());
            lines.push(line.id);
        }

        // Queue everything with the workers off: one message + outbox job + delivery per send.
        let before_queue = store.writer_stats();
        let queue_start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (ezw, principal, lines) = (ezw.clone(), principal.clone(), lines.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = c as u64;
                while i < events {
                    let n = usize::try_from(i).unwrap();
                    let req = SendRequest {
                        target: SendTargetInput {
                            to: Some(format!("+1555040{:04}", n % RECIPIENTS)),
                            conversation_id: None,
                        },
                        body: Some(format!("Your order {i} is ready")),
                        idempotency_key: Some(format!("bench-{i}")),
                        ..SendRequest::default()
                    };
                    ezw.messages().send(&principal, &lines[n % LINES], req).await.unwrap();
                    i += CLIENTS as u64;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let queue_secs = queue_start.elapsed().as_secs_f64();
        let after_queue = store.writer_stats();
        let enqueue_rate = events as f64 / queue_secs;
        println!(
            "ezw       enqueued {events} sends (+{events} delivery rows) in {queue_secs:.2} s = {} events/s \
             ({CLIENTS} concurrent senders, {} writer transactions; not part of the figures below)",
            common::thousands(enqueue_rate),
            after_queue.transactions - before_queue.transactions
        );
        // Park the outbox: its jobs are held (no provider calls) once the workers start.
        for line in &lines {
            ezw.store()
                .set_line_state(&org.id, line, LifecycleState::QrRequired, Some("bench"), ezw.clock().now())
                .await
                .unwrap();
        }

        let db = rusqlite::Connection::open_with_flags(&db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let queued = count(&db, "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'");
        assert_eq!(queued, events, "every send queues exactly one delivery");
        let body: String =
            db.query_row("SELECT body FROM webhook_deliveries LIMIT 1", [], |r| r.get(0)).unwrap();

        // Raw baselines to the same receiver with the same body, before the workers start.
        let in_flight = LINES * WEBHOOK_CONCURRENCY as usize;
        let unbounded = reqwest::Client::builder().no_proxy().build().unwrap();
        let capped = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(64).build().unwrap();
        let raw_url = format!("{receiver_url}/raw");
        let conns = || receiver.connections.load(Ordering::Relaxed);
        let _ = raw_rate(unbounded.clone(), raw_url.clone(), body.clone(), 2000, in_flight).await; // warm-up
        let c0 = conns();
        let (raw, raw_errors) = raw_rate(unbounded.clone(), raw_url.clone(), body.clone(), events, in_flight).await;
        let c1 = conns();
        let (raw64, _) = raw_rate(unbounded, raw_url.clone(), body.clone(), events, 64).await;
        let c2 = conns();
        let (raw_capped, _) = raw_rate(capped, raw_url.clone(), body.clone(), events, in_flight).await;
        let c3 = conns();
        let (transport, transport_errors) = transport_rate(raw_url, body.clone(), events, in_flight).await;
        let c4 = conns();
        println!(
            "baseline  raw HTTP POST, {}-byte body (reqwest, pooled): {:>10} req/s at {in_flight} in flight \
             (what {LINES} webhooks x {WEBHOOK_CONCURRENCY} can reach; errors {raw_errors}; {} new connections), \
             {:>10} req/s at 64 in flight ({} new connections)",
            body.len(),
            common::thousands(raw),
            c1 - c0,
            common::thousands(raw64),
            c2 - c1
        );
        println!(
            "baseline  raw HTTP POST at {in_flight} in flight with pool_max_idle_per_host(64) (an idle cap below the in-flight count churns connections): \
             {:>10} req/s ({} new connections)",
            common::thousands(raw_capped),
            c3 - c2
        );
        println!(
            "baseline  HttpWebhookTransport::post alone (signed, delivery headers, no store) at {in_flight} in flight: \
             {:>10} req/s (errors {transport_errors}; {} new connections)",
            common::thousands(transport),
            c4 - c3
        );

        // Measured phase: start -> receiver has all N -> store has all N succeeded.
        let before = store.writer_stats();
        let cpu_before = common::thread_cpu("tokio workers (dispatcher + reqwest client + axum receiver)");
        let hooks_before = receiver.hooks.load(Ordering::Relaxed);
        let conns_before = conns();
        let start = Instant::now();
        let workers = ezw.start().unwrap();
        let deadline = start + Duration::from_secs(300);
        let (mut last, mut last_change, mut longest_stall) = (hooks_before, start, Duration::ZERO);
        let mut first_at = None;
        let received_at = loop {
            let now = Instant::now();
            let got = receiver.hooks.load(Ordering::Relaxed);
            if got != last {
                first_at.get_or_insert(now);
                if last != hooks_before {
                    longest_stall = longest_stall.max(now - last_change);
                }
                last = got;
                last_change = now;
            }
            if got - hooks_before >= events || now > deadline {
                break now - start;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let elapsed = loop {
            let pending = count(&db, "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'");
            if pending == 0 || Instant::now() > deadline {
                break start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let after = store.writer_stats();
        let cpu_after = common::thread_cpu("tokio workers (dispatcher + reqwest client + axum receiver)");
        let secs = elapsed.as_secs_f64();
        let received = receiver.hooks.load(Ordering::Relaxed) - hooks_before;
        let new_conns = conns() - conns_before;
        let succeeded = count(&db, "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'succeeded'");
        let rate = succeeded as f64 / secs;
        println!(
            "ezw       claimed -> POSTed -> recorded: {:>10} deliveries/s ({succeeded} succeeded in {secs:.2} s; \
             first POST at {:.0} ms, receiver had all {received} at {:.2} s, last outcome recorded {:.0} ms later)",
            common::thousands(rate),
            first_at.map_or(f64::NAN, |t| (t - start).as_secs_f64() * 1000.0),
            received_at.as_secs_f64(),
            (elapsed - received_at).as_secs_f64() * 1000.0
        );
        println!(
            "ezw       ratio to the raw HTTP rate at {in_flight} in flight: {:.2} (to 64 in flight: {:.2}); \
             longest gap between receiver requests: {:.0} ms; {new_conns} new connections to the receiver",
            rate / raw,
            rate / raw64,
            longest_stall.as_secs_f64() * 1000.0
        );

        // Evidence: statuses, attempts and their latency (ms resolution, as recorded).
        let mut statuses = Vec::new();
        {
            let mut s = db.prepare("SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status").unwrap();
            let rows = s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap();
            for row in rows.flatten() {
                statuses.push(format!("{}={}", row.0, row.1));
            }
        }
        let attempts = count(&db, "SELECT COUNT(*) FROM webhook_attempts");
        let still_queued = count(&db, "SELECT COUNT(*) FROM messages WHERE status = 'queued'");
        let retried = count(&db, "SELECT COUNT(*) FROM webhook_deliveries WHERE attempts > 1");
        let latencies: Vec<i64> = db
            .prepare("SELECT latency_ms FROM webhook_attempts ORDER BY latency_ms")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .flatten()
            .collect();
        let pct = |p: f64| {
            if latencies.is_empty() {
                return -1;
            }
            latencies[((latencies.len() as f64 - 1.0) * p).round() as usize]
        };
        println!(
            "ezw       deliveries: {}; {attempts} attempts, {retried} retried; attempt latency (sign + POST, \
             webhook_attempts.latency_ms): p50 {} ms, p99 {} ms, max {} ms; outbox parked: {still_queued} of \
             {events} messages still queued",
            statuses.join(" "),
            pct(0.50),
            pct(0.99),
            pct(1.0)
        );
        let now_secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let sample = std::mem::take(&mut *receiver.sample.lock().unwrap());
        let verified = sample
            .iter()
            .filter(|s| {
                let Some(secret) = secrets.get(&s.webhook) else { return false };
                let Ok(ts) = s.timestamp.parse::<i64>() else { return false };
                verify(secret, &s.id, ts, &s.body, &s.signature, now_secs).is_ok()
            })
            .count();
        println!(
            "ezw       signatures: {verified}/{} sampled deliveries verify with their webhook's secret \
             (ezw::webhooks::verify)",
            sample.len()
        );
        let txns = after.transactions - before.transactions;
        let jobs = after.jobs - before.jobs;
        let writer = format!(
            "{txns} transactions, {jobs} jobs ({:.1} per transaction), busy {:.0}%, fsync {:.0}%",
            jobs as f64 / txns.max(1) as f64,
            100.0 * (after.busy_ns - before.busy_ns) as f64 / 1e9 / secs,
            100.0 * (after.commit_ns - before.commit_ns) as f64 / 1e9 / secs
        );
        println!("ezw       writer: {writer}");
        let mut cpu: Vec<(String, f64)> = cpu_after
            .iter()
            .map(|(k, v)| (k.clone(), v - cpu_before.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, v)| *v > 0.02)
            .collect();
        cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total: f64 = cpu.iter().map(|(_, v)| v).sum();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        println!("ezw       CPU during the measured phase: {total:.2} core-seconds of {:.2} available", cores * secs);
        for (name, s) in cpu {
            println!("ezw     {s:>6.2} s  {name}");
        }
        let rss = common::peak_rss_mib();
        println!("ezw       peak RSS of the bench process (store + receiver + clients): {rss:.1} MiB");
        println!(
            "webhooks: {succeeded} deliveries in {secs:.2} s = {} deliveries/s (raw POST {} req/s, ratio {:.2}); \
             enqueue {} events/s; rss {rss:.0} MiB; writer: {writer}",
            common::thousands(rate),
            common::thousands(raw),
            rate / raw,
            common::thousands(enqueue_rate)
        );
        workers.shutdown(Duration::from_secs(10)).await;
    });
}
