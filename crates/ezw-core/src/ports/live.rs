//! Live hints: small "something changed, refetch" notices for SSE clients. Never the source
//! of truth.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::ids::{ConversationId, LineId, MessageId, NoteId, OrganizationId, UserId};

/// A refresh hint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveHint {
    /// What changed: `message.created`, `message.status`, `message.updated`,
    /// `conversation.created`, `conversation.updated`, `note.created`, `line.state`,
    /// `line.updated`, `access.changed` (a user's role or line permissions changed).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Organization (hints are only delivered within it).
    pub organization_id: OrganizationId,
    /// Line, when relevant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_id: Option<LineId>,
    /// Conversation, when relevant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ConversationId>,
    /// Message, when relevant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    /// New status or state name, when relevant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// Conversation version, when relevant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Note, when relevant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note_id: Option<NoteId>,
    /// The user concerned (`access.changed`; the new assignee of a conversation), when relevant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
}

impl LiveHint {
    /// A hint of `kind` in `organization` with no ids; set the relevant ones with struct update
    /// syntax: `LiveHint { conversation_id: Some(id), ..LiveHint::new("conversation.updated", org) }`.
    #[must_use]
    pub fn new(kind: &'static str, organization_id: OrganizationId) -> Self {
        Self {
            kind,
            organization_id,
            line_id: None,
            conversation_id: None,
            message_id: None,
            state: None,
            version: None,
            note_id: None,
            user_id: None,
        }
    }
}

/// Publish/subscribe of hints.
pub trait LiveHub: Send + Sync + 'static {
    /// Publishes a hint to the organization's subscribers (best effort).
    fn publish(&self, hint: LiveHint);
    /// Subscribes to every hint; consumers filter by organization and visibility.
    fn subscribe(&self) -> broadcast::Receiver<LiveHint>;
}

/// An in-process hub on a tokio broadcast channel (slow subscribers skip hints, then refetch).
#[derive(Debug, Clone)]
pub struct BroadcastHub {
    tx: broadcast::Sender<LiveHint>,
}

impl BroadcastHub {
    /// A hub buffering up to `capacity` hints per subscriber.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self { tx: broadcast::channel(capacity.max(1)).0 }
    }
}

impl Default for BroadcastHub {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl LiveHub for BroadcastHub {
    fn publish(&self, hint: LiveHint) {
        let _ = self.tx.send(hint);
    }

    fn subscribe(&self) -> broadcast::Receiver<LiveHint> {
        self.tx.subscribe()
    }
}
