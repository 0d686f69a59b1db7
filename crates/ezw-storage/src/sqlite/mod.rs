//! The embedded SQLite backend: WAL, one writer thread with group commit and durable
//! (`synchronous=FULL`) commits, a small pool of readers, migrations embedded in the binary.

mod access;
mod checkpoint;
mod cluster;
mod identity;
mod inbox;
mod lines;
mod media;
mod migrate;
mod outbox;
mod pool;
mod rows;
mod session;
mod store;
mod webhooks;
mod workspace;
mod writer;

use std::path::{Path, PathBuf};

use ezw_core::{Error, ErrorKind, Result};
use rusqlite::{Connection, OpenFlags};

use pool::Readers;
use writer::Writer;
pub use writer::WriterStats;

/// Options for opening a SQLite store.
#[derive(Debug, Clone)]
#[must_use]
pub struct SqliteOptions {
    path: PathBuf,
    readers: usize,
}

impl SqliteOptions {
    /// A store in the database file at `path` (created if missing).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), readers: 4 }
    }

    /// Read connections in the pool (default 4, at least 1).
    pub fn readers(mut self, n: usize) -> Self {
        self.readers = n.max(1);
        self
    }
}

/// The SQLite store. Cheap to share as `Arc<dyn Store>`.
pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
    path: PathBuf,
    _checkpointer: checkpoint::Checkpointer,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (and migrates) the database file at `path` with default options.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with(SqliteOptions::new(path))
    }

    /// Opens (and migrates) a database with `options`.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub fn open_with(options: SqliteOptions) -> Result<Self> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())).with_source(e))?;
        }
        let mut conn = open_connection(&options.path, false)?;
        migrate::migrate(&mut conn)?;
        // Checkpoints run on their own connection, off the writer's commit path.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;").map_err(db_err)?;
        let readers = Readers::open(options.path.clone(), options.readers)?;
        let checkpointer = checkpoint::Checkpointer::start(open_connection(&options.path, false)?);
        Ok(Self { writer: Writer::start(conn), readers, path: options.path, _checkpointer: checkpointer })
    }

    /// Counters of the writer thread (transactions, jobs, busy time).
    #[must_use]
    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub(crate) fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    // temp_store=MEMORY keeps savepoint journals off disk; a 32 MiB page cache and 256 MiB of
    // mmap keep hot pages out of read syscalls.
    let pragmas = if read_only {
        "PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -32768; PRAGMA mmap_size = 268435456;"
    } else {
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -32768; PRAGMA mmap_size = 268435456;"
    };
    conn.execute_batch(pragmas).map_err(db_err)?;
    Ok(conn)
}

/// Maps SQLite errors: busy/locked is temporary, a unique violation a conflict.
pub(crate) fn db_err(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    let kind = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ErrorKind::Temporary,
        Some(ErrorCode::ConstraintViolation) => ErrorKind::Conflict,
        _ => ErrorKind::Internal,
    };
    let code = match kind {
        ErrorKind::Temporary => "storage_busy",
        ErrorKind::Conflict => "conflict",
        _ => "storage_error",
    };
    Error::new(kind, code, "storage operation failed").with_source(e)
}

/// `Option` of a single row.
pub(crate) fn optional<T>(r: rusqlite::Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(db_err(e)),
    }
}

/// Whether an error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}
