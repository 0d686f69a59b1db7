//! Team work on conversations: assignment by compare-and-set on the version, contact names,
//! internal notes.

use ezw_core::ids::{ContactId, ConversationId, NoteId, OrganizationId, UserId};
use ezw_core::model::{Contact, Note, WebhookEventKind};
use ezw_core::ports::{AssignConversation, AssignOutcome, Page};
use ezw_core::webhooks::WebhookEvent;
use ezw_core::{Error, PhoneNumber, Result, Timestamp};
use rusqlite::{params, Connection, Row};

use super::super::webhooks::emit;
use super::super::{db_err, optional};
use super::get_conversation;

pub(crate) fn assign_conversation(conn: &Connection, a: &AssignConversation) -> Result<AssignOutcome> {
    let org = &a.organization_id;
    let Some(before) = get_conversation(conn, org, &a.conversation_id)? else {
        return Ok(AssignOutcome::NotFound);
    };
    let n = conn
        .prepare_cached(
            "UPDATE conversations SET assignee_id = ?4, version = version + 1, updated_at = ?5
             WHERE id = ?1 AND org_id = ?2 AND version = ?3",
        )
        .and_then(|mut s| {
            s.execute(params![
                a.conversation_id.as_str(),
                org.as_str(),
                a.expected_version,
                a.assignee_id.as_ref().map(UserId::as_str),
                a.at.unix_ms()
            ])
        })
        .map_err(db_err)?;
    if n == 0 {
        return Ok(AssignOutcome::Stale(Box::new(before)));
    }
    let after = get_conversation(conn, org, &a.conversation_id)?
        .ok_or_else(|| Error::internal("an assigned conversation vanished"))?;
    emit(conn, org, &after.line_id, WebhookEventKind::ChatsPatch, a.at, |_| {
        Ok(Some(WebhookEvent::ChatUpdated {
            before: Box::new(before.clone()),
            after: Box::new(after.clone()),
            by: a.by.clone(),
        }))
    })?;
    Ok(AssignOutcome::Assigned { before: Box::new(before), after: Box::new(after) })
}

const CONTACT_COLUMNS: &str = "id, org_id, phone_number, display_name, profile_name, created_at";

fn contact(r: &Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        id: ContactId::from_raw(r.get::<_, String>(0)?),
        organization_id: OrganizationId::from_raw(r.get::<_, String>(1)?),
        phone_number: PhoneNumber::from_raw(r.get::<_, String>(2)?),
        display_name: r.get(3)?,
        profile_name: r.get(4)?,
        created_at: Timestamp::from_unix_ms(r.get(5)?),
    })
}

pub(crate) fn get_contact(conn: &Connection, org: &OrganizationId, id: &ContactId) -> Result<Option<Contact>> {
    optional(
        conn.prepare_cached(&format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = ?1 AND org_id = ?2"))
            .and_then(|mut s| s.query_row([id.as_str(), org.as_str()], contact)),
    )
}

pub(crate) fn set_contact_display_name(
    conn: &Connection,
    org: &OrganizationId,
    id: &ContactId,
    display_name: Option<&str>,
    at: Timestamp,
) -> Result<Option<Contact>> {
    let n = conn
        .prepare_cached("UPDATE contacts SET display_name = ?3, updated_at = ?4 WHERE id = ?1 AND org_id = ?2")
        .and_then(|mut s| s.execute(params![id.as_str(), org.as_str(), display_name, at.unix_ms()]))
        .map_err(db_err)?;
    if n == 0 {
        return Ok(None);
    }
    get_contact(conn, org, id)
}

pub(crate) fn insert_note(conn: &Connection, note: &Note) -> Result<()> {
    // The conversation must be the note's, in its organization and on its line.
    let n = conn
        .prepare_cached(
            "INSERT INTO notes (id, org_id, line_id, conversation_id, author_id, body, created_at)
             SELECT ?1, c.org_id, c.line_id, c.id, ?5, ?6, ?7 FROM conversations c
             WHERE c.id = ?4 AND c.org_id = ?2 AND c.line_id = ?3",
        )
        .and_then(|mut s| {
            s.execute(params![
                note.id.as_str(),
                note.organization_id.as_str(),
                note.line_id.as_str(),
                note.conversation_id.as_str(),
                note.author_id.as_str(),
                note.body,
                note.created_at.unix_ms()
            ])
        })
        .map_err(db_err)?;
    if n == 0 {
        return Err(Error::not_found("conversation"));
    }
    Ok(())
}

pub(crate) fn list_notes(
    conn: &Connection,
    org: &OrganizationId,
    conversation: &ConversationId,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Page<Note>> {
    let before = match cursor {
        Some(c) => {
            c.parse::<i64>().map_err(|_| Error::invalid("invalid_cursor", "cursor is not one this API returned"))?
        }
        None => i64::MAX,
    };
    let limit = limit.clamp(1, 200);
    let mut items: Vec<(Note, i64)> = conn
        .prepare_cached(
            "SELECT id, org_id, conversation_id, line_id, author_id, body, created_at, seq FROM notes
             WHERE conversation_id = ?1 AND org_id = ?2 AND seq < ?3 ORDER BY seq DESC LIMIT ?4",
        )
        .and_then(|mut s| {
            s.query_map(params![conversation.as_str(), org.as_str(), before, i64::from(limit) + 1], |r| {
                let note = Note {
                    id: NoteId::from_raw(r.get::<_, String>(0)?),
                    organization_id: OrganizationId::from_raw(r.get::<_, String>(1)?),
                    conversation_id: ConversationId::from_raw(r.get::<_, String>(2)?),
                    line_id: ezw_core::ids::LineId::from_raw(r.get::<_, String>(3)?),
                    author_id: UserId::from_raw(r.get::<_, String>(4)?),
                    body: r.get(5)?,
                    created_at: Timestamp::from_unix_ms(r.get(6)?),
                };
                Ok((note, r.get(7)?))
            })?
            .collect()
        })
        .map_err(db_err)?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(|(_, seq)| seq.to_string()) } else { None };
    Ok(Page { items: items.into_iter().map(|(n, _)| n).collect(), next_cursor })
}
