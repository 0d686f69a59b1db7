//! Provider status reports: applied forward only; a report for a provider id not recorded yet
//! is kept in `pending_status_updates` and applied when the id is recorded (`finish_outbox`).
//!
//! A report and the recording of its provider id can run at once on two nodes. Both first take
//! a transaction advisory lock on the bucket of the (line, provider id) pair (the report
//! exclusively, [`lock_provider_ids`]; the recorder shared) and only then read, so either the
//! report sees the recorded id or the recorder sees the kept report.

use ezw_core::ids::{ConversationId, LineId, MessageId, OrganizationId};
use ezw_core::model::{MessageError, MessageStatus};
use ezw_core::ports::{MessageChange, StatusUpdate};
use ezw_core::{Result, Timestamp};

use super::super::events::Emitter;
use super::super::rows::get;
use super::super::{bad_value, db_err, Tx};

/// The first key of the advisory locks on (line, provider id) pairs (the two-key form, so it
/// never meets single-key locks such as the migration lock).
pub(super) const PROVIDER_ID_LOCK: i32 = 0x657a_7770;

/// The second key of a pair's lock, as SQL over columns `line` and `pid`: one of 64 buckets, so
/// a batch takes at most 64 advisory locks however large it is (PostgreSQL's lock table is
/// sized at `max_locks_per_transaction` per connection).
pub(super) const PROVIDER_ID_KEY: &str = "(hashtext(line || ' ' || pid) & 63)";

/// Locks the buckets of the (line, provider id) pairs exclusively for this transaction, in one
/// sorted pass (no deadlocks between two lockers). Finishes that record provider ids hold their
/// buckets shared, so they never wait for each other, only for a status report that may have
/// to keep its update for later, and the report only for them.
pub(super) async fn lock_provider_ids(tx: &Tx<'_>, lines: &[&str], pids: &[&str]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT COUNT(pg_advisory_xact_lock($3::INT4, k.key)) FROM (
                 SELECT DISTINCT {PROVIDER_ID_KEY} AS key FROM unnest($1::TEXT[], $2::TEXT[]) AS u(line, pid) ORDER BY 1
             ) k"
        ))
        .await
        .map_err(db_err)?;
    tx.query_one(&stmt, &[&lines, &pids, &PROVIDER_ID_LOCK]).await.map_err(db_err)?;
    Ok(())
}

/// The message a report applies to: id, status, organization, conversation.
type Target = (String, String, String, String);

/// The timestamp column a status fills.
fn status_column(status: MessageStatus) -> Option<&'static str> {
    match status {
        MessageStatus::Sent => Some("sent_at"),
        MessageStatus::Delivered => Some("delivered_at"),
        MessageStatus::Read => Some("read_at"),
        MessageStatus::Failed => Some("failed_at"),
        MessageStatus::Queued | MessageStatus::Unknown | MessageStatus::Received => None,
    }
}

/// Applies reports in order (the caller holds their provider-id locks); a message changed by
/// several is returned once, with its last status.
pub(super) async fn apply_all(
    tx: &Tx<'_>,
    emitter: &mut Emitter,
    updates: &[StatusUpdate],
    now: Timestamp,
) -> Result<Vec<MessageChange>> {
    let mut changed: Vec<MessageChange> = Vec::new();
    for u in updates {
        if let Some(change) = apply_status(tx, emitter, u, now.unix_ms()).await? {
            match changed.iter_mut().find(|c| c.id == change.id) {
                Some(existing) => *existing = change,
                None => changed.push(change),
            }
        }
    }
    Ok(changed)
}

/// Applies one status report, forward only; returns the change, if any. Reports for unknown
/// provider ids are kept until the id is recorded. The message row is locked while it is
/// decided on.
pub(super) async fn apply_status(
    tx: &Tx<'_>,
    emitter: &mut Emitter,
    u: &StatusUpdate,
    received_at: i64,
) -> Result<Option<MessageChange>> {
    let Some(column) = status_column(u.status) else { return Ok(None) };
    let stmt = tx
        .prepare_cached(
            "SELECT id, status, org_id, conversation_id FROM messages
             WHERE line_id = $1 AND provider_message_id = $2 FOR UPDATE",
        )
        .await
        .map_err(db_err)?;
    let row = tx.query_opt(&stmt, &[&u.line_id.as_str(), &u.provider_message_id]).await.map_err(db_err)?;
    let target: Option<Target> = match row {
        Some(r) => Some((get(&r, 0)?, get(&r, 1)?, get(&r, 2)?, get(&r, 3)?)),
        None => None,
    };
    let target = match (target, &u.message_id) {
        (None, Some(ours)) => claim_provider_id(tx, u, ours).await?,
        (target, _) => target,
    };
    let Some((id, current, org_id, conversation_id)) = target else {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO pending_status_updates (line_id, provider_message_id, status, at, error_code,
                                                     error_message, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .await
            .map_err(db_err)?;
        tx.execute(
            &stmt,
            &[
                &u.line_id.as_str(),
                &u.provider_message_id,
                &u.status.as_str(),
                &u.at.unix_ms(),
                &u.error.as_ref().map(|e| e.code.as_str()),
                &u.error.as_ref().map(|e| e.message.as_str()),
                &received_at,
            ],
        )
        .await
        .map_err(db_err)?;
        return Ok(None);
    };
    let current = MessageStatus::parse(&current).ok_or_else(|| bad_value("message status", &current))?;
    let advance = current.can_advance_to(u.status);
    // A failure never overwrites delivered/read; a late lower status only fills its timestamp.
    if u.status == MessageStatus::Failed && !advance {
        return Ok(None);
    }
    let n = if advance {
        let stmt = tx
            .prepare_cached(&format!(
                "UPDATE messages SET status = $2, {column} = COALESCE({column}, $3),
                        error_code = COALESCE($4, error_code), error_message = COALESCE($5, error_message)
                 WHERE id = $1"
            ))
            .await
            .map_err(db_err)?;
        let error = u.error.as_ref();
        tx.execute(
            &stmt,
            &[
                &id,
                &u.status.as_str(),
                &u.at.unix_ms(),
                &error.map(|e| e.code.as_str()),
                &error.map(|e| e.message.as_str()),
            ],
        )
        .await
    } else {
        let stmt = tx
            .prepare_cached(&format!("UPDATE messages SET {column} = $2 WHERE id = $1 AND {column} IS NULL"))
            .await
            .map_err(db_err)?;
        tx.execute(&stmt, &[&id, &u.at.unix_ms()]).await
    }
    .map_err(db_err)?;
    if n == 0 {
        return Ok(None);
    }
    let (id, org_id) = (MessageId::from_raw(id), OrganizationId::from_raw(org_id));
    emitter.status(tx, &org_id, &u.line_id, &id, Timestamp::from_unix_ms(received_at)).await?;
    Ok(Some(MessageChange {
        id,
        organization_id: org_id,
        line_id: u.line_id.clone(),
        conversation_id: ConversationId::from_raw(conversation_id),
        status: if advance { u.status } else { current },
    }))
}

/// A report that names our message id (and a provider id we never learned, e.g. after an
/// ambiguous send): the message of that line takes the provider id, then the report applies.
async fn claim_provider_id(tx: &Tx<'_>, u: &StatusUpdate, ours: &MessageId) -> Result<Option<Target>> {
    let stmt = tx
        .prepare_cached(
            "SELECT id, status, org_id, conversation_id, provider_message_id FROM messages
             WHERE id = $1 AND line_id = $2 FOR UPDATE",
        )
        .await
        .map_err(db_err)?;
    let Some(row) = tx.query_opt(&stmt, &[&ours.as_str(), &u.line_id.as_str()]).await.map_err(db_err)? else {
        return Ok(None);
    };
    let (id, status, org, conv): Target = (get(&row, 0)?, get(&row, 1)?, get(&row, 2)?, get(&row, 3)?);
    match get::<Option<String>>(&row, 4)? {
        Some(known) if known != u.provider_message_id => {
            tracing::warn!(message = %id, "status report names our message with another provider id; ignored");
            return Ok(None);
        }
        Some(_) => {}
        None => {
            let stmt = tx
                .prepare_cached("UPDATE messages SET provider_message_id = $2 WHERE id = $1")
                .await
                .map_err(db_err)?;
            tx.execute(&stmt, &[&id, &u.provider_message_id]).await.map_err(db_err)?;
        }
    }
    Ok(Some((id, status, org, conv)))
}

/// Status reports kept for provider ids just recorded, taken out of `pending_status_updates`
/// (the caller holds the pairs' locks): per (line, provider id), the reports oldest first.
pub(super) async fn take_pending(
    tx: &Tx<'_>,
    lines: &[&str],
    pids: &[&str],
) -> Result<std::collections::HashMap<(String, String), Vec<StatusUpdate>>> {
    let mut out: std::collections::HashMap<(String, String), Vec<StatusUpdate>> = std::collections::HashMap::new();
    if lines.is_empty() {
        return Ok(out);
    }
    let stmt = tx
        .prepare_cached(
            "DELETE FROM pending_status_updates p
             WHERE p.ctid = ANY (ARRAY(
                 SELECT k.ctid FROM unnest($1::TEXT[], $2::TEXT[]) AS u(line, pid)
                 CROSS JOIN LATERAL (
                     SELECT q.ctid FROM pending_status_updates q
                     WHERE q.line_id = u.line AND q.provider_message_id = u.pid OFFSET 0
                 ) k))
             RETURNING p.line_id, p.provider_message_id, p.status, p.at, p.error_code, p.error_message",
        )
        .await
        .map_err(db_err)?;
    for r in tx.query(&stmt, &[&lines, &pids]).await.map_err(db_err)? {
        let (line, pid): (String, String) = (get(&r, 0)?, get(&r, 1)?);
        let Some(status) = MessageStatus::parse(get(&r, 2)?) else { continue };
        let message: Option<String> = get(&r, 5)?;
        let error =
            get::<Option<String>>(&r, 4)?.map(|code| MessageError { code, message: message.unwrap_or_default() });
        let update = StatusUpdate {
            line_id: LineId::from_raw(line.clone()),
            provider_message_id: pid.clone(),
            message_id: None,
            status,
            at: Timestamp::from_unix_ms(get(&r, 3)?),
            error,
        };
        out.entry((line, pid)).or_default().push(update);
    }
    for list in out.values_mut() {
        list.sort_by_key(|u| u.at);
    }
    Ok(out)
}
