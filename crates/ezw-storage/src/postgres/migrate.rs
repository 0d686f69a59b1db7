//! Versioned migrations embedded in the binary, applied under an advisory lock so that nodes
//! starting together migrate once.

use ezw_core::{Error, Result};

use super::{db_err, Db};

/// Every migration, in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/0001_init.sql")),
    (2, "sessions", include_str!("migrations/0002_sessions.sql")),
];

/// Creates the schema if missing and applies the migrations it does not have yet, each in its
/// own transaction, holding a session advisory lock keyed by the schema name.
pub(crate) async fn migrate(db: &Db) -> Result<()> {
    let mut conn = db.conn().await?;
    let lock_key = format!("ezw-migrate:{}", db.schema);
    conn.execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock_key]).await.map_err(db_err)?;
    let result = apply(&mut conn, &db.schema).await;
    let unlock = conn.execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock_key]).await.map_err(db_err);
    result.and(unlock.map(|_| ()))
}

async fn apply(conn: &mut super::Conn, schema: &str) -> Result<()> {
    // The schema name was checked to be a plain identifier.
    conn.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.ezw_migrations (
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());"
    ))
    .await
    .map_err(db_err)?;
    let current: i64 = conn
        .query_one(&format!("SELECT COALESCE(MAX(version), 0) FROM {schema}.ezw_migrations"), &[])
        .await
        .map_err(db_err)?
        .get(0);
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(Error::internal(format!(
            "the database schema (version {current}) is newer than this build knows ({newest}); upgrade EZW"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction().await.map_err(db_err)?;
        tx.batch_execute(&format!("SET LOCAL search_path = {schema};")).await.map_err(db_err)?;
        tx.batch_execute(sql).await.map_err(db_err)?;
        tx.execute(&format!("INSERT INTO {schema}.ezw_migrations (version, name) VALUES ($1, $2)"), &[version, name])
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        tracing::info!(version, name, schema, "applied migration");
    }
    Ok(())
}
