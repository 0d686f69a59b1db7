//! The session supervisor: keeps each session-style (QR) line connected on exactly one node.
//!
//! Every node runs it. Each round it lists the lines of session providers, acquires or renews
//! their leases (acquiring succeeds for free lines, lines it holds, and lines whose lease ran
//! out), opens the sessions it newly holds, and closes the ones it lost. A node that stops
//! releases its leases, so another takes over at its next round; a node that dies stops
//! renewing, so another takes over once the lease runs out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::watch;

use crate::ids::LineId;
use crate::model::{Line, ProviderKind};
use crate::service::runtime::Inner;
use crate::time::Timestamp;

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
    loop {
        round(&inner, &kinds, &node, lease, &mut held).await;
        tokio::select! {
            () = inner.clock.sleep(lease / 3) => {}
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

async fn round(
    inner: &Inner,
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
    // Archived or no longer served by a session provider.
    let gone: Vec<LineId> = held.keys().filter(|id| !listed.contains(*id)).cloned().collect();
    for id in gone {
        if let Some(h) = held.remove(&id) {
            close(inner, &h.line).await;
            let _ = inner.store.release_session_lease(&id, node).await;
        }
    }
}

async fn close(inner: &Inner, line: &Line) {
    if let Ok(provider) = inner.provider(line.provider_kind) {
        provider.close_session(line).await;
    }
}
