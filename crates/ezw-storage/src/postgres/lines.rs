//! Lines, line tokens, per-line permissions, line creation and archiving.
//!
//! Writes run in one `SERIALIZABLE` transaction each (the caller retries on contention).
//! Line creation inserts with `ON CONFLICT DO NOTHING`: a row committed by a concurrent
//! transaction that this one cannot see is a serialization failure (retried, and the retry
//! sees the idempotency key), and a visible one is `line_exists`.

use deadpool_postgres::GenericClient;
use ezw_core::ids::{ConversationId, LineId, LineTokenId, MessageId, OrganizationId, UserId};
use ezw_core::model::{
    AuditEvent, BillingState, EffectiveSendState, LifecycleState, Line, LinePermission, LineTokenRecord,
    LineTransition, MessageStatus, WebhookEventKind,
};
use ezw_core::ports::{
    ArchivedLine, CreateLine, CreateLineOutcome, LineAccessContext, LineContext, LineTokenMatch, MessageChange,
};
use ezw_core::webhooks::{LineStateChange, WebhookEvent};
use ezw_core::{Error, ErrorKind, Result, Timestamp};
use tokio_postgres::Row;

use super::audit::record_audit;
use super::events::Emitter;
use super::rows::{self, get, LINE_COLUMNS, LINE_COLUMN_COUNT};
use super::session::record_transition;
use super::{db_err, is_unique_violation, Db, Tx, CONTENTION};

/// The conflict a second line with an organization's number is.
fn line_exists() -> Error {
    Error::conflict("line_exists", "this organization already has a line with this phone number")
}

/// Maps a line insert's unique violation to `line_exists`.
fn line_insert_err(e: tokio_postgres::Error) -> Error {
    if is_unique_violation(&e) {
        line_exists()
    } else {
        db_err(e)
    }
}

/// The TEXT form of a line's pacing.
fn pacing_json(line: &Line) -> Result<Option<String>> {
    line.pacing.as_ref().map(rows::to_json).transpose()
}

/// Records a new line; `line_exists` when the organization already has its number.
pub(crate) async fn insert_line(db: &Db, line: &Line) -> Result<()> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    if !insert_line_if_absent(&tx, line).await? {
        return Err(line_exists());
    }
    tx.commit().await.map_err(db_err)
}

/// Inserts `line` unless a line with its id or its organization's number exists; returns
/// whether it was inserted. A conflicting line committed concurrently, invisible to this
/// transaction, is a serialization failure.
async fn insert_line_if_absent(tx: &Tx<'_>, line: &Line) -> Result<bool> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO lines (id, org_id, display_name, phone_number, provider_kind, provider_config, lifecycle_state,
                                state_reason, default_assignee_id, created_at, updated_at, pacing)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(db_err)?;
    let pacing = pacing_json(line)?;
    let n = tx
        .execute(
            &stmt,
            &[
                &line.id.as_str(),
                &line.organization_id.as_str(),
                &line.display_name,
                &line.phone_number.as_str(),
                &line.provider_kind.as_str(),
                &line.provider_config.to_string(),
                &line.lifecycle_state.as_str(),
                &line.state_reason,
                &line.default_assignee_id.as_ref().map(UserId::as_str),
                &line.created_at.unix_ms(),
                &line.updated_at.unix_ms(),
                &pacing,
            ],
        )
        .await
        .map_err(line_insert_err)?;
    Ok(n > 0)
}

/// A line by id, within `org` when given.
pub(super) async fn get_line_in(
    c: &impl GenericClient,
    org: Option<&OrganizationId>,
    id: &LineId,
) -> Result<Option<Line>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {LINE_COLUMNS} FROM lines l WHERE l.id = $1 AND ($2::TEXT IS NULL OR l.org_id = $2)"
        ))
        .await
        .map_err(db_err)?;
    match c.query_opt(&stmt, &[&id.as_str(), &org.map(OrganizationId::as_str)]).await.map_err(db_err)? {
        Some(r) => rows::line(&r).map(Some),
        None => Ok(None),
    }
}

/// A line by id, within `org` when given.
pub(crate) async fn get_line(db: &Db, org: Option<&OrganizationId>, id: &LineId) -> Result<Option<Line>> {
    let conn = db.conn().await?;
    get_line_in(&conn, org, id).await
}

/// A billing state read from the database; an unknown one restricts sending.
fn billing_at(r: &Row, i: usize) -> Result<BillingState> {
    let raw: &str = get(r, i)?;
    Ok(BillingState::parse(raw).unwrap_or(BillingState::Restricted))
}

/// A line with its organization's billing state.
pub(super) async fn get_line_context_in(
    c: &impl GenericClient,
    org: &OrganizationId,
    id: &LineId,
) -> Result<Option<LineContext>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {LINE_COLUMNS}, o.billing_state FROM lines l JOIN organizations o ON o.id = l.org_id
             WHERE l.id = $1 AND l.org_id = $2"
        ))
        .await
        .map_err(db_err)?;
    match c.query_opt(&stmt, &[&id.as_str(), &org.as_str()]).await.map_err(db_err)? {
        Some(r) => Ok(Some(LineContext { line: rows::line(&r)?, billing_state: billing_at(&r, LINE_COLUMN_COUNT)? })),
        None => Ok(None),
    }
}

/// A line with its organization's billing state.
pub(crate) async fn get_line_context(db: &Db, org: &OrganizationId, id: &LineId) -> Result<Option<LineContext>> {
    let conn = db.conn().await?;
    get_line_context_in(&conn, org, id).await
}

/// An organization's lines, oldest first.
pub(crate) async fn list_lines(db: &Db, org: &OrganizationId) -> Result<Vec<Line>> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(&format!("SELECT {LINE_COLUMNS} FROM lines l WHERE l.org_id = $1 ORDER BY l.created_at, l.id"))
        .await
        .map_err(db_err)?;
    conn.query(&stmt, &[&org.as_str()]).await.map_err(db_err)?.iter().map(rows::line).collect()
}

/// Sets a line's lifecycle state (an archived line stays archived) and emits `channel.patch`
/// when the state changed; `None` when the organization has no such line.
pub(crate) async fn set_line_state(
    db: &Db,
    org: &OrganizationId,
    id: &LineId,
    state: LifecycleState,
    reason: Option<&str>,
    at: Timestamp,
) -> Result<Option<Line>> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let Some(before) = get_line_context_in(&tx, org, id).await? else { return Ok(None) };
    // An archived line stays archived: provider reports and worker observations do not revive it.
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE lines l SET lifecycle_state = $3, state_reason = $4, updated_at = $5
             WHERE l.id = $1 AND l.org_id = $2 AND l.lifecycle_state <> 'archived'
             RETURNING {LINE_COLUMNS}"
        ))
        .await
        .map_err(db_err)?;
    let updated = tx
        .query_opt(&stmt, &[&id.as_str(), &org.as_str(), &state.as_str(), &reason, &at.unix_ms()])
        .await
        .map_err(db_err)?;
    let line = match updated {
        Some(r) => rows::line(&r)?,
        // Archived: unchanged.
        None => before.line.clone(),
    };
    if line.lifecycle_state != before.line.lifecycle_state {
        let t = LineTransition {
            from: before.line.lifecycle_state,
            to: line.lifecycle_state,
            trigger: "provider_report".into(),
            reason: reason.map(str::to_owned),
            at,
        };
        record_transition(&tx, org, id, &t).await?;
    }
    let mut emitter = Emitter::new();
    emit_state_change(&tx, &mut emitter, &before, &line, at).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(Some(line))
}

/// `channel.patch` when the line's lifecycle state differs from `before`'s.
pub(super) async fn emit_state_change(
    tx: &Tx<'_>,
    emitter: &mut Emitter,
    before: &LineContext,
    now: &Line,
    at: Timestamp,
) -> Result<()> {
    if now.lifecycle_state == before.line.lifecycle_state {
        return Ok(());
    }
    let effective = now.effective_send_state(before.billing_state.allows_sending());
    let event = WebhookEvent::LineState(LineStateChange {
        previous_state: before.line.lifecycle_state,
        lifecycle_state: now.lifecycle_state,
        effective_send_state: effective,
        sendable: effective == EffectiveSendState::Sendable,
        reason: now.state_reason.clone(),
    });
    emitter.event(tx, &now.organization_id, &now.id, WebhookEventKind::ChannelPatch, at, event).await
}

/// Revokes the line's current tokens and stores `t` inside `tx`; returns whether a token was
/// revoked.
async fn replace_line_token_tx(tx: &Tx<'_>, t: &LineTokenRecord) -> Result<bool> {
    let revoke = tx
        .prepare_cached("UPDATE line_tokens SET revoked_at = $2 WHERE line_id = $1 AND revoked_at IS NULL")
        .await
        .map_err(db_err)?;
    let revoked = tx.execute(&revoke, &[&t.line_id.as_str(), &t.created_at.unix_ms()]).await.map_err(db_err)?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO line_tokens (id, org_id, line_id, token_hash, last_four, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await
        .map_err(db_err)?;
    tx.execute(
        &insert,
        &[
            &t.id.as_str(),
            &t.organization_id.as_str(),
            &t.line_id.as_str(),
            &t.token_hash,
            &t.last_four,
            &t.created_by.as_ref().map(UserId::as_str),
            &t.created_at.unix_ms(),
        ],
    )
    .await
    .map_err(db_err)?;
    Ok(revoked > 0)
}

/// Revokes the line's current token (if any) and stores `t`; returns whether one was revoked.
pub(crate) async fn replace_line_token(db: &Db, t: &LineTokenRecord) -> Result<bool> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let revoked = replace_line_token_tx(&tx, t).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(revoked)
}

/// The line (with its organization's billing state) an unrevoked token hash belongs to.
pub(crate) async fn find_line_token(db: &Db, hash: &str) -> Result<Option<LineTokenMatch>> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {LINE_COLUMNS}, t.id, o.billing_state FROM line_tokens t
             JOIN lines l ON l.id = t.line_id JOIN organizations o ON o.id = l.org_id
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL"
        ))
        .await
        .map_err(db_err)?;
    let Some(r) = conn.query_opt(&stmt, &[&hash]).await.map_err(db_err)? else { return Ok(None) };
    Ok(Some(LineTokenMatch {
        line: rows::line(&r)?,
        token_id: LineTokenId::from_raw(get::<String>(&r, LINE_COLUMN_COUNT)?),
        billing_state: billing_at(&r, LINE_COLUMN_COUNT + 1)?,
    }))
}

/// [`replace_line_token`] with its audit entry, atomically.
pub(crate) async fn rotate_line_token(db: &Db, t: &LineTokenRecord, audit: &AuditEvent) -> Result<bool> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let revoked = replace_line_token_tx(&tx, t).await?;
    record_audit(&tx, audit).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(revoked)
}

/// What an earlier use of a line creation key answers, if the key was used.
async fn earlier_creation(
    tx: &Tx<'_>,
    org: &OrganizationId,
    key: &str,
    fingerprint: &str,
) -> Result<Option<CreateLineOutcome>> {
    let stmt = tx
        .prepare_cached("SELECT fingerprint, line_id FROM line_creation_keys WHERE org_id = $1 AND key = $2")
        .await
        .map_err(db_err)?;
    let Some(r) = tx.query_opt(&stmt, &[&org.as_str(), &key]).await.map_err(db_err)? else { return Ok(None) };
    let line_id = LineId::from_raw(get::<String>(&r, 1)?);
    if get::<&str>(&r, 0)? != fingerprint {
        return Ok(Some(CreateLineOutcome::KeyReused { line_id }));
    }
    let line = get_line_in(tx, Some(org), &line_id)
        .await?
        .ok_or_else(|| Error::internal("a line creation key points at a missing line"))?;
    Ok(Some(CreateLineOutcome::Replayed(Box::new(line))))
}

/// Creates a line atomically: an earlier use of the idempotency key answers `Replayed` or
/// `KeyReused`; then the slot check; then the line, the key and the audit entry.
pub(crate) async fn create_line(db: &Db, new: &CreateLine) -> Result<CreateLineOutcome> {
    let org = &new.line.organization_id;
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    if let Some(idem) = &new.idempotency {
        if let Some(outcome) = earlier_creation(&tx, org, &idem.key, &idem.fingerprint).await? {
            return Ok(outcome);
        }
    }
    // Two creations that both pass this count conflict on the lines they read and insert:
    // SERIALIZABLE aborts one of them (and the retry counts again).
    let stmt = tx
        .prepare_cached("SELECT COUNT(*) FROM lines WHERE org_id = $1 AND lifecycle_state <> 'archived'")
        .await
        .map_err(db_err)?;
    let active: i64 = get(&tx.query_one(&stmt, &[&org.as_str()]).await.map_err(db_err)?, 0)?;
    if active >= i64::from(new.max_active_lines) {
        return Ok(CreateLineOutcome::SlotsExhausted);
    }
    // A concurrent creation with the same key inserts the same number: its uncommitted line
    // makes this insert wait, and once it commits the conflict is a serialization failure, so
    // the retry finds the key and replays.
    if !insert_line_if_absent(&tx, &new.line).await? {
        return Err(line_exists());
    }
    if let Some(idem) = &new.idempotency {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO line_creation_keys (org_id, key, fingerprint, line_id, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(db_err)?;
        let n = tx
            .execute(
                &stmt,
                &[&org.as_str(), &idem.key, &idem.fingerprint, &new.line.id.as_str(), &new.line.created_at.unix_ms()],
            )
            .await
            .map_err(db_err)?;
        if n == 0 {
            // Not visible when this transaction looked: another creation got the key first.
            // Start over; the retry replays or answers `KeyReused`.
            return Err(Error::new(ErrorKind::Temporary, CONTENTION, "a concurrent line creation used the key"));
        }
    }
    record_audit(&tx, &new.audit).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(CreateLineOutcome::Created(Box::new(new.line.clone())))
}

/// Sets (or clears) a line's default assignee with its audit entry; `None` when the
/// organization has no such line.
pub(crate) async fn set_default_assignee(
    db: &Db,
    org: &OrganizationId,
    id: &LineId,
    assignee: Option<&UserId>,
    at: Timestamp,
    audit: &AuditEvent,
) -> Result<Option<Line>> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE lines l SET default_assignee_id = $3, updated_at = $4 WHERE l.id = $1 AND l.org_id = $2
             RETURNING {LINE_COLUMNS}"
        ))
        .await
        .map_err(db_err)?;
    let Some(r) = tx
        .query_opt(&stmt, &[&id.as_str(), &org.as_str(), &assignee.map(UserId::as_str), &at.unix_ms()])
        .await
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    let line = rows::line(&r)?;
    record_audit(&tx, audit).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(Some(line))
}

/// Archives a line: its queued messages not in a provider call fail with `line_archived`
/// (their jobs are deleted), `channel.patch`, and the audit entry, in one transaction. A line
/// archived already is returned unchanged.
pub(crate) async fn archive_line(
    db: &Db,
    org: &OrganizationId,
    id: &LineId,
    at: Timestamp,
    audit: &AuditEvent,
) -> Result<Option<ArchivedLine>> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let Some(before) = get_line_context_in(&tx, org, id).await? else { return Ok(None) };
    if before.line.lifecycle_state == LifecycleState::Archived {
        return Ok(Some(ArchivedLine { line: before.line, newly_archived: false, failed: Vec::new() }));
    }
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE lines l SET lifecycle_state = 'archived', state_reason = NULL, updated_at = $3
             WHERE l.id = $1 AND l.org_id = $2 RETURNING {LINE_COLUMNS}"
        ))
        .await
        .map_err(db_err)?;
    let row = tx
        .query_opt(&stmt, &[&id.as_str(), &org.as_str(), &at.unix_ms()])
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::internal("archived line vanished"))?;
    let line = rows::line(&row)?;
    let t = LineTransition {
        from: before.line.lifecycle_state,
        to: LifecycleState::Archived,
        trigger: "archived".into(),
        reason: None,
        at,
    };
    record_transition(&tx, org, id, &t).await?;
    let mut emitter = Emitter::new();
    emit_state_change(&tx, &mut emitter, &before, &line, at).await?;
    // Writers of a conversation's jobs lock its conversations row first (one head per
    // conversation); lock those with jobs to fail, in id order.
    let stmt = tx
        .prepare_cached(
            "SELECT c.id FROM conversations c
             WHERE c.id IN (SELECT j.conversation_id FROM outbox_jobs j
                            WHERE j.line_id = $1 AND j.org_id = $2 AND j.dispatched_at IS NULL)
             ORDER BY c.id FOR UPDATE OF c",
        )
        .await
        .map_err(db_err)?;
    tx.query(&stmt, &[&id.as_str(), &org.as_str()]).await.map_err(db_err)?;
    // Jobs whose provider call has started are left to finish; every other job fails now.
    let stmt = tx
        .prepare_cached(
            "DELETE FROM outbox_jobs WHERE line_id = $1 AND org_id = $2 AND dispatched_at IS NULL
             RETURNING message_id, conversation_id, seq",
        )
        .await
        .map_err(db_err)?;
    let mut jobs: Vec<(i64, String, String)> = Vec::new();
    for r in tx.query(&stmt, &[&id.as_str(), &org.as_str()]).await.map_err(db_err)? {
        jobs.push((get(&r, 2)?, get(&r, 0)?, get(&r, 1)?));
    }
    jobs.sort_unstable();
    let fail = tx
        .prepare_cached(
            "UPDATE messages SET status = 'failed', failed_at = $2, error_code = 'line_archived',
                    error_message = 'the line was archived before this message was sent'
             WHERE id = $1 AND status = 'queued'",
        )
        .await
        .map_err(db_err)?;
    let mut failed = Vec::with_capacity(jobs.len());
    for (_, message_id, conversation_id) in jobs {
        let n = tx.execute(&fail, &[&message_id, &at.unix_ms()]).await.map_err(db_err)?;
        if n > 0 {
            let message_id = MessageId::from_raw(message_id);
            emitter.status(&tx, org, id, &message_id, at).await?;
            failed.push(MessageChange {
                id: message_id,
                organization_id: org.clone(),
                line_id: id.clone(),
                conversation_id: ConversationId::from_raw(conversation_id),
                status: MessageStatus::Failed,
            });
        }
    }
    // A job left in a provider call heads its conversation's queue; make sure every remaining
    // conversation queue still has a head.
    let promote = tx
        .prepare_cached(
            "UPDATE outbox_jobs SET is_head = TRUE
             WHERE seq = (SELECT MIN(seq) FROM outbox_jobs WHERE conversation_id = $1) AND NOT is_head",
        )
        .await
        .map_err(db_err)?;
    for change in &failed {
        tx.execute(&promote, &[&change.conversation_id.as_str()]).await.map_err(db_err)?;
    }
    record_audit(&tx, audit).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(Some(ArchivedLine { line, newly_archived: true, failed }))
}

// ---- permissions ----

/// The columns of a permission (`line_permissions p`).
const PERMISSION_COLUMNS: &str = "p.org_id, p.line_id, p.user_id, p.can_view, p.can_send, p.updated_at, p.updated_by";

/// A permission read from columns starting at `o`.
fn permission_at(r: &Row, o: usize) -> Result<LinePermission> {
    Ok(LinePermission {
        organization_id: OrganizationId::from_raw(get::<String>(r, o)?),
        line_id: LineId::from_raw(get::<String>(r, o + 1)?),
        user_id: UserId::from_raw(get::<String>(r, o + 2)?),
        can_view: get(r, o + 3)?,
        can_send: get(r, o + 4)?,
        updated_at: rows::ts(r, o + 5)?,
        updated_by: get::<Option<String>>(r, o + 6)?.map(UserId::from_raw),
    })
}

/// A line with its billing state and `user`'s explicit permission on it, in one read.
pub(crate) async fn get_line_access(
    db: &Db,
    org: &OrganizationId,
    id: &LineId,
    user: &UserId,
) -> Result<Option<LineAccessContext>> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {LINE_COLUMNS}, o.billing_state, {PERMISSION_COLUMNS}
             FROM lines l JOIN organizations o ON o.id = l.org_id
             LEFT JOIN line_permissions p ON p.line_id = l.id AND p.user_id = $3
             WHERE l.id = $1 AND l.org_id = $2"
        ))
        .await
        .map_err(db_err)?;
    let Some(r) = conn.query_opt(&stmt, &[&id.as_str(), &org.as_str(), &user.as_str()]).await.map_err(db_err)? else {
        return Ok(None);
    };
    let has_permission = get::<Option<&str>>(&r, LINE_COLUMN_COUNT + 1)?.is_some();
    Ok(Some(LineAccessContext {
        context: LineContext { line: rows::line(&r)?, billing_state: billing_at(&r, LINE_COLUMN_COUNT)? },
        permission: if has_permission { Some(permission_at(&r, LINE_COLUMN_COUNT + 1)?) } else { None },
    }))
}

/// The lines `user` may view, oldest first; `None` when no permission hides a line.
pub(crate) async fn visible_line_ids(db: &Db, org: &OrganizationId, user: &UserId) -> Result<Option<Vec<LineId>>> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(
            "SELECT l.id, COALESCE(p.can_view, TRUE) FROM lines l
             LEFT JOIN line_permissions p ON p.line_id = l.id AND p.user_id = $2
             WHERE l.org_id = $1 ORDER BY l.created_at, l.id",
        )
        .await
        .map_err(db_err)?;
    let mut lines = Vec::new();
    for r in conn.query(&stmt, &[&org.as_str(), &user.as_str()]).await.map_err(db_err)? {
        lines.push((get::<String>(&r, 0)?, get::<bool>(&r, 1)?));
    }
    if lines.iter().all(|(_, visible)| *visible) {
        return Ok(None);
    }
    Ok(Some(lines.into_iter().filter(|(_, visible)| *visible).map(|(id, _)| LineId::from_raw(id)).collect()))
}

/// One explicit permission.
pub(crate) async fn get_line_permission(
    db: &Db,
    org: &OrganizationId,
    line: &LineId,
    user: &UserId,
) -> Result<Option<LinePermission>> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {PERMISSION_COLUMNS} FROM line_permissions p WHERE p.line_id = $1 AND p.user_id = $2 AND p.org_id = $3"
        ))
        .await
        .map_err(db_err)?;
    match conn.query_opt(&stmt, &[&line.as_str(), &user.as_str(), &org.as_str()]).await.map_err(db_err)? {
        Some(r) => permission_at(&r, 0).map(Some),
        None => Ok(None),
    }
}

/// A line's explicit permissions, oldest change first.
pub(crate) async fn list_line_permissions(db: &Db, org: &OrganizationId, line: &LineId) -> Result<Vec<LinePermission>> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {PERMISSION_COLUMNS} FROM line_permissions p WHERE p.line_id = $1 AND p.org_id = $2
             ORDER BY p.updated_at, p.user_id"
        ))
        .await
        .map_err(db_err)?;
    conn.query(&stmt, &[&line.as_str(), &org.as_str()])
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| permission_at(r, 0))
        .collect()
}

/// Inserts or replaces an explicit permission with its audit entry; `not_found` when the
/// organization has no such line.
pub(crate) async fn set_line_permission(db: &Db, p: &LinePermission, audit: &AuditEvent) -> Result<()> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    // The line must belong to the permission's organization.
    let stmt = tx
        .prepare_cached(
            "INSERT INTO line_permissions (line_id, user_id, org_id, can_view, can_send, updated_at, updated_by)
             SELECT l.id, $2, l.org_id, $4, $5, $6, $7 FROM lines l WHERE l.id = $1 AND l.org_id = $3
             ON CONFLICT (line_id, user_id) DO UPDATE SET can_view = EXCLUDED.can_view, can_send = EXCLUDED.can_send,
                 updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by",
        )
        .await
        .map_err(db_err)?;
    let n = tx
        .execute(
            &stmt,
            &[
                &p.line_id.as_str(),
                &p.user_id.as_str(),
                &p.organization_id.as_str(),
                &p.can_view,
                &p.can_send,
                &p.updated_at.unix_ms(),
                &p.updated_by.as_ref().map(UserId::as_str),
            ],
        )
        .await
        .map_err(db_err)?;
    if n == 0 {
        return Err(Error::not_found("line"));
    }
    record_audit(&tx, audit).await?;
    tx.commit().await.map_err(db_err)
}

/// Removes an explicit permission (with its audit entry); returns whether there was one.
pub(crate) async fn clear_line_permission(
    db: &Db,
    org: &OrganizationId,
    line: &LineId,
    user: &UserId,
    audit: &AuditEvent,
) -> Result<bool> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let stmt = tx
        .prepare_cached("DELETE FROM line_permissions WHERE line_id = $1 AND user_id = $2 AND org_id = $3")
        .await
        .map_err(db_err)?;
    let n = tx.execute(&stmt, &[&line.as_str(), &user.as_str(), &org.as_str()]).await.map_err(db_err)?;
    if n == 0 {
        return Ok(false);
    }
    record_audit(&tx, audit).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(true)
}
