//! A live hub shared by every node on one database.
//!
//! `publish` hands the hint to a background task that sends it with `pg_notify`, numbered by
//! one database sequence under a transaction-scoped advisory lock, so every node receives the
//! hints of all nodes in the same, increasing order. Each node keeps the hints it received for a
//! while, so a client may resume with `Last-Event-ID` on any node. Local subscribers get a hint
//! when it comes back through `LISTEN` (one path for local and remote hints, one order).
//!
//! When the listening connection drops, hints sent meanwhile are lost to this node: it forgets
//! what it kept, closes its subscribers' streams (clients reconnect and refetch), and resumes
//! from ids published after the reconnection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ezw_core::ports::{LiveEvent, LiveEventId, LiveHint, LiveHub, Replay};
use ezw_core::{Clock, Result, Timestamp};
use tokio::sync::{broadcast, mpsc};

use super::listen::{Channels, Listener, LiveSignal};
use super::{db_err, Db};

struct Recent {
    /// The highest sequence number received.
    last_seq: u64,
    /// Hints up to this sequence number may be missing here (before this hub started, pruned,
    /// or lost while the listener reconnected): resuming from an earlier id is a gap.
    complete_after: u64,
    events: VecDeque<(Timestamp, Arc<LiveEvent>)>,
}

struct State {
    epoch: u64,
    recent: Mutex<Recent>,
    subscribers: Mutex<broadcast::Sender<Arc<LiveEvent>>>,
    capacity: usize,
    window: Duration,
    clock: Arc<dyn Clock>,
}

impl State {
    fn recent(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sender(&self) -> MutexGuard<'_, broadcast::Sender<Arc<LiveEvent>>> {
        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn prune(&self, recent: &mut Recent, now: Timestamp) {
        let oldest = now.minus(self.window);
        while recent.events.len() > self.capacity || recent.events.front().is_some_and(|(at, _)| *at < oldest) {
            if let Some((_, e)) = recent.events.pop_front() {
                recent.complete_after = recent.complete_after.max(e.id.seq);
            }
        }
    }

    fn receive(&self, payload: &str) {
        let Some((seq, json)) = payload.split_once(' ') else { return };
        let (Ok(seq), Some(hint)) = (seq.parse::<u64>(), LiveHint::from_json(json)) else {
            tracing::debug!("ignoring a live hint this build cannot read");
            return;
        };
        let event = Arc::new(LiveEvent { id: LiveEventId { epoch: self.epoch, seq }, hint });
        let now = self.clock.now();
        let mut recent = self.recent();
        if seq <= recent.last_seq {
            return;
        }
        recent.last_seq = seq;
        recent.events.push_back((now, event.clone()));
        self.prune(&mut recent, now);
        // Sent under the lock so subscribers see events in sequence order.
        let _ = self.sender().send(event);
    }

    /// Hints were lost: forget what is kept and end every subscriber's stream.
    fn lost(&self, sequence_now: u64) {
        let mut recent = self.recent();
        recent.events.clear();
        recent.last_seq = recent.last_seq.max(sequence_now);
        recent.complete_after = recent.last_seq;
        *self.sender() = broadcast::channel(1024).0;
    }
}

/// The PostgreSQL-backed [`LiveHub`]; see the module docs and [`PgStore::live_hub`](super::PgStore::live_hub).
pub struct PgLiveHub {
    state: Arc<State>,
    outgoing: mpsc::UnboundedSender<String>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl std::fmt::Debug for PgLiveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLiveHub").field("epoch", &self.state.epoch).finish_non_exhaustive()
    }
}

impl Drop for PgLiveHub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn sequence_now(db: &Db) -> Result<u64> {
    let conn = db.conn().await?;
    let row = conn
        .query_one("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM live_hint_seq", &[])
        .await
        .map_err(db_err)?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

impl PgLiveHub {
    pub(crate) async fn start(
        db: Db,
        listener: &Listener,
        capacity: usize,
        window: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>> {
        // Subscribe before reading the sequence, so no hint falls between the two.
        let mut signals = listener.subscribe_live();
        let epoch: i64 =
            db.conn().await?.query_one("SELECT epoch FROM ezw_instance LIMIT 1", &[]).await.map_err(db_err)?.get(0);
        let start = sequence_now(&db).await?;
        let state = Arc::new(State {
            epoch: epoch.unsigned_abs(),
            recent: Mutex::new(Recent { last_seq: start, complete_after: start, events: VecDeque::new() }),
            subscribers: Mutex::new(broadcast::channel(1024).0),
            capacity: capacity.max(1),
            window,
            clock,
        });
        let receiver = {
            let (state, db) = (state.clone(), db.clone());
            tokio::spawn(async move {
                while let Some(signal) = signals.recv().await {
                    match signal {
                        LiveSignal::Hint(payload) => state.receive(&payload),
                        LiveSignal::Reconnected => {
                            let now = sequence_now(&db).await.unwrap_or(0);
                            state.lost(now);
                        }
                    }
                }
            })
        };
        let (outgoing, rx) = mpsc::unbounded_channel();
        let publisher = tokio::spawn(publish_loop(db, rx));
        Ok(Arc::new(Self { state, outgoing, tasks: [receiver, publisher] }))
    }
}

/// Sends queued hints in batches: one transaction per batch, holding an advisory lock so ids
/// are handed out in the order notifications are delivered.
async fn publish_loop(db: Db, mut rx: mpsc::UnboundedReceiver<String>) {
    let channel = Channels::of(&db.schema).live;
    let lock_key = format!("ezw-live:{}", db.schema);
    let mut batch = Vec::with_capacity(1024);
    while rx.recv_many(&mut batch, 1024).await > 0 {
        if let Err(e) = publish(&db, &channel, &lock_key, &batch).await {
            tracing::warn!(error = %e, hints = batch.len(), "publishing live hints failed; clients refetch on their next hint");
        }
        batch.clear();
    }
}

async fn publish(db: &Db, channel: &str, lock_key: &str, hints: &[String]) -> Result<()> {
    let mut conn = db.conn().await?;
    let tx = Db::read_committed(&mut conn).await?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock_key]).await.map_err(db_err)?;
    // One statement for the batch. PostgreSQL evaluates a target list with volatile functions
    // after the sort, so ids and notifications follow the hints' order.
    let stmt = tx
        .prepare_cached(
            "SELECT pg_notify($1, nextval('live_hint_seq')::TEXT || ' ' || h.hint)
             FROM unnest($2::TEXT[]) WITH ORDINALITY AS h(hint, n) ORDER BY h.n",
        )
        .await
        .map_err(db_err)?;
    tx.execute(&stmt, &[&channel, &hints]).await.map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}

impl LiveHub for PgLiveHub {
    fn publish(&self, hint: LiveHint) {
        let _ = self.outgoing.send(hint.to_json());
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.state.sender().subscribe()
    }

    fn replay_since(&self, after: LiveEventId) -> Replay {
        let mut recent = self.state.recent();
        self.state.prune(&mut recent, self.state.clock.now());
        if after.epoch != self.state.epoch || after.seq > recent.last_seq || after.seq < recent.complete_after {
            return Replay::Gap;
        }
        Replay::Events(recent.events.iter().filter(|(_, e)| e.id.seq > after.seq).map(|(_, e)| e.clone()).collect())
    }

    fn last_event_id(&self) -> LiveEventId {
        LiveEventId { epoch: self.state.epoch, seq: self.state.recent().last_seq }
    }
}
