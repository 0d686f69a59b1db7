//! Webhooks, their deliveries and attempts, the audit trail, and event emission: [`emit`] runs
//! inside the writer transaction of the change that caused the event.

use std::collections::HashMap;
use std::time::Duration;

use ezw_core::ids::{AuditEventId, ConversationId, DeliveryId, EventId, LineId, MessageId, OrganizationId, WebhookId};
use ezw_core::model::{
    AuditActor, AuditEvent, DeliveryAttempt, DeliveryStatus, Message, PayloadFormat, Webhook, WebhookDelivery,
    WebhookEventKind,
};
use ezw_core::ports::{DeliveryJob, DeliveryOutcome, DeliveryResult, Page, StoredWebhook};
use ezw_core::webhooks::{plan_deliveries, EventEnvelope, Subscriber, WebhookEvent};
use ezw_core::{Error, PhoneNumber, Result, Timestamp};
use rusqlite::types::Type;
use rusqlite::{params, Connection, Row};

use super::{db_err, is_unique_violation, optional};

// ---- emission ----

/// Queues `build()`'s event for every enabled webhook of `line` subscribed to `kind`. The event
/// is only built when someone is subscribed, so lines without webhooks pay one indexed lookup.
pub(super) fn emit(
    conn: &Connection,
    org: &OrganizationId,
    line: &LineId,
    kind: WebhookEventKind,
    at: Timestamp,
    build: impl FnOnce(&Connection) -> Result<Option<WebhookEvent>>,
) -> Result<()> {
    let subscribers: Vec<Subscriber> = conn
        .prepare_cached(
            "SELECT id, payload_format FROM webhooks WHERE line_id = ?1 AND enabled = 1 AND (event_mask & ?2) != 0",
        )
        .and_then(|mut s| {
            s.query_map(params![line.as_str(), kind.bit()], |r| {
                Ok(Subscriber {
                    webhook_id: WebhookId::from_raw(r.get::<_, String>(0)?),
                    format: PayloadFormat::parse(&r.get::<_, String>(1)?).unwrap_or_default(),
                })
            })?
            .collect()
        })
        .map_err(db_err)?;
    if subscribers.is_empty() {
        return Ok(());
    }
    let Some(event) = build(conn)? else { return Ok(()) };
    let phone: String = conn
        .prepare_cached("SELECT phone_number FROM lines WHERE id = ?1")
        .and_then(|mut s| s.query_row([line.as_str()], |r| r.get(0)))
        .map_err(db_err)?;
    let line_phone = PhoneNumber::parse(&phone).map_err(|_| Error::internal("stored line phone is invalid"))?;
    let envelope = EventEnvelope::new(org.clone(), line.clone(), line_phone, at, event);
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO webhook_deliveries (id, event_id, webhook_id, org_id, line_id, event, body, status,
                                             next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8)",
        )
        .map_err(db_err)?;
    for d in plan_deliveries(&envelope, &subscribers) {
        insert
            .execute(params![
                d.id.as_str(),
                envelope.id.as_str(),
                d.webhook_id.as_str(),
                org.as_str(),
                line.as_str(),
                kind.as_str(),
                d.body,
                at.unix_ms()
            ])
            .map_err(db_err)?;
    }
    Ok(())
}

/// `messages.post` for a message just recorded.
pub(super) fn emit_message(conn: &Connection, message: &Message, contact_phone: &PhoneNumber) -> Result<()> {
    emit(conn, &message.organization_id, &message.line_id, WebhookEventKind::MessagesPost, message.created_at, |_| {
        Ok(Some(WebhookEvent::Message { message: Box::new(message.clone()), contact_phone: contact_phone.clone() }))
    })
}

/// `statuses.post` for a message whose status just changed.
pub(super) fn emit_status(
    conn: &Connection,
    org: &OrganizationId,
    line: &LineId,
    message: &MessageId,
    at: Timestamp,
) -> Result<()> {
    emit(conn, org, line, WebhookEventKind::StatusesPost, at, |conn| {
        let Some(message) = super::inbox::get_message(conn, Some(org), message)? else { return Ok(None) };
        let contact_phone = contact_phone(conn, &message.conversation_id)?;
        Ok(Some(WebhookEvent::Status { message: Box::new(message), contact_phone }))
    })
}

/// `chats.post` for a conversation just opened.
pub(super) fn emit_chat_created(
    conn: &Connection,
    org: &OrganizationId,
    line: &LineId,
    conversation: &ConversationId,
    at: Timestamp,
) -> Result<()> {
    emit(conn, org, line, WebhookEventKind::ChatsPost, at, |conn| {
        Ok(super::inbox::get_conversation(conn, org, conversation)?
            .map(|c| WebhookEvent::ChatCreated { conversation: Box::new(c) }))
    })
}

fn contact_phone(conn: &Connection, conversation: &ConversationId) -> Result<PhoneNumber> {
    let phone: String = conn
        .prepare_cached("SELECT contact_phone FROM conversations WHERE id = ?1")
        .and_then(|mut s| s.query_row([conversation.as_str()], |r| r.get(0)))
        .map_err(db_err)?;
    PhoneNumber::parse(&phone).map_err(|_| Error::internal("stored contact phone is invalid"))
}

// ---- configuration ----

const WEBHOOK_COLUMNS: &str = "id, org_id, line_id, target_url, event_mask, payload_format, enabled, persistent,
     max_concurrency, rate_per_second, disabled_reason, failing_since, previous_secret_expires_at, created_at,
     updated_at, secret, previous_secret";

fn stored_webhook(r: &Row<'_>) -> rusqlite::Result<StoredWebhook> {
    let format: String = r.get(5)?;
    Ok(StoredWebhook {
        webhook: Webhook {
            id: WebhookId::from_raw(r.get::<_, String>(0)?),
            organization_id: OrganizationId::from_raw(r.get::<_, String>(1)?),
            line_id: LineId::from_raw(r.get::<_, String>(2)?),
            target_url: r.get(3)?,
            events: WebhookEventKind::from_mask(r.get(4)?),
            payload_format: PayloadFormat::parse(&format).ok_or_else(|| bad(5, "payload format"))?,
            enabled: r.get(6)?,
            persistent: r.get(7)?,
            max_concurrency: r.get(8)?,
            rate_per_second: r.get(9)?,
            disabled_reason: r.get(10)?,
            failing_since: r.get::<_, Option<i64>>(11)?.map(Timestamp::from_unix_ms),
            previous_secret_expires_at: r.get::<_, Option<i64>>(12)?.map(Timestamp::from_unix_ms),
            created_at: Timestamp::from_unix_ms(r.get(13)?),
            updated_at: Timestamp::from_unix_ms(r.get(14)?),
        },
        secret: r.get(15)?,
        previous_secret: r.get(16)?,
    })
}

fn bad(col: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, format!("unknown {what}").into())
}

/// A second webhook for the same line and target is a conflict.
fn webhook_write_err(e: rusqlite::Error) -> Error {
    if is_unique_violation(&e) {
        Error::conflict("webhook_exists", "this line already has a webhook for this target URL")
    } else {
        db_err(e)
    }
}

pub(super) fn insert_webhook(conn: &Connection, w: &Webhook, secret: &str, audit: &AuditEvent) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO webhooks (id, org_id, line_id, target_url, event_mask, payload_format, enabled, persistent,
                               max_concurrency, rate_per_second, secret, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .and_then(|mut s| {
        s.execute(params![
            w.id.as_str(),
            w.organization_id.as_str(),
            w.line_id.as_str(),
            w.target_url,
            WebhookEventKind::mask(&w.events),
            w.payload_format.as_str(),
            w.enabled,
            w.persistent,
            w.max_concurrency,
            w.rate_per_second,
            secret,
            w.created_at.unix_ms(),
            w.updated_at.unix_ms()
        ])
    })
    .map_err(webhook_write_err)?;
    record_audit(conn, audit)
}

pub(super) fn update_webhook(conn: &Connection, w: &Webhook, audit: &AuditEvent) -> Result<bool> {
    let was_enabled: Option<bool> = optional(
        conn.prepare_cached("SELECT enabled FROM webhooks WHERE id = ?1 AND org_id = ?2")
            .and_then(|mut s| s.query_row([w.id.as_str(), w.organization_id.as_str()], |r| r.get(0))),
    )?;
    let Some(was_enabled) = was_enabled else { return Ok(false) };
    conn.prepare_cached(
        "UPDATE webhooks SET target_url = ?3, event_mask = ?4, payload_format = ?5, enabled = ?6, persistent = ?7,
                max_concurrency = ?8, rate_per_second = ?9, disabled_reason = ?10, failing_since = ?11, updated_at = ?12
         WHERE id = ?1 AND org_id = ?2",
    )
    .and_then(|mut s| {
        s.execute(params![
            w.id.as_str(),
            w.organization_id.as_str(),
            w.target_url,
            WebhookEventKind::mask(&w.events),
            w.payload_format.as_str(),
            w.enabled,
            w.persistent,
            w.max_concurrency,
            w.rate_per_second,
            w.disabled_reason,
            w.failing_since.map(Timestamp::unix_ms),
            w.updated_at.unix_ms()
        ])
    })
    .map_err(webhook_write_err)?;
    match (was_enabled, w.enabled) {
        (true, false) => hold_deliveries(conn, &w.id)?,
        (false, true) => release_held(conn, &w.id, w.updated_at)?,
        _ => {}
    }
    record_audit(conn, audit)?;
    Ok(true)
}

fn hold_deliveries(conn: &Connection, webhook: &WebhookId) -> Result<()> {
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET status = 'held', next_attempt_at = NULL, lease_id = NULL
         WHERE webhook_id = ?1 AND status = 'pending'",
    )
    .and_then(|mut s| s.execute([webhook.as_str()]))
    .map_err(db_err)?;
    Ok(())
}

fn release_held(conn: &Connection, webhook: &WebhookId, at: Timestamp) -> Result<()> {
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?2 WHERE webhook_id = ?1 AND status = 'held'",
    )
    .and_then(|mut s| s.execute(params![webhook.as_str(), at.unix_ms()]))
    .map_err(db_err)?;
    Ok(())
}

pub(super) fn rotate_secret(
    conn: &Connection,
    org: &OrganizationId,
    id: &WebhookId,
    secret: &str,
    previous_until: Timestamp,
    audit: &AuditEvent,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE webhooks SET previous_secret = secret, secret = ?3, previous_secret_expires_at = ?4, updated_at = ?5
             WHERE id = ?1 AND org_id = ?2",
        )
        .and_then(|mut s| {
            s.execute(params![id.as_str(), org.as_str(), secret, previous_until.unix_ms(), audit.created_at.unix_ms()])
        })
        .map_err(db_err)?;
    if n > 0 {
        record_audit(conn, audit)?;
    }
    Ok(n > 0)
}

pub(super) fn delete_webhook(
    conn: &Connection,
    org: &OrganizationId,
    id: &WebhookId,
    audit: &AuditEvent,
) -> Result<bool> {
    let exists = get_webhook(conn, org, id)?.is_some();
    if !exists {
        return Ok(false);
    }
    conn.execute(
        "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE webhook_id = ?1)",
        [id.as_str()],
    )
    .map_err(db_err)?;
    conn.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?1", [id.as_str()]).map_err(db_err)?;
    conn.execute("DELETE FROM webhooks WHERE id = ?1", [id.as_str()]).map_err(db_err)?;
    record_audit(conn, audit)?;
    Ok(true)
}

pub(super) fn get_webhook(conn: &Connection, org: &OrganizationId, id: &WebhookId) -> Result<Option<StoredWebhook>> {
    optional(
        conn.prepare_cached(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1 AND org_id = ?2"))
            .and_then(|mut s| s.query_row([id.as_str(), org.as_str()], stored_webhook)),
    )
}

pub(super) fn list_webhooks(conn: &Connection, org: &OrganizationId, line: &LineId) -> Result<Vec<StoredWebhook>> {
    conn.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE org_id = ?1 AND line_id = ?2 ORDER BY created_at, id"
    ))
    .and_then(|mut s| s.query_map([org.as_str(), line.as_str()], stored_webhook)?.collect())
    .map_err(db_err)
}

// ---- deliveries ----

const DELIVERY_COLUMNS: &str = "id, event_id, webhook_id, org_id, line_id, event, status, attempts, next_attempt_at,
     last_http_status, last_error, created_at, delivered_at, body";

fn delivery(r: &Row<'_>) -> rusqlite::Result<WebhookDelivery> {
    let event: String = r.get(5)?;
    let status: String = r.get(6)?;
    Ok(WebhookDelivery {
        id: DeliveryId::from_raw(r.get::<_, String>(0)?),
        event_id: EventId::from_raw(r.get::<_, String>(1)?),
        webhook_id: WebhookId::from_raw(r.get::<_, String>(2)?),
        organization_id: OrganizationId::from_raw(r.get::<_, String>(3)?),
        line_id: LineId::from_raw(r.get::<_, String>(4)?),
        event: WebhookEventKind::parse(&event).ok_or_else(|| bad(5, "webhook event"))?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| bad(6, "delivery status"))?,
        attempts: r.get(7)?,
        next_attempt_at: r.get::<_, Option<i64>>(8)?.map(Timestamp::from_unix_ms),
        last_http_status: r.get(9)?,
        last_error: r.get(10)?,
        created_at: Timestamp::from_unix_ms(r.get(11)?),
        delivered_at: r.get::<_, Option<i64>>(12)?.map(Timestamp::from_unix_ms),
        body: r.get(13)?,
    })
}

pub(super) fn claim(conn: &Connection, now: Timestamp, lease: Duration, limit: u32) -> Result<Vec<DeliveryJob>> {
    let lease_id = ezw_core::crypto::random_token("wl", 12);
    let until = now.plus(lease).unix_ms();
    let claimed: Vec<WebhookDelivery> = conn
        .prepare_cached(&format!(
            "UPDATE webhook_deliveries SET lease_id = ?1, next_attempt_at = ?2
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?3
                          ORDER BY next_attempt_at LIMIT ?4)
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .and_then(|mut s| s.query_map(params![lease_id, until, now.unix_ms(), limit], delivery)?.collect())
        .map_err(db_err)?;
    let mut webhooks: HashMap<WebhookId, StoredWebhook> = HashMap::new();
    let mut jobs = Vec::with_capacity(claimed.len());
    for d in claimed {
        if !webhooks.contains_key(&d.webhook_id) {
            let Some(w) = get_webhook(conn, &d.organization_id, &d.webhook_id)? else { continue };
            webhooks.insert(d.webhook_id.clone(), w);
        }
        let webhook = webhooks[&d.webhook_id].clone();
        jobs.push(DeliveryJob { delivery: d, lease_id: lease_id.clone(), webhook });
    }
    Ok(jobs)
}

pub(super) fn finish(conn: &Connection, results: &[DeliveryResult]) -> Result<()> {
    for r in results {
        let held: Option<i64> = optional(
            conn.prepare_cached("SELECT attempts FROM webhook_deliveries WHERE id = ?1 AND lease_id = ?2")
                .and_then(|mut s| s.query_row([r.delivery_id.as_str(), &r.lease_id], |row| row.get(0))),
        )?;
        let Some(attempts) = held else {
            tracing::debug!(delivery = %r.delivery_id, "webhook result for a lease no longer held; ignored");
            continue;
        };
        let id = r.delivery_id.as_str();
        let mut counted = 0;
        if let Some(a) = &r.attempt {
            counted = 1;
            conn.prepare_cached(
                "INSERT OR REPLACE INTO webhook_attempts (delivery_id, number, started_at, http_status, latency_ms,
                                                          response_excerpt, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    attempts + 1,
                    a.started_at.unix_ms(),
                    a.http_status,
                    i64::try_from(a.latency_ms).unwrap_or(i64::MAX),
                    a.response_excerpt,
                    a.error
                ])
            })
            .map_err(db_err)?;
            // Only a change of streak touches the webhook row (most results change nothing).
            let webhook = r.webhook_id.as_str();
            if matches!(r.outcome, DeliveryOutcome::Succeeded) {
                conn.prepare_cached(
                    "UPDATE webhooks SET failing_since = NULL WHERE id = ?1 AND failing_since IS NOT NULL",
                )
                .and_then(|mut s| s.execute([webhook]))
            } else {
                conn.prepare_cached("UPDATE webhooks SET failing_since = ?2 WHERE id = ?1 AND failing_since IS NULL")
                    .and_then(|mut s| s.execute(params![webhook, a.started_at.unix_ms()]))
            }
            .map_err(db_err)?;
        }
        let (status, next, delivered) = match &r.outcome {
            DeliveryOutcome::Succeeded => {
                ("succeeded", None, r.attempt.as_ref().map(|a| a.started_at.unix_ms() + a.latency_ms as i64))
            }
            DeliveryOutcome::Retry(at) | DeliveryOutcome::Released(at) => ("pending", Some(at.unix_ms()), None),
            DeliveryOutcome::Failed => ("failed", None, None),
        };
        let attempt = r.attempt.as_ref();
        conn.prepare_cached(
            "UPDATE webhook_deliveries SET status = ?2, next_attempt_at = ?3, lease_id = NULL, attempts = attempts + ?4,
                    last_http_status = CASE WHEN ?4 = 1 THEN ?5 ELSE last_http_status END,
                    last_error = CASE WHEN ?4 = 1 THEN ?6 ELSE last_error END,
                    delivered_at = COALESCE(?7, delivered_at)
             WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                status,
                next,
                counted,
                attempt.and_then(|a| a.http_status),
                attempt.and_then(|a| a.error.clone()),
                delivered
            ])
        })
        .map_err(db_err)?;
        if let Some((reason, audit)) = &r.disable_webhook {
            let n = conn
                .prepare_cached(
                    "UPDATE webhooks SET enabled = 0, disabled_reason = ?2, updated_at = ?3 WHERE id = ?1 AND enabled = 1",
                )
                .and_then(|mut s| s.execute(params![r.webhook_id.as_str(), reason, audit.created_at.unix_ms()]))
                .map_err(db_err)?;
            if n > 0 {
                hold_deliveries(conn, &r.webhook_id)?;
                record_audit(conn, audit)?;
            }
        }
    }
    Ok(())
}

pub(super) fn list_deliveries(
    conn: &Connection,
    org: &OrganizationId,
    webhook: &WebhookId,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Page<WebhookDelivery>> {
    let before = cursor.unwrap_or("~");
    if cursor.is_some_and(|c| DeliveryId::parse(c).is_none()) {
        return Err(Error::invalid("invalid_cursor", "cursor is not one this API returned"));
    }
    let limit = limit.clamp(1, 200);
    let mut items: Vec<WebhookDelivery> = conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE webhook_id = ?1 AND org_id = ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4"
        ))
        .and_then(|mut s| {
            s.query_map(params![webhook.as_str(), org.as_str(), before, i64::from(limit) + 1], delivery)?.collect()
        })
        .map_err(db_err)?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(|d| d.id.to_string()) } else { None };
    Ok(Page { items, next_cursor })
}

pub(super) fn get_delivery(
    conn: &Connection,
    org: &OrganizationId,
    id: &DeliveryId,
) -> Result<Option<(WebhookDelivery, Vec<DeliveryAttempt>)>> {
    let Some(d) = optional(
        conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?1 AND org_id = ?2"
        ))
        .and_then(|mut s| s.query_row([id.as_str(), org.as_str()], delivery)),
    )?
    else {
        return Ok(None);
    };
    let attempts = conn
        .prepare_cached(
            "SELECT number, started_at, http_status, latency_ms, response_excerpt, error FROM webhook_attempts
             WHERE delivery_id = ?1 ORDER BY number",
        )
        .and_then(|mut s| {
            s.query_map([id.as_str()], |r| {
                Ok(DeliveryAttempt {
                    number: r.get(0)?,
                    started_at: Timestamp::from_unix_ms(r.get(1)?),
                    http_status: r.get(2)?,
                    latency_ms: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                    response_excerpt: r.get(4)?,
                    error: r.get(5)?,
                })
            })?
            .collect()
        })
        .map_err(db_err)?;
    Ok(Some((d, attempts)))
}

pub(super) fn redeliver(
    conn: &Connection,
    org: &OrganizationId,
    id: &DeliveryId,
    at: Timestamp,
) -> Result<Option<WebhookDelivery>> {
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET status = CASE WHEN status = 'held' THEN 'held' ELSE 'pending' END,
                next_attempt_at = CASE WHEN status = 'held' THEN NULL ELSE ?3 END, lease_id = NULL
         WHERE id = ?1 AND org_id = ?2",
    )
    .and_then(|mut s| s.execute(params![id.as_str(), org.as_str(), at.unix_ms()]))
    .map_err(db_err)?;
    Ok(get_delivery(conn, org, id)?.map(|(d, _)| d))
}

// ---- audit ----

pub(super) fn record_audit(conn: &Connection, a: &AuditEvent) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_events (id, org_id, actor_kind, actor_id, action, target_kind, target_id, details, created_at, before_json, after_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut s| {
        s.execute(params![
            a.id.as_str(),
            a.organization_id.as_str(),
            a.actor.kind,
            a.actor.id,
            a.action,
            a.target_kind,
            a.target_id,
            a.details.to_string(),
            a.created_at.unix_ms(),
            a.before.as_ref().map(ToString::to_string),
            a.after.as_ref().map(ToString::to_string),
        ])
    })
    .map_err(db_err)?;
    Ok(())
}

pub(super) fn list_audit(
    conn: &Connection,
    org: &OrganizationId,
    action: Option<&str>,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Page<AuditEvent>> {
    // Newest first by insertion order (ids made in the same millisecond do not sort by time).
    let before = match cursor {
        Some(c) => {
            c.parse::<i64>().map_err(|_| Error::invalid("invalid_cursor", "cursor is not one this API returned"))?
        }
        None => i64::MAX,
    };
    let limit = limit.clamp(1, 200);
    let mut items: Vec<(AuditEvent, i64)> = conn
        .prepare_cached(
            "SELECT id, org_id, actor_kind, actor_id, action, target_kind, target_id, details, created_at, rowid,
                    before_json, after_json
             FROM audit_events
             WHERE org_id = ?1 AND rowid < ?2 AND (?4 IS NULL OR action = ?4 OR (substr(?4, -1) = '.' AND substr(action, 1, length(?4)) = ?4))
             ORDER BY rowid DESC LIMIT ?3",
        )
        .and_then(|mut s| {
            s.query_map(params![org.as_str(), before, i64::from(limit) + 1, action], |r| {
                let kind: String = r.get(2)?;
                let details: String = r.get(7)?;
                let event = AuditEvent {
                    id: AuditEventId::from_raw(r.get::<_, String>(0)?),
                    organization_id: OrganizationId::from_raw(r.get::<_, String>(1)?),
                    actor: AuditActor { kind: actor_kind(&kind), id: r.get(3)? },
                    action: r.get(4)?,
                    target_kind: r.get(5)?,
                    target_id: r.get(6)?,
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                    before: r.get::<_, Option<String>>(10)?.and_then(|j| serde_json::from_str(&j).ok()),
                    after: r.get::<_, Option<String>>(11)?.and_then(|j| serde_json::from_str(&j).ok()),
                    created_at: Timestamp::from_unix_ms(r.get(8)?),
                };
                Ok((event, r.get::<_, i64>(9)?))
            })?
            .collect()
        })
        .map_err(db_err)?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(|(_, rowid)| rowid.to_string()) } else { None };
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
