//! The outbox crash test (acceptance test of the durable outbox).
//!
//! Starts the real `ezw-server` with a Meta line pointed at a mock Graph API inside this test,
//! submits at least 10,000 sends with unique idempotency keys from concurrent clients, kills the
//! server with SIGKILL at random moments (at least 5 times, always while sends are still being
//! submitted), restarts it each time, and then shows:
//!
//! - every message that got a 202 reached a terminal state and none is missing;
//! - no idempotency key made two messages (and re-submitting a key returns the same message);
//! - the mock received each message at most once; messages in flight at a kill are ambiguous
//!   (`unknown`), and are counted and reported (whether they reached the mock or not).
//!
//! It is `#[ignore]`d for quick local runs; CI runs it with
//! `cargo test -p ezw-http --test crash -- --ignored --nocapture`.
//!
//! The same binary holds the multi-node test ([`multinode`]): two servers on one PostgreSQL
//! database.
//!
//! The server's outbox lease is shortened through `EZW_OUTBOX_LEASE_MS` (and the
//! `--outbox-lease-ms` flag when `ezw-server --help` lists it); with the default 60 s lease the
//! test still passes, only slower.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use rand::Rng;
use serde_json::{json, Value};

/// Keys to get accepted (at least; more are submitted if the kills are not done yet).
const MIN_KEYS: usize = 10_000;
/// SIGKILLs while sends are being submitted (at least).
const MIN_KILLS: usize = 5;
/// Concurrent clients.
const CLIENTS: usize = 32;
/// Distinct recipients (messages of one conversation go out one at a time).
const RECIPIENTS: usize = 500;
/// The outbox lease the server is asked to use.
const LEASE_MS: u64 = 5_000;
/// The Meta line's phone number id (the mock serves only this one).
const PHONE_NUMBER_ID: &str = "106540352242922";
/// One in this many accepted keys is submitted again after the kills, to check the id.
const RECHECK_ONE_IN: u32 = 10;
/// How long one key may take to get its 202 (through kills and restarts).
const KEY_DEADLINE: Duration = Duration::from_secs(90);
/// How long to wait for every accepted message to be terminal after the last kill.
const SETTLE_DEADLINE: Duration = Duration::from_secs(120);
/// Statuses that end a message's journey for this test.
const TERMINAL: [&str; 5] = ["sent", "delivered", "read", "failed", "unknown"];

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// How to (re)start `ezw-server`: the same port, data directory and flags every time.
struct ServerConfig {
    bin: PathBuf,
    port: u16,
    data_dir: PathBuf,
    log_dir: PathBuf,
    /// `ezw-server --help` lists `--outbox-lease-ms`.
    lease_flag: bool,
    /// Start with `--demo` (creates the demo workspace).
    demo: bool,
    /// More arguments (the multi-node test's `--database-url`).
    extra: Vec<String>,
}

impl ServerConfig {
    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stdout_path(&self) -> PathBuf {
        self.log_dir.join("server.stdout.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.log_dir.join("server.stderr.log")
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let append = |p: &Path| OpenOptions::new().create(true).append(true).open(p);
        let bind = format!("127.0.0.1:{}", self.port);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--bind")
            .arg(&bind)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--public-url")
            .arg(self.base_url())
            .args(&self.extra);
        if self.demo {
            cmd.arg("--demo");
        }
        if self.lease_flag {
            cmd.arg("--outbox-lease-ms").arg(LEASE_MS.to_string());
        }
        cmd.env("RUST_LOG", "warn")
            .env("EZW_OUTBOX_LEASE_MS", LEASE_MS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(append(&self.stdout_path())?))
            .stderr(Stdio::from(append(&self.stderr_path())?))
            .spawn()
    }

    /// The last lines of both logs, for failure reports.
    fn log_tails(&self) -> String {
        let tail = |p: &Path| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- server stdout (tail) ---\n{}\n--- server stderr (tail) ---\n{}",
            tail(&self.stdout_path()),
            tail(&self.stderr_path())
        )
    }
}

/// A running `ezw-server` child process.
struct ServerProcess {
    config: ServerConfig,
    child: Option<Child>,
    starts: usize,
}

impl ServerProcess {
    /// Starts the server and waits until `/healthz` answers.
    async fn start(config: ServerConfig, http: &reqwest::Client) -> Result<Self, String> {
        let mut server = Self { config, child: None, starts: 0 };
        server.restart(http).await?;
        Ok(server)
    }

    /// Starts the server (again) and waits for `/healthz`; a few tries, in case the port is
    /// briefly not reusable.
    async fn restart(&mut self, http: &reqwest::Client) -> Result<Duration, String> {
        let began = Instant::now();
        let mut last_error = String::new();
        for _ in 0..5 {
            let child = self.config.spawn().map_err(|e| format!("spawning ezw-server: {e}"))?;
            self.child = Some(child);
            self.starts += 1;
            match self.wait_healthy(http).await {
                Ok(()) => return Ok(began.elapsed()),
                Err(e) => {
                    last_error = e;
                    self.kill();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Err(format!("ezw-server did not become healthy: {last_error}"))
    }

    /// Polls `/healthz` every 50 ms for up to 30 s; fails early if the process exits.
    async fn wait_healthy(&mut self, http: &reqwest::Client) -> Result<(), String> {
        let url = format!("{}/healthz", self.config.base_url());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("ezw-server exited during start-up: {status}"));
                }
            }
            if let Ok(resp) = http.get(&url).timeout(Duration::from_secs(1)).send().await {
                if resp.status() == StatusCode::OK {
                    if let Ok(body) = resp.json::<Value>().await {
                        if body["status"] == "ok" {
                            return Ok(());
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err("no healthy /healthz within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (on Unix) and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Graceful stop: SIGTERM, then wait (up to 30 s) for the exit.
    async fn terminate(&mut self) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else { return Err("the server is not running".into()) };
        let term = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        if !matches!(term, Ok(s) if s.success()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("kill -TERM failed: {term:?}"));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("the server did not exit within 30 s of SIGTERM".into());
                }
                Err(e) => return Err(format!("waiting for the server: {e}")),
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A failing test must not leave the server running.
        self.kill();
    }
}

/// Whether `ezw-server --help` lists `flag`.
fn server_has_flag(bin: &Path, flag: &str) -> bool {
    Command::new(bin).arg("--help").output().map(|o| String::from_utf8_lossy(&o.stdout).contains(flag)).unwrap_or(false)
}

/// A port that was free a moment ago (reused across restarts).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
    listener.local_addr().expect("local address").port()
}

// ---------------------------------------------------------------------------------------------
// The mock Graph API
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct MockState {
    /// Key -> the wamids answered for it (one per receipt).
    receipts: Mutex<HashMap<String, Vec<String>>>,
    /// Requests that were not a well-formed text send of this test.
    unexpected: Mutex<Vec<String>>,
    next_id: AtomicU64,
}

/// A Meta Graph API mock on 127.0.0.1: answers text sends after a random 0–20 ms, and records
/// every receipt per idempotency key (parsed from `text.body`, `crash <key>`).
struct MockGraph {
    addr: SocketAddr,
    state: Arc<MockState>,
}

impl MockGraph {
    async fn start() -> Self {
        let state = Arc::new(MockState::default());
        let app = Router::new()
            .route(&format!("/v23.0/{PHONE_NUMBER_ID}/messages"), post(mock_send))
            .fallback(mock_unexpected)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the mock");
        let addr = listener.local_addr().expect("mock address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }

    fn receipts(&self) -> HashMap<String, Vec<String>> {
        self.state.receipts.lock().expect("mock lock").clone()
    }

    fn unexpected(&self) -> Vec<String> {
        self.state.unexpected.lock().expect("mock lock").clone()
    }
}

async fn mock_send(State(state): State<Arc<MockState>>, body: Bytes) -> (StatusCode, Json<Value>) {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key = parsed["text"]["body"].as_str().and_then(|b| b.strip_prefix("crash ")).map(str::to_owned);
    let (Some(key), Some(to)) = (key, parsed["to"].as_str().map(str::to_owned)) else {
        state.unexpected.lock().expect("mock lock").push(format!("send body {}", String::from_utf8_lossy(&body)));
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": { "message": "unexpected body", "code": 100 } })));
    };
    // Counted on arrival, before the delay: the request reached "Meta" even if the server dies
    // before it reads the answer.
    let wamid = format!("wamid.crash{:08}", state.next_id.fetch_add(1, Ordering::Relaxed));
    state.receipts.lock().expect("mock lock").entry(key).or_default().push(wamid.clone());
    let delay = rand::rng().random_range(0..=20u64);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    (
        StatusCode::OK,
        Json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": to, "wa_id": to }],
            "messages": [{ "id": wamid }],
        })),
    )
}

async fn mock_unexpected(State(state): State<Arc<MockState>>, uri: axum::http::Uri) -> StatusCode {
    state.unexpected.lock().expect("mock lock").push(format!("request to {uri}"));
    StatusCode::NOT_FOUND
}

// ---------------------------------------------------------------------------------------------
// Setup through the Workspace API
// ---------------------------------------------------------------------------------------------

async fn expect_json(resp: reqwest::Response, want: StatusCode, what: &str) -> Value {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, want, "{what}: unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {text}"))
}

/// Logs in as the demo owner, creates the Meta line pointed at the mock and issues its token.
/// Returns (line id, line token).
async fn create_meta_line(http: &reqwest::Client, base: &str, data_dir: &Path, mock: SocketAddr) -> (String, String) {
    let demo: Value = serde_json::from_slice(&std::fs::read(data_dir.join("demo.json")).expect("reading demo.json"))
        .expect("demo.json is JSON");
    let login = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({ "email": demo["email"], "password": demo["password"] }))
        .send()
        .await
        .expect("login request");
    let login = expect_json(login, StatusCode::OK, "login").await;
    let id_token = login["idToken"].as_str().expect("idToken").to_owned();

    let line = http
        .post(format!("{base}/api/lines"))
        .bearer_auth(&id_token)
        .json(&json!({
            "displayName": "Crash",
            "phoneNumber": "+15550783881",
            "provider": {
                "kind": "meta",
                "phoneNumberId": PHONE_NUMBER_ID,
                "wabaId": "102290129340398",
                "appId": "1234567890",
                "appSecret": "0123456789abcdef0123456789abcdef",
                "accessToken": "EAAGcrashtesttoken1234567890",
                "verifyToken": "verify",
                "apiBaseUrl": format!("http://{mock}"),
            },
            "pacing": { "perSecond": 5000, "maxInFlight": 64 },
        }))
        .send()
        .await
        .expect("create line request");
    let line = expect_json(line, StatusCode::CREATED, "create the Meta line").await;
    let line_id = line["id"].as_str().expect("line id").to_owned();

    let token = http
        .post(format!("{base}/api/lines/{line_id}/api-token"))
        .bearer_auth(&id_token)
        .send()
        .await
        .expect("api-token request");
    let token = expect_json(token, StatusCode::CREATED, "issue the line token").await;
    (line_id, token["token"].as_str().expect("line token").to_owned())
}

// ---------------------------------------------------------------------------------------------
// Clients and the killer
// ---------------------------------------------------------------------------------------------

/// State shared by the clients, the killer and the checks.
#[derive(Default)]
struct Shared {
    /// The next key index to submit.
    next_key: AtomicUsize,
    /// SIGKILLs so far.
    kills: AtomicUsize,
    /// Set when something went wrong badly enough that clients should stop.
    abort: AtomicBool,
    /// Key -> message id, for every key that got a 202.
    accepted: Mutex<HashMap<String, String>>,
    /// Requests that did not get a 202 (transport errors, 5xx, ...) and were retried.
    retries: AtomicU64,
    /// Keys submitted again after their 202; all must have returned the same id.
    rechecked: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, failure: String) {
        self.failures.lock().expect("failures lock").push(failure);
    }

    fn accepted_count(&self) -> usize {
        self.accepted.lock().expect("accepted lock").len()
    }
}

fn key_name(i: usize) -> String {
    format!("key-{i:06}")
}

fn recipient(i: usize) -> String {
    format!("+1555020{:04}", i % RECIPIENTS)
}

/// Submits one send until it gets a 202 (same key, same body every time); returns the
/// message id.
async fn submit(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    key: &str,
    to: &str,
    shared: &Shared,
) -> Result<String, String> {
    let body = json!({ "to": to, "body": format!("crash {key}") });
    let deadline = Instant::now() + KEY_DEADLINE;
    loop {
        let result = http.post(url).bearer_auth(token).header("Idempotency-Key", key).json(&body).send().await;
        let last = match result {
            Ok(resp) if resp.status() == StatusCode::ACCEPTED => match resp.json::<Value>().await {
                Ok(v) => match v["id"].as_str() {
                    Some(id) => return Ok(id.to_owned()),
                    None => return Err(format!("key {key}: 202 without an id: {v}")),
                },
                // The server died while answering.
                Err(e) => format!("reading the 202 body: {e}"),
            },
            Ok(resp) => {
                let status = resp.status();
                format!("HTTP {status}: {}", resp.text().await.unwrap_or_default())
            }
            Err(e) => format!("transport: {e}"),
        };
        shared.retries.fetch_add(1, Ordering::Relaxed);
        if shared.abort.load(Ordering::Relaxed) {
            return Err(format!("key {key}: aborted; last error {last}"));
        }
        if Instant::now() >= deadline {
            return Err(format!("key {key}: no 202 within {KEY_DEADLINE:?}; last error {last}"));
        }
        let pause = rand::rng().random_range(20..=50u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// One client: takes keys until at least `MIN_KEYS` are taken and `MIN_KILLS` kills happened,
/// then re-submits a sample of its accepted keys and checks that each returns the same id.
async fn client(http: reqwest::Client, base: String, token: String, shared: Arc<Shared>) {
    let url = format!("{base}/api/v1/messages/text");
    let mut recheck = Vec::new();
    loop {
        if shared.abort.load(Ordering::Relaxed) {
            return;
        }
        let i = shared.next_key.fetch_add(1, Ordering::Relaxed);
        if i >= MIN_KEYS && shared.kills.load(Ordering::Relaxed) >= MIN_KILLS {
            break;
        }
        let (key, to) = (key_name(i), recipient(i));
        match submit(&http, &url, &token, &key, &to, &shared).await {
            Ok(id) => {
                let previous = shared.accepted.lock().expect("accepted lock").insert(key.clone(), id.clone());
                if let Some(previous) = previous {
                    shared.fail(format!("key {key} was accepted twice by this test (ids {previous}, {id})"));
                }
                if rand::rng().random_ratio(1, RECHECK_ONE_IN) {
                    recheck.push((key, to, id));
                }
            }
            Err(e) => {
                shared.fail(e);
                shared.abort.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
    for (key, to, id) in recheck {
        match submit(&http, &url, &token, &key, &to, &shared).await {
            Ok(again) if again == id => {
                shared.rechecked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(again) => shared.fail(format!("key {key} made two messages: {id} and, re-submitted, {again}")),
            Err(e) => shared.fail(format!("re-submitting: {e}")),
        }
    }
}

/// Kills the server at random moments (0.3–2.0 s apart) and restarts it, until at least
/// `MIN_KILLS` kills happened and the clients are done.
async fn killer(
    mut server: ServerProcess,
    http: reqwest::Client,
    shared: Arc<Shared>,
    clients_done: Arc<AtomicBool>,
    t0: Instant,
) -> ServerProcess {
    loop {
        let enough = |s: &Shared| s.kills.load(Ordering::SeqCst) >= MIN_KILLS;
        if (enough(&shared) && clients_done.load(Ordering::SeqCst)) || shared.abort.load(Ordering::SeqCst) {
            return server;
        }
        let pause = rand::rng().random_range(300..=2000u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if (enough(&shared) && clients_done.load(Ordering::SeqCst)) || shared.abort.load(Ordering::SeqCst) {
            return server;
        }
        server.kill();
        let n = shared.kills.fetch_add(1, Ordering::SeqCst) + 1;
        let accepted = shared.accepted_count();
        match server.restart(&http).await {
            Ok(took) => println!(
                "crash test: kill #{n} at {:.1} s ({accepted} accepted so far); restarted in {} ms",
                t0.elapsed().as_secs_f64(),
                took.as_millis()
            ),
            Err(e) => {
                shared.fail(format!("restart after kill #{n}: {e}"));
                shared.abort.store(true, Ordering::SeqCst);
                return server;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the database
// ---------------------------------------------------------------------------------------------

/// One row of `messages`.
struct Row {
    id: String,
    key: Option<String>,
    status: String,
    provider_message_id: Option<String>,
}

fn open_read_only(db: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// The line's messages (WAL mode allows reading while the server runs).
async fn read_messages(db: PathBuf, line_id: String) -> Result<Vec<Row>, String> {
    tokio::task::spawn_blocking(move || {
        let conn = open_read_only(&db)?;
        let mut stmt = conn.prepare(
            "SELECT id, idempotency_key, status, provider_message_id FROM messages \
             WHERE line_id = ?1 AND direction = 'outbound'",
        )?;
        let rows = stmt.query_map([&line_id], |r| {
            Ok(Row { id: r.get(0)?, key: r.get(1)?, status: r.get(2)?, provider_message_id: r.get(3)? })
        })?;
        rows.collect::<rusqlite::Result<Vec<Row>>>()
    })
    .await
    .map_err(|e| format!("reader task: {e}"))?
    .map_err(|e| format!("reading {}: {e}", "messages"))
}

/// Idempotency keys that made more than one message.
async fn duplicate_keys(db: PathBuf) -> Result<Vec<(String, i64)>, String> {
    tokio::task::spawn_blocking(move || {
        let conn = open_read_only(&db)?;
        let mut stmt = conn.prepare(
            "SELECT idempotency_key, COUNT(*) FROM messages WHERE idempotency_key IS NOT NULL \
             GROUP BY idempotency_key HAVING COUNT(*) > 1",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<Vec<(String, i64)>>>()
    })
    .await
    .map_err(|e| format!("reader task: {e}"))?
    .map_err(|e| format!("reading duplicate keys: {e}"))
}

fn is_terminal(status: &str) -> bool {
    TERMINAL.contains(&status)
}

/// Polls the database until every accepted message is terminal; returns the non-terminal count
/// at the end (0 on success) and a status histogram.
async fn wait_terminal(db: &Path, line_id: &str, accepted: &HashMap<String, String>) -> (usize, String) {
    let ids: HashSet<&str> = accepted.values().map(String::as_str).collect();
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let (pending, histogram) = match read_messages(db.to_path_buf(), line_id.to_owned()).await {
            Ok(rows) => {
                let mut histogram: HashMap<String, usize> = HashMap::new();
                let mut terminal = 0;
                for row in rows.iter().filter(|r| ids.contains(r.id.as_str())) {
                    *histogram.entry(row.status.clone()).or_default() += 1;
                    terminal += usize::from(is_terminal(&row.status));
                }
                let mut histogram: Vec<_> = histogram.into_iter().collect();
                histogram.sort();
                (ids.len() - terminal, format!("{histogram:?}"))
            }
            Err(e) => (ids.len(), e),
        };
        if pending == 0 || Instant::now() >= deadline {
            return (pending, histogram);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "crash test; .ci/run runs it"]
async fn kill_dash_nine_loses_nothing_and_duplicates_nothing() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().expect("temp dir");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ezw-server"));
    let lease_flag = server_has_flag(&bin, "--outbox-lease-ms");
    if !lease_flag {
        println!(
            "crash test: note: ezw-server --help does not list --outbox-lease-ms; relying on \
             EZW_OUTBOX_LEASE_MS (if unsupported, the 60 s default lease makes this test slower)"
        );
    }
    let config = ServerConfig {
        bin,
        port: free_port(),
        data_dir: tmp.path().join("data"),
        log_dir: tmp.path().to_path_buf(),
        lease_flag,
        demo: true,
        extra: Vec::new(),
    };
    let base = config.base_url();
    let db = config.data_dir.join("ezw.db");
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("HTTP client");

    // 1. Mock, server, Meta line.
    let mock = MockGraph::start().await;
    let server = match ServerProcess::start(config, &http).await {
        Ok(s) => s,
        Err(e) => panic!("starting ezw-server: {e}"),
    };
    let (line_id, token) = create_meta_line(&http, &base, &server.config.data_dir, mock.addr).await;
    println!("crash test: server on {base}, mock Graph API on {}, line {line_id}", mock.addr);

    // 2–3. Clients and the killer, concurrently.
    let shared = Arc::new(Shared::default());
    let clients_done = Arc::new(AtomicBool::new(false));
    let killer_task = tokio::spawn(killer(server, http.clone(), shared.clone(), clients_done.clone(), t0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        clients.spawn(client(http.clone(), base.clone(), token.clone(), shared.clone()));
    }
    while let Some(joined) = clients.join_next().await {
        if let Err(e) = joined {
            shared.fail(format!("a client task failed: {e}"));
        }
    }
    clients_done.store(true, Ordering::SeqCst);
    let mut server = killer_task.await.expect("killer task");
    let kills = shared.kills.load(Ordering::SeqCst);
    let accepted = shared.accepted.lock().expect("accepted lock").clone();
    println!(
        "crash test: submission done at {:.1} s: {} accepted, {kills} kills, {} retried requests, {} re-submitted keys",
        t0.elapsed().as_secs_f64(),
        accepted.len(),
        shared.retries.load(Ordering::Relaxed),
        shared.rechecked.load(Ordering::Relaxed),
    );

    // 4. Wait until every accepted message is terminal.
    let (pending, histogram) = if shared.abort.load(Ordering::SeqCst) {
        (accepted.len(), "aborted".to_owned())
    } else {
        wait_terminal(&db, &line_id, &accepted).await
    };
    println!("crash test: settled at {:.1} s: {histogram}", t0.elapsed().as_secs_f64());

    // 5. Graceful stop, then the checks against the database and the mock.
    if let Err(e) = server.terminate().await {
        shared.fail(format!("graceful stop: {e}"));
    }
    let mut failures = std::mem::take(&mut *shared.failures.lock().expect("failures lock"));
    if accepted.len() < MIN_KEYS {
        failures.push(format!("only {} keys accepted (want >= {MIN_KEYS})", accepted.len()));
    }
    if kills < MIN_KILLS {
        failures.push(format!("only {kills} kills (want >= {MIN_KILLS})"));
    }
    if pending > 0 {
        failures.push(format!("{pending} accepted messages not terminal after {SETTLE_DEADLINE:?}: {histogram}"));
    }

    let rows = read_messages(db.clone(), line_id.clone()).await.unwrap_or_else(|e| {
        failures.push(e);
        Vec::new()
    });
    let by_id: HashMap<&str, &Row> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let receipts = mock.receipts();
    let (mut sent, mut unknown, mut unknown_reached, mut failed, mut missing, mut not_terminal) = (0, 0, 0, 0, 0, 0);
    for (key, id) in &accepted {
        let Some(row) = by_id.get(id.as_str()) else {
            missing += 1;
            failures.push(format!("message {id} (key {key}) got a 202 but is missing"));
            continue;
        };
        if row.key.as_deref() != Some(key.as_str()) {
            failures.push(format!("message {id} has key {:?}, want {key}", row.key));
        }
        let got = receipts.get(key).map_or(&[][..], Vec::as_slice);
        match row.status.as_str() {
            "sent" | "delivered" | "read" => {
                sent += 1;
                if got.len() != 1 {
                    failures.push(format!(
                        "message {id} (key {key}) is {} but the mock got it {} times",
                        row.status,
                        got.len()
                    ));
                } else if row.provider_message_id.as_deref() != Some(got[0].as_str()) {
                    failures.push(format!(
                        "message {id} (key {key}) has provider id {:?}, the mock answered {}",
                        row.provider_message_id, got[0]
                    ));
                }
            }
            "unknown" => {
                unknown += 1;
                unknown_reached += usize::from(!got.is_empty());
            }
            "failed" => {
                failed += 1;
                failures.push(format!("message {id} (key {key}) failed; the mock never fails"));
            }
            other => {
                not_terminal += 1;
                failures.push(format!("message {id} (key {key}) is still {other}"));
            }
        }
    }
    let accepted_ids: HashSet<&str> = accepted.values().map(String::as_str).collect();
    let strays: Vec<&str> = rows.iter().map(|r| r.id.as_str()).filter(|id| !accepted_ids.contains(id)).collect();
    if !strays.is_empty() {
        failures.push(format!(
            "{} messages on the line that no client got a 202 for, e.g. {:?}",
            strays.len(),
            &strays[..strays.len().min(5)]
        ));
    }
    let duplicates = duplicate_keys(db.clone()).await.unwrap_or_else(|e| {
        failures.push(e);
        Vec::new()
    });
    for (key, count) in &duplicates {
        failures.push(format!("key {key} made {count} messages"));
    }
    let mut resends = 0;
    for (key, wamids) in &receipts {
        if wamids.len() > 1 {
            resends += 1;
            failures.push(format!("the mock received key {key} {} times", wamids.len()));
        }
        if !accepted.contains_key(key) {
            failures.push(format!("the mock received key {key}, which no client got a 202 for"));
        }
    }
    for request in mock.unexpected().iter().take(5) {
        failures.push(format!("the mock got an unexpected request: {request}"));
    }

    // 6. Summary.
    println!(
        "crash test: {} accepted, {kills} kills, {sent} sent, {unknown} unknown (ambiguous: {unknown_reached} reached \
         the mock, {} did not), {failed} failed, {not_terminal} not terminal, {missing} missing, {} duplicate keys, \
         {resends} re-sends, {:.1} s",
        accepted.len(),
        unknown - unknown_reached,
        duplicates.len(),
        t0.elapsed().as_secs_f64(),
    );
    if !failures.is_empty() {
        println!("{}", server.config.log_tails());
        let shown: Vec<&String> = failures.iter().take(30).collect();
        panic!(
            "crash test: {} failures, first ones:\n{}",
            failures.len(),
            shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
        );
    }
}

#[path = "processes/multinode.rs"]
mod multinode;

#[path = "processes/cli_pair.rs"]
mod cli_pair;
