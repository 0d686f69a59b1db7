//! The session supervisor and drivers: keep each session-style (QR) line connected on exactly
//! one node, and run its lifecycle state machine there.
//!
//! Every node runs the supervisor. Each round (every third of the lease, or at once when a
//! pairing is requested) it lists the session lines, acquires or renews their leases (acquiring
//! succeeds for free lines, lines it holds, and lines whose lease ran out), opens the sessions it
//! newly holds and starts a driver for each, closes the ones it lost, and hands requested
//! pairings to their drivers. A node that stops releases its leases, so another takes over at its
//! next round; a node that dies stops renewing, so another takes over once the lease runs out.
//!
//! A driver owns one line's [`SessionMachine`]: it feeds it the provider's signals, pairing
//! requests and clock ticks, and carries out its effects (record transitions, store the current
//! code, ask the provider to pair, reconnect or forget its credentials).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::ids::LineId;
use crate::model::{LifecycleState, Line, LineTransition, Pairing, PairingStatus, ProviderKind};
use crate::ports::{LineProvider, LiveHint, SessionSignal, TransitionOutcome};
use crate::service::runtime::Inner;
use crate::session::{Effect, Input, SessionMachine};
use crate::time::Timestamp;

/// What a driver receives.
pub(crate) enum DriverMsg {
    /// An input for the state machine.
    Machine(Input),
    /// A requested pairing to start (the supervisor may hand the same one over again).
    Pairing(Box<Pairing>),
}

/// A session this node runs: the line, and until when its lease is known to be held.
struct Held {
    line: Line,
    until: Timestamp,
}

pub(crate) async fn session_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let kinds: Vec<ProviderKind> =
        inner.providers.iter().filter(|(_, p)| p.capabilities().qr_pairing).map(|(k, _)| *k).collect();
    let node = inner.config.node_id.clone();
    let lease = inner.config.session_lease;
    let mut held: HashMap<LineId, Held> = HashMap::new();
    let mut next_round = inner.clock.now();
    loop {
        if inner.clock.now() >= next_round {
            round(&inner, &kinds, &node, lease, &mut held).await;
            next_round = inner.clock.now().plus(lease / 3);
        }
        hand_over_pairings(&inner, &node, &held).await;
        tokio::select! {
            () = inner.clock.sleep_until(next_round) => {}
            () = inner.sessions_kick.notified() => {
                // A pairing on a line nobody holds yet (a new line) needs a round first.
                next_round = inner.clock.now();
            }
            _ = stop.changed() => break,
        }
    }
    // Hand the sessions over at once rather than after the lease.
    for (id, h) in held.drain() {
        close(&inner, &h.line).await;
        if let Err(e) = inner.store.release_session_lease(&id, &node).await {
            tracing::warn!(error = %e, line = %id, "releasing a session lease failed; it runs out by itself");
        }
    }
}

async fn hand_over_pairings(inner: &Arc<Inner>, node: &str, held: &HashMap<LineId, Held>) {
    match inner.store.list_requested_pairings(node).await {
        Ok(pairings) => {
            for p in pairings {
                if held.contains_key(&p.line_id) {
                    send(inner, &p.line_id.clone(), DriverMsg::Pairing(Box::new(p)));
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing requested pairings failed"),
    }
}

fn send(inner: &Inner, line: &LineId, msg: DriverMsg) -> bool {
    let drivers = inner.session_drivers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    drivers.get(line).is_some_and(|tx| tx.send(msg).is_ok())
}

async fn round(
    inner: &Arc<Inner>,
    kinds: &[ProviderKind],
    node: &str,
    lease: std::time::Duration,
    held: &mut HashMap<LineId, Held>,
) {
    let now = inner.clock.now();
    // A lease this node could not renew in time may be another node's by now.
    let expired: Vec<LineId> = held.iter().filter(|(_, h)| h.until <= now).map(|(id, _)| id.clone()).collect();
    for id in expired {
        if let Some(h) = held.remove(&id) {
            tracing::warn!(line = %id, "a session lease ran out before it could be renewed; closing the session here");
            close(inner, &h.line).await;
        }
    }
    let lines = match inner.store.list_session_lines(kinds).await {
        Ok(lines) => lines,
        Err(e) => {
            tracing::warn!(error = %e, "listing session lines failed");
            return;
        }
    };
    let lines: Vec<Line> =
        lines.into_iter().filter(|l| inner.provider(l.provider_kind).is_ok_and(|p| p.runs_session(l))).collect();
    let listed: HashSet<LineId> = lines.iter().map(|l| l.id.clone()).collect();
    for line in lines {
        let until = now.plus(lease);
        match inner.store.acquire_session_lease(&line.id, node, now, until).await {
            Ok(l) if l.holder == node => {
                if let Some(h) = held.get_mut(&line.id) {
                    h.until = until;
                    h.line = line;
                    continue;
                }
                let Ok(provider) = inner.provider(line.provider_kind) else { continue };
                match provider.open_session(&line).await {
                    Ok(()) => {
                        tracing::info!(line = %line.id, node, "session opened on this node");
                        start_driver(inner, provider.clone(), line.clone());
                        held.insert(line.id.clone(), Held { line, until });
                    }
                    Err(e) => {
                        // Let another node try; this one tries again next round.
                        tracing::warn!(error = %e, line = %line.id, "opening a session failed");
                        let _ = inner.store.release_session_lease(&line.id, node).await;
                    }
                }
            }
            Ok(l) => {
                if let Some(h) = held.remove(&line.id) {
                    tracing::warn!(line = %line.id, holder = %l.holder, "another node holds this session now");
                    close(inner, &h.line).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, line = %line.id, "renewing a session lease failed"),
        }
    }
    // Archived (or no longer a session line): unlink the device and give the lease up.
    let gone: Vec<LineId> = held.keys().filter(|id| !listed.contains(*id)).cloned().collect();
    for id in gone {
        if let Some(h) = held.remove(&id) {
            close(inner, &h.line).await;
            if let Ok(provider) = inner.provider(h.line.provider_kind) {
                if let Err(e) = provider.logout(&h.line).await {
                    tracing::warn!(error = %e, line = %id, "logging an archived line's session out failed");
                }
            }
            let _ = inner.store.release_session_lease(&id, node).await;
        }
    }
}

async fn close(inner: &Inner, line: &Line) {
    inner.session_drivers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&line.id);
    if let Ok(provider) = inner.provider(line.provider_kind) {
        provider.close_session(line).await;
    }
}

fn start_driver(inner: &Arc<Inner>, provider: Arc<dyn LineProvider>, line: Line) {
    let (tx, rx) = mpsc::unbounded_channel();
    inner.session_drivers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(line.id.clone(), tx.clone());
    let driver = Driver {
        machine: SessionMachine::new(line.lifecycle_state, inner.config.session_policy.clone()),
        inner: inner.clone(),
        provider,
        line,
        pairing: None,
        tx,
    };
    tokio::spawn(driver.run(rx));
}

/// One line's session driver (see the module documentation).
struct Driver {
    inner: Arc<Inner>,
    provider: Arc<dyn LineProvider>,
    line: Line,
    machine: SessionMachine,
    /// The pairing being shown, if any.
    pairing: Option<Pairing>,
    /// Its own inbox, for results of provider calls made in the background.
    tx: mpsc::UnboundedSender<DriverMsg>,
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<DriverMsg>) {
        let mut pending = VecDeque::from([Input::Opened]);
        loop {
            while let Some(input) = pending.pop_front() {
                let now = self.inner.clock.now();
                for effect in self.machine.handle(input, now) {
                    self.apply(effect, &mut pending).await;
                }
            }
            let deadline = self.machine.deadline();
            let clock = self.inner.clock.clone();
            let tick = async move {
                match deadline {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(DriverMsg::Machine(input)) => pending.push_back(input),
                    Some(DriverMsg::Pairing(p)) => {
                        if self.pairing.as_ref().is_none_or(|cur| cur.id != p.id) {
                            let method = p.method.clone();
                            self.pairing = Some(*p);
                            pending.push_back(Input::PairingRequested(method));
                        }
                    }
                    // The supervisor closed the session (lease lost, archived, node stopping).
                    None => return,
                },
                () = tick => pending.push_back(Input::Tick),
            }
        }
    }

    async fn apply(&mut self, effect: Effect, pending: &mut VecDeque<Input>) {
        let inner = &self.inner;
        let now = inner.clock.now();
        match effect {
            Effect::Transition { from, to, trigger, reason } => {
                let t = LineTransition { from, to, trigger: trigger.to_owned(), reason, at: now };
                match inner.store.transition_line(&self.line.organization_id, &self.line.id, &t).await {
                    Ok(TransitionOutcome::Applied(line)) => {
                        self.line = *line;
                        super::super::service::lines::publish_line_state(inner, &self.line, to);
                        inner.wake_webhooks();
                        if to == LifecycleState::Connected {
                            inner.outbox_wake.notify_one();
                        }
                    }
                    Ok(TransitionOutcome::Stale(line)) => {
                        tracing::info!(line = %self.line.id, from = from.as_str(), to = to.as_str(), actual = line.lifecycle_state.as_str(), "a session transition met another change; following the store");
                        self.line = *line;
                        self.machine.sync(self.line.lifecycle_state);
                    }
                    Ok(TransitionOutcome::NotFound) => {}
                    Err(e) => {
                        // The machine moved on; the store catches up at the next transition or
                        // when the session is opened again.
                        tracing::warn!(error = %e, line = %self.line.id, "recording a session transition failed");
                    }
                }
            }
            Effect::StartPairing(method) => {
                if let Err(e) = self.provider.start_pairing(&self.line, &method).await {
                    tracing::warn!(error = %e, line = %self.line.id, "starting pairing failed");
                    pending.push_back(Input::PairingFailed { code: e.code });
                }
            }
            Effect::StopPairing => self.provider.stop_pairing(&self.line).await,
            Effect::ShowCode { qr, phone_code, rotation, expires_at } => {
                let Some(p) = self.pairing.as_mut() else { return };
                let expected = p.status;
                let mut next = p.clone();
                next.status = PairingStatus::Active;
                next.qr_code = qr;
                next.phone_code = phone_code;
                next.rotation = rotation;
                next.expires_at = Some(expires_at);
                next.updated_at = now;
                self.update_pairing(next, expected).await;
            }
            Effect::EndPairing { status, reason } => {
                let current = match self.pairing.take() {
                    Some(p) => Some(p),
                    // Opened on a line whose pairing ran on a node that is gone.
                    None => inner.store.get_pairing(&self.line.organization_id, &self.line.id).await.ok().flatten(),
                };
                let Some(p) = current.filter(|p| p.status.is_open()) else { return };
                let expected = p.status;
                let mut next = p;
                next.status = status;
                next.qr_code = None;
                next.phone_code = None;
                next.expires_at = None;
                next.reason = reason.map(str::to_owned);
                next.updated_at = now;
                self.update_pairing(next, expected).await;
                self.pairing = None;
            }
            Effect::Reconnect { attempt } => {
                let (provider, line, tx) = (self.provider.clone(), self.line.clone(), self.tx.clone());
                tracing::debug!(line = %line.id, attempt, "reconnecting a session");
                tokio::spawn(async move {
                    let input = match provider.reconnect(&line).await {
                        Ok(()) => Input::Signal(SessionSignal::Connected { account: None }),
                        Err(e) => Input::ReconnectFailed { code: e.code.clone(), line_state: e.line_state },
                    };
                    let _ = tx.send(DriverMsg::Machine(input));
                });
            }
            Effect::ForgetCredentials => {
                if let Err(e) = self.provider.logout(&self.line).await {
                    tracing::warn!(error = %e, line = %self.line.id, "forgetting a session's credentials failed");
                }
            }
        }
    }

    async fn update_pairing(&mut self, next: Pairing, expected: PairingStatus) {
        let inner = &self.inner;
        match inner.store.update_pairing(&next, expected).await {
            Ok(true) => {
                inner.live.publish(LiveHint {
                    line_id: Some(self.line.id.clone()),
                    state: Some(next.status.as_str()),
                    ..LiveHint::new("line.pairing", self.line.organization_id.clone())
                });
                self.pairing = next.status.is_open().then_some(next);
            }
            // A newer request replaced it; the supervisor hands that one over.
            Ok(false) => self.pairing = None,
            Err(e) => tracing::warn!(error = %e, line = %self.line.id, "storing the pairing code failed"),
        }
    }
}
