//! Mapping rows to domain types. The column lists match the SQLite backend's, so the two
//! backends read the same shapes; integers are BIGINT (`i64`), flags BOOLEAN.

use ezw_core::ids::{ContactId, ConversationId, LineId, MessageId, OrganizationId, UserId};
use ezw_core::model::{
    BillingState, Conversation, Direction, LifecycleState, Line, Member, Membership, MembershipStatus, Message,
    MessageContent, MessageError, MessageKind, MessageStatus, Organization, ProviderKind, Role, StatusTimestamps, User,
};
use ezw_core::{Error, PhoneNumber, Result, Timestamp};
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use super::bad_value;

/// Column `i` of `r` as `T`.
pub(crate) fn get<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> Result<T> {
    r.try_get(i).map_err(|e| Error::internal(format!("reading column {i}: {e}")).with_source(e))
}

/// A timestamp column.
pub(crate) fn ts(r: &Row, i: usize) -> Result<Timestamp> {
    get::<i64>(r, i).map(Timestamp::from_unix_ms)
}

/// A nullable timestamp column.
pub(crate) fn ts_opt(r: &Row, i: usize) -> Result<Option<Timestamp>> {
    Ok(get::<Option<i64>>(r, i)?.map(Timestamp::from_unix_ms))
}

/// A BIGINT column as `u32` (counts, attempts).
pub(crate) fn u32_at(r: &Row, i: usize) -> Result<u32> {
    let v: i64 = get(r, i)?;
    u32::try_from(v).map_err(|_| Error::internal(format!("column {i} out of range: {v}")))
}

/// A JSON document stored as TEXT.
pub(crate) fn json<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> Result<T> {
    let text: &str = get(r, i)?;
    serde_json::from_str(text).map_err(|e| Error::internal(format!("column {i} holds bad JSON: {e}")).with_source(e))
}

/// A value serialized to the TEXT form of JSON columns.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(format!("serializing JSON: {e}")).with_source(e))
}

fn parsed<T>(r: &Row, i: usize, what: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T> {
    let raw: &str = get(r, i)?;
    parse(raw).ok_or_else(|| bad_value(what, raw))
}

pub(crate) const ORG_COLUMNS: &str = "id, name, slug, billing_state, line_slots, created_at, plan";

pub(crate) fn org(r: &Row) -> Result<Organization> {
    Ok(Organization {
        id: OrganizationId::from_raw(get::<String>(r, 0)?),
        name: get(r, 1)?,
        slug: get(r, 2)?,
        billing_state: parsed(r, 3, "billing state", BillingState::parse)?,
        line_slots: u32_at(r, 4)?,
        created_at: ts(r, 5)?,
        plan: get(r, 6)?,
    })
}

pub(crate) const USER_COLUMNS: &str = "id, email, display_name, password_hash, created_at";

pub(crate) fn user(r: &Row) -> Result<User> {
    Ok(User {
        id: UserId::from_raw(get::<String>(r, 0)?),
        email: get(r, 1)?,
        display_name: get(r, 2)?,
        password_hash: get(r, 3)?,
        created_at: ts(r, 4)?,
    })
}

pub(crate) const MEMBERSHIP_COLUMNS: &str = "org_id, user_id, role, status, created_at";

pub(crate) fn membership(r: &Row) -> Result<Membership> {
    Ok(Membership {
        organization_id: OrganizationId::from_raw(get::<String>(r, 0)?),
        user_id: UserId::from_raw(get::<String>(r, 1)?),
        role: parsed(r, 2, "role", Role::parse)?,
        status: parsed(r, 3, "membership status", MembershipStatus::parse)?,
        created_at: ts(r, 4)?,
    })
}

/// A membership joined with its user (`memberships m JOIN users u`).
pub(crate) const MEMBER_COLUMNS: &str =
    "m.user_id, u.email, u.display_name, m.role, m.status, m.created_at, m.updated_at";

pub(crate) fn member(r: &Row) -> Result<Member> {
    Ok(Member {
        user_id: UserId::from_raw(get::<String>(r, 0)?),
        email: get(r, 1)?,
        display_name: get(r, 2)?,
        role: parsed(r, 3, "role", Role::parse)?,
        status: parsed(r, 4, "membership status", MembershipStatus::parse)?,
        created_at: ts(r, 5)?,
        updated_at: ts(r, 6)?,
    })
}

pub(crate) const LINE_COLUMNS: &str =
    "l.id, l.org_id, l.display_name, l.phone_number, l.provider_kind, l.provider_config, \
     l.lifecycle_state, l.state_reason, l.default_assignee_id, l.created_at, l.updated_at, l.pacing";

/// Columns in [`LINE_COLUMNS`]; joined queries read their extra columns from this index on.
pub(crate) const LINE_COLUMN_COUNT: usize = 12;

pub(crate) fn line(r: &Row) -> Result<Line> {
    Ok(Line {
        id: LineId::from_raw(get::<String>(r, 0)?),
        organization_id: OrganizationId::from_raw(get::<String>(r, 1)?),
        display_name: get(r, 2)?,
        phone_number: PhoneNumber::from_raw(get::<String>(r, 3)?),
        provider_kind: parsed(r, 4, "provider kind", ProviderKind::parse)?,
        provider_config: json(r, 5)?,
        lifecycle_state: parsed(r, 6, "lifecycle state", LifecycleState::parse)?,
        state_reason: get(r, 7)?,
        default_assignee_id: get::<Option<String>>(r, 8)?.map(UserId::from_raw),
        created_at: ts(r, 9)?,
        updated_at: ts(r, 10)?,
        pacing: match get::<Option<&str>>(r, 11)? {
            Some(text) => Some(
                serde_json::from_str(text)
                    .map_err(|e| Error::internal(format!("line pacing holds bad JSON: {e}")).with_source(e))?,
            ),
            None => None,
        },
    })
}

pub(crate) const CONVERSATION_COLUMNS: &str = "c.id, c.org_id, c.line_id, c.contact_id, c.contact_phone, c.version, \
     c.assignee_id, c.status_key, c.last_message_at, c.last_inbound_at, c.created_at, c.seq";

pub(crate) fn conversation(r: &Row) -> Result<Conversation> {
    Ok(Conversation {
        id: ConversationId::from_raw(get::<String>(r, 0)?),
        organization_id: OrganizationId::from_raw(get::<String>(r, 1)?),
        line_id: LineId::from_raw(get::<String>(r, 2)?),
        contact_id: ContactId::from_raw(get::<String>(r, 3)?),
        contact_phone: PhoneNumber::from_raw(get::<String>(r, 4)?),
        version: get(r, 5)?,
        assignee_id: get::<Option<String>>(r, 6)?.map(UserId::from_raw),
        status_key: get(r, 7)?,
        last_message_at: ts_opt(r, 8)?,
        last_inbound_at: ts_opt(r, 9)?,
        created_at: ts(r, 10)?,
    })
}

pub(crate) const MESSAGE_COLUMNS: &str =
    "m.id, m.org_id, m.line_id, m.conversation_id, m.direction, m.kind, m.content, \
     m.status, m.queued_at, m.sent_at, m.delivered_at, m.read_at, m.failed_at, m.provider_message_id, m.error_code, \
     m.error_message, m.attempts, m.sent_by_user_id, m.idempotency_key, m.created_at, m.seq";

/// Columns in [`MESSAGE_COLUMNS`].
pub(crate) const MESSAGE_COLUMN_COUNT: usize = 21;

pub(crate) fn message(r: &Row) -> Result<Message> {
    message_at(r, 0)
}

/// A message read from columns starting at `o` (for joined queries).
pub(crate) fn message_at(r: &Row, o: usize) -> Result<Message> {
    let content: MessageContent = json(r, o + 6)?;
    let error = match (get::<Option<String>>(r, o + 14)?, get::<Option<String>>(r, o + 15)?) {
        (Some(code), message) => Some(MessageError { code, message: message.unwrap_or_default() }),
        (None, _) => None,
    };
    Ok(Message {
        id: MessageId::from_raw(get::<String>(r, o)?),
        organization_id: OrganizationId::from_raw(get::<String>(r, o + 1)?),
        line_id: LineId::from_raw(get::<String>(r, o + 2)?),
        conversation_id: ConversationId::from_raw(get::<String>(r, o + 3)?),
        direction: parsed(r, o + 4, "direction", Direction::parse)?,
        kind: parsed(r, o + 5, "message kind", MessageKind::parse)?,
        content,
        status: parsed(r, o + 7, "message status", MessageStatus::parse)?,
        status_timestamps: StatusTimestamps {
            queued_at: ts_opt(r, o + 8)?,
            sent_at: ts_opt(r, o + 9)?,
            delivered_at: ts_opt(r, o + 10)?,
            read_at: ts_opt(r, o + 11)?,
            failed_at: ts_opt(r, o + 12)?,
        },
        provider_message_id: get(r, o + 13)?,
        error,
        attempts: u32_at(r, o + 16)?,
        sent_by_user_id: get::<Option<String>>(r, o + 17)?.map(UserId::from_raw),
        idempotency_key: get(r, o + 18)?,
        created_at: ts(r, o + 19)?,
    })
}
