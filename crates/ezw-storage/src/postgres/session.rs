//! `impl SessionStore for PgStore`: lifecycle transitions, pairing requests, session state.
//!
//! A transition and a pairing request are one `SERIALIZABLE` transaction each (a read, then a
//! write that depends on it), retried on contention. Everything else is a single statement:
//! session-state batches are upserted from arrays (`UNNEST`), in key order so that concurrent
//! batches lock rows in the same order.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use ezw_core::ids::{LineId, OrganizationId, PairingId, UserId};
use ezw_core::model::{LifecycleState, LineTransition, Pairing, PairingMethod, PairingStatus, RecordedTransition};
use ezw_core::ports::{
    PairingRequestOutcome, SessionStateRecord, SessionStore, StateSelector, TransitionOutcome, Wake,
};
use ezw_core::{Error, PhoneNumber, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::events::Emitter;
use super::lines::{emit_state_change, get_line_context_in};
use super::rows::{self, get, u32_at};
use super::{bad_value, db_err, Db, PgStore, Tx};

// ---- transitions ----

/// Records a lifecycle transition of a line inside `tx`.
pub(super) async fn record_transition(
    tx: &Tx<'_>,
    org: &OrganizationId,
    line: &LineId,
    t: &LineTransition,
) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO line_transitions (org_id, line_id, from_state, to_state, trigger, reason, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await
        .map_err(db_err)?;
    tx.execute(
        &stmt,
        &[&org.as_str(), &line.as_str(), &t.from.as_str(), &t.to.as_str(), &t.trigger, &t.reason, &t.at.unix_ms()],
    )
    .await
    .map_err(db_err)?;
    Ok(())
}

fn state_at(r: &Row, i: usize) -> Result<LifecycleState> {
    let raw: &str = get(r, i)?;
    LifecycleState::parse(raw).ok_or_else(|| bad_value("lifecycle state", raw))
}

fn transition_row(r: &Row) -> Result<RecordedTransition> {
    Ok(RecordedTransition {
        seq: get(r, 0)?,
        line_id: LineId::from_raw(get::<String>(r, 1)?),
        transition: LineTransition {
            from: state_at(r, 2)?,
            to: state_at(r, 3)?,
            trigger: get(r, 4)?,
            reason: get(r, 5)?,
            at: rows::ts(r, 6)?,
        },
    })
}

async fn transition_line(db: &Db, org: &OrganizationId, id: &LineId, t: &LineTransition) -> Result<TransitionOutcome> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let Some(before) = get_line_context_in(&tx, org, id).await? else { return Ok(TransitionOutcome::NotFound) };
    let state = before.line.lifecycle_state;
    if state != t.from || state == LifecycleState::Archived {
        return Ok(TransitionOutcome::Stale(Box::new(before.line)));
    }
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE lines l SET lifecycle_state = $3, state_reason = $4, updated_at = $5
             WHERE l.id = $1 AND l.org_id = $2 RETURNING {}",
            rows::LINE_COLUMNS
        ))
        .await
        .map_err(db_err)?;
    let row = tx
        .query_opt(&stmt, &[&id.as_str(), &org.as_str(), &t.to.as_str(), &t.reason, &t.at.unix_ms()])
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::internal("a transitioned line vanished"))?;
    let line = rows::line(&row)?;
    record_transition(&tx, org, id, t).await?;
    emit_state_change(&tx, &mut Emitter::new(), &before, &line, t.at).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(TransitionOutcome::Applied(Box::new(line)))
}

// ---- pairings ----

const PAIRING_COLUMNS: &str = "p.id, p.org_id, p.line_id, p.method, p.phone, p.status, p.idempotency_key, p.qr_code, \
     p.phone_code, p.rotation, p.expires_at, p.reason, p.requested_by, p.requested_at, p.updated_at";

fn pairing_row(r: &Row) -> Result<Pairing> {
    let method = match get::<&str>(r, 3)? {
        "qr" => PairingMethod::Qr,
        "phone_code" => {
            let raw: Option<&str> = get(r, 4)?;
            let phone = raw
                .and_then(|p| PhoneNumber::parse(p).ok())
                .ok_or_else(|| bad_value("pairing phone", raw.unwrap_or_default()))?;
            PairingMethod::PhoneCode { phone }
        }
        other => return Err(bad_value("pairing method", other)),
    };
    let status: &str = get(r, 5)?;
    Ok(Pairing {
        id: PairingId::from_raw(get::<String>(r, 0)?),
        organization_id: OrganizationId::from_raw(get::<String>(r, 1)?),
        line_id: LineId::from_raw(get::<String>(r, 2)?),
        method,
        status: PairingStatus::parse(status).ok_or_else(|| bad_value("pairing status", status))?,
        idempotency_key: get(r, 6)?,
        qr_code: get(r, 7)?,
        phone_code: get(r, 8)?,
        rotation: u32_at(r, 9)?,
        expires_at: rows::ts_opt(r, 10)?,
        reason: get(r, 11)?,
        requested_by: get::<Option<String>>(r, 12)?.map(UserId::from_raw),
        requested_at: rows::ts(r, 13)?,
        updated_at: rows::ts(r, 14)?,
    })
}

fn phone_of(method: &PairingMethod) -> Option<&str> {
    match method {
        PairingMethod::Qr => None,
        PairingMethod::PhoneCode { phone } => Some(phone.as_str()),
    }
}

/// The line's current pairing with the fingerprint it was requested with.
async fn current_pairing(
    c: &impl GenericClient,
    org: &OrganizationId,
    line: &LineId,
) -> Result<Option<(Pairing, String)>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {PAIRING_COLUMNS}, p.fingerprint FROM line_pairings p WHERE p.line_id = $1 AND p.org_id = $2"
        ))
        .await
        .map_err(db_err)?;
    match c.query_opt(&stmt, &[&line.as_str(), &org.as_str()]).await.map_err(db_err)? {
        Some(r) => Ok(Some((pairing_row(&r)?, get(&r, 15)?))),
        None => Ok(None),
    }
}

/// Not found unless the organization has the line.
async fn ensure_line(c: &impl GenericClient, org: &OrganizationId, line: &LineId) -> Result<()> {
    let stmt = c.prepare_cached("SELECT 1 FROM lines WHERE id = $1 AND org_id = $2").await.map_err(db_err)?;
    match c.query_opt(&stmt, &[&line.as_str(), &org.as_str()]).await.map_err(db_err)? {
        Some(_) => Ok(()),
        None => Err(Error::not_found("line")),
    }
}

async fn request_pairing(db: &Db, p: &Pairing, fingerprint: &str) -> Result<PairingRequestOutcome> {
    let (org, line) = (&p.organization_id, &p.line_id);
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    ensure_line(&tx, org, line).await?;
    if let Some((current, stored)) = current_pairing(&tx, org, line).await? {
        if p.idempotency_key.is_some() && current.idempotency_key == p.idempotency_key {
            return Ok(if stored == fingerprint {
                PairingRequestOutcome::Replayed(Box::new(current))
            } else {
                PairingRequestOutcome::KeyReused(Box::new(current))
            });
        }
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO line_pairings (line_id, org_id, id, method, phone, status, idempotency_key, fingerprint, qr_code,
                                        phone_code, rotation, expires_at, reason, requested_by, requested_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (line_id) DO UPDATE SET
                 org_id = EXCLUDED.org_id, id = EXCLUDED.id, method = EXCLUDED.method, phone = EXCLUDED.phone,
                 status = EXCLUDED.status, idempotency_key = EXCLUDED.idempotency_key,
                 fingerprint = EXCLUDED.fingerprint, qr_code = EXCLUDED.qr_code, phone_code = EXCLUDED.phone_code,
                 rotation = EXCLUDED.rotation, expires_at = EXCLUDED.expires_at, reason = EXCLUDED.reason,
                 requested_by = EXCLUDED.requested_by, requested_at = EXCLUDED.requested_at,
                 updated_at = EXCLUDED.updated_at",
        )
        .await
        .map_err(db_err)?;
    tx.execute(
        &stmt,
        &[
            &line.as_str(),
            &org.as_str(),
            &p.id.as_str(),
            &p.method.as_str(),
            &phone_of(&p.method),
            &p.status.as_str(),
            &p.idempotency_key,
            &fingerprint,
            &p.qr_code,
            &p.phone_code,
            &i64::from(p.rotation),
            &p.expires_at.map(|t| t.unix_ms()),
            &p.reason,
            &p.requested_by.as_ref().map(UserId::as_str),
            &p.requested_at.unix_ms(),
            &p.updated_at.unix_ms(),
        ],
    )
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(PairingRequestOutcome::Created(Box::new(p.clone())))
}

// ---- session state ----

/// A bound parameter of a session-state statement.
enum Arg {
    /// A TEXT value.
    Text(String),
    /// A TEXT[] value.
    Texts(Vec<String>),
    /// A BIGINT value.
    Int(i64),
}

impl Arg {
    fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Arg::Text(s) => s,
            Arg::Texts(v) => v,
            Arg::Int(i) => i,
        }
    }
}

/// A `WHERE` clause over `session_state` and its parameters; always scoped to one line.
struct Selection {
    clause: String,
    args: Vec<Arg>,
}

impl Selection {
    /// Every record of the line.
    fn line(org: &OrganizationId, line: &LineId) -> Self {
        Self {
            clause: "org_id = $1 AND line_id = $2".to_owned(),
            args: vec![Arg::Text(org.as_str().to_owned()), Arg::Text(line.as_str().to_owned())],
        }
    }

    /// Adds `AND <column> <op> <placeholder>` with `arg` bound to the placeholder (`{}` in
    /// `op`, which may wrap it, as in `= ANY({})`).
    fn and(mut self, column: &str, op: &str, arg: Arg) -> Self {
        self.args.push(arg);
        let placeholder = format!("${}", self.args.len());
        self.clause.push_str(&format!(" AND {column} {}", op.replace("{}", &placeholder)));
        self
    }

    /// The records a selector picks.
    fn of(org: &OrganizationId, line: &LineId, select: &StateSelector<'_>) -> Self {
        let mut s = Self::line(org, line).and("kind", "= {}", Arg::Text(select.kind.to_owned()));
        if let Some(scope) = select.scope {
            s = s.and("scope", "= {}", Arg::Text(scope.to_owned()));
        }
        if let Some(keys) = select.keys {
            s = s.and("key", "= ANY({}::TEXT[])", Arg::Texts(keys.to_vec()));
        }
        s
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.args.iter().map(Arg::as_param).collect()
    }
}

const STATE_COLUMNS: &str = "kind, scope, key, value, stamp";

fn state_row(r: &Row) -> Result<SessionStateRecord> {
    Ok(SessionStateRecord {
        kind: get(r, 0)?,
        scope: get(r, 1)?,
        key: get(r, 2)?,
        value: get(r, 3)?,
        stamp: get(r, 4)?,
    })
}

impl PgStore {
    async fn delete_state(&self, s: &Selection) -> Result<u64> {
        let conn = self.db.conn().await?;
        let stmt =
            conn.prepare_cached(&format!("DELETE FROM session_state WHERE {}", s.clause)).await.map_err(db_err)?;
        conn.execute(&stmt, &s.params()).await.map_err(db_err)
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn transition_line(
        &self,
        org: &OrganizationId,
        line: &LineId,
        t: &LineTransition,
    ) -> Result<TransitionOutcome> {
        self.db.retry(|| transition_line(&self.db, org, line, t)).await
    }

    async fn list_line_transitions(
        &self,
        org: &OrganizationId,
        line: &LineId,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RecordedTransition>> {
        let conn = self.db.conn().await?;
        let stmt = conn
            .prepare_cached(
                "SELECT seq, line_id, from_state, to_state, trigger, reason, at FROM line_transitions
                 WHERE org_id = $1 AND line_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4",
            )
            .await
            .map_err(db_err)?;
        let params: [&(dyn ToSql + Sync); 4] =
            [&org.as_str(), &line.as_str(), &before_seq.unwrap_or(i64::MAX), &i64::from(limit)];
        conn.query(&stmt, &params).await.map_err(db_err)?.iter().map(transition_row).collect()
    }

    async fn request_pairing(&self, pairing: &Pairing, fingerprint: &str) -> Result<PairingRequestOutcome> {
        let outcome = self.db.retry(|| request_pairing(&self.db, pairing, fingerprint)).await?;
        if matches!(outcome, PairingRequestOutcome::Created(_)) {
            // The node holding the line's session lease starts it.
            self.db.notifier.wake(Wake::Sessions);
        }
        Ok(outcome)
    }

    async fn get_pairing(&self, org: &OrganizationId, line: &LineId) -> Result<Option<Pairing>> {
        let conn = self.db.conn().await?;
        Ok(current_pairing(&conn, org, line).await?.map(|(p, _)| p))
    }

    async fn update_pairing(&self, pairing: &Pairing, expected: PairingStatus) -> Result<bool> {
        let p = pairing;
        let conn = self.db.conn().await?;
        let stmt = conn
            .prepare_cached(
                "UPDATE line_pairings SET status = $5, qr_code = $6, phone_code = $7, rotation = $8, expires_at = $9,
                        reason = $10, updated_at = $11
                 WHERE line_id = $1 AND org_id = $2 AND id = $3 AND status = $4",
            )
            .await
            .map_err(db_err)?;
        let n = conn
            .execute(
                &stmt,
                &[
                    &p.line_id.as_str(),
                    &p.organization_id.as_str(),
                    &p.id.as_str(),
                    &expected.as_str(),
                    &p.status.as_str(),
                    &p.qr_code,
                    &p.phone_code,
                    &i64::from(p.rotation),
                    &p.expires_at.map(|t| t.unix_ms()),
                    &p.reason,
                    &p.updated_at.unix_ms(),
                ],
            )
            .await
            .map_err(db_err)?;
        Ok(n > 0)
    }

    async fn list_requested_pairings(&self, holder: &str) -> Result<Vec<Pairing>> {
        let conn = self.db.conn().await?;
        let stmt = conn
            .prepare_cached(&format!(
                "SELECT {PAIRING_COLUMNS} FROM line_pairings p JOIN session_leases s ON s.line_id = p.line_id
                 WHERE p.status = 'requested' AND s.holder = $1 ORDER BY p.requested_at, p.id"
            ))
            .await
            .map_err(db_err)?;
        conn.query(&stmt, &[&holder]).await.map_err(db_err)?.iter().map(pairing_row).collect()
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
        let s = Selection::of(org, line, &select);
        let conn = self.db.conn().await?;
        let stmt = conn
            .prepare_cached(&format!(
                "SELECT {STATE_COLUMNS} FROM session_state WHERE {} ORDER BY scope, key",
                s.clause
            ))
            .await
            .map_err(db_err)?;
        conn.query(&stmt, &s.params()).await.map_err(db_err)?.iter().map(state_row).collect()
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
        // One row per address (the last record wins, as if applied in order), in address order.
        let mut latest: BTreeMap<(&str, &str, &str), &SessionStateRecord> = BTreeMap::new();
        for r in records {
            latest.insert((&r.kind, &r.scope, &r.key), r);
        }
        let n = latest.len();
        let (mut kinds, mut scopes, mut keys) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut values, mut stamps) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for r in latest.values() {
            kinds.push(r.kind.as_str());
            scopes.push(r.scope.as_str());
            keys.push(r.key.as_str());
            values.push(r.value.as_slice());
            stamps.push(r.stamp);
        }
        let conn = self.db.conn().await?;
        // One statement: atomic, and only for a line of the organization.
        let stmt = conn
            .prepare_cached(
                "INSERT INTO session_state (org_id, line_id, kind, scope, key, value, stamp)
                 SELECT $1, $2, r.kind, r.scope, r.key, r.value, r.stamp
                 FROM UNNEST($3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BYTEA[], $7::BIGINT[])
                      AS r(kind, scope, key, value, stamp)
                 WHERE EXISTS (SELECT 1 FROM lines l WHERE l.id = $2 AND l.org_id = $1)
                 ON CONFLICT (org_id, line_id, kind, scope, key)
                 DO UPDATE SET value = EXCLUDED.value, stamp = EXCLUDED.stamp",
            )
            .await
            .map_err(db_err)?;
        let written = conn
            .execute(&stmt, &[&org.as_str(), &line.as_str(), &kinds, &scopes, &keys, &values, &stamps])
            .await
            .map_err(db_err)?;
        if written == 0 {
            return Err(Error::not_found("line"));
        }
        Ok(())
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
        self.delete_state(&Selection::of(org, line, &select)).await
    }

    async fn delete_session_state_before(
        &self,
        org: &OrganizationId,
        line: &LineId,
        kind: &str,
        cutoff: i64,
    ) -> Result<u64> {
        let s = Selection::line(org, line)
            .and("kind", "= {}", Arg::Text(kind.to_owned()))
            .and("stamp", "> {}", Arg::Int(0))
            .and("stamp", "< {}", Arg::Int(cutoff));
        self.delete_state(&s).await
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
            .and("kind", "= {}", Arg::Text(kind.to_owned()))
            .and("scope", "= {}", Arg::Text(scope.to_owned()))
            .and("key", "= {}", Arg::Text(key.to_owned()));
        let conn = self.db.conn().await?;
        let stmt = conn
            .prepare_cached(&format!("DELETE FROM session_state WHERE {} RETURNING {STATE_COLUMNS}", s.clause))
            .await
            .map_err(db_err)?;
        conn.query_opt(&stmt, &s.params()).await.map_err(db_err)?.as_ref().map(state_row).transpose()
    }

    async fn clear_session_state(&self, org: &OrganizationId, line: &LineId) -> Result<u64> {
        self.delete_state(&Selection::line(org, line)).await
    }
}
