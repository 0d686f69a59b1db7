//! `impl Store for PgStore`: reads run on a pooled connection; each write is one transaction,
//! retried on serialization failures and deadlocks.

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
    Store, StoredWebhook, UnknownResolution, Wake,
};
use ezw_core::{PhoneNumber, Result, Timestamp};

use super::{audit, identity, inbox, lines, media, outbox, webhooks, PgStore};

#[async_trait]
impl Store for PgStore {
    async fn create_organization(&self, org: &Organization, owner: &User, new_user: bool) -> Result<()> {
        let (org, owner) = (org.clone(), owner.clone());
        self.db.retry(|| identity::create_organization(&self.db, &org, &owner, new_user)).await
    }

    async fn get_organization(&self, id: &OrganizationId) -> Result<Option<Organization>> {
        let id = id.clone();
        identity::get_organization(&self.db, &id).await
    }

    async fn find_organization_by_slug(&self, slug: &str) -> Result<Option<Organization>> {
        let slug = slug.to_owned();
        identity::find_organization_by_slug(&self.db, &slug).await
    }

    async fn insert_user(&self, user: &User) -> Result<()> {
        let user = user.clone();
        self.db.retry(|| identity::insert_user(&self.db, &user)).await
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
        let id = id.clone();
        identity::get_user(&self.db, &id).await
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = email.to_owned();
        identity::find_user_by_email(&self.db, &email).await
    }

    async fn set_password_hash(&self, id: &UserId, hash: &str) -> Result<()> {
        let (id, hash) = (id.clone(), hash.to_owned());
        self.db.retry(|| identity::set_password_hash(&self.db, &id, &hash)).await
    }

    async fn upsert_membership(&self, membership: &Membership) -> Result<()> {
        let m = membership.clone();
        self.db.retry(|| identity::upsert_membership(&self.db, &m)).await
    }

    async fn get_membership(&self, org: &OrganizationId, user: &UserId) -> Result<Option<Membership>> {
        let (org, user) = (org.clone(), user.clone());
        identity::get_membership(&self.db, &org, &user).await
    }

    async fn list_user_memberships(&self, user: &UserId) -> Result<Vec<Membership>> {
        let user = user.clone();
        identity::list_user_memberships(&self.db, &user).await
    }

    async fn insert_session(&self, session: &SessionRecord) -> Result<()> {
        let s = session.clone();
        self.db.retry(|| identity::insert_session(&self.db, &s)).await
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        let id = id.clone();
        identity::get_session(&self.db, &id).await
    }

    async fn insert_line(&self, line: &Line) -> Result<()> {
        let line = line.clone();
        self.db.retry(|| lines::insert_line(&self.db, &line)).await
    }

    async fn get_line(&self, org: &OrganizationId, id: &LineId) -> Result<Option<Line>> {
        let (org, id) = (org.clone(), id.clone());
        lines::get_line(&self.db, Some(&org), &id).await
    }

    async fn get_line_unscoped(&self, id: &LineId) -> Result<Option<Line>> {
        let id = id.clone();
        lines::get_line(&self.db, None, &id).await
    }

    async fn get_line_context(&self, org: &OrganizationId, id: &LineId) -> Result<Option<LineContext>> {
        let (org, id) = (org.clone(), id.clone());
        lines::get_line_context(&self.db, &org, &id).await
    }

    async fn list_lines(&self, org: &OrganizationId) -> Result<Vec<Line>> {
        let org = org.clone();
        lines::list_lines(&self.db, &org).await
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
        self.db.retry(|| lines::set_line_state(&self.db, &org, &id, state, reason.as_deref(), at)).await
    }

    async fn replace_line_token(&self, token: &LineTokenRecord) -> Result<bool> {
        let t = token.clone();
        self.db.retry(|| lines::replace_line_token(&self.db, &t)).await
    }

    async fn find_line_token(&self, token_hash: &str) -> Result<Option<LineTokenMatch>> {
        let hash = token_hash.to_owned();
        lines::find_line_token(&self.db, &hash).await
    }

    async fn get_conversation(&self, org: &OrganizationId, id: &ConversationId) -> Result<Option<Conversation>> {
        let (org, id) = (org.clone(), id.clone());
        inbox::get_conversation(&self.db, &org, &id).await
    }

    async fn list_conversations(&self, org: &OrganizationId, query: &ConversationQuery) -> Result<Page<Conversation>> {
        let (org, q) = (org.clone(), query.clone());
        inbox::list_conversations(&self.db, &org, &q).await
    }

    async fn get_message(&self, org: &OrganizationId, id: &MessageId) -> Result<Option<Message>> {
        let (org, id) = (org.clone(), id.clone());
        inbox::get_message(&self.db, Some(&org), &id).await
    }

    async fn list_messages(
        &self,
        org: &OrganizationId,
        conversation: &ConversationId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Message>> {
        let (org, conv, cursor) = (org.clone(), conversation.clone(), cursor.map(str::to_owned));
        inbox::list_messages(&self.db, &org, &conv, cursor.as_deref(), limit).await
    }

    async fn find_contact_id(&self, org: &OrganizationId, phone: &PhoneNumber) -> Result<Option<ContactId>> {
        let (org, phone) = (org.clone(), phone.clone());
        inbox::find_contact_id(&self.db, &org, &phone).await
    }

    async fn enqueue_outbound(&self, send: NewOutbound) -> Result<EnqueueOutcome> {
        let outcome = self.db.retry(|| outbox::enqueue_outbound(&self.db, &send)).await?;
        if matches!(outcome, EnqueueOutcome::Created(_)) {
            self.db.notifier.wake(Wake::Outbox);
        }
        Ok(outcome)
    }

    async fn claim_outbox(&self, now: Timestamp, lease: Duration, limit: u32) -> Result<Vec<OutboxJob>> {
        self.db.retry(|| outbox::claim_outbox(&self.db, now, lease, limit)).await
    }

    async fn finish_outbox(&self, results: Vec<JobResult>) -> Result<Vec<MessageChange>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let changed = self.db.retry(|| outbox::finish_outbox(&self.db, &results)).await?;
        // A finished job frees its conversation's next one.
        self.db.notifier.wake(Wake::Outbox);
        Ok(changed)
    }

    async fn mark_dispatched(&self, leases: Vec<(MessageId, String)>, at: Timestamp) -> Result<Vec<bool>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        self.db.retry(|| outbox::mark_dispatched(&self.db, &leases, at)).await
    }

    async fn outbox_depth(&self) -> Result<u64> {
        outbox::outbox_depth(&self.db).await
    }

    async fn resolve_unknown(
        &self,
        org: &OrganizationId,
        id: &MessageId,
        resolution: UnknownResolution,
        at: Timestamp,
    ) -> Result<Option<Message>> {
        let (org, id) = (org.clone(), id.clone());
        let message = self.db.retry(|| outbox::resolve_unknown(&self.db, &org, &id, resolution, at)).await?;
        self.db.notifier.wake(Wake::Outbox);
        Ok(message)
    }

    async fn outbox_stats(&self) -> Result<OutboxStats> {
        outbox::outbox_stats(&self.db).await
    }

    async fn apply_status_updates(&self, updates: Vec<StatusUpdate>) -> Result<Vec<MessageChange>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let now = updates.iter().map(|u| u.at).max().unwrap_or(Timestamp::from_unix_ms(0));
        self.db.retry(|| outbox::apply_status_updates(&self.db, &updates, now)).await
    }

    async fn record_inbound(&self, messages: Vec<NewInbound>) -> Result<Vec<InboundOutcome>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.db.retry(|| outbox::record_inbound(&self.db, &messages)).await
    }

    async fn insert_attachment(&self, attachment: &Attachment) -> Result<()> {
        let a = attachment.clone();
        self.db.retry(|| media::insert_attachment(&self.db, &a)).await
    }

    async fn get_attachment(&self, org: &OrganizationId, id: &AttachmentId) -> Result<Option<Attachment>> {
        let (org, id) = (org.clone(), id.clone());
        media::get_attachment(&self.db, &org, &id).await
    }

    async fn purge_idempotency(&self, now: Timestamp) -> Result<u64> {
        self.db.retry(|| outbox::purge_idempotency(&self.db, now)).await
    }

    async fn insert_webhook(&self, webhook: &Webhook, sealed_secret: &str, audit: &AuditEvent) -> Result<()> {
        let (w, secret, a) = (webhook.clone(), sealed_secret.to_owned(), audit.clone());
        self.db.retry(|| webhooks::insert_webhook(&self.db, &w, &secret, &a)).await
    }

    async fn update_webhook(&self, webhook: &Webhook, audit: &AuditEvent) -> Result<bool> {
        let (w, a) = (webhook.clone(), audit.clone());
        self.db.retry(|| webhooks::update_webhook(&self.db, &w, &a)).await
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
        self.db.retry(|| webhooks::rotate_secret(&self.db, &org, &id, &secret, previous_until, &a)).await
    }

    async fn delete_webhook(&self, org: &OrganizationId, id: &WebhookId, audit: &AuditEvent) -> Result<bool> {
        let (org, id, a) = (org.clone(), id.clone(), audit.clone());
        self.db.retry(|| webhooks::delete_webhook(&self.db, &org, &id, &a)).await
    }

    async fn get_webhook(&self, org: &OrganizationId, id: &WebhookId) -> Result<Option<StoredWebhook>> {
        let (org, id) = (org.clone(), id.clone());
        webhooks::get_webhook(&self.db, &org, &id).await
    }

    async fn list_webhooks(&self, org: &OrganizationId, line: &LineId) -> Result<Vec<StoredWebhook>> {
        let (org, line) = (org.clone(), line.clone());
        webhooks::list_webhooks(&self.db, &org, &line).await
    }

    async fn claim_webhook_deliveries(&self, now: Timestamp, lease: Duration, limit: u32) -> Result<Vec<DeliveryJob>> {
        self.db.retry(|| webhooks::claim(&self.db, now, lease, limit)).await
    }

    async fn finish_webhook_deliveries(&self, results: Vec<DeliveryResult>) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        self.db.retry(|| webhooks::finish(&self.db, &results)).await
    }

    async fn list_webhook_deliveries(
        &self,
        org: &OrganizationId,
        webhook: &WebhookId,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<WebhookDelivery>> {
        let (org, webhook) = (org.clone(), webhook.clone());
        webhooks::list_deliveries(&self.db, &org, &webhook, cursor.as_deref(), limit).await
    }

    async fn get_webhook_delivery(
        &self,
        org: &OrganizationId,
        id: &DeliveryId,
    ) -> Result<Option<(WebhookDelivery, Vec<DeliveryAttempt>)>> {
        let (org, id) = (org.clone(), id.clone());
        webhooks::get_delivery(&self.db, &org, &id).await
    }

    async fn redeliver_webhook_delivery(
        &self,
        org: &OrganizationId,
        id: &DeliveryId,
        at: Timestamp,
    ) -> Result<Option<WebhookDelivery>> {
        let (org, id) = (org.clone(), id.clone());
        self.db.retry(|| webhooks::redeliver(&self.db, &org, &id, at)).await
    }

    async fn record_audit(&self, event: &AuditEvent) -> Result<()> {
        let a = event.clone();
        self.db.retry(|| audit::record_audit_alone(&self.db, &a)).await
    }

    async fn list_audit(
        &self,
        org: &OrganizationId,
        action: Option<&str>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<AuditEvent>> {
        let (org, action) = (org.clone(), action.map(str::to_owned));
        audit::list_audit(&self.db, &org, action.as_deref(), cursor.as_deref(), limit).await
    }
}
