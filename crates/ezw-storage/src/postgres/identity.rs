//! Organizations, users, memberships, sessions and their refresh-token chains, invitations.
//!
//! Writes run `SERIALIZABLE` (one transaction per call; the caller retries contention), so the
//! read-then-write guards below hold as they do under the embedded backend's single writer.

use deadpool_postgres::GenericClient;
use ezw_core::ids::{OrganizationId, SessionId, UserId};
use ezw_core::model::{AuditEvent, Member, Membership, MembershipStatus, Organization, Role, User};
use ezw_core::ports::{
    InvitationAcceptance, InvitationRecord, MembershipUpdate, NewInvitation, RefreshRotation, SessionRecord,
};
use ezw_core::{Error, ErrorKind, Result, Timestamp};
use tokio_postgres::Row;

use super::audit::record_audit;
use super::rows::{self, get, ts, ts_opt, MEMBERSHIP_COLUMNS, MEMBER_COLUMNS, ORG_COLUMNS, USER_COLUMNS};
use super::{db_err, is_unique_violation, Db, Tx, CONTENTION};

// ---- organizations and users ----

/// Inserts `user` inside `tx`; a taken email (or id) is `email_taken`.
async fn insert_user_in(tx: &Tx<'_>, user: &User) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO users (id, email, display_name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .await
        .map_err(db_err)?;
    tx.execute(
        &stmt,
        &[&user.id.as_str(), &user.email, &user.display_name, &user.password_hash, &user.created_at.unix_ms()],
    )
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict("email_taken", "an account with this email already exists")
        } else {
            db_err(e)
        }
    })?;
    Ok(())
}

/// Inserts a user; `email_taken` when the email is in use.
pub(crate) async fn insert_user(db: &Db, user: &User) -> Result<()> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    insert_user_in(&tx, user).await?;
    tx.commit().await.map_err(db_err)
}

/// Creates an organization with `owner` as its active owner (inserting the user when
/// `new_user`); `slug_taken` when the slug is in use.
pub(crate) async fn create_organization(db: &Db, org: &Organization, owner: &User, new_user: bool) -> Result<()> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO organizations (id, name, slug, billing_state, line_slots, created_at, plan)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await
        .map_err(db_err)?;
    tx.execute(
        &stmt,
        &[
            &org.id.as_str(),
            &org.name,
            &org.slug,
            &org.billing_state.as_str(),
            &i64::from(org.line_slots),
            &org.created_at.unix_ms(),
            &org.plan,
        ],
    )
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict("slug_taken", "an organization with this slug already exists")
        } else {
            db_err(e)
        }
    })?;
    if new_user {
        insert_user_in(&tx, owner).await?;
    }
    upsert_membership_in(
        &tx,
        &Membership {
            organization_id: org.id.clone(),
            user_id: owner.id.clone(),
            role: Role::Owner,
            status: MembershipStatus::Active,
            created_at: org.created_at,
        },
    )
    .await?;
    tx.commit().await.map_err(db_err)
}

/// Inserts or replaces (role, status) a membership inside `tx`.
async fn upsert_membership_in(tx: &Tx<'_>, m: &Membership) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO memberships (org_id, user_id, role, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (org_id, user_id) DO UPDATE
                SET role = excluded.role, status = excluded.status, updated_at = excluded.updated_at",
        )
        .await
        .map_err(db_err)?;
    tx.execute(
        &stmt,
        &[
            &m.organization_id.as_str(),
            &m.user_id.as_str(),
            &m.role.as_str(),
            &m.status.as_str(),
            &m.created_at.unix_ms(),
        ],
    )
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Inserts or replaces (role, status) a membership.
pub(crate) async fn upsert_membership(db: &Db, m: &Membership) -> Result<()> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    upsert_membership_in(&tx, m).await?;
    tx.commit().await.map_err(db_err)
}

/// One row of `sql` (bound to `params`) mapped by `map`, on a connection or in a transaction.
async fn one<T>(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    map: impl FnOnce(&Row) -> Result<T>,
) -> Result<Option<T>> {
    let stmt = c.prepare_cached(sql).await.map_err(db_err)?;
    match c.query_opt(&stmt, params).await.map_err(db_err)? {
        Some(row) => map(&row).map(Some),
        None => Ok(None),
    }
}

/// All rows of `sql` (bound to `params`) mapped by `map`.
async fn all<T>(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    map: impl Fn(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    let stmt = c.prepare_cached(sql).await.map_err(db_err)?;
    c.query(&stmt, params).await.map_err(db_err)?.iter().map(map).collect()
}

/// An organization, on a connection or inside a transaction.
pub(crate) async fn get_organization_in(c: &impl GenericClient, id: &OrganizationId) -> Result<Option<Organization>> {
    one(c, &format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1"), &[&id.as_str()], rows::org).await
}

/// An organization.
pub(crate) async fn get_organization(db: &Db, id: &OrganizationId) -> Result<Option<Organization>> {
    let conn = db.conn().await?;
    get_organization_in(&conn, id).await
}

/// The organization with `slug`.
pub(crate) async fn find_organization_by_slug(db: &Db, slug: &str) -> Result<Option<Organization>> {
    let conn = db.conn().await?;
    one(&conn, &format!("SELECT {ORG_COLUMNS} FROM organizations WHERE slug = $1"), &[&slug], rows::org).await
}

/// A user.
pub(crate) async fn get_user(db: &Db, id: &UserId) -> Result<Option<User>> {
    let conn = db.conn().await?;
    one(&conn, &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"), &[&id.as_str()], rows::user).await
}

/// The user with `email` (exact match, as stored).
pub(crate) async fn find_user_by_email(db: &Db, email: &str) -> Result<Option<User>> {
    let conn = db.conn().await?;
    one(&conn, &format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"), &[&email], rows::user).await
}

/// Sets a user's password hash; `not_found` for an unknown user.
pub(crate) async fn set_password_hash(db: &Db, id: &UserId, hash: &str) -> Result<()> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let stmt = tx.prepare_cached("UPDATE users SET password_hash = $2 WHERE id = $1").await.map_err(db_err)?;
    let n = tx.execute(&stmt, &[&id.as_str(), &hash]).await.map_err(db_err)?;
    if n == 0 {
        return Err(Error::not_found("user"));
    }
    tx.commit().await.map_err(db_err)
}

/// A membership, on a connection or inside a transaction.
async fn get_membership_in(c: &impl GenericClient, org: &OrganizationId, user: &UserId) -> Result<Option<Membership>> {
    one(
        c,
        &format!("SELECT {MEMBERSHIP_COLUMNS} FROM memberships WHERE org_id = $1 AND user_id = $2"),
        &[&org.as_str(), &user.as_str()],
        rows::membership,
    )
    .await
}

/// A membership.
pub(crate) async fn get_membership(db: &Db, org: &OrganizationId, user: &UserId) -> Result<Option<Membership>> {
    let conn = db.conn().await?;
    get_membership_in(&conn, org, user).await
}

/// A user's memberships, oldest first.
pub(crate) async fn list_user_memberships(db: &Db, user: &UserId) -> Result<Vec<Membership>> {
    let conn = db.conn().await?;
    all(
        &conn,
        &format!("SELECT {MEMBERSHIP_COLUMNS} FROM memberships WHERE user_id = $1 ORDER BY created_at, org_id"),
        &[&user.as_str()],
        rows::membership,
    )
    .await
}

// ---- sessions ----

/// Inserts a session.
pub(crate) async fn insert_session(db: &Db, s: &SessionRecord) -> Result<()> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO sessions (id, user_id, org_id, refresh_token_hash, created_at, expires_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await
        .map_err(db_err)?;
    tx.execute(
        &stmt,
        &[
            &s.id.as_str(),
            &s.user_id.as_str(),
            &s.organization_id.as_str(),
            &s.refresh_token_hash,
            &s.created_at.unix_ms(),
            &s.expires_at.unix_ms(),
            &s.revoked_at.map(Timestamp::unix_ms),
        ],
    )
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}

/// The columns [`session_row`] reads.
const SESSION_COLUMNS: &str = "id, user_id, org_id, refresh_token_hash, created_at, expires_at, revoked_at";

/// A session from [`SESSION_COLUMNS`].
fn session_row(r: &Row) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id: SessionId::from_raw(get::<String>(r, 0)?),
        user_id: UserId::from_raw(get::<String>(r, 1)?),
        organization_id: OrganizationId::from_raw(get::<String>(r, 2)?),
        refresh_token_hash: get(r, 3)?,
        created_at: ts(r, 4)?,
        expires_at: ts(r, 5)?,
        revoked_at: ts_opt(r, 6)?,
    })
}

/// A session.
pub(crate) async fn get_session(db: &Db, id: &SessionId) -> Result<Option<SessionRecord>> {
    let conn = db.conn().await?;
    one(&conn, &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"), &[&id.as_str()], session_row).await
}

// ---- refresh-token chains ----

/// Swaps a session's refresh token `presented` for `next`: `Rotated` once per token;
/// presenting a token the session held before revokes it (`Reused`).
///
/// Concurrent rotations with one token: the session row is locked (`FOR UPDATE`) and swapped
/// with a compare-and-set `UPDATE`, so one wins; the others fail to serialize, are retried by
/// the caller, and then find the token among the used ones (`Reused`, which revokes the
/// session), as they would behind the embedded backend's single writer.
pub(crate) async fn rotate_refresh_token(
    db: &Db,
    presented: &str,
    next: &str,
    now: Timestamp,
) -> Result<RefreshRotation> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let current = one(
        &tx,
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE refresh_token_hash = $1 FOR UPDATE"),
        &[&presented],
        session_row,
    )
    .await?;
    let outcome = if let Some(mut session) = current {
        if session.revoked_at.is_some() {
            return Ok(RefreshRotation::Revoked(session.id));
        }
        if session.expires_at <= now {
            return Ok(RefreshRotation::Expired(session.id));
        }
        let stmt = tx
            .prepare_cached(
                "UPDATE sessions SET refresh_token_hash = $2
                 WHERE id = $1 AND refresh_token_hash = $3 AND revoked_at IS NULL",
            )
            .await
            .map_err(db_err)?;
        let swapped = tx.execute(&stmt, &[&session.id.as_str(), &next, &presented]).await.map_err(db_err)?;
        if swapped != 1 {
            // Someone else swapped it first: retry, and see the token as used.
            return Err(Error::new(ErrorKind::Temporary, CONTENTION, "the refresh token changed during its rotation"));
        }
        let stmt = tx
            .prepare_cached("INSERT INTO refresh_token_uses (token_hash, session_id, used_at) VALUES ($1, $2, $3)")
            .await
            .map_err(db_err)?;
        tx.execute(&stmt, &[&presented, &session.id.as_str(), &now.unix_ms()]).await.map_err(db_err)?;
        // Used hashes matter only while their session could still rotate: drop those of the
        // user's expired sessions.
        let stmt = tx
            .prepare_cached(
                "DELETE FROM refresh_token_uses
                 WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1 AND expires_at <= $2)",
            )
            .await
            .map_err(db_err)?;
        tx.execute(&stmt, &[&session.user_id.as_str(), &now.unix_ms()]).await.map_err(db_err)?;
        session.refresh_token_hash = next.to_owned();
        RefreshRotation::Rotated(session)
    } else {
        let reused = one(&tx, "SELECT session_id FROM refresh_token_uses WHERE token_hash = $1", &[&presented], |r| {
            get::<String>(r, 0)
        })
        .await?;
        match reused {
            Some(session_id) => {
                let id = SessionId::from_raw(session_id);
                revoke_session_in(&tx, &id, now).await?;
                RefreshRotation::Reused(id)
            }
            None => return Ok(RefreshRotation::Unknown),
        }
    };
    tx.commit().await.map_err(db_err)?;
    Ok(outcome)
}

/// Revokes a session inside `tx` (keeping an earlier revocation time); whether it exists.
async fn revoke_session_in(tx: &Tx<'_>, id: &SessionId, at: Timestamp) -> Result<bool> {
    let stmt = tx
        .prepare_cached("UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
        .await
        .map_err(db_err)?;
    let n = tx.execute(&stmt, &[&id.as_str(), &at.unix_ms()]).await.map_err(db_err)?;
    Ok(n == 1)
}

/// Revokes a session (keeping an earlier revocation time); whether it exists.
pub(crate) async fn revoke_session(db: &Db, id: &SessionId, at: Timestamp) -> Result<bool> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let found = revoke_session_in(&tx, id, at).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(found)
}

// ---- members and invitations ----

/// An organization's members with their users, oldest first, optionally of one status.
pub(crate) async fn list_members(
    db: &Db,
    org: &OrganizationId,
    status: Option<MembershipStatus>,
) -> Result<Vec<Member>> {
    let conn = db.conn().await?;
    all(
        &conn,
        &format!(
            "SELECT {MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.org_id = $1 AND ($2::TEXT IS NULL OR m.status = $2) ORDER BY m.created_at, m.user_id"
        ),
        &[&org.as_str(), &status.map(MembershipStatus::as_str)],
        rows::member,
    )
    .await
}

/// A member with their user, on a connection or inside a transaction.
async fn get_member_in(c: &impl GenericClient, org: &OrganizationId, user: &UserId) -> Result<Option<Member>> {
    one(
        c,
        &format!(
            "SELECT {MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.org_id = $1 AND m.user_id = $2"
        ),
        &[&org.as_str(), &user.as_str()],
        rows::member,
    )
    .await
}

/// A member with their user.
pub(crate) async fn get_member(db: &Db, org: &OrganizationId, user: &UserId) -> Result<Option<Member>> {
    let conn = db.conn().await?;
    get_member_in(&conn, org, user).await
}

/// The member a write inside `tx` just wrote.
async fn member_or_internal(tx: &Tx<'_>, org: &OrganizationId, user: &UserId) -> Result<Member> {
    get_member_in(tx, org, user).await?.ok_or_else(|| Error::internal("membership vanished inside its own write"))
}

/// The membership changed since the caller read it.
fn changed() -> Error {
    Error::conflict("membership_changed", "the membership changed while it was being updated; try again")
}

/// Invites a member (creating the user when new): an `invited` membership and one invitation
/// token replacing any earlier one, audited.
pub(crate) async fn invite_member(db: &Db, inv: &NewInvitation, audit: &AuditEvent) -> Result<Member> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    if let Some(user) = &inv.new_user {
        insert_user_in(&tx, user).await?;
    }
    let current = get_membership_in(&tx, &inv.organization_id, &inv.user_id).await?;
    if current.as_ref().is_some_and(|m| m.status == MembershipStatus::Active) {
        return Err(Error::conflict("already_member", "this person is already an active member"));
    }
    if current.as_ref().map(|m| (m.role, m.status)) != inv.expected {
        return Err(changed());
    }
    let (org, user, at) = (inv.organization_id.as_str(), inv.user_id.as_str(), inv.created_at.unix_ms());
    let stmt = tx
        .prepare_cached(
            "INSERT INTO memberships (org_id, user_id, role, status, created_at, updated_at)
             VALUES ($1, $2, $3, 'invited', $4, $4)
             ON CONFLICT (org_id, user_id) DO UPDATE
                SET role = excluded.role, status = 'invited', updated_at = excluded.updated_at",
        )
        .await
        .map_err(db_err)?;
    tx.execute(&stmt, &[&org, &user, &inv.role.as_str(), &at]).await.map_err(db_err)?;
    let stmt = tx.prepare_cached("DELETE FROM invitations WHERE org_id = $1 AND user_id = $2").await.map_err(db_err)?;
    tx.execute(&stmt, &[&org, &user]).await.map_err(db_err)?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO invitations (token_hash, org_id, user_id, invited_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await
        .map_err(db_err)?;
    tx.execute(
        &stmt,
        &[&inv.token_hash, &org, &user, &inv.invited_by.as_ref().map(UserId::as_str), &at, &inv.expires_at.unix_ms()],
    )
    .await
    .map_err(db_err)?;
    record_audit(&tx, audit).await?;
    let member = member_or_internal(&tx, &inv.organization_id, &inv.user_id).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(member)
}

/// The invitation with `token_hash`.
pub(crate) async fn find_invitation(db: &Db, token_hash: &str) -> Result<Option<InvitationRecord>> {
    let conn = db.conn().await?;
    one(
        &conn,
        "SELECT org_id, user_id, created_at, expires_at FROM invitations WHERE token_hash = $1",
        &[&token_hash],
        |r| {
            Ok(InvitationRecord {
                organization_id: OrganizationId::from_raw(get::<String>(r, 0)?),
                user_id: UserId::from_raw(get::<String>(r, 1)?),
                created_at: ts(r, 2)?,
                expires_at: ts(r, 3)?,
            })
        },
    )
    .await
}

/// Consumes an unexpired invitation and activates its `invited` membership (setting the
/// password when the user has none, and the name), audited; `None` when it cannot.
pub(crate) async fn accept_invitation(
    db: &Db,
    acc: &InvitationAcceptance,
    audit: &AuditEvent,
) -> Result<Option<Member>> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let (org, user, at) = (acc.organization_id.as_str(), acc.user_id.as_str(), acc.at.unix_ms());
    let stmt = tx
        .prepare_cached(
            "DELETE FROM invitations WHERE token_hash = $1 AND org_id = $2 AND user_id = $3 AND expires_at > $4",
        )
        .await
        .map_err(db_err)?;
    let consumed = tx.execute(&stmt, &[&acc.token_hash, &org, &user, &at]).await.map_err(db_err)?;
    if consumed != 1 {
        return Ok(None);
    }
    let stmt = tx
        .prepare_cached(
            "UPDATE memberships SET status = 'active', updated_at = $3
             WHERE org_id = $1 AND user_id = $2 AND status = 'invited'",
        )
        .await
        .map_err(db_err)?;
    let activated = tx.execute(&stmt, &[&org, &user, &at]).await.map_err(db_err)?;
    if activated != 1 {
        // The invitation is used up either way: a membership that is no longer invited stays as is.
        tx.commit().await.map_err(db_err)?;
        return Ok(None);
    }
    if let Some(hash) = &acc.password_hash {
        let stmt = tx
            .prepare_cached("UPDATE users SET password_hash = $2 WHERE id = $1 AND password_hash IS NULL")
            .await
            .map_err(db_err)?;
        tx.execute(&stmt, &[&user, hash]).await.map_err(db_err)?;
    }
    if let Some(name) = &acc.display_name {
        let stmt = tx.prepare_cached("UPDATE users SET display_name = $2 WHERE id = $1").await.map_err(db_err)?;
        tx.execute(&stmt, &[&user, name]).await.map_err(db_err)?;
    }
    record_audit(&tx, audit).await?;
    let member = member_or_internal(&tx, &acc.organization_id, &acc.user_id).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(Some(member))
}

/// Changes a membership's role and status when it still is as the caller read it (keeping an
/// active owner when asked; dropping its invitation unless still invited; revoking its
/// sessions when asked), audited; `None` when there is no such membership.
pub(crate) async fn update_membership(db: &Db, up: &MembershipUpdate, audit: &[AuditEvent]) -> Result<Option<Member>> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let Some(current) = get_membership_in(&tx, &up.organization_id, &up.user_id).await? else { return Ok(None) };
    if (current.role, current.status) != up.expected {
        return Err(changed());
    }
    let (org, user, at) = (up.organization_id.as_str(), up.user_id.as_str(), up.at.unix_ms());
    if up.keep_an_owner {
        let stmt = tx
            .prepare_cached(
                "SELECT COUNT(*) FROM memberships
                 WHERE org_id = $1 AND user_id <> $2 AND role = 'owner' AND status = 'active'",
            )
            .await
            .map_err(db_err)?;
        let row = tx.query_one(&stmt, &[&org, &user]).await.map_err(db_err)?;
        let others: i64 = get(&row, 0)?;
        if others == 0 {
            return Err(Error::conflict("last_owner", "the organization must keep at least one active owner"));
        }
    }
    let stmt = tx
        .prepare_cached(
            "UPDATE memberships SET role = $3, status = $4, updated_at = $5 WHERE org_id = $1 AND user_id = $2",
        )
        .await
        .map_err(db_err)?;
    tx.execute(&stmt, &[&org, &user, &up.role.as_str(), &up.status.as_str(), &at]).await.map_err(db_err)?;
    if up.status != MembershipStatus::Invited {
        let stmt =
            tx.prepare_cached("DELETE FROM invitations WHERE org_id = $1 AND user_id = $2").await.map_err(db_err)?;
        tx.execute(&stmt, &[&org, &user]).await.map_err(db_err)?;
    }
    if up.revoke_sessions {
        let stmt = tx
            .prepare_cached(
                "UPDATE sessions SET revoked_at = $3 WHERE org_id = $1 AND user_id = $2 AND revoked_at IS NULL",
            )
            .await
            .map_err(db_err)?;
        tx.execute(&stmt, &[&org, &user, &at]).await.map_err(db_err)?;
    }
    for a in audit {
        record_audit(&tx, a).await?;
    }
    let member = member_or_internal(&tx, &up.organization_id, &up.user_id).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(Some(member))
}
