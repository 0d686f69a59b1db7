//! The PostgreSQL outbox queue: enqueue jobs/s, and claim -> dispatch -> complete jobs/s with
//! several concurrent workers (`FOR UPDATE SKIP LOCKED` claims of 512 jobs), beside a raw batched
//! INSERT rate measured in the same run on the same database. `synchronous_commit` stays on
//! (it is printed), so every figure includes a durable commit per transaction.
//!
//! Run with: `EZW_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench --features http --bench pg_queue`
//! (`EZW_BENCH_JOBS` sets the job count, default 50000; `EZW_BENCH_WORKERS` the claim loops,
//! default 2; `EZW_BENCH_CONVERSATIONS` how many conversations the jobs are spread over, default
//! 2000, i.e. 25 queued messages per conversation; as many as jobs is the campaign shape, one
//! message per recipient; `EZW_BENCH_BATCH` the claim size, default 512.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ezw::core::ids::{LineId, MessageId, OrganizationId, UserId};
use ezw::model::{BillingState, LifecycleState, Line, MessageContent, MessageKind, Organization, ProviderKind, User};
use ezw::ports::{JobDisposition, JobResult, NewOutbound, SendTarget, Store};
use ezw::storage::postgres::{PgOptions, PgStore};
use ezw::{PhoneNumber, Timestamp};

mod common;

/// Conversations the jobs are spread over by default (one head per conversation can be claimed
/// at once; finishing a job promotes the conversation's next one).
const CONVERSATIONS: usize = 2_000;
const CLAIM_BATCH: usize = 512;
const ENQUEUE_CLIENTS: usize = 32;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn psql(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connecting to PostgreSQL");
    tokio::spawn(conn);
    client
}

/// Raw batched INSERT: `batches` transactions of `batch` rows each (one multi-row INSERT from
/// arrays), the way the queue writes at best. Rows/s.
async fn raw_insert_rate(url: &str, schema: &str, rows: usize, batch: usize, clients: usize) -> f64 {
    let admin = psql(url).await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE {schema}.raw_jobs (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                                            conversation TEXT NOT NULL, body TEXT NOT NULL, available_at BIGINT NOT NULL)"
        ))
        .await
        .expect("raw table");
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, schema, next) = (url.to_owned(), schema.to_owned(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = psql(&url).await;
            let stmt = client
                .prepare(&format!(
                    "INSERT INTO {schema}.raw_jobs (id, conversation, body, available_at)
                     SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[])"
                ))
                .await
                .expect("prepare");
            loop {
                let first = next.fetch_add(batch as u64, Ordering::Relaxed) as usize;
                if first >= rows {
                    return;
                }
                let n = batch.min(rows - first);
                let ids: Vec<String> = (first..first + n).map(|i| format!("raw{i}")).collect();
                let conv: Vec<String> = (first..first + n).map(|i| format!("c{}", i % CONVERSATIONS)).collect();
                let body: Vec<String> = vec!["{\"body\":\"hello\"}".to_owned(); n];
                let at: Vec<i64> = vec![0; n];
                let tx = client.transaction().await.expect("begin");
                tx.execute(&stmt, &[&ids, &conv, &body, &at]).await.expect("insert");
                tx.commit().await.expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await.expect("raw insert task");
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

async fn setup(store: &PgStore) -> Line {
    let at = Timestamp::from_unix_ms(1_700_000_000_000);
    let org = Organization {
        id: OrganizationId::generate(at.unix_ms()),
        name: "Bench".into(),
        slug: "bench".into(),
        billing_state: BillingState::Active,
        line_slots: 10,
        plan: ezw::model::DEFAULT_PLAN.into(),
        created_at: at,
    };
    let owner = User {
        id: UserId::generate(at.unix_ms()),
        email: "bench@bench.example".into(),
        display_name: "Bench".into(),
        password_hash: None,
        created_at: at,
    };
    store.create_organization(&org, &owner, true).await.expect("organization");
    let line = Line {
        id: LineId::generate(at.unix_ms()),
        organization_id: org.id.clone(),
        display_name: "Bench".into(),
        phone_number: PhoneNumber::parse("+15550100000").expect("phone"),
        provider_kind: ProviderKind::Simulator,
        provider_config: serde_json::json!({}),
        lifecycle_state: LifecycleState::Connected,
        state_reason: None,
        default_assignee_id: None,
        pacing: None,
        created_at: at,
        updated_at: at,
    };
    store.insert_line(&line).await.expect("line");
    line
}

fn send(line: &Line, i: usize, conversations: usize, at: Timestamp) -> NewOutbound {
    NewOutbound {
        organization_id: line.organization_id.clone(),
        line_id: line.id.clone(),
        target: SendTarget::Phone(PhoneNumber::parse(&format!("+1555{:07}", i % conversations)).expect("phone")),
        message_id: MessageId::generate(at.unix_ms()),
        kind: MessageKind::Text,
        content: MessageContent { body: Some(format!("bench {i}")), ..MessageContent::default() },
        sent_by_user_id: None,
        idempotency: None,
        created_at: at,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::var("EZW_TEST_POSTGRES_URL").expect("set EZW_TEST_POSTGRES_URL (postgres://...)");
    let jobs = env_usize("EZW_BENCH_JOBS", 50_000);
    let workers = env_usize("EZW_BENCH_WORKERS", 2);
    let conversations = env_usize("EZW_BENCH_CONVERSATIONS", CONVERSATIONS).clamp(1, 9_999_999);
    let batch = u32::try_from(env_usize("EZW_BENCH_BATCH", CLAIM_BATCH).clamp(1, 10_000)).unwrap_or(512);
    let schema = format!("ezw_bench_{}", std::process::id());
    let admin = psql(&url).await;
    let sync: String = admin.query_one("SHOW synchronous_commit", &[]).await.expect("show").get(0);
    let version: String = admin.query_one("SHOW server_version", &[]).await.expect("version").get(0);
    println!(
        "pg_queue: PostgreSQL {version}, synchronous_commit = {sync}, {jobs} jobs over {conversations} conversations, \
         {workers} claim workers"
    );

    let store = Arc::new(
        PgStore::connect(PgOptions::new(url.clone()).schema(schema.clone()).pool_size(40)).await.expect("store"),
    );
    let raw = raw_insert_rate(&url, &schema, jobs, 256, 4).await;
    println!(
        "baseline: raw batched INSERT (256 rows per transaction, 4 connections): {} rows/s",
        common::thousands(raw)
    );

    // Enqueue: one transaction per send (idempotency, contact, conversation, message, job).
    let line = setup(&store).await;
    let at = Timestamp::from_unix_ms(1_700_000_000_000);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..ENQUEUE_CLIENTS {
        let (store, line, next) = (store.clone(), line.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= jobs {
                    return latencies;
                }
                let t = Instant::now();
                store.enqueue_outbound(send(&line, i, conversations, at)).await.expect("enqueue");
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("enqueue task"));
    }
    let enqueue = jobs as f64 / start.elapsed().as_secs_f64();
    latencies.sort();
    println!(
        "enqueue: {} jobs/s ({ENQUEUE_CLIENTS} concurrent senders, one transaction each; p50 {:.2} ms, p99 {:.2} ms)",
        common::thousands(enqueue),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    // Claim -> dispatch -> complete, `workers` loops at once.
    let done = Arc::new(AtomicU64::new(0));
    // Time spent in each call, summed over the workers (ns).
    let phases: Arc<[AtomicU64; 3]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (store, done, phases) = (store.clone(), done.clone(), phases.clone());
        tasks.push(tokio::spawn(async move {
            let mut rounds = Vec::new();
            let now = Timestamp::from_unix_ms(1_800_000_000_000);
            let mut empty = 0;
            while done.load(Ordering::Relaxed) < jobs as u64 {
                let t = Instant::now();
                let claimed = store.claim_outbox(now, Duration::from_secs(60), batch).await.expect("claim");
                if claimed.is_empty() {
                    empty += 1;
                    if empty > 2000 {
                        panic!("the queue ran dry with {} of {jobs} done", done.load(Ordering::Relaxed));
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let claimed_at = Instant::now();
                phases[0].fetch_add((claimed_at - t).as_nanos() as u64, Ordering::Relaxed);
                let leases = claimed.iter().map(|j| (j.message.id.clone(), j.lease_id.clone())).collect();
                let held = store.mark_dispatched(leases, now).await.expect("dispatch");
                let dispatched_at = Instant::now();
                phases[1].fetch_add((dispatched_at - claimed_at).as_nanos() as u64, Ordering::Relaxed);
                let results: Vec<JobResult> = claimed
                    .iter()
                    .zip(held)
                    .filter(|(_, held)| *held)
                    .map(|(j, _)| JobResult {
                        message_id: j.message.id.clone(),
                        lease_id: j.lease_id.clone(),
                        attempt: None,
                        disposition: JobDisposition::Accepted {
                            provider_message_id: format!("p-{}", j.message.id.as_str()),
                            at: now,
                        },
                    })
                    .collect();
                let n = results.len() as u64;
                store.finish_outbox(results).await.expect("finish");
                phases[2].fetch_add(dispatched_at.elapsed().as_nanos() as u64, Ordering::Relaxed);
                done.fetch_add(n, Ordering::Relaxed);
                rounds.push(t.elapsed());
            }
            rounds
        }));
    }
    let mut rounds = Vec::new();
    for t in tasks {
        rounds.extend(t.await.expect("worker task"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let completed = done.load(Ordering::Relaxed);
    rounds.sort();
    let remaining = store.outbox_depth().await.expect("depth");
    println!(
        "claim -> complete: {} jobs/s ({completed} jobs in {elapsed:.2} s, {workers} workers, batches of up to \
         {batch}; round p50 {:.1} ms, p99 {:.1} ms; {remaining} left)",
        common::thousands(completed as f64 / elapsed),
        percentile(&rounds, 0.5),
        percentile(&rounds, 0.99)
    );
    let per_job = |i: usize| phases[i].load(Ordering::Relaxed) as f64 / 1000.0 / completed.max(1) as f64;
    println!(
        "  worker time per job: claim {:.1} us, mark dispatched {:.1} us, finish {:.1} us (summed over workers)",
        per_job(0),
        per_job(1),
        per_job(2)
    );
    println!("peak RSS of the bench process: {:.1} MiB", common::peak_rss_mib());
    drop(store);
    admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("dropping the bench schema");
}
