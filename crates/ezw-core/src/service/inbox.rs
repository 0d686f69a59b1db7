//! The team inbox: conversations visible to the caller, filters, claims and assignments under
//! `expectedVersion`, contact names, internal notes.

use crate::error::{Error, Result};
use crate::ids::{ConversationId, LineId, UserId};
use crate::model::{Conversation, InboxConversation, Line};
use crate::ports::{ConversationQuery, Page};
use crate::principal::{LineAccess, Principal};

use super::lines::{authorize_line, visible_line_ids};
use super::runtime::Inner;

mod notes;
mod ownership;

pub use notes::{MAX_CONTACT_NAME_CHARS, MAX_NOTE_CHARS};

/// The longest inbox search text (`q`), in characters.
pub const MAX_SEARCH_CHARS: usize = 100;
/// The longest Kanban status filter, in characters.
pub const MAX_STATUS_KEY_CHARS: usize = 100;
/// The page size when the caller gives none.
pub const DEFAULT_INBOX_PAGE: u32 = 25;

/// Whose conversations to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssigneeFilter {
    /// The caller's own.
    Me,
    /// This user's.
    User(UserId),
}

impl AssigneeFilter {
    /// Parses `me` or a user id (`usr_...`).
    ///
    /// # Errors
    /// `invalid_assignee_id` (400).
    pub fn parse(raw: &str) -> Result<Self> {
        if raw == "me" {
            return Ok(Self::Me);
        }
        UserId::parse(raw)
            .map(Self::User)
            .ok_or_else(|| Error::invalid("invalid_assignee_id", "assigneeId must be a user id (usr_...) or me"))
    }
}

/// Inbox list filters; every filter that is set applies (AND).
#[derive(Debug, Clone, Default)]
pub struct InboxFilter {
    /// Only this line.
    pub line_id: Option<LineId>,
    /// Only conversations assigned to this user.
    pub assignee: Option<AssigneeFilter>,
    /// Only unassigned conversations (not together with `assignee`).
    pub unassigned: bool,
    /// Only conversations with this Kanban `statusKey`.
    pub status: Option<String>,
    /// Search: 1 to 100 characters matched (case-insensitive, literally) in the contact's display
    /// name or WhatsApp profile name, or its digits in the contact's phone number.
    pub q: Option<String>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 25).
    pub limit: Option<u32>,
}

/// Inbox service.
#[derive(Clone, Copy)]
pub struct InboxService<'a> {
    pub(crate) inner: &'a Inner,
}

fn bounded(value: Option<&String>, max: usize, code: &'static str, what: &str) -> Result<Option<String>> {
    match value.map(|v| v.trim()) {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.chars().count() <= max && !v.chars().any(char::is_control) => {
            Ok(Some(v.to_owned()))
        }
        Some(_) => Err(Error::invalid(code, format!("{what} must be 1 to {max} characters"))),
    }
}

impl InboxService<'_> {
    /// Conversations on the lines the caller may see, most recently active first, with their
    /// contacts' names.
    ///
    /// # Errors
    /// 400: `invalid_limit`, `conflicting_filters` (`assignee` with `unassigned`),
    /// `invalid_assignee_id` (`me` for a line token), `invalid_status`, `invalid_search`,
    /// `invalid_cursor`; `not_found` (404) for a `line_id` the caller cannot see.
    pub async fn list(&self, principal: &Principal, filter: InboxFilter) -> Result<Page<InboxConversation>> {
        let limit = filter.limit.unwrap_or(DEFAULT_INBOX_PAGE);
        if !(1..=200).contains(&limit) {
            return Err(Error::invalid("invalid_limit", "limit must be between 1 and 200"));
        }
        if filter.assignee.is_some() && filter.unassigned {
            return Err(Error::invalid("conflicting_filters", "assigneeId and unassigned=true cannot be combined"));
        }
        let assignee_id = match filter.assignee {
            None => None,
            Some(AssigneeFilter::User(id)) => Some(id),
            Some(AssigneeFilter::Me) => Some(
                principal
                    .user_id()
                    .cloned()
                    .ok_or_else(|| Error::invalid("invalid_assignee_id", "assigneeId=me needs a workspace user"))?,
            ),
        };
        let status_key = bounded(filter.status.as_ref(), MAX_STATUS_KEY_CHARS, "invalid_status", "status")?;
        let search = bounded(filter.q.as_ref(), MAX_SEARCH_CHARS, "invalid_search", "q")?;
        if filter.cursor.as_ref().is_some_and(|c| c.is_empty() || c.len() > 64) {
            return Err(Error::invalid("invalid_cursor", "cursor is not one this API returned"));
        }
        if let Some(line) = &filter.line_id {
            authorize_line(self.inner, principal, line, LineAccess::View).await?;
        }
        let query = ConversationQuery {
            line_id: filter.line_id,
            visible_lines: visible_line_ids(self.inner, principal).await?,
            assignee_id,
            unassigned: filter.unassigned,
            status_key,
            search,
            cursor: filter.cursor,
            limit,
        };
        self.inner.store.list_inbox(principal.organization_id(), &query).await
    }

    /// One conversation the caller may see.
    ///
    /// # Errors
    /// `not_found` (404).
    pub async fn get(&self, principal: &Principal, id: &ConversationId) -> Result<Conversation> {
        self.fetch(principal, id).await.map(|(c, _)| c)
    }

    /// A conversation the caller may see, with its line.
    async fn fetch(&self, principal: &Principal, id: &ConversationId) -> Result<(Conversation, Line)> {
        let conv = self
            .inner
            .store
            .get_conversation(principal.organization_id(), id)
            .await?
            .ok_or_else(|| Error::not_found("conversation"))?;
        let line = authorize_line(self.inner, principal, &conv.line_id, LineAccess::View)
            .await
            .map_err(|_| Error::not_found("conversation"))?;
        Ok((conv, line))
    }
}
