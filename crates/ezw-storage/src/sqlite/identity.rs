//! Organizations, users, memberships, sessions and their refresh-token chains, invitations.

use ezw_core::ids::{OrganizationId, SessionId, UserId};
use ezw_core::model::{AuditEvent, Member, Membership, MembershipStatus, Organization, Role, User};
use ezw_core::ports::{
    InvitationAcceptance, InvitationRecord, MembershipUpdate, NewInvitation, RefreshRotation, SessionRecord,
};
use ezw_core::{Error, Result, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{self, MEMBERSHIP_COLUMNS, MEMBER_COLUMNS, ORG_COLUMNS, USER_COLUMNS};
use super::webhooks::record_audit;
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
        "INSERT INTO organizations (id, name, slug, billing_state, line_slots, created_at, plan)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            org.id.as_str(),
            org.name,
            org.slug,
            org.billing_state.as_str(),
            org.line_slots,
            org.created_at.unix_ms(),
            org.plan
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

const SESSION_COLUMNS: &str = "id, user_id, org_id, refresh_token_hash, created_at, expires_at, revoked_at";

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: SessionId::from_raw(r.get::<_, String>(0)?),
        user_id: UserId::from_raw(r.get::<_, String>(1)?),
        organization_id: OrganizationId::from_raw(r.get::<_, String>(2)?),
        refresh_token_hash: r.get(3)?,
        created_at: Timestamp::from_unix_ms(r.get(4)?),
        expires_at: Timestamp::from_unix_ms(r.get(5)?),
        revoked_at: r.get::<_, Option<i64>>(6)?.map(Timestamp::from_unix_ms),
    })
}

pub(super) fn get_session(conn: &Connection, id: &SessionId) -> Result<Option<SessionRecord>> {
    optional(conn.query_row(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"),
        [id.as_str()],
        session_row,
    ))
}

// ---- refresh-token chains ----

pub(super) fn rotate_refresh_token(
    conn: &Connection,
    presented: &str,
    next: &str,
    now: Timestamp,
) -> Result<RefreshRotation> {
    let current = optional(conn.query_row(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE refresh_token_hash = ?1"),
        [presented],
        session_row,
    ))?;
    if let Some(mut session) = current {
        if session.revoked_at.is_some() {
            return Ok(RefreshRotation::Revoked(session.id));
        }
        if session.expires_at <= now {
            return Ok(RefreshRotation::Expired(session.id));
        }
        // The single writer makes read-then-swap atomic; the WHERE clause states the condition.
        let swapped = conn
            .prepare_cached(
                "UPDATE sessions SET refresh_token_hash = ?2 WHERE id = ?1 AND refresh_token_hash = ?3 AND revoked_at IS NULL",
            )
            .and_then(|mut s| s.execute(params![session.id.as_str(), next, presented]))
            .map_err(db_err)?;
        if swapped != 1 {
            return Err(Error::internal("refresh token swap lost its row inside the write"));
        }
        conn.prepare_cached("INSERT INTO refresh_token_uses (token_hash, session_id, used_at) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![presented, session.id.as_str(), now.unix_ms()]))
            .map_err(db_err)?;
        // Used hashes matter only while their session could still rotate: drop those of the
        // user's expired sessions.
        conn.prepare_cached(
            "DELETE FROM refresh_token_uses WHERE session_id IN (SELECT id FROM sessions WHERE user_id = ?1 AND expires_at <= ?2)",
        )
        .and_then(|mut s| s.execute(params![session.user_id.as_str(), now.unix_ms()]))
        .map_err(db_err)?;
        session.refresh_token_hash = next.to_owned();
        return Ok(RefreshRotation::Rotated(session));
    }
    let reused: Option<String> = conn
        .prepare_cached("SELECT session_id FROM refresh_token_uses WHERE token_hash = ?1")
        .and_then(|mut s| s.query_row([presented], |r| r.get(0)).optional())
        .map_err(db_err)?;
    match reused {
        Some(session_id) => {
            let id = SessionId::from_raw(session_id);
            revoke_session(conn, &id, now)?;
            Ok(RefreshRotation::Reused(id))
        }
        None => Ok(RefreshRotation::Unknown),
    }
}

pub(super) fn revoke_session(conn: &Connection, id: &SessionId, at: Timestamp) -> Result<bool> {
    let n = conn
        .prepare_cached("UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id.as_str(), at.unix_ms()]))
        .map_err(db_err)?;
    Ok(n == 1)
}

// ---- members and invitations ----

pub(super) fn list_members(
    conn: &Connection,
    org: &OrganizationId,
    status: Option<MembershipStatus>,
) -> Result<Vec<Member>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.org_id = ?1 AND (?2 IS NULL OR m.status = ?2) ORDER BY m.created_at, m.user_id"
        ))
        .map_err(db_err)?;
    let rows =
        stmt.query_map(params![org.as_str(), status.map(MembershipStatus::as_str)], rows::member).map_err(db_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_err)
}

pub(super) fn get_member(conn: &Connection, org: &OrganizationId, user: &UserId) -> Result<Option<Member>> {
    optional(conn.query_row(
        &format!(
            "SELECT {MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.org_id = ?1 AND m.user_id = ?2"
        ),
        [org.as_str(), user.as_str()],
        rows::member,
    ))
}

fn member_or_internal(conn: &Connection, org: &OrganizationId, user: &UserId) -> Result<Member> {
    get_member(conn, org, user)?.ok_or_else(|| Error::internal("membership vanished inside its own write"))
}

fn changed() -> Error {
    Error::conflict("membership_changed", "the membership changed while it was being updated; try again")
}

pub(super) fn invite_member(conn: &Connection, inv: &NewInvitation, audit: &AuditEvent) -> Result<Member> {
    if let Some(user) = &inv.new_user {
        insert_user(conn, user)?;
    }
    let current = get_membership(conn, &inv.organization_id, &inv.user_id)?;
    if current.as_ref().is_some_and(|m| m.status == MembershipStatus::Active) {
        return Err(Error::conflict("already_member", "this person is already an active member"));
    }
    if current.as_ref().map(|m| (m.role, m.status)) != inv.expected {
        return Err(changed());
    }
    let (org, user, at) = (inv.organization_id.as_str(), inv.user_id.as_str(), inv.created_at.unix_ms());
    conn.prepare_cached(
        "INSERT INTO memberships (org_id, user_id, role, status, created_at, updated_at) VALUES (?1, ?2, ?3, 'invited', ?4, ?4)
         ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role, status = 'invited', updated_at = excluded.updated_at",
    )
    .and_then(|mut s| s.execute(params![org, user, inv.role.as_str(), at]))
    .map_err(db_err)?;
    conn.prepare_cached("DELETE FROM invitations WHERE org_id = ?1 AND user_id = ?2")
        .and_then(|mut s| s.execute(params![org, user]))
        .map_err(db_err)?;
    conn.prepare_cached(
        "INSERT INTO invitations (token_hash, org_id, user_id, invited_by, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            inv.token_hash,
            org,
            user,
            inv.invited_by.as_ref().map(UserId::as_str),
            at,
            inv.expires_at.unix_ms()
        ])
    })
    .map_err(db_err)?;
    record_audit(conn, audit)?;
    member_or_internal(conn, &inv.organization_id, &inv.user_id)
}

pub(super) fn find_invitation(conn: &Connection, token_hash: &str) -> Result<Option<InvitationRecord>> {
    optional(conn.query_row(
        "SELECT org_id, user_id, created_at, expires_at FROM invitations WHERE token_hash = ?1",
        [token_hash],
        |r| {
            Ok(InvitationRecord {
                organization_id: OrganizationId::from_raw(r.get::<_, String>(0)?),
                user_id: UserId::from_raw(r.get::<_, String>(1)?),
                created_at: Timestamp::from_unix_ms(r.get(2)?),
                expires_at: Timestamp::from_unix_ms(r.get(3)?),
            })
        },
    ))
}

pub(super) fn accept_invitation(
    conn: &Connection,
    acc: &InvitationAcceptance,
    audit: &AuditEvent,
) -> Result<Option<Member>> {
    let (org, user, at) = (acc.organization_id.as_str(), acc.user_id.as_str(), acc.at.unix_ms());
    let consumed = conn
        .prepare_cached(
            "DELETE FROM invitations WHERE token_hash = ?1 AND org_id = ?2 AND user_id = ?3 AND expires_at > ?4",
        )
        .and_then(|mut s| s.execute(params![acc.token_hash, org, user, at]))
        .map_err(db_err)?;
    if consumed != 1 {
        return Ok(None);
    }
    let activated = conn
        .prepare_cached(
            "UPDATE memberships SET status = 'active', updated_at = ?3 WHERE org_id = ?1 AND user_id = ?2 AND status = 'invited'",
        )
        .and_then(|mut s| s.execute(params![org, user, at]))
        .map_err(db_err)?;
    if activated != 1 {
        // The invitation is used up either way: a membership that is no longer invited stays as is.
        return Ok(None);
    }
    if let Some(hash) = &acc.password_hash {
        conn.prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1 AND password_hash IS NULL")
            .and_then(|mut s| s.execute(params![user, hash]))
            .map_err(db_err)?;
    }
    if let Some(name) = &acc.display_name {
        conn.prepare_cached("UPDATE users SET display_name = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![user, name]))
            .map_err(db_err)?;
    }
    record_audit(conn, audit)?;
    member_or_internal(conn, &acc.organization_id, &acc.user_id).map(Some)
}

pub(super) fn update_membership(
    conn: &Connection,
    up: &MembershipUpdate,
    audit: &[AuditEvent],
) -> Result<Option<Member>> {
    let Some(current) = get_membership(conn, &up.organization_id, &up.user_id)? else { return Ok(None) };
    if (current.role, current.status) != up.expected {
        return Err(changed());
    }
    let (org, user, at) = (up.organization_id.as_str(), up.user_id.as_str(), up.at.unix_ms());
    if up.keep_an_owner {
        let others: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM memberships WHERE org_id = ?1 AND user_id <> ?2 AND role = 'owner' AND status = 'active'",
            )
            .and_then(|mut s| s.query_row(params![org, user], |r| r.get(0)))
            .map_err(db_err)?;
        if others == 0 {
            return Err(Error::conflict("last_owner", "the organization must keep at least one active owner"));
        }
    }
    conn.prepare_cached(
        "UPDATE memberships SET role = ?3, status = ?4, updated_at = ?5 WHERE org_id = ?1 AND user_id = ?2",
    )
    .and_then(|mut s| s.execute(params![org, user, up.role.as_str(), up.status.as_str(), at]))
    .map_err(db_err)?;
    if up.status != MembershipStatus::Invited {
        conn.prepare_cached("DELETE FROM invitations WHERE org_id = ?1 AND user_id = ?2")
            .and_then(|mut s| s.execute(params![org, user]))
            .map_err(db_err)?;
    }
    if up.revoke_sessions {
        conn.prepare_cached(
            "UPDATE sessions SET revoked_at = ?3 WHERE org_id = ?1 AND user_id = ?2 AND revoked_at IS NULL",
        )
        .and_then(|mut s| s.execute(params![org, user, at]))
        .map_err(db_err)?;
    }
    for a in audit {
        record_audit(conn, a)?;
    }
    member_or_internal(conn, &up.organization_id, &up.user_id).map(Some)
}
