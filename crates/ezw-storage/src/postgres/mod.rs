//! The PostgreSQL backend, for several nodes on one database: a connection pool, migrations
//! embedded in the binary (applied under an advisory lock, so nodes may start together), queue
//! claims with `FOR UPDATE SKIP LOCKED` and leases, and `LISTEN/NOTIFY` for cross-node wake-ups
//! and live hints ([`PgStore::wake_source`], [`PgStore::live_hub`]).
//!
//! # Transactions
//!
//! Each write runs in one transaction. Most run `SERIALIZABLE`, so they keep the semantics the
//! embedded backend gets from its single writer; a serialization failure or deadlock is retried
//! with a fresh transaction ([`Db::retry`]). The queue paths (enqueue, claim, dispatch, finish,
//! status reports, inbound messages, webhook deliveries) run `READ COMMITTED` and take row locks
//! explicitly: they are where many nodes meet, and `SKIP LOCKED` claims need it.

mod access;
mod audit;
mod billing;
mod cluster;
mod events;
mod identity;
mod inbox;
mod lines;
mod listen;
mod live;
mod media;
mod migrate;
mod outbox;
mod rows;
mod session;
mod store;
mod webhooks;
mod workspace;

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use ezw_core::{Error, ErrorKind, Result};
use tokio_postgres::error::SqlState;
use tokio_postgres::IsolationLevel;

pub use listen::PgWakeSource;
pub use live::PgLiveHub;

/// Options for connecting a PostgreSQL store.
#[derive(Clone)]
#[must_use]
pub struct PgOptions {
    url: String,
    schema: String,
    pool_size: usize,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PgOptions")
            .field("url", &"[redacted]")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl PgOptions {
    /// A store at `url` (`postgres://user:password@host:port/database`, or the key=value form).
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), schema: "public".to_owned(), pool_size: 16 }
    }

    /// The schema EZW's tables live in (default `public`; created if missing). Several
    /// deployments, or test cases, can share one database in different schemas.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Connections in the pool (default 16, at least 2).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(2);
        self
    }
}

/// The PostgreSQL store. Cheap to share as `Arc<dyn Store>`; every node of a deployment opens
/// its own on the same database.
pub struct PgStore {
    pub(crate) db: Db,
    listener: listen::Listener,
    _notifier_task: AbortOnDrop,
}

/// Stops a background task when its owner goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("schema", &self.db.schema).finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, creates the schema if missing, applies pending migrations, and starts the
    /// notification listener.
    ///
    /// # Errors
    /// `storage_unavailable` when the database cannot be reached; `invalid_database_url` for a
    /// URL that does not parse; migration errors.
    pub async fn connect(options: PgOptions) -> Result<Self> {
        if !valid_identifier(&options.schema) {
            return Err(Error::invalid(
                "invalid_schema",
                "the schema name must be lower-case letters, digits and underscores, starting with a letter",
            ));
        }
        let mut config: tokio_postgres::Config = options
            .url
            .parse()
            .map_err(|e| Error::invalid("invalid_database_url", format!("the database URL does not parse: {e}")))?;
        config.options(format!("-c search_path={}", options.schema));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("ezw");
        let manager = Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::internal(format!("building the connection pool: {e}")))?;
        let (notifier, notifier_task) = listen::Notifier::start(pool.clone(), &options.schema);
        // Stopped on every early return below, too.
        let notifier_task = AbortOnDrop(notifier_task);
        let db = Db { notifier, pool, schema: options.schema.clone() };
        migrate::migrate(&db).await?;
        let listener = listen::Listener::start(config, &options.schema).await?;
        Ok(Self { db, listener, _notifier_task: notifier_task })
    }

    /// Cross-node wake-ups: fires when any node (this one included) queues outbox work,
    /// webhook deliveries or a QR line's pairing request. Hand it to `EzwBuilder::wake_source`.
    #[must_use]
    pub fn wake_source(&self) -> PgWakeSource {
        self.listener.wake_source()
    }

    /// A live hub shared by every node on this database: a hint published on one node reaches
    /// the SSE clients of all, with ids from one database-wide sequence, so a client may
    /// resume on another node. Keeps up to `capacity` hints of the last `window` (on `clock`)
    /// for resuming. Hand it to `EzwBuilder::live_hub`.
    ///
    /// # Errors
    /// Storage errors reading the deployment's epoch and the hint sequence.
    pub async fn live_hub(
        &self,
        capacity: usize,
        window: Duration,
        clock: std::sync::Arc<dyn ezw_core::Clock>,
    ) -> Result<std::sync::Arc<PgLiveHub>> {
        PgLiveHub::start(self.db.clone(), &self.listener, capacity, window, clock).await
    }

    /// The schema this store uses.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.db.schema
    }
}

/// Whether `s` is safe to splice into SQL as an identifier.
fn valid_identifier(s: &str) -> bool {
    s.len() <= 48
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The pool and what every query needs.
#[derive(Clone)]
pub(crate) struct Db {
    pool: Pool,
    pub(crate) schema: String,
    /// Tells the other nodes (and this one) about new work after commits.
    pub(crate) notifier: std::sync::Arc<listen::Notifier>,
}

/// A pooled connection.
pub(crate) type Conn = deadpool_postgres::Object;
/// A transaction on a pooled connection.
pub(crate) type Tx<'a> = deadpool_postgres::Transaction<'a>;

impl Db {
    /// A connection from the pool.
    pub(crate) async fn conn(&self) -> Result<Conn> {
        self.pool.get().await.map_err(|e| {
            let mut err = Error::new(ErrorKind::Temporary, "storage_unavailable", "the database is unavailable");
            if let deadpool_postgres::PoolError::Backend(b) = e {
                err = err.with_source(b);
            }
            err
        })
    }

    /// Starts a `SERIALIZABLE` transaction (retry the whole operation on failure: [`Db::retry`]).
    pub(crate) async fn serializable(conn: &mut Conn) -> Result<Tx<'_>> {
        conn.build_transaction().isolation_level(IsolationLevel::Serializable).start().await.map_err(db_err)
    }

    /// Starts a `READ COMMITTED` transaction; the caller locks the rows it reads to write.
    pub(crate) async fn read_committed(conn: &mut Conn) -> Result<Tx<'_>> {
        conn.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start().await.map_err(db_err)
    }

    /// Runs `op` (one transaction) until it does not fail with a serialization failure or a
    /// deadlock, up to 30 times with a short randomized pause. A success wakes the webhook
    /// dispatchers of every node (coalesced; see [`listen::Notifier`]).
    pub(crate) async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0u32;
        loop {
            match op().await {
                // Most writes can queue webhook deliveries (an event in the same transaction).
                Ok(v) => {
                    self.notifier.wake(ezw_core::ports::Wake::Webhooks);
                    return Ok(v);
                }
                Err(e) if e.code() == CONTENTION && attempt < 30 => {
                    attempt += 1;
                    let pause = rand::random_range(1..=2 * u64::from(attempt.min(25)));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                other => return other,
            }
        }
    }
}

/// The error code of a serialization failure or deadlock (retried by [`Db::retry`]).
pub(crate) const CONTENTION: &str = "storage_contention";

/// Maps PostgreSQL errors: unique violations are conflicts, serialization failures and
/// deadlocks contention (retried), lost connections temporary.
pub(crate) fn db_err(e: tokio_postgres::Error) -> Error {
    let (kind, code) = match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::FOREIGN_KEY_VIOLATION => {
            (ErrorKind::Conflict, "conflict")
        }
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED => {
            (ErrorKind::Temporary, CONTENTION)
        }
        Some(c) if *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CANNOT_CONNECT_NOW => {
            (ErrorKind::Temporary, "storage_unavailable")
        }
        None if e.is_closed() => (ErrorKind::Temporary, "storage_unavailable"),
        _ => (ErrorKind::Internal, "storage_error"),
    };
    Error::new(kind, code, "storage operation failed").with_source(e)
}

/// Whether an error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// A value read from the database that the domain does not know (a corrupt row).
pub(crate) fn bad_value(what: &str, value: &str) -> Error {
    Error::internal(format!("unknown {what} {value:?} in the database"))
}

/// An unsigned count from a BIGINT column.
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
