//! Inbound messages: deduplicated by (line, provider message id), across nodes too.

use std::collections::HashSet;

use ezw_core::ids::{ConversationId, MessageId};
use ezw_core::ports::{InboundOutcome, NewInbound};
use ezw_core::Result;

use super::super::events::Emitter;
use super::super::rows::{self, get, to_json, CONVERSATION_COLUMNS, MESSAGE_COLUMNS};
use super::super::{db_err, Db};
use super::contacts;

/// Records inbound messages in one `READ COMMITTED` transaction. Messages already stored, or
/// repeated in the batch, are `Duplicate`; the rest get their contact and conversation (found,
/// or created once across nodes), the message, and the conversation's activity times.
///
/// The conversations are locked in id order before any is changed (the order `finish_outbox`
/// uses), and the message insert skips a (line, provider id) another node stored meanwhile.
pub(crate) async fn record_inbound(db: &Db, messages: &[NewInbound]) -> Result<Vec<InboundOutcome>> {
    let mut conn = db.conn().await?;
    let tx = Db::read_committed(&mut conn).await?;
    let mut emitter = Emitter::new();

    // Already stored (one read for the batch).
    let lines: Vec<&str> = messages.iter().map(|m| m.line_id.as_str()).collect();
    let pids: Vec<&str> = messages.iter().map(|m| m.provider_message_id.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "SELECT k.line_id, k.provider_message_id FROM unnest($1::TEXT[], $2::TEXT[]) AS u(line, pid)
             CROSS JOIN LATERAL (
                 SELECT m.line_id, m.provider_message_id FROM messages m
                 WHERE m.line_id = u.line AND m.provider_message_id = u.pid OFFSET 0
             ) k",
        )
        .await
        .map_err(db_err)?;
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for r in tx.query(&stmt, &[&lines, &pids]).await.map_err(db_err)? {
        seen.insert((get(&r, 0)?, get(&r, 1)?));
    }

    // Contacts and conversations of the new ones, in order.
    let mut conversations: Vec<Option<ConversationId>> = Vec::with_capacity(messages.len());
    for m in messages {
        if !seen.insert((m.line_id.as_str().to_owned(), m.provider_message_id.clone())) {
            conversations.push(None);
            continue;
        }
        let at = m.received_at;
        let found = contacts::find(&tx, &m.organization_id, &m.line_id, &m.from).await?;
        let conversation = match found {
            Some(f) => {
                if let Some(name) = m.profile_name.as_deref().filter(|n| f.profile_name.as_deref() != Some(*n)) {
                    contacts::set_profile_name(&tx, &f.contact, name, at).await?;
                }
                match f.conversation {
                    Some(id) => id,
                    None => {
                        contacts::upsert_conversation(
                            &tx,
                            &mut emitter,
                            &m.organization_id,
                            &m.line_id,
                            &f.contact,
                            &m.from,
                            at,
                        )
                        .await?
                    }
                }
            }
            None => {
                let contact =
                    contacts::upsert_contact(&tx, &m.organization_id, &m.from, m.profile_name.as_deref(), at).await?;
                contacts::upsert_conversation(&tx, &mut emitter, &m.organization_id, &m.line_id, &contact, &m.from, at)
                    .await?
            }
        };
        conversations.push(Some(conversation));
    }

    let mut lock: Vec<&str> = conversations.iter().flatten().map(ConversationId::as_str).collect();
    lock.sort_unstable();
    lock.dedup();
    if !lock.is_empty() {
        let stmt = tx
            .prepare_cached("SELECT 1 FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .await
            .map_err(db_err)?;
        tx.query(&stmt, &[&lock]).await.map_err(db_err)?;
    }

    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO messages AS m (id, org_id, line_id, conversation_id, direction, kind, content, status,
                                        queued_at, provider_message_id, created_at)
             VALUES ($1, $2, $3, $4, 'inbound', $5, $6, 'received', $7, $8, $7)
             ON CONFLICT (line_id, provider_message_id) WHERE provider_message_id IS NOT NULL DO NOTHING
             RETURNING {MESSAGE_COLUMNS}"
        ))
        .await
        .map_err(db_err)?;
    let touch = tx
        .prepare_cached(&format!(
            "UPDATE conversations c SET last_message_at = GREATEST(COALESCE(c.last_message_at, 0), $2),
                    last_inbound_at = GREATEST(COALESCE(c.last_inbound_at, 0), $2), updated_at = $2
             WHERE c.id = $1
             RETURNING {CONVERSATION_COLUMNS}"
        ))
        .await
        .map_err(db_err)?;
    let mut out = Vec::with_capacity(messages.len());
    for (m, conversation) in messages.iter().zip(conversations) {
        let Some(conversation) = conversation else {
            out.push(InboundOutcome::Duplicate);
            continue;
        };
        let at = m.received_at.unix_ms();
        let id = MessageId::generate(at);
        let content = to_json(&m.content)?;
        let inserted = tx
            .query_opt(
                &insert,
                &[
                    &id.as_str(),
                    &m.organization_id.as_str(),
                    &m.line_id.as_str(),
                    &conversation.as_str(),
                    &m.kind.as_str(),
                    &content,
                    &at,
                    &m.provider_message_id,
                ],
            )
            .await
            .map_err(db_err)?;
        // Stored by another node since the first read.
        let Some(row) = inserted else {
            out.push(InboundOutcome::Duplicate);
            continue;
        };
        let message = rows::message(&row)?;
        let row = tx.query_one(&touch, &[&conversation.as_str(), &at]).await.map_err(db_err)?;
        let conversation = rows::conversation(&row)?;
        emitter.message(&tx, &message, &m.from).await?;
        out.push(InboundOutcome::Created { message: Box::new(message), conversation: Box::new(conversation) });
    }
    tx.commit().await.map_err(db_err)?;
    Ok(out)
}
