//! Lines and line tokens.

use ezw_core::ids::{LineId, LineTokenId, OrganizationId};
use ezw_core::model::{BillingState, EffectiveSendState, LifecycleState, Line, LineTokenRecord, WebhookEventKind};
use ezw_core::ports::{LineContext, LineTokenMatch};
use ezw_core::webhooks::{LineStateChange, WebhookEvent};
use ezw_core::{Error, Result, Timestamp};
use rusqlite::{params, Connection};

use super::rows::{self, LINE_COLUMNS, LINE_COLUMN_COUNT};
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
    conn.execute(
        "UPDATE lines SET lifecycle_state = ?3, state_reason = ?4, updated_at = ?5 WHERE id = ?1 AND org_id = ?2",
        params![id.as_str(), org.as_str(), state.as_str(), reason, at.unix_ms()],
    )
    .map_err(db_err)?;
    let line = get_line(conn, Some(org), id)?;
    if let Some(now) = line.as_ref().filter(|l| l.lifecycle_state != before.line.lifecycle_state) {
        let effective = now.effective_send_state(before.billing_state.allows_sending());
        super::webhooks::emit(conn, org, id, WebhookEventKind::ChannelPatch, at, |_| {
            Ok(Some(WebhookEvent::LineState(LineStateChange {
                previous_state: before.line.lifecycle_state,
                lifecycle_state: now.lifecycle_state,
                effective_send_state: effective,
                sendable: effective == EffectiveSendState::Sendable,
                reason: now.state_reason.clone(),
            })))
        })?;
    }
    Ok(line)
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
