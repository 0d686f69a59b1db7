//! A small pool of read-only connections. WAL lets readers run beside the writer and see
//! every committed transaction.

use std::path::PathBuf;
use std::sync::Mutex;

use ezw_core::{Error, Result};
use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::open_connection;

pub(crate) struct Readers {
    path: PathBuf,
    conns: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    pub(crate) fn open(path: PathBuf, size: usize) -> Result<Self> {
        let conns = (0..size).map(|_| open_connection(&path, true)).collect::<Result<Vec<_>>>()?;
        Ok(Self { path, conns: Mutex::new(conns), permits: Semaphore::new(size) })
    }

    /// Runs a point read (a lookup by key, microseconds) inline on a pooled connection, saving
    /// two thread hand-offs; falls back to [`Readers::read`] when every connection is busy.
    pub(crate) async fn lookup<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.permits.try_acquire().ok().and_then(|permit| {
            let conn = self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
            conn.map(|c| (permit, c))
        });
        match conn {
            Some((_permit, conn)) => {
                let r = f(&conn);
                self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(conn);
                r
            }
            None => self.read(f).await,
        }
    }

    /// Runs `f` on a pooled read connection on the blocking thread pool.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| Error::temporary("reader pool closed"))?;
        let conn = self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let conn = match conn {
            Some(c) => c,
            None => open_connection(&self.path, true)?,
        };
        let joined = tokio::task::spawn_blocking(move || {
            let r = f(&conn);
            (conn, r)
        })
        .await;
        match joined {
            Ok((conn, r)) => {
                self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(conn);
                r
            }
            // The connection went down with the panicking task; a fresh one is opened next time.
            Err(e) => Err(Error::internal(format!("a storage read failed: {e}"))),
        }
    }
}
