//! Contacts, conversations and message reads; the inbox list (`list`), assignments, contact
//! names and notes (`team`).
//!
//! Contacts and conversations are created by the outbox module (sends and inbound messages);
//! this module reads them and makes the team's changes.

use deadpool_postgres::GenericClient;
use ezw_core::ids::{ContactId, ConversationId, MessageId, OrganizationId};
use ezw_core::model::{Conversation, Message};
use ezw_core::ports::{ConversationQuery, Page};
use ezw_core::{Error, PhoneNumber, Result};

use super::rows::{self, get, CONVERSATION_COLUMNS, MESSAGE_COLUMNS, MESSAGE_COLUMN_COUNT};
use super::{db_err, Db};

mod list;
mod team;

pub(crate) use list::list_inbox;
pub(crate) use team::{assign_conversation, get_contact, insert_note, list_notes, set_contact_display_name};

/// The error for a cursor this backend did not return.
fn invalid_cursor() -> Error {
    Error::invalid("invalid_cursor", "cursor is not one this API returned")
}

/// The `seq` a `seq`-ordered page starts below: the cursor (a `seq`), or the start.
fn seq_cursor(cursor: Option<&str>) -> Result<i64> {
    match cursor {
        Some(c) => c.parse::<i64>().map_err(|_| invalid_cursor()),
        None => Ok(i64::MAX),
    }
}

/// A page of at most `limit` items from `limit + 1` rows read in order, each with its `seq`:
/// the cursor is the `seq` of the page's last item when there are more.
fn seq_page<T>(mut items: Vec<(T, i64)>, limit: u32) -> Page<T> {
    let limit = limit as usize;
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = if more { items.last().map(|(_, seq)| seq.to_string()) } else { None };
    Page { items: items.into_iter().map(|(item, _)| item).collect(), next_cursor }
}

/// The contact id for `phone` in the organization.
pub(crate) async fn find_contact_id(db: &Db, org: &OrganizationId, phone: &PhoneNumber) -> Result<Option<ContactId>> {
    let conn = db.conn().await?;
    let stmt =
        conn.prepare_cached("SELECT id FROM contacts WHERE org_id = $1 AND phone_number = $2").await.map_err(db_err)?;
    let row = conn.query_opt(&stmt, &[&org.as_str(), &phone.as_str()]).await.map_err(db_err)?;
    row.map(|r| get::<String>(&r, 0).map(ContactId::from_raw)).transpose()
}

/// A conversation of the organization, read on `c` (a connection or a transaction).
async fn conversation_on(
    c: &impl GenericClient,
    org: &OrganizationId,
    id: &ConversationId,
) -> Result<Option<Conversation>> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1 AND c.org_id = $2"
        ))
        .await
        .map_err(db_err)?;
    let row = c.query_opt(&stmt, &[&id.as_str(), &org.as_str()]).await.map_err(db_err)?;
    row.as_ref().map(rows::conversation).transpose()
}

/// A conversation of the organization.
pub(crate) async fn get_conversation(
    db: &Db,
    org: &OrganizationId,
    id: &ConversationId,
) -> Result<Option<Conversation>> {
    let conn = db.conn().await?;
    conversation_on(&conn, org, id).await
}

/// The organization's conversations: the inbox list without the contacts' names.
pub(crate) async fn list_conversations(
    db: &Db,
    org: &OrganizationId,
    q: &ConversationQuery,
) -> Result<Page<Conversation>> {
    let page = list::list_inbox(db, org, q).await?;
    Ok(Page { items: page.items.into_iter().map(|c| c.conversation).collect(), next_cursor: page.next_cursor })
}

/// A message, of the organization when `org` is given.
pub(crate) async fn get_message(db: &Db, org: Option<&OrganizationId>, id: &MessageId) -> Result<Option<Message>> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = $1 AND ($2::TEXT IS NULL OR m.org_id = $2)"
        ))
        .await
        .map_err(db_err)?;
    let row = conn.query_opt(&stmt, &[&id.as_str(), &org.map(OrganizationId::as_str)]).await.map_err(db_err)?;
    row.as_ref().map(rows::message).transpose()
}

/// A conversation's messages, newest first; the cursor is the last message's `seq`.
pub(crate) async fn list_messages(
    db: &Db,
    org: &OrganizationId,
    conversation: &ConversationId,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Page<Message>> {
    let before = seq_cursor(cursor)?;
    let limit = limit.clamp(1, 200);
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             WHERE m.conversation_id = $1 AND m.org_id = $2 AND m.seq < $3 ORDER BY m.seq DESC LIMIT $4"
        ))
        .await
        .map_err(db_err)?;
    let fetch = i64::from(limit) + 1;
    let found = conn.query(&stmt, &[&conversation.as_str(), &org.as_str(), &before, &fetch]).await.map_err(db_err)?;
    let items = found
        .iter()
        .map(|r| Ok((rows::message(r)?, get::<i64>(r, MESSAGE_COLUMN_COUNT - 1)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(seq_page(items, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_cursors_parse_or_are_invalid() {
        assert_eq!(seq_cursor(None).unwrap(), i64::MAX);
        assert_eq!(seq_cursor(Some("42")).unwrap(), 42);
        for bad in ["", "a", "1.2", "99999999999999999999"] {
            assert_eq!(seq_cursor(Some(bad)).unwrap_err().code(), "invalid_cursor", "{bad}");
        }
    }

    #[test]
    fn seq_pages_cut_at_the_limit() {
        let page = seq_page(vec![("a", 9), ("b", 7), ("c", 5)], 2);
        assert_eq!(page.items, ["a", "b"]);
        assert_eq!(page.next_cursor.as_deref(), Some("7"));
        let page = seq_page(vec![("a", 9)], 2);
        assert_eq!(page.next_cursor, None);
    }
}
