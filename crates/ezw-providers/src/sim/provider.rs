//! The simulator's [`LineProvider`] implementation.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ezw_core::ids::LineId;
use ezw_core::model::{
    LifecycleState, Line, MessageContent, MessageKind, MessageStatus, Pacing, PairingMethod, ProviderKind,
};
use ezw_core::ports::{
    Capabilities, EventSink, LineProvider, NewInbound, OutboundMessage, ProviderError, ProviderErrorKind,
    ProviderEvent, ProviderHealth, SendReceipt, StatusUpdate,
};
use ezw_core::{Clock, PhoneNumber, Result};

use super::config::{SimConfig, SimFailure, SimPairing};
use super::session::{not_paired, SimSession};

#[derive(Default)]
pub(super) struct State {
    /// Failures to return for the next sends, in order, before any per-recipient rule.
    script: VecDeque<SimFailure>,
    /// Message ids already accepted (the simulator deduplicates repeated sends).
    accepted: HashSet<String>,
    /// Line states forced by the test or demo.
    line_states: HashMap<LineId, LifecycleState>,
    /// Every accepted send, in acceptance order: (line, recipient, message id).
    log: Vec<(LineId, PhoneNumber, String)>,
    /// Provider calls made, including failed ones.
    calls: u64,
    next_inbound: u64,
    /// QR lines' sessions: pairing codes and simulated credentials.
    pub(super) sessions: HashMap<LineId, SimSession>,
}

/// The deterministic simulator provider. Clone it to keep a control handle.
#[derive(Clone)]
pub struct SimProvider {
    pub(super) clock: Arc<dyn Clock>,
    pub(super) sink: EventSink,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimProvider").finish_non_exhaustive()
    }
}

fn failure_error(failure: SimFailure) -> ProviderError {
    match failure {
        SimFailure::Transient => {
            ProviderError::new(ProviderErrorKind::Retryable, "sim_unavailable", "simulated transient failure")
                .with_retry_after(Duration::from_secs(1))
        }
        SimFailure::Permanent => ProviderError::new(
            ProviderErrorKind::Permanent,
            "sim_rejected",
            "simulated permanent failure: recipient rejected",
        ),
        SimFailure::Ambiguous => ProviderError::new(
            ProviderErrorKind::Ambiguous,
            "sim_timeout",
            "simulated timeout after the request was sent",
        ),
    }
}

impl SimProvider {
    /// A simulator on `clock`, pushing status and inbound events into `sink`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>, sink: EventSink) -> Self {
        Self { clock, sink, state: Arc::new(Mutex::new(State::default())) }
    }

    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes the next `n` send calls fail with `failure` (before per-recipient rules).
    pub fn fail_next(&self, n: usize, failure: SimFailure) {
        self.state().script.extend(std::iter::repeat_n(failure, n));
    }

    /// Forces a line's state as the provider reports it (e.g. `QrRequired` after a logout) and
    /// emits the change; `Connected` restores it.
    pub fn set_line_state(&self, line: &LineId, state: LifecycleState) {
        self.state().line_states.insert(line.clone(), state);
        self.sink.emit(ProviderEvent::LineState {
            line_id: line.clone(),
            state,
            reason: Some("simulated".into()),
            at: self.clock.now(),
        });
    }

    /// Simulates a customer message arriving on `line`; returns its provider message id.
    pub fn inject_inbound(&self, line: &Line, from: &PhoneNumber, profile_name: Option<&str>, body: &str) -> String {
        let provider_message_id = {
            let mut st = self.state();
            st.next_inbound += 1;
            format!("sim.in.{}.{}", line.id, st.next_inbound)
        };
        self.sink.emit(ProviderEvent::Inbound(Box::new(NewInbound {
            organization_id: line.organization_id.clone(),
            line_id: line.id.clone(),
            from: from.clone(),
            profile_name: profile_name.map(str::to_owned),
            provider_message_id: provider_message_id.clone(),
            kind: MessageKind::Text,
            content: MessageContent { body: Some(body.to_owned()), ..MessageContent::default() },
            received_at: self.clock.now(),
        })));
        provider_message_id
    }

    /// Accepted sends so far: (line, recipient, message id), in order.
    #[must_use]
    pub fn accepted(&self) -> Vec<(LineId, PhoneNumber, String)> {
        self.state().log.clone()
    }

    /// Send calls made so far, including failed and repeated ones.
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.state().calls
    }

    fn schedule_statuses(&self, line: &LineId, provider_id: &str, config: &SimConfig) {
        let start = self.clock.now();
        let mut steps =
            vec![(MessageStatus::Sent, config.sent_after_ms), (MessageStatus::Delivered, config.delivered_after_ms)];
        if let Some(read) = config.read_after_ms {
            steps.push((MessageStatus::Read, read));
        }
        let (clock, sink, line, provider_id) =
            (self.clock.clone(), self.sink.clone(), line.clone(), provider_id.to_owned());
        tokio::spawn(async move {
            for (status, after) in steps {
                let at = start.plus(Duration::from_millis(after));
                clock.sleep_until(at).await;
                let update = StatusUpdate {
                    line_id: line.clone(),
                    provider_message_id: provider_id.clone(),
                    message_id: None,
                    status,
                    at,
                    error: None,
                };
                if !sink.emit(ProviderEvent::Status(update)) {
                    return;
                }
            }
        });
    }
}

#[async_trait]
impl LineProvider for SimProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Simulator
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            text: true,
            media_url: true,
            cta_url_button: true,
            templates: false,
            qr_pairing: true,
            phone_code_pairing: true,
            deduplicates_sends: true,
            status_events: true,
        }
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value> {
        SimConfig::from_json(config).map(|c| c.to_json())
    }

    fn default_pacing(&self) -> Pacing {
        // The simulator has no vendor limit; demos and benchmarks should not wait on one.
        Pacing { per_second: 10_000.0, media_per_second: None, max_in_flight: 1000, jitter_ms: 0 }
    }

    fn initial_state(&self, config: &serde_json::Value) -> LifecycleState {
        if SimConfig::is_qr(config) {
            LifecycleState::Created
        } else {
            LifecycleState::Connected
        }
    }

    fn runs_session(&self, line: &Line) -> bool {
        SimConfig::is_qr(&line.provider_config)
    }

    fn describe_config(&self, config: &serde_json::Value) -> serde_json::Value {
        match config.get("pairing") {
            Some(pairing) => serde_json::json!({ "pairing": pairing }),
            None => serde_json::json!({ "pairing": "none" }),
        }
    }

    async fn send(&self, line: &Line, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let config = SimConfig::from_json(&line.provider_config)
            .map_err(|e| ProviderError::new(ProviderErrorKind::Permanent, "sim_bad_config", e.message().to_owned()))?;
        let provider_message_id = format!("sim.{}", message.message.id);
        {
            let mut st = self.state();
            st.calls += 1;
            if config.pairing == SimPairing::Qr && !st.sessions.get(&line.id).is_some_and(SimSession::is_paired) {
                return Err(not_paired());
            }
            if let Some(state) = st.line_states.get(&line.id).copied().filter(|s| *s != LifecycleState::Connected) {
                return Err(ProviderError::new(
                    ProviderErrorKind::LineUnavailable,
                    "sim_line_unavailable",
                    "the simulated line is not connected",
                )
                .with_line_state(state));
            }
            if let Some(failure) = st.script.pop_front() {
                return Err(failure_error(failure));
            }
            if let Some(failure) = config.fail_recipients.get(message.to.as_str()) {
                return Err(failure_error(*failure));
            }
            if !st.accepted.insert(message.message.id.to_string()) {
                // A repeat of an accepted send: same receipt, no second delivery.
                return Ok(SendReceipt { provider_message_id });
            }
            st.log.push((line.id.clone(), message.to.clone(), message.message.id.to_string()));
        }
        self.schedule_statuses(&line.id, &provider_message_id, &config);
        Ok(SendReceipt { provider_message_id })
    }

    async fn health(&self, line: &Line, _wakeup: bool) -> Result<ProviderHealth, ProviderError> {
        // A QR line's lifecycle belongs to its session driver: report what it recorded.
        let fallback = if self.runs_session(line) { line.lifecycle_state } else { LifecycleState::Connected };
        let state = self.state().line_states.get(&line.id).copied().unwrap_or(fallback);
        Ok(ProviderHealth { lifecycle_state: state, reason: None })
    }

    async fn close_session(&self, line: &Line) {
        // The codes die with the session; the credentials stay.
        self.halt_pairing(&line.id);
    }

    async fn reconnect(&self, line: &Line) -> Result<(), ProviderError> {
        self.resume(&line.id)
    }

    async fn start_pairing(&self, line: &Line, method: &PairingMethod) -> Result<(), ProviderError> {
        self.begin_pairing(line, method)
    }

    async fn stop_pairing(&self, line: &Line) {
        self.halt_pairing(&line.id);
    }

    async fn logout(&self, line: &Line) -> Result<(), ProviderError> {
        self.forget(&line.id);
        Ok(())
    }
}
