//! Send throughput: `POST /api/v1/messages/text` over loopback with 64 concurrent clients and
//! unique idempotency keys, durable commits (SQLite WAL, `synchronous=FULL`, group commit).
//!
//! Run with: `cargo bench --features http --bench send_throughput`
//! (`EZW_BENCH_SECONDS` sets the measured duration, default 10.)
//!
//! Prints, from the same run on the same disk: the raw SQLite single-row commit rate (and the
//! 100-rows-per-commit rate), the raw HTTP POST rate of a trivial axum handler with the same
//! client, and EZW's accepted sends/s with p50/p99 latency and peak memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

mod common;

const CLIENTS: usize = 64;
const RECIPIENTS: usize = 1000;

fn bench_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir on the target disk")
}

/// Raw SQLite commit rate with the same pragmas EZW uses.
fn raw_sqlite(rows_per_commit: usize, seconds: f64) -> f64 {
    let dir = bench_dir();
    let conn = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, body TEXT NOT NULL, at INTEGER NOT NULL);",
    )
    .unwrap();
    let start = Instant::now();
    let mut rows = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        conn.execute_batch("BEGIN").unwrap();
        {
            let mut stmt = conn.prepare_cached("INSERT INTO t (k, body, at) VALUES (?1, ?2, ?3)").unwrap();
            for _ in 0..rows_per_commit {
                rows += 1;
                stmt.execute(rusqlite::params![format!("key-{rows}"), "Your order is ready", rows as i64]).unwrap();
            }
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

struct LoadResult {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let idx = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[idx] as f64 / 1000.0
    }
}

/// Drives `CLIENTS` concurrent keep-alive clients against `url` for `seconds`.
async fn drive(url: String, token: Option<String>, seconds: f64, expect: u16, phase: &'static str) -> LoadResult {
    let client: Client<_, Full<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(CLIENTS).build_http();
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let start = Instant::now();
    for c in 0..CLIENTS {
        let (client, url, token, stop, counter) =
            (client.clone(), url.clone(), token.clone(), stop.clone(), counter.clone());
        let phase = phase.to_owned();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::with_capacity(100_000));
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let body = format!(
                    "{{\"to\":\"+9725{:08}\",\"body\":\"Your order {n} is ready\"}}",
                    (n as usize + c) % RECIPIENTS
                );
                let mut req = hyper::Request::post(&url)
                    .header("content-type", "application/json")
                    .header("idempotency-key", format!("{phase}-{n}"));
                if let Some(t) = &token {
                    req = req.header("authorization", format!("Bearer {t}"));
                }
                let req = req.body(Full::new(bytes::Bytes::from(body))).unwrap();
                let t0 = Instant::now();
                match client.request(req).await {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        let _ = res.into_body().collect().await;
                        if status == expect {
                            ok += 1;
                            lat.push(t0.elapsed().as_micros() as u64);
                        } else {
                            if errors == 0 {
                                eprintln!("unexpected status {status}");
                            }
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            (ok, errors, lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut result = LoadResult { ok: 0, errors: 0, elapsed: Duration::ZERO, latencies_us: Vec::new() };
    for t in tasks {
        let (ok, errors, lat) = t.await.unwrap();
        result.ok += ok;
        result.errors += errors;
        result.latencies_us.extend(lat);
    }
    result.elapsed = start.elapsed();
    result
}

async fn raw_http(seconds: f64) -> LoadResult {
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post(|body: axum::body::Bytes| async move {
            (axum::http::StatusCode::ACCEPTED, format!("{{\"status\":\"queued\",\"len\":{}}}", body.len()))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let r = drive(format!("http://{addr}/send"), None, seconds, 202, "raw").await;
    server.abort();
    r
}

fn main() {
    let seconds: f64 = std::env::var("EZW_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "send_throughput: {CLIENTS} concurrent clients, {seconds} s per phase, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let single = raw_sqlite(1, seconds.min(5.0));
    let batched = raw_sqlite(100, seconds.min(5.0));
    println!("baseline  raw SQLite WAL synchronous=FULL: {single:>10.0} commits/s (1 row/commit), {batched:>10.0} rows/s (100 rows/commit)");

    runtime.block_on(async {
        let mut http = raw_http(seconds.min(5.0)).await;
        println!(
            "baseline  raw HTTP POST (axum, trivial handler): {:>10.0} req/s  p50 {:.2} ms  p99 {:.2} ms  errors {}",
            http.rate(),
            http.percentile_ms(0.50),
            http.percentile_ms(0.99),
            http.errors
        );

        for (label, workers) in [("with delivery running", true), ("accept path only, workers off", false)] {
            measure_ezw(seconds, label, workers).await;
        }
    });
}

async fn measure_ezw(seconds: f64, label: &str, workers: bool) {
    let dir = bench_dir();
    let options = ezw::http::ServerOptions::new("127.0.0.1:0".parse().unwrap(), dir.path()).demo(true).workers(workers);
    let server = ezw::http::start(options).await.unwrap();
    let demo = server.demo.clone().unwrap();
    let url = format!("http://{}/api/v1/messages/text", server.addr);
    let _ = drive(url.clone(), Some(demo.line_token.clone()), 1.0, 202, "warmup").await;
    let before = server.sqlite.as_ref().expect("the bench runs on SQLite").writer_stats();
    let cpu_before = common::thread_cpu("tokio workers (HTTP server + clients + services)");
    let mut r = drive(url, Some(demo.line_token.clone()), seconds, 202, "measured").await;
    let w = server.sqlite.as_ref().expect("the bench runs on SQLite").writer_stats();
    let cpu_after = common::thread_cpu("tokio workers (HTTP server + clients + services)");
    let (txns, jobs) = (w.transactions - before.transactions, w.jobs - before.jobs);
    let busy = (w.busy_ns - before.busy_ns) as f64 / 1e9;
    let commit = (w.commit_ns - before.commit_ns) as f64 / 1e9;
    let depth = server.ezw.store().outbox_depth().await.unwrap_or(0);
    println!("ezw [{label}]");
    println!(
        "ezw       POST /api/v1/messages/text (durable):  {:>10.0} accepted sends/s  p50 {:.2} ms  p99 {:.2} ms  errors {}  ({} sends in {:.1} s)",
        r.rate(),
        r.percentile_ms(0.50),
        r.percentile_ms(0.99),
        r.errors,
        r.ok,
        r.elapsed.as_secs_f64()
    );
    println!(
        "ezw       writer: {txns} transactions, {jobs} write jobs ({:.1} jobs/transaction), busy {:.0}% of the time, of which commit (fsync) {:.0}%",
        jobs as f64 / txns.max(1) as f64,
        100.0 * busy / r.elapsed.as_secs_f64(),
        100.0 * commit / r.elapsed.as_secs_f64()
    );
    let mut cpu: Vec<(String, f64)> = cpu_after
        .iter()
        .map(|(k, v)| (k.clone(), v - cpu_before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.05)
        .collect();
    cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = cpu.iter().map(|(_, v)| v).sum();
    println!(
        "ezw       CPU during the measured phase: {total:.1} core-seconds of {:.1} available",
        2.0 * r.elapsed.as_secs_f64()
    );
    for (name, secs) in cpu {
        println!("ezw     {secs:>6.2} s  {name}");
    }
    println!(
        "ezw       outbox backlog at end: {depth} jobs; peak RSS of the bench process (server + clients): {:.1} MiB",
        common::peak_rss_mib()
    );
    server.shutdown().await;
}
