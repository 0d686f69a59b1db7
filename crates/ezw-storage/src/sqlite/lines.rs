//! Lines and line tokens.

use ezw_core::ids::{ConversationId, LineId, LineTokenId, MessageId, OrganizationId, UserId};
use ezw_core::model::{
    AuditEvent, BillingState, EffectiveSendState, LifecycleState, Line, LinePermission, LineTokenRecord,
    LineTransition, MessageStatus, WebhookEventKind,
};
use ezw_core::ports::{
    ArchivedLine, CreateLine, CreateLineOutcome, LineAccessContext, LineContext, LineTokenMatch, MessageChange,
};
use ezw_core::webhooks::{LineStateChange, WebhookEvent};
use ezw_core::{Error, Result, Timestamp};
use rusqlite::{params, Connection, Row};

use super::rows::{self, LINE_COLUMNS, LINE_COLUMN_COUNT};
use super::session::record_transition;
use super::webhooks::{emit, emit_status, record_audit};
use super::{db_err, is_unique_violation, optional};

pub(super) fn insert_line(conn: &Connection, line: &Line) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO lines (id, org_id, display_name, phone_number, provider_kind, provider_config, lifecycle_state,
                            state_reason, default_assignee_id, created_at, updated_at, pacing)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .and_then(|mut s| {
        s.execute(params![
            line.id.as_str(),
            line.organization_id.as_str(),
            line.display_name,
            line.phone_number.as_str(),
            line.provider_kind.as_str(),
            line.provider_config.to_string(),
            line.lifecycle_state.as_str(),
            line.state_reason,
            line.default_assignee_id.as_ref().map(|u| u.as_str().to_owned()),
            line.created_at.unix_ms(),
            line.updated_at.unix_ms(),
            line.pacing.as_ref().and_then(|p| serde_json::to_string(p).ok()),
        ])
    })
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict("line_exists", "this organization already has a line with this phone number")
        } else {
            db_err(e)
        }
    })?;
    Ok(())
}

pub(super) fn get_line(conn: &Connection, org: Option<&OrganizationId>, id: &LineId) -> Result<Option<Line>> {
    match org {
        Some(org) => optional(conn.query_row(
            &format!("SELECT {LINE_COLUMNS} FROM lines l WHERE l.id = ?1 AND l.org_id = ?2"),
            [id.as_str(), org.as_str()],
            rows::line,
        )),
        None => optional(conn.query_row(
            &format!("SELECT {LINE_COLUMNS} FROM lines l WHERE l.id = ?1"),
            [id.as_str()],
            rows::line,
        )),
    }
}

pub(super) fn get_line_context(conn: &Connection, org: &OrganizationId, id: &LineId) -> Result<Option<LineContext>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {LINE_COLUMNS}, o.billing_state FROM lines l JOIN organizations o ON o.id = l.org_id
             WHERE l.id = ?1 AND l.org_id = ?2"
        ))
        .map_err(db_err)?;
    optional(stmt.query_row([id.as_str(), org.as_str()], |r| {
        let billing: String = r.get(LINE_COLUMN_COUNT)?;
        Ok(LineContext {
            line: rows::line(r)?,
            billing_state: BillingState::parse(&billing).unwrap_or(BillingState::Restricted),
        })
    }))
}

pub(super) fn list_lines(conn: &Connection, org: &OrganizationId) -> Result<Vec<Line>> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {LINE_COLUMNS} FROM lines l WHERE l.org_id = ?1 ORDER BY l.created_at, l.id"))
        .map_err(db_err)?;
    let rows = stmt.query_map([org.as_str()], rows::line).map_err(db_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_err)
}

pub(super) fn set_line_state(
    conn: &Connection,
    org: &OrganizationId,
    id: &LineId,
    state: LifecycleState,
    reason: Option<&str>,
    at: Timestamp,
) -> Result<Option<Line>> {
    let Some(before) = get_line_context(conn, org, id)? else { return Ok(None) };
    // An archived line stays archived: provider reports and worker observations do not revive it.
    conn.execute(
        "UPDATE lines SET lifecycle_state = ?3, state_reason = ?4, updated_at = ?5
         WHERE id = ?1 AND org_id = ?2 AND lifecycle_state != 'archived'",
        params![id.as_str(), org.as_str(), state.as_str(), reason, at.unix_ms()],
    )
    .map_err(db_err)?;
    let line = get_line(conn, Some(org), id)?;
    if let Some(now) = &line {
        if now.lifecycle_state != before.line.lifecycle_state {
            let t = LineTransition {
                from: before.line.lifecycle_state,
                to: now.lifecycle_state,
                trigger: "provider_report".into(),
                reason: reason.map(str::to_owned),
                at,
            };
            record_transition(conn, org, id, &t)?;
        }
        emit_state_change(conn, &before, now, at)?;
    }
    Ok(line)
}

/// `channel.patch` when the line's lifecycle state differs from `before`'s.
pub(super) fn emit_state_change(conn: &Connection, before: &LineContext, now: &Line, at: Timestamp) -> Result<()> {
    if now.lifecycle_state == before.line.lifecycle_state {
        return Ok(());
    }
    let effective = now.effective_send_state(before.billing_state.allows_sending());
    emit(conn, &now.organization_id, &now.id, WebhookEventKind::ChannelPatch, at, |_| {
        Ok(Some(WebhookEvent::LineState(LineStateChange {
            previous_state: before.line.lifecycle_state,
            lifecycle_state: now.lifecycle_state,
            effective_send_state: effective,
            sendable: effective == EffectiveSendState::Sendable,
            reason: now.state_reason.clone(),
        })))
    })
}

pub(super) fn replace_line_token(conn: &Connection, t: &LineTokenRecord) -> Result<bool> {
    let revoked = conn
        .prepare_cached("UPDATE line_tokens SET revoked_at = ?2 WHERE line_id = ?1 AND revoked_at IS NULL")
        .and_then(|mut s| s.execute(params![t.line_id.as_str(), t.created_at.unix_ms()]))
        .map_err(db_err)?;
    conn.prepare_cached(
        "INSERT INTO line_tokens (id, org_id, line_id, token_hash, last_four, created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            t.id.as_str(),
            t.organization_id.as_str(),
            t.line_id.as_str(),
            t.token_hash,
            t.last_four,
            t.created_by.as_ref().map(|u| u.as_str().to_owned()),
            t.created_at.unix_ms()
        ])
    })
    .map_err(db_err)?;
    Ok(revoked > 0)
}

pub(super) fn find_line_token(conn: &Connection, hash: &str) -> Result<Option<LineTokenMatch>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {LINE_COLUMNS}, t.id, o.billing_state FROM line_tokens t
             JOIN lines l ON l.id = t.line_id JOIN organizations o ON o.id = l.org_id
             WHERE t.token_hash = ?1 AND t.revoked_at IS NULL"
        ))
        .map_err(db_err)?;
    optional(stmt.query_row([hash], |r| {
        let billing: String = r.get(LINE_COLUMN_COUNT + 1)?;
        Ok(LineTokenMatch {
            line: rows::line(r)?,
            token_id: LineTokenId::from_raw(r.get::<_, String>(LINE_COLUMN_COUNT)?),
            billing_state: BillingState::parse(&billing).unwrap_or(BillingState::Restricted),
        })
    }))
}

pub(super) fn rotate_line_token(conn: &Connection, t: &LineTokenRecord, audit: &AuditEvent) -> Result<bool> {
    let revoked = replace_line_token(conn, t)?;
    record_audit(conn, audit)?;
    Ok(revoked)
}

pub(super) fn create_line(conn: &Connection, new: &CreateLine) -> Result<CreateLineOutcome> {
    let org = &new.line.organization_id;
    if let Some(idem) = &new.idempotency {
        let found: Option<(String, String)> = optional(
            conn.prepare_cached("SELECT fingerprint, line_id FROM line_creation_keys WHERE org_id = ?1 AND key = ?2")
                .and_then(|mut s| s.query_row([org.as_str(), &idem.key], |r| Ok((r.get(0)?, r.get(1)?)))),
        )?;
        if let Some((fingerprint, line_id)) = found {
            let line_id = LineId::from_raw(line_id);
            if fingerprint != idem.fingerprint {
                return Ok(CreateLineOutcome::KeyReused { line_id });
            }
            let line = get_line(conn, Some(org), &line_id)?
                .ok_or_else(|| Error::internal("a line creation key points at a missing line"))?;
            return Ok(CreateLineOutcome::Replayed(Box::new(line)));
        }
    }
    let active: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM lines WHERE org_id = ?1 AND lifecycle_state != 'archived'")
        .and_then(|mut s| s.query_row([org.as_str()], |r| r.get(0)))
        .map_err(db_err)?;
    if active >= i64::from(new.max_active_lines) {
        return Ok(CreateLineOutcome::SlotsExhausted);
    }
    insert_line(conn, &new.line)?;
    if let Some(idem) = &new.idempotency {
        conn.prepare_cached(
            "INSERT INTO line_creation_keys (org_id, key, fingerprint, line_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| {
            s.execute(params![
                org.as_str(),
                idem.key,
                idem.fingerprint,
                new.line.id.as_str(),
                new.line.created_at.unix_ms()
            ])
        })
        .map_err(db_err)?;
    }
    record_audit(conn, &new.audit)?;
    Ok(CreateLineOutcome::Created(Box::new(new.line.clone())))
}

pub(super) fn set_default_assignee(
    conn: &Connection,
    org: &OrganizationId,
    id: &LineId,
    assignee: Option<&UserId>,
    at: Timestamp,
    audit: &AuditEvent,
) -> Result<Option<Line>> {
    let n = conn
        .prepare_cached("UPDATE lines SET default_assignee_id = ?3, updated_at = ?4 WHERE id = ?1 AND org_id = ?2")
        .and_then(|mut s| s.execute(params![id.as_str(), org.as_str(), assignee.map(UserId::as_str), at.unix_ms()]))
        .map_err(db_err)?;
    if n == 0 {
        return Ok(None);
    }
    record_audit(conn, audit)?;
    get_line(conn, Some(org), id)
}

pub(super) fn archive_line(
    conn: &Connection,
    org: &OrganizationId,
    id: &LineId,
    at: Timestamp,
    audit: &AuditEvent,
) -> Result<Option<ArchivedLine>> {
    let Some(before) = get_line_context(conn, org, id)? else { return Ok(None) };
    if before.line.lifecycle_state == LifecycleState::Archived {
        return Ok(Some(ArchivedLine { line: before.line, newly_archived: false, failed: Vec::new() }));
    }
    conn.prepare_cached(
        "UPDATE lines SET lifecycle_state = 'archived', state_reason = NULL, updated_at = ?3 WHERE id = ?1 AND org_id = ?2",
    )
    .and_then(|mut s| s.execute(params![id.as_str(), org.as_str(), at.unix_ms()]))
    .map_err(db_err)?;
    let line = get_line(conn, Some(org), id)?.ok_or_else(|| Error::internal("archived line vanished"))?;
    let t = LineTransition {
        from: before.line.lifecycle_state,
        to: LifecycleState::Archived,
        trigger: "archived".into(),
        reason: None,
        at,
    };
    record_transition(conn, org, id, &t)?;
    emit_state_change(conn, &before, &line, at)?;
    // Jobs whose provider call has started are left to finish; every other job fails now.
    let jobs: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT message_id, conversation_id FROM outbox_jobs
             WHERE line_id = ?1 AND org_id = ?2 AND dispatched_at IS NULL ORDER BY seq",
        )
        .and_then(|mut s| {
            s.query_map([id.as_str(), org.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()
        })
        .map_err(db_err)?;
    let mut failed = Vec::with_capacity(jobs.len());
    for (message_id, conversation_id) in jobs {
        conn.prepare_cached("DELETE FROM outbox_jobs WHERE message_id = ?1")
            .and_then(|mut s| s.execute([&message_id]))
            .map_err(db_err)?;
        let n = conn
            .prepare_cached(
                "UPDATE messages SET status = 'failed', failed_at = ?2, error_code = 'line_archived',
                        error_message = 'the line was archived before this message was sent'
                 WHERE id = ?1 AND status = 'queued'",
            )
            .and_then(|mut s| s.execute(params![message_id, at.unix_ms()]))
            .map_err(db_err)?;
        if n > 0 {
            let message_id = MessageId::from_raw(message_id);
            emit_status(conn, org, id, &message_id, at)?;
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
    for change in &failed {
        conn.prepare_cached(
            "UPDATE outbox_jobs SET is_head = 1
             WHERE seq = (SELECT MIN(seq) FROM outbox_jobs WHERE conversation_id = ?1) AND is_head = 0",
        )
        .and_then(|mut s| s.execute([change.conversation_id.as_str()]))
        .map_err(db_err)?;
    }
    record_audit(conn, audit)?;
    Ok(Some(ArchivedLine { line, newly_archived: true, failed }))
}

// ---- permissions ----

const PERMISSION_COLUMNS: &str = "p.org_id, p.line_id, p.user_id, p.can_view, p.can_send, p.updated_at, p.updated_by";

/// A permission read from columns starting at `o`.
fn permission_at(r: &Row<'_>, o: usize) -> rusqlite::Result<LinePermission> {
    Ok(LinePermission {
        organization_id: OrganizationId::from_raw(r.get::<_, String>(o)?),
        line_id: LineId::from_raw(r.get::<_, String>(o + 1)?),
        user_id: UserId::from_raw(r.get::<_, String>(o + 2)?),
        can_view: r.get(o + 3)?,
        can_send: r.get(o + 4)?,
        updated_at: Timestamp::from_unix_ms(r.get(o + 5)?),
        updated_by: r.get::<_, Option<String>>(o + 6)?.map(UserId::from_raw),
    })
}

pub(super) fn get_line_access(
    conn: &Connection,
    org: &OrganizationId,
    id: &LineId,
    user: &UserId,
) -> Result<Option<LineAccessContext>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {LINE_COLUMNS}, o.billing_state, {PERMISSION_COLUMNS}
             FROM lines l JOIN organizations o ON o.id = l.org_id
             LEFT JOIN line_permissions p ON p.line_id = l.id AND p.user_id = ?3
             WHERE l.id = ?1 AND l.org_id = ?2"
        ))
        .map_err(db_err)?;
    optional(stmt.query_row([id.as_str(), org.as_str(), user.as_str()], |r| {
        let billing: String = r.get(LINE_COLUMN_COUNT)?;
        let has_permission = r.get::<_, Option<String>>(LINE_COLUMN_COUNT + 1)?.is_some();
        Ok(LineAccessContext {
            context: LineContext {
                line: rows::line(r)?,
                billing_state: BillingState::parse(&billing).unwrap_or(BillingState::Restricted),
            },
            permission: if has_permission { Some(permission_at(r, LINE_COLUMN_COUNT + 1)?) } else { None },
        })
    }))
}

pub(super) fn visible_line_ids(conn: &Connection, org: &OrganizationId, user: &UserId) -> Result<Option<Vec<LineId>>> {
    let lines: Vec<(String, bool)> = conn
        .prepare_cached(
            "SELECT l.id, COALESCE(p.can_view, 1) FROM lines l
             LEFT JOIN line_permissions p ON p.line_id = l.id AND p.user_id = ?2
             WHERE l.org_id = ?1 ORDER BY l.created_at, l.id",
        )
        .and_then(|mut s| {
            s.query_map([org.as_str(), user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()
        })
        .map_err(db_err)?;
    if lines.iter().all(|(_, visible)| *visible) {
        return Ok(None);
    }
    Ok(Some(lines.into_iter().filter(|(_, visible)| *visible).map(|(id, _)| LineId::from_raw(id)).collect()))
}

pub(super) fn get_line_permission(
    conn: &Connection,
    org: &OrganizationId,
    line: &LineId,
    user: &UserId,
) -> Result<Option<LinePermission>> {
    optional(
        conn.prepare_cached(&format!(
            "SELECT {PERMISSION_COLUMNS} FROM line_permissions p WHERE p.line_id = ?1 AND p.user_id = ?2 AND p.org_id = ?3"
        ))
        .and_then(|mut s| s.query_row([line.as_str(), user.as_str(), org.as_str()], |r| permission_at(r, 0))),
    )
}

pub(super) fn list_line_permissions(
    conn: &Connection,
    org: &OrganizationId,
    line: &LineId,
) -> Result<Vec<LinePermission>> {
    conn.prepare_cached(&format!(
        "SELECT {PERMISSION_COLUMNS} FROM line_permissions p WHERE p.line_id = ?1 AND p.org_id = ?2
         ORDER BY p.updated_at, p.user_id"
    ))
    .and_then(|mut s| s.query_map([line.as_str(), org.as_str()], |r| permission_at(r, 0))?.collect())
    .map_err(db_err)
}

pub(super) fn set_line_permission(conn: &Connection, p: &LinePermission, audit: &AuditEvent) -> Result<()> {
    // The line must belong to the permission's organization.
    let n = conn
        .prepare_cached(
            "INSERT INTO line_permissions (line_id, user_id, org_id, can_view, can_send, updated_at, updated_by)
             SELECT l.id, ?2, l.org_id, ?4, ?5, ?6, ?7 FROM lines l WHERE l.id = ?1 AND l.org_id = ?3
             ON CONFLICT (line_id, user_id) DO UPDATE SET can_view = excluded.can_view, can_send = excluded.can_send,
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .and_then(|mut s| {
            s.execute(params![
                p.line_id.as_str(),
                p.user_id.as_str(),
                p.organization_id.as_str(),
                p.can_view,
                p.can_send,
                p.updated_at.unix_ms(),
                p.updated_by.as_ref().map(UserId::as_str),
            ])
        })
        .map_err(db_err)?;
    if n == 0 {
        return Err(Error::not_found("line"));
    }
    record_audit(conn, audit)
}

pub(super) fn clear_line_permission(
    conn: &Connection,
    org: &OrganizationId,
    line: &LineId,
    user: &UserId,
    audit: &AuditEvent,
) -> Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM line_permissions WHERE line_id = ?1 AND user_id = ?2 AND org_id = ?3")
        .and_then(|mut s| s.execute([line.as_str(), user.as_str(), org.as_str()]))
        .map_err(db_err)?;
    if n > 0 {
        record_audit(conn, audit)?;
    }
    Ok(n > 0)
}
