//! What several nodes sharing one store need: wake-ups from the other nodes, and leases that
//! give one node at a time a session-style line's connection.

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::error::Result;
use crate::ids::LineId;
use crate::model::{Line, ProviderKind};
use crate::time::Timestamp;

/// Work that may be waiting for this node's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wake {
    /// Outbox jobs were queued or freed.
    Outbox,
    /// Webhook deliveries were queued or released.
    Webhooks,
    /// A QR line's pairing was requested: the node holding its session should start it.
    Sessions,
}

/// Wake-ups from outside this process: another node (or this one, through the database) queued
/// work. Workers still poll as a backstop, so a lost wake-up delays work by at most the poll
/// interval; it never loses it.
pub trait WakeSource: Send + Sync + 'static {
    /// Subscribes to wake-ups from now on.
    fn subscribe(&self) -> broadcast::Receiver<Wake>;
}

/// A session lease: which node holds a line's session, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLease {
    /// The line.
    pub line_id: LineId,
    /// The node holding it.
    pub holder: String,
    /// When it runs out unless renewed.
    pub lease_until: Timestamp,
    /// When this holder acquired it.
    pub acquired_at: Timestamp,
}

/// Session leases: at most one node runs a session-style (QR) line's connection at a time; a
/// dead node's lines are taken over once their leases run out.
#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Acquires or renews `holder`'s lease on `line` until `until`. Succeeds when the line has
    /// no lease, when `holder` already holds it, or when the current lease ran out at or before
    /// `now`; returns the lease as it now is (`holder` may be another node's).
    async fn acquire_session_lease(
        &self,
        line: &LineId,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<SessionLease>;
    /// Gives up `holder`'s lease on `line` (nothing when another node holds it). Returns
    /// whether a lease was released.
    async fn release_session_lease(&self, line: &LineId, holder: &str) -> Result<bool>;
    /// The current lease of `line`, expired or not.
    async fn get_session_lease(&self, line: &LineId) -> Result<Option<SessionLease>>;
    /// Every organization's lines served by one of `kinds` that are not archived, oldest first
    /// (what the session supervisor keeps connected).
    async fn list_session_lines(&self, kinds: &[ProviderKind]) -> Result<Vec<Line>>;
}
