//! What QR-paired web session lines need from storage: the recorded lifecycle transitions, the
//! current pairing request, and an opaque, organization- and line-scoped record store in which a
//! session backend keeps its protocol state (keys, sessions, device data) so that a session
//! survives restarts and can move between nodes.

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{LineId, OrganizationId};
use crate::model::{Line, LineTransition, Pairing, PairingStatus, RecordedTransition};

/// The result of [`SessionStore::transition_line`].
#[derive(Debug, Clone)]
pub enum TransitionOutcome {
    /// The line was in `from`: it is now in `to`, the transition is recorded and a `channel.patch`
    /// webhook event is queued in the same transaction.
    Applied(Box<Line>),
    /// The line was not in `from` (another writer moved it, or it is archived); nothing changed.
    Stale(Box<Line>),
    /// No such line in the organization.
    NotFound,
}

/// The result of [`SessionStore::request_pairing`].
#[derive(Debug, Clone)]
pub enum PairingRequestOutcome {
    /// Stored as the line's current pairing; the previous one (if open) is cancelled.
    Created(Box<Pairing>),
    /// The line's current pairing carries the same idempotency key and fingerprint: it is returned
    /// unchanged.
    Replayed(Box<Pairing>),
    /// The line's current pairing carries the same idempotency key for a different request.
    KeyReused(Box<Pairing>),
}

/// One opaque record of a session backend's state. Records are addressed by `(kind, scope, key)`
/// within a line; `value` is stored as given (backends seal it before it gets here); `stamp` is
/// a number the backend may query by (an expiry or a creation time, in Unix seconds; `0` for
/// none).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionStateRecord {
    /// The kind of record (`identity`, `session`, `prekey`, `device`...).
    pub kind: String,
    /// A grouping within the kind (`""` for none), e.g. an app-state collection name.
    pub scope: String,
    /// The record's key within its kind and scope.
    pub key: String,
    /// The (sealed) value.
    pub value: Vec<u8>,
    /// A number to select by ([`SessionStore::delete_session_state_before`]).
    pub stamp: i64,
}

impl std::fmt::Debug for SessionStateRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStateRecord")
            .field("kind", &self.kind)
            .field("scope", &self.scope)
            .field("key", &self.key)
            .field("value", &format_args!("[{} bytes]", self.value.len()))
            .field("stamp", &self.stamp)
            .finish()
    }
}

/// Which records of a line a session-state call selects.
#[derive(Debug, Clone, Copy)]
pub struct StateSelector<'a> {
    /// The kind.
    pub kind: &'a str,
    /// A scope, or every scope of the kind.
    pub scope: Option<&'a str>,
    /// These keys, or every key.
    pub keys: Option<&'a [String]>,
}

/// Storage for QR session lines. Every call is scoped by organization and line; another
/// organization's line reads as absent and changes nothing.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Moves a line from `t.from` to `t.to` if it is in `t.from` (never out of `archived`),
    /// records the transition in the line's history and queues the `channel.patch` webhook event,
    /// all in one transaction.
    async fn transition_line(
        &self,
        org: &OrganizationId,
        line: &LineId,
        t: &LineTransition,
    ) -> Result<TransitionOutcome>;
    /// The line's recorded transitions, newest first, at most `limit`, older than `before_seq`
    /// when given.
    async fn list_line_transitions(
        &self,
        org: &OrganizationId,
        line: &LineId,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RecordedTransition>>;

    /// Stores `pairing` (status `requested`) as the line's current pairing, cancelling an open
    /// previous one, unless the current one carries the same idempotency key (then `Replayed`
    /// when `fingerprint` matches what it was stored with, else `KeyReused`).
    async fn request_pairing(&self, pairing: &Pairing, fingerprint: &str) -> Result<PairingRequestOutcome>;
    /// The line's current pairing, whatever its status.
    async fn get_pairing(&self, org: &OrganizationId, line: &LineId) -> Result<Option<Pairing>>;
    /// Replaces the stored fields of the pairing `pairing.id` if it is still the line's current
    /// one and its status is `expected`; returns whether it did.
    async fn update_pairing(&self, pairing: &Pairing, expected: PairingStatus) -> Result<bool>;
    /// Pairings in status `requested` on lines whose session lease `holder` holds (what the
    /// session supervisor of that node must start).
    async fn list_requested_pairings(&self, holder: &str) -> Result<Vec<Pairing>>;

    /// The selected records of a line's session state (keys in any order).
    async fn get_session_state(
        &self,
        org: &OrganizationId,
        line: &LineId,
        select: StateSelector<'_>,
    ) -> Result<Vec<SessionStateRecord>>;
    /// Inserts or replaces records, all in one transaction.
    async fn put_session_state(
        &self,
        org: &OrganizationId,
        line: &LineId,
        records: &[SessionStateRecord],
    ) -> Result<()>;
    /// Deletes the selected records; returns how many.
    async fn delete_session_state(&self, org: &OrganizationId, line: &LineId, select: StateSelector<'_>)
        -> Result<u64>;
    /// Deletes the records of `kind` whose stamp is above 0 and below `cutoff`; returns how many.
    async fn delete_session_state_before(
        &self,
        org: &OrganizationId,
        line: &LineId,
        kind: &str,
        cutoff: i64,
    ) -> Result<u64>;
    /// Reads and deletes one record atomically.
    async fn take_session_state(
        &self,
        org: &OrganizationId,
        line: &LineId,
        kind: &str,
        scope: &str,
        key: &str,
    ) -> Result<Option<SessionStateRecord>>;
    /// Deletes every record of the line (logout, re-pairing, archive); returns how many.
    async fn clear_session_state(&self, org: &OrganizationId, line: &LineId) -> Result<u64>;
}
