//! Memory of idle QR lines: the resident set size of a real `ezw-server` process with 0 QR lines,
//! then with `EZW_BENCH_QR_LINES` (default 100) simulated QR lines that were paired through the QR
//! API (`GET /api/lines/{id}/qr`, then the simulator's scan route) and sit connected and idle, and
//! again with the same number left unpaired and rotating codes. Aim: at most 20 MB per line.
//!
//! ```text
//! cargo bench -p ezw-http --bench qr_idle_rss
//! ```
//!
//! The simulated lines carry EZW's whole per-line cost (session lease, supervisor entry, driver
//! task with its state machine, pairing rows and code rotation) but not a WhatsApp Web protocol
//! client's: the native backend's per-session memory needs WhatsApp's servers to pair and is not
//! measured here.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const PASSWORD: &str = "bench-password-1234";

/// The resident set size of `pid` in KiB (Linux `/proc`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// The median of a few RSS samples taken over `over`, so one allocation burst does not count.
async fn settled_rss(pid: u32, over: Duration) -> u64 {
    let mut samples = Vec::new();
    let step = over / 10;
    for _ in 0..10 {
        tokio::time::sleep(step).await;
        samples.push(rss_kib(pid));
    }
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(data_dir: &Path) -> Server {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ezw-server"))
        .args(["--bind", &format!("127.0.0.1:{port}"), "--public-url", &base])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting ezw-server");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Server { child, base };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("ezw-server did not answer /healthz within 30 s");
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Signs up an organization with 50 line slots; returns its owner's id token.
async fn signup(http: &reqwest::Client, base: &str, n: usize) -> String {
    let resp = http
        .post(format!("{base}/api/signup/organization"))
        .json(&json!({
            "organizationName": format!("Bench {n}"),
            "ownerName": "Bench owner",
            "email": format!("owner{n}@bench.ezw.local"),
            "password": PASSWORD,
            "lineSlots": 50,
        }))
        .send()
        .await
        .expect("signup");
    assert_eq!(resp.status().as_u16(), 201, "signup");
    let body: Value = resp.json().await.expect("signup body");
    body["idToken"].as_str().expect("idToken").to_owned()
}

/// Creates `n` simulated QR lines across organizations of 50; returns (token, line id) pairs.
async fn create_lines(http: &reqwest::Client, base: &str, n: usize, batch: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut token = String::new();
    for i in 0..n {
        if i % 50 == 0 {
            token = signup(http, base, batch * 1000 + i / 50).await;
        }
        let (status, body) = call(
            http,
            reqwest::Method::POST,
            format!("{base}/api/lines"),
            &token,
            Some(json!({
                "displayName": format!("QR {i}"),
                "phoneNumber": format!("+1555{:07}", batch * 100_000 + i),
                "provider": { "kind": "simulator", "pairing": "qr" },
            })),
        )
        .await;
        assert_eq!(status, 201, "creating a QR line: {body}");
        out.push((token.clone(), body["id"].as_str().expect("line id").to_owned()));
    }
    out
}

/// Waits for each line's first code and scans it; then waits until every line is connected.
async fn pair_all(http: &reqwest::Client, base: &str, lines: &[(String, String)]) {
    for (token, id) in lines {
        let deadline = Instant::now() + Duration::from_secs(60);
        let code = loop {
            let (status, body) =
                call(http, reqwest::Method::GET, format!("{base}/api/lines/{id}/qr"), token, None).await;
            if status == 200 {
                break body["data"]["code"].as_str().expect("code").to_owned();
            }
            assert!(Instant::now() < deadline, "no QR code for {id}: {status} {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (status, body) = call(
            http,
            reqwest::Method::POST,
            format!("{base}/api/lines/{id}/simulator/scan"),
            token,
            Some(json!({ "code": code })),
        )
        .await;
        assert!(status < 300, "scan {id}: {status} {body}");
    }
    for (token, id) in lines {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, body) = call(http, reqwest::Method::GET, format!("{base}/api/lines/{id}"), token, None).await;
            if body["lifecycleState"] == "connected" {
                break;
            }
            assert!(Instant::now() < deadline, "{id} did not connect: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::var("EZW_BENCH_QR_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let settle = Duration::from_secs(3);
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path()).await;
    let pid = server.child.id();

    // Baseline: the same process with no QR line, after one organization exists.
    let _ = signup(&http, &server.base, 999_999).await;
    let zero = settled_rss(pid, settle).await;

    let t0 = Instant::now();
    let paired = create_lines(&http, &server.base, n, 1).await;
    pair_all(&http, &server.base, &paired).await;
    let setup = t0.elapsed();
    let idle = settled_rss(pid, settle).await;

    // The same number again, left unpaired: each shows a code and rotates it.
    let _unpaired = create_lines(&http, &server.base, n, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pairing = settled_rss(pid, settle).await;

    let per_line = |after: u64, before: u64| after.saturating_sub(before) as f64 / n as f64 / 1024.0;
    println!("qr_idle_rss: ezw-server RSS with 0 QR lines: {:.1} MiB", zero as f64 / 1024.0);
    println!(
        "qr_idle_rss: with {n} paired, idle QR lines: {:.1} MiB ({:.3} MiB per line; set up in {:.1} s)",
        idle as f64 / 1024.0,
        per_line(idle, zero),
        setup.as_secs_f64()
    );
    println!(
        "qr_idle_rss: plus {n} unpaired lines rotating codes: {:.1} MiB ({:.3} MiB per unpaired line)",
        pairing as f64 / 1024.0,
        per_line(pairing, idle)
    );
    println!("qr_idle_rss: aim: at most 20 MiB per line");
}
