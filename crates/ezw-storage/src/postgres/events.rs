//! Webhook events written in the transaction of the change that caused them.
//!
//! An [`Emitter`] lives for one transaction and reads each line's subscribers once, so a batch
//! that changes a thousand messages of one line pays one lookup, and a line without webhooks
//! pays nothing more.

use std::collections::HashMap;

use ezw_core::ids::{ConversationId, LineId, MessageId, OrganizationId, WebhookId};
use ezw_core::model::{Message, PayloadFormat, WebhookEventKind};
use ezw_core::webhooks::{plan_deliveries, EventEnvelope, Subscriber, WebhookEvent};
use ezw_core::{Error, PhoneNumber, Result, Timestamp};

use super::rows::{self, get, CONVERSATION_COLUMNS, MESSAGE_COLUMNS};
use super::{db_err, Tx};

/// One enabled webhook of a line: its subscription mask and body format.
struct LineSubscriber {
    mask: i64,
    subscriber: Subscriber,
}

/// What a line's events need: its enabled webhooks and its number.
struct LineTargets {
    subscribers: Vec<LineSubscriber>,
    phone: Option<PhoneNumber>,
}

/// Queues webhook deliveries inside one write transaction.
#[derive(Default)]
pub(crate) struct Emitter {
    lines: HashMap<LineId, LineTargets>,
}

impl Emitter {
    /// An emitter for one transaction.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    async fn subscribers(&mut self, tx: &Tx<'_>, line: &LineId, kind: WebhookEventKind) -> Result<Vec<Subscriber>> {
        if !self.lines.contains_key(line) {
            let stmt = tx
                .prepare_cached("SELECT id, payload_format, event_mask FROM webhooks WHERE line_id = $1 AND enabled")
                .await
                .map_err(db_err)?;
            let mut subscribers = Vec::new();
            for r in tx.query(&stmt, &[&line.as_str()]).await.map_err(db_err)? {
                subscribers.push(LineSubscriber {
                    mask: get(&r, 2)?,
                    subscriber: Subscriber {
                        webhook_id: WebhookId::from_raw(get::<String>(&r, 0)?),
                        format: PayloadFormat::parse(get(&r, 1)?).unwrap_or_default(),
                    },
                });
            }
            self.lines.insert(line.clone(), LineTargets { subscribers, phone: None });
        }
        let targets = &self.lines[line];
        Ok(targets.subscribers.iter().filter(|s| s.mask & kind.bit() != 0).map(|s| s.subscriber.clone()).collect())
    }

    async fn line_phone(&mut self, tx: &Tx<'_>, line: &LineId) -> Result<PhoneNumber> {
        if let Some(phone) = self.lines.get(line).and_then(|t| t.phone.clone()) {
            return Ok(phone);
        }
        let stmt = tx.prepare_cached("SELECT phone_number FROM lines WHERE id = $1").await.map_err(db_err)?;
        let row = tx.query_one(&stmt, &[&line.as_str()]).await.map_err(db_err)?;
        let phone = PhoneNumber::parse(get(&row, 0)?).map_err(|_| Error::internal("stored line phone is invalid"))?;
        if let Some(t) = self.lines.get_mut(line) {
            t.phone = Some(phone.clone());
        }
        Ok(phone)
    }

    /// Queues `event` for every enabled webhook of `line` subscribed to `kind`.
    pub(crate) async fn event(
        &mut self,
        tx: &Tx<'_>,
        org: &OrganizationId,
        line: &LineId,
        kind: WebhookEventKind,
        at: Timestamp,
        event: WebhookEvent,
    ) -> Result<()> {
        let subscribers = self.subscribers(tx, line, kind).await?;
        if subscribers.is_empty() {
            return Ok(());
        }
        self.insert(tx, org, line, kind, at, event, &subscribers).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert(
        &mut self,
        tx: &Tx<'_>,
        org: &OrganizationId,
        line: &LineId,
        kind: WebhookEventKind,
        at: Timestamp,
        event: WebhookEvent,
        subscribers: &[Subscriber],
    ) -> Result<()> {
        let line_phone = self.line_phone(tx, line).await?;
        let envelope = EventEnvelope::new(org.clone(), line.clone(), line_phone, at, event);
        let stmt = tx
            .prepare_cached(
                "INSERT INTO webhook_deliveries (id, event_id, webhook_id, org_id, line_id, event, body, status,
                                                 next_attempt_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8)",
            )
            .await
            .map_err(db_err)?;
        for d in plan_deliveries(&envelope, subscribers) {
            tx.execute(
                &stmt,
                &[
                    &d.id.as_str(),
                    &envelope.id.as_str(),
                    &d.webhook_id.as_str(),
                    &org.as_str(),
                    &line.as_str(),
                    &kind.as_str(),
                    &d.body,
                    &at.unix_ms(),
                ],
            )
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    /// `messages.post` for a message just recorded.
    pub(crate) async fn message(&mut self, tx: &Tx<'_>, message: &Message, contact_phone: &PhoneNumber) -> Result<()> {
        let (org, line) = (&message.organization_id, &message.line_id);
        let subscribers = self.subscribers(tx, line, WebhookEventKind::MessagesPost).await?;
        if subscribers.is_empty() {
            return Ok(());
        }
        let event = WebhookEvent::Message { message: Box::new(message.clone()), contact_phone: contact_phone.clone() };
        self.insert(tx, org, line, WebhookEventKind::MessagesPost, message.created_at, event, &subscribers).await
    }

    /// `statuses.post` for a message whose status just changed (read as it now is).
    pub(crate) async fn status(
        &mut self,
        tx: &Tx<'_>,
        org: &OrganizationId,
        line: &LineId,
        message: &MessageId,
        at: Timestamp,
    ) -> Result<()> {
        let subscribers = self.subscribers(tx, line, WebhookEventKind::StatusesPost).await?;
        if subscribers.is_empty() {
            return Ok(());
        }
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS}, c.contact_phone FROM messages m
                 JOIN conversations c ON c.id = m.conversation_id WHERE m.id = $1 AND m.org_id = $2"
            ))
            .await
            .map_err(db_err)?;
        let Some(row) = tx.query_opt(&stmt, &[&message.as_str(), &org.as_str()]).await.map_err(db_err)? else {
            return Ok(());
        };
        let message = rows::message(&row)?;
        let contact_phone = PhoneNumber::parse(get(&row, rows::MESSAGE_COLUMN_COUNT)?)
            .map_err(|_| Error::internal("stored contact phone is invalid"))?;
        let event = WebhookEvent::Status { message: Box::new(message), contact_phone };
        self.insert(tx, org, line, WebhookEventKind::StatusesPost, at, event, &subscribers).await
    }

    /// `chats.post` for a conversation just opened.
    pub(crate) async fn chat_created(
        &mut self,
        tx: &Tx<'_>,
        org: &OrganizationId,
        line: &LineId,
        conversation: &ConversationId,
        at: Timestamp,
    ) -> Result<()> {
        let subscribers = self.subscribers(tx, line, WebhookEventKind::ChatsPost).await?;
        if subscribers.is_empty() {
            return Ok(());
        }
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1 AND c.org_id = $2"
            ))
            .await
            .map_err(db_err)?;
        let Some(row) = tx.query_opt(&stmt, &[&conversation.as_str(), &org.as_str()]).await.map_err(db_err)? else {
            return Ok(());
        };
        let event = WebhookEvent::ChatCreated { conversation: Box::new(rows::conversation(&row)?) };
        self.insert(tx, org, line, WebhookEventKind::ChatsPost, at, event, &subscribers).await
    }
}
