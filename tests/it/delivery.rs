//! Delivery worker behaviour against a scripted provider that does not deduplicate sends.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ezw::model::{LifecycleState, Line, MessageStatus, Pacing, ProviderKind};
use ezw::ports::{
    Capabilities, LineProvider, OutboundMessage, ProviderError, ProviderErrorKind, ProviderHealth, SendReceipt,
};
use ezw::service::{SendRequest, SendTargetInput};
use ezw::storage::sqlite::SqliteStore;
use ezw::{Clock as _, Ezw, EzwConfig, ManualClock, Principal, Timestamp};

use crate::support::new_org;

/// Answers every send with the next scripted outcome; counts calls and when they happened.
struct Scripted {
    script: Mutex<Vec<Result<(), ProviderErrorKind>>>,
    calls: AtomicU32,
    clock: ManualClock,
    log: Mutex<Vec<(Timestamp, String, String)>>,
}

#[async_trait]
impl LineProvider for Scripted {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Simulator
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { text: true, deduplicates_sends: false, ..Capabilities::default() }
    }

    fn validate_config(&self, config: &serde_json::Value) -> ezw::Result<serde_json::Value> {
        Ok(config.clone())
    }

    fn initial_state(&self, _config: &serde_json::Value) -> LifecycleState {
        LifecycleState::Connected
    }

    async fn send(&self, _line: &Line, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push((
            self.clock.now(),
            message.to.to_string(),
            message.message.content.body.clone().unwrap_or_default(),
        ));
        let next = self.script.lock().unwrap().pop().unwrap_or(Ok(()));
        match next {
            Ok(()) => Ok(SendReceipt { provider_message_id: format!("p.{}", message.message.id) }),
            Err(kind) => Err(ProviderError::new(kind, "scripted", "scripted failure")),
        }
    }

    async fn health(&self, _line: &Line, _wakeup: bool) -> Result<ProviderHealth, ProviderError> {
        Ok(ProviderHealth { lifecycle_state: LifecycleState::Connected, reason: None })
    }
}

struct Harness {
    ezw: Ezw,
    provider: Arc<Scripted>,
    clock: ManualClock,
    principal: Principal,
    line: Line,
    _dir: tempfile::TempDir,
}

async fn harness(script: Vec<Result<(), ProviderErrorKind>>, max_attempts: u32) -> Harness {
    harness_with(script, max_attempts, None).await
}

async fn harness_with(
    script: Vec<Result<(), ProviderErrorKind>>,
    max_attempts: u32,
    pacing: Option<Pacing>,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_ms(1_795_000_000_000));
    let store = Arc::new(SqliteStore::open(dir.path().join("ezw.db")).unwrap());
    let provider = Arc::new(Scripted {
        script: Mutex::new(script.into_iter().rev().collect()),
        calls: AtomicU32::new(0),
        clock: clock.clone(),
        log: Mutex::new(Vec::new()),
    });
    let mut config = EzwConfig::default();
    config.max_attempts = max_attempts;
    // The tests step the manual clock in large strides while jobs are in flight; leases and call
    // timeouts are not what they test, so keep them far beyond any stride.
    config.lease = Duration::from_secs(30 * 86_400);
    config.send_timeout = Duration::from_secs(30 * 86_400);
    let ezw = Ezw::builder(store)
        .clock(Arc::new(clock.clone()))
        .config(config)
        .provider(provider.clone())
        .signing_key(&[3u8; 32])
        .build()
        .unwrap();
    let (_, principal) = new_org(&ezw, "Delivery", "d@delivery.example").await;
    let line = ezw
        .lines()
        .create_line(
            &principal,
            ezw::service::NewLine {
                display_name: "Paced".into(),
                phone_number: "+15550100001".into(),
                provider_kind: ProviderKind::Simulator,
                provider_config: serde_json::json!({}),
                pacing,
            },
        )
        .await
        .unwrap();
    Harness { ezw, provider, clock, principal, line, _dir: dir }
}

impl Harness {
    async fn send(&self, body: &str) -> ezw::MessageId {
        self.send_to("+972501234567", body).await
    }

    async fn send_to(&self, to: &str, body: &str) -> ezw::MessageId {
        let req = SendRequest {
            target: SendTargetInput { to: Some(to.into()), conversation_id: None },
            body: Some(body.into()),
            ..SendRequest::default()
        };
        self.ezw.messages().send(&self.principal, &self.line.id, req).await.unwrap().message.id
    }

    /// Advances the manual clock in steps until the message reaches `want` (giving up after 30 s
    /// of real time, so a loaded CI machine slows the test down rather than failing it).
    async fn wait_for(&self, id: &ezw::MessageId, want: MessageStatus, step: Duration) -> ezw::model::Message {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let m = self.ezw.messages().get(&self.principal, id).await.unwrap();
            if m.status == want {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.clock.advance(step);
        }
        let m = self.ezw.messages().get(&self.principal, id).await.unwrap();
        panic!("message never reached {want:?}: {:?} after {} attempts", m.status, m.attempts);
    }
}

#[tokio::test]
async fn an_ambiguous_attempt_is_not_resent_by_a_provider_that_does_not_deduplicate() {
    let h = harness(vec![Err(ProviderErrorKind::Ambiguous)], 8).await;
    let workers = h.ezw.start().unwrap();
    let id = h.send("maybe sent").await;
    let m = h.wait_for(&id, MessageStatus::Unknown, Duration::from_secs(1)).await;
    assert_eq!(m.attempts, 1);
    // Much later, still exactly one provider call: no blind re-send.
    h.clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.provider.calls.load(Ordering::SeqCst), 1);
    assert_eq!(h.ezw.messages().get(&h.principal, &id).await.unwrap().status, MessageStatus::Unknown);
    assert!(workers.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn transient_failures_give_up_after_max_attempts() {
    let h = harness(vec![Err(ProviderErrorKind::Retryable); 5], 3).await;
    let workers = h.ezw.start().unwrap();
    let id = h.send("never makes it").await;
    let m = h.wait_for(&id, MessageStatus::Failed, Duration::from_secs(30)).await;
    assert_eq!(m.error.as_ref().map(|e| e.code.as_str()), Some("retries_exhausted"));
    assert_eq!(m.attempts, 3);
    assert_eq!(h.provider.calls.load(Ordering::SeqCst), 3);
    assert!(workers.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn retries_wait_for_their_backoff_on_the_clock() {
    let h = harness(vec![Err(ProviderErrorKind::Retryable)], 8).await;
    let workers = h.ezw.start().unwrap();
    let id = h.send("retry later").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while h.provider.calls.load(Ordering::SeqCst) < 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(h.provider.calls.load(Ordering::SeqCst), 1, "the first attempt was made");
    // The first retry waits 2 s ± 20% on the manual clock: nothing happens before 1.5 s.
    h.clock.advance(Duration::from_millis(1500));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.provider.calls.load(Ordering::SeqCst), 1, "no retry before the backoff");
    let m = h.wait_for(&id, MessageStatus::Sent, Duration::from_millis(500)).await;
    assert_eq!(m.attempts, 2);
    assert!(workers.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_permanent_failure_fails_at_once() {
    let h = harness(vec![Err(ProviderErrorKind::Permanent)], 8).await;
    let workers = h.ezw.start().unwrap();
    let id = h.send("rejected").await;
    let m = h.wait_for(&id, MessageStatus::Failed, Duration::from_millis(10)).await;
    assert_eq!(m.error.as_ref().map(|e| e.code.as_str()), Some("scripted"));
    assert_eq!(h.provider.calls.load(Ordering::SeqCst), 1);
    assert!(workers.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_lines_rate_limit_holds_over_a_long_window_and_conversations_stay_in_order() {
    let pacing = Pacing { per_second: 5.0, media_per_second: None, max_in_flight: 2, jitter_ms: 0 };
    let h = harness_with(Vec::new(), 8, Some(pacing)).await;
    // 40 recipients once each, and one conversation with 10 messages in a row.
    for i in 0..40 {
        h.send_to(&format!("+1555020{i:04}"), &format!("r{i}")).await;
    }
    for i in 0..10 {
        h.send_to("+15550299999", &format!("c{i}")).await;
    }
    let workers = h.ezw.start().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let start = h.clock.now();
    while h.provider.calls.load(Ordering::SeqCst) < 50 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
        // The clock never runs ahead of the worker: it moves on only once the sends the limit
        // allows by now have been made (a slow machine makes the test slower, not wrong). A
        // pacer slower than the limit stops the clock and fails the count below.
        let allowed = u32::try_from(h.clock.now().since(start).as_millis() * 5 / 1000).unwrap_or(50).min(50);
        if h.provider.calls.load(Ordering::SeqCst) >= allowed {
            h.clock.advance(Duration::from_millis(50));
        }
    }
    assert!(workers.shutdown(Duration::from_secs(5)).await);
    let log = h.provider.log.lock().unwrap().clone();
    assert_eq!(log.len(), 50, "every message was sent once");
    // No one-second window holds more than 5 sends.
    let times: Vec<i64> = log.iter().map(|(t, _, _)| t.unix_ms()).collect();
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..].iter().take_while(|t| **t < start + 1000).count();
        assert!(in_window <= 5, "{in_window} sends in the second starting at {start}");
    }
    // And the limit is used: 50 sends take about 10 s of clock time, not much more.
    let span = times.last().unwrap() - times.first().unwrap();
    assert!((9_000..=11_000).contains(&span), "50 sends at 5/s took {span} ms");
    // One conversation: in order.
    let conversation: Vec<String> =
        log.iter().filter(|(_, to, _)| to == "+15550299999").map(|(_, _, body)| body.clone()).collect();
    assert_eq!(conversation, (0..10).map(|i| format!("c{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_operator_resolves_unknown_messages() {
    let h = harness(vec![Err(ProviderErrorKind::Ambiguous), Err(ProviderErrorKind::Ambiguous)], 8).await;
    let workers = h.ezw.start().unwrap();
    let resend = h.send("resend me").await;
    let fail = h.send_to("+972501234568", "fail me").await;
    h.wait_for(&resend, MessageStatus::Unknown, Duration::from_millis(10)).await;
    h.wait_for(&fail, MessageStatus::Unknown, Duration::from_millis(10)).await;
    assert!(h.ezw.metrics_text().await.unwrap().contains("ezw_messages_unknown 2\n"));
    let m =
        h.ezw.messages().resolve_unknown(&h.principal, &resend, ezw::ports::UnknownResolution::Resend).await.unwrap();
    assert_eq!(m.status, MessageStatus::Queued);
    h.wait_for(&resend, MessageStatus::Sent, Duration::from_millis(10)).await;
    let m = h.ezw.messages().resolve_unknown(&h.principal, &fail, ezw::ports::UnknownResolution::Fail).await.unwrap();
    assert_eq!(m.error.as_ref().map(|e| e.code.as_str()), Some("operator_failed"));
    let again = h.ezw.messages().resolve_unknown(&h.principal, &fail, ezw::ports::UnknownResolution::Resend).await;
    assert_eq!(again.unwrap_err().code(), "not_unknown");
    assert_eq!(h.provider.calls.load(Ordering::SeqCst), 3, "two ambiguous attempts, one operator-approved resend");
    assert!(workers.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn an_unsendable_line_holds_its_queue_without_burning_attempts() {
    let h = harness(Vec::new(), 3).await;
    let id = h.send("wait for me").await;
    let org = h.line.organization_id.clone();
    let now = h.clock.now();
    h.ezw.store().set_line_state(&org, &h.line.id, LifecycleState::QrRequired, Some("logged out"), now).await.unwrap();
    let workers = h.ezw.start().unwrap();
    // Much longer than max_attempts worth of backoff: nothing is sent, nothing is counted.
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        h.clock.advance(Duration::from_secs(5));
    }
    let m = h.ezw.messages().get(&h.principal, &id).await.unwrap();
    assert_eq!((m.status, m.attempts), (MessageStatus::Queued, 0));
    assert_eq!(h.provider.calls.load(Ordering::SeqCst), 0);
    assert!(h
        .ezw
        .metrics_text()
        .await
        .unwrap()
        .contains(&format!("ezw_outbox_depth{{line_id=\"{}\"}} 1\n", h.line.id)));
    // Sendable again: the queue resumes.
    let now = h.clock.now();
    h.ezw.store().set_line_state(&org, &h.line.id, LifecycleState::Connected, None, now).await.unwrap();
    let m = h.wait_for(&id, MessageStatus::Sent, Duration::from_secs(1)).await;
    assert_eq!(m.attempts, 1);
    assert!(workers.shutdown(Duration::from_secs(5)).await);
}
