//! Inbox reads at scale: the conversation list and timeline through the ezw-core services for an
//! operator who may view 10 of 50 lines, on inboxes of 100,000 and 1,000,000 messages.
//!
//! Run with: `cargo bench --features http --bench inbox_scale`
//! (`EZW_BENCH_SIZES=100000,1000000` sets the inbox sizes in messages, `EZW_BENCH_ITERATIONS`
//! the timed calls per measurement, default 2000.)
//!
//! Each inbox is written through the store's real write path (`record_inbound`, batches of 1,000
//! messages in one write job each): 10 messages per conversation, conversations spread over 50
//! simulator lines, half of the lines with a default assignee. Then, per measurement, warm-up
//! calls and timed calls report p50/p99. In the same run it measures the raw SQLite commit rate
//! on the same disk as a baseline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ezw::model::{LineRights, MessageContent, MessageKind, ProviderKind};
use ezw::ports::{NewInbound, Store as _};
use ezw::providers::sim::SimProvider;
use ezw::service::{InboxFilter, NewLine};
use ezw::storage::sqlite::SqliteStore;
use ezw::{Clock as _, Ezw, LineId, ManualClock, PhoneNumber, Principal, Timestamp};
use serde_json::json;

mod common;

const LINES: usize = 50;
const VISIBLE_LINES: usize = 10;
const PER_CONVERSATION: usize = 10;
const BATCH: usize = 1000;
const PAGE: u32 = 50;
/// How far the deep page is: this many pages of `PAGE` in.
const DEEP_PAGES: usize = 30;

fn bench_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir on the target disk")
}

/// Raw SQLite single-row commits per second with EZW's pragmas (WAL, `synchronous=FULL`).
fn raw_sqlite_commits(seconds: f64) -> f64 {
    let dir = bench_dir();
    let conn = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, at INTEGER NOT NULL);",
    )
    .unwrap();
    let start = Instant::now();
    let mut rows = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        rows += 1;
        conn.execute("INSERT INTO t (k, at) VALUES (?1, ?2)", rusqlite::params![format!("key-{rows}"), rows as i64])
            .unwrap();
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

struct Timings(Vec<Duration>);

impl Timings {
    fn percentile_ms(&mut self, p: f64) -> f64 {
        self.0.sort_unstable();
        let idx = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[idx].as_secs_f64() * 1000.0
    }
}

/// Times `iterations` calls of `f` after a tenth as many warm-up calls.
async fn measure<F, Fut>(iterations: usize, mut f: F) -> Timings
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    for _ in 0..iterations / 10 {
        f().await;
    }
    let mut out = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t0 = Instant::now();
        let n = f().await;
        out.push(t0.elapsed());
        assert!(n > 0, "every measured call returns rows");
    }
    Timings(out)
}

struct Inbox {
    _dir: tempfile::TempDir,
    ezw: Ezw,
    operator: Principal,
    lines: Vec<LineId>,
    write_secs: f64,
}

async fn build_inbox(messages: usize) -> Inbox {
    let dir = bench_dir();
    let store = Arc::new(SqliteStore::open(dir.path().join("ezw.db")).unwrap());
    let clock = ManualClock::new(Timestamp::from_unix_ms(1_767_225_600_000));
    let builder = Ezw::builder(store.clone()).clock(Arc::new(clock.clone()));
    let sim = SimProvider::new(builder.clock_handle(), builder.event_sink());
    let ezw = builder.provider(Arc::new(sim)).signing_key(&[7u8; 32]).build().unwrap();
    let (org, owner) = common::bench_org(&ezw, LINES as u32).await;

    let op_user = ezw::model::User {
        id: ezw::UserId::generate(clock.now().unix_ms()),
        email: "operator@bench.example".into(),
        display_name: "Operator".into(),
        password_hash: None,
        created_at: clock.now(),
    };
    store.insert_user(&op_user).await.unwrap();
    let membership = ezw::model::Membership {
        organization_id: org.id.clone(),
        user_id: op_user.id.clone(),
        role: ezw::model::Role::Operator,
        status: ezw::model::MembershipStatus::Active,
        created_at: clock.now(),
    };
    store.upsert_membership(&membership).await.unwrap();

    let mut lines = Vec::with_capacity(LINES);
    for i in 0..LINES {
        let new = NewLine {
            display_name: format!("Line {i}"),
            phone_number: format!("+1555070{i:04}"),
            provider_kind: ProviderKind::Simulator,
            provider_config: json!({}),
            pacing: None,
        };
        let line = ezw.lines().create_line(&owner, new).await.unwrap();
        if i >= VISIBLE_LINES {
            let hidden = LineRights { can_view: false, can_send: false };
            ezw.lines().set_permission(&owner, &line.id, &op_user.id, hidden).await.unwrap();
        }
        if i % 2 == 0 {
            // The operator on lines they see, the owner on the others.
            let assignee = if i < VISIBLE_LINES { &op_user.id } else { owner.user_id().unwrap() };
            ezw.lines().set_default_assignee(&owner, &line.id, Some(assignee)).await.unwrap();
        }
        lines.push(line);
    }

    // Round r writes message r of every conversation, so activity interleaves across lines.
    let conversations = messages / PER_CONVERSATION;
    let t0 = 1_767_225_600_000_i64;
    let start = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for round in 0..PER_CONVERSATION {
        for c in 0..conversations {
            let line = &lines[c % LINES];
            let seq = round * conversations + c;
            batch.push(NewInbound {
                organization_id: org.id.clone(),
                line_id: line.id.clone(),
                from: PhoneNumber::parse(&format!("+1444{c:07}")).unwrap(),
                profile_name: Some(format!("Customer {c}")),
                provider_message_id: format!("wamid.bench.{seq}"),
                kind: MessageKind::Text,
                content: MessageContent { body: Some(format!("message {round} of {c}")), ..MessageContent::default() },
                received_at: Timestamp::from_unix_ms(t0 + seq as i64),
            });
            if batch.len() == BATCH {
                store.record_inbound(std::mem::take(&mut batch)).await.unwrap();
            }
        }
    }
    if !batch.is_empty() {
        store.record_inbound(batch).await.unwrap();
    }
    let write_secs = start.elapsed().as_secs_f64();
    let operator = ezw.auth().member_principal(&org.id, &op_user.id).await.unwrap();
    Inbox { _dir: dir, ezw, operator, lines: lines.into_iter().map(|l| l.id).collect(), write_secs }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("EZW_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000]);
    let iterations: usize = std::env::var("EZW_BENCH_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "inbox_scale: {LINES} lines, operator sees {VISIBLE_LINES}, {PER_CONVERSATION} messages per conversation, \
         page {PAGE}, {iterations} timed calls each, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let raw = raw_sqlite_commits(3.0);
    println!("baseline  raw SQLite WAL synchronous=FULL: {raw:>8.0} commits/s (1 row/commit)");

    let mut rows = Vec::new();
    runtime.block_on(async {
        for &size in &sizes {
            let inbox = build_inbox(size).await;
            println!(
                "inbox {}: written in {:.1} s ({} messages/s through record_inbound), peak RSS {:.0} MiB",
                common::thousands(size as f64),
                inbox.write_secs,
                common::thousands(size as f64 / inbox.write_secs),
                common::peak_rss_mib()
            );
            let (ezw, op) = (&inbox.ezw, &inbox.operator);
            let filter = |f: InboxFilter| InboxFilter { limit: Some(PAGE), ..f };

            // The cursor DEEP_PAGES pages in.
            let mut cursor = None;
            for _ in 0..DEEP_PAGES {
                let page =
                    ezw.inbox().list(op, filter(InboxFilter { cursor, ..InboxFilter::default() })).await.unwrap();
                cursor = page.next_cursor;
            }
            let deep = cursor.expect("the inbox is deeper than the deep page");
            let first = ezw.inbox().list(op, filter(InboxFilter::default())).await.unwrap();
            let timeline_of = first.items[0].conversation.id.clone();
            let one_line = inbox.lines[3].clone();

            let cases: Vec<(&str, Timings)> = vec![
                (
                    "first page",
                    measure(iterations, || async {
                        ezw.inbox().list(op, filter(InboxFilter::default())).await.unwrap().items.len()
                    })
                    .await,
                ),
                (
                    "deep page (30 pages in)",
                    measure(iterations, || async {
                        let f = InboxFilter { cursor: Some(deep.clone()), ..InboxFilter::default() };
                        ezw.inbox().list(op, filter(f)).await.unwrap().items.len()
                    })
                    .await,
                ),
                (
                    "one line",
                    measure(iterations, || async {
                        let f = InboxFilter { line_id: Some(one_line.clone()), ..InboxFilter::default() };
                        ezw.inbox().list(op, filter(f)).await.unwrap().items.len()
                    })
                    .await,
                ),
                (
                    "unassigned",
                    measure(iterations, || async {
                        let f = InboxFilter { unassigned: true, ..InboxFilter::default() };
                        ezw.inbox().list(op, filter(f)).await.unwrap().items.len()
                    })
                    .await,
                ),
                (
                    "timeline page",
                    measure(iterations, || async {
                        ezw.messages().list(op, &timeline_of, None, PAGE).await.unwrap().items.len()
                    })
                    .await,
                ),
            ];
            for (name, mut timings) in cases {
                rows.push((size, name, timings.percentile_ms(0.50), timings.percentile_ms(0.99)));
            }
        }
    });

    println!();
    println!("| inbox (messages) | read | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (size, name, p50, p99) in rows {
        println!("| {} | {name} | {p50:.3} | {p99:.3} |", common::thousands(size as f64));
    }
}
