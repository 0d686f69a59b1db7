//! Contacts and conversations as the send and receive paths need them: found with one read when
//! they exist, else created with `INSERT ... ON CONFLICT` upserts, so nodes that see a number's
//! first message at the same time make one contact and one conversation (a second inserter
//! waits for the first to commit and then takes its row).

use ezw_core::ids::{ContactId, ConversationId, LineId, OrganizationId};
use ezw_core::{PhoneNumber, Result, Timestamp};

use super::super::events::Emitter;
use super::super::rows::get;
use super::super::{db_err, Tx};

/// What one read finds for an (organization, phone, line): the contact, its WhatsApp profile
/// name, and the line's conversation with it.
pub(super) struct Found {
    /// The contact.
    pub(super) contact: ContactId,
    /// Its stored profile name.
    pub(super) profile_name: Option<String>,
    /// The line's conversation with it, if any.
    pub(super) conversation: Option<ConversationId>,
}

/// Looks up the contact of `phone` and its conversation on `line` (no locks).
pub(super) async fn find(
    tx: &Tx<'_>,
    org: &OrganizationId,
    line: &LineId,
    phone: &PhoneNumber,
) -> Result<Option<Found>> {
    let stmt = tx
        .prepare_cached(
            "SELECT c.id, c.profile_name, v.id FROM contacts c
             LEFT JOIN conversations v ON v.contact_id = c.id AND v.line_id = $3
             WHERE c.org_id = $1 AND c.phone_number = $2",
        )
        .await
        .map_err(db_err)?;
    let Some(row) = tx.query_opt(&stmt, &[&org.as_str(), &phone.as_str(), &line.as_str()]).await.map_err(db_err)?
    else {
        return Ok(None);
    };
    Ok(Some(Found {
        contact: ContactId::from_raw(get::<String>(&row, 0)?),
        profile_name: get(&row, 1)?,
        conversation: get::<Option<String>>(&row, 2)?.map(ConversationId::from_raw),
    }))
}

/// Sets a known contact's profile name when it differs.
pub(super) async fn set_profile_name(tx: &Tx<'_>, contact: &ContactId, name: &str, now: Timestamp) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "UPDATE contacts SET profile_name = $2, updated_at = $3 WHERE id = $1 AND profile_name IS DISTINCT FROM $2",
        )
        .await
        .map_err(db_err)?;
    tx.execute(&stmt, &[&contact.as_str(), &name, &now.unix_ms()]).await.map_err(db_err)?;
    Ok(())
}

/// The contact for `phone`, created when missing; sets the profile name when one is given.
pub(super) async fn upsert_contact(
    tx: &Tx<'_>,
    org: &OrganizationId,
    phone: &PhoneNumber,
    profile_name: Option<&str>,
    now: Timestamp,
) -> Result<ContactId> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO contacts AS c (id, org_id, phone_number, profile_name, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (org_id, phone_number) DO UPDATE
                SET profile_name = COALESCE(EXCLUDED.profile_name, c.profile_name),
                    updated_at = CASE WHEN EXCLUDED.profile_name IS NOT NULL
                                           AND c.profile_name IS DISTINCT FROM EXCLUDED.profile_name
                                      THEN EXCLUDED.updated_at ELSE c.updated_at END
             RETURNING c.id",
        )
        .await
        .map_err(db_err)?;
    let id = ContactId::generate(now.unix_ms());
    let row = tx
        .query_one(&stmt, &[&id.as_str(), &org.as_str(), &phone.as_str(), &profile_name, &now.unix_ms()])
        .await
        .map_err(db_err)?;
    Ok(ContactId::from_raw(get::<String>(&row, 0)?))
}

/// The conversation between `line` and the contact, created (with the line's default assignee,
/// while they are an active member who may view the line) when missing; `chats.post` is
/// queued only when this call created it.
pub(super) async fn upsert_conversation(
    tx: &Tx<'_>,
    emitter: &mut Emitter,
    org: &OrganizationId,
    line: &LineId,
    contact: &ContactId,
    phone: &PhoneNumber,
    now: Timestamp,
) -> Result<ConversationId> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO conversations AS v (id, org_id, line_id, contact_id, contact_phone, version, assignee_id,
                                             created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 1,
                     (SELECT l.default_assignee_id FROM lines l
                      JOIN memberships m ON m.org_id = l.org_id AND m.user_id = l.default_assignee_id
                                        AND m.status = 'active'
                      LEFT JOIN line_permissions p ON p.line_id = l.id AND p.user_id = l.default_assignee_id
                      WHERE l.id = $3 AND (m.role IN ('owner', 'admin') OR COALESCE(p.can_view, TRUE))),
                     $6, $6)
             ON CONFLICT (line_id, contact_id) DO UPDATE SET updated_at = v.updated_at
             RETURNING v.id, (v.xmax = 0) AS inserted",
        )
        .await
        .map_err(db_err)?;
    let id = ConversationId::generate(now.unix_ms());
    let row = tx
        .query_one(
            &stmt,
            &[&id.as_str(), &org.as_str(), &line.as_str(), &contact.as_str(), &phone.as_str(), &now.unix_ms()],
        )
        .await
        .map_err(db_err)?;
    let id = ConversationId::from_raw(get::<String>(&row, 0)?);
    if get::<bool>(&row, 1)? {
        emitter.chat_created(tx, org, line, &id, now).await?;
    }
    Ok(id)
}
