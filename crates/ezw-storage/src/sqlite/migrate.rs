//! Versioned migrations embedded in the binary.

use ezw_core::{Error, Result};
use rusqlite::Connection;

use super::db_err;

/// Every migration, in order: (version, name, SQL).
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/0001_init.sql")),
    (2, "attachments", include_str!("migrations/0002_attachments.sql")),
    (3, "line_pacing", include_str!("migrations/0003_line_pacing.sql")),
    (4, "outbox_dispatch", include_str!("migrations/0004_outbox_dispatch.sql")),
    (5, "webhooks", include_str!("migrations/0005_webhooks.sql")),
    (6, "access", include_str!("migrations/0006_access.sql")),
    (7, "workspace", include_str!("migrations/0007_workspace.sql")),
    (8, "cluster", include_str!("migrations/0008_cluster.sql")),
    (9, "sessions", include_str!("migrations/0009_sessions.sql")),
];

/// Applies the migrations the database does not have yet, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS ezw_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .map_err(db_err)?;
    let current: i64 =
        conn.query_row("SELECT COALESCE(MAX(version), 0) FROM ezw_migrations", [], |r| r.get(0)).map_err(db_err)?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(Error::internal(format!(
            "the database schema (version {current}) is newer than this build knows ({newest}); upgrade EZW"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute_batch(sql).map_err(db_err)?;
        tx.execute(
            "INSERT INTO ezw_migrations (version, name, applied_at) VALUES (?1, ?2, CAST(strftime('%s','now') AS INTEGER) * 1000)",
            rusqlite::params![version, name],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(version, name, "applied migration");
    }
    Ok(())
}
