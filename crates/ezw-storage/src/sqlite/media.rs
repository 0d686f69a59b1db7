//! Attachments (media metadata).

use ezw_core::ids::{AttachmentId, MessageId, OrganizationId};
use ezw_core::model::{Attachment, MessageContent};
use ezw_core::{Error, Result, Timestamp};
use rusqlite::{params, Connection};

use super::{db_err, optional};

pub(super) fn insert_attachment(conn: &Connection, a: &Attachment) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO attachments (id, org_id, message_id, content_type, size_bytes, sha256, filename, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            a.id.as_str(),
            a.organization_id.as_str(),
            a.message_id.as_ref().map(|m| m.as_str().to_owned()),
            a.content_type,
            i64::try_from(a.size_bytes).unwrap_or(i64::MAX),
            a.sha256,
            a.filename,
            a.created_at.unix_ms()
        ])
    })
    .map_err(db_err)?;
    let Some(message_id) = &a.message_id else { return Ok(()) };
    let content: Option<String> = optional(
        conn.prepare_cached("SELECT content FROM messages WHERE id = ?1 AND org_id = ?2")
            .and_then(|mut s| s.query_row([message_id.as_str(), a.organization_id.as_str()], |r| r.get(0))),
    )?;
    let content = content.ok_or_else(|| Error::not_found("message"))?;
    let mut content: MessageContent =
        serde_json::from_str(&content).map_err(|e| Error::internal(format!("decoding message content: {e}")))?;
    if let Some(media) = content.media.as_mut() {
        media.attachment_id = Some(a.id.to_string());
        if media.mime_type.is_none() {
            media.mime_type = Some(a.content_type.clone());
        }
    }
    let content = serde_json::to_string(&content).map_err(|e| Error::internal(format!("encoding content: {e}")))?;
    conn.prepare_cached("UPDATE messages SET content = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![message_id.as_str(), content]))
        .map_err(db_err)?;
    Ok(())
}

pub(super) fn get_attachment(conn: &Connection, org: &OrganizationId, id: &AttachmentId) -> Result<Option<Attachment>> {
    optional(
        conn.prepare_cached(
            "SELECT id, org_id, message_id, content_type, size_bytes, sha256, filename, created_at
             FROM attachments WHERE id = ?1 AND org_id = ?2",
        )
        .and_then(|mut s| {
            s.query_row([id.as_str(), org.as_str()], |r| {
                Ok(Attachment {
                    id: AttachmentId::from_raw(r.get::<_, String>(0)?),
                    organization_id: OrganizationId::from_raw(r.get::<_, String>(1)?),
                    message_id: r.get::<_, Option<String>>(2)?.map(MessageId::from_raw),
                    content_type: r.get(3)?,
                    size_bytes: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                    sha256: r.get(5)?,
                    filename: r.get(6)?,
                    created_at: Timestamp::from_unix_ms(r.get(7)?),
                })
            })
        }),
    )
}
