//! Sends, the outbox, provider status reports and inbound messages: the multi-node hot path.
//!
//! # Concurrency
//!
//! The queue paths run `READ COMMITTED` and lock explicitly:
//!
//! - **Heads.** Every transaction that adds a job, deletes one or promotes the next head first
//!   locks the conversation row (several: in id order). A later statement then sees every job
//!   change committed by earlier lock holders, so a new job is head exactly when its
//!   conversation has no other job, and a finished job's successor is promoted exactly once.
//! - **Claims** lock due heads with `FOR UPDATE SKIP LOCKED` in one statement: nodes never wait
//!   for each other and never take the same job; the lease (unique per job and claim) is then
//!   what later writes must name, and writes with a stale lease change nothing.
//! - **Idempotency keys** are taken with `INSERT ... ON CONFLICT`: a second sender with the same
//!   key waits for the first to commit, then replays its message (or reports the key reused).
//! - **Contacts and conversations** are created with `ON CONFLICT` upserts (`contacts`).
//! - **Provider ids**: recording one and applying a report for it lock the (line, provider id)
//!   pair first (`status`), so a report racing the recording is never stranded.

mod contacts;
mod inbound;
mod status;

use std::collections::{HashMap, HashSet};

use ezw_core::crypto::random_token;
use ezw_core::ids::{ConversationId, LineId, MessageId, OrganizationId};
use ezw_core::model::{Message, MessageStatus};
use ezw_core::ports::{
    EnqueueOutcome, IdempotencyClaim, JobDisposition, JobResult, MessageChange, NewOutbound, OutboxJob, OutboxStats,
    SendTarget, StatusUpdate, UnknownResolution,
};
use ezw_core::{Error, ErrorKind, PhoneNumber, Result, Timestamp};

pub(crate) use inbound::record_inbound;

use super::events::Emitter;
use super::rows::{self, get, to_json, MESSAGE_COLUMNS};
use super::{bad_value, count, db_err, Db, Tx, CONTENTION};

/// Accepts an outbound message (`READ COMMITTED`): the idempotency key first (it orders
/// concurrent senders of one key), then the conversation, locked, then the message and its job.
pub(crate) async fn enqueue_outbound(db: &Db, send: &NewOutbound) -> Result<EnqueueOutcome> {
    let mut conn = db.conn().await?;
    let tx = Db::read_committed(&mut conn).await?;
    let now = send.created_at;
    if let Some(idem) = &send.idempotency {
        if let Some(earlier) = take_key(&tx, send, idem).await? {
            tx.commit().await.map_err(db_err)?;
            return Ok(earlier);
        }
    }
    let mut emitter = Emitter::new();
    let (conversation_id, recipient) = match &send.target {
        SendTarget::Phone(phone) => (phone_conversation(&tx, &mut emitter, send, phone).await?, phone.clone()),
        SendTarget::Conversation(id) => {
            // Locks the conversation (it gets a job below) and checks it is of this line.
            let stmt = tx
                .prepare_cached(
                    "UPDATE conversations SET last_message_at = $4, updated_at = $4
                     WHERE id = $1 AND org_id = $2 AND line_id = $3 RETURNING contact_phone",
                )
                .await
                .map_err(db_err)?;
            let row = tx
                .query_opt(
                    &stmt,
                    &[&id.as_str(), &send.organization_id.as_str(), &send.line_id.as_str(), &now.unix_ms()],
                )
                .await
                .map_err(db_err)?
                .ok_or_else(|| Error::not_found("conversation"))?;
            (id.clone(), PhoneNumber::from_raw(get::<String>(&row, 0)?))
        }
    };
    let content = to_json(&send.content)?;
    let key = send.idempotency.as_ref().map(|i| i.key.as_str());
    // With the conversation locked, the statement sees every job committed for it.
    let stmt = tx
        .prepare_cached(
            "WITH m AS (
                 INSERT INTO messages (id, org_id, line_id, conversation_id, direction, kind, content, status,
                                       queued_at, sent_by_user_id, idempotency_key, created_at)
                 VALUES ($1, $2, $3, $4, 'outbound', $5, $6, 'queued', $7, $8, $9, $7)
                 RETURNING id
             )
             INSERT INTO outbox_jobs (message_id, org_id, line_id, conversation_id, recipient, available_at, is_head)
             SELECT m.id, $2, $3, $4, $10, $7, NOT EXISTS (SELECT 1 FROM outbox_jobs WHERE conversation_id = $4)
             FROM m",
        )
        .await
        .map_err(db_err)?;
    tx.execute(
        &stmt,
        &[
            &send.message_id.as_str(),
            &send.organization_id.as_str(),
            &send.line_id.as_str(),
            &conversation_id.as_str(),
            &send.kind.as_str(),
            &content,
            &now.unix_ms(),
            &send.sent_by_user_id.as_ref().map(|u| u.as_str()),
            &key,
            &recipient.as_str(),
        ],
    )
    .await
    .map_err(db_err)?;
    let message = send.queued_message(conversation_id);
    emitter.message(&tx, &message, &recipient).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(EnqueueOutcome::Created(message))
}

/// Takes the idempotency key for this send: inserted, or replacing an expired record (`None`:
/// go on and create the message). A live record decides the outcome instead: `Replayed` with
/// the same fingerprint, `KeyReused` with another. A concurrent sender of the same key holds
/// its uncommitted record until it commits; `ON CONFLICT` waits for it and then sees it.
async fn take_key(tx: &Tx<'_>, send: &NewOutbound, idem: &IdempotencyClaim) -> Result<Option<EnqueueOutcome>> {
    let now = send.created_at.unix_ms();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO idempotency_keys AS k (line_id, key, org_id, fingerprint, message_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (line_id, key) DO UPDATE
                SET org_id = EXCLUDED.org_id, fingerprint = EXCLUDED.fingerprint, message_id = EXCLUDED.message_id,
                    created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
                WHERE k.expires_at <= EXCLUDED.created_at
             RETURNING 1",
        )
        .await
        .map_err(db_err)?;
    let taken = tx
        .query_opt(
            &stmt,
            &[
                &send.line_id.as_str(),
                &idem.key,
                &send.organization_id.as_str(),
                &idem.fingerprint,
                &send.message_id.as_str(),
                &now,
                &idem.expires_at.unix_ms(),
            ],
        )
        .await
        .map_err(db_err)?;
    if taken.is_some() {
        return Ok(None);
    }
    // A live record, now locked by the upsert above: read it and its message.
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT k.fingerprint, k.message_id, {MESSAGE_COLUMNS} FROM idempotency_keys k
             LEFT JOIN messages m ON m.id = k.message_id AND m.org_id = $3
             WHERE k.line_id = $1 AND k.key = $2"
        ))
        .await
        .map_err(db_err)?;
    let row = tx
        .query_opt(&stmt, &[&send.line_id.as_str(), &idem.key, &send.organization_id.as_str()])
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::new(ErrorKind::Temporary, CONTENTION, "the idempotency record changed meanwhile"))?;
    let message_id = MessageId::from_raw(get::<String>(&row, 1)?);
    if get::<&str>(&row, 0)? != idem.fingerprint {
        return Ok(Some(EnqueueOutcome::KeyReused { message_id }));
    }
    if get::<Option<&str>>(&row, 2)?.is_none() {
        return Err(Error::internal("idempotency record points at a missing message"));
    }
    Ok(Some(EnqueueOutcome::Replayed(rows::message_at(&row, 2)?)))
}

/// The conversation between the send's line and `phone`, locked and touched: one statement
/// when it exists, else the contact and conversation are created (`chats.post` when new).
async fn phone_conversation(
    tx: &Tx<'_>,
    emitter: &mut Emitter,
    send: &NewOutbound,
    phone: &PhoneNumber,
) -> Result<ConversationId> {
    let (org, line, now) = (&send.organization_id, &send.line_id, send.created_at);
    let stmt = tx
        .prepare_cached(
            "UPDATE conversations v SET last_message_at = $4, updated_at = $4
             FROM contacts c
             WHERE c.org_id = $1 AND c.phone_number = $2 AND v.contact_id = c.id AND v.line_id = $3
             RETURNING v.id",
        )
        .await
        .map_err(db_err)?;
    let found =
        tx.query_opt(&stmt, &[&org.as_str(), &phone.as_str(), &line.as_str(), &now.unix_ms()]).await.map_err(db_err)?;
    if let Some(row) = found {
        return Ok(ConversationId::from_raw(get::<String>(&row, 0)?));
    }
    let contact = contacts::upsert_contact(tx, org, phone, None, now).await?;
    let id = contacts::upsert_conversation(tx, emitter, org, line, &contact, phone, now).await?;
    let stmt = tx
        .prepare_cached("UPDATE conversations SET last_message_at = $2, updated_at = $2 WHERE id = $1")
        .await
        .map_err(db_err)?;
    tx.execute(&stmt, &[&id.as_str(), &now.unix_ms()]).await.map_err(db_err)?;
    Ok(id)
}

/// Claims up to `limit` due, unleased conversation heads, oldest due first, in one statement
/// (`FOR UPDATE SKIP LOCKED`: concurrent claimers take disjoint jobs without waiting). Each job
/// gets its own lease id (a random token of this claim and the job's sequence number). A job
/// whose expired lease had been dispatched comes back `possibly_sent`.
pub(crate) async fn claim_outbox(
    db: &Db,
    now: Timestamp,
    lease: std::time::Duration,
    limit: u32,
) -> Result<Vec<OutboxJob>> {
    let mut conn = db.conn().await?;
    let tx = Db::read_committed(&mut conn).await?;
    let stmt = tx
        .prepare_cached(&format!(
            "WITH c AS (
                 SELECT seq, lease_id IS NOT NULL AND dispatched_at IS NOT NULL AS possibly_sent
                 FROM outbox_jobs
                 WHERE is_head AND available_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
                 ORDER BY available_at, seq
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ), u AS (
                 UPDATE outbox_jobs j SET lease_id = $3::TEXT || j.seq::TEXT, lease_until = $4, dispatched_at = NULL
                 WHERE j.seq = ANY (ARRAY(SELECT seq FROM c))
                 RETURNING j.seq, j.message_id, j.recipient, j.attempts, j.lease_id, j.available_at
             )
             SELECT u.recipient, u.attempts, c.possibly_sent, u.lease_id, {MESSAGE_COLUMNS}
             FROM u JOIN c ON c.seq = u.seq JOIN messages m ON m.id = u.message_id
             WHERE m.id = ANY (ARRAY(SELECT message_id FROM u))
             ORDER BY u.available_at, u.seq"
        ))
        .await
        .map_err(db_err)?;
    let token = format!("{}.", random_token("lease_", 12));
    let rows = tx
        .query(&stmt, &[&now.unix_ms(), &i64::from(limit), &token, &now.plus(lease).unix_ms()])
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    let mut jobs = Vec::with_capacity(rows.len());
    for r in &rows {
        jobs.push(OutboxJob {
            recipient: PhoneNumber::from_raw(get::<String>(r, 0)?),
            attempts: rows::u32_at(r, 1)?,
            possibly_sent: get(r, 2)?,
            lease_id: get(r, 3)?,
            message: rows::message_at(r, 4)?,
        });
    }
    Ok(jobs)
}

/// Marks claimed jobs dispatched in one statement; returns, in order, whether each lease is
/// still held.
pub(crate) async fn mark_dispatched(db: &Db, leases: &[(MessageId, String)], at: Timestamp) -> Result<Vec<bool>> {
    let mut conn = db.conn().await?;
    let tx = Db::read_committed(&mut conn).await?;
    let ids: Vec<&str> = leases.iter().map(|(id, _)| id.as_str()).collect();
    let lease_ids: Vec<&str> = leases.iter().map(|(_, lease)| lease.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "UPDATE outbox_jobs j SET dispatched_at = $3
             FROM unnest($1::TEXT[], $2::TEXT[]) AS u(id, lease)
             WHERE j.message_id = ANY ($1) AND j.message_id = u.id AND j.lease_id = u.lease
             RETURNING j.message_id, j.lease_id",
        )
        .await
        .map_err(db_err)?;
    let rows = tx.query(&stmt, &[&ids, &lease_ids, &at.unix_ms()]).await.map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    let mut held: HashSet<(String, String)> = HashSet::with_capacity(rows.len());
    for r in &rows {
        held.insert((get(r, 0)?, get(r, 1)?));
    }
    Ok(leases.iter().map(|(id, lease)| held.contains(&(id.as_str().to_owned(), lease.clone()))).collect())
}

/// A job taken by a result under its lease.
struct Held {
    /// Attempts before this result.
    attempts: i64,
    /// Organization.
    org_id: String,
    /// Line.
    line_id: String,
    /// Conversation.
    conversation_id: String,
}

/// Whether a disposition ends the job (it is deleted and the next job becomes head).
fn is_terminal(d: &JobDisposition) -> bool {
    matches!(d, JobDisposition::Accepted { .. } | JobDisposition::Failed { .. } | JobDisposition::Unknown { .. })
}

/// Records outcomes of claimed jobs (`READ COMMITTED`) with a few set-based statements:
/// lock the results' conversations (id order) and accepted provider ids; delete finished jobs
/// and reschedule the others (only where the lease is still held); log attempts; update the
/// messages; promote the next heads; apply status reports kept for the new provider ids.
pub(crate) async fn finish_outbox(db: &Db, results: &[JobResult]) -> Result<Vec<MessageChange>> {
    // A later result for the same message would find its lease gone: the first one counts.
    let mut firsts = HashSet::new();
    let results: Vec<&JobResult> = results.iter().filter(|r| firsts.insert(r.message_id.as_str())).collect();
    let mut conn = db.conn().await?;
    let tx = Db::read_committed(&mut conn).await?;

    let ids: Vec<&str> = results.iter().map(|r| r.message_id.as_str()).collect();
    let leases: Vec<&str> = results.iter().map(|r| r.lease_id.as_str()).collect();
    let pids: Vec<Option<&str>> = results
        .iter()
        .map(|r| match &r.disposition {
            JobDisposition::Accepted { provider_message_id, .. } => Some(provider_message_id.as_str()),
            _ => None,
        })
        .collect();
    let stmt = tx
        .prepare_cached(&format!(
            "WITH j AS MATERIALIZED (
                 SELECT j.conversation_id, j.line_id AS line, u.pid
                 FROM outbox_jobs j
                 JOIN unnest($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS u(id, lease, pid)
                   ON j.message_id = u.id AND j.lease_id = u.lease
                 WHERE j.message_id = ANY ($1)
             ), c AS MATERIALIZED (
                 SELECT v.id FROM conversations v WHERE v.id IN (SELECT conversation_id FROM j) ORDER BY v.id FOR UPDATE
             ), a AS MATERIALIZED (
                 SELECT COUNT(pg_advisory_xact_lock_shared($4::INT4, k.key)) AS n FROM (
                     SELECT DISTINCT {} AS key FROM j WHERE pid IS NOT NULL ORDER BY 1
                 ) k
             )
             SELECT (SELECT COUNT(*) FROM c), (SELECT n FROM a)",
            status::PROVIDER_ID_KEY
        ))
        .await
        .map_err(db_err)?;
    tx.query_one(&stmt, &[&ids, &leases, &pids, &status::PROVIDER_ID_LOCK]).await.map_err(db_err)?;

    let held = take_jobs(&tx, &results).await?;
    for r in results.iter().filter(|r| !held.contains_key(r.message_id.as_str())) {
        tracing::warn!(message = %r.message_id, "outbox result for a lease no longer held; ignored");
    }
    let taken: Vec<(&JobResult, &Held)> =
        results.iter().filter_map(|r| held.get(r.message_id.as_str()).map(|h| (*r, h))).collect();
    if taken.is_empty() {
        tx.commit().await.map_err(db_err)?;
        return Ok(Vec::new());
    }

    log_attempts(&tx, &taken).await?;
    let statuses = update_messages(&tx, &taken).await?;

    let mut finished: Vec<&str> =
        taken.iter().filter(|(r, _)| is_terminal(&r.disposition)).map(|(_, h)| h.conversation_id.as_str()).collect();
    finished.sort_unstable();
    finished.dedup();
    if !finished.is_empty() {
        let stmt = tx
            .prepare_cached(
                "UPDATE outbox_jobs SET is_head = TRUE
                 WHERE seq = ANY (ARRAY(
                         SELECT (SELECT o.seq FROM outbox_jobs o WHERE o.conversation_id = c.id ORDER BY o.seq LIMIT 1)
                         FROM unnest($1::TEXT[]) AS c(id)))
                   AND NOT is_head",
            )
            .await
            .map_err(db_err)?;
        tx.execute(&stmt, &[&finished]).await.map_err(db_err)?;
    }

    let (mut pending_lines, mut pending_pids) = (Vec::new(), Vec::new());
    for (r, h) in &taken {
        if let JobDisposition::Accepted { provider_message_id, .. } = &r.disposition {
            pending_lines.push(h.line_id.as_str());
            pending_pids.push(provider_message_id.as_str());
        }
    }
    let mut pending = status::take_pending(&tx, &pending_lines, &pending_pids).await?;

    let mut emitter = Emitter::new();
    let mut changed = Vec::new();
    for (r, h) in &taken {
        if !is_terminal(&r.disposition) {
            continue;
        }
        let mut current = statuses.get(r.message_id.as_str()).copied();
        if let JobDisposition::Accepted { provider_message_id, .. } = &r.disposition {
            let kept = pending.remove(&(h.line_id.clone(), provider_message_id.clone())).unwrap_or_default();
            for update in kept {
                let at = update.at.unix_ms();
                if let Some(change) = status::apply_status(&tx, &mut emitter, &update, at).await? {
                    current = Some(change.status);
                }
            }
        }
        let (org, line) = (OrganizationId::from_raw(h.org_id.clone()), LineId::from_raw(h.line_id.clone()));
        emitter.status(&tx, &org, &line, &r.message_id, r.disposition.at()).await?;
        let status = current.ok_or_else(|| Error::internal("a finished job's message is missing"))?;
        changed.push(MessageChange {
            id: r.message_id.clone(),
            organization_id: org,
            line_id: line,
            conversation_id: ConversationId::from_raw(h.conversation_id.clone()),
            status,
        });
    }
    tx.commit().await.map_err(db_err)?;
    Ok(changed)
}

/// Deletes the finished jobs and reschedules the retried and held ones, each only while its
/// lease is held; returns the jobs taken, by message id.
async fn take_jobs(tx: &Tx<'_>, results: &[&JobResult]) -> Result<HashMap<String, Held>> {
    let mut held = HashMap::with_capacity(results.len());
    let (terminal, other): (Vec<&JobResult>, Vec<&JobResult>) =
        results.iter().partition(|r| is_terminal(&r.disposition));
    if !terminal.is_empty() {
        let ids: Vec<&str> = terminal.iter().map(|r| r.message_id.as_str()).collect();
        let leases: Vec<&str> = terminal.iter().map(|r| r.lease_id.as_str()).collect();
        let stmt = tx
            .prepare_cached(
                "DELETE FROM outbox_jobs j USING unnest($1::TEXT[], $2::TEXT[]) AS u(id, lease)
                 WHERE j.message_id = ANY ($1) AND j.message_id = u.id AND j.lease_id = u.lease
                 RETURNING j.message_id, j.attempts, j.org_id, j.line_id, j.conversation_id",
            )
            .await
            .map_err(db_err)?;
        for r in tx.query(&stmt, &[&ids, &leases]).await.map_err(db_err)? {
            held_row(&r, &mut held)?;
        }
    }
    if !other.is_empty() {
        let ids: Vec<&str> = other.iter().map(|r| r.message_id.as_str()).collect();
        let leases: Vec<&str> = other.iter().map(|r| r.lease_id.as_str()).collect();
        let due: Vec<i64> = other.iter().map(|r| r.disposition.at().unix_ms()).collect();
        // A retry counts its attempt on the job; a hold never does.
        let counted: Vec<i64> = other
            .iter()
            .map(|r| i64::from(matches!(r.disposition, JobDisposition::Retry { .. }) && r.attempt.is_some()))
            .collect();
        let stmt = tx
            .prepare_cached(
                "UPDATE outbox_jobs j SET lease_id = NULL, lease_until = NULL, dispatched_at = NULL,
                        available_at = u.due, attempts = j.attempts + u.counted
                 FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[]) AS u(id, lease, due, counted)
                 WHERE j.message_id = ANY ($1) AND j.message_id = u.id AND j.lease_id = u.lease
                 RETURNING j.message_id, j.attempts - u.counted, j.org_id, j.line_id, j.conversation_id",
            )
            .await
            .map_err(db_err)?;
        for r in tx.query(&stmt, &[&ids, &leases, &due, &counted]).await.map_err(db_err)? {
            held_row(&r, &mut held)?;
        }
    }
    Ok(held)
}

/// Reads one taken job (message id, attempts, org, line, conversation).
fn held_row(r: &tokio_postgres::Row, held: &mut HashMap<String, Held>) -> Result<()> {
    held.insert(
        get(r, 0)?,
        Held { attempts: get(r, 1)?, org_id: get(r, 2)?, line_id: get(r, 3)?, conversation_id: get(r, 4)? },
    );
    Ok(())
}

/// Logs the attempts of taken jobs (numbered after the job's earlier attempts).
async fn log_attempts(tx: &Tx<'_>, taken: &[(&JobResult, &Held)]) -> Result<()> {
    let mut ids = Vec::new();
    let mut numbers = Vec::new();
    let mut started = Vec::new();
    let mut outcomes = Vec::new();
    let mut codes = Vec::new();
    let mut errors = Vec::new();
    let mut latencies = Vec::new();
    for (r, h) in taken {
        let Some(a) = &r.attempt else { continue };
        ids.push(r.message_id.as_str());
        numbers.push(h.attempts + 1);
        started.push(a.started_at.unix_ms());
        outcomes.push(a.outcome.as_str());
        codes.push(a.provider_code.as_deref());
        errors.push(a.error.as_deref());
        latencies.push(i64::try_from(a.latency.as_millis()).unwrap_or(i64::MAX));
    }
    if ids.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO message_attempts (message_id, attempt, started_at, outcome, provider_code, error, latency_ms)
             SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::BIGINT[])
             ON CONFLICT (message_id, attempt) DO UPDATE
                SET started_at = EXCLUDED.started_at, outcome = EXCLUDED.outcome,
                    provider_code = EXCLUDED.provider_code, error = EXCLUDED.error, latency_ms = EXCLUDED.latency_ms",
        )
        .await
        .map_err(db_err)?;
    tx.execute(&stmt, &[&ids, &numbers, &started, &outcomes, &codes, &errors, &latencies]).await.map_err(db_err)?;
    Ok(())
}

/// Updates the messages of taken jobs in one statement: accepted ones become `sent` (from
/// `queued` or `unknown`) with their provider id, failed ones `failed` with the error, unknown
/// ones `unknown`; counted attempts are added (holds count none). Returns their statuses now.
async fn update_messages(tx: &Tx<'_>, taken: &[(&JobResult, &Held)]) -> Result<HashMap<String, MessageStatus>> {
    let mut ids = Vec::new();
    let mut kinds = Vec::new();
    let mut ats = Vec::new();
    let mut pids = Vec::new();
    let mut codes = Vec::new();
    let mut texts = Vec::new();
    let mut counted = Vec::new();
    for (r, _) in taken {
        let n = i64::from(r.attempt.is_some());
        let (kind, pid, error) = match &r.disposition {
            JobDisposition::Accepted { provider_message_id, .. } => ("accepted", Some(provider_message_id), None),
            JobDisposition::Failed { error, .. } => ("failed", None, Some(error)),
            JobDisposition::Unknown { .. } => ("unknown", None, None),
            JobDisposition::Retry { .. } if n > 0 => ("retry", None, None),
            JobDisposition::Retry { .. } | JobDisposition::Hold { .. } => continue,
        };
        ids.push(r.message_id.as_str());
        kinds.push(kind);
        ats.push(r.disposition.at().unix_ms());
        pids.push(pid.map(String::as_str));
        codes.push(error.map(|e| e.code.as_str()));
        texts.push(error.map(|e| e.message.as_str()));
        counted.push(n);
    }
    let mut statuses = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(statuses);
    }
    let stmt = tx
        .prepare_cached(
            "UPDATE messages m SET
                status = CASE u.kind
                    WHEN 'accepted' THEN CASE WHEN m.status IN ('queued', 'unknown') THEN 'sent' ELSE m.status END
                    WHEN 'failed' THEN 'failed'
                    WHEN 'unknown' THEN 'unknown'
                    ELSE m.status END,
                sent_at = CASE WHEN u.kind = 'accepted' THEN COALESCE(m.sent_at, u.at) ELSE m.sent_at END,
                provider_message_id = CASE WHEN u.kind = 'accepted' THEN u.pid ELSE m.provider_message_id END,
                failed_at = CASE WHEN u.kind = 'failed' THEN u.at ELSE m.failed_at END,
                error_code = CASE WHEN u.kind = 'failed' THEN u.code ELSE m.error_code END,
                error_message = CASE WHEN u.kind = 'failed' THEN u.text ELSE m.error_message END,
                attempts = m.attempts + u.counted
             FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::BIGINT[])
                  AS u(id, kind, at, pid, code, text, counted)
             WHERE m.id = ANY ($1) AND m.id = u.id
             RETURNING m.id, m.status",
        )
        .await
        .map_err(db_err)?;
    for r in tx.query(&stmt, &[&ids, &kinds, &ats, &pids, &codes, &texts, &counted]).await.map_err(db_err)? {
        let status: &str = get(&r, 1)?;
        let status = MessageStatus::parse(status).ok_or_else(|| bad_value("message status", status))?;
        statuses.insert(get::<String>(&r, 0)?, status);
    }
    Ok(statuses)
}

/// Applies provider status reports (`READ COMMITTED`), forward only, after locking their
/// (line, provider id) pairs; returns the messages that changed.
pub(crate) async fn apply_status_updates(
    db: &Db,
    updates: &[StatusUpdate],
    now: Timestamp,
) -> Result<Vec<MessageChange>> {
    let mut conn = db.conn().await?;
    let tx = Db::read_committed(&mut conn).await?;
    let lines: Vec<&str> = updates.iter().map(|u| u.line_id.as_str()).collect();
    let pids: Vec<&str> = updates.iter().map(|u| u.provider_message_id.as_str()).collect();
    status::lock_provider_ids(&tx, &lines, &pids).await?;
    let mut emitter = Emitter::new();
    let changed = status::apply_all(&tx, &mut emitter, updates, now).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(changed)
}

/// Deletes idempotency records whose expiry is at or before `now`. `READ COMMITTED`: a record
/// an enqueue replaced meanwhile is re-checked against its new expiry, not deleted.
pub(crate) async fn purge_idempotency(db: &Db, now: Timestamp) -> Result<u64> {
    let mut conn = db.conn().await?;
    let tx = Db::read_committed(&mut conn).await?;
    let stmt = tx.prepare_cached("DELETE FROM idempotency_keys WHERE expires_at <= $1").await.map_err(db_err)?;
    let n = tx.execute(&stmt, &[&now.unix_ms()]).await.map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(n)
}

/// Queue gauges: depth per line and the number of `unknown` messages.
pub(crate) async fn outbox_stats(db: &Db) -> Result<OutboxStats> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached("SELECT line_id, COUNT(*) FROM outbox_jobs GROUP BY line_id ORDER BY line_id")
        .await
        .map_err(db_err)?;
    let mut depth_by_line = Vec::new();
    for r in conn.query(&stmt, &[]).await.map_err(db_err)? {
        depth_by_line.push((LineId::from_raw(get::<String>(&r, 0)?), count(get(&r, 1)?)));
    }
    let stmt = conn.prepare_cached("SELECT COUNT(*) FROM messages WHERE status = 'unknown'").await.map_err(db_err)?;
    let unknown: i64 = get(&conn.query_one(&stmt, &[]).await.map_err(db_err)?, 0)?;
    Ok(OutboxStats { depth_by_line, unknown_messages: count(unknown) })
}

/// Number of jobs waiting (queued or leased).
pub(crate) async fn outbox_depth(db: &Db) -> Result<u64> {
    let conn = db.conn().await?;
    let stmt = conn.prepare_cached("SELECT COUNT(*) FROM outbox_jobs").await.map_err(db_err)?;
    Ok(count(get(&conn.query_one(&stmt, &[]).await.map_err(db_err)?, 0)?))
}

/// Resolves a message in status `unknown` (an operator's decision). `READ COMMITTED` with the
/// conversation locked before the message (the order the queue paths use), so a re-queued job
/// sees every job of its conversation and two resolutions of one message run one after the
/// other (the second finds it no longer `unknown`).
pub(crate) async fn resolve_unknown(
    db: &Db,
    org: &OrganizationId,
    id: &MessageId,
    resolution: UnknownResolution,
    at: Timestamp,
) -> Result<Option<Message>> {
    let mut conn = db.conn().await?;
    let tx = Db::read_committed(&mut conn).await?;
    let stmt = tx
        .prepare_cached(
            "SELECT v.contact_phone, v.id FROM messages m JOIN conversations v ON v.id = m.conversation_id
             WHERE m.id = $1 AND m.org_id = $2 FOR UPDATE OF v",
        )
        .await
        .map_err(db_err)?;
    let Some(row) = tx.query_opt(&stmt, &[&id.as_str(), &org.as_str()]).await.map_err(db_err)? else {
        return Ok(None);
    };
    let recipient: String = get(&row, 0)?;
    let stmt = tx
        .prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = $1 FOR UPDATE"))
        .await
        .map_err(db_err)?;
    let m = rows::message(&tx.query_one(&stmt, &[&id.as_str()]).await.map_err(db_err)?)?;
    if m.status != MessageStatus::Unknown {
        return Err(Error::conflict("not_unknown", format!("the message is {}, not unknown", m.status.as_str())));
    }
    match resolution {
        UnknownResolution::Resend => {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO outbox_jobs (message_id, org_id, line_id, conversation_id, recipient, available_at,
                                              attempts, is_head)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, NOT EXISTS (SELECT 1 FROM outbox_jobs WHERE conversation_id = $4))",
                )
                .await
                .map_err(db_err)?;
            tx.execute(
                &stmt,
                &[
                    &id.as_str(),
                    &org.as_str(),
                    &m.line_id.as_str(),
                    &m.conversation_id.as_str(),
                    &recipient,
                    &at.unix_ms(),
                    &i64::from(m.attempts),
                ],
            )
            .await
            .map_err(db_err)?;
            let stmt =
                tx.prepare_cached("UPDATE messages SET status = 'queued' WHERE id = $1").await.map_err(db_err)?;
            tx.execute(&stmt, &[&id.as_str()]).await.map_err(db_err)?;
        }
        UnknownResolution::Sent => {
            let stmt = tx
                .prepare_cached("UPDATE messages SET status = 'sent', sent_at = COALESCE(sent_at, $2) WHERE id = $1")
                .await
                .map_err(db_err)?;
            tx.execute(&stmt, &[&id.as_str(), &at.unix_ms()]).await.map_err(db_err)?;
        }
        UnknownResolution::Fail => {
            let stmt = tx
                .prepare_cached(
                    "UPDATE messages SET status = 'failed', failed_at = $2, error_code = 'operator_failed',
                            error_message = 'an operator marked this message failed after its send outcome was unknown'
                     WHERE id = $1",
                )
                .await
                .map_err(db_err)?;
            tx.execute(&stmt, &[&id.as_str(), &at.unix_ms()]).await.map_err(db_err)?;
        }
    }
    let mut emitter = Emitter::new();
    emitter.status(&tx, org, &m.line_id, id, at).await?;
    let stmt = tx
        .prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = $1"))
        .await
        .map_err(db_err)?;
    let message = rows::message(&tx.query_one(&stmt, &[&id.as_str()]).await.map_err(db_err)?)?;
    tx.commit().await.map_err(db_err)?;
    Ok(Some(message))
}
