//! Lifecycle state machine tests, driven on a [`ManualClock`]: every transition, every deadline
//! (reached exactly, never one millisecond early) and the reconnect backoff schedule.

use std::time::Duration;

use super::{Effect, Input, SessionMachine, SessionPolicy};
use crate::model::{LifecycleState as S, PairingMethod, PairingStatus};
use crate::phone::PhoneNumber;
use crate::ports::SessionSignal;
use crate::time::{Clock, ManualClock, Timestamp};

const QR_TTL: Duration = Duration::from_secs(20);
const MS: Duration = Duration::from_millis(1);

/// The default policy without jitter, so every delay is exact.
fn exact() -> SessionPolicy {
    SessionPolicy { backoff_jitter: 0.0, ..SessionPolicy::default() }
}

/// A machine and the clock that drives it.
struct Rig {
    clock: ManualClock,
    m: SessionMachine,
}

impl Rig {
    fn new(state: S) -> Self {
        Self::with(state, exact())
    }

    fn with(state: S, policy: SessionPolicy) -> Self {
        Self {
            clock: ManualClock::new(Timestamp::from_unix_ms(1_700_000_000_000)),
            m: SessionMachine::new(state, policy),
        }
    }

    /// A machine that was asked to pair from `created` (effects checked elsewhere).
    fn pairing() -> Self {
        let mut rig = Self::new(S::Created);
        rig.send(Input::PairingRequested(PairingMethod::Qr));
        rig
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn send(&mut self, input: Input) -> Vec<Effect> {
        let now = self.clock.now();
        self.m.handle(input, now)
    }

    fn signal(&mut self, signal: SessionSignal) -> Vec<Effect> {
        self.send(Input::Signal(signal))
    }

    fn qr(&mut self, code: &str) -> Vec<Effect> {
        self.signal(SessionSignal::Qr { code: code.into(), ttl: QR_TTL })
    }

    fn advance(&mut self, d: Duration) {
        self.clock.advance(d);
    }

    /// Moves the clock to one millisecond before the deadline and checks a tick there does
    /// nothing, then moves it onto the deadline and ticks. Returns the tick's effects.
    fn tick_at_deadline(&mut self) -> Vec<Effect> {
        let deadline = self.m.deadline().expect("a deadline");
        let wait = deadline.since(self.now());
        assert!(wait >= MS, "deadline {deadline} is not in the future");
        self.advance(wait - MS);
        let before = self.m.state();
        assert_eq!(self.send(Input::Tick), vec![], "a tick one millisecond early acts");
        assert_eq!(self.m.state(), before);
        self.advance(MS);
        assert_eq!(self.now(), deadline);
        self.send(Input::Tick)
    }

    /// The time to the machine's deadline.
    fn until_deadline(&self) -> Option<Duration> {
        self.m.deadline().map(|d| d.since(self.now()))
    }
}

fn transition(from: S, to: S, trigger: &'static str, reason: Option<&str>) -> Effect {
    Effect::Transition { from, to, trigger, reason: reason.map(str::to_owned) }
}

fn end(status: PairingStatus, reason: &'static str) -> Effect {
    Effect::EndPairing { status, reason: Some(reason) }
}

fn show_qr(code: &str, rotation: u32, expires_at: Timestamp) -> Effect {
    Effect::ShowCode { qr: Some(code.into()), phone_code: None, rotation, expires_at }
}

fn disconnected() -> SessionSignal {
    SessionSignal::Disconnected { reason: "stream closed".into() }
}

fn connected(account: Option<&str>) -> SessionSignal {
    SessionSignal::Connected { account: account.map(str::to_owned) }
}

// ---- created -> pairing -> codes ----

#[test]
fn pairing_request_moves_created_to_pairing_and_starts_pairing() {
    let mut rig = Rig::new(S::Created);
    let fx = rig.send(Input::PairingRequested(PairingMethod::Qr));
    assert_eq!(
        fx,
        vec![transition(S::Created, S::Pairing, "pairing_requested", None), Effect::StartPairing(PairingMethod::Qr)]
    );
    assert_eq!(rig.m.state(), S::Pairing);
    // Until the first code arrives the machine waits for it, at most the first-code timeout.
    assert_eq!(rig.until_deadline(), Some(exact().first_code_timeout));
}

#[test]
fn pairing_request_from_qr_required_and_reconnecting_and_blocked() {
    for from in [S::QrRequired, S::Reconnecting, S::Blocked, S::Restricted, S::AuthFailed] {
        let mut rig = Rig::new(from);
        let fx = rig.send(Input::PairingRequested(PairingMethod::Qr));
        assert_eq!(
            fx,
            vec![transition(from, S::Pairing, "pairing_requested", None), Effect::StartPairing(PairingMethod::Qr)],
            "from {from:?}"
        );
    }
}

#[test]
fn pairing_request_on_a_connected_line_is_ignored() {
    let mut rig = Rig::new(S::Connected);
    assert_eq!(rig.send(Input::PairingRequested(PairingMethod::Qr)), vec![]);
    assert_eq!(rig.m.state(), S::Connected);
    assert_eq!(rig.m.deadline(), None);
}

#[test]
fn first_code_is_shown_with_rotation_one_and_its_expiry() {
    let mut rig = Rig::pairing();
    rig.advance(Duration::from_secs(2));
    let expires_at = rig.now().plus(QR_TTL);
    assert_eq!(rig.qr("2@ref-1"), vec![show_qr("2@ref-1", 1, expires_at)]);
    assert_eq!(rig.m.state(), S::Pairing);
    // The machine next looks at the pairing when the code's grace ends.
    assert_eq!(rig.m.deadline(), Some(expires_at.plus(exact().code_grace)));
}

#[test]
fn phone_code_pairing_starts_with_the_phone_and_shows_the_code() {
    let mut rig = Rig::new(S::QrRequired);
    let method = PairingMethod::PhoneCode { phone: PhoneNumber::from_raw("+972501234567") };
    let fx = rig.send(Input::PairingRequested(method.clone()));
    assert_eq!(
        fx,
        vec![transition(S::QrRequired, S::Pairing, "pairing_requested", None), Effect::StartPairing(method)]
    );
    let ttl = Duration::from_secs(180);
    let fx = rig.signal(SessionSignal::PhoneCode { code: "ABCD-EFGH".into(), ttl });
    assert_eq!(
        fx,
        vec![Effect::ShowCode {
            qr: None,
            phone_code: Some("ABCD-EFGH".into()),
            rotation: 1,
            expires_at: rig.now().plus(ttl)
        }]
    );
}

#[test]
fn rotation_within_the_grace_keeps_pairing_and_counts_the_code() {
    let policy = exact();
    let mut rig = Rig::pairing();
    rig.qr("ref-1");
    // The code's expiry passes; within the grace the pairing stays open.
    rig.advance(QR_TTL);
    assert_eq!(rig.send(Input::Tick), vec![]);
    rig.advance(policy.code_grace - MS);
    assert_eq!(rig.send(Input::Tick), vec![]);
    assert_eq!(rig.m.state(), S::Pairing);
    // The rotation arrives in the grace: a new code, a new expiry, no transition.
    let expires_at = rig.now().plus(QR_TTL);
    assert_eq!(rig.qr("ref-2"), vec![show_qr("ref-2", 2, expires_at)]);
    assert_eq!(rig.m.state(), S::Pairing);
    assert_eq!(rig.m.deadline(), Some(expires_at.plus(policy.code_grace)));
    // A rotation before expiry works the same.
    rig.advance(Duration::from_secs(5));
    let expires_at = rig.now().plus(QR_TTL);
    assert_eq!(rig.qr("ref-3"), vec![show_qr("ref-3", 3, expires_at)]);
    assert_eq!(rig.m.deadline(), Some(expires_at.plus(policy.code_grace)));
}

#[test]
fn qr_expires_at_expiry_plus_grace_and_not_one_tick_early() {
    let policy = exact();
    let mut rig = Rig::pairing();
    rig.qr("ref-1");
    let expires_at = rig.now().plus(QR_TTL);
    let fx = rig.tick_at_deadline();
    assert_eq!(rig.now(), expires_at.plus(policy.code_grace));
    assert_eq!(
        fx,
        vec![
            Effect::StopPairing,
            end(PairingStatus::Expired, "qr_expired"),
            transition(S::Pairing, S::QrRequired, "qr_expired", None),
        ]
    );
    assert_eq!(rig.m.state(), S::QrRequired);
    assert_eq!(rig.m.deadline(), None);
    // A late code for the dead pairing shows nothing.
    assert_eq!(rig.qr("ref-late"), vec![]);
    assert_eq!(rig.send(Input::Tick), vec![]);
}

#[test]
fn a_pairing_without_a_first_code_fails_after_the_timeout() {
    let policy = exact();
    let mut rig = Rig::pairing();
    let started = rig.now();
    let fx = rig.tick_at_deadline();
    assert_eq!(rig.now(), started.plus(policy.first_code_timeout));
    assert_eq!(
        fx,
        vec![
            Effect::StopPairing,
            end(PairingStatus::Failed, "no_code_issued"),
            transition(S::Pairing, S::QrRequired, "pairing_failed", Some("no code was issued in time")),
        ]
    );
    assert_eq!(rig.m.deadline(), None);
}

#[test]
fn the_code_after_max_codes_exhausts_the_pairing() {
    let policy = exact();
    let mut rig = Rig::pairing();
    for rotation in 1..=policy.max_codes {
        rig.advance(QR_TTL);
        let code = format!("ref-{rotation}");
        let expires_at = rig.now().plus(QR_TTL);
        assert_eq!(rig.qr(&code), vec![show_qr(&code, rotation, expires_at)]);
    }
    rig.advance(QR_TTL);
    assert_eq!(
        rig.qr("ref-7"),
        vec![
            Effect::StopPairing,
            end(PairingStatus::Exhausted, "qr_codes_exhausted"),
            transition(S::Pairing, S::QrRequired, "qr_codes_exhausted", None),
        ]
    );
    assert_eq!(rig.m.state(), S::QrRequired);
    assert_eq!(rig.m.deadline(), None);
}

#[test]
fn max_codes_comes_from_the_policy() {
    let mut rig = Rig::with(S::Created, SessionPolicy { max_codes: 1, ..exact() });
    rig.send(Input::PairingRequested(PairingMethod::Qr));
    assert_eq!(rig.qr("ref-1").len(), 1);
    let fx = rig.qr("ref-2");
    assert_eq!(fx.last(), Some(&transition(S::Pairing, S::QrRequired, "qr_codes_exhausted", None)));
}

#[test]
fn the_backend_saying_exhausted_ends_the_pairing() {
    let mut rig = Rig::pairing();
    rig.qr("ref-1");
    assert_eq!(
        rig.signal(SessionSignal::QrExhausted),
        vec![
            Effect::StopPairing,
            end(PairingStatus::Exhausted, "qr_codes_exhausted"),
            transition(S::Pairing, S::QrRequired, "qr_codes_exhausted", None),
        ]
    );
    // Outside a pairing the signal means nothing.
    assert_eq!(rig.signal(SessionSignal::QrExhausted), vec![]);
    let mut rig = Rig::new(S::Connected);
    assert_eq!(rig.signal(SessionSignal::QrExhausted), vec![]);
}

#[test]
fn a_scan_connects_the_line_with_the_account_as_reason() {
    let mut rig = Rig::pairing();
    rig.qr("ref-1");
    rig.advance(Duration::from_secs(4));
    assert_eq!(
        rig.signal(connected(Some("972501234567"))),
        vec![
            end(PairingStatus::Paired, "paired"),
            transition(S::Pairing, S::Connected, "paired", Some("972501234567")),
        ]
    );
    assert_eq!(rig.m.state(), S::Connected);
    // The expired code's deadline is gone with the pairing.
    assert_eq!(rig.m.deadline(), None);
    rig.advance(Duration::from_secs(60));
    assert_eq!(rig.send(Input::Tick), vec![]);
    assert_eq!(rig.m.state(), S::Connected);
}

#[test]
fn restarting_a_pairing_stops_the_old_one_without_a_second_transition() {
    let policy = exact();
    let mut rig = Rig::pairing();
    rig.qr("ref-1");
    rig.qr("ref-2");
    rig.advance(Duration::from_secs(10));
    let fx = rig.send(Input::PairingRequested(PairingMethod::Qr));
    assert_eq!(fx, vec![Effect::StopPairing, Effect::StartPairing(PairingMethod::Qr)]);
    assert_eq!(rig.m.state(), S::Pairing);
    // The new pairing waits for its own first code, counted from the restart.
    assert_eq!(rig.until_deadline(), Some(policy.first_code_timeout));
    let expires_at = rig.now().plus(QR_TTL);
    assert_eq!(rig.qr("ref-new"), vec![show_qr("ref-new", 1, expires_at)]);
}

#[test]
fn a_failed_pairing_start_needs_a_new_qr() {
    let mut rig = Rig::pairing();
    assert_eq!(
        rig.send(Input::PairingFailed { code: "provider_unavailable".into() }),
        vec![
            end(PairingStatus::Failed, "pairing_failed"),
            transition(S::Pairing, S::QrRequired, "pairing_failed", Some("provider_unavailable")),
        ]
    );
    assert_eq!(rig.m.deadline(), None);
    // Not pairing: nothing to fail.
    assert_eq!(rig.send(Input::PairingFailed { code: "x".into() }), vec![]);
    let mut rig = Rig::new(S::Connected);
    assert_eq!(rig.send(Input::PairingFailed { code: "x".into() }), vec![]);
}

// ---- reconnect backoff ----

#[test]
fn backoff_doubles_from_the_base_up_to_the_cap() {
    let policy = exact();
    let secs: Vec<u64> = (1..=11).map(|a| policy.backoff(a).as_secs()).collect();
    assert_eq!(secs, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    assert_eq!(policy.backoff(0), Duration::from_secs(2));
    assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(300));
}

#[test]
fn network_loss_reconnects_on_the_exact_backoff_schedule() {
    let mut rig = Rig::new(S::Connected);
    assert_eq!(
        rig.signal(disconnected()),
        vec![transition(S::Connected, S::Reconnecting, "network_lost", Some("stream closed"))]
    );
    assert_eq!(rig.m.reconnect_attempt(), Some(1));
    let expected = [2, 4, 8, 16, 32, 64, 128, 256, 300, 300];
    for (i, secs) in expected.into_iter().enumerate() {
        let attempt = u32::try_from(i + 1).unwrap();
        assert_eq!(rig.until_deadline(), Some(Duration::from_secs(secs)), "delay before attempt {attempt}");
        // No attempt until the clock reaches the deadline, then exactly one.
        assert_eq!(rig.tick_at_deadline(), vec![Effect::Reconnect { attempt }]);
        assert_eq!(rig.m.reconnect_attempt(), Some(attempt));
        // While the attempt is in flight there is nothing to wake for.
        assert_eq!(rig.m.deadline(), None);
        assert_eq!(rig.send(Input::Tick), vec![]);
        assert_eq!(rig.send(Input::ReconnectFailed { code: "timeout".into(), line_state: None }), vec![]);
        assert_eq!(rig.m.state(), S::Reconnecting);
    }
    assert_eq!(rig.m.reconnect_attempt(), Some(11));
    // Reconnected: the schedule resets.
    assert_eq!(
        rig.signal(connected(Some("972501234567"))),
        vec![transition(S::Reconnecting, S::Connected, "reconnected", Some("972501234567"))]
    );
    assert_eq!(rig.m.reconnect_attempt(), None);
    assert_eq!(rig.m.deadline(), None);
    rig.signal(disconnected());
    assert_eq!(rig.m.reconnect_attempt(), Some(1));
    assert_eq!(rig.until_deadline(), Some(Duration::from_secs(2)));
}

#[test]
fn a_disconnect_during_an_attempt_counts_as_its_failure() {
    let mut rig = Rig::new(S::Connected);
    rig.signal(disconnected());
    assert_eq!(rig.tick_at_deadline(), vec![Effect::Reconnect { attempt: 1 }]);
    // The attempt's connection drops: the next attempt is scheduled.
    assert_eq!(rig.signal(disconnected()), vec![]);
    assert_eq!(rig.m.reconnect_attempt(), Some(2));
    assert_eq!(rig.until_deadline(), Some(Duration::from_secs(4)));
    // Another drop while only waiting keeps the attempt number and restarts its delay.
    rig.advance(Duration::from_secs(1));
    assert_eq!(rig.signal(disconnected()), vec![]);
    assert_eq!(rig.m.reconnect_attempt(), Some(2));
    assert_eq!(rig.until_deadline(), Some(Duration::from_secs(4)));
}

#[test]
fn rejected_credentials_forget_them_and_need_a_new_qr() {
    let mut rig = Rig::new(S::Connected);
    rig.signal(disconnected());
    rig.tick_at_deadline();
    assert_eq!(
        rig.send(Input::ReconnectFailed { code: "401".into(), line_state: Some(S::QrRequired) }),
        vec![
            Effect::ForgetCredentials,
            transition(S::Reconnecting, S::QrRequired, "credentials_rejected", Some("401"))
        ]
    );
    assert_eq!(rig.m.reconnect_attempt(), None);
    assert_eq!(rig.m.deadline(), None);
}

#[test]
fn a_reconnect_failure_outside_reconnecting_is_ignored() {
    for state in [S::Connected, S::Pairing, S::QrRequired, S::Blocked] {
        let mut rig = Rig::new(state);
        let fx = rig.send(Input::ReconnectFailed { code: "401".into(), line_state: Some(S::QrRequired) });
        assert_eq!(fx, vec![], "in {state:?}");
        assert_eq!(rig.m.state(), state);
    }
}

// ---- signals from WhatsApp ----

#[test]
fn logout_from_the_phone_forgets_credentials_and_needs_a_new_qr() {
    // Each state reached from connected by a signal (none for connected itself).
    let setups = [
        (S::Connected, None),
        (S::Reconnecting, Some(disconnected())),
        (S::Restricted, Some(SessionSignal::RateLimited { reason: "429".into(), retry_after: None })),
    ];
    for (state, setup) in setups {
        let mut rig = Rig::new(S::Connected);
        if let Some(signal) = setup {
            rig.signal(signal);
        }
        assert_eq!(rig.m.state(), state);
        assert_eq!(
            rig.signal(SessionSignal::LoggedOut { reason: "device removed".into() }),
            vec![Effect::ForgetCredentials, transition(state, S::QrRequired, "logged_out", Some("device removed"))],
            "from {state:?}"
        );
        // No reconnect or lift remains scheduled.
        assert_eq!(rig.m.deadline(), None, "from {state:?}");
        assert_eq!(rig.m.reconnect_attempt(), None);
    }
}

#[test]
fn logout_while_pairing_blocked_or_already_needing_a_qr_is_ignored() {
    let mut rig = Rig::pairing();
    rig.qr("ref-1");
    assert_eq!(rig.signal(SessionSignal::LoggedOut { reason: "x".into() }), vec![]);
    assert_eq!(rig.m.state(), S::Pairing);
    let mut rig = Rig::new(S::QrRequired);
    assert_eq!(rig.signal(SessionSignal::LoggedOut { reason: "x".into() }), vec![]);
    // A banned number stays blocked (a new pairing is its way out).
    let mut rig = Rig::new(S::Blocked);
    assert_eq!(rig.signal(SessionSignal::LoggedOut { reason: "x".into() }), vec![]);
    assert_eq!(rig.m.state(), S::Blocked);
}

#[test]
fn a_ban_blocks_the_line() {
    let mut rig = Rig::new(S::Connected);
    assert_eq!(
        rig.signal(SessionSignal::Banned { reason: "spam".into() }),
        vec![transition(S::Connected, S::Blocked, "banned", Some("spam"))]
    );
    assert_eq!(rig.m.state(), S::Blocked);
    // A second ban changes nothing.
    assert_eq!(rig.signal(SessionSignal::Banned { reason: "spam".into() }), vec![]);

    // While reconnecting: the pending attempt is dropped.
    let mut rig = Rig::new(S::Connected);
    rig.signal(disconnected());
    assert_eq!(
        rig.signal(SessionSignal::Banned { reason: "spam".into() }),
        vec![transition(S::Reconnecting, S::Blocked, "banned", Some("spam"))]
    );
    assert_eq!(rig.m.deadline(), None);
}

#[test]
fn a_ban_during_pairing_cancels_the_pairing() {
    let mut rig = Rig::pairing();
    rig.qr("ref-1");
    assert_eq!(
        rig.signal(SessionSignal::Banned { reason: "spam".into() }),
        vec![
            Effect::StopPairing,
            end(PairingStatus::Cancelled, "banned"),
            transition(S::Pairing, S::Blocked, "banned", Some("spam")),
        ]
    );
    assert_eq!(rig.m.deadline(), None);
}

#[test]
fn a_restriction_holds_until_the_session_connects_again() {
    let mut rig = Rig::new(S::Connected);
    assert_eq!(
        rig.signal(SessionSignal::Restricted { reason: "quality".into() }),
        vec![transition(S::Connected, S::Restricted, "restricted", Some("quality"))]
    );
    // No timed lift for a restriction.
    assert_eq!(rig.m.deadline(), None);
    rig.advance(Duration::from_secs(3600));
    assert_eq!(rig.send(Input::Tick), vec![]);
    assert_eq!(rig.m.state(), S::Restricted);
    assert_eq!(rig.signal(connected(None)), vec![transition(S::Restricted, S::Connected, "reconnected", None)]);
    // From reconnecting as well; the pending attempt is dropped.
    let mut rig = Rig::new(S::Connected);
    rig.signal(disconnected());
    assert_eq!(
        rig.signal(SessionSignal::Restricted { reason: "quality".into() }),
        vec![transition(S::Reconnecting, S::Restricted, "restricted", Some("quality"))]
    );
    assert_eq!(rig.m.deadline(), None);
    // Not while pairing or needing a QR.
    for state in [S::Pairing, S::QrRequired, S::Created, S::Blocked] {
        let mut rig = Rig::new(state);
        assert_eq!(rig.signal(SessionSignal::Restricted { reason: "quality".into() }), vec![], "in {state:?}");
    }
}

#[test]
fn a_rate_limit_restricts_until_the_wait_ends() {
    let mut rig = Rig::new(S::Connected);
    let wait = Duration::from_secs(600);
    let start = rig.now();
    assert_eq!(
        rig.signal(SessionSignal::RateLimited { reason: "too many messages".into(), retry_after: Some(wait) }),
        vec![transition(S::Connected, S::Restricted, "rate_limited", Some("too many messages"))]
    );
    assert_eq!(rig.m.deadline(), Some(start.plus(wait)));
    // The session reconnecting in the meantime does not lift it.
    rig.advance(Duration::from_secs(300));
    assert_eq!(rig.signal(connected(None)), vec![]);
    assert_eq!(rig.m.state(), S::Restricted);
    assert_eq!(rig.tick_at_deadline(), vec![transition(S::Restricted, S::Connected, "rate_limit_lifted", None)]);
    assert_eq!(rig.now(), start.plus(wait));
    assert_eq!(rig.m.deadline(), None);
}

#[test]
fn a_rate_limit_without_a_wait_uses_the_default_and_later_limits_only_extend() {
    let policy = exact();
    let mut rig = Rig::new(S::Connected);
    let start = rig.now();
    rig.signal(SessionSignal::RateLimited { reason: "429".into(), retry_after: None });
    assert_eq!(rig.m.deadline(), Some(start.plus(policy.rate_limit_default)));
    // A shorter limit does not shorten the wait; no second transition either.
    assert_eq!(
        rig.signal(SessionSignal::RateLimited { reason: "429".into(), retry_after: Some(Duration::from_secs(1)) }),
        vec![]
    );
    assert_eq!(rig.m.deadline(), Some(start.plus(policy.rate_limit_default)));
    // A longer one extends it.
    let longer = policy.rate_limit_default + Duration::from_secs(60);
    rig.signal(SessionSignal::RateLimited { reason: "429".into(), retry_after: Some(longer) });
    assert_eq!(rig.m.deadline(), Some(start.plus(longer)));
    assert_eq!(rig.tick_at_deadline(), vec![transition(S::Restricted, S::Connected, "rate_limit_lifted", None)]);
    // Not while reconnecting or pairing.
    for state in [S::Reconnecting, S::Pairing, S::QrRequired] {
        let mut rig = Rig::new(state);
        assert_eq!(rig.signal(SessionSignal::RateLimited { reason: "429".into(), retry_after: None }), vec![]);
    }
}

#[test]
fn network_loss_while_restricted_reconnects() {
    let mut rig = Rig::new(S::Connected);
    rig.signal(SessionSignal::Restricted { reason: "quality".into() });
    assert_eq!(
        rig.signal(disconnected()),
        vec![transition(S::Restricted, S::Reconnecting, "network_lost", Some("stream closed"))]
    );
    assert_eq!(rig.until_deadline(), Some(Duration::from_secs(2)));
}

// ---- the session opening on a node ----

#[test]
fn opening_a_connected_or_reconnecting_session_reconnects_at_once() {
    let mut rig = Rig::new(S::Connected);
    assert_eq!(
        rig.send(Input::Opened),
        vec![transition(S::Connected, S::Reconnecting, "session_opened", None), Effect::Reconnect { attempt: 1 }]
    );
    assert_eq!(rig.m.reconnect_attempt(), Some(1));
    assert_eq!(rig.m.deadline(), None);
    // The attempt failing schedules the second one on the backoff.
    rig.send(Input::ReconnectFailed { code: "timeout".into(), line_state: None });
    assert_eq!(rig.m.reconnect_attempt(), Some(2));
    assert_eq!(rig.until_deadline(), Some(Duration::from_secs(4)));

    // Already reconnecting (taken over from another node): no transition, attempt 1 at once.
    let mut rig = Rig::new(S::Reconnecting);
    assert_eq!(rig.send(Input::Opened), vec![Effect::Reconnect { attempt: 1 }]);
    assert_eq!(rig.signal(connected(None)), vec![transition(S::Reconnecting, S::Connected, "reconnected", None)]);

    let mut rig = Rig::new(S::Restricted);
    assert_eq!(
        rig.send(Input::Opened),
        vec![transition(S::Restricted, S::Reconnecting, "session_opened", None), Effect::Reconnect { attempt: 1 }]
    );
}

#[test]
fn opening_a_session_that_was_pairing_interrupts_the_pairing() {
    let mut rig = Rig::new(S::Pairing);
    assert_eq!(
        rig.send(Input::Opened),
        vec![
            end(PairingStatus::Cancelled, "pairing_interrupted"),
            transition(S::Pairing, S::QrRequired, "pairing_interrupted", None),
        ]
    );
    assert_eq!(rig.m.deadline(), None);
}

#[test]
fn opening_a_session_without_credentials_does_nothing() {
    for state in [S::Created, S::QrRequired, S::Blocked, S::AuthFailed] {
        let mut rig = Rig::new(state);
        assert_eq!(rig.send(Input::Opened), vec![], "in {state:?}");
        assert_eq!(rig.m.state(), state);
        assert_eq!(rig.m.deadline(), None);
    }
}

// ---- archive, sync, jitter ----

fn every_input() -> Vec<Input> {
    vec![
        Input::Opened,
        Input::PairingRequested(PairingMethod::Qr),
        Input::Signal(SessionSignal::Qr { code: "ref".into(), ttl: QR_TTL }),
        Input::Signal(SessionSignal::PhoneCode { code: "ABCD-EFGH".into(), ttl: QR_TTL }),
        Input::Signal(SessionSignal::QrExhausted),
        Input::Signal(connected(Some("972501234567"))),
        Input::Signal(disconnected()),
        Input::Signal(SessionSignal::LoggedOut { reason: "x".into() }),
        Input::Signal(SessionSignal::Banned { reason: "x".into() }),
        Input::Signal(SessionSignal::Restricted { reason: "x".into() }),
        Input::Signal(SessionSignal::RateLimited { reason: "x".into(), retry_after: None }),
        Input::PairingFailed { code: "x".into() },
        Input::ReconnectFailed { code: "x".into(), line_state: Some(S::QrRequired) },
        Input::Tick,
    ]
}

#[test]
fn an_archived_line_ignores_everything() {
    let mut rig = Rig::new(S::Archived);
    for input in every_input() {
        assert_eq!(rig.send(input.clone()), vec![], "{input:?}");
        assert_eq!(rig.m.state(), S::Archived);
        assert_eq!(rig.m.deadline(), None);
        rig.advance(Duration::from_secs(600));
    }
}

#[test]
fn archiving_under_a_running_machine_stops_it() {
    let mut rig = Rig::new(S::Connected);
    rig.signal(disconnected());
    assert!(rig.m.deadline().is_some());
    rig.m.sync(S::Archived);
    assert_eq!(rig.m.state(), S::Archived);
    assert_eq!(rig.m.deadline(), None);
    assert_eq!(rig.m.reconnect_attempt(), None);
    for input in every_input() {
        assert_eq!(rig.send(input.clone()), vec![], "{input:?}");
    }
}

#[test]
fn sync_drops_what_belonged_to_the_assumed_state() {
    // The machine was pairing, but another writer connected the line.
    let mut rig = Rig::pairing();
    rig.qr("ref-1");
    rig.m.sync(S::Connected);
    assert_eq!(rig.m.state(), S::Connected);
    assert_eq!(rig.m.deadline(), None);
    assert_eq!(rig.qr("ref-2"), vec![]);
    assert_eq!(
        rig.signal(disconnected()),
        vec![transition(S::Connected, S::Reconnecting, "network_lost", Some("stream closed"))]
    );

    // The machine was reconnecting, but the line needs a QR now: no attempt remains.
    let mut rig = Rig::new(S::Connected);
    rig.signal(disconnected());
    rig.m.sync(S::QrRequired);
    assert_eq!(rig.m.reconnect_attempt(), None);
    assert_eq!(rig.m.deadline(), None);
    rig.advance(Duration::from_secs(10));
    assert_eq!(rig.send(Input::Tick), vec![]);

    // The machine was rate limited, but the line is connected: the lift is gone.
    let mut rig = Rig::new(S::Connected);
    rig.signal(SessionSignal::RateLimited { reason: "429".into(), retry_after: None });
    rig.m.sync(S::Connected);
    assert_eq!(rig.m.deadline(), None);

    // Syncing to the state it already has keeps its plans.
    let mut rig = Rig::new(S::Connected);
    rig.signal(disconnected());
    rig.m.sync(S::Reconnecting);
    assert_eq!(rig.m.reconnect_attempt(), Some(1));
    assert_eq!(rig.until_deadline(), Some(Duration::from_secs(2)));
}

#[test]
fn jitter_stays_within_the_fraction() {
    let policy = SessionPolicy { backoff_jitter: 0.2, ..SessionPolicy::default() };
    for attempt in [1u32, 3, 9] {
        let base = policy.backoff(attempt);
        // Whole milliseconds: the machine's clock has millisecond resolution.
        let low = base.mul_f64(0.8).as_millis().saturating_sub(1);
        let high = base.mul_f64(1.2).as_millis();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..300 {
            let mut rig = Rig::with(S::Connected, policy.clone());
            rig.signal(disconnected());
            for _ in 1..attempt {
                rig.tick_at_deadline_jittered();
                rig.send(Input::ReconnectFailed { code: "timeout".into(), line_state: None });
            }
            assert_eq!(rig.m.reconnect_attempt(), Some(attempt));
            let delay = rig.until_deadline().expect("a scheduled attempt").as_millis();
            assert!((low..=high).contains(&delay), "attempt {attempt}: {delay} ms outside {low}..={high}");
            seen.insert(delay);
        }
        assert!(seen.len() > 10, "attempt {attempt}: the delays do not spread ({seen:?})");
    }
}

impl Rig {
    /// Moves the clock onto the deadline and ticks (for jittered deadlines).
    fn tick_at_deadline_jittered(&mut self) -> Vec<Effect> {
        let deadline = self.m.deadline().expect("a deadline");
        self.advance(deadline.since(self.now()));
        self.send(Input::Tick)
    }
}
