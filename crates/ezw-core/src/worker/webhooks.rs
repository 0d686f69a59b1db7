//! The webhook dispatcher: claims due deliveries in batches under a lease, POSTs each signed
//! (Standard Webhooks) within its webhook's concurrency and rate limits, and records outcomes in
//! batches. Failures retry on [`crate::webhooks::RETRY_SCHEDULE`]; a 410 or days of continuous
//! failure disable the webhook (held deliveries resume when it is enabled again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::model::{AuditActor, DeliveryAttempt, Webhook};
use crate::ports::{
    DeliveryJob, DeliveryOutcome, DeliveryResult, StoredWebhook, TransportErrorKind, WebhookRequest, WebhookTransport,
};
use crate::service::runtime::Inner;
use crate::time::Timestamp;
use crate::webhooks::{next_delay, signature_header, SigningSecret};

/// Deliveries claimed but not finished, across all webhooks.
const MAX_IN_FLIGHT: usize = 1024;
/// Deliveries claimed per batch.
const CLAIM_BATCH: u32 = 256;
/// Backstop poll when no wake-up arrives.
const POLL: Duration = Duration::from_secs(1);
/// How long a delivery turned away by a busy webhook waits before it is claimable again.
const BUSY_RETRY: Duration = Duration::from_millis(500);

/// One webhook's limits, and its opened secrets, rebuilt when its settings change.
struct Gate {
    updated_at: Timestamp,
    in_flight: Arc<Semaphore>,
    /// Earliest start of the next delivery (ms, fractional), for the rate limit.
    next_start_ms: Mutex<f64>,
    interval_ms: Option<f64>,
    waiting: Mutex<usize>,
    cap: usize,
    secrets: Result<(SigningSecret, Option<(SigningSecret, Timestamp)>), String>,
}

impl Gate {
    fn new(inner: &Inner, stored: &StoredWebhook) -> Self {
        let w = &stored.webhook;
        let open = |sealed: &str| -> Result<SigningSecret, String> {
            let secret = inner.secrets.open(sealed).map_err(|e| e.to_string())?;
            SigningSecret::parse(secret.expose()).map_err(|e| e.to_string())
        };
        let previous = match (&stored.previous_secret, w.previous_secret_expires_at) {
            (Some(sealed), Some(until)) => open(sealed).ok().map(|s| (s, until)),
            _ => None,
        };
        let rate = w.rate_per_second.unwrap_or(0.0);
        Self {
            updated_at: w.updated_at,
            in_flight: Arc::new(Semaphore::new(w.max_concurrency.max(1) as usize)),
            next_start_ms: Mutex::new(f64::MIN),
            interval_ms: (rate > 0.0).then(|| 1000.0 / rate),
            waiting: Mutex::new(0),
            // Two seconds of deliveries at its rate (or 4 rounds of its concurrency) may wait.
            cap: w.max_concurrency as usize * 4 + (rate * 2.0).ceil() as usize,
            secrets: open(&stored.secret).map(|current| (current, previous)),
        }
    }

    fn admit(&self) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *waiting >= self.cap {
            return false;
        }
        *waiting += 1;
        true
    }

    fn leave(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *waiting = waiting.saturating_sub(1);
    }

    /// Reserves the next start slot under the rate limit.
    fn slot(&self, now: Timestamp) -> Timestamp {
        let Some(interval) = self.interval_ms else { return now };
        let mut next = self.next_start_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = next.max(now.unix_ms() as f64);
        *next = slot + interval;
        Timestamp::from_unix_ms(slot.ceil() as i64)
    }

    /// The secrets to sign with at `now`: the current one, and the previous during its grace.
    fn signing_secrets(&self, now: Timestamp) -> Result<Vec<SigningSecret>, String> {
        let (current, previous) = self.secrets.as_ref().map_err(Clone::clone)?;
        let mut secrets = vec![current.clone()];
        if let Some((old, until)) = previous {
            if now < *until {
                secrets.push(old.clone());
            }
        }
        Ok(secrets)
    }
}

#[derive(Default)]
struct Gates(Mutex<HashMap<crate::ids::WebhookId, Arc<Gate>>>);

impl Gates {
    fn get(&self, inner: &Inner, stored: &StoredWebhook) -> Arc<Gate> {
        let mut gates = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match gates.get(&stored.webhook.id) {
            Some(g) if g.updated_at == stored.webhook.updated_at => g.clone(),
            _ => {
                let gate = Arc::new(Gate::new(inner, stored));
                gates.insert(stored.webhook.id.clone(), gate.clone());
                gate
            }
        }
    }
}

pub(crate) async fn dispatch_loop(
    inner: Arc<Inner>,
    transport: Arc<dyn WebhookTransport>,
    mut stop: watch::Receiver<bool>,
) {
    let (results_tx, results_rx) = mpsc::channel::<DeliveryResult>(4096);
    let recorder = tokio::spawn(record_loop(inner.clone(), results_rx));
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
        let limit = u32::try_from(free).unwrap_or(u32::MAX).min(CLAIM_BATCH);
        let now = inner.clock.now();
        let jobs = match inner.store.claim_webhook_deliveries(now, inner.config.webhook_lease, limit).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = %e, "claiming webhook deliveries failed");
                Vec::new()
            }
        };
        if jobs.is_empty() {
            tokio::select! {
                () = inner.webhook_wake.notified() => {}
                () = inner.clock.sleep(POLL) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        for job in jobs {
            // Cannot fail (only this loop takes permits and it claimed no more than are free);
            // were it to, the delivery would come back after its lease.
            let Ok(permit) = budget.clone().try_acquire_owned() else { continue };
            let gate = gates.get(&inner, &job.webhook);
            if !gate.admit() {
                let result = DeliveryResult {
                    delivery_id: job.delivery.id,
                    lease_id: job.lease_id,
                    webhook_id: job.webhook.webhook.id,
                    attempt: None,
                    outcome: DeliveryOutcome::Released(now.plus(BUSY_RETRY)),
                    disable_webhook: None,
                };
                let _ = results_tx.send(result).await;
                continue;
            }
            let (inner, transport, tx) = (inner.clone(), transport.clone(), results_tx.clone());
            tasks.spawn(async move {
                let result = deliver(&inner, transport.as_ref(), &gate, job).await;
                gate.leave();
                drop(permit);
                let _ = tx.send(result).await;
            });
        }
    }
    // Stop: no new claims; deliveries in flight finish (their receivers may already have them).
    while tasks.join_next().await.is_some() {}
    drop(results_tx);
    let _ = recorder.await;
}

/// Records outcomes in batches (one transaction for many deliveries).
async fn record_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<DeliveryResult>) {
    let mut batch = Vec::with_capacity(512);
    while rx.recv_many(&mut batch, 512).await > 0 {
        let results = std::mem::take(&mut batch);
        if let Err(e) = inner.store.finish_webhook_deliveries(results).await {
            tracing::warn!(error = %e, "recording webhook outcomes failed; the deliveries return after their lease");
        }
    }
}

/// Makes one attempt and decides what becomes of the delivery.
async fn deliver(inner: &Inner, transport: &dyn WebhookTransport, gate: &Gate, job: DeliveryJob) -> DeliveryResult {
    let permit = gate.in_flight.clone().acquire_owned().await;
    let slot = gate.slot(inner.clock.now());
    inner.clock.sleep_until(slot).await;
    let started_at = inner.clock.now();
    let webhook = &job.webhook.webhook;
    let delivery = &job.delivery;
    let made = delivery.attempts + 1;
    let timer = Instant::now();
    let answer = match gate.signing_secrets(started_at) {
        Ok(secrets) => {
            let timestamp = started_at.unix_ms().div_euclid(1000);
            let id = delivery.id.as_str();
            let headers = vec![
                ("webhook-id", id.to_owned()),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signature_header(&secrets, id, timestamp, delivery.body.as_bytes())),
                ("x-ezw-webhook-event", delivery.event.as_str().to_owned()),
                ("x-ezw-line-id", delivery.line_id.to_string()),
                ("x-ezw-webhook-id", webhook.id.to_string()),
                ("x-ezw-delivery-id", id.to_owned()),
            ];
            let request = WebhookRequest {
                url: webhook.target_url.clone(),
                headers,
                body: delivery.body.clone(),
                timeout: inner.config.webhook_timeout,
            };
            transport.post(request).await.map_err(|e| (e.kind, e.to_string()))
        }
        Err(e) => Err((TransportErrorKind::Other, format!("signing secret unusable: {e}"))),
    };
    drop(permit);
    let latency = timer.elapsed();
    let now = inner.clock.now();
    let (attempt, succeeded, gone, retry_after) = match answer {
        Ok(response) => {
            let ok = (200..300).contains(&response.status);
            let attempt = DeliveryAttempt {
                number: made,
                started_at,
                http_status: Some(response.status),
                latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                response_excerpt: Some(response.body_excerpt),
                error: None,
            };
            (attempt, ok, response.status == 410, response.retry_after)
        }
        Err((_, message)) => {
            let attempt = DeliveryAttempt {
                number: made,
                started_at,
                http_status: None,
                latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                response_excerpt: None,
                error: Some(message),
            };
            (attempt, false, false, None)
        }
    };
    let mut disable_webhook = None;
    let outcome = if succeeded {
        DeliveryOutcome::Succeeded
    } else if gone {
        disable_webhook = Some(disable(webhook, "gone", "the receiver answered 410 Gone", now));
        DeliveryOutcome::Failed
    } else {
        let failing_for = webhook.failing_since.map(|since| now.since(since));
        if failing_for.is_some_and(|d| d >= inner.config.webhook_disable_after) {
            let why =
                format!("every delivery failed for {} hours", inner.config.webhook_disable_after.as_secs() / 3600);
            disable_webhook = Some(disable(webhook, "failing", &why, now));
        }
        match webhook.persistent.then(|| next_delay(made, retry_after)).flatten() {
            Some(delay) => DeliveryOutcome::Retry(now.plus(delay)),
            None => DeliveryOutcome::Failed,
        }
    };
    DeliveryResult {
        delivery_id: delivery.id.clone(),
        lease_id: job.lease_id.clone(),
        webhook_id: webhook.id.clone(),
        attempt: Some(attempt),
        outcome,
        disable_webhook,
    }
}

fn disable(webhook: &Webhook, reason: &str, why: &str, at: Timestamp) -> (String, crate::model::AuditEvent) {
    tracing::warn!(webhook = %webhook.id, reason, "{why}; webhook disabled");
    let details = serde_json::json!({ "reason": reason, "message": why, "targetUrl": webhook.target_url });
    let audit = crate::service::webhooks::system_audit(AuditActor::system(), "webhook.disabled", webhook, details, at);
    (reason.to_owned(), audit)
}
