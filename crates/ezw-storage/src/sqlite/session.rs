//! `impl SessionStore for SqliteStore`: lifecycle transitions, pairing requests, session state.
//!
//! Writes run on the single writer (each call is one transaction, so a compare-and-set is a
//! read and a write in the same job); reads go to the reader pool.

use async_trait::async_trait;
use ezw_core::ids::{LineId, OrganizationId, PairingId, UserId};
use ezw_core::model::{LifecycleState, LineTransition, Pairing, PairingMethod, PairingStatus, RecordedTransition};
use ezw_core::ports::{PairingRequestOutcome, SessionStateRecord, SessionStore, StateSelector, TransitionOutcome};
use ezw_core::{Error, PhoneNumber, Result, Timestamp};
use rusqlite::types::{Type, Value};
use rusqlite::{params, params_from_iter, Connection, Row};

use super::lines::{emit_state_change, get_line, get_line_context};
use super::{db_err, optional, SqliteStore};

fn bad(col: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, format!("unknown {what}").into())
}

// ---- transitions ----

/// Records a lifecycle transition of a line inside the caller's transaction.
pub(super) fn record_transition(
    conn: &Connection,
    org: &OrganizationId,
    line: &LineId,
    t: &LineTransition,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO line_transitions (org_id, line_id, from_state, to_state, trigger, reason, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            org.as_str(),
            line.as_str(),
            t.from.as_str(),
            t.to.as_str(),
            t.trigger,
            t.reason,
            t.at.unix_ms()
        ])
    })
    .map_err(db_err)?;
    Ok(())
}

fn state_at(r: &Row<'_>, i: usize) -> rusqlite::Result<LifecycleState> {
    let raw: String = r.get(i)?;
    LifecycleState::parse(&raw).ok_or_else(|| bad(i, "lifecycle state"))
}

fn transition_row(r: &Row<'_>) -> rusqlite::Result<RecordedTransition> {
    Ok(RecordedTransition {
        seq: r.get(0)?,
        line_id: LineId::from_raw(r.get::<_, String>(1)?),
        transition: LineTransition {
            from: state_at(r, 2)?,
            to: state_at(r, 3)?,
            trigger: r.get(4)?,
            reason: r.get(5)?,
            at: Timestamp::from_unix_ms(r.get(6)?),
        },
    })
}

fn transition_line(
    conn: &Connection,
    org: &OrganizationId,
    id: &LineId,
    t: &LineTransition,
) -> Result<TransitionOutcome> {
    let Some(before) = get_line_context(conn, org, id)? else { return Ok(TransitionOutcome::NotFound) };
    let state = before.line.lifecycle_state;
    if state != t.from || state == LifecycleState::Archived {
        return Ok(TransitionOutcome::Stale(Box::new(before.line)));
    }
    conn.prepare_cached(
        "UPDATE lines SET lifecycle_state = ?3, state_reason = ?4, updated_at = ?5 WHERE id = ?1 AND org_id = ?2",
    )
    .and_then(|mut s| s.execute(params![id.as_str(), org.as_str(), t.to.as_str(), t.reason, t.at.unix_ms()]))
    .map_err(db_err)?;
    record_transition(conn, org, id, t)?;
    let line = get_line(conn, Some(org), id)?.ok_or_else(|| Error::internal("a transitioned line vanished"))?;
    emit_state_change(conn, &before, &line, t.at)?;
    Ok(TransitionOutcome::Applied(Box::new(line)))
}

fn list_transitions(
    conn: &Connection,
    org: &OrganizationId,
    line: &LineId,
    before_seq: Option<i64>,
    limit: u32,
) -> Result<Vec<RecordedTransition>> {
    conn.prepare_cached(
        "SELECT seq, line_id, from_state, to_state, trigger, reason, at FROM line_transitions
         WHERE org_id = ?1 AND line_id = ?2 AND seq < ?3 ORDER BY seq DESC LIMIT ?4",
    )
    .and_then(|mut s| {
        s.query_map(
            params![org.as_str(), line.as_str(), before_seq.unwrap_or(i64::MAX), i64::from(limit)],
            transition_row,
        )?
        .collect()
    })
    .map_err(db_err)
}

// ---- pairings ----

const PAIRING_COLUMNS: &str = "p.id, p.org_id, p.line_id, p.method, p.phone, p.status, p.idempotency_key, p.qr_code, \
     p.phone_code, p.rotation, p.expires_at, p.reason, p.requested_by, p.requested_at, p.updated_at";

fn pairing_row(r: &Row<'_>) -> rusqlite::Result<Pairing> {
    let method = match r.get::<_, String>(3)?.as_str() {
        "qr" => PairingMethod::Qr,
        "phone_code" => {
            let raw: Option<String> = r.get(4)?;
            let phone =
                raw.as_deref().and_then(|p| PhoneNumber::parse(p).ok()).ok_or_else(|| bad(4, "pairing phone"))?;
            PairingMethod::PhoneCode { phone }
        }
        _ => return Err(bad(3, "pairing method")),
    };
    let status: String = r.get(5)?;
    let rotation: i64 = r.get(9)?;
    Ok(Pairing {
        id: PairingId::from_raw(r.get::<_, String>(0)?),
        organization_id: OrganizationId::from_raw(r.get::<_, String>(1)?),
        line_id: LineId::from_raw(r.get::<_, String>(2)?),
        method,
        status: PairingStatus::parse(&status).ok_or_else(|| bad(5, "pairing status"))?,
        idempotency_key: r.get(6)?,
        qr_code: r.get(7)?,
        phone_code: r.get(8)?,
        rotation: u32::try_from(rotation).map_err(|_| bad(9, "pairing rotation"))?,
        expires_at: r.get::<_, Option<i64>>(10)?.map(Timestamp::from_unix_ms),
        reason: r.get(11)?,
        requested_by: r.get::<_, Option<String>>(12)?.map(UserId::from_raw),
        requested_at: Timestamp::from_unix_ms(r.get(13)?),
        updated_at: Timestamp::from_unix_ms(r.get(14)?),
    })
}

fn phone_of(method: &PairingMethod) -> Option<&str> {
    match method {
        PairingMethod::Qr => None,
        PairingMethod::PhoneCode { phone } => Some(phone.as_str()),
    }
}

/// Not found unless the organization has the line.
fn ensure_line(conn: &Connection, org: &OrganizationId, line: &LineId) -> Result<()> {
    let found = optional(
        conn.prepare_cached("SELECT 1 FROM lines WHERE id = ?1 AND org_id = ?2")
            .and_then(|mut s| s.query_row([line.as_str(), org.as_str()], |r| r.get::<_, i64>(0))),
    )?;
    found.map(|_| ()).ok_or_else(|| Error::not_found("line"))
}

fn get_pairing(conn: &Connection, org: &OrganizationId, line: &LineId) -> Result<Option<(Pairing, String)>> {
    optional(
        conn.prepare_cached(&format!(
            "SELECT {PAIRING_COLUMNS}, p.fingerprint FROM line_pairings p WHERE p.line_id = ?1 AND p.org_id = ?2"
        ))
        .and_then(|mut s| s.query_row([line.as_str(), org.as_str()], |r| Ok((pairing_row(r)?, r.get(15)?)))),
    )
}

fn request_pairing(conn: &Connection, p: &Pairing, fingerprint: &str) -> Result<PairingRequestOutcome> {
    let (org, line) = (&p.organization_id, &p.line_id);
    ensure_line(conn, org, line)?;
    if let Some((current, stored)) = get_pairing(conn, org, line)? {
        if p.idempotency_key.is_some() && current.idempotency_key == p.idempotency_key {
            return Ok(if stored == fingerprint {
                PairingRequestOutcome::Replayed(Box::new(current))
            } else {
                PairingRequestOutcome::KeyReused(Box::new(current))
            });
        }
    }
    conn.prepare_cached(
        "INSERT INTO line_pairings (line_id, org_id, id, method, phone, status, idempotency_key, fingerprint, qr_code,
                                    phone_code, rotation, expires_at, reason, requested_by, requested_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (line_id) DO UPDATE SET
             org_id = excluded.org_id, id = excluded.id, method = excluded.method, phone = excluded.phone,
             status = excluded.status, idempotency_key = excluded.idempotency_key,
             fingerprint = excluded.fingerprint, qr_code = excluded.qr_code, phone_code = excluded.phone_code,
             rotation = excluded.rotation, expires_at = excluded.expires_at, reason = excluded.reason,
             requested_by = excluded.requested_by, requested_at = excluded.requested_at,
             updated_at = excluded.updated_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            line.as_str(),
            org.as_str(),
            p.id.as_str(),
            p.method.as_str(),
            phone_of(&p.method),
            p.status.as_str(),
            p.idempotency_key,
            fingerprint,
            p.qr_code,
            p.phone_code,
            i64::from(p.rotation),
            p.expires_at.map(Timestamp::unix_ms),
            p.reason,
            p.requested_by.as_ref().map(UserId::as_str),
            p.requested_at.unix_ms(),
            p.updated_at.unix_ms(),
        ])
    })
    .map_err(db_err)?;
    Ok(PairingRequestOutcome::Created(Box::new(p.clone())))
}

fn update_pairing(conn: &Connection, p: &Pairing, expected: PairingStatus) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE line_pairings SET status = ?5, qr_code = ?6, phone_code = ?7, rotation = ?8, expires_at = ?9,
                    reason = ?10, updated_at = ?11
             WHERE line_id = ?1 AND org_id = ?2 AND id = ?3 AND status = ?4",
        )
        .and_then(|mut s| {
            s.execute(params![
                p.line_id.as_str(),
                p.organization_id.as_str(),
                p.id.as_str(),
                expected.as_str(),
                p.status.as_str(),
                p.qr_code,
                p.phone_code,
                i64::from(p.rotation),
                p.expires_at.map(Timestamp::unix_ms),
                p.reason,
                p.updated_at.unix_ms(),
            ])
        })
        .map_err(db_err)?;
    Ok(n > 0)
}

fn list_requested(conn: &Connection, holder: &str) -> Result<Vec<Pairing>> {
    conn.prepare_cached(&format!(
        "SELECT {PAIRING_COLUMNS} FROM line_pairings p JOIN session_leases s ON s.line_id = p.line_id
         WHERE p.status = 'requested' AND s.holder = ?1 ORDER BY p.requested_at, p.id"
    ))
    .and_then(|mut s| s.query_map([holder], pairing_row)?.collect())
    .map_err(db_err)
}

// ---- session state ----

/// A `WHERE` clause and its parameters, built before the work leaves the caller's borrows.
struct Selection {
    clause: String,
    params: Vec<Value>,
}

impl Selection {
    /// Every record of the line.
    fn line(org: &OrganizationId, line: &LineId) -> Self {
        Self {
            clause: "org_id = ?1 AND line_id = ?2".to_owned(),
            params: vec![Value::Text(org.as_str().to_owned()), Value::Text(line.as_str().to_owned())],
        }
    }

    /// Adds `AND <column> <op> ?n` with `value` as the next parameter.
    fn and(mut self, column: &str, op: &str, value: Value) -> Self {
        self.params.push(value);
        self.clause.push_str(&format!(" AND {column} {op} ?{}", self.params.len()));
        self
    }

    /// The records a selector picks.
    fn of(org: &OrganizationId, line: &LineId, select: &StateSelector<'_>) -> Result<Self> {
        let mut s = Self::line(org, line).and("kind", "=", Value::Text(select.kind.to_owned()));
        if let Some(scope) = select.scope {
            s = s.and("scope", "=", Value::Text(scope.to_owned()));
        }
        if let Some(keys) = select.keys {
            // One parameter however many keys: a JSON array expanded by `json_each`.
            let list = serde_json::to_string(keys)
                .map_err(|e| Error::internal(format!("serializing state keys: {e}")).with_source(e))?;
            s.params.push(Value::Text(list));
            s.clause.push_str(&format!(" AND key IN (SELECT value FROM json_each(?{}))", s.params.len()));
        }
        Ok(s)
    }
}

fn state_row(r: &Row<'_>) -> rusqlite::Result<SessionStateRecord> {
    Ok(SessionStateRecord { kind: r.get(0)?, scope: r.get(1)?, key: r.get(2)?, value: r.get(3)?, stamp: r.get(4)? })
}

fn select_state(conn: &Connection, s: &Selection) -> Result<Vec<SessionStateRecord>> {
    conn.prepare_cached(&format!(
        "SELECT kind, scope, key, value, stamp FROM session_state WHERE {} ORDER BY scope, key",
        s.clause
    ))
    .and_then(|mut stmt| stmt.query_map(params_from_iter(&s.params), state_row)?.collect())
    .map_err(db_err)
}

fn delete_state(conn: &Connection, s: &Selection) -> Result<u64> {
    conn.prepare_cached(&format!("DELETE FROM session_state WHERE {}", s.clause))
        .and_then(|mut stmt| stmt.execute(params_from_iter(&s.params)))
        .map(|n| n as u64)
        .map_err(db_err)
}

fn put_state(conn: &Connection, org: &OrganizationId, line: &LineId, records: &[SessionStateRecord]) -> Result<()> {
    ensure_line(conn, org, line)?;
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO session_state (org_id, line_id, kind, scope, key, value, stamp)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (org_id, line_id, kind, scope, key) DO UPDATE SET value = excluded.value, stamp = excluded.stamp",
        )
        .map_err(db_err)?;
    for r in records {
        stmt.execute(params![org.as_str(), line.as_str(), r.kind, r.scope, r.key, r.value, r.stamp]).map_err(db_err)?;
    }
    Ok(())
}

fn take_state(conn: &Connection, s: &Selection) -> Result<Option<SessionStateRecord>> {
    optional(
        conn.prepare_cached(&format!(
            "DELETE FROM session_state WHERE {} RETURNING kind, scope, key, value, stamp",
            s.clause
        ))
        .and_then(|mut stmt| stmt.query_row(params_from_iter(&s.params), state_row)),
    )
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn transition_line(
        &self,
        org: &OrganizationId,
        line: &LineId,
        t: &LineTransition,
    ) -> Result<TransitionOutcome> {
        let (org, line, t) = (org.clone(), line.clone(), t.clone());
        self.writer.write(move |c| transition_line(c, &org, &line, &t)).await
    }

    async fn list_line_transitions(
        &self,
        org: &OrganizationId,
        line: &LineId,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RecordedTransition>> {
        let (org, line) = (org.clone(), line.clone());
        self.readers.read(move |c| list_transitions(c, &org, &line, before_seq, limit)).await
    }

    async fn request_pairing(&self, pairing: &Pairing, fingerprint: &str) -> Result<PairingRequestOutcome> {
        let (p, fingerprint) = (pairing.clone(), fingerprint.to_owned());
        self.writer.write(move |c| request_pairing(c, &p, &fingerprint)).await
    }

    async fn get_pairing(&self, org: &OrganizationId, line: &LineId) -> Result<Option<Pairing>> {
        let (org, line) = (org.clone(), line.clone());
        self.readers.lookup(move |c| Ok(get_pairing(c, &org, &line)?.map(|(p, _)| p))).await
    }

    async fn update_pairing(&self, pairing: &Pairing, expected: PairingStatus) -> Result<bool> {
        let p = pairing.clone();
        self.writer.write(move |c| update_pairing(c, &p, expected)).await
    }

    async fn list_requested_pairings(&self, holder: &str) -> Result<Vec<Pairing>> {
        let holder = holder.to_owned();
        self.readers.read(move |c| list_requested(c, &holder)).await
    }

    async fn get_session_state(
        &self,
        org: &OrganizationId,
        line: &LineId,
        select: StateSelector<'_>,
    ) -> Result<Vec<SessionStateRecord>> {
        if select.keys.is_some_and(<[String]>::is_empty) {
            return Ok(Vec::new());
        }
        let s = Selection::of(org, line, &select)?;
        self.readers.read(move |c| select_state(c, &s)).await
    }

    async fn put_session_state(
        &self,
        org: &OrganizationId,
        line: &LineId,
        records: &[SessionStateRecord],
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let (org, line, records) = (org.clone(), line.clone(), records.to_vec());
        self.writer.write(move |c| put_state(c, &org, &line, &records)).await
    }

    async fn delete_session_state(
        &self,
        org: &OrganizationId,
        line: &LineId,
        select: StateSelector<'_>,
    ) -> Result<u64> {
        if select.keys.is_some_and(<[String]>::is_empty) {
            return Ok(0);
        }
        let s = Selection::of(org, line, &select)?;
        self.writer.write(move |c| delete_state(c, &s)).await
    }

    async fn delete_session_state_before(
        &self,
        org: &OrganizationId,
        line: &LineId,
        kind: &str,
        cutoff: i64,
    ) -> Result<u64> {
        let s = Selection::line(org, line)
            .and("kind", "=", Value::Text(kind.to_owned()))
            .and("stamp", ">", Value::Integer(0))
            .and("stamp", "<", Value::Integer(cutoff));
        self.writer.write(move |c| delete_state(c, &s)).await
    }

    async fn take_session_state(
        &self,
        org: &OrganizationId,
        line: &LineId,
        kind: &str,
        scope: &str,
        key: &str,
    ) -> Result<Option<SessionStateRecord>> {
        let s = Selection::line(org, line)
            .and("kind", "=", Value::Text(kind.to_owned()))
            .and("scope", "=", Value::Text(scope.to_owned()))
            .and("key", "=", Value::Text(key.to_owned()));
        self.writer.write(move |c| take_state(c, &s)).await
    }

    async fn clear_session_state(&self, org: &OrganizationId, line: &LineId) -> Result<u64> {
        let s = Selection::line(org, line);
        self.writer.write(move |c| delete_state(c, &s)).await
    }
}
