//! The organization audit trail: written in the transaction of the change it records.

use ezw_core::ids::{AuditEventId, OrganizationId};
use ezw_core::model::{AuditActor, AuditEvent};
use ezw_core::ports::Page;
use ezw_core::{Error, Result, Timestamp};

use super::rows::get;
use super::{db_err, Db, Tx};

/// Appends `a` inside `tx`.
pub(crate) async fn record_audit(tx: &Tx<'_>, a: &AuditEvent) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO audit_events (id, org_id, actor_kind, actor_id, action, target_kind, target_id, details,
                                       created_at, before_json, after_json)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .await
        .map_err(db_err)?;
    tx.execute(
        &stmt,
        &[
            &a.id.as_str(),
            &a.organization_id.as_str(),
            &a.actor.kind,
            &a.actor.id,
            &a.action,
            &a.target_kind,
            &a.target_id,
            &a.details.to_string(),
            &a.created_at.unix_ms(),
            &a.before.as_ref().map(ToString::to_string),
            &a.after.as_ref().map(ToString::to_string),
        ],
    )
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Appends `a` in its own transaction.
pub(crate) async fn record_audit_alone(db: &Db, a: &AuditEvent) -> Result<()> {
    let mut conn = db.conn().await?;
    let tx = Db::read_committed(&mut conn).await?;
    record_audit(&tx, a).await?;
    tx.commit().await.map_err(db_err)
}

/// An organization's audit trail, newest first (insertion order); `action` keeps one action,
/// or a family when it ends with a dot.
pub(crate) async fn list_audit(
    db: &Db,
    org: &OrganizationId,
    action: Option<&str>,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Page<AuditEvent>> {
    let before = match cursor {
        Some(c) => {
            c.parse::<i64>().map_err(|_| Error::invalid("invalid_cursor", "cursor is not one this API returned"))?
        }
        None => i64::MAX,
    };
    let limit = limit.clamp(1, 200);
    let family = action
        .filter(|a| a.ends_with('.'))
        .map(|a| format!("{}%", a.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
    let exact = action.filter(|a| !a.ends_with('.'));
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(
            "SELECT id, org_id, actor_kind, actor_id, action, target_kind, target_id, details, created_at, seq,
                    before_json, after_json
             FROM audit_events
             WHERE org_id = $1 AND seq < $2
               AND ($4::TEXT IS NULL OR action = $4) AND ($5::TEXT IS NULL OR action LIKE $5)
             ORDER BY seq DESC LIMIT $3",
        )
        .await
        .map_err(db_err)?;
    let rows =
        conn.query(&stmt, &[&org.as_str(), &before, &(i64::from(limit) + 1), &exact, &family]).await.map_err(db_err)?;
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let details: &str = get(r, 7)?;
        let event = AuditEvent {
            id: AuditEventId::from_raw(get::<String>(r, 0)?),
            organization_id: OrganizationId::from_raw(get::<String>(r, 1)?),
            actor: AuditActor { kind: actor_kind(get(r, 2)?), id: get(r, 3)? },
            action: get(r, 4)?,
            target_kind: get(r, 5)?,
            target_id: get(r, 6)?,
            details: serde_json::from_str(details).unwrap_or(serde_json::Value::Null),
            before: get::<Option<&str>>(r, 10)?.and_then(|j| serde_json::from_str(j).ok()),
            after: get::<Option<&str>>(r, 11)?.and_then(|j| serde_json::from_str(j).ok()),
            created_at: Timestamp::from_unix_ms(get(r, 8)?),
        };
        items.push((event, get::<i64>(r, 9)?));
    }
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(|(_, seq)| seq.to_string()) } else { None };
    Ok(Page { items: items.into_iter().map(|(a, _)| a).collect(), next_cursor })
}

fn actor_kind(stored: &str) -> &'static str {
    match stored {
        "user" => "user",
        "line_token" => "line_token",
        "support" => "support",
        _ => "system",
    }
}
