//! Two `ezw-server` processes on one PostgreSQL database (`EZW_TEST_POSTGRES_URL`), in a schema
//! of their own:
//!
//! - 10,000 sends, split between the nodes; one key in five is submitted to both nodes at the
//!   same moment. Every key must make exactly one message, and every answer for a key must name
//!   it.
//! - A mock Graph API (shared by both nodes) must receive no message twice, and every message
//!   that ends `sent` exactly once.
//! - An SSE client on node B must see the hint of a probe sent through node A, and hints for at
//!   least 98% of the sends node A accepted (node A's last unpublished hints die with it), unless
//!   the stream announced skipped hints with a reset.
//! - Node A is killed with SIGKILL mid-run; its clients move to node B with the same keys, and
//!   node B finishes all of A's claimed work once A's leases run out. Messages A had handed to
//!   the mock when it died are ambiguous (`unknown`, not re-sent: Meta does not deduplicate) and
//!   are counted and reported.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{create_meta_line, expect_json, free_port, recipient, MockGraph, ServerConfig, ServerProcess, LEASE_MS};

/// Keys to send.
const KEYS: usize = 10_000;
/// One key in this many is submitted to both nodes at once.
const BOTH_ONE_IN: usize = 5;
/// Concurrent clients per node.
const CLIENTS_PER_NODE: usize = 16;
/// Node A is killed once this many keys were accepted.
const KILL_AFTER: usize = 4_000;

/// Drops the test's schema at the end.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) =
            tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.expect("connecting to PostgreSQL");
        tokio::spawn(conn);
        client
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await;
                }
            });
        })
        .join();
    }
}

#[derive(Default)]
struct Shared {
    next_key: AtomicUsize,
    /// Key -> every message id an answer named for it.
    answers: Mutex<HashMap<String, HashSet<String>>>,
    /// Keys accepted through node A while it was alive.
    via_a: Mutex<Vec<String>>,
    a_dead: AtomicBool,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn accepted(&self) -> usize {
        self.answers.lock().expect("answers").len()
    }

    fn fail(&self, f: String) {
        self.failures.lock().expect("failures").push(f);
    }
}

/// Sends one key to `base` until a 202; `None` when the node is gone (for node A after the
/// kill) or the deadline passed.
async fn send_once(http: &reqwest::Client, base: &str, token: &str, key: &str, i: usize) -> Option<String> {
    let body = json!({ "to": recipient(i), "body": format!("crash {key}") });
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let resp = http
            .post(format!("{base}/api/v1/messages/text"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await;
        match resp {
            Ok(r) if r.status() == StatusCode::ACCEPTED => {
                if let Ok(v) = r.json::<Value>().await {
                    return v["id"].as_str().map(str::to_owned);
                }
            }
            Ok(_) => {}
            // Connection refused: the node is dead.
            Err(e) if e.is_connect() => return None,
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    None
}

/// A client bound to one node: takes keys, submits some to both nodes at once, and moves to
/// node B when its node is gone.
async fn client(http: reqwest::Client, bases: [String; 2], token: String, home: usize, shared: Arc<Shared>) {
    loop {
        let i = shared.next_key.fetch_add(1, Ordering::Relaxed);
        if i >= KEYS {
            return;
        }
        let key = format!("mn-{i:06}");
        let mut node = if shared.a_dead.load(Ordering::Relaxed) { 1 } else { home };
        let answers: Vec<(usize, Option<String>)> = if i % BOTH_ONE_IN == 0 && !shared.a_dead.load(Ordering::Relaxed) {
            let (a, b) = tokio::join!(
                send_once(&http, &bases[0], &token, &key, i),
                send_once(&http, &bases[1], &token, &key, i)
            );
            vec![(0, a), (1, b)]
        } else {
            vec![(node, send_once(&http, &bases[node], &token, &key, i).await)]
        };
        let mut ids: Vec<String> = Vec::new();
        for (n, id) in answers {
            if let Some(id) = id {
                if n == 0 && !shared.a_dead.load(Ordering::Relaxed) {
                    shared.via_a.lock().expect("via_a").push(key.clone());
                }
                ids.push(id);
            }
        }
        if ids.is_empty() {
            // Node A died under this key: the same key on node B.
            node = 1;
            match send_once(&http, &bases[node], &token, &key, i).await {
                Some(id) => ids.push(id),
                None => {
                    shared.fail(format!("key {key}: no 202 from node B"));
                    continue;
                }
            }
        }
        shared.answers.lock().expect("answers").entry(key).or_default().extend(ids);
    }
}

/// Reads SSE events from `resp`, records the message ids of message hints, and counts `reset`
/// events (the stream telling the client it skipped hints and must refetch).
async fn sse_reader(mut resp: reqwest::Response, seen: Arc<Mutex<HashSet<String>>>, resets: Arc<AtomicUsize>) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for line in event.lines() {
                if line.strip_prefix("event:").map(str::trim) == Some("reset") {
                    resets.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(data) = line.strip_prefix("data:") {
                    if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                        if let Some(id) = v["messageId"].as_str() {
                            seen.lock().expect("seen").insert(id.to_owned());
                        }
                    }
                }
            }
        }
    }
    // The server ended the stream: a real client reconnects with Last-Event-ID and gets a
    // reset; counted as one (node B's shutdown at the end is read before it happens).
    resets.fetch_add(1, Ordering::Relaxed);
}

async fn login(http: &reqwest::Client, base: &str, data_dir: &std::path::Path) -> String {
    let demo: Value = serde_json::from_slice(&std::fs::read(data_dir.join("demo.json")).expect("demo.json"))
        .expect("demo.json is JSON");
    let login = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({ "email": demo["email"], "password": demo["password"] }))
        .send()
        .await
        .expect("login");
    expect_json(login, StatusCode::OK, "login").await["idToken"].as_str().expect("idToken").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "process test; .ci/run runs it"]
async fn two_nodes_share_one_postgres_database() {
    let t0 = Instant::now();
    let url = std::env::var("EZW_TEST_POSTGRES_URL")
        .expect("EZW_TEST_POSTGRES_URL must point at a PostgreSQL database (.ci/run sets it)");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let schema = Schema { url: url.clone(), name: format!("ezw_multinode_{}_{nanos}", std::process::id()) };
    let tmp = tempfile::tempdir().expect("temp dir");
    let data_dir = tmp.path().join("data");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ezw-server"));
    let node = |name: &str, demo: bool| {
        let log_dir = tmp.path().join(name);
        std::fs::create_dir_all(&log_dir).expect("log dir");
        ServerConfig {
            bin: bin.clone(),
            port: free_port(),
            // One data directory: both nodes sign with its server.key and share its blobs (in a
            // real deployment, a shared key and a shared volume).
            data_dir: data_dir.clone(),
            log_dir,
            lease_flag: true,
            demo,
            extra: vec!["--database-url".into(), url.clone(), "--database-schema".into(), schema.name.clone()],
        }
    };
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .build()
        .expect("HTTP client");
    let mock = MockGraph::start().await;

    // Node A creates the schema and the demo workspace; node B joins.
    let mut a = ServerProcess::start(node("a", true), &http).await.unwrap_or_else(|e| panic!("node A: {e}"));
    let mut b = ServerProcess::start(node("b", false), &http).await.unwrap_or_else(|e| panic!("node B: {e}"));
    let bases = [a.config.base_url(), b.config.base_url()];
    let (line_id, token) = create_meta_line(&http, &bases[0], &data_dir, mock.addr).await;
    println!("multinode: node A {}, node B {}, schema {}, line {line_id}", bases[0], bases[1], schema.name);

    // An SSE client on node B; a probe sent through node A must show up there.
    let id_token = login(&http, &bases[1], &data_dir).await;
    let sse = reqwest::Client::builder().build().expect("SSE client");
    let stream =
        sse.get(format!("{}/api/live/stream", bases[1])).bearer_auth(&id_token).send().await.expect("SSE request");
    assert_eq!(stream.status(), StatusCode::OK, "the live stream opens on node B");
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let resets = Arc::new(AtomicUsize::new(0));
    tokio::spawn(sse_reader(stream, seen.clone(), resets.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probe = send_once(&http, &bases[0], &token, "probe-through-a", 9_999).await.expect("probe accepted by A");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.lock().expect("seen").contains(&probe) {
        assert!(Instant::now() < deadline, "node B's SSE client never saw the hint of a send made through node A");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "multinode: node B's SSE client saw the probe sent through node A after {:.2} s",
        t0.elapsed().as_secs_f64()
    );

    // The run: clients on both nodes; node A is killed mid-run.
    let shared = Arc::new(Shared::default());
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..2 * CLIENTS_PER_NODE {
        clients.spawn(client(http.clone(), bases.clone(), token.clone(), n % 2, shared.clone()));
    }
    while shared.accepted() < KILL_AFTER {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.kill();
    shared.a_dead.store(true, Ordering::SeqCst);
    let killed_at = t0.elapsed();
    println!(
        "multinode: node A killed (SIGKILL) at {:.1} s with {} keys accepted",
        killed_at.as_secs_f64(),
        shared.accepted()
    );
    while clients.join_next().await.is_some() {}
    println!("multinode: all {} keys submitted at {:.1} s", shared.accepted(), t0.elapsed().as_secs_f64());

    // Node B finishes everything, A's claimed jobs after their lease.
    let db = schema.client().await;
    let settle_deadline = Instant::now() + Duration::from_secs(180);
    let rows = loop {
        let rows = db
            .query(
                &format!(
                    "SELECT id, idempotency_key, status, provider_message_id FROM {}.messages
                     WHERE line_id = $1 AND direction = 'outbound'",
                    schema.name
                ),
                &[&line_id],
            )
            .await
            .expect("reading messages");
        let open = rows.iter().filter(|r| !super::is_terminal(r.get::<_, &str>(2))).count();
        let jobs: i64 = db
            .query_one(&format!("SELECT COUNT(*) FROM {}.outbox_jobs", schema.name), &[])
            .await
            .expect("outbox depth")
            .get(0);
        if open == 0 && jobs == 0 {
            break rows;
        }
        assert!(Instant::now() < settle_deadline, "node B did not finish: {open} messages open, {jobs} jobs queued");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let settled_at = t0.elapsed();
    // Before node B stops (which ends the stream).
    let resets_seen = resets.load(Ordering::Relaxed);
    let hinted: HashSet<String> = seen.lock().expect("seen").clone();
    if let Err(e) = b.terminate().await {
        shared.fail(format!("stopping node B: {e}"));
    }

    // Checks.
    let mut failures = std::mem::take(&mut *shared.failures.lock().expect("failures"));
    let answers = shared.answers.lock().expect("answers").clone();
    if answers.len() != KEYS {
        failures.push(format!("{} keys accepted, want {KEYS}", answers.len()));
    }
    for (key, ids) in &answers {
        if ids.len() != 1 {
            failures.push(format!("key {key} was answered with {} different messages: {ids:?}", ids.len()));
        }
    }
    let mut by_key: HashMap<String, Vec<(String, String, Option<String>)>> = HashMap::new();
    for r in &rows {
        let key: Option<String> = r.get(1);
        if let Some(key) = key.filter(|k| k.starts_with("mn-")) {
            by_key.entry(key).or_default().push((r.get(0), r.get(2), r.get(3)));
        }
    }
    let receipts = mock.receipts();
    let (mut sent, mut unknown, mut unknown_reached) = (0usize, 0usize, 0usize);
    for (key, ids) in &answers {
        let Some(messages) = by_key.get(key) else {
            failures.push(format!("key {key}: no message stored"));
            continue;
        };
        if messages.len() != 1 {
            failures.push(format!("key {key} made {} messages", messages.len()));
            continue;
        }
        let (id, status, provider_id) = &messages[0];
        if !ids.contains(id) {
            failures.push(format!("key {key}: stored message {id}, answered {ids:?}"));
        }
        let got = receipts.get(key).map_or(&[][..], Vec::as_slice);
        match status.as_str() {
            "sent" | "delivered" | "read" => {
                sent += 1;
                if got.len() != 1 || provider_id.as_deref() != got.first().map(String::as_str) {
                    failures.push(format!("key {key} is {status} but the mock received it {} times", got.len()));
                }
            }
            "unknown" => {
                unknown += 1;
                unknown_reached += usize::from(!got.is_empty());
                if got.len() > 1 {
                    failures.push(format!("key {key} reached the mock {} times", got.len()));
                }
            }
            other => failures.push(format!("key {key} ended {other}")),
        }
    }
    for (key, wamids) in &receipts {
        if wamids.len() > 1 {
            failures.push(format!("the mock received key {key} {} times", wamids.len()));
        }
    }
    for request in mock.unexpected().iter().take(5) {
        failures.push(format!("the mock got an unexpected request: {request}"));
    }
    let via_a = shared.via_a.lock().expect("via_a").clone();
    let via_a_hinted = via_a
        .iter()
        .filter_map(|k| answers.get(k).and_then(|ids| ids.iter().next()))
        .filter(|id| hinted.contains(*id))
        .count();
    let both = (0..KEYS).filter(|i| i % BOTH_ONE_IN == 0).count();
    println!(
        "multinode: {} keys ({} submitted to both nodes at once while A lived), {} messages; {sent} sent, \
         {unknown} unknown (in flight on A when killed: {unknown_reached} reached the mock, {} did not); \
         B settled A's work {:.1} s after the kill (lease {LEASE_MS} ms); node B's SSE client saw hints for \
         {via_a_hinted} of {} sends accepted by A, with {} resets (skipped hints); {:.1} s in all",
        answers.len(),
        both,
        by_key.len(),
        unknown - unknown_reached,
        (settled_at - killed_at).as_secs_f64(),
        via_a.len(),
        resets_seen,
        t0.elapsed().as_secs_f64()
    );
    // Hints are best effort: node A's last unpublished ones die with it. Any other loss must be
    // announced to the client with a reset.
    if resets_seen == 0 && via_a_hinted * 100 < via_a.len() * 98 {
        failures.push(format!(
            "node B's SSE client saw hints for only {via_a_hinted} of {} sends made through A, without a reset",
            via_a.len()
        ));
    }
    if !failures.is_empty() {
        println!("{}\n{}", a.config.log_tails(), b.config.log_tails());
        panic!(
            "multinode: {} failures, first ones:\n{}",
            failures.len(),
            failures[..failures.len().min(30)].join("\n")
        );
    }
}
