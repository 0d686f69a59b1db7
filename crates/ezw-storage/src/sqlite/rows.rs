//! Mapping rows to domain types.

use ezw_core::ids::{ContactId, ConversationId, LineId, MessageId, OrganizationId, UserId};
use ezw_core::model::{
    BillingState, Conversation, Direction, LifecycleState, Line, Member, Membership, MembershipStatus, Message,
    MessageContent, MessageError, MessageKind, MessageStatus, Organization, ProviderKind, Role, StatusTimestamps, User,
};
use ezw_core::{PhoneNumber, Timestamp};
use rusqlite::types::Type;
use rusqlite::Row;

fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp::from_unix_ms)
}

fn bad(col: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, format!("unknown {what}").into())
}

pub(crate) const ORG_COLUMNS: &str = "id, name, slug, billing_state, line_slots, created_at, plan";

pub(crate) fn org(r: &Row<'_>) -> rusqlite::Result<Organization> {
    Ok(Organization {
        id: OrganizationId::from_raw(r.get::<_, String>(0)?),
        name: r.get(1)?,
        slug: r.get(2)?,
        billing_state: BillingState::parse(&r.get::<_, String>(3)?).ok_or_else(|| bad(3, "billing state"))?,
        line_slots: r.get(4)?,
        created_at: Timestamp::from_unix_ms(r.get(5)?),
        plan: r.get(6)?,
    })
}

pub(crate) const USER_COLUMNS: &str = "id, email, display_name, password_hash, created_at";

pub(crate) fn user(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: UserId::from_raw(r.get::<_, String>(0)?),
        email: r.get(1)?,
        display_name: r.get(2)?,
        password_hash: r.get(3)?,
        created_at: Timestamp::from_unix_ms(r.get(4)?),
    })
}

pub(crate) const MEMBERSHIP_COLUMNS: &str = "org_id, user_id, role, status, created_at";

pub(crate) fn membership(r: &Row<'_>) -> rusqlite::Result<Membership> {
    Ok(Membership {
        organization_id: OrganizationId::from_raw(r.get::<_, String>(0)?),
        user_id: UserId::from_raw(r.get::<_, String>(1)?),
        role: Role::parse(&r.get::<_, String>(2)?).ok_or_else(|| bad(2, "role"))?,
        status: MembershipStatus::parse(&r.get::<_, String>(3)?).ok_or_else(|| bad(3, "membership status"))?,
        created_at: Timestamp::from_unix_ms(r.get(4)?),
    })
}

/// A membership joined with its user (`memberships m JOIN users u`).
pub(crate) const MEMBER_COLUMNS: &str =
    "m.user_id, u.email, u.display_name, m.role, m.status, m.created_at, m.updated_at";

pub(crate) fn member(r: &Row<'_>) -> rusqlite::Result<Member> {
    Ok(Member {
        user_id: UserId::from_raw(r.get::<_, String>(0)?),
        email: r.get(1)?,
        display_name: r.get(2)?,
        role: Role::parse(&r.get::<_, String>(3)?).ok_or_else(|| bad(3, "role"))?,
        status: MembershipStatus::parse(&r.get::<_, String>(4)?).ok_or_else(|| bad(4, "membership status"))?,
        created_at: Timestamp::from_unix_ms(r.get(5)?),
        updated_at: Timestamp::from_unix_ms(r.get(6)?),
    })
}

pub(crate) const LINE_COLUMNS: &str =
    "l.id, l.org_id, l.display_name, l.phone_number, l.provider_kind, l.provider_config, \
     l.lifecycle_state, l.state_reason, l.default_assignee_id, l.created_at, l.updated_at, l.pacing";

/// Columns in [`LINE_COLUMNS`]; joined queries read their extra columns from this index on.
pub(crate) const LINE_COLUMN_COUNT: usize = 12;

pub(crate) fn line(r: &Row<'_>) -> rusqlite::Result<Line> {
    let config: String = r.get(5)?;
    Ok(Line {
        id: LineId::from_raw(r.get::<_, String>(0)?),
        organization_id: OrganizationId::from_raw(r.get::<_, String>(1)?),
        display_name: r.get(2)?,
        phone_number: PhoneNumber::from_raw(r.get::<_, String>(3)?),
        provider_kind: ProviderKind::parse(&r.get::<_, String>(4)?).ok_or_else(|| bad(4, "provider kind"))?,
        provider_config: serde_json::from_str(&config)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(5, Type::Text, Box::new(e)))?,
        lifecycle_state: LifecycleState::parse(&r.get::<_, String>(6)?).ok_or_else(|| bad(6, "lifecycle state"))?,
        state_reason: r.get(7)?,
        default_assignee_id: r.get::<_, Option<String>>(8)?.map(UserId::from_raw),
        created_at: Timestamp::from_unix_ms(r.get(9)?),
        updated_at: Timestamp::from_unix_ms(r.get(10)?),
        pacing: match r.get::<_, Option<String>>(11)? {
            Some(json) => Some(
                serde_json::from_str(&json)
                    .map_err(|e| rusqlite::Error::FromSqlConversionFailure(11, Type::Text, Box::new(e)))?,
            ),
            None => None,
        },
    })
}

pub(crate) const CONVERSATION_COLUMNS: &str = "c.id, c.org_id, c.line_id, c.contact_id, c.contact_phone, c.version, \
     c.assignee_id, c.status_key, c.last_message_at, c.last_inbound_at, c.created_at, c.seq";

pub(crate) fn conversation(r: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: ConversationId::from_raw(r.get::<_, String>(0)?),
        organization_id: OrganizationId::from_raw(r.get::<_, String>(1)?),
        line_id: LineId::from_raw(r.get::<_, String>(2)?),
        contact_id: ContactId::from_raw(r.get::<_, String>(3)?),
        contact_phone: PhoneNumber::from_raw(r.get::<_, String>(4)?),
        version: r.get(5)?,
        assignee_id: r.get::<_, Option<String>>(6)?.map(UserId::from_raw),
        status_key: r.get(7)?,
        last_message_at: ts(r.get(8)?),
        last_inbound_at: ts(r.get(9)?),
        created_at: Timestamp::from_unix_ms(r.get(10)?),
    })
}

pub(crate) const MESSAGE_COLUMNS: &str =
    "m.id, m.org_id, m.line_id, m.conversation_id, m.direction, m.kind, m.content, \
     m.status, m.queued_at, m.sent_at, m.delivered_at, m.read_at, m.failed_at, m.provider_message_id, m.error_code, \
     m.error_message, m.attempts, m.sent_by_user_id, m.idempotency_key, m.created_at, m.seq";

pub(crate) fn message(r: &Row<'_>) -> rusqlite::Result<Message> {
    message_at(r, 0)
}

/// A message read from columns starting at `o` (for joined queries).
pub(crate) fn message_at(r: &Row<'_>, o: usize) -> rusqlite::Result<Message> {
    let content: String = r.get(o + 6)?;
    let content: MessageContent = serde_json::from_str(&content)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(o + 6, Type::Text, Box::new(e)))?;
    let error = match (r.get::<_, Option<String>>(o + 14)?, r.get::<_, Option<String>>(o + 15)?) {
        (Some(code), message) => Some(MessageError { code, message: message.unwrap_or_default() }),
        (None, _) => None,
    };
    Ok(Message {
        id: MessageId::from_raw(r.get::<_, String>(o)?),
        organization_id: OrganizationId::from_raw(r.get::<_, String>(o + 1)?),
        line_id: LineId::from_raw(r.get::<_, String>(o + 2)?),
        conversation_id: ConversationId::from_raw(r.get::<_, String>(o + 3)?),
        direction: Direction::parse(&r.get::<_, String>(o + 4)?).ok_or_else(|| bad(o + 4, "direction"))?,
        kind: MessageKind::parse(&r.get::<_, String>(o + 5)?).ok_or_else(|| bad(o + 5, "message kind"))?,
        content,
        status: MessageStatus::parse(&r.get::<_, String>(o + 7)?).ok_or_else(|| bad(o + 7, "message status"))?,
        status_timestamps: StatusTimestamps {
            queued_at: ts(r.get(o + 8)?),
            sent_at: ts(r.get(o + 9)?),
            delivered_at: ts(r.get(o + 10)?),
            read_at: ts(r.get(o + 11)?),
            failed_at: ts(r.get(o + 12)?),
        },
        provider_message_id: r.get(o + 13)?,
        error,
        attempts: r.get(o + 16)?,
        sent_by_user_id: r.get::<_, Option<String>>(o + 17)?.map(UserId::from_raw),
        idempotency_key: r.get(o + 18)?,
        created_at: Timestamp::from_unix_ms(r.get(o + 19)?),
    })
}
