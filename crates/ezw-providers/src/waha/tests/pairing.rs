//! Pairing and reconnecting on a manual clock: QR codes reported as WAHA rotates them, the
//! phone pairing, WAHA giving up, phone codes, and what `reconnect` makes of a session.

use std::time::Duration;

use ezw_core::model::{LifecycleState, PairingMethod};
use ezw_core::ports::{LineProvider, ProviderErrorKind, ProviderEvent, SessionSignal};
use ezw_core::{LineId, PhoneNumber};

use super::mock::WahaMock;
use super::{harness, line, next_event, until, Harness, ACCOUNT, API_KEY, LINE_ID, NOW_MS, POLL, SESSION};

fn signal(event: ProviderEvent) -> (SessionSignal, i64) {
    match event {
        ProviderEvent::Session { line_id, signal, at } => {
            assert_eq!(line_id.as_str(), LINE_ID);
            (signal, at.unix_ms())
        }
        other => panic!("expected a session signal, got {other:?}"),
    }
}

/// One poll cycle: move the clock to the next poll and wait until the watcher asked the mock
/// `calls` more times and sleeps again (or ended).
async fn poll(h: &Harness, mock: &WahaMock, calls: usize) {
    until(|| h.clock.pending_sleepers() == 1).await;
    let before = mock.calls().len();
    h.clock.advance(POLL);
    until(|| mock.calls().len() >= before + calls).await;
}

fn qr(code: &str, ttl: u64) -> SessionSignal {
    SessionSignal::Qr { code: code.into(), ttl: Duration::from_secs(ttl) }
}

#[tokio::test]
async fn qr_pairing_reports_each_rotated_code_then_the_pairing() {
    let mock = WahaMock::start(Some(API_KEY)).await;
    mock.add_session(SESSION, "STOPPED", None);
    mock.set_qr("2@QR-ONE");
    let mut h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Pairing);
    h.provider.start_pairing(&line, &PairingMethod::Qr).await.unwrap();
    // Credentials dropped and the session started; the first poll is immediate.
    assert_eq!(
        mock.calls()[..2],
        [format!("POST /api/sessions/{SESSION}/logout"), format!("POST /api/sessions/{SESSION}/start")]
    );
    assert_eq!(signal(next_event(&mut h.events).await), (qr("2@QR-ONE", 60), NOW_MS));
    let qr_call = mock.exchanges().into_iter().find(|e| e.path.ends_with("/auth/qr")).unwrap();
    assert_eq!(qr_call.query.as_deref(), Some("format=raw"));
    // The same code is not reported twice.
    poll(&h, &mock, 2).await;
    until(|| h.clock.pending_sleepers() == 1).await;
    assert!(h.events.try_recv().is_err(), "an unchanged code is not a rotation");
    // WAHA rotates: the new code lives 20 s, stamped on the provider clock.
    mock.set_qr("2@QR-TWO");
    poll(&h, &mock, 2).await;
    assert_eq!(signal(next_event(&mut h.events).await), (qr("2@QR-TWO", 20), NOW_MS + 4000));
    mock.set_qr("2@QR-THREE");
    poll(&h, &mock, 2).await;
    assert_eq!(signal(next_event(&mut h.events).await).0, qr("2@QR-THREE", 20));
    // The phone scans: connected as the account, and the watcher ends.
    mock.pair(SESSION, ACCOUNT);
    poll(&h, &mock, 1).await;
    assert_eq!(signal(next_event(&mut h.events).await).0, SessionSignal::Connected { account: Some(ACCOUNT.into()) });
    until(|| !h.provider.watching(&LineId::from_raw(LINE_ID))).await;
    assert_eq!(h.clock.pending_sleepers(), 0);
}

#[tokio::test]
async fn waha_giving_up_exhausts_the_pairing() {
    let mock = WahaMock::start(Some(API_KEY)).await;
    mock.add_session(SESSION, "WORKING", Some(ACCOUNT));
    let mut h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Pairing);
    h.provider.start_pairing(&line, &PairingMethod::Qr).await.unwrap();
    // Re-pairing a paired session logs it out first: it asks for a scan, not WORKING.
    assert!(matches!(signal(next_event(&mut h.events).await).0, SessionSignal::Qr { .. }));
    mock.set_status(SESSION, "FAILED");
    poll(&h, &mock, 1).await;
    assert_eq!(signal(next_event(&mut h.events).await).0, SessionSignal::QrExhausted);
    until(|| !h.provider.watching(&LineId::from_raw(LINE_ID))).await;
}

#[tokio::test]
async fn stop_pairing_stops_polling_and_the_sidecar_session() {
    let mock = WahaMock::start(Some(API_KEY)).await;
    mock.add_session(SESSION, "STOPPED", None);
    let mut h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Pairing);
    h.provider.start_pairing(&line, &PairingMethod::Qr).await.unwrap();
    next_event(&mut h.events).await;
    until(|| h.clock.pending_sleepers() == 1).await;
    h.provider.stop_pairing(&line).await;
    assert!(!h.provider.watching(&LineId::from_raw(LINE_ID)));
    assert_eq!(mock.calls().last().unwrap(), &format!("POST /api/sessions/{SESSION}/stop"));
    let before = mock.calls().len();
    h.clock.advance(POLL * 5);
    tokio::task::yield_now().await;
    assert_eq!(mock.calls().len(), before, "no polling after stop_pairing");
    assert!(h.events.try_recv().is_err());
}

#[tokio::test]
async fn a_lost_session_is_recreated_when_pairing_starts() {
    let mock = WahaMock::start(Some(API_KEY)).await;
    let mut h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::QrRequired);
    h.provider.start_pairing(&line, &PairingMethod::Qr).await.unwrap();
    assert_eq!(
        mock.calls()[..4],
        [
            format!("POST /api/sessions/{SESSION}/logout"),
            format!("PUT /api/sessions/{SESSION}"),
            "POST /api/sessions".to_owned(),
            format!("POST /api/sessions/{SESSION}/start"),
        ]
    );
    assert!(matches!(signal(next_event(&mut h.events).await).0, SessionSignal::Qr { .. }));
    h.provider.close_session(&line).await;
    assert!(!h.provider.watching(&LineId::from_raw(LINE_ID)));
}

#[tokio::test]
async fn phone_code_pairing_requests_a_code_for_the_lines_number() {
    let mock = WahaMock::start(Some(API_KEY)).await;
    mock.add_session(SESSION, "STOPPED", None);
    let mut h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Pairing);
    let phone = PhoneNumber::from_raw(format!("+{ACCOUNT}"));
    h.provider.start_pairing(&line, &PairingMethod::PhoneCode { phone }).await.unwrap();
    let request = mock.exchanges().into_iter().find(|e| e.path.ends_with("/auth/request-code")).unwrap();
    assert_eq!(request.path, format!("/api/{SESSION}/auth/request-code"));
    assert_eq!(request.json(), serde_json::json!({"phoneNumber": ACCOUNT}));
    assert_eq!(
        signal(next_event(&mut h.events).await).0,
        SessionSignal::PhoneCode { code: "ABCD-EFGH".into(), ttl: Duration::from_secs(180) }
    );
    // No QR codes in this mode; the phone typing the code pairs the line.
    until(|| h.clock.pending_sleepers() == 1).await;
    mock.pair(SESSION, ACCOUNT);
    poll(&h, &mock, 1).await;
    assert_eq!(signal(next_event(&mut h.events).await).0, SessionSignal::Connected { account: Some(ACCOUNT.into()) });
    assert!(!mock.calls().iter().any(|c| c.ends_with("/auth/qr")));
}

#[tokio::test]
async fn a_failed_pairing_start_is_an_error_for_the_driver() {
    let mock = WahaMock::start(Some(API_KEY)).await;
    mock.add_session(SESSION, "STOPPED", None);
    mock.fail(&format!("/api/sessions/{SESSION}/start"), 500, serde_json::json!({"statusCode": 500, "message": "x"}));
    let h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Pairing);
    let e = h.provider.start_pairing(&line, &PairingMethod::Qr).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Retryable);
    assert!(!h.provider.watching(&LineId::from_raw(LINE_ID)));
}

#[tokio::test]
async fn reconnect_reads_what_the_started_session_says() {
    let mock = WahaMock::start(Some(API_KEY)).await;
    let h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Reconnecting);
    // Stored credentials: WORKING.
    mock.add_session(SESSION, "STOPPED", Some(ACCOUNT));
    h.provider.reconnect(&line).await.unwrap();
    assert_eq!(mock.calls(), [format!("POST /api/sessions/{SESSION}/start"), format!("GET /api/sessions/{SESSION}")]);
    // No credentials: a new QR scan is needed.
    mock.add_session(SESSION, "STOPPED", None);
    let e = h.provider.reconnect(&line).await.unwrap_err();
    assert_eq!((e.kind, e.line_state), (ProviderErrorKind::LineUnavailable, Some(LifecycleState::QrRequired)));
    // Still starting, or failed: try again later.
    for status in ["STARTING", "FAILED"] {
        mock.add_session(SESSION, "STOPPED", Some(ACCOUNT));
        mock.start_leads_to(status);
        let e = h.provider.reconnect(&line).await.unwrap_err();
        assert_eq!((e.kind, e.line_state), (ProviderErrorKind::Retryable, None), "{status}");
        assert_eq!(e.code, format!("session_{}", status.to_ascii_lowercase()));
    }
}

#[tokio::test]
async fn health_hands_the_sidecars_view_to_the_lifecycle_machine() {
    let mock = WahaMock::start(Some(API_KEY)).await;
    mock.add_session(SESSION, "WORKING", Some(ACCOUNT));
    let mut h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Reconnecting);
    // Without wakeup nothing is asked.
    let health = h.provider.health(&line, false).await.unwrap();
    assert_eq!(health.lifecycle_state, LifecycleState::Reconnecting);
    assert!(mock.calls().is_empty());
    // With wakeup the status becomes a signal; the state stays the machine's to change.
    let health = h.provider.health(&line, true).await.unwrap();
    assert_eq!(health.lifecycle_state, LifecycleState::Reconnecting);
    assert_eq!(signal(next_event(&mut h.events).await).0, SessionSignal::Connected { account: Some(ACCOUNT.into()) });
}
