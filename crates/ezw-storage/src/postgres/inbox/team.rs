//! Team work on conversations: assignment by compare-and-set on the version, contact names,
//! internal notes.

use deadpool_postgres::GenericClient;
use ezw_core::ids::{ContactId, ConversationId, LineId, NoteId, OrganizationId, UserId};
use ezw_core::model::{Contact, Note, WebhookEventKind};
use ezw_core::ports::{AssignConversation, AssignOutcome, Page};
use ezw_core::webhooks::WebhookEvent;
use ezw_core::{Error, PhoneNumber, Result, Timestamp};
use tokio_postgres::Row;

use super::super::events::Emitter;
use super::super::rows::{self, get, ts, CONVERSATION_COLUMNS};
use super::super::{db_err, Db};
use super::{seq_cursor, seq_page};

/// Sets the assignee if the conversation still has the expected version.
///
/// `READ COMMITTED` with the conversation's row locked first (`FOR NO KEY UPDATE`, the lock the
/// `UPDATE` takes anyway): concurrent assignments of one conversation queue on the lock, and
/// each compares against the version the one before it committed, so exactly one of several
/// assignments at one version applies and the others see `Stale` with the current
/// conversation, without serialization failures to retry.
pub(crate) async fn assign_conversation(db: &Db, a: &AssignConversation) -> Result<AssignOutcome> {
    let org = &a.organization_id;
    let mut conn = db.conn().await?;
    let tx = Db::read_committed(&mut conn).await?;
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1 AND c.org_id = $2 FOR NO KEY UPDATE"
        ))
        .await
        .map_err(db_err)?;
    let Some(row) = tx.query_opt(&stmt, &[&a.conversation_id.as_str(), &org.as_str()]).await.map_err(db_err)? else {
        tx.rollback().await.map_err(db_err)?;
        return Ok(AssignOutcome::NotFound);
    };
    let before = rows::conversation(&row)?;
    if before.version != a.expected_version {
        tx.rollback().await.map_err(db_err)?;
        return Ok(AssignOutcome::Stale(Box::new(before)));
    }
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE conversations c SET assignee_id = $4, version = version + 1, updated_at = $5
             WHERE c.id = $1 AND c.org_id = $2 AND c.version = $3
             RETURNING {CONVERSATION_COLUMNS}"
        ))
        .await
        .map_err(db_err)?;
    let updated = tx
        .query_opt(
            &stmt,
            &[
                &a.conversation_id.as_str(),
                &org.as_str(),
                &a.expected_version,
                &a.assignee_id.as_ref().map(UserId::as_str),
                &a.at.unix_ms(),
            ],
        )
        .await
        .map_err(db_err)?;
    // The row is locked at the expected version, so the update applies; the version check in
    // the `UPDATE` keeps it a compare-and-set on its own.
    let Some(row) = updated else {
        tx.rollback().await.map_err(db_err)?;
        return Ok(AssignOutcome::Stale(Box::new(before)));
    };
    let after = rows::conversation(&row)?;
    let event = WebhookEvent::ChatUpdated {
        before: Box::new(before.clone()),
        after: Box::new(after.clone()),
        by: a.by.clone(),
    };
    Emitter::new().event(&tx, org, &after.line_id, WebhookEventKind::ChatsPatch, a.at, event).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(AssignOutcome::Assigned { before: Box::new(before), after: Box::new(after) })
}

/// The columns [`contact`] reads.
const CONTACT_COLUMNS: &str = "id, org_id, phone_number, display_name, profile_name, created_at";

/// A contact from [`CONTACT_COLUMNS`].
fn contact(r: &Row) -> Result<Contact> {
    Ok(Contact {
        id: ContactId::from_raw(get::<String>(r, 0)?),
        organization_id: OrganizationId::from_raw(get::<String>(r, 1)?),
        phone_number: PhoneNumber::from_raw(get::<String>(r, 2)?),
        display_name: get(r, 3)?,
        profile_name: get(r, 4)?,
        created_at: ts(r, 5)?,
    })
}

/// A contact of the organization.
pub(crate) async fn get_contact(db: &Db, org: &OrganizationId, id: &ContactId) -> Result<Option<Contact>> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(&format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = $1 AND org_id = $2"))
        .await
        .map_err(db_err)?;
    let row = conn.query_opt(&stmt, &[&id.as_str(), &org.as_str()]).await.map_err(db_err)?;
    row.as_ref().map(contact).transpose()
}

/// Sets (or clears) a contact's display name; `None` when the organization has no such
/// contact. One `UPDATE ... RETURNING` statement, atomic on its own.
pub(crate) async fn set_contact_display_name(
    db: &Db,
    org: &OrganizationId,
    id: &ContactId,
    display_name: Option<&str>,
    at: Timestamp,
) -> Result<Option<Contact>> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(&format!(
            "UPDATE contacts SET display_name = $3, updated_at = $4 WHERE id = $1 AND org_id = $2
             RETURNING {CONTACT_COLUMNS}"
        ))
        .await
        .map_err(db_err)?;
    let row =
        conn.query_opt(&stmt, &[&id.as_str(), &org.as_str(), &display_name, &at.unix_ms()]).await.map_err(db_err)?;
    row.as_ref().map(contact).transpose()
}

/// Adds an internal note; `not_found` unless its conversation is in its organization and on its
/// line. One `INSERT ... SELECT` statement, atomic on its own.
pub(crate) async fn insert_note(db: &Db, note: &Note) -> Result<()> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(
            "INSERT INTO notes (id, org_id, line_id, conversation_id, author_id, body, created_at)
             SELECT $1, c.org_id, c.line_id, c.id, $5, $6, $7 FROM conversations c
             WHERE c.id = $4 AND c.org_id = $2 AND c.line_id = $3",
        )
        .await
        .map_err(db_err)?;
    let n = conn
        .execute(
            &stmt,
            &[
                &note.id.as_str(),
                &note.organization_id.as_str(),
                &note.line_id.as_str(),
                &note.conversation_id.as_str(),
                &note.author_id.as_str(),
                &note.body,
                &note.created_at.unix_ms(),
            ],
        )
        .await
        .map_err(db_err)?;
    if n == 0 {
        return Err(Error::not_found("conversation"));
    }
    Ok(())
}

/// A conversation's notes, newest first; the cursor is the last note's `seq`.
pub(crate) async fn list_notes(
    db: &Db,
    org: &OrganizationId,
    conversation: &ConversationId,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Page<Note>> {
    let before = seq_cursor(cursor)?;
    let limit = limit.clamp(1, 200);
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(
            "SELECT id, org_id, conversation_id, line_id, author_id, body, created_at, seq FROM notes
             WHERE conversation_id = $1 AND org_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4",
        )
        .await
        .map_err(db_err)?;
    let fetch = i64::from(limit) + 1;
    let found = conn.query(&stmt, &[&conversation.as_str(), &org.as_str(), &before, &fetch]).await.map_err(db_err)?;
    let items = found
        .iter()
        .map(|r| {
            let note = Note {
                id: NoteId::from_raw(get::<String>(r, 0)?),
                organization_id: OrganizationId::from_raw(get::<String>(r, 1)?),
                conversation_id: ConversationId::from_raw(get::<String>(r, 2)?),
                line_id: LineId::from_raw(get::<String>(r, 3)?),
                author_id: UserId::from_raw(get::<String>(r, 4)?),
                body: get(r, 5)?,
                created_at: ts(r, 6)?,
            };
            Ok((note, get::<i64>(r, 7)?))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(seq_page(items, limit))
}
