//! The single writer: one thread owns the write connection and runs every write job. Jobs that
//! queue up while a transaction commits are batched into the next transaction (group commit),
//! each inside its own savepoint so one failing job does not undo the others. Callers get their
//! result only after the commit is durable.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use ezw_core::{Error, Result};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

/// Most jobs in one transaction.
const MAX_BATCH: usize = 512;

trait WriteJob: Send {
    /// Runs the job inside the open transaction; returns whether it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Delivers the result once the transaction's fate is known.
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

struct Job<T, F> {
    f: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else { return false };
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|_| Err(Error::internal("a storage write panicked")));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let result = match (committed, self.result) {
            (Ok(()), Some(r)) => r,
            (Ok(()), None) => Err(Error::internal("write job did not run")),
            (Err(e), Some(Err(job_err))) => {
                tracing::debug!(commit_error = %e, "commit failed after a job error");
                Err(job_err)
            }
            (Err(e), _) => Err(Error::temporary(format!("storage commit failed: {e}"))),
        };
        let _ = self.reply.send(result);
    }
}

/// Counters of the writer thread, for metrics and benchmarks.
#[derive(Debug, Default)]
pub(crate) struct WriterCounters {
    transactions: AtomicU64,
    jobs: AtomicU64,
    busy_ns: AtomicU64,
    commit_ns: AtomicU64,
}

/// A snapshot of the writer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed (or attempted).
    pub transactions: u64,
    /// Write jobs run.
    pub jobs: u64,
    /// Time the writer thread spent working (running jobs and committing), in nanoseconds.
    pub busy_ns: u64,
    /// Of which committing (the durable fsync), in nanoseconds.
    pub commit_ns: u64,
}

pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Box<dyn WriteJob>>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<WriterCounters>,
}

impl Writer {
    pub(crate) fn start(conn: Connection) -> Self {
        let (tx, rx) = mpsc::channel::<Box<dyn WriteJob>>(8192);
        let counters = Arc::new(WriterCounters::default());
        let thread_counters = counters.clone();
        let thread = std::thread::Builder::new()
            .name("ezw-sqlite-writer".into())
            .spawn(move || writer_loop(&conn, rx, &thread_counters))
            .expect("spawning the SQLite writer thread");
        Self { tx: Some(tx), thread: Some(thread), counters }
    }

    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats {
            transactions: self.counters.transactions.load(Ordering::Relaxed),
            jobs: self.counters.jobs.load(Ordering::Relaxed),
            busy_ns: self.counters.busy_ns.load(Ordering::Relaxed),
            commit_ns: self.counters.commit_ns.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` in the next group-committed transaction; resolves after the commit.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job { f: Some(f), result: None, reply });
        let tx = self.tx.as_ref().ok_or_else(|| Error::temporary("the storage writer has stopped"))?;
        tx.send(job).await.map_err(|_| Error::temporary("the storage writer has stopped"))?;
        rx.await.map_err(|_| Error::temporary("the storage writer stopped before answering"))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the thread drain what is queued, commit, and exit.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Batches smaller than this wait [`COMMIT_DELAY`] for company.
const COMMIT_DELAY_BELOW: usize = 16;
const COMMIT_DELAY: std::time::Duration = std::time::Duration::from_micros(200);

fn drain(rx: &mut mpsc::Receiver<Box<dyn WriteJob>>, batch: &mut Vec<Box<dyn WriteJob>>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn writer_loop(conn: &Connection, mut rx: mpsc::Receiver<Box<dyn WriteJob>>, counters: &WriterCounters) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        let started = Instant::now();
        batch.push(first);
        drain(&mut rx, &mut batch);
        // Commit delay (like PostgreSQL's commit_delay): when jobs are arriving but the batch is
        // small, wait a moment so one fsync covers more of them.
        if batch.len() > 1 && batch.len() < COMMIT_DELAY_BELOW {
            std::thread::sleep(COMMIT_DELAY);
            drain(&mut rx, &mut batch);
        }
        if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
            let msg = e.to_string();
            for job in batch.drain(..) {
                job.finish(Err(msg.clone()));
            }
            continue;
        }
        for job in &mut batch {
            if exec(conn, "SAVEPOINT job").is_err() {
                continue;
            }
            if job.run(conn) {
                let _ = exec(conn, "RELEASE job");
            } else {
                let _ = exec(conn, "ROLLBACK TO job");
                let _ = exec(conn, "RELEASE job");
            }
        }
        let commit_started = Instant::now();
        let committed = exec(conn, "COMMIT").map_err(|e| {
            let _ = exec(conn, "ROLLBACK");
            e.to_string()
        });
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        counters.commit_ns.fetch_add(nanos(commit_started.elapsed()), Ordering::Relaxed);
        counters.busy_ns.fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
        counters.transactions.fetch_add(1, Ordering::Relaxed);
        counters.jobs.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Err(e) = &committed {
            tracing::error!(error = %e, jobs = batch.len(), "SQLite commit failed");
        }
        for job in batch.drain(..) {
            job.finish(committed.clone());
        }
    }
}
