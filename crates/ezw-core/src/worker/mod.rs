//! The delivery worker: claims queued messages from the outbox with a lease, hands them to their
//! line's provider, and records each outcome. One conversation's messages go out one at a time,
//! in order. Transient failures retry with exponential backoff and jitter (honouring
//! Retry-After); an attempt whose outcome is unknown is not repeated unless the provider
//! deduplicates sends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

mod pacing;
pub(crate) mod sessions;
pub(crate) mod webhooks;

use pacing::Gates;

use crate::ids::LineId;
use crate::model::{EffectiveSendState, Line, MessageError};
use crate::ports::{
    AttemptOutcome, AttemptRecord, JobDisposition, JobResult, OutboundMessage, OutboxJob, ProviderErrorKind,
};
use crate::service::events::change_hint;
use crate::service::runtime::Inner;
use crate::service::DeliveryMedia;
use crate::time::Timestamp;

/// Backoff before attempt `attempt + 1`: `base * 2^(attempt-1)`, capped, with ±20% jitter.
pub(crate) fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    let jitter = rand::rng().random_range(0.8..=1.2);
    capped.mul_f64(jitter)
}

/// Provider calls (or paced waits) in flight across all lines.
const MAX_IN_FLIGHT: usize = 1024;

pub(crate) async fn delivery_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let (results_tx, results_rx) = mpsc::channel::<JobResult>(4096);
    let recorder = tokio::spawn(record_loop(inner.clone(), results_rx));
    let (dispatch_tx, dispatch_rx) = mpsc::channel::<Dispatch>(4096);
    let dispatcher = tokio::spawn(dispatch_loop(inner.clone(), dispatch_rx));
    let budget = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let gates = Arc::new(Gates::default());
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        if *stop.borrow() {
            break;
        }
        let free = budget.available_permits();
        if free == 0 {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let limit = u32::try_from(free).unwrap_or(u32::MAX).min(inner.config.claim_batch);
        let jobs = match inner.store.claim_outbox(inner.clock.now(), inner.config.lease, limit).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = %e, "claiming outbox jobs failed");
                Vec::new()
            }
        };
        if jobs.is_empty() {
            tokio::select! {
                () = inner.outbox_wake.notified() => {}
                () = inner.clock.sleep(inner.config.poll_interval) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let lines = read_lines(&inner, &jobs).await;
        for job in jobs {
            let Ok(permit) = budget.clone().try_acquire_owned() else {
                // Cannot happen (only this loop takes permits); the job returns after its lease.
                continue;
            };
            let line = lines.get(&job.message.line_id).cloned().unwrap_or(Err(()));
            let (inner, gates, tx, stop) = (inner.clone(), gates.clone(), results_tx.clone(), stop.clone());
            let dispatch = dispatch_tx.clone();
            tasks.spawn(async move {
                let result = process(&inner, &gates, &dispatch, job, line, stop).await;
                drop(permit);
                let _ = tx.send(result).await;
            });
        }
    }
    // Stop: no new claims; paced jobs still waiting are released, calls in flight finish.
    while tasks.join_next().await.is_some() {}
    drop(dispatch_tx);
    let _ = dispatcher.await;
    drop(results_tx);
    let _ = recorder.await;
}

/// A job about to call its provider: its lease, and where to say whether it may go.
type Dispatch = (crate::ids::MessageId, String, tokio::sync::oneshot::Sender<bool>);

/// Marks jobs dispatched in batches (one transaction for many), durably, before their calls.
async fn dispatch_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<Dispatch>) {
    let mut batch = Vec::with_capacity(512);
    while rx.recv_many(&mut batch, 512).await > 0 {
        let (leases, replies): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|(id, lease, reply)| ((id, lease), reply)).unzip();
        match inner.store.mark_dispatched(leases, inner.clock.now()).await {
            Ok(held) => {
                for (reply, held) in replies.into_iter().zip(held) {
                    let _ = reply.send(held);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "marking sends dispatched failed; they wait for a later claim");
                for reply in replies {
                    let _ = reply.send(false);
                }
            }
        }
    }
}

/// Records outcomes in batches (one transaction for many jobs) and publishes hints.
async fn record_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<JobResult>) {
    let mut batch = Vec::with_capacity(512);
    while rx.recv_many(&mut batch, 512).await > 0 {
        let results = std::mem::take(&mut batch);
        // A finished job frees its conversation's next message: wake the claimer for it now
        // rather than at the backstop poll.
        let frees_heads = results.iter().any(|r| {
            matches!(
                r.disposition,
                JobDisposition::Accepted { .. } | JobDisposition::Failed { .. } | JobDisposition::Unknown { .. }
            )
        });
        match inner.store.finish_outbox(results).await {
            Ok(changed) => {
                if frees_heads {
                    inner.outbox_wake.notify_one();
                }
                for m in &changed {
                    inner.live.publish(change_hint(m));
                }
                if !changed.is_empty() {
                    inner.wake_webhooks();
                }
            }
            Err(e) => tracing::error!(error = %e, "recording outbox outcomes failed; jobs return after their lease"),
        }
    }
}

/// What the worker knows about a job's line: `Err` when it could not be read (the job is held).
type LineLookup = std::result::Result<Option<(Line, bool)>, ()>;

async fn read_lines(inner: &Inner, jobs: &[OutboxJob]) -> HashMap<LineId, LineLookup> {
    let mut lines: HashMap<LineId, LineLookup> = HashMap::new();
    for job in jobs {
        if !lines.contains_key(&job.message.line_id) {
            let lookup = match inner.store.get_line_context(&job.message.organization_id, &job.message.line_id).await {
                Ok(ctx) => Ok(ctx.map(|c| (c.line, c.billing_state.allows_sending()))),
                Err(e) => {
                    tracing::warn!(error = %e, line = %job.message.line_id, "reading a line for delivery failed; holding its jobs");
                    Err(())
                }
            };
            lines.insert(job.message.line_id.clone(), lookup);
        }
    }
    lines
}

fn hold(job: &OutboxJob, until: Timestamp) -> JobResult {
    JobResult {
        message_id: job.message.id.clone(),
        lease_id: job.lease_id.clone(),
        attempt: None,
        disposition: JobDisposition::Hold { until },
    }
}

async fn process(
    inner: &Inner,
    gates: &Gates,
    dispatch: &mpsc::Sender<Dispatch>,
    job: OutboxJob,
    line: LineLookup,
    mut stop: watch::Receiver<bool>,
) -> JobResult {
    let now = inner.clock.now();
    let Ok(line) = line else {
        inner.metrics.held();
        return hold(&job, now.plus(inner.config.hold_interval));
    };
    let Some((line, billing_ok)) = line else {
        return JobResult {
            message_id: job.message.id.clone(),
            lease_id: job.lease_id.clone(),
            attempt: None,
            disposition: JobDisposition::Failed {
                error: MessageError { code: "line_not_found".into(), message: "the line no longer exists".into() },
                at: now,
            },
        };
    };
    if line.lifecycle_state == crate::model::LifecycleState::Archived {
        // Archived lines take no new work: a job that reaches here (a retry of a call that was in
        // flight when the line was archived, or an operator's resend) fails instead of waiting.
        return JobResult {
            message_id: job.message.id.clone(),
            lease_id: job.lease_id.clone(),
            attempt: None,
            disposition: JobDisposition::Failed {
                error: MessageError { code: "line_archived".into(), message: "the line was archived".into() },
                at: now,
            },
        };
    }
    if line.effective_send_state(billing_ok) != EffectiveSendState::Sendable {
        inner.metrics.held();
        return hold(&job, now.plus(inner.config.hold_interval));
    }
    let Ok(provider) = inner.provider(line.provider_kind) else {
        tracing::warn!(line = %line.id, kind = line.provider_kind.as_str(), "no provider for line; holding its jobs");
        inner.metrics.held();
        return hold(&job, now.plus(inner.config.hold_interval));
    };
    let caps = provider.capabilities();
    if job.possibly_sent && !caps.deduplicates_sends {
        // An earlier claim's outcome was lost (crash or stall): it may have reached the provider,
        // and this provider would deliver a repeat. Do not re-send; the message becomes
        // `unknown` until a status event or an operator resolves it.
        inner.metrics.attempt(AttemptOutcome::Unknown);
        inner.metrics.unknown();
        return JobResult {
            message_id: job.message.id.clone(),
            lease_id: job.lease_id.clone(),
            attempt: Some(AttemptRecord {
                started_at: now,
                outcome: AttemptOutcome::Unknown,
                provider_code: Some("lease_expired".into()),
                error: Some("an earlier attempt's outcome was lost (crash or stall); not re-sent".into()),
                latency: Duration::ZERO,
            }),
            disposition: JobDisposition::Unknown { at: now },
        };
    }

    // Stored attachments reach the provider as a fresh signed URL to our `/media` route.
    let mut job = job;
    match crate::service::delivery_media(inner, &job.message).await {
        DeliveryMedia::Ready => {}
        DeliveryMedia::Url(url) => {
            if let Some(media) = job.message.content.media.as_mut() {
                media.url = Some(url);
            }
        }
        DeliveryMedia::Wait => {
            inner.metrics.held();
            return hold(&job, now.plus(inner.config.hold_interval));
        }
        DeliveryMedia::Fail(code, message) => {
            inner.metrics.failed();
            return JobResult {
                message_id: job.message.id.clone(),
                lease_id: job.lease_id.clone(),
                attempt: None,
                disposition: JobDisposition::Failed { error: MessageError { code: code.into(), message }, at: now },
            };
        }
    }

    // Pacing: admission, the line's next free slot, then a concurrency slot.
    let gate = gates.get(&line.id, line.pacing.unwrap_or_else(|| provider.default_pacing()));
    if !gate.admit() {
        inner.metrics.held();
        return hold(&job, now.plus(Duration::from_millis(500)));
    }
    let media = job.message.content.media.is_some();
    let slot = gate.reserve(now, media);
    let waited = tokio::select! {
        () = inner.clock.sleep_until(slot) => true,
        _ = stop.changed() => false,
    };
    if !waited {
        gate.leave();
        return hold(&job, inner.clock.now());
    }
    let in_flight = gate.in_flight();
    let permit = tokio::select! {
        p = in_flight.acquire_owned() => p.ok(),
        _ = stop.changed() => None,
    };
    let Some(_permit) = permit else {
        gate.leave();
        return hold(&job, inner.clock.now());
    };
    // The durable mark that this call starts: a crash from here on leaves the job possibly sent.
    let (reply, answer) = tokio::sync::oneshot::channel();
    let marked = dispatch.send((job.message.id.clone(), job.lease_id.clone(), reply)).await.is_ok()
        && answer.await.unwrap_or(false);
    if !marked {
        gate.leave();
        return hold(&job, inner.clock.now().plus(inner.config.hold_interval));
    }
    inner.clock.sleep_until(gate.confirm_start(inner.clock.now(), media)).await;
    let result = send(inner, provider.as_ref(), &line, job).await;
    gate.leave();
    result
}

async fn send(inner: &Inner, provider: &dyn crate::ports::LineProvider, line: &Line, job: OutboxJob) -> JobResult {
    let attempt_no = job.attempts + 1;
    let outbound = OutboundMessage { message: job.message.clone(), to: job.recipient.clone(), attempt: attempt_no };
    let started = inner.clock.now();
    let result = tokio::select! {
        r = provider.send(line, &outbound) => Some(r),
        () = inner.clock.sleep(inner.config.send_timeout) => None,
    };
    let finished = inner.clock.now();
    let latency = finished.since(started);
    let record = |outcome, code: Option<String>, error: Option<String>| AttemptRecord {
        started_at: started,
        outcome,
        provider_code: code,
        error,
        latency,
    };
    let dedupes = provider.capabilities().deduplicates_sends;
    let retry_or_exhaust = |retry_after: Option<Duration>, code: &str, msg: &str| {
        if attempt_no >= inner.config.max_attempts {
            JobDisposition::Failed {
                error: MessageError {
                    code: "retries_exhausted".into(),
                    message: format!("gave up after {attempt_no} attempts; last error {code}: {msg}"),
                },
                at: finished,
            }
        } else {
            let delay =
                retry_after.unwrap_or_else(|| backoff(inner.config.base_backoff, inner.config.max_backoff, attempt_no));
            JobDisposition::Retry { at: finished.plus(delay) }
        }
    };
    let (attempt, disposition) = match result {
        Some(Ok(receipt)) => (
            record(AttemptOutcome::Accepted, None, None),
            JobDisposition::Accepted { provider_message_id: receipt.provider_message_id, at: finished },
        ),
        None if dedupes => (
            record(AttemptOutcome::Retry, Some("timeout".into()), Some("provider call timed out".into())),
            retry_or_exhaust(None, "timeout", "provider call timed out"),
        ),
        None => (
            record(AttemptOutcome::Unknown, Some("timeout".into()), Some("provider call timed out".into())),
            JobDisposition::Unknown { at: finished },
        ),
        Some(Err(e)) => match e.kind {
            ProviderErrorKind::Retryable => (
                record(AttemptOutcome::Retry, Some(e.code.clone()), Some(e.message.clone())),
                retry_or_exhaust(e.retry_after, &e.code, &e.message),
            ),
            ProviderErrorKind::Ambiguous if dedupes => (
                record(AttemptOutcome::Retry, Some(e.code.clone()), Some(e.message.clone())),
                retry_or_exhaust(e.retry_after, &e.code, &e.message),
            ),
            ProviderErrorKind::Ambiguous => (
                record(AttemptOutcome::Unknown, Some(e.code.clone()), Some(e.message.clone())),
                JobDisposition::Unknown { at: finished },
            ),
            ProviderErrorKind::LineUnavailable => {
                if let Some(state) = e.line_state {
                    if let Err(err) = inner
                        .store
                        .set_line_state(&line.organization_id, &line.id, state, Some(&e.message), finished)
                        .await
                    {
                        tracing::error!(error = %err, "recording line state failed");
                    }
                    crate::service::lines::publish_line_state(inner, line, state);
                    inner.wake_webhooks();
                }
                inner.metrics.held();
                return hold(&job, finished.plus(inner.config.hold_interval));
            }
            ProviderErrorKind::Permanent | ProviderErrorKind::Unsupported | ProviderErrorKind::Unauthorized => (
                record(AttemptOutcome::Failed, Some(e.code.clone()), Some(e.message.clone())),
                JobDisposition::Failed { error: MessageError { code: e.code, message: e.message }, at: finished },
            ),
        },
    };
    inner.metrics.attempt(attempt.outcome);
    match &disposition {
        JobDisposition::Accepted { .. } => inner.metrics.sent(finished.since(job.message.created_at)),
        JobDisposition::Failed { .. } => inner.metrics.failed(),
        JobDisposition::Unknown { .. } => inner.metrics.unknown(),
        JobDisposition::Retry { .. } | JobDisposition::Hold { .. } => {}
    }
    JobResult { message_id: job.message.id, lease_id: job.lease_id, attempt: Some(attempt), disposition }
}

/// Forwards wake-ups from other nodes to this node's workers.
pub(crate) async fn wake_loop(
    inner: Arc<Inner>,
    mut wakes: tokio::sync::broadcast::Receiver<crate::ports::Wake>,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            wake = wakes.recv() => match wake {
                Ok(crate::ports::Wake::Outbox) => inner.outbox_wake.notify_one(),
                Ok(crate::ports::Wake::Webhooks) => inner.wake_webhooks(),
                Ok(crate::ports::Wake::Sessions) => inner.kick_sessions(),
                Err(RecvError::Lagged(_)) => {
                    inner.outbox_wake.notify_one();
                    inner.wake_webhooks();
                    inner.kick_sessions();
                }
                Err(RecvError::Closed) => return,
            },
            _ = stop.changed() => return,
        }
    }
}

pub(crate) async fn purge_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    loop {
        match inner.store.purge_idempotency(inner.clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired idempotency records purged"),
            Err(e) => tracing::warn!(error = %e, "purging idempotency records failed"),
        }
        tokio::select! {
            () = inner.clock.sleep(Duration::from_secs(3600)) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        for _ in 0..50 {
            let b1 = backoff(base, max, 1);
            assert!(b1 >= Duration::from_millis(1600) && b1 <= Duration::from_millis(2400), "{b1:?}");
            let b3 = backoff(base, max, 3);
            assert!(b3 >= Duration::from_millis(6400) && b3 <= Duration::from_millis(9600), "{b3:?}");
            assert!(backoff(base, max, 30) <= Duration::from_secs(72));
        }
    }
}
