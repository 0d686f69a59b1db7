//! Webhook configuration, deliveries and their attempts.
//!
//! Configuration writes and redelivery run `SERIALIZABLE`. The delivery hot paths, [`claim`] and
//! [`finish`], are shared by every node and run `READ COMMITTED` with explicit row locks: a claim
//! is one statement that leases due deliveries with `FOR UPDATE SKIP LOCKED`, so nodes never claim
//! the same delivery twice, and a finish locks its deliveries before checking their leases, so a
//! result under a lease another claim has taken over is ignored. Events are queued by
//! [`super::events::Emitter`]; the audit trail lives in [`super::audit`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ezw_core::ids::{DeliveryId, EventId, LineId, OrganizationId, WebhookId};
use ezw_core::model::{
    AuditEvent, DeliveryAttempt, DeliveryStatus, PayloadFormat, Webhook, WebhookDelivery, WebhookEventKind,
};
use ezw_core::ports::{DeliveryJob, DeliveryOutcome, DeliveryResult, Page, StoredWebhook};
use ezw_core::{Error, Result, Timestamp};
use tokio_postgres::Row;

use super::audit;
use super::rows::{get, ts, ts_opt, u32_at};
use super::{bad_value, count, db_err, is_unique_violation, Db, Tx};

// ---- configuration ----

/// The columns [`stored_webhook`] reads, in order.
const WEBHOOK_COLUMNS: &str = "id, org_id, line_id, target_url, event_mask, payload_format, enabled, persistent, \
     max_concurrency, rate_per_second, disabled_reason, failing_since, previous_secret_expires_at, created_at, \
     updated_at, secret, previous_secret";

/// A webhook row (selected with [`WEBHOOK_COLUMNS`]).
fn stored_webhook(r: &Row) -> Result<StoredWebhook> {
    let format: &str = get(r, 5)?;
    Ok(StoredWebhook {
        webhook: Webhook {
            id: WebhookId::from_raw(get::<String>(r, 0)?),
            organization_id: OrganizationId::from_raw(get::<String>(r, 1)?),
            line_id: LineId::from_raw(get::<String>(r, 2)?),
            target_url: get(r, 3)?,
            events: WebhookEventKind::from_mask(get(r, 4)?),
            payload_format: PayloadFormat::parse(format).ok_or_else(|| bad_value("payload format", format))?,
            enabled: get(r, 6)?,
            persistent: get(r, 7)?,
            max_concurrency: u32_at(r, 8)?,
            rate_per_second: get(r, 9)?,
            disabled_reason: get(r, 10)?,
            failing_since: ts_opt(r, 11)?,
            previous_secret_expires_at: ts_opt(r, 12)?,
            created_at: ts(r, 13)?,
            updated_at: ts(r, 14)?,
        },
        secret: get(r, 15)?,
        previous_secret: get(r, 16)?,
    })
}

/// A second webhook for the same line and target is a conflict.
fn webhook_write_err(e: tokio_postgres::Error) -> Error {
    if is_unique_violation(&e) {
        Error::conflict("webhook_exists", "this line already has a webhook for this target URL")
    } else {
        db_err(e)
    }
}

/// Stores a new webhook with its sealed secret and the audit entry.
pub(crate) async fn insert_webhook(db: &Db, w: &Webhook, secret: &str, audit: &AuditEvent) -> Result<()> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO webhooks (id, org_id, line_id, target_url, event_mask, payload_format, enabled, persistent,
                                   max_concurrency, rate_per_second, secret, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .await
        .map_err(db_err)?;
    tx.execute(
        &stmt,
        &[
            &w.id.as_str(),
            &w.organization_id.as_str(),
            &w.line_id.as_str(),
            &w.target_url,
            &WebhookEventKind::mask(&w.events),
            &w.payload_format.as_str(),
            &w.enabled,
            &w.persistent,
            &i64::from(w.max_concurrency),
            &w.rate_per_second,
            &secret,
            &w.created_at.unix_ms(),
            &w.updated_at.unix_ms(),
        ],
    )
    .await
    .map_err(webhook_write_err)?;
    audit::record_audit(&tx, audit).await?;
    tx.commit().await.map_err(db_err)
}

/// Replaces a webhook's settings; disabling holds its pending deliveries, enabling releases held
/// ones at `w.updated_at`. False when the webhook is not in its organization.
pub(crate) async fn update_webhook(db: &Db, w: &Webhook, audit: &AuditEvent) -> Result<bool> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    // `old` reads the row as it was before this statement: whether it was enabled.
    let stmt = tx
        .prepare_cached(
            "WITH old AS (SELECT id, enabled FROM webhooks WHERE id = $1 AND org_id = $2 FOR UPDATE)
             UPDATE webhooks w SET target_url = $3, event_mask = $4, payload_format = $5, enabled = $6,
                    persistent = $7, max_concurrency = $8, rate_per_second = $9, disabled_reason = $10,
                    failing_since = $11, updated_at = $12
             FROM old WHERE w.id = old.id
             RETURNING old.enabled",
        )
        .await
        .map_err(db_err)?;
    let row = tx
        .query_opt(
            &stmt,
            &[
                &w.id.as_str(),
                &w.organization_id.as_str(),
                &w.target_url,
                &WebhookEventKind::mask(&w.events),
                &w.payload_format.as_str(),
                &w.enabled,
                &w.persistent,
                &i64::from(w.max_concurrency),
                &w.rate_per_second,
                &w.disabled_reason,
                &w.failing_since.map(Timestamp::unix_ms),
                &w.updated_at.unix_ms(),
            ],
        )
        .await
        .map_err(webhook_write_err)?;
    let Some(row) = row else { return Ok(false) };
    let was_enabled: bool = get(&row, 0)?;
    match (was_enabled, w.enabled) {
        (true, false) => hold_deliveries(&tx, &w.id).await?,
        (false, true) => release_held(&tx, &w.id, w.updated_at).await?,
        _ => {}
    }
    audit::record_audit(&tx, audit).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(true)
}

/// Holds a disabled webhook's pending deliveries (dropping their leases).
async fn hold_deliveries(tx: &Tx<'_>, webhook: &WebhookId) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "UPDATE webhook_deliveries SET status = 'held', next_attempt_at = NULL, lease_id = NULL
             WHERE webhook_id = $1 AND status = 'pending'",
        )
        .await
        .map_err(db_err)?;
    tx.execute(&stmt, &[&webhook.as_str()]).await.map_err(db_err)?;
    Ok(())
}

/// Makes a re-enabled webhook's held deliveries due at `at`.
async fn release_held(tx: &Tx<'_>, webhook: &WebhookId, at: Timestamp) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $2
             WHERE webhook_id = $1 AND status = 'held'",
        )
        .await
        .map_err(db_err)?;
    tx.execute(&stmt, &[&webhook.as_str(), &at.unix_ms()]).await.map_err(db_err)?;
    Ok(())
}

/// Replaces the signing secret, keeping the old one until `previous_until`.
pub(crate) async fn rotate_secret(
    db: &Db,
    org: &OrganizationId,
    id: &WebhookId,
    secret: &str,
    previous_until: Timestamp,
    audit: &AuditEvent,
) -> Result<bool> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE webhooks SET previous_secret = secret, secret = $3, previous_secret_expires_at = $4, updated_at = $5
             WHERE id = $1 AND org_id = $2",
        )
        .await
        .map_err(db_err)?;
    let n = tx
        .execute(&stmt, &[&id.as_str(), &org.as_str(), &secret, &previous_until.unix_ms(), &audit.created_at.unix_ms()])
        .await
        .map_err(db_err)?;
    if n > 0 {
        audit::record_audit(&tx, audit).await?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(n > 0)
}

/// Deletes a webhook; its deliveries and their attempts go with it (`ON DELETE CASCADE`).
pub(crate) async fn delete_webhook(db: &Db, org: &OrganizationId, id: &WebhookId, audit: &AuditEvent) -> Result<bool> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let stmt = tx.prepare_cached("DELETE FROM webhooks WHERE id = $1 AND org_id = $2").await.map_err(db_err)?;
    let n = tx.execute(&stmt, &[&id.as_str(), &org.as_str()]).await.map_err(db_err)?;
    if n > 0 {
        audit::record_audit(&tx, audit).await?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(n > 0)
}

/// A webhook of an organization.
pub(crate) async fn get_webhook(db: &Db, org: &OrganizationId, id: &WebhookId) -> Result<Option<StoredWebhook>> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND org_id = $2"))
        .await
        .map_err(db_err)?;
    conn.query_opt(&stmt, &[&id.as_str(), &org.as_str()])
        .await
        .map_err(db_err)?
        .as_ref()
        .map(stored_webhook)
        .transpose()
}

/// A line's webhooks, oldest first.
pub(crate) async fn list_webhooks(db: &Db, org: &OrganizationId, line: &LineId) -> Result<Vec<StoredWebhook>> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE org_id = $1 AND line_id = $2 ORDER BY created_at, id"
        ))
        .await
        .map_err(db_err)?;
    conn.query(&stmt, &[&org.as_str(), &line.as_str()]).await.map_err(db_err)?.iter().map(stored_webhook).collect()
}

// ---- deliveries ----

/// The columns [`delivery`] reads, in order.
const DELIVERY_COLUMNS: &str = "id, event_id, webhook_id, org_id, line_id, event, status, attempts, next_attempt_at, \
     last_http_status, last_error, created_at, delivered_at, body";

/// An HTTP status column.
fn http_status(r: &Row, i: usize) -> Result<Option<u16>> {
    get::<Option<i64>>(r, i)?
        .map(|v| u16::try_from(v).map_err(|_| bad_value("HTTP status", &v.to_string())))
        .transpose()
}

/// A delivery row (selected with [`DELIVERY_COLUMNS`]).
fn delivery(r: &Row) -> Result<WebhookDelivery> {
    let event: &str = get(r, 5)?;
    let status: &str = get(r, 6)?;
    Ok(WebhookDelivery {
        id: DeliveryId::from_raw(get::<String>(r, 0)?),
        event_id: EventId::from_raw(get::<String>(r, 1)?),
        webhook_id: WebhookId::from_raw(get::<String>(r, 2)?),
        organization_id: OrganizationId::from_raw(get::<String>(r, 3)?),
        line_id: LineId::from_raw(get::<String>(r, 4)?),
        event: WebhookEventKind::parse(event).ok_or_else(|| bad_value("webhook event", event))?,
        status: DeliveryStatus::parse(status).ok_or_else(|| bad_value("delivery status", status))?,
        attempts: u32_at(r, 7)?,
        next_attempt_at: ts_opt(r, 8)?,
        last_http_status: http_status(r, 9)?,
        last_error: get(r, 10)?,
        created_at: ts(r, 11)?,
        delivered_at: ts_opt(r, 12)?,
        body: get(r, 13)?,
    })
}

/// Claims up to `limit` due pending deliveries, oldest due first, leasing them until
/// `now + lease`, with their webhooks.
///
/// One statement locks and leases them: `SKIP LOCKED` passes over deliveries another node is
/// claiming or finishing at the same moment, so concurrent claims never overlap. Held
/// deliveries (of disabled webhooks) are not pending and never claimed; per-webhook concurrency
/// is the dispatcher's (it releases what it cannot start).
pub(crate) async fn claim(db: &Db, now: Timestamp, lease: Duration, limit: u32) -> Result<Vec<DeliveryJob>> {
    let lease_id = ezw_core::crypto::random_token("wl", 12);
    let until = now.plus(lease).unix_ms();
    let mut conn = db.conn().await?;
    let tx = Db::read_committed(&mut conn).await?;
    let stmt = tx
        .prepare_cached(&format!(
            "WITH due AS (
                 SELECT id, next_attempt_at FROM webhook_deliveries
                 WHERE status = 'pending' AND next_attempt_at <= $3
                 ORDER BY next_attempt_at LIMIT $4
                 FOR UPDATE SKIP LOCKED
             ), claimed AS (
                 UPDATE webhook_deliveries d SET lease_id = $1, next_attempt_at = $2
                 FROM due WHERE d.id = due.id
                 RETURNING d.*, due.next_attempt_at AS due_at
             )
             SELECT {DELIVERY_COLUMNS} FROM claimed ORDER BY due_at, id"
        ))
        .await
        .map_err(db_err)?;
    let rows = tx.query(&stmt, &[&lease_id, &until, &now.unix_ms(), &i64::from(limit)]).await.map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    let claimed = rows.iter().map(delivery).collect::<Result<Vec<_>>>()?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }

    let mut ids: Vec<&str> = claimed.iter().map(|d| d.webhook_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let stmt = conn
        .prepare_cached(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ANY($1)"))
        .await
        .map_err(db_err)?;
    let mut webhooks: HashMap<WebhookId, StoredWebhook> = HashMap::new();
    for r in conn.query(&stmt, &[&ids]).await.map_err(db_err)? {
        let w = stored_webhook(&r)?;
        webhooks.insert(w.webhook.id.clone(), w);
    }
    let mut jobs = Vec::with_capacity(claimed.len());
    for d in claimed {
        // A webhook deleted meanwhile took its deliveries with it.
        let Some(webhook) = webhooks.get(&d.webhook_id) else { continue };
        jobs.push(DeliveryJob { delivery: d, lease_id: lease_id.clone(), webhook: webhook.clone() });
    }
    Ok(jobs)
}

/// How a batch of results changes one webhook's failure streak (results apply in order).
#[derive(Default)]
struct Streak {
    /// A success in the batch ended the streak.
    reset: bool,
    /// The first failure after the last success (or in the batch, without one).
    fail_at: Option<i64>,
}

/// Records attempts and outcomes of claimed deliveries; results under a lease no longer held
/// are ignored. A result may disable its webhook, holding its pending deliveries, audited.
///
/// The batch costs a few statements whatever its size: one locks the deliveries (the lease is
/// checked under the lock, so a claim that took a delivery over cannot race its old result),
/// one records the attempts, one updates the failure streaks that change (a webhook row is only
/// written when its streak changes), and one updates the deliveries.
pub(crate) async fn finish(db: &Db, results: &[DeliveryResult]) -> Result<()> {
    let mut conn = db.conn().await?;
    let tx = Db::read_committed(&mut conn).await?;

    // Lock the deliveries (in id order, so batches that overlap do not deadlock).
    let mut ids: Vec<&str> = results.iter().map(|r| r.delivery_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let stmt = tx
        .prepare_cached(
            "SELECT id, lease_id, attempts FROM webhook_deliveries WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .await
        .map_err(db_err)?;
    let mut held: HashMap<String, (Option<String>, i64)> = HashMap::new();
    for r in tx.query(&stmt, &[&ids]).await.map_err(db_err)? {
        held.insert(get(&r, 0)?, (get(&r, 1)?, get(&r, 2)?));
    }
    // The results whose lease is held, with the attempts made so far. A second result for one
    // delivery finds its lease already given up, as it would one result at a time.
    let mut live: Vec<(&DeliveryResult, i64)> = Vec::with_capacity(results.len());
    for r in results {
        match held.get(r.delivery_id.as_str()) {
            Some((Some(lease), attempts)) if *lease == r.lease_id => {
                live.push((r, *attempts));
                held.remove(r.delivery_id.as_str());
            }
            _ => tracing::debug!(delivery = %r.delivery_id, "webhook result for a lease no longer held; ignored"),
        }
    }
    if live.is_empty() {
        return tx.commit().await.map_err(db_err);
    }

    record_attempts(&tx, &live).await?;
    update_streaks(&tx, &live).await?;
    update_deliveries(&tx, &live).await?;

    for (r, _) in &live {
        if let Some((reason, audit)) = &r.disable_webhook {
            disable_webhook(&tx, &r.webhook_id, reason, audit).await?;
        }
    }
    tx.commit().await.map_err(db_err)
}

/// Inserts (or replaces) the attempt of every result that made one, numbered after the
/// attempts already counted.
async fn record_attempts(tx: &Tx<'_>, live: &[(&DeliveryResult, i64)]) -> Result<()> {
    let made: Vec<(&DeliveryResult, &DeliveryAttempt, i64)> =
        live.iter().filter_map(|(r, n)| r.attempt.as_ref().map(|a| (*r, a, n + 1))).collect();
    if made.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = made.iter().map(|(r, _, _)| r.delivery_id.as_str()).collect();
    let numbers: Vec<i64> = made.iter().map(|(_, _, n)| *n).collect();
    let started: Vec<i64> = made.iter().map(|(_, a, _)| a.started_at.unix_ms()).collect();
    let statuses: Vec<Option<i64>> = made.iter().map(|(_, a, _)| a.http_status.map(i64::from)).collect();
    let latencies: Vec<i64> = made.iter().map(|(_, a, _)| latency(a)).collect();
    let excerpts: Vec<Option<&str>> = made.iter().map(|(_, a, _)| a.response_excerpt.as_deref()).collect();
    let errors: Vec<Option<&str>> = made.iter().map(|(_, a, _)| a.error.as_deref()).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO webhook_attempts (delivery_id, number, started_at, http_status, latency_ms, response_excerpt,
                                           error)
             SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::TEXT[],
                                  $7::TEXT[])
             ON CONFLICT (delivery_id, number) DO UPDATE SET started_at = EXCLUDED.started_at,
                 http_status = EXCLUDED.http_status, latency_ms = EXCLUDED.latency_ms,
                 response_excerpt = EXCLUDED.response_excerpt, error = EXCLUDED.error",
        )
        .await
        .map_err(db_err)?;
    tx.execute(&stmt, &[&ids, &numbers, &started, &statuses, &latencies, &excerpts, &errors]).await.map_err(db_err)?;
    Ok(())
}

/// An attempt's latency as stored.
fn latency(a: &DeliveryAttempt) -> i64 {
    i64::try_from(a.latency_ms).unwrap_or(i64::MAX)
}

/// Applies the batch's attempts to their webhooks' failure streaks: a success clears
/// `failing_since`, a failure starts a streak when none runs. Only rows whose value changes are
/// written (most batches change nothing, and webhook rows are shared by every node).
async fn update_streaks(tx: &Tx<'_>, live: &[(&DeliveryResult, i64)]) -> Result<()> {
    let mut streaks: BTreeMap<&str, Streak> = BTreeMap::new();
    for (r, _) in live {
        let Some(a) = &r.attempt else { continue };
        let s = streaks.entry(r.webhook_id.as_str()).or_default();
        if matches!(r.outcome, DeliveryOutcome::Succeeded) {
            *s = Streak { reset: true, fail_at: None };
        } else if s.fail_at.is_none() {
            s.fail_at = Some(a.started_at.unix_ms());
        }
    }
    if streaks.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = streaks.keys().copied().collect();
    let resets: Vec<bool> = streaks.values().map(|s| s.reset).collect();
    let fail_at: Vec<Option<i64>> = streaks.values().map(|s| s.fail_at).collect();
    let stmt = tx
        .prepare_cached(
            "UPDATE webhooks w
             SET failing_since = CASE WHEN s.reset THEN s.fail_at ELSE COALESCE(w.failing_since, s.fail_at) END
             FROM unnest($1::TEXT[], $2::BOOLEAN[], $3::BIGINT[]) AS s(id, reset, fail_at)
             WHERE w.id = s.id
               AND w.failing_since IS DISTINCT FROM
                   (CASE WHEN s.reset THEN s.fail_at ELSE COALESCE(w.failing_since, s.fail_at) END)",
        )
        .await
        .map_err(db_err)?;
    tx.execute(&stmt, &[&ids, &resets, &fail_at]).await.map_err(db_err)?;
    Ok(())
}

/// Moves each delivery to its outcome, releasing its lease and counting its attempt.
async fn update_deliveries(tx: &Tx<'_>, live: &[(&DeliveryResult, i64)]) -> Result<()> {
    let n = live.len();
    let (mut ids, mut statuses, mut next, mut counted) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut http, mut errors, mut delivered) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for (r, _) in live {
        let attempt = r.attempt.as_ref();
        let (status, next_at, delivered_at) = match &r.outcome {
            DeliveryOutcome::Succeeded => {
                ("succeeded", None, attempt.map(|a| a.started_at.unix_ms().saturating_add(latency(a))))
            }
            DeliveryOutcome::Retry(at) | DeliveryOutcome::Released(at) => ("pending", Some(at.unix_ms()), None),
            DeliveryOutcome::Failed => ("failed", None, None),
        };
        ids.push(r.delivery_id.as_str());
        statuses.push(status);
        next.push(next_at);
        counted.push(i64::from(attempt.is_some()));
        http.push(attempt.and_then(|a| a.http_status).map(i64::from));
        errors.push(attempt.and_then(|a| a.error.as_deref()));
        delivered.push(delivered_at);
    }
    let stmt = tx
        .prepare_cached(
            "UPDATE webhook_deliveries d
             SET status = u.status, next_attempt_at = u.next_at, lease_id = NULL, attempts = d.attempts + u.counted,
                 last_http_status = CASE WHEN u.counted = 1 THEN u.http_status ELSE d.last_http_status END,
                 last_error = CASE WHEN u.counted = 1 THEN u.error ELSE d.last_error END,
                 delivered_at = COALESCE(u.delivered_at, d.delivered_at)
             FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::TEXT[], $7::BIGINT[])
                  AS u(id, status, next_at, counted, http_status, error, delivered_at)
             WHERE d.id = u.id",
        )
        .await
        .map_err(db_err)?;
    tx.execute(&stmt, &[&ids, &statuses, &next, &counted, &http, &errors, &delivered]).await.map_err(db_err)?;
    Ok(())
}

/// Disables a webhook the dispatcher gave up on, holding its pending deliveries; audited
/// only when it was still enabled.
async fn disable_webhook(tx: &Tx<'_>, webhook: &WebhookId, reason: &str, audit: &AuditEvent) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "UPDATE webhooks SET enabled = FALSE, disabled_reason = $2, updated_at = $3 WHERE id = $1 AND enabled",
        )
        .await
        .map_err(db_err)?;
    let n = tx.execute(&stmt, &[&webhook.as_str(), &reason, &audit.created_at.unix_ms()]).await.map_err(db_err)?;
    if n > 0 {
        hold_deliveries(tx, webhook).await?;
        audit::record_audit(tx, audit).await?;
    }
    Ok(())
}

/// A webhook's deliveries, newest first; the cursor is the last id of the previous page.
pub(crate) async fn list_deliveries(
    db: &Db,
    org: &OrganizationId,
    webhook: &WebhookId,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Page<WebhookDelivery>> {
    if cursor.is_some_and(|c| DeliveryId::parse(c).is_none()) {
        return Err(Error::invalid("invalid_cursor", "cursor is not one this API returned"));
    }
    let limit = limit.clamp(1, 200);
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE webhook_id = $1 AND org_id = $2 AND ($3::TEXT IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        ))
        .await
        .map_err(db_err)?;
    let rows = conn
        .query(&stmt, &[&webhook.as_str(), &org.as_str(), &cursor, &(i64::from(limit) + 1)])
        .await
        .map_err(db_err)?;
    let mut items = rows.iter().map(delivery).collect::<Result<Vec<_>>>()?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(|d| d.id.to_string()) } else { None };
    Ok(Page { items, next_cursor })
}

/// One delivery of an organization with its attempts, oldest attempt first.
pub(crate) async fn get_delivery(
    db: &Db,
    org: &OrganizationId,
    id: &DeliveryId,
) -> Result<Option<(WebhookDelivery, Vec<DeliveryAttempt>)>> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(&format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1 AND org_id = $2"))
        .await
        .map_err(db_err)?;
    let row = conn.query_opt(&stmt, &[&id.as_str(), &org.as_str()]).await.map_err(db_err)?;
    let Some(d) = row.as_ref().map(delivery).transpose()? else { return Ok(None) };
    let stmt = conn
        .prepare_cached(
            "SELECT number, started_at, http_status, latency_ms, response_excerpt, error FROM webhook_attempts
             WHERE delivery_id = $1 ORDER BY number",
        )
        .await
        .map_err(db_err)?;
    let mut attempts = Vec::new();
    for r in conn.query(&stmt, &[&id.as_str()]).await.map_err(db_err)? {
        attempts.push(DeliveryAttempt {
            number: u32_at(&r, 0)?,
            started_at: ts(&r, 1)?,
            http_status: http_status(&r, 2)?,
            latency_ms: count(get(&r, 3)?),
            response_excerpt: get(&r, 4)?,
            error: get(&r, 5)?,
        });
    }
    Ok(Some((d, attempts)))
}

/// Queues a delivery again for `at`, keeping its id and attempts; a held delivery stays held.
pub(crate) async fn redeliver(
    db: &Db,
    org: &OrganizationId,
    id: &DeliveryId,
    at: Timestamp,
) -> Result<Option<WebhookDelivery>> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE webhook_deliveries SET status = CASE WHEN status = 'held' THEN 'held' ELSE 'pending' END,
                    next_attempt_at = CASE WHEN status = 'held' THEN NULL ELSE $3::BIGINT END, lease_id = NULL
             WHERE id = $1 AND org_id = $2
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .await
        .map_err(db_err)?;
    let row = tx.query_opt(&stmt, &[&id.as_str(), &org.as_str(), &at.unix_ms()]).await.map_err(db_err)?;
    let d = row.as_ref().map(delivery).transpose()?;
    tx.commit().await.map_err(db_err)?;
    Ok(d)
}
