//! Applies what providers observed (statuses, inbound messages, line states) to the store in
//! batches, then publishes live hints.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::error::Result;
use crate::model::Message;
use crate::ports::{InboundOutcome, LiveHint, MessageChange, ProviderEvent};

use super::lines::publish_line_state;
use super::runtime::Inner;

const MAX_BATCH: usize = 1024;

/// A hint that a message changed (`kind`: `message.created` or `message.status`).
pub(crate) fn message_hint(kind: &'static str, m: &Message) -> LiveHint {
    change_hint_of(
        kind,
        &MessageChange {
            id: m.id.clone(),
            organization_id: m.organization_id.clone(),
            line_id: m.line_id.clone(),
            conversation_id: m.conversation_id.clone(),
            status: m.status,
        },
    )
}

/// A `message.status` hint for a recorded change.
pub(crate) fn change_hint(m: &MessageChange) -> LiveHint {
    change_hint_of("message.status", m)
}

fn change_hint_of(kind: &'static str, m: &MessageChange) -> LiveHint {
    LiveHint {
        line_id: Some(m.line_id.clone()),
        conversation_id: Some(m.conversation_id.clone()),
        message_id: Some(m.id.clone()),
        state: Some(m.status.as_str()),
        ..LiveHint::new(kind, m.organization_id.clone())
    }
}

pub(crate) async fn event_loop(
    inner: Arc<Inner>,
    mut rx: mpsc::UnboundedReceiver<ProviderEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    return;
                }
            }
            _ = stop.changed() => {
                // Apply what already arrived, then stop.
                while let Ok(e) = rx.try_recv() {
                    batch.push(e);
                }
                if let Err(e) = apply_events(&inner, std::mem::take(&mut batch)).await {
                    tracing::error!(error = %e, "applying provider events at shutdown failed");
                }
                return;
            }
        }
        let events = std::mem::take(&mut batch);
        if let Err(e) = apply_events(&inner, events).await {
            tracing::error!(error = %e, "applying provider events failed");
        }
    }
}

/// Applies one batch of provider events.
pub(crate) async fn apply_events(inner: &Inner, events: Vec<ProviderEvent>) -> Result<()> {
    let mut statuses = Vec::new();
    let mut inbound = Vec::new();
    for event in events {
        match event {
            ProviderEvent::Status(s) => statuses.push(s),
            ProviderEvent::Inbound(m) => inbound.push(*m),
            ProviderEvent::LineState { line_id, state, reason, at } => {
                if let Some(line) = inner.store.get_line_unscoped(&line_id).await? {
                    let kept = inner
                        .store
                        .set_line_state(&line.organization_id, &line.id, state, reason.as_deref(), at)
                        .await?;
                    // The store keeps an archived line archived whatever the provider reports.
                    let state = kept.map_or(state, |l| l.lifecycle_state);
                    publish_line_state(inner, &line, state);
                    if state == crate::model::LifecycleState::Connected {
                        inner.outbox_wake.notify_one();
                    }
                }
            }
            ProviderEvent::Session { line_id, signal, .. } => {
                let name = signal.name();
                if !inner.session_input(&line_id, crate::session::Input::Signal(signal)) {
                    tracing::debug!(line = %line_id, signal = name, "a session signal for a line this node does not run");
                }
            }
        }
    }
    if !inbound.is_empty() {
        for outcome in inner.store.record_inbound(inbound).await? {
            if let InboundOutcome::Created { message, conversation } = outcome {
                inner.live.publish(message_hint("message.created", &message));
                if inner.blobs.is_some() && super::media::needs_fetch(&message) {
                    if let Some(inner) = inner.self_arc() {
                        tokio::spawn(super::media::fetch_media(inner, (*message).clone()));
                    }
                }
                inner.live.publish(LiveHint {
                    line_id: Some(conversation.line_id),
                    conversation_id: Some(conversation.id),
                    version: Some(conversation.version),
                    user_id: conversation.assignee_id,
                    ..LiveHint::new("conversation.updated", conversation.organization_id)
                });
            }
        }
    }
    if !statuses.is_empty() {
        for m in inner.store.apply_status_updates(statuses).await? {
            inner.live.publish(change_hint(&m));
        }
    }
    // The changes above queued deliveries for subscribed webhooks in their transactions.
    inner.wake_webhooks();
    Ok(())
}
