//! Organizations, users, memberships, sessions.

use ezw_core::ids::{OrganizationId, SessionId, UserId};
use ezw_core::model::{Membership, MembershipStatus, Organization, Role, User};
use ezw_core::ports::SessionRecord;
use ezw_core::{Error, Result, Timestamp};
use rusqlite::{params, Connection};

use super::rows::{self, MEMBERSHIP_COLUMNS, ORG_COLUMNS, USER_COLUMNS};
use super::{db_err, is_unique_violation, optional};

pub(super) fn insert_user(conn: &Connection, user: &User) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO users (id, email, display_name, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            user.id.as_str(),
            user.email,
            user.display_name,
            user.password_hash,
            user.created_at.unix_ms()
        ])
    })
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict("email_taken", "an account with this email already exists")
        } else {
            db_err(e)
        }
    })?;
    Ok(())
}

pub(super) fn create_organization(conn: &Connection, org: &Organization, owner: &User, new_user: bool) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO organizations (id, name, slug, billing_state, line_slots, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            org.id.as_str(),
            org.name,
            org.slug,
            org.billing_state.as_str(),
            org.line_slots,
            org.created_at.unix_ms()
        ])
    })
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict("slug_taken", "an organization with this slug already exists")
        } else {
            db_err(e)
        }
    })?;
    if new_user {
        insert_user(conn, owner)?;
    }
    upsert_membership(
        conn,
        &Membership {
            organization_id: org.id.clone(),
            user_id: owner.id.clone(),
            role: Role::Owner,
            status: MembershipStatus::Active,
            created_at: org.created_at,
        },
    )
}

pub(super) fn upsert_membership(conn: &Connection, m: &Membership) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO memberships (org_id, user_id, role, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role, status = excluded.status, updated_at = excluded.updated_at",
    )
    .and_then(|mut s| {
        s.execute(params![m.organization_id.as_str(), m.user_id.as_str(), m.role.as_str(), m.status.as_str(), m.created_at.unix_ms()])
    })
    .map_err(db_err)?;
    Ok(())
}

pub(super) fn get_organization(conn: &Connection, id: &OrganizationId) -> Result<Option<Organization>> {
    optional(conn.query_row(
        &format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = ?1"),
        [id.as_str()],
        rows::org,
    ))
}

pub(super) fn find_organization_by_slug(conn: &Connection, slug: &str) -> Result<Option<Organization>> {
    optional(conn.query_row(&format!("SELECT {ORG_COLUMNS} FROM organizations WHERE slug = ?1"), [slug], rows::org))
}

pub(super) fn get_user(conn: &Connection, id: &UserId) -> Result<Option<User>> {
    optional(conn.query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"), [id.as_str()], rows::user))
}

pub(super) fn find_user_by_email(conn: &Connection, email: &str) -> Result<Option<User>> {
    optional(conn.query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"), [email], rows::user))
}

pub(super) fn set_password_hash(conn: &Connection, id: &UserId, hash: &str) -> Result<()> {
    let n = conn
        .execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", params![id.as_str(), hash])
        .map_err(db_err)?;
    if n == 0 {
        return Err(Error::not_found("user"));
    }
    Ok(())
}

pub(super) fn get_membership(conn: &Connection, org: &OrganizationId, user: &UserId) -> Result<Option<Membership>> {
    optional(conn.query_row(
        &format!("SELECT {MEMBERSHIP_COLUMNS} FROM memberships WHERE org_id = ?1 AND user_id = ?2"),
        [org.as_str(), user.as_str()],
        rows::membership,
    ))
}

pub(super) fn list_user_memberships(conn: &Connection, user: &UserId) -> Result<Vec<Membership>> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {MEMBERSHIP_COLUMNS} FROM memberships WHERE user_id = ?1 ORDER BY created_at"))
        .map_err(db_err)?;
    let rows = stmt.query_map([user.as_str()], rows::membership).map_err(db_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_err)
}

pub(super) fn insert_session(conn: &Connection, s: &SessionRecord) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (id, user_id, org_id, refresh_token_hash, created_at, expires_at, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        st.execute(params![
            s.id.as_str(),
            s.user_id.as_str(),
            s.organization_id.as_str(),
            s.refresh_token_hash,
            s.created_at.unix_ms(),
            s.expires_at.unix_ms(),
            s.revoked_at.map(Timestamp::unix_ms)
        ])
    })
    .map_err(db_err)?;
    Ok(())
}

pub(super) fn get_session(conn: &Connection, id: &SessionId) -> Result<Option<SessionRecord>> {
    optional(conn.query_row(
        "SELECT id, user_id, org_id, refresh_token_hash, created_at, expires_at, revoked_at FROM sessions WHERE id = ?1",
        [id.as_str()],
        |r| {
            Ok(SessionRecord {
                id: SessionId::from_raw(r.get::<_, String>(0)?),
                user_id: UserId::from_raw(r.get::<_, String>(1)?),
                organization_id: OrganizationId::from_raw(r.get::<_, String>(2)?),
                refresh_token_hash: r.get(3)?,
                created_at: Timestamp::from_unix_ms(r.get(4)?),
                expires_at: Timestamp::from_unix_ms(r.get(5)?),
                revoked_at: r.get::<_, Option<i64>>(6)?.map(Timestamp::from_unix_ms),
            })
        },
    ))
}
