//! `impl ClusterStore for SqliteStore`: session leases. One SQLite file serves one node, but
//! several runtimes in one process (or a restarted node) still take turns by lease.

use async_trait::async_trait;
use ezw_core::ids::LineId;
use ezw_core::model::{Line, ProviderKind};
use ezw_core::ports::{ClusterStore, SessionLease};
use ezw_core::{Result, Timestamp};
use rusqlite::{params, Connection};

use super::rows::{self, LINE_COLUMNS};
use super::{db_err, optional, SqliteStore};

fn lease_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionLease> {
    Ok(SessionLease {
        line_id: LineId::from_raw(r.get::<_, String>(0)?),
        holder: r.get(1)?,
        lease_until: Timestamp::from_unix_ms(r.get(2)?),
        acquired_at: Timestamp::from_unix_ms(r.get(3)?),
    })
}

fn get_lease(c: &Connection, line: &LineId) -> Result<Option<SessionLease>> {
    optional(
        c.prepare_cached("SELECT line_id, holder, lease_until, acquired_at FROM session_leases WHERE line_id = ?1")
            .and_then(|mut s| s.query_row([line.as_str()], lease_row)),
    )
}

fn acquire(c: &Connection, line: &LineId, holder: &str, now: Timestamp, until: Timestamp) -> Result<SessionLease> {
    // Take it when free, expired, or ours; a new holder's acquired_at starts now.
    c.prepare_cached(
        "INSERT INTO session_leases (line_id, holder, lease_until, acquired_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (line_id) DO UPDATE SET
             acquired_at = CASE WHEN holder = excluded.holder THEN acquired_at ELSE excluded.acquired_at END,
             holder = excluded.holder,
             lease_until = excluded.lease_until
         WHERE holder = excluded.holder OR lease_until <= ?4",
    )
    .and_then(|mut s| s.execute(params![line.as_str(), holder, until.unix_ms(), now.unix_ms()]))
    .map_err(db_err)?;
    get_lease(c, line)?.ok_or_else(|| ezw_core::Error::internal("session lease vanished inside its own write"))
}

#[async_trait]
impl ClusterStore for SqliteStore {
    async fn acquire_session_lease(
        &self,
        line: &LineId,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<SessionLease> {
        let (line, holder) = (line.clone(), holder.to_owned());
        self.writer.write(move |c| acquire(c, &line, &holder, now, until)).await
    }

    async fn release_session_lease(&self, line: &LineId, holder: &str) -> Result<bool> {
        let (line, holder) = (line.clone(), holder.to_owned());
        self.writer
            .write(move |c| {
                c.prepare_cached("DELETE FROM session_leases WHERE line_id = ?1 AND holder = ?2")
                    .and_then(|mut s| s.execute([line.as_str(), holder.as_str()]))
                    .map(|n| n > 0)
                    .map_err(db_err)
            })
            .await
    }

    async fn get_session_lease(&self, line: &LineId) -> Result<Option<SessionLease>> {
        let line = line.clone();
        self.readers.lookup(move |c| get_lease(c, &line)).await
    }

    async fn list_session_lines(&self, kinds: &[ProviderKind]) -> Result<Vec<Line>> {
        let kinds: Vec<String> = kinds.iter().map(|k| k.as_str().to_owned()).collect();
        self.readers
            .read(move |c| {
                let mut lines = Vec::new();
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {LINE_COLUMNS} FROM lines l
                         WHERE l.provider_kind = ?1 AND l.lifecycle_state <> 'archived' ORDER BY l.created_at, l.id"
                    ))
                    .map_err(db_err)?;
                for kind in &kinds {
                    let found = stmt.query_map([kind.as_str()], rows::line).map_err(db_err)?;
                    for line in found {
                        lines.push(line.map_err(db_err)?);
                    }
                }
                Ok(lines)
            })
            .await
    }
}
