//! Attachments (media metadata; the bytes live in the blob store under the attachment id).

use ezw_core::ids::{AttachmentId, MessageId, OrganizationId};
use ezw_core::model::{Attachment, MessageContent};
use ezw_core::{Error, Result};

use super::rows::{self, get};
use super::{count, db_err, Db};

/// Records an attachment; when it belongs to a message, the message's media content points at
/// it (and takes its MIME type when it had none), in the same transaction. `not_found` when
/// the organization has no such message.
pub(crate) async fn insert_attachment(db: &Db, a: &Attachment) -> Result<()> {
    let mut conn = db.conn().await?;
    let tx = Db::serializable(&mut conn).await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO attachments (id, org_id, message_id, content_type, size_bytes, sha256, filename, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await
        .map_err(db_err)?;
    tx.execute(
        &stmt,
        &[
            &a.id.as_str(),
            &a.organization_id.as_str(),
            &a.message_id.as_ref().map(MessageId::as_str),
            &a.content_type,
            &i64::try_from(a.size_bytes).unwrap_or(i64::MAX),
            &a.sha256,
            &a.filename,
            &a.created_at.unix_ms(),
        ],
    )
    .await
    .map_err(db_err)?;
    if let Some(message_id) = &a.message_id {
        // Lock the message row now: its content is read, changed and written back.
        let stmt = tx
            .prepare_cached("SELECT content FROM messages WHERE id = $1 AND org_id = $2 FOR NO KEY UPDATE")
            .await
            .map_err(db_err)?;
        let row = tx
            .query_opt(&stmt, &[&message_id.as_str(), &a.organization_id.as_str()])
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("message"))?;
        let mut content: MessageContent = rows::json(&row, 0)?;
        if let Some(media) = content.media.as_mut() {
            media.attachment_id = Some(a.id.to_string());
            if media.mime_type.is_none() {
                media.mime_type = Some(a.content_type.clone());
            }
        }
        let stmt = tx.prepare_cached("UPDATE messages SET content = $2 WHERE id = $1").await.map_err(db_err)?;
        tx.execute(&stmt, &[&message_id.as_str(), &rows::to_json(&content)?]).await.map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)
}

/// An attachment of `org`.
pub(crate) async fn get_attachment(db: &Db, org: &OrganizationId, id: &AttachmentId) -> Result<Option<Attachment>> {
    let conn = db.conn().await?;
    let stmt = conn
        .prepare_cached(
            "SELECT id, org_id, message_id, content_type, size_bytes, sha256, filename, created_at
             FROM attachments WHERE id = $1 AND org_id = $2",
        )
        .await
        .map_err(db_err)?;
    let Some(r) = conn.query_opt(&stmt, &[&id.as_str(), &org.as_str()]).await.map_err(db_err)? else {
        return Ok(None);
    };
    Ok(Some(Attachment {
        id: AttachmentId::from_raw(get::<String>(&r, 0)?),
        organization_id: OrganizationId::from_raw(get::<String>(&r, 1)?),
        message_id: get::<Option<String>>(&r, 2)?.map(MessageId::from_raw),
        content_type: get(&r, 3)?,
        size_bytes: count(get(&r, 4)?),
        sha256: get(&r, 5)?,
        filename: get(&r, 6)?,
        created_at: rows::ts(&r, 7)?,
    }))
}
