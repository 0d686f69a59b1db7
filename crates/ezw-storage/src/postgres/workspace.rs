//! `impl WorkspaceStore for PgStore`: each write is one transaction with its audit entry and
//! webhook events.

use async_trait::async_trait;
use ezw_core::ids::{ContactId, ConversationId, LineId, OrganizationId, UserId};
use ezw_core::model::{AuditEvent, Contact, InboxConversation, Line, LinePermission, LineTokenRecord, Note};
use ezw_core::ports::{
    ArchivedLine, AssignConversation, AssignOutcome, ConversationQuery, CreateLine, CreateLineOutcome,
    LineAccessContext, Page, WorkspaceStore,
};
use ezw_core::{Result, Timestamp};

use super::{inbox, lines, PgStore};

#[async_trait]
impl WorkspaceStore for PgStore {
    async fn get_line_access(
        &self,
        org: &OrganizationId,
        line: &LineId,
        user: &UserId,
    ) -> Result<Option<LineAccessContext>> {
        let (org, line, user) = (org.clone(), line.clone(), user.clone());
        lines::get_line_access(&self.db, &org, &line, &user).await
    }

    async fn visible_line_ids(&self, org: &OrganizationId, user: &UserId) -> Result<Option<Vec<LineId>>> {
        let (org, user) = (org.clone(), user.clone());
        lines::visible_line_ids(&self.db, &org, &user).await
    }

    async fn get_line_permission(
        &self,
        org: &OrganizationId,
        line: &LineId,
        user: &UserId,
    ) -> Result<Option<LinePermission>> {
        let (org, line, user) = (org.clone(), line.clone(), user.clone());
        lines::get_line_permission(&self.db, &org, &line, &user).await
    }

    async fn list_line_permissions(&self, org: &OrganizationId, line: &LineId) -> Result<Vec<LinePermission>> {
        let (org, line) = (org.clone(), line.clone());
        lines::list_line_permissions(&self.db, &org, &line).await
    }

    async fn set_line_permission(&self, permission: &LinePermission, audit: &AuditEvent) -> Result<()> {
        let (p, a) = (permission.clone(), audit.clone());
        self.db.retry(|| lines::set_line_permission(&self.db, &p, &a)).await
    }

    async fn clear_line_permission(
        &self,
        org: &OrganizationId,
        line: &LineId,
        user: &UserId,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let (org, line, user, a) = (org.clone(), line.clone(), user.clone(), audit.clone());
        self.db.retry(|| lines::clear_line_permission(&self.db, &org, &line, &user, &a)).await
    }

    async fn create_line(&self, new: &CreateLine) -> Result<CreateLineOutcome> {
        let new = new.clone();
        self.db.retry(|| lines::create_line(&self.db, &new)).await
    }

    async fn rotate_line_token(&self, token: &LineTokenRecord, audit: &AuditEvent) -> Result<bool> {
        let (t, a) = (token.clone(), audit.clone());
        self.db.retry(|| lines::rotate_line_token(&self.db, &t, &a)).await
    }

    async fn set_default_assignee(
        &self,
        org: &OrganizationId,
        line: &LineId,
        assignee: Option<&UserId>,
        at: Timestamp,
        audit: &AuditEvent,
    ) -> Result<Option<Line>> {
        let (org, line, assignee, a) = (org.clone(), line.clone(), assignee.cloned(), audit.clone());
        self.db.retry(|| lines::set_default_assignee(&self.db, &org, &line, assignee.as_ref(), at, &a)).await
    }

    async fn archive_line(
        &self,
        org: &OrganizationId,
        line: &LineId,
        at: Timestamp,
        audit: &AuditEvent,
    ) -> Result<Option<ArchivedLine>> {
        let (org, line, a) = (org.clone(), line.clone(), audit.clone());
        self.db.retry(|| lines::archive_line(&self.db, &org, &line, at, &a)).await
    }

    async fn list_inbox(&self, org: &OrganizationId, query: &ConversationQuery) -> Result<Page<InboxConversation>> {
        let (org, q) = (org.clone(), query.clone());
        inbox::list_inbox(&self.db, &org, &q).await
    }

    async fn assign_conversation(&self, change: &AssignConversation) -> Result<AssignOutcome> {
        let change = change.clone();
        self.db.retry(|| inbox::assign_conversation(&self.db, &change)).await
    }

    async fn get_contact(&self, org: &OrganizationId, id: &ContactId) -> Result<Option<Contact>> {
        let (org, id) = (org.clone(), id.clone());
        inbox::get_contact(&self.db, &org, &id).await
    }

    async fn set_contact_display_name(
        &self,
        org: &OrganizationId,
        id: &ContactId,
        display_name: Option<&str>,
        at: Timestamp,
    ) -> Result<Option<Contact>> {
        let (org, id, name) = (org.clone(), id.clone(), display_name.map(str::to_owned));
        self.db.retry(|| inbox::set_contact_display_name(&self.db, &org, &id, name.as_deref(), at)).await
    }

    async fn insert_note(&self, note: &Note) -> Result<()> {
        let note = note.clone();
        self.db.retry(|| inbox::insert_note(&self.db, &note)).await
    }

    async fn list_notes(
        &self,
        org: &OrganizationId,
        conversation: &ConversationId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Note>> {
        let (org, conv, cursor) = (org.clone(), conversation.clone(), cursor.map(str::to_owned));
        inbox::list_notes(&self.db, &org, &conv, cursor.as_deref(), limit).await
    }
}
