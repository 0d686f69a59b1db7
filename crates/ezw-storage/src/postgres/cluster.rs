//! `impl ClusterStore for PgStore`: session leases, taken with one upsert that only succeeds for
//! a free line, an expired lease, or the holder itself.

use async_trait::async_trait;
use ezw_core::ids::LineId;
use ezw_core::model::{Line, ProviderKind};
use ezw_core::ports::{ClusterStore, SessionLease};
use ezw_core::{Error, Result, Timestamp};
use tokio_postgres::Row;

use super::rows::{self, get, LINE_COLUMNS};
use super::{db_err, PgStore};

fn lease(r: &Row) -> Result<SessionLease> {
    Ok(SessionLease {
        line_id: LineId::from_raw(get::<String>(r, 0)?),
        holder: get(r, 1)?,
        lease_until: rows::ts(r, 2)?,
        acquired_at: rows::ts(r, 3)?,
    })
}

const LEASE_COLUMNS: &str = "line_id, holder, lease_until, acquired_at";

#[async_trait]
impl ClusterStore for PgStore {
    async fn acquire_session_lease(
        &self,
        line: &LineId,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<SessionLease> {
        let conn = self.db.conn().await?;
        // One statement: the upsert's row lock orders concurrent nodes; the WHERE keeps a live
        // lease of another node. When it does, nothing is returned and the lease is read back.
        let stmt = conn
            .prepare_cached(&format!(
                "INSERT INTO session_leases AS s ({LEASE_COLUMNS}) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (line_id) DO UPDATE SET
                     acquired_at = CASE WHEN s.holder = EXCLUDED.holder THEN s.acquired_at ELSE EXCLUDED.acquired_at END,
                     holder = EXCLUDED.holder,
                     lease_until = EXCLUDED.lease_until
                 WHERE s.holder = EXCLUDED.holder OR s.lease_until <= $4
                 RETURNING {LEASE_COLUMNS}"
            ))
            .await
            .map_err(db_err)?;
        if let Some(row) =
            conn.query_opt(&stmt, &[&line.as_str(), &holder, &until.unix_ms(), &now.unix_ms()]).await.map_err(db_err)?
        {
            return lease(&row);
        }
        // Read back on the same connection (a second one could wait on a full pool).
        let stmt = conn
            .prepare_cached(&format!("SELECT {LEASE_COLUMNS} FROM session_leases WHERE line_id = $1"))
            .await
            .map_err(db_err)?;
        let row = conn.query_opt(&stmt, &[&line.as_str()]).await.map_err(db_err)?;
        row.as_ref().map(lease).transpose()?.ok_or_else(|| Error::internal("a session lease vanished while held"))
    }

    async fn release_session_lease(&self, line: &LineId, holder: &str) -> Result<bool> {
        let conn = self.db.conn().await?;
        let stmt = conn
            .prepare_cached("DELETE FROM session_leases WHERE line_id = $1 AND holder = $2")
            .await
            .map_err(db_err)?;
        Ok(conn.execute(&stmt, &[&line.as_str(), &holder]).await.map_err(db_err)? > 0)
    }

    async fn get_session_lease(&self, line: &LineId) -> Result<Option<SessionLease>> {
        let conn = self.db.conn().await?;
        let stmt = conn
            .prepare_cached(&format!("SELECT {LEASE_COLUMNS} FROM session_leases WHERE line_id = $1"))
            .await
            .map_err(db_err)?;
        conn.query_opt(&stmt, &[&line.as_str()]).await.map_err(db_err)?.as_ref().map(lease).transpose()
    }

    async fn list_session_lines(&self, kinds: &[ProviderKind]) -> Result<Vec<Line>> {
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let conn = self.db.conn().await?;
        let stmt = conn
            .prepare_cached(&format!(
                "SELECT {LINE_COLUMNS} FROM lines l
                 WHERE l.provider_kind = ANY($1) AND l.lifecycle_state <> 'archived' ORDER BY l.created_at, l.id"
            ))
            .await
            .map_err(db_err)?;
        conn.query(&stmt, &[&kinds]).await.map_err(db_err)?.iter().map(rows::line).collect()
    }
}
