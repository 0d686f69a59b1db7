//! Live hints: small "something changed, refetch" notices for SSE clients. Never the source
//! of truth.
//!
//! A hub numbers every hint it publishes and keeps the most recent ones for a while, so a client
//! that reconnects with the id of the last hint it saw gets what it missed, or learns that the
//! gap is too old and it must refetch everything.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::ids::{ConversationId, LineId, MessageId, NoteId, OrganizationId, UserId};
use crate::time::{Clock, Timestamp};

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

/// Every hint kind the runtime publishes (see [`LiveHint::kind`]).
pub const LIVE_HINT_KINDS: &[&str] = &[
    "message.created",
    "message.status",
    "message.updated",
    "conversation.created",
    "conversation.updated",
    "note.created",
    "line.state",
    "line.updated",
    "line.pairing",
    "access.changed",
];

/// The owned shape of a hint on the wire between nodes.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireHint {
    #[serde(rename = "type")]
    kind: String,
    organization_id: String,
    line_id: Option<String>,
    conversation_id: Option<String>,
    message_id: Option<String>,
    state: Option<String>,
    version: Option<i64>,
    note_id: Option<String>,
    user_id: Option<String>,
}

impl LiveHint {
    /// The JSON form hubs pass between nodes (the same as SSE clients get).
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads [`LiveHint::to_json`]'s form back; `None` for anything else, including a kind or
    /// state this build does not know (from a newer node during a rolling upgrade).
    #[must_use]
    pub fn from_json(json: &str) -> Option<Self> {
        let w: WireHint = serde_json::from_str(json).ok()?;
        let kind = LIVE_HINT_KINDS.iter().copied().find(|k| *k == w.kind)?;
        let state = match w.state.as_deref() {
            None => None,
            Some(s) => Some(
                crate::model::MessageStatus::parse(s)
                    .map(crate::model::MessageStatus::as_str)
                    .or_else(|| crate::model::LifecycleState::parse(s).map(crate::model::LifecycleState::as_str))
                    .or_else(|| crate::model::PairingStatus::parse(s).map(crate::model::PairingStatus::as_str))?,
            ),
        };
        Some(Self {
            kind,
            organization_id: OrganizationId::from_raw(w.organization_id),
            line_id: w.line_id.map(LineId::from_raw),
            conversation_id: w.conversation_id.map(ConversationId::from_raw),
            message_id: w.message_id.map(MessageId::from_raw),
            state,
            version: w.version,
            note_id: w.note_id.map(NoteId::from_raw),
            user_id: w.user_id.map(UserId::from_raw),
        })
    }
}

/// A published hint with its place in the hub's sequence.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// The hub's id for it (`<hub epoch>.<sequence>`), what SSE sends as the event id and
    /// clients send back as `Last-Event-ID`.
    pub id: LiveEventId,
    /// The hint.
    pub hint: LiveHint,
}

/// The id of a published hint: the hub instance (its epoch) and a sequence number that grows
/// by one per hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LiveEventId {
    /// Which hub instance numbered it (a restarted hub has another epoch).
    pub epoch: u64,
    /// The sequence number within that hub.
    pub seq: u64,
}

impl LiveEventId {
    /// Parses the `epoch.seq` form sent to clients; `None` for anything else.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        let (epoch, seq) = raw.trim().split_once('.')?;
        let all_digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(epoch) || !all_digits(seq) {
            return None;
        }
        Some(Self { epoch: epoch.parse().ok()?, seq: seq.parse().ok()? })
    }
}

impl std::fmt::Display for LiveEventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.epoch, self.seq)
    }
}

/// What a hub can replay after an event id.
#[derive(Debug, Clone)]
pub enum Replay {
    /// Every hint published after the id, oldest first (possibly none).
    Events(Vec<Arc<LiveEvent>>),
    /// The id is older than the replay window, or from another hub instance: hints were lost,
    /// the client must refetch everything.
    Gap,
}

/// Publish/subscribe of hints.
pub trait LiveHub: Send + Sync + 'static {
    /// Publishes a hint to the organization's subscribers (best effort).
    fn publish(&self, hint: LiveHint);
    /// Subscribes to every hint published from now on; consumers filter by organization and
    /// visibility.
    fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>>;
    /// The hints published after `after`, when they are still in the replay window.
    fn replay_since(&self, after: LiveEventId) -> Replay;
    /// The id of the last published hint (what a new subscriber has seen "up to").
    fn last_event_id(&self) -> LiveEventId;
}

struct Recent {
    seq: u64,
    events: VecDeque<(Timestamp, Arc<LiveEvent>)>,
}

/// An in-process hub on a tokio broadcast channel (slow subscribers skip hints, then refetch),
/// keeping the last `capacity` hints of the last `window` for resuming.
pub struct BroadcastHub {
    tx: broadcast::Sender<Arc<LiveEvent>>,
    epoch: u64,
    recent: Mutex<Recent>,
    capacity: usize,
    window: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for BroadcastHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastHub").field("epoch", &self.epoch).field("capacity", &self.capacity).finish()
    }
}

impl BroadcastHub {
    /// A hub buffering up to 1024 hints per subscriber and keeping up to `capacity` hints of
    /// the last `window` (on `clock`) for resuming.
    #[must_use]
    pub fn new(capacity: usize, window: Duration, clock: Arc<dyn Clock>) -> Self {
        // The epoch tells this hub's ids from an earlier process's: its start time in ms plus
        // randomness, so two hubs started in the same millisecond still differ.
        let epoch = (clock.now().unix_ms().unsigned_abs() << 16) | u64::from(rand::random::<u16>());
        Self {
            tx: broadcast::channel(1024).0,
            epoch,
            recent: Mutex::new(Recent { seq: 0, events: VecDeque::new() }),
            capacity: capacity.max(1),
            window,
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn prune(&self, recent: &mut Recent, now: Timestamp) {
        let oldest = now.minus(self.window);
        while recent.events.len() > self.capacity || recent.events.front().is_some_and(|(at, _)| *at < oldest) {
            recent.events.pop_front();
        }
    }
}

impl LiveHub for BroadcastHub {
    fn publish(&self, hint: LiveHint) {
        let now = self.clock.now();
        let mut recent = self.lock();
        recent.seq += 1;
        let event = Arc::new(LiveEvent { id: LiveEventId { epoch: self.epoch, seq: recent.seq }, hint });
        recent.events.push_back((now, event.clone()));
        self.prune(&mut recent, now);
        // Sent under the lock so subscribers see events in sequence order.
        let _ = self.tx.send(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }

    fn replay_since(&self, after: LiveEventId) -> Replay {
        let mut recent = self.lock();
        self.prune(&mut recent, self.clock.now());
        if after.epoch != self.epoch || after.seq > recent.seq {
            return Replay::Gap;
        }
        let first_kept = recent.events.front().map_or(recent.seq + 1, |(_, e)| e.id.seq);
        // The client saw `after.seq`; everything from `after.seq + 1` must still be here.
        if after.seq + 1 < first_kept {
            return Replay::Gap;
        }
        Replay::Events(recent.events.iter().filter(|(_, e)| e.id.seq > after.seq).map(|(_, e)| e.clone()).collect())
    }

    fn last_event_id(&self) -> LiveEventId {
        LiveEventId { epoch: self.epoch, seq: self.lock().seq }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::ManualClock;

    fn hub(capacity: usize, clock: &ManualClock) -> BroadcastHub {
        BroadcastHub::new(capacity, Duration::from_secs(300), Arc::new(clock.clone()))
    }

    fn hint(n: u32) -> LiveHint {
        LiveHint {
            version: Some(i64::from(n)),
            ..LiveHint::new("conversation.updated", OrganizationId::from_raw("org_t"))
        }
    }

    fn versions(replay: Replay) -> Vec<i64> {
        match replay {
            Replay::Events(events) => events.iter().map(|e| e.hint.version.unwrap()).collect(),
            Replay::Gap => panic!("unexpected gap"),
        }
    }

    #[test]
    fn replays_what_came_after_an_id() {
        let clock = ManualClock::new(Timestamp::from_unix_ms(1_000_000));
        let hub = hub(100, &clock);
        let start = hub.last_event_id();
        for n in 1..=5 {
            hub.publish(hint(n));
        }
        assert_eq!(versions(hub.replay_since(start)), [1, 2, 3, 4, 5]);
        let third = LiveEventId { seq: start.seq + 3, ..start };
        assert_eq!(versions(hub.replay_since(third)), [4, 5]);
        assert_eq!(versions(hub.replay_since(hub.last_event_id())), Vec::<i64>::new());
        assert_eq!(LiveEventId::parse(&third.to_string()), Some(third));
    }

    #[test]
    fn too_old_foreign_or_future_ids_are_gaps() {
        let clock = ManualClock::new(Timestamp::from_unix_ms(1_000_000));
        let hub = hub(3, &clock);
        let start = hub.last_event_id();
        for n in 1..=5 {
            hub.publish(hint(n));
        }
        assert!(matches!(hub.replay_since(start), Replay::Gap), "beyond the capacity");
        let second = LiveEventId { seq: start.seq + 2, ..start };
        assert_eq!(versions(hub.replay_since(second)), [3, 4, 5], "the last three are kept");
        assert!(matches!(hub.replay_since(LiveEventId { epoch: start.epoch + 1, seq: 2 }), Replay::Gap));
        assert!(matches!(hub.replay_since(LiveEventId { seq: 99, ..start }), Replay::Gap));

        clock.advance(Duration::from_secs(301));
        assert!(matches!(hub.replay_since(second), Replay::Gap), "beyond the window");
        assert_eq!(versions(hub.replay_since(hub.last_event_id())), Vec::<i64>::new(), "nothing missed");
    }

    #[test]
    fn hints_cross_nodes_as_json() {
        let hint = LiveHint {
            line_id: Some(LineId::from_raw("ln_1")),
            message_id: Some(MessageId::from_raw("msg_1")),
            state: Some("delivered"),
            version: Some(3),
            ..LiveHint::new("message.status", OrganizationId::from_raw("org_t"))
        };
        let back = LiveHint::from_json(&hint.to_json()).expect("a known hint reads back");
        assert_eq!(back.to_json(), hint.to_json());
        assert_eq!((back.kind, back.state), ("message.status", Some("delivered")));
        let line = LiveHint { state: Some("connected"), ..LiveHint::new("line.state", OrganizationId::from_raw("o")) };
        assert_eq!(LiveHint::from_json(&line.to_json()).and_then(|h| h.state), Some("connected"));
        assert!(LiveHint::from_json(r#"{"type":"message.exploded","organizationId":"o"}"#).is_none());
        assert!(LiveHint::from_json(r#"{"type":"line.state","organizationId":"o","state":"melted"}"#).is_none());
        assert!(LiveHint::from_json("not json").is_none());
    }

    #[test]
    fn ids_parse_strictly() {
        assert_eq!(LiveEventId::parse("12.34"), Some(LiveEventId { epoch: 12, seq: 34 }));
        for bad in ["", "12", ".3", "1.", "a.1", "1.-2", "1.2.3", "99999999999999999999999.1"] {
            assert_eq!(LiveEventId::parse(bad), None, "{bad}");
        }
    }
}
