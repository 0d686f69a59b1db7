//! `impl WorkspaceStore for SqliteStore`: reads go to the reader pool, writes to the
//! group-commit writer (each write one transaction with its audit entry and webhook events).

use async_trait::async_trait;
use ezw_core::ids::{ContactId, ConversationId, LineId, OrganizationId, UserId};
use ezw_core::model::{AuditEvent, Contact, InboxConversation, Line, LinePermission, LineTokenRecord, Note};
use ezw_core::ports::{
    ArchivedLine, AssignConversation, AssignOutcome, ConversationQuery, CreateLine, CreateLineOutcome,
    LineAccessContext, Page, WorkspaceStore,
};
use ezw_core::{Result, Timestamp};

use super::{inbox, lines, SqliteStore};

#[async_trait]
impl WorkspaceStore for SqliteStore {
    async fn get_line_access(
        &self,
        org: &OrganizationId,
        line: &LineId,
        user: &UserId,
    ) -> Result<Option<LineAccessContext>> {
        let (org, line, user) = (org.clone(), line.clone(), user.clone());
        self.readers.lookup(move |c| lines::get_line_access(c, &org, &line, &user)).await
    }

    async fn visible_line_ids(&self, org: &OrganizationId, user: &UserId) -> Result<Option<Vec<LineId>>> {
        let (org, user) = (org.clone(), user.clone());
        self.readers.lookup(move |c| lines::visible_line_ids(c, &org, &user)).await
    }

    async fn get_line_permission(
        &self,
        org: &OrganizationId,
        line: &LineId,
        user: &UserId,
    ) -> Result<Option<LinePermission>> {
        let (org, line, user) = (org.clone(), line.clone(), user.clone());
        self.readers.lookup(move |c| lines::get_line_permission(c, &org, &line, &user)).await
    }

    async fn list_line_permissions(&self, org: &OrganizationId, line: &LineId) -> Result<Vec<LinePermission>> {
        let (org, line) = (org.clone(), line.clone());
        self.readers.read(move |c| lines::list_line_permissions(c, &org, &line)).await
    }

    async fn set_line_permission(&self, permission: &LinePermission, audit: &AuditEvent) -> Result<()> {
        let (p, a) = (permission.clone(), audit.clone());
        self.writer.write(move |c| lines::set_line_permission(c, &p, &a)).await
    }

    async fn clear_line_permission(
        &self,
        org: &OrganizationId,
        line: &LineId,
        user: &UserId,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let (org, line, user, a) = (org.clone(), line.clone(), user.clone(), audit.clone());
        self.writer.write(move |c| lines::clear_line_permission(c, &org, &line, &user, &a)).await
    }

    async fn create_line(&self, new: &CreateLine) -> Result<CreateLineOutcome> {
        let new = new.clone();
        self.writer.write(move |c| lines::create_line(c, &new)).await
    }

    async fn rotate_line_token(&self, token: &LineTokenRecord, audit: &AuditEvent) -> Result<bool> {
        let (t, a) = (token.clone(), audit.clone());
        self.writer.write(move |c| lines::rotate_line_token(c, &t, &a)).await
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
        self.writer.write(move |c| lines::set_default_assignee(c, &org, &line, assignee.as_ref(), at, &a)).await
    }

    async fn archive_line(
        &self,
        org: &OrganizationId,
        line: &LineId,
        at: Timestamp,
        audit: &AuditEvent,
    ) -> Result<Option<ArchivedLine>> {
        let (org, line, a) = (org.clone(), line.clone(), audit.clone());
        self.writer.write(move |c| lines::archive_line(c, &org, &line, at, &a)).await
    }

    async fn list_inbox(&self, org: &OrganizationId, query: &ConversationQuery) -> Result<Page<InboxConversation>> {
        let (org, q) = (org.clone(), query.clone());
        self.readers.read(move |c| inbox::list_inbox(c, &org, &q)).await
    }

    async fn assign_conversation(&self, change: &AssignConversation) -> Result<AssignOutcome> {
        let change = change.clone();
        self.writer.write(move |c| inbox::assign_conversation(c, &change)).await
    }

    async fn get_contact(&self, org: &OrganizationId, id: &ContactId) -> Result<Option<Contact>> {
        let (org, id) = (org.clone(), id.clone());
        self.readers.lookup(move |c| inbox::get_contact(c, &org, &id)).await
    }

    async fn set_contact_display_name(
        &self,
        org: &OrganizationId,
        id: &ContactId,
        display_name: Option<&str>,
        at: Timestamp,
    ) -> Result<Option<Contact>> {
        let (org, id, name) = (org.clone(), id.clone(), display_name.map(str::to_owned));
        self.writer.write(move |c| inbox::set_contact_display_name(c, &org, &id, name.as_deref(), at)).await
    }

    async fn insert_note(&self, note: &Note) -> Result<()> {
        let note = note.clone();
        self.writer.write(move |c| inbox::insert_note(c, &note)).await
    }

    async fn list_notes(
        &self,
        org: &OrganizationId,
        conversation: &ConversationId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Note>> {
        let (org, conv, cursor) = (org.clone(), conversation.clone(), cursor.map(str::to_owned));
        self.readers.read(move |c| inbox::list_notes(c, &org, &conv, cursor.as_deref(), limit)).await
    }
}
