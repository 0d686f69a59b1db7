//! `impl AccessStore for SqliteStore`, and the SQL of billing (the SQL of sessions, members and
//! invitations is in `identity.rs`).

use async_trait::async_trait;
use ezw_core::ids::{OrganizationId, SessionId, UserId};
use ezw_core::model::{AuditEvent, BillingState, Checkout, Member, MembershipStatus, Organization};
use ezw_core::ports::{
    AccessStore, BillingUsage, InvitationAcceptance, InvitationRecord, MembershipUpdate, NewInvitation, RefreshRotation,
};
use ezw_core::{Error, Result, Timestamp};
use rusqlite::{params, Connection};

use super::webhooks::record_audit;
use super::{db_err, identity, is_unique_violation, optional, SqliteStore};

#[async_trait]
impl AccessStore for SqliteStore {
    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        new_hash: &str,
        now: Timestamp,
    ) -> Result<RefreshRotation> {
        let (presented, next) = (presented_hash.to_owned(), new_hash.to_owned());
        self.writer.write(move |c| identity::rotate_refresh_token(c, &presented, &next, now)).await
    }

    async fn revoke_session(&self, id: &SessionId, at: Timestamp) -> Result<bool> {
        let id = id.clone();
        self.writer.write(move |c| identity::revoke_session(c, &id, at)).await
    }

    async fn list_members(&self, org: &OrganizationId, status: Option<MembershipStatus>) -> Result<Vec<Member>> {
        let org = org.clone();
        self.readers.read(move |c| identity::list_members(c, &org, status)).await
    }

    async fn get_member(&self, org: &OrganizationId, user: &UserId) -> Result<Option<Member>> {
        let (org, user) = (org.clone(), user.clone());
        self.readers.lookup(move |c| identity::get_member(c, &org, &user)).await
    }

    async fn invite_member(&self, invite: &NewInvitation, audit: &AuditEvent) -> Result<Member> {
        let (invite, audit) = (invite.clone(), audit.clone());
        self.writer.write(move |c| identity::invite_member(c, &invite, &audit)).await
    }

    async fn find_invitation(&self, token_hash: &str) -> Result<Option<InvitationRecord>> {
        let hash = token_hash.to_owned();
        self.readers.lookup(move |c| identity::find_invitation(c, &hash)).await
    }

    async fn accept_invitation(&self, accept: &InvitationAcceptance, audit: &AuditEvent) -> Result<Option<Member>> {
        let (accept, audit) = (accept.clone(), audit.clone());
        self.writer.write(move |c| identity::accept_invitation(c, &accept, &audit)).await
    }

    async fn update_membership(&self, update: &MembershipUpdate, audit: &[AuditEvent]) -> Result<Option<Member>> {
        let (update, audit) = (update.clone(), audit.to_vec());
        self.writer.write(move |c| identity::update_membership(c, &update, &audit)).await
    }

    async fn billing_usage(&self, org: &OrganizationId) -> Result<BillingUsage> {
        let org = org.clone();
        self.readers.read(move |c| billing_usage(c, &org)).await
    }

    async fn insert_checkout(&self, checkout: &Checkout, audit: &AuditEvent) -> Result<()> {
        let (checkout, audit) = (checkout.clone(), audit.clone());
        self.writer.write(move |c| insert_checkout(c, &checkout, &audit)).await
    }

    async fn get_checkout(&self, id: &str) -> Result<Option<Checkout>> {
        let id = id.to_owned();
        self.readers.lookup(move |c| get_checkout(c, &id)).await
    }

    async fn settle_checkout(
        &self,
        id: &str,
        at: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<(Checkout, Organization)>> {
        let (id, audit) = (id.to_owned(), audit.to_vec());
        self.writer.write(move |c| settle_checkout(c, &id, at, &audit)).await
    }

    async fn set_billing_state(
        &self,
        org: &OrganizationId,
        state: BillingState,
        audit: &AuditEvent,
    ) -> Result<Option<Organization>> {
        let (org, audit) = (org.clone(), audit.clone());
        self.writer.write(move |c| set_billing_state(c, &org, state, &audit)).await
    }
}

const CHECKOUT_COLUMNS: &str = "id, org_id, plan, line_slots, status, url, instructions, created_at, settled_at";

fn checkout_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Checkout> {
    Ok(Checkout {
        id: r.get(0)?,
        organization_id: OrganizationId::from_raw(r.get::<_, String>(1)?),
        plan: r.get(2)?,
        line_slots: r.get(3)?,
        status: r.get(4)?,
        url: r.get(5)?,
        instructions: r.get(6)?,
        created_at: Timestamp::from_unix_ms(r.get(7)?),
        settled_at: r.get::<_, Option<i64>>(8)?.map(Timestamp::from_unix_ms),
    })
}

fn count(conn: &Connection, sql: &str, org: &OrganizationId) -> Result<u32> {
    let n: i64 =
        conn.prepare_cached(sql).and_then(|mut s| s.query_row([org.as_str()], |r| r.get(0))).map_err(db_err)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn billing_usage(conn: &Connection, org: &OrganizationId) -> Result<BillingUsage> {
    let lines_used =
        count(conn, "SELECT COUNT(*) FROM lines WHERE org_id = ?1 AND lifecycle_state <> 'archived'", org)?;
    let active_seats = count(conn, "SELECT COUNT(*) FROM memberships WHERE org_id = ?1 AND status = 'active'", org)?;
    let invited_seats = count(conn, "SELECT COUNT(*) FROM memberships WHERE org_id = ?1 AND status = 'invited'", org)?;
    let open_checkout = optional(conn.query_row(
        &format!(
            "SELECT {CHECKOUT_COLUMNS} FROM billing_checkouts WHERE org_id = ?1 AND settled_at IS NULL
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ),
        [org.as_str()],
        checkout_row,
    ))?;
    Ok(BillingUsage { lines_used, active_seats, invited_seats, open_checkout })
}

fn insert_checkout(conn: &Connection, c: &Checkout, audit: &AuditEvent) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO billing_checkouts ({CHECKOUT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            c.id,
            c.organization_id.as_str(),
            c.plan,
            c.line_slots,
            c.status,
            c.url,
            c.instructions,
            c.created_at.unix_ms(),
            c.settled_at.map(Timestamp::unix_ms)
        ])
    })
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict("checkout_exists", "the billing gateway returned a checkout id that is already stored")
        } else {
            db_err(e)
        }
    })?;
    record_audit(conn, audit)
}

fn get_checkout(conn: &Connection, id: &str) -> Result<Option<Checkout>> {
    optional(conn.query_row(
        &format!("SELECT {CHECKOUT_COLUMNS} FROM billing_checkouts WHERE id = ?1"),
        [id],
        checkout_row,
    ))
}

fn settle_checkout(
    conn: &Connection,
    id: &str,
    at: Timestamp,
    audit: &[AuditEvent],
) -> Result<Option<(Checkout, Organization)>> {
    let Some(checkout) = get_checkout(conn, id)? else { return Ok(None) };
    if checkout.settled_at.is_some() {
        return Err(Error::conflict("checkout_settled", "this checkout was already settled"));
    }
    conn.prepare_cached("UPDATE billing_checkouts SET status = ?2, settled_at = ?3 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id, Checkout::SETTLED, at.unix_ms()]))
        .map_err(db_err)?;
    conn.prepare_cached("UPDATE organizations SET billing_state = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![checkout.organization_id.as_str(), BillingState::Active.as_str()]))
        .map_err(db_err)?;
    for a in audit {
        record_audit(conn, a)?;
    }
    let checkout = get_checkout(conn, id)?.ok_or_else(|| Error::internal("checkout vanished inside its own write"))?;
    let org = identity::get_organization(conn, &checkout.organization_id)?
        .ok_or_else(|| Error::internal("checkout without organization"))?;
    Ok(Some((checkout, org)))
}

fn set_billing_state(
    conn: &Connection,
    org: &OrganizationId,
    state: BillingState,
    audit: &AuditEvent,
) -> Result<Option<Organization>> {
    let n = conn
        .prepare_cached("UPDATE organizations SET billing_state = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![org.as_str(), state.as_str()]))
        .map_err(db_err)?;
    if n == 0 {
        return Ok(None);
    }
    record_audit(conn, audit)?;
    identity::get_organization(conn, org)
}
