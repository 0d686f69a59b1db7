//! WAL checkpoints on a background connection, so the writer's commits never pay for them.
//! A passive checkpoint runs every 250 ms when the WAL has grown; when the WAL passes 64 MiB a
//! blocking (`RESTART`) checkpoint keeps it bounded under sustained write load.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

const INTERVAL: Duration = Duration::from_millis(250);
/// WAL size (in 4 KiB pages) above which a RESTART checkpoint is forced.
const RESTART_PAGES: i64 = 16_384;

pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(conn: Connection) -> Self {
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ezw-sqlite-ckpt".into())
            .spawn(move || loop {
                match rx.recv_timeout(INTERVAL) {
                    Err(mpsc::RecvTimeoutError::Timeout) => checkpoint(&conn, "PASSIVE"),
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                        checkpoint(&conn, "TRUNCATE");
                        return;
                    }
                }
            })
            .expect("spawning the SQLite checkpoint thread");
        Self { stop: Some(stop), thread: Some(thread) }
    }
}

fn checkpoint(conn: &Connection, mode: &str) {
    let result = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    match result {
        // (busy, wal pages, checkpointed pages)
        Ok((_, wal_pages, _)) if mode == "PASSIVE" && wal_pages > RESTART_PAGES => checkpoint(conn, "RESTART"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, mode, "WAL checkpoint failed"),
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
