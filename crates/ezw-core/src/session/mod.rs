//! The lifecycle of a QR-paired (web session) line, as one explicit state machine.
//!
//! ```text
//!              POST /qr                 a code is scanned
//!   created ───────────────▶ pairing ─────────────────────▶ connected ◀──────────┐
//!   qr_required ──────────▶   │  ▲ code rotates                │  │  │            │ reconnected
//!                             │  └──┘                          │  │  └ network ─▶ reconnecting
//!   qr_expired / codes exhausted / pairing failed              │  │     lost      (backoff 2 s,
//!                             ▼                                │  │               4 s ... 5 min)
//!                        qr_required ◀──── logged out ─────────┘  │
//!                                         from the phone          ├ rate limit ─▶ restricted ─▶ connected
//!                                                                 ├ restricted ─▶ restricted   (after the wait)
//!                                                                 └ banned ─────▶ blocked
//!   any state ── archive ──▶ archived (final)
//! ```
//!
//! [`SessionMachine`] is pure: it takes an [`Input`] and the current time and returns the
//! [`Effect`]s to carry out (record a transition, show a code, ask the provider to reconnect...)
//! and, through [`SessionMachine::deadline`], when it next needs a [`Input::Tick`]. The runtime's
//! session driver owns one per line on the node holding the line's session lease, feeds it the
//! provider's [`SessionSignal`]s and the clock, and applies the effects; tests drive it with
//! explicit times.

use std::time::Duration;

use crate::model::{LifecycleState, PairingMethod, PairingStatus};
use crate::ports::SessionSignal;
use crate::time::Timestamp;

/// Timing and limits of the lifecycle.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPolicy {
    /// Codes one pairing may issue (the first and its rotations) before it counts as exhausted.
    /// WhatsApp Web issues six QR references per pairing.
    pub max_codes: u32,
    /// How long after a code's expiry a rotation may still arrive before the pairing expires.
    pub code_grace: Duration,
    /// How long a started pairing may wait for its first code before it fails.
    pub first_code_timeout: Duration,
    /// The first reconnect delay; each later attempt doubles it.
    pub backoff_base: Duration,
    /// The longest reconnect delay.
    pub backoff_max: Duration,
    /// Random spread of each reconnect delay, as a fraction (0.2 = ±20%); 0 for exact delays.
    pub backoff_jitter: f64,
    /// How long a rate limit holds sends when WhatsApp does not say.
    pub rate_limit_default: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            max_codes: 6,
            code_grace: Duration::from_secs(3),
            first_code_timeout: Duration::from_secs(60),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            backoff_jitter: 0.2,
            rate_limit_default: Duration::from_secs(15 * 60),
        }
    }
}

impl SessionPolicy {
    /// The delay before reconnect attempt `attempt` (1-based), before jitter: `backoff_base`
    /// doubled per attempt, at most `backoff_max`.
    #[must_use]
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.backoff_base.saturating_mul(factor).min(self.backoff_max)
    }

    fn jittered(&self, attempt: u32) -> Duration {
        let base = self.backoff(attempt);
        if self.backoff_jitter <= 0.0 {
            return base;
        }
        let spread = (rand::random::<f64>() * 2.0 - 1.0) * self.backoff_jitter.min(1.0);
        base.mul_f64((1.0 + spread).max(0.0))
    }
}

/// Something that happened to a line's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The session was opened on this node (startup, or taken over from another node).
    Opened,
    /// A person asked to pair the line (`POST /api/lines/{id}/qr`).
    PairingRequested(PairingMethod),
    /// The provider reported something.
    Signal(SessionSignal),
    /// The provider could not start pairing.
    PairingFailed {
        /// The provider's error code.
        code: String,
    },
    /// A reconnect attempt failed.
    ReconnectFailed {
        /// The provider's error code.
        code: String,
        /// The line state the failure implies (`QrRequired`: no usable credentials).
        line_state: Option<LifecycleState>,
    },
    /// The clock reached [`SessionMachine::deadline`].
    Tick,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Record and publish a transition from the state the machine was in to `to`.
    Transition {
        /// The state before.
        from: LifecycleState,
        /// The new state.
        to: LifecycleState,
        /// What caused it.
        trigger: &'static str,
        /// Details (the provider's words, the account).
        reason: Option<String>,
    },
    /// Ask the provider to start pairing (it drops stored credentials first).
    StartPairing(PairingMethod),
    /// Ask the provider to stop issuing codes.
    StopPairing,
    /// Store the current code of the pairing (what `GET /qr` serves).
    ShowCode {
        /// QR pairing string, for QR pairing.
        qr: Option<String>,
        /// Phone code, for phone-code pairing.
        phone_code: Option<String>,
        /// Codes issued so far in this pairing.
        rotation: u32,
        /// When this code expires.
        expires_at: Timestamp,
    },
    /// End the current pairing with a status.
    EndPairing {
        /// `paired`, `expired`, `exhausted`, `cancelled` or `failed`.
        status: PairingStatus,
        /// Why.
        reason: Option<&'static str>,
    },
    /// Ask the provider to connect with the stored credentials.
    Reconnect {
        /// Which attempt this is (1-based).
        attempt: u32,
    },
    /// Delete the stored credentials (the phone unlinked the device).
    ForgetCredentials,
}

#[derive(Debug, Clone)]
struct Pairing {
    codes: u32,
    expires_at: Option<Timestamp>,
    started_at: Timestamp,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    attempt: u32,
    at: Timestamp,
    in_flight: bool,
}

/// One line's lifecycle state machine (see the module documentation).
#[derive(Debug, Clone)]
pub struct SessionMachine {
    state: LifecycleState,
    policy: SessionPolicy,
    pairing: Option<Pairing>,
    retry: Option<Retry>,
    restricted_until: Option<Timestamp>,
}

impl SessionMachine {
    /// A machine for a line currently in `state`.
    #[must_use]
    pub fn new(state: LifecycleState, policy: SessionPolicy) -> Self {
        Self { state, policy, pairing: None, retry: None, restricted_until: None }
    }

    /// The state the machine believes the line is in.
    #[must_use]
    pub fn state(&self) -> LifecycleState {
        self.state
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    /// The reconnect attempt pending or in flight, if any.
    #[must_use]
    pub fn reconnect_attempt(&self) -> Option<u32> {
        self.retry.map(|r| r.attempt)
    }

    /// When the machine next needs a [`Input::Tick`]: a code's expiry, a reconnect attempt, the
    /// end of a rate limit.
    #[must_use]
    pub fn deadline(&self) -> Option<Timestamp> {
        let pairing =
            self.pairing.as_ref().filter(|_| self.state == LifecycleState::Pairing).map(|p| match p.expires_at {
                Some(at) => at.plus(self.policy.code_grace),
                None => p.started_at.plus(self.policy.first_code_timeout),
            });
        let retry = self.retry.filter(|r| !r.in_flight && self.state == LifecycleState::Reconnecting).map(|r| r.at);
        let lift = self.restricted_until.filter(|_| self.state == LifecycleState::Restricted);
        [pairing, retry, lift].into_iter().flatten().min()
    }

    /// Takes the store's view of the line after a transition could not be applied (another
    /// writer moved it): the machine drops what belonged to the state it assumed.
    pub fn sync(&mut self, actual: LifecycleState) {
        if actual != self.state {
            self.state = actual;
            if actual != LifecycleState::Pairing {
                self.pairing = None;
            }
            if actual != LifecycleState::Reconnecting {
                self.retry = None;
            }
            if actual != LifecycleState::Restricted {
                self.restricted_until = None;
            }
        }
    }

    /// Handles one input at `now`; returns the effects in the order they must be carried out.
    pub fn handle(&mut self, input: Input, now: Timestamp) -> Vec<Effect> {
        use LifecycleState as S;
        if self.state == S::Archived {
            return Vec::new();
        }
        let mut fx = Vec::new();
        match input {
            Input::Opened => match self.state {
                S::Connected | S::Reconnecting | S::Restricted => {
                    self.go(S::Reconnecting, "session_opened", None, &mut fx);
                    self.retry = Some(Retry { attempt: 1, at: now, in_flight: true });
                    fx.push(Effect::Reconnect { attempt: 1 });
                }
                S::Pairing => {
                    // The node that showed the codes is gone; its codes died with it.
                    self.end_pairing(PairingStatus::Cancelled, "pairing_interrupted", &mut fx);
                    self.go(S::QrRequired, "pairing_interrupted", None, &mut fx);
                }
                _ => {}
            },
            Input::PairingRequested(method) => {
                if self.state == S::Connected {
                    return fx;
                }
                if self.pairing.is_some() {
                    fx.push(Effect::StopPairing);
                }
                self.retry = None;
                self.restricted_until = None;
                self.go(S::Pairing, "pairing_requested", None, &mut fx);
                self.pairing = Some(Pairing { codes: 0, expires_at: None, started_at: now });
                fx.push(Effect::StartPairing(method));
            }
            Input::Signal(signal) => self.on_signal(signal, now, &mut fx),
            Input::PairingFailed { code } => {
                if self.state == S::Pairing {
                    self.pairing = None;
                    fx.push(Effect::EndPairing { status: PairingStatus::Failed, reason: Some("pairing_failed") });
                    self.go(S::QrRequired, "pairing_failed", Some(code), &mut fx);
                }
            }
            Input::ReconnectFailed { code, line_state } => {
                if self.state != S::Reconnecting {
                    return fx;
                }
                if line_state == Some(S::QrRequired) {
                    self.retry = None;
                    fx.push(Effect::ForgetCredentials);
                    self.go(S::QrRequired, "credentials_rejected", Some(code), &mut fx);
                } else {
                    let attempt = self.retry.map_or(1, |r| r.attempt + 1);
                    self.schedule(attempt, now);
                }
            }
            Input::Tick => self.on_tick(now, &mut fx),
        }
        fx
    }

    fn on_signal(&mut self, signal: SessionSignal, now: Timestamp, fx: &mut Vec<Effect>) {
        use LifecycleState as S;
        match signal {
            SessionSignal::Qr { code, ttl } => self.on_code(Some(code), None, ttl, now, fx),
            SessionSignal::PhoneCode { code, ttl } => self.on_code(None, Some(code), ttl, now, fx),
            SessionSignal::QrExhausted => {
                if self.state == S::Pairing {
                    self.exhaust(fx);
                }
            }
            SessionSignal::Connected { account } => {
                self.retry = None;
                match self.state {
                    S::Pairing => {
                        self.end_pairing(PairingStatus::Paired, "paired", fx);
                        self.go(S::Connected, "paired", account, fx);
                    }
                    S::Restricted if self.restricted_until.is_some_and(|until| until > now) => {}
                    S::Connected => {}
                    _ => {
                        self.restricted_until = None;
                        self.go(S::Connected, "reconnected", account, fx);
                    }
                }
            }
            SessionSignal::Disconnected { reason } => match self.state {
                S::Connected | S::Restricted => {
                    self.restricted_until = None;
                    self.go(S::Reconnecting, "network_lost", Some(reason), fx);
                    self.schedule(1, now);
                }
                S::Reconnecting => {
                    let attempt = self.retry.map_or(1, |r| if r.in_flight { r.attempt + 1 } else { r.attempt });
                    self.schedule(attempt, now);
                }
                _ => {}
            },
            SessionSignal::LoggedOut { reason } => {
                // A banned number stays blocked: a new pairing is its way out, not a QR prompt.
                if matches!(self.state, S::QrRequired | S::Pairing | S::Blocked) {
                    return;
                }
                self.retry = None;
                self.restricted_until = None;
                fx.push(Effect::ForgetCredentials);
                self.go(S::QrRequired, "logged_out", Some(reason), fx);
            }
            SessionSignal::Banned { reason } => {
                self.retry = None;
                self.restricted_until = None;
                if self.pairing.is_some() {
                    fx.push(Effect::StopPairing);
                    self.end_pairing(PairingStatus::Cancelled, "banned", fx);
                }
                self.go(S::Blocked, "banned", Some(reason), fx);
            }
            SessionSignal::Restricted { reason } => {
                if matches!(self.state, S::Connected | S::Reconnecting | S::Restricted) {
                    self.retry = None;
                    self.restricted_until = None;
                    self.go(S::Restricted, "restricted", Some(reason), fx);
                }
            }
            SessionSignal::RateLimited { reason, retry_after } => {
                if matches!(self.state, S::Connected | S::Restricted) {
                    let until = now.plus(retry_after.unwrap_or(self.policy.rate_limit_default));
                    self.restricted_until = Some(self.restricted_until.map_or(until, |u| u.max(until)));
                    self.go(S::Restricted, "rate_limited", Some(reason), fx);
                }
            }
        }
    }

    fn on_code(
        &mut self,
        qr: Option<String>,
        phone_code: Option<String>,
        ttl: Duration,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        if self.state != LifecycleState::Pairing {
            return;
        }
        let Some(p) = self.pairing.as_mut() else { return };
        p.codes += 1;
        if p.codes > self.policy.max_codes {
            self.exhaust(fx);
            return;
        }
        let expires_at = now.plus(ttl);
        p.expires_at = Some(expires_at);
        fx.push(Effect::ShowCode { qr, phone_code, rotation: p.codes, expires_at });
    }

    fn on_tick(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        use LifecycleState as S;
        match self.state {
            S::Pairing => {
                let Some(p) = &self.pairing else { return };
                match p.expires_at {
                    Some(at) if at.plus(self.policy.code_grace) <= now => {
                        fx.push(Effect::StopPairing);
                        self.end_pairing(PairingStatus::Expired, "qr_expired", fx);
                        self.go(S::QrRequired, "qr_expired", None, fx);
                    }
                    None if p.started_at.plus(self.policy.first_code_timeout) <= now => {
                        fx.push(Effect::StopPairing);
                        self.end_pairing(PairingStatus::Failed, "no_code_issued", fx);
                        self.go(S::QrRequired, "pairing_failed", Some("no code was issued in time".into()), fx);
                    }
                    _ => {}
                }
            }
            S::Reconnecting => {
                if let Some(r) = self.retry.as_mut().filter(|r| !r.in_flight && r.at <= now) {
                    r.in_flight = true;
                    fx.push(Effect::Reconnect { attempt: r.attempt });
                }
            }
            S::Restricted if self.restricted_until.is_some_and(|until| until <= now) => {
                self.restricted_until = None;
                self.go(S::Connected, "rate_limit_lifted", None, fx);
            }
            _ => {}
        }
    }

    fn schedule(&mut self, attempt: u32, now: Timestamp) {
        self.retry = Some(Retry { attempt, at: now.plus(self.policy.jittered(attempt)), in_flight: false });
    }

    fn exhaust(&mut self, fx: &mut Vec<Effect>) {
        fx.push(Effect::StopPairing);
        self.end_pairing(PairingStatus::Exhausted, "qr_codes_exhausted", fx);
        self.go(LifecycleState::QrRequired, "qr_codes_exhausted", None, fx);
    }

    fn end_pairing(&mut self, status: PairingStatus, reason: &'static str, fx: &mut Vec<Effect>) {
        self.pairing = None;
        fx.push(Effect::EndPairing { status, reason: Some(reason) });
    }

    fn go(&mut self, to: LifecycleState, trigger: &'static str, reason: Option<String>, fx: &mut Vec<Effect>) {
        if self.state == to {
            return;
        }
        let from = std::mem::replace(&mut self.state, to);
        if to != LifecycleState::Pairing {
            self.pairing = None;
        }
        fx.push(Effect::Transition { from, to, trigger, reason });
    }
}

#[cfg(test)]
mod tests;
