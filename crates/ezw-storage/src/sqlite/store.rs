//! `impl Store for SqliteStore`: reads go to the reader pool, writes to the group-commit writer.

use std::time::Duration;

use async_trait::async_trait;
use ezw_core::ids::{
    AttachmentId, ContactId, ConversationId, DeliveryId, LineId, MessageId, OrganizationId, SessionId, UserId,
    WebhookId,
};
use ezw_core::model::{
    Attachment, AuditEvent, Conversation, DeliveryAttempt, LifecycleState, Line, LineTokenRecord, Membership, Message,
    Organization, User, Webhook, WebhookDelivery,
};
use ezw_core::ports::{
    ConversationQuery, DeliveryJob, DeliveryResult, EnqueueOutcome, InboundOutcome, JobResult, LineContext,
    LineTokenMatch, MessageChange, NewInbound, NewOutbound, OutboxJob, OutboxStats, Page, SessionRecord, StatusUpdate,
    Store, StoredWebhook, UnknownResolution,
};
use ezw_core::{PhoneNumber, Result, Timestamp};

use super::{db_err, identity, inbox, lines, media, outbox, webhooks, SqliteStore};

#[async_trait]
impl Store for SqliteStore {
    async fn create_organization(&self, org: &Organization, owner: &User, new_user: bool) -> Result<()> {
        let (org, owner) = (org.clone(), owner.clone());
        self.writer.write(move |c| identity::create_organization(c, &org, &owner, new_user)).await
    }

    async fn get_organization(&self, id: &OrganizationId) -> Result<Option<Organization>> {
        let id = id.clone();
        self.readers.lookup(move |c| identity::get_organization(c, &id)).await
    }

    async fn find_organization_by_slug(&self, slug: &str) -> Result<Option<Organization>> {
        let slug = slug.to_owned();
        self.readers.lookup(move |c| identity::find_organization_by_slug(c, &slug)).await
    }

    async fn insert_user(&self, user: &User) -> Result<()> {
        let user = user.clone();
        self.writer.write(move |c| identity::insert_user(c, &user)).await
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
        let id = id.clone();
        self.readers.lookup(move |c| identity::get_user(c, &id)).await
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = email.to_owned();
        self.readers.lookup(move |c| identity::find_user_by_email(c, &email)).await
    }

    async fn set_password_hash(&self, id: &UserId, hash: &str) -> Result<()> {
        let (id, hash) = (id.clone(), hash.to_owned());
        self.writer.write(move |c| identity::set_password_hash(c, &id, &hash)).await
    }

    async fn upsert_membership(&self, membership: &Membership) -> Result<()> {
        let m = membership.clone();
        self.writer.write(move |c| identity::upsert_membership(c, &m)).await
    }

    async fn get_membership(&self, org: &OrganizationId, user: &UserId) -> Result<Option<Membership>> {
        let (org, user) = (org.clone(), user.clone());
        self.readers.lookup(move |c| identity::get_membership(c, &org, &user)).await
    }

    async fn list_user_memberships(&self, user: &UserId) -> Result<Vec<Membership>> {
        let user = user.clone();
        self.readers.read(move |c| identity::list_user_memberships(c, &user)).await
    }

    async fn insert_session(&self, session: &SessionRecord) -> Result<()> {
        let s = session.clone();
        self.writer.write(move |c| identity::insert_session(c, &s)).await
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        let id = id.clone();
        self.readers.lookup(move |c| identity::get_session(c, &id)).await
    }

    async fn insert_line(&self, line: &Line) -> Result<()> {
        let line = line.clone();
        self.writer.write(move |c| lines::insert_line(c, &line)).await
    }

    async fn get_line(&self, org: &OrganizationId, id: &LineId) -> Result<Option<Line>> {
        let (org, id) = (org.clone(), id.clone());
        self.readers.lookup(move |c| lines::get_line(c, Some(&org), &id)).await
    }

    async fn get_line_unscoped(&self, id: &LineId) -> Result<Option<Line>> {
        let id = id.clone();
        self.readers.lookup(move |c| lines::get_line(c, None, &id)).await
    }

    async fn get_line_context(&self, org: &OrganizationId, id: &LineId) -> Result<Option<LineContext>> {
        let (org, id) = (org.clone(), id.clone());
        self.readers.lookup(move |c| lines::get_line_context(c, &org, &id)).await
    }

    async fn list_lines(&self, org: &OrganizationId) -> Result<Vec<Line>> {
        let org = org.clone();
        self.readers.read(move |c| lines::list_lines(c, &org)).await
    }

    async fn set_line_state(
        &self,
        org: &OrganizationId,
        id: &LineId,
        state: LifecycleState,
        reason: Option<&str>,
        at: Timestamp,
    ) -> Result<Option<Line>> {
        let (org, id, reason) = (org.clone(), id.clone(), reason.map(str::to_owned));
        self.writer.write(move |c| lines::set_line_state(c, &org, &id, state, reason.as_deref(), at)).await
    }

    async fn replace_line_token(&self, token: &LineTokenRecord) -> Result<bool> {
        let t = token.clone();
        self.writer.write(move |c| lines::replace_line_token(c, &t)).await
    }

    async fn find_line_token(&self, token_hash: &str) -> Result<Option<LineTokenMatch>> {
        let hash = token_hash.to_owned();
        self.readers.lookup(move |c| lines::find_line_token(c, &hash)).await
    }

    async fn get_conversation(&self, org: &OrganizationId, id: &ConversationId) -> Result<Option<Conversation>> {
        let (org, id) = (org.clone(), id.clone());
        self.readers.lookup(move |c| inbox::get_conversation(c, &org, &id)).await
    }

    async fn list_conversations(&self, org: &OrganizationId, query: &ConversationQuery) -> Result<Page<Conversation>> {
        let (org, q) = (org.clone(), query.clone());
        self.readers.read(move |c| inbox::list_conversations(c, &org, &q)).await
    }

    async fn get_message(&self, org: &OrganizationId, id: &MessageId) -> Result<Option<Message>> {
        let (org, id) = (org.clone(), id.clone());
        self.readers.lookup(move |c| inbox::get_message(c, Some(&org), &id)).await
    }

    async fn list_messages(
        &self,
        org: &OrganizationId,
        conversation: &ConversationId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Message>> {
        let (org, conv, cursor) = (org.clone(), conversation.clone(), cursor.map(str::to_owned));
        self.readers.read(move |c| inbox::list_messages(c, &org, &conv, cursor.as_deref(), limit)).await
    }

    async fn find_contact_id(&self, org: &OrganizationId, phone: &PhoneNumber) -> Result<Option<ContactId>> {
        let (org, phone) = (org.clone(), phone.clone());
        self.readers.lookup(move |c| inbox::find_contact_id(c, &org, &phone)).await
    }

    async fn enqueue_outbound(&self, send: NewOutbound) -> Result<EnqueueOutcome> {
        self.writer.write(move |c| outbox::enqueue_outbound(c, &send)).await
    }

    async fn claim_outbox(&self, now: Timestamp, lease: Duration, limit: u32) -> Result<Vec<OutboxJob>> {
        self.writer.write(move |c| outbox::claim_outbox(c, now, lease, limit)).await
    }

    async fn finish_outbox(&self, results: Vec<JobResult>) -> Result<Vec<MessageChange>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        self.writer.write(move |c| outbox::finish_outbox(c, &results)).await
    }

    async fn mark_dispatched(&self, leases: Vec<(MessageId, String)>, at: Timestamp) -> Result<Vec<bool>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        self.writer.write(move |c| outbox::mark_dispatched(c, &leases, at)).await
    }

    async fn outbox_depth(&self) -> Result<u64> {
        self.readers
            .read(|c| c.query_row("SELECT COUNT(*) FROM outbox_jobs", [], |r| r.get::<_, i64>(0)).map_err(db_err))
            .await
            .map(|n| u64::try_from(n).unwrap_or(0))
    }

    async fn resolve_unknown(
        &self,
        org: &OrganizationId,
        id: &MessageId,
        resolution: UnknownResolution,
        at: Timestamp,
    ) -> Result<Option<Message>> {
        let (org, id) = (org.clone(), id.clone());
        self.writer.write(move |c| outbox::resolve_unknown(c, &org, &id, resolution, at)).await
    }

    async fn outbox_stats(&self) -> Result<OutboxStats> {
        self.readers.read(outbox::outbox_stats).await
    }

    async fn apply_status_updates(&self, updates: Vec<StatusUpdate>) -> Result<Vec<MessageChange>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let now = updates.iter().map(|u| u.at).max().unwrap_or(Timestamp::from_unix_ms(0));
        self.writer.write(move |c| outbox::apply_status_updates(c, &updates, now)).await
    }

    async fn record_inbound(&self, messages: Vec<NewInbound>) -> Result<Vec<InboundOutcome>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.writer.write(move |c| outbox::record_inbound(c, &messages)).await
    }

    async fn insert_attachment(&self, attachment: &Attachment) -> Result<()> {
        let a = attachment.clone();
        self.writer.write(move |c| media::insert_attachment(c, &a)).await
    }

    async fn get_attachment(&self, org: &OrganizationId, id: &AttachmentId) -> Result<Option<Attachment>> {
        let (org, id) = (org.clone(), id.clone());
        self.readers.lookup(move |c| media::get_attachment(c, &org, &id)).await
    }

    async fn purge_idempotency(&self, now: Timestamp) -> Result<u64> {
        self.writer.write(move |c| outbox::purge_idempotency(c, now)).await
    }

    async fn insert_webhook(&self, webhook: &Webhook, sealed_secret: &str, audit: &AuditEvent) -> Result<()> {
        let (w, secret, a) = (webhook.clone(), sealed_secret.to_owned(), audit.clone());
        self.writer.write(move |c| webhooks::insert_webhook(c, &w, &secret, &a)).await
    }

    async fn update_webhook(&self, webhook: &Webhook, audit: &AuditEvent) -> Result<bool> {
        let (w, a) = (webhook.clone(), audit.clone());
        self.writer.write(move |c| webhooks::update_webhook(c, &w, &a)).await
    }

    async fn rotate_webhook_secret(
        &self,
        org: &OrganizationId,
        id: &WebhookId,
        sealed_secret: &str,
        previous_until: Timestamp,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let (org, id, secret, a) = (org.clone(), id.clone(), sealed_secret.to_owned(), audit.clone());
        self.writer.write(move |c| webhooks::rotate_secret(c, &org, &id, &secret, previous_until, &a)).await
    }

    async fn delete_webhook(&self, org: &OrganizationId, id: &WebhookId, audit: &AuditEvent) -> Result<bool> {
        let (org, id, a) = (org.clone(), id.clone(), audit.clone());
        self.writer.write(move |c| webhooks::delete_webhook(c, &org, &id, &a)).await
    }

    async fn get_webhook(&self, org: &OrganizationId, id: &WebhookId) -> Result<Option<StoredWebhook>> {
        let (org, id) = (org.clone(), id.clone());
        self.readers.lookup(move |c| webhooks::get_webhook(c, &org, &id)).await
    }

    async fn list_webhooks(&self, org: &OrganizationId, line: &LineId) -> Result<Vec<StoredWebhook>> {
        let (org, line) = (org.clone(), line.clone());
        self.readers.read(move |c| webhooks::list_webhooks(c, &org, &line)).await
    }

    async fn claim_webhook_deliveries(&self, now: Timestamp, lease: Duration, limit: u32) -> Result<Vec<DeliveryJob>> {
        self.writer.write(move |c| webhooks::claim(c, now, lease, limit)).await
    }

    async fn finish_webhook_deliveries(&self, results: Vec<DeliveryResult>) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        self.writer.write(move |c| webhooks::finish(c, &results)).await
    }

    async fn list_webhook_deliveries(
        &self,
        org: &OrganizationId,
        webhook: &WebhookId,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<WebhookDelivery>> {
        let (org, webhook) = (org.clone(), webhook.clone());
        self.readers.read(move |c| webhooks::list_deliveries(c, &org, &webhook, cursor.as_deref(), limit)).await
    }

    async fn get_webhook_delivery(
        &self,
        org: &OrganizationId,
        id: &DeliveryId,
    ) -> Result<Option<(WebhookDelivery, Vec<DeliveryAttempt>)>> {
        let (org, id) = (org.clone(), id.clone());
        self.readers.read(move |c| webhooks::get_delivery(c, &org, &id)).await
    }

    async fn redeliver_webhook_delivery(
        &self,
        org: &OrganizationId,
        id: &DeliveryId,
        at: Timestamp,
    ) -> Result<Option<WebhookDelivery>> {
        let (org, id) = (org.clone(), id.clone());
        self.writer.write(move |c| webhooks::redeliver(c, &org, &id, at)).await
    }

    async fn record_audit(&self, event: &AuditEvent) -> Result<()> {
        let a = event.clone();
        self.writer.write(move |c| webhooks::record_audit(c, &a)).await
    }

    async fn list_audit(
        &self,
        org: &OrganizationId,
        action: Option<&str>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<AuditEvent>> {
        let (org, action) = (org.clone(), action.map(str::to_owned));
        self.readers.read(move |c| webhooks::list_audit(c, &org, action.as_deref(), cursor.as_deref(), limit)).await
    }
}
