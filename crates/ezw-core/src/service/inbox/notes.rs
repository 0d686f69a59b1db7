//! Contact names and internal notes.

use crate::error::{Error, Result};
use crate::ids::{ConversationId, NoteId};
use crate::model::{Contact, Note};
use crate::ports::{LiveHint, Page};
use crate::principal::Principal;

use super::InboxService;

/// The longest internal note, in characters.
pub const MAX_NOTE_CHARS: usize = 4000;
/// The longest contact display name, in characters.
pub const MAX_CONTACT_NAME_CHARS: usize = 120;

fn note_author(principal: &Principal) -> Result<&crate::ids::UserId> {
    principal.user_id().ok_or_else(|| Error::forbidden("internal notes are for workspace users"))
}

impl InboxService<'_> {
    /// Sets the internal display name of the conversation's contact (trimmed; empty or `None`
    /// clears it). The contact is shared by the organization's conversations with that number.
    ///
    /// # Errors
    /// `invalid_display_name` (400) over 120 characters or with control characters;
    /// `not_found` (404).
    pub async fn set_contact_name(
        &self,
        principal: &Principal,
        conversation: &ConversationId,
        display_name: Option<&str>,
    ) -> Result<Contact> {
        let name = display_name.map(str::trim).filter(|n| !n.is_empty());
        if name.is_some_and(|n| n.chars().count() > MAX_CONTACT_NAME_CHARS || n.chars().any(char::is_control)) {
            return Err(Error::invalid(
                "invalid_display_name",
                format!("displayName must be at most {MAX_CONTACT_NAME_CHARS} characters, without control characters"),
            ));
        }
        let (conv, _) = self.fetch(principal, conversation).await?;
        let now = self.inner.clock.now();
        let contact = self
            .inner
            .store
            .set_contact_display_name(&conv.organization_id, &conv.contact_id, name, now)
            .await?
            .ok_or_else(|| Error::not_found("conversation"))?;
        self.inner.live.publish(LiveHint {
            line_id: Some(conv.line_id.clone()),
            conversation_id: Some(conv.id.clone()),
            version: Some(conv.version),
            ..LiveHint::new("conversation.updated", conv.organization_id.clone())
        });
        Ok(contact)
    }

    /// Adds an internal note (1 to 4000 characters, trimmed): stored only, never queued or sent,
    /// never in webhooks.
    ///
    /// # Errors
    /// `forbidden` (403) for line tokens; `invalid_note_body` (400); `not_found` (404).
    pub async fn add_note(&self, principal: &Principal, conversation: &ConversationId, body: &str) -> Result<Note> {
        let author = note_author(principal)?.clone();
        let body = body.trim();
        if body.is_empty() || body.chars().count() > MAX_NOTE_CHARS {
            return Err(Error::invalid("invalid_note_body", format!("body must be 1 to {MAX_NOTE_CHARS} characters")));
        }
        let (conv, _) = self.fetch(principal, conversation).await?;
        let now = self.inner.clock.now();
        let note = Note {
            id: NoteId::generate(now.unix_ms()),
            organization_id: conv.organization_id.clone(),
            conversation_id: conv.id.clone(),
            line_id: conv.line_id.clone(),
            author_id: author,
            body: body.to_owned(),
            created_at: now,
        };
        self.inner.store.insert_note(&note).await?;
        self.inner.live.publish(LiveHint {
            note_id: Some(note.id.clone()),
            conversation_id: Some(note.conversation_id.clone()),
            line_id: Some(note.line_id.clone()),
            ..LiveHint::new("note.created", note.organization_id.clone())
        });
        Ok(note)
    }

    /// A conversation's internal notes, newest first, `limit` 1 to 200.
    ///
    /// # Errors
    /// `forbidden` (403) for line tokens; `invalid_limit`, `invalid_cursor` (400); `not_found`
    /// (404).
    pub async fn notes(
        &self,
        principal: &Principal,
        conversation: &ConversationId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Note>> {
        note_author(principal)?;
        if !(1..=200).contains(&limit) {
            return Err(Error::invalid("invalid_limit", "limit must be between 1 and 200"));
        }
        if cursor.is_some_and(|c| c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_digit())) {
            return Err(Error::invalid("invalid_cursor", "cursor is not one this API returned"));
        }
        let (conv, _) = self.fetch(principal, conversation).await?;
        self.inner.store.list_notes(&conv.organization_id, &conv.id, cursor, limit).await
    }
}
