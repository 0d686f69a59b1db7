//! Inbox reads: conversations visible to the caller.

use crate::error::{Error, Result};
use crate::ids::{ConversationId, LineId};
use crate::model::Conversation;
use crate::ports::{ConversationQuery, Page};
use crate::principal::{LineAccess, Principal};

use super::lines::{authorize_line, visible_line_ids};
use super::runtime::Inner;

/// Inbox service.
#[derive(Clone, Copy)]
pub struct InboxService<'a> {
    pub(crate) inner: &'a Inner,
}

impl InboxService<'_> {
    /// Conversations on the lines the caller may see, most recently active first.
    ///
    /// # Errors
    /// `invalid_limit` (400); `not_found` (404) for a `line` filter the caller cannot see.
    pub async fn list(
        &self,
        principal: &Principal,
        line: Option<&LineId>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Conversation>> {
        if !(1..=200).contains(&limit) {
            return Err(Error::invalid("invalid_limit", "limit must be between 1 and 200"));
        }
        if let Some(line) = line {
            authorize_line(self.inner, principal, line, LineAccess::View).await?;
        }
        let visible_lines = visible_line_ids(self.inner, principal).await?;
        let query = ConversationQuery { line_id: line.cloned(), visible_lines, cursor, limit };
        self.inner.store.list_conversations(principal.organization_id(), &query).await
    }

    /// One conversation the caller may see.
    ///
    /// # Errors
    /// `not_found` (404).
    pub async fn get(&self, principal: &Principal, id: &ConversationId) -> Result<Conversation> {
        let conv = self
            .inner
            .store
            .get_conversation(principal.organization_id(), id)
            .await?
            .ok_or_else(|| Error::not_found("conversation"))?;
        authorize_line(self.inner, principal, &conv.line_id, LineAccess::View)
            .await
            .map_err(|_| Error::not_found("conversation"))?;
        Ok(conv)
    }
}
