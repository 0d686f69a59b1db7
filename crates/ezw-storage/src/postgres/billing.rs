//! Billing: usage counts, checkouts created by the billing gateway, settling them, and an
//! organization's billing state. Writes run `SERIALIZABLE` (the caller retries contention).

use deadpool_postgres::GenericClient;
use ezw_core::ids::OrganizationId;
use ezw_core::model::{AuditEvent, BillingState, Checkout, Organization};
use ezw_core::ports::BillingUsage;
use ezw_core::{Error, Result, Timestamp};
use tokio_postgres::Row;

use super::audit::record_audit;
use super::identity::get_organization_in;
use super::rows::{get, ts, ts_opt, u32_at};
use super::{db_err, is_unique_violation, Db};

/// The columns [`checkout_row`] reads.
const CHECKOUT_COLUMNS: &str = "id, org_id, plan, line_slots, status, url, instructions, created_at, settled_at";

/// A checkout from [`CHECKOUT_COLUMNS`].
fn checkout_row(r: &Row) -> Result<Checkout> {
    Ok(Checkout {
        id: get(r, 0)?,
        organization_id: OrganizationId::from_raw(get::<String>(r, 1)?),
        plan: get(r, 2)?,
        line_slots: u32_at(r, 3)?,
        status: get(r, 4)?,
        url: get(r, 5)?,
        instructions: get(r, 6)?,
        created_at: ts(r, 7)?,
        settled_at: ts_opt(r, 8)?,
    })
}

/// The count `sql` returns for `org`, saturated to `u32`.
async fn count_of(c: &impl GenericClient, sql: &str, org: &OrganizationId) -> Result<u32> {
    let stmt = c.prepare_cached(sql).await.map_err(db_err)?;
    let row = c.query_one(&stmt, &[&org.as_str()]).await.map_err(db_err)?;
    let n: i64 = get(&row, 0)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Lines in use, active and invited seats, and the most recent unsettled checkout.
pub(crate) async fn billing_usage(db: &Db, org: &OrganizationId) -> Result<BillingUsage> {
    let conn = db.conn().await?;
    let lines_used =
        count_of(&conn, "SELECT COUNT(*) FROM lines WHERE org_id = $1 AND lifecycle_state <> 'archived'", org).await?;
    let active_seats =
        count_of(&conn, "SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND status = 'active'", org).await?;
    let invited_seats =
        count_of(&conn, "SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND status = 'invited'", org).await?;
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {CHECKOUT_COLUMNS} FROM billing_checkouts WHERE org_id = $1 AND settled_at IS NULL
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .await
        .map_err(db_err)?;
    let open_checkout = match conn.query_opt(&stmt, &[&org.as_str()]).await.map_err(db_err)? {
        Some(row) => Some(checkout_row(&row)?),
        None => None,
    };
    Ok(BillingUsage { lines_used, active_seats, invited_seats, open_checkout })
}

/// Stores a checkout the gateway created, audited; `checkout_exists` for a known id.
pub(crate) async fn insert_checkout(db: &Db, checkout: &Checkout, audit: &AuditEvent) -> Result<()> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO billing_checkouts ({CHECKOUT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .await
        .map_err(db_err)?;
    tx.execute(
        &stmt,
        &[
            &checkout.id,
            &checkout.organization_id.as_str(),
            &checkout.plan,
            &i64::from(checkout.line_slots),
            &checkout.status,
            &checkout.url,
            &checkout.instructions,
            &checkout.created_at.unix_ms(),
            &checkout.settled_at.map(Timestamp::unix_ms),
        ],
    )
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict("checkout_exists", "the billing gateway returned a checkout id that is already stored")
        } else {
            db_err(e)
        }
    })?;
    record_audit(&tx, audit).await?;
    tx.commit().await.map_err(db_err)
}

/// A checkout, on a connection or inside a transaction.
async fn get_checkout_in(c: &impl GenericClient, id: &str) -> Result<Option<Checkout>> {
    let stmt = c
        .prepare_cached(&format!("SELECT {CHECKOUT_COLUMNS} FROM billing_checkouts WHERE id = $1"))
        .await
        .map_err(db_err)?;
    match c.query_opt(&stmt, &[&id]).await.map_err(db_err)? {
        Some(row) => checkout_row(&row).map(Some),
        None => Ok(None),
    }
}

/// A checkout.
pub(crate) async fn get_checkout(db: &Db, id: &str) -> Result<Option<Checkout>> {
    let conn = db.conn().await?;
    get_checkout_in(&conn, id).await
}

/// Settles a checkout once and activates its organization, audited; `None` for an unknown
/// checkout, `checkout_settled` when it already was.
pub(crate) async fn settle_checkout(
    db: &Db,
    id: &str,
    at: Timestamp,
    audit: &[AuditEvent],
) -> Result<Option<(Checkout, Organization)>> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let Some(checkout) = get_checkout_in(&tx, id).await? else { return Ok(None) };
    if checkout.settled_at.is_some() {
        return Err(Error::conflict("checkout_settled", "this checkout was already settled"));
    }
    let stmt = tx
        .prepare_cached("UPDATE billing_checkouts SET status = $2, settled_at = $3 WHERE id = $1")
        .await
        .map_err(db_err)?;
    tx.execute(&stmt, &[&id, &Checkout::SETTLED, &at.unix_ms()]).await.map_err(db_err)?;
    let stmt = tx.prepare_cached("UPDATE organizations SET billing_state = $2 WHERE id = $1").await.map_err(db_err)?;
    tx.execute(&stmt, &[&checkout.organization_id.as_str(), &BillingState::Active.as_str()]).await.map_err(db_err)?;
    for a in audit {
        record_audit(&tx, a).await?;
    }
    let checkout =
        get_checkout_in(&tx, id).await?.ok_or_else(|| Error::internal("checkout vanished inside its own write"))?;
    let org = get_organization_in(&tx, &checkout.organization_id)
        .await?
        .ok_or_else(|| Error::internal("checkout without organization"))?;
    tx.commit().await.map_err(db_err)?;
    Ok(Some((checkout, org)))
}

/// Sets an organization's billing state, audited; `None` for an unknown organization.
pub(crate) async fn set_billing_state(
    db: &Db,
    org: &OrganizationId,
    state: BillingState,
    audit: &AuditEvent,
) -> Result<Option<Organization>> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let stmt = tx.prepare_cached("UPDATE organizations SET billing_state = $2 WHERE id = $1").await.map_err(db_err)?;
    let n = tx.execute(&stmt, &[&org.as_str(), &state.as_str()]).await.map_err(db_err)?;
    if n == 0 {
        return Ok(None);
    }
    record_audit(&tx, audit).await?;
    let updated = get_organization_in(&tx, org).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(updated)
}
