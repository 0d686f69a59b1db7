//! Contacts, conversations and message reads; the inbox list (`list`), assignments, contact
//! names and notes (`team`).

use ezw_core::ids::{ContactId, ConversationId, LineId, MessageId, OrganizationId};
use ezw_core::model::{Conversation, Message};
use ezw_core::ports::{ConversationQuery, Page};
use ezw_core::{Error, PhoneNumber, Result, Timestamp};
use rusqlite::{params, Connection};

use super::rows::{self, CONVERSATION_COLUMNS, MESSAGE_COLUMNS};
use super::{db_err, optional};

mod list;
mod team;

pub(super) use list::list_inbox;
pub(super) use team::{assign_conversation, get_contact, insert_note, list_notes, set_contact_display_name};

pub(super) fn find_contact_id(
    conn: &Connection,
    org: &OrganizationId,
    phone: &PhoneNumber,
) -> Result<Option<ContactId>> {
    optional(
        conn.prepare_cached("SELECT id FROM contacts WHERE org_id = ?1 AND phone_number = ?2")
            .and_then(|mut s| s.query_row([org.as_str(), phone.as_str()], |r| r.get::<_, String>(0))),
    )
    .map(|o| o.map(ContactId::from_raw))
}

/// The contact for `phone`, created when missing; updates the profile name when given.
pub(super) fn upsert_contact(
    conn: &Connection,
    org: &OrganizationId,
    phone: &PhoneNumber,
    profile_name: Option<&str>,
    now: Timestamp,
) -> Result<ContactId> {
    if let Some(id) = find_contact_id(conn, org, phone)? {
        if let Some(name) = profile_name {
            conn.prepare_cached(
                "UPDATE contacts SET profile_name = ?2, updated_at = ?3 WHERE id = ?1 AND profile_name IS NOT ?2",
            )
            .and_then(|mut s| s.execute(params![id.as_str(), name, now.unix_ms()]))
            .map_err(db_err)?;
        }
        return Ok(id);
    }
    let id = ContactId::generate(now.unix_ms());
    conn.prepare_cached(
        "INSERT INTO contacts (id, org_id, phone_number, profile_name, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )
    .and_then(|mut s| s.execute(params![id.as_str(), org.as_str(), phone.as_str(), profile_name, now.unix_ms()]))
    .map_err(db_err)?;
    Ok(id)
}

/// The conversation between `line` and the contact, created (with the line's default assignee)
/// when missing.
pub(super) fn upsert_conversation(
    conn: &Connection,
    org: &OrganizationId,
    line: &LineId,
    contact: &ContactId,
    phone: &PhoneNumber,
    now: Timestamp,
) -> Result<ConversationId> {
    let existing = optional(
        conn.prepare_cached("SELECT id FROM conversations WHERE line_id = ?1 AND contact_id = ?2")
            .and_then(|mut s| s.query_row([line.as_str(), contact.as_str()], |r| r.get::<_, String>(0))),
    )?;
    if let Some(id) = existing {
        return Ok(ConversationId::from_raw(id));
    }
    // The line's default assignee, while they are an active member who may view the line.
    let assignee: Option<String> = optional(
        conn.prepare_cached(
            "SELECT l.default_assignee_id FROM lines l
             JOIN memberships m ON m.org_id = l.org_id AND m.user_id = l.default_assignee_id AND m.status = 'active'
             LEFT JOIN line_permissions p ON p.line_id = l.id AND p.user_id = l.default_assignee_id
             WHERE l.id = ?1 AND (m.role IN ('owner', 'admin') OR COALESCE(p.can_view, 1) = 1)",
        )
        .and_then(|mut s| s.query_row([line.as_str()], |r| r.get(0))),
    )?
    .flatten();
    let id = ConversationId::generate(now.unix_ms());
    conn.prepare_cached(
        "INSERT INTO conversations (id, org_id, line_id, contact_id, contact_phone, version, assignee_id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![id.as_str(), org.as_str(), line.as_str(), contact.as_str(), phone.as_str(), assignee, now.unix_ms()])
    })
    .map_err(db_err)?;
    super::webhooks::emit_chat_created(conn, org, line, &id, now)?;
    Ok(id)
}

pub(super) fn get_conversation(
    conn: &Connection,
    org: &OrganizationId,
    id: &ConversationId,
) -> Result<Option<Conversation>> {
    optional(
        conn.prepare_cached(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?1 AND c.org_id = ?2"
        ))
        .and_then(|mut s| s.query_row([id.as_str(), org.as_str()], rows::conversation)),
    )
}

pub(super) fn list_conversations(
    conn: &Connection,
    org: &OrganizationId,
    q: &ConversationQuery,
) -> Result<Page<Conversation>> {
    let page = list::list_inbox(conn, org, q)?;
    Ok(Page { items: page.items.into_iter().map(|c| c.conversation).collect(), next_cursor: page.next_cursor })
}

pub(super) fn get_message(conn: &Connection, org: Option<&OrganizationId>, id: &MessageId) -> Result<Option<Message>> {
    let msg = optional(
        conn.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?1"))
            .and_then(|mut s| s.query_row([id.as_str()], rows::message)),
    )?;
    Ok(msg.filter(|m| org.is_none_or(|o| &m.organization_id == o)))
}

pub(super) fn list_messages(
    conn: &Connection,
    org: &OrganizationId,
    conversation: &ConversationId,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Page<Message>> {
    let before = match cursor {
        Some(c) => {
            c.parse::<i64>().map_err(|_| Error::invalid("invalid_cursor", "cursor is not one this API returned"))?
        }
        None => i64::MAX,
    };
    let limit = limit.clamp(1, 200);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             WHERE m.conversation_id = ?1 AND m.org_id = ?2 AND m.seq < ?3 ORDER BY m.seq DESC LIMIT ?4"
        ))
        .map_err(db_err)?;
    let mut items: Vec<(Message, i64)> = stmt
        .query_map(params![conversation.as_str(), org.as_str(), before, i64::from(limit) + 1], |r| {
            Ok((rows::message(r)?, r.get::<_, i64>(20)?))
        })
        .map_err(db_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_err)?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(|(_, seq)| seq.to_string()) } else { None };
    Ok(Page { items: items.into_iter().map(|(m, _)| m).collect(), next_cursor })
}
