//! Sends, the outbox, provider status reports and inbound messages.

use ezw_core::crypto::random_token;
use ezw_core::ids::{ConversationId, LineId, MessageId, OrganizationId};
use ezw_core::model::{Message, MessageError, MessageStatus};
use ezw_core::ports::{
    EnqueueOutcome, InboundOutcome, JobDisposition, JobResult, MessageChange, NewInbound, NewOutbound, OutboxJob,
    OutboxStats, SendTarget, StatusUpdate, UnknownResolution,
};
use ezw_core::{Error, PhoneNumber, Result, Timestamp};
use rusqlite::{params, Connection};

use super::inbox::{get_conversation, get_message, upsert_contact, upsert_conversation};
use super::rows::{self, MESSAGE_COLUMNS};
use super::{db_err, optional, webhooks};

pub(super) fn enqueue_outbound(conn: &Connection, send: &NewOutbound) -> Result<EnqueueOutcome> {
    let now = send.created_at;
    if let Some(idem) = &send.idempotency {
        let found: Option<(String, String, i64)> = optional(
            conn.prepare_cached(
                "SELECT fingerprint, message_id, expires_at FROM idempotency_keys WHERE line_id = ?1 AND key = ?2",
            )
            .and_then(|mut s| {
                s.query_row([send.line_id.as_str(), &idem.key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            }),
        )?;
        match found {
            Some((_, _, expires)) if expires <= now.unix_ms() => {
                conn.execute(
                    "DELETE FROM idempotency_keys WHERE line_id = ?1 AND key = ?2",
                    [send.line_id.as_str(), &idem.key],
                )
                .map_err(db_err)?;
            }
            Some((fingerprint, message_id, _)) => {
                let message_id = MessageId::from_raw(message_id);
                if fingerprint != idem.fingerprint {
                    return Ok(EnqueueOutcome::KeyReused { message_id });
                }
                let message = get_message(conn, Some(&send.organization_id), &message_id)?
                    .ok_or_else(|| Error::internal("idempotency record points at a missing message"))?;
                return Ok(EnqueueOutcome::Replayed(message));
            }
            None => {}
        }
    }
    let (conversation_id, recipient) = match &send.target {
        SendTarget::Phone(phone) => {
            (resolve_conversation(conn, &send.organization_id, &send.line_id, phone, now)?, phone.clone())
        }
        SendTarget::Conversation(id) => {
            let conv = get_conversation(conn, &send.organization_id, id)?
                .filter(|c| c.line_id == send.line_id)
                .ok_or_else(|| Error::not_found("conversation"))?;
            (conv.id, conv.contact_phone)
        }
    };
    let content =
        serde_json::to_string(&send.content).map_err(|e| Error::internal(format!("encoding content: {e}")))?;
    let key = send.idempotency.as_ref().map(|i| i.key.clone());
    conn.prepare_cached(
        "INSERT INTO messages (id, org_id, line_id, conversation_id, direction, kind, content, status, queued_at,
                               sent_by_user_id, idempotency_key, created_at)
         VALUES (?1, ?2, ?3, ?4, 'outbound', ?5, ?6, 'queued', ?7, ?8, ?9, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            send.message_id.as_str(),
            send.organization_id.as_str(),
            send.line_id.as_str(),
            conversation_id.as_str(),
            send.kind.as_str(),
            content,
            now.unix_ms(),
            send.sent_by_user_id.as_ref().map(|u| u.as_str().to_owned()),
            key,
        ])
    })
    .map_err(db_err)?;
    conn.prepare_cached("UPDATE conversations SET last_message_at = ?2, updated_at = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![conversation_id.as_str(), now.unix_ms()]))
        .map_err(db_err)?;
    conn.prepare_cached(
        "INSERT INTO outbox_jobs (message_id, org_id, line_id, conversation_id, recipient, available_at, is_head)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NOT EXISTS (SELECT 1 FROM outbox_jobs WHERE conversation_id = ?4))",
    )
    .and_then(|mut s| {
        s.execute(params![
            send.message_id.as_str(),
            send.organization_id.as_str(),
            send.line_id.as_str(),
            conversation_id.as_str(),
            recipient.as_str(),
            now.unix_ms()
        ])
    })
    .map_err(db_err)?;
    if let Some(idem) = &send.idempotency {
        conn.prepare_cached(
            "INSERT INTO idempotency_keys (line_id, key, org_id, fingerprint, message_id, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut s| {
            s.execute(params![
                send.line_id.as_str(),
                idem.key,
                send.organization_id.as_str(),
                idem.fingerprint,
                send.message_id.as_str(),
                now.unix_ms(),
                idem.expires_at.unix_ms()
            ])
        })
        .map_err(db_err)?;
    }
    let message = send.queued_message(conversation_id);
    webhooks::emit_message(conn, &message, &recipient)?;
    Ok(EnqueueOutcome::Created(message))
}

/// The conversation between a line and a phone number: one lookup when both exist, else the
/// contact and conversation are created.
fn resolve_conversation(
    conn: &Connection,
    org: &OrganizationId,
    line: &LineId,
    phone: &PhoneNumber,
    now: Timestamp,
) -> Result<ConversationId> {
    let found: Option<Option<String>> = optional(
        conn.prepare_cached(
            "SELECT v.id FROM contacts c LEFT JOIN conversations v ON v.contact_id = c.id AND v.line_id = ?3
             WHERE c.org_id = ?1 AND c.phone_number = ?2",
        )
        .and_then(|mut s| s.query_row([org.as_str(), phone.as_str(), line.as_str()], |r| r.get(0))),
    )?;
    if let Some(Some(id)) = found {
        return Ok(ConversationId::from_raw(id));
    }
    let contact = upsert_contact(conn, org, phone, None, now)?;
    upsert_conversation(conn, org, line, &contact, phone, now)
}

pub(super) fn claim_outbox(
    conn: &Connection,
    now: Timestamp,
    lease: std::time::Duration,
    limit: u32,
) -> Result<Vec<OutboxJob>> {
    let sql = include_str!("queries/claim_outbox.sql").replace("{MESSAGE_COLUMNS}", MESSAGE_COLUMNS);
    let candidates: Vec<(i64, String, u32, bool, Message)> = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(params![now.unix_ms(), limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, rows::message_at(r, 4)?))
            })?
            .collect::<rusqlite::Result<_>>()
        })
        .map_err(db_err)?;
    let lease_until = now.plus(lease).unix_ms();
    let mut jobs = Vec::with_capacity(candidates.len());
    for (seq, recipient, attempts, possibly_sent, message) in candidates {
        let lease_id = random_token("lease_", 12);
        conn.prepare_cached(
            "UPDATE outbox_jobs SET lease_id = ?2, lease_until = ?3, dispatched_at = NULL WHERE seq = ?1",
        )
        .and_then(|mut s| s.execute(params![seq, lease_id, lease_until]))
        .map_err(db_err)?;
        jobs.push(OutboxJob {
            message,
            recipient: PhoneNumber::from_raw(recipient),
            attempts,
            lease_id,
            possibly_sent,
        });
    }
    Ok(jobs)
}

fn status_column(status: MessageStatus) -> Option<&'static str> {
    match status {
        MessageStatus::Sent => Some("sent_at"),
        MessageStatus::Delivered => Some("delivered_at"),
        MessageStatus::Read => Some("read_at"),
        MessageStatus::Failed => Some("failed_at"),
        MessageStatus::Queued | MessageStatus::Unknown | MessageStatus::Received => None,
    }
}

pub(super) fn finish_outbox(conn: &Connection, results: &[JobResult]) -> Result<Vec<MessageChange>> {
    let mut changed = Vec::new();
    // Early status reports are rare: look them up per message only when any exist.
    let any_pending: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM pending_status_updates)")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_err)?;
    for r in results {
        let held: Option<(i64, String, String, String)> = optional(
            conn.prepare_cached(
                "SELECT attempts, org_id, line_id, conversation_id FROM outbox_jobs WHERE message_id = ?1 AND lease_id = ?2",
            )
            .and_then(|mut s| {
                s.query_row([r.message_id.as_str(), &r.lease_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            }),
        )?;
        let Some((attempts, org_id, line_id, conversation_id)) = held else {
            tracing::warn!(message = %r.message_id, "outbox result for a lease no longer held; ignored");
            continue;
        };
        let id = r.message_id.as_str();
        let counted = i64::from(r.attempt.is_some());
        if let Some(a) = &r.attempt {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO message_attempts (message_id, attempt, started_at, outcome, provider_code, error, latency_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    attempts + 1,
                    a.started_at.unix_ms(),
                    a.outcome.as_str(),
                    a.provider_code,
                    a.error,
                    i64::try_from(a.latency.as_millis()).unwrap_or(i64::MAX)
                ])
            })
            .map_err(db_err)?;
        }
        let status_changed = match &r.disposition {
            JobDisposition::Accepted { provider_message_id, at } => {
                delete_job(conn, id, &conversation_id)?;
                conn.prepare_cached(
                    "UPDATE messages SET status = CASE WHEN status IN ('queued', 'unknown') THEN 'sent' ELSE status END,
                            sent_at = COALESCE(sent_at, ?2), provider_message_id = ?3, attempts = attempts + ?4
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, at.unix_ms(), provider_message_id, counted]))
                .map_err(db_err)?;
                if any_pending {
                    apply_pending_statuses(conn, &line_id, provider_message_id)?;
                }
                true
            }
            JobDisposition::Retry { at } => {
                conn.prepare_cached(
                    "UPDATE outbox_jobs SET lease_id = NULL, lease_until = NULL, dispatched_at = NULL, available_at = ?2,
                            attempts = attempts + ?3
                     WHERE message_id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, at.unix_ms(), counted]))
                .map_err(db_err)?;
                bump_attempts(conn, id, counted)?;
                false
            }
            JobDisposition::Hold { until } => {
                conn.prepare_cached(
                    "UPDATE outbox_jobs SET lease_id = NULL, lease_until = NULL, dispatched_at = NULL, available_at = ?2
                     WHERE message_id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, until.unix_ms()]))
                .map_err(db_err)?;
                false
            }
            JobDisposition::Failed { error, at } => {
                delete_job(conn, id, &conversation_id)?;
                conn.prepare_cached(
                    "UPDATE messages SET status = 'failed', failed_at = ?2, error_code = ?3, error_message = ?4,
                            attempts = attempts + ?5
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, at.unix_ms(), error.code, error.message, counted]))
                .map_err(db_err)?;
                true
            }
            JobDisposition::Unknown { .. } => {
                delete_job(conn, id, &conversation_id)?;
                conn.prepare_cached("UPDATE messages SET status = 'unknown', attempts = attempts + ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![id, counted]))
                    .map_err(db_err)?;
                true
            }
        };
        if status_changed {
            let (org, line) = (OrganizationId::from_raw(org_id), LineId::from_raw(line_id));
            webhooks::emit_status(conn, &org, &line, &r.message_id, r.disposition.at())?;
            let status: String = conn
                .prepare_cached("SELECT status FROM messages WHERE id = ?1")
                .and_then(|mut s| s.query_row([id], |row| row.get(0)))
                .map_err(db_err)?;
            changed.push(MessageChange {
                id: r.message_id.clone(),
                organization_id: org,
                line_id: line,
                conversation_id: ConversationId::from_raw(conversation_id),
                status: MessageStatus::parse(&status).unwrap_or(MessageStatus::Queued),
            });
        }
    }
    Ok(changed)
}

/// Deletes a finished job and makes the next job of its conversation the head.
fn delete_job(conn: &Connection, message_id: &str, conversation_id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM outbox_jobs WHERE message_id = ?1")
        .and_then(|mut s| s.execute([message_id]))
        .map_err(db_err)?;
    conn.prepare_cached(
        "UPDATE outbox_jobs SET is_head = 1
         WHERE seq = (SELECT MIN(seq) FROM outbox_jobs WHERE conversation_id = ?1) AND is_head = 0",
    )
    .and_then(|mut s| s.execute([conversation_id]))
    .map_err(db_err)?;
    Ok(())
}

fn bump_attempts(conn: &Connection, message_id: &str, by: i64) -> Result<()> {
    if by > 0 {
        conn.prepare_cached("UPDATE messages SET attempts = attempts + ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![message_id, by]))
            .map_err(db_err)?;
    }
    Ok(())
}

/// Applies status reports that arrived before the provider id was known.
fn apply_pending_statuses(conn: &Connection, line: &str, provider_id: &str) -> Result<()> {
    let pending: Vec<(String, i64, Option<String>, Option<String>)> = conn
        .prepare_cached(
            "SELECT status, at, error_code, error_message FROM pending_status_updates
             WHERE line_id = ?1 AND provider_message_id = ?2 ORDER BY at",
        )
        .and_then(|mut s| {
            s.query_map([line, provider_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(db_err)?;
    if pending.is_empty() {
        return Ok(());
    }
    conn.execute(
        "DELETE FROM pending_status_updates WHERE line_id = ?1 AND provider_message_id = ?2",
        [line, provider_id],
    )
    .map_err(db_err)?;
    for (status, at, code, msg) in pending {
        let Some(status) = MessageStatus::parse(&status) else { continue };
        let update = StatusUpdate {
            line_id: LineId::from_raw(line),
            provider_message_id: provider_id.to_owned(),
            message_id: None,
            status,
            at: Timestamp::from_unix_ms(at),
            error: code.map(|code| MessageError { code, message: msg.unwrap_or_default() }),
        };
        apply_status(conn, &update, at)?;
    }
    Ok(())
}

/// Applies one status report, forward only; returns the change, if any. Reports for unknown
/// provider ids are kept until the id is recorded.
fn apply_status(conn: &Connection, u: &StatusUpdate, received_at: i64) -> Result<Option<MessageChange>> {
    let Some(column) = status_column(u.status) else { return Ok(None) };
    let row: Option<(String, String, String, String)> = optional(
        conn.prepare_cached(
            "SELECT id, status, org_id, conversation_id FROM messages WHERE line_id = ?1 AND provider_message_id = ?2",
        )
        .and_then(|mut s| {
            s.query_row([u.line_id.as_str(), &u.provider_message_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
        }),
    )?;
    let row = match (row, &u.message_id) {
        (None, Some(ours)) => claim_provider_id(conn, u, ours)?,
        (row, _) => row,
    };
    let Some((id, current, org_id, conversation_id)) = row else {
        conn.prepare_cached(
            "INSERT INTO pending_status_updates (line_id, provider_message_id, status, at, error_code, error_message, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut s| {
            s.execute(params![
                u.line_id.as_str(),
                u.provider_message_id,
                u.status.as_str(),
                u.at.unix_ms(),
                u.error.as_ref().map(|e| e.code.clone()),
                u.error.as_ref().map(|e| e.message.clone()),
                received_at
            ])
        })
        .map_err(db_err)?;
        return Ok(None);
    };
    let current = MessageStatus::parse(&current).unwrap_or(MessageStatus::Queued);
    let advance = current.can_advance_to(u.status);
    // A failure never overwrites delivered/read; a late lower status only fills its timestamp.
    if u.status == MessageStatus::Failed && !advance {
        return Ok(None);
    }
    let n = if advance {
        let sql = format!(
            "UPDATE messages SET status = ?2, {column} = COALESCE({column}, ?3),
                    error_code = COALESCE(?4, error_code), error_message = COALESCE(?5, error_message)
             WHERE id = ?1"
        );
        let error = u.error.as_ref();
        conn.prepare_cached(&sql).and_then(|mut s| {
            s.execute(params![
                id,
                u.status.as_str(),
                u.at.unix_ms(),
                error.map(|e| e.code.clone()),
                error.map(|e| e.message.clone())
            ])
        })
    } else {
        let sql = format!("UPDATE messages SET {column} = ?2 WHERE id = ?1 AND {column} IS NULL");
        conn.prepare_cached(&sql).and_then(|mut s| s.execute(params![id, u.at.unix_ms()]))
    }
    .map_err(db_err)?;
    let (id, org_id) = (MessageId::from_raw(id), OrganizationId::from_raw(org_id));
    if n > 0 {
        webhooks::emit_status(conn, &org_id, &u.line_id, &id, Timestamp::from_unix_ms(received_at))?;
    }
    Ok((n > 0).then(|| MessageChange {
        id,
        organization_id: org_id,
        line_id: u.line_id.clone(),
        conversation_id: ConversationId::from_raw(conversation_id),
        status: if advance { u.status } else { current },
    }))
}

/// A report that names our message id (and a provider id we never learned, e.g. after an
/// ambiguous send): the message of that line takes the provider id, then the report applies.
fn claim_provider_id(
    conn: &Connection,
    u: &StatusUpdate,
    ours: &MessageId,
) -> Result<Option<(String, String, String, String)>> {
    let row: Option<(String, String, String, String, Option<String>)> = optional(
        conn.prepare_cached(
            "SELECT id, status, org_id, conversation_id, provider_message_id FROM messages WHERE id = ?1 AND line_id = ?2",
        )
        .and_then(|mut s| {
            s.query_row([ours.as_str(), u.line_id.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
        }),
    )?;
    let Some((id, status, org, conv, known)) = row else { return Ok(None) };
    match known {
        Some(known) if known != u.provider_message_id => {
            tracing::warn!(message = %id, "status report names our message with another provider id; ignored");
            return Ok(None);
        }
        Some(_) => {}
        None => {
            conn.prepare_cached("UPDATE messages SET provider_message_id = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, u.provider_message_id]))
                .map_err(db_err)?;
        }
    }
    Ok(Some((id, status, org, conv)))
}

pub(super) fn apply_status_updates(
    conn: &Connection,
    updates: &[StatusUpdate],
    now: Timestamp,
) -> Result<Vec<MessageChange>> {
    let mut changed: Vec<MessageChange> = Vec::new();
    for u in updates {
        if let Some(change) = apply_status(conn, u, now.unix_ms())? {
            match changed.iter_mut().find(|c| c.id == change.id) {
                Some(existing) => *existing = change,
                None => changed.push(change),
            }
        }
    }
    Ok(changed)
}

pub(super) fn record_inbound(conn: &Connection, messages: &[NewInbound]) -> Result<Vec<InboundOutcome>> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let exists: Option<i64> = optional(
            conn.prepare_cached("SELECT 1 FROM messages WHERE line_id = ?1 AND provider_message_id = ?2")
                .and_then(|mut s| s.query_row([m.line_id.as_str(), &m.provider_message_id], |r| r.get(0))),
        )?;
        if exists.is_some() {
            out.push(InboundOutcome::Duplicate);
            continue;
        }
        let at = m.received_at;
        let contact = upsert_contact(conn, &m.organization_id, &m.from, m.profile_name.as_deref(), at)?;
        let conv_id: ConversationId = upsert_conversation(conn, &m.organization_id, &m.line_id, &contact, &m.from, at)?;
        let id = MessageId::generate(at.unix_ms());
        let content =
            serde_json::to_string(&m.content).map_err(|e| Error::internal(format!("encoding content: {e}")))?;
        conn.prepare_cached(
            "INSERT INTO messages (id, org_id, line_id, conversation_id, direction, kind, content, status, queued_at,
                                   provider_message_id, created_at)
             VALUES (?1, ?2, ?3, ?4, 'inbound', ?5, ?6, 'received', ?7, ?8, ?7)",
        )
        .and_then(|mut s| {
            s.execute(params![
                id.as_str(),
                m.organization_id.as_str(),
                m.line_id.as_str(),
                conv_id.as_str(),
                m.kind.as_str(),
                content,
                at.unix_ms(),
                m.provider_message_id
            ])
        })
        .map_err(db_err)?;
        conn.prepare_cached(
            "UPDATE conversations SET last_message_at = MAX(COALESCE(last_message_at, 0), ?2),
                    last_inbound_at = MAX(COALESCE(last_inbound_at, 0), ?2), updated_at = ?2
             WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![conv_id.as_str(), at.unix_ms()]))
        .map_err(db_err)?;
        let message = get_message(conn, None, &id)?.ok_or_else(|| Error::internal("inserted message vanished"))?;
        webhooks::emit_message(conn, &message, &m.from)?;
        let conversation = get_conversation(conn, &m.organization_id, &conv_id)?
            .ok_or_else(|| Error::internal("conversation vanished"))?;
        out.push(InboundOutcome::Created { message: Box::new(message), conversation: Box::new(conversation) });
    }
    Ok(out)
}

pub(super) fn purge_idempotency(conn: &Connection, now: Timestamp) -> Result<u64> {
    let n = conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?1", [now.unix_ms()]).map_err(db_err)?;
    Ok(n as u64)
}

pub(super) fn outbox_stats(conn: &Connection) -> Result<OutboxStats> {
    let depth_by_line = conn
        .prepare_cached("SELECT line_id, COUNT(*) FROM outbox_jobs GROUP BY line_id ORDER BY line_id")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((LineId::from_raw(r.get::<_, String>(0)?), u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0)))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err)?;
    let unknown: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM messages WHERE status = 'unknown'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_err)?;
    Ok(OutboxStats { depth_by_line, unknown_messages: u64::try_from(unknown).unwrap_or(0) })
}

pub(super) fn resolve_unknown(
    conn: &Connection,
    org: &OrganizationId,
    id: &MessageId,
    resolution: UnknownResolution,
    at: Timestamp,
) -> Result<Option<Message>> {
    let Some(m) = get_message(conn, Some(org), id)? else { return Ok(None) };
    if m.status != MessageStatus::Unknown {
        return Err(Error::conflict("not_unknown", format!("the message is {}, not unknown", m.status.as_str())));
    }
    match resolution {
        UnknownResolution::Resend => {
            conn.prepare_cached("UPDATE messages SET status = 'queued' WHERE id = ?1")
                .and_then(|mut s| s.execute([id.as_str()]))
                .map_err(db_err)?;
            let recipient: String = conn
                .prepare_cached("SELECT contact_phone FROM conversations WHERE id = ?1")
                .and_then(|mut s| s.query_row([m.conversation_id.as_str()], |r| r.get(0)))
                .map_err(db_err)?;
            conn.prepare_cached(
                "INSERT INTO outbox_jobs (message_id, org_id, line_id, conversation_id, recipient, available_at, attempts, is_head)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NOT EXISTS (SELECT 1 FROM outbox_jobs WHERE conversation_id = ?4))",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id.as_str(),
                    org.as_str(),
                    m.line_id.as_str(),
                    m.conversation_id.as_str(),
                    recipient,
                    at.unix_ms(),
                    m.attempts
                ])
            })
            .map_err(db_err)?;
        }
        UnknownResolution::Sent => {
            conn.prepare_cached("UPDATE messages SET status = 'sent', sent_at = COALESCE(sent_at, ?2) WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id.as_str(), at.unix_ms()]))
                .map_err(db_err)?;
        }
        UnknownResolution::Fail => {
            conn.prepare_cached(
                "UPDATE messages SET status = 'failed', failed_at = ?2, error_code = 'operator_failed',
                        error_message = 'an operator marked this message failed after its send outcome was unknown'
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id.as_str(), at.unix_ms()]))
            .map_err(db_err)?;
        }
    }
    webhooks::emit_status(conn, org, &m.line_id, id, at)?;
    get_message(conn, Some(org), id)
}

/// Marks claimed jobs as dispatched (their provider calls start now); returns, in order, whether
/// each lease is still held (a job whose lease was lost must not be sent).
pub(super) fn mark_dispatched(conn: &Connection, leases: &[(MessageId, String)], at: Timestamp) -> Result<Vec<bool>> {
    let mut held = Vec::with_capacity(leases.len());
    for (id, lease) in leases {
        let n = conn
            .prepare_cached("UPDATE outbox_jobs SET dispatched_at = ?3 WHERE message_id = ?1 AND lease_id = ?2")
            .and_then(|mut s| s.execute(params![id.as_str(), lease, at.unix_ms()]))
            .map_err(db_err)?;
        held.push(n == 1);
    }
    Ok(held)
}
