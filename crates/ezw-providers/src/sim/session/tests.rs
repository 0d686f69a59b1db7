//! The simulator's QR flow on a manual clock.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ezw_core::model::{LifecycleState, Line, MessageContent, MessageKind, PairingMethod, ProviderKind};
use ezw_core::ports::{EventSink, LineProvider, ProviderErrorKind, ProviderEvent, SessionSignal};
use ezw_core::{ManualClock, PhoneNumber, Timestamp};
use tokio::sync::mpsc::UnboundedReceiver;

use super::{qr_string, SimScanError};
use crate::sim::SimProvider;

fn setup() -> (SimProvider, ManualClock, UnboundedReceiver<ProviderEvent>) {
    let clock = ManualClock::new(Timestamp::from_unix_ms(1_800_000_000_000));
    let (sink, rx) = EventSink::channel();
    (SimProvider::new(Arc::new(clock.clone()), sink), clock, rx)
}

fn qr_line(sim: &SimProvider, config: serde_json::Value) -> Line {
    let config = sim.validate_config(&config).unwrap();
    Line {
        phone_number: PhoneNumber::parse("+972501234567").unwrap(),
        lifecycle_state: sim.initial_state(&config),
        ..ezw_core::testing::line(ProviderKind::Simulator, config)
    }
}

/// Lets the spawned rotation task run after a clock change (single-threaded test runtime).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// The session signals emitted so far.
async fn signals(rx: &mut UnboundedReceiver<ProviderEvent>) -> Vec<SessionSignal> {
    settle().await;
    let mut out = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let ProviderEvent::Session { signal, .. } = event {
            out.push(signal);
        }
    }
    out
}

fn qr_of(signal: &SessionSignal) -> (String, Duration) {
    match signal {
        SessionSignal::Qr { code, ttl } => (code.clone(), *ttl),
        other => panic!("expected a QR code, got {other:?}"),
    }
}

#[tokio::test]
async fn qr_lines_start_unpaired_and_only_they_run_sessions() {
    let (sim, _clock, _rx) = setup();
    let qr = qr_line(&sim, serde_json::json!({"pairing": "qr"}));
    let plain = qr_line(&sim, serde_json::json!({}));
    assert_eq!(qr.lifecycle_state, LifecycleState::Created);
    assert_eq!(plain.lifecycle_state, LifecycleState::Connected);
    assert!(sim.runs_session(&qr) && !sim.runs_session(&plain));
    let caps = sim.capabilities();
    assert!(caps.qr_pairing && caps.phone_code_pairing);
    assert_eq!(sim.describe_config(&qr.provider_config), serde_json::json!({"pairing": "qr"}));
}

#[tokio::test]
async fn codes_rotate_on_the_clock_then_run_out() {
    let (sim, clock, mut rx) = setup();
    let line = qr_line(&sim, serde_json::json!({"pairing": "qr", "qrCodes": 3}));
    sim.start_pairing(&line, &PairingMethod::Qr).await.unwrap();
    let first = signals(&mut rx).await;
    assert_eq!(first.len(), 1);
    let (code1, ttl1) = qr_of(&first[0]);
    assert_eq!(ttl1, Duration::from_secs(60));
    assert_eq!(sim.current_code(&line.id).as_deref(), Some(code1.as_str()));

    clock.advance(Duration::from_millis(59_999));
    assert!(signals(&mut rx).await.is_empty(), "no rotation before the first code expires");
    clock.advance(Duration::from_millis(1));
    let second = signals(&mut rx).await;
    assert_eq!(second.len(), 1);
    let (code2, ttl2) = qr_of(&second[0]);
    assert_eq!(ttl2, Duration::from_secs(20));
    assert_ne!(code1, code2, "every rotation has its own code");

    clock.advance(Duration::from_secs(20));
    let (code3, _) = qr_of(&signals(&mut rx).await[0]);
    assert!(code3 != code1 && code3 != code2);
    assert_eq!(sim.scan(&line.id, &code2), Err(SimScanError::QrMismatch), "an older rotation does not scan");

    clock.advance(Duration::from_secs(20));
    assert_eq!(signals(&mut rx).await, vec![SessionSignal::QrExhausted]);
    assert_eq!(sim.current_code(&line.id), None);
    assert_eq!(sim.scan(&line.id, &code3), Err(SimScanError::NoPairing));
    clock.advance(Duration::from_secs(600));
    assert!(signals(&mut rx).await.is_empty(), "nothing after exhaustion");
    assert_eq!(clock.pending_sleepers(), 0);
}

#[tokio::test]
async fn scanning_the_current_code_pairs_the_line() {
    let (sim, clock, mut rx) = setup();
    let line = qr_line(&sim, serde_json::json!({"pairing": "qr"}));
    let message = ezw_core::testing::outbound(
        MessageKind::Text,
        MessageContent { body: Some("hi".into()), ..MessageContent::default() },
        PhoneNumber::parse("+15550000001").unwrap(),
    );
    let err = sim.send(&line, &message).await.unwrap_err();
    assert_eq!((err.kind, err.line_state), (ProviderErrorKind::LineUnavailable, Some(LifecycleState::QrRequired)));
    assert_eq!(sim.scan(&line.id, "2@whatever"), Err(SimScanError::NoPairing));

    sim.start_pairing(&line, &PairingMethod::Qr).await.unwrap();
    let (code, _) = qr_of(&signals(&mut rx).await[0]);
    assert_eq!(sim.scan(&line.id, "2@not-the-code"), Err(SimScanError::QrMismatch));
    assert_eq!(SimScanError::QrMismatch.code(), "qr_mismatch");
    sim.scan(&line.id, &code).unwrap();
    assert_eq!(signals(&mut rx).await, vec![SessionSignal::Connected { account: Some("972501234567".into()) }]);
    assert!(sim.is_paired(&line.id));
    assert_eq!(sim.scan(&line.id, &code), Err(SimScanError::NoPairing), "a code scans once");
    sim.reconnect(&line).await.unwrap();
    sim.send(&line, &message).await.unwrap();

    // The rotation task of the scanned pairing stops at its next wake-up.
    clock.advance(Duration::from_secs(600));
    assert!(signals(&mut rx).await.is_empty());
    assert_eq!(clock.pending_sleepers(), 0);
}

#[tokio::test]
async fn a_stopped_or_replaced_pairing_issues_no_more_codes() {
    let (sim, clock, mut rx) = setup();
    let line = qr_line(&sim, serde_json::json!({"pairing": "qr"}));
    sim.start_pairing(&line, &PairingMethod::Qr).await.unwrap();
    let (first, _) = qr_of(&signals(&mut rx).await[0]);
    sim.stop_pairing(&line).await;
    assert_eq!(sim.current_code(&line.id), None);
    clock.advance(Duration::from_secs(60));
    assert!(signals(&mut rx).await.is_empty(), "the stale rotation task stopped");

    // A new pairing: new codes, and exactly one rotation task.
    sim.start_pairing(&line, &PairingMethod::Qr).await.unwrap();
    let (again, _) = qr_of(&signals(&mut rx).await[0]);
    assert_ne!(first, again);
    sim.start_pairing(&line, &PairingMethod::Qr).await.unwrap();
    let (third, _) = qr_of(&signals(&mut rx).await[0]);
    assert_ne!(again, third);
    clock.advance(Duration::from_secs(60));
    let rotated = signals(&mut rx).await;
    assert_eq!(rotated.len(), 1, "only the current pairing rotates: {rotated:?}");
    assert_eq!(sim.current_code(&line.id), Some(qr_of(&rotated[0]).0));
}

#[tokio::test]
async fn phone_codes_look_like_whatsapps_and_scan_as_typed() {
    let (sim, _clock, mut rx) = setup();
    let line = qr_line(&sim, serde_json::json!({"pairing": "qr"}));
    let method = PairingMethod::PhoneCode { phone: line.phone_number.clone() };
    sim.start_pairing(&line, &method).await.unwrap();
    let signal = signals(&mut rx).await.remove(0);
    let SessionSignal::PhoneCode { code, ttl } = signal else { panic!("expected a phone code, got {signal:?}") };
    assert_eq!(ttl, Duration::from_secs(60));
    assert_eq!(code.len(), 9);
    assert_eq!(code.as_bytes()[4], b'-');
    assert!(code.chars().filter(|c| *c != '-').all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()), "{code}");
    sim.scan(&line.id, &code.replace('-', "").to_ascii_lowercase()).unwrap();
    assert!(sim.is_paired(&line.id));
}

#[test]
fn qr_strings_have_whatsapps_shape() {
    let line = ezw_core::LineId::from_raw("line_01QR");
    let code = qr_string(&line, 1, 1);
    let parts: Vec<&str> = code.split(',').collect();
    assert_eq!(parts.len(), 4, "{code}");
    assert!(parts[0].starts_with("2@") && parts[0].len() > 20, "{code}");
    for key in &parts[1..] {
        assert_eq!(STANDARD.decode(key).unwrap().len(), 32, "{code}");
    }
    assert_eq!(code, qr_string(&line, 1, 1), "deterministic");
    let next = qr_string(&line, 1, 2);
    assert_ne!(code, next);
    assert_eq!(code.split(',').skip(1).collect::<Vec<_>>(), next.split(',').skip(1).collect::<Vec<_>>(), "same keys");
    assert_ne!(code, qr_string(&line, 2, 1));
}

#[tokio::test]
async fn the_phone_and_the_network_can_be_scripted() {
    let (sim, _clock, mut rx) = setup();
    let line = qr_line(&sim, serde_json::json!({"pairing": "qr"}));
    let err = sim.reconnect(&line).await.unwrap_err();
    assert_eq!((err.kind, err.line_state), (ProviderErrorKind::LineUnavailable, Some(LifecycleState::QrRequired)));
    sim.start_pairing(&line, &PairingMethod::Qr).await.unwrap();
    let (code, _) = qr_of(&signals(&mut rx).await[0]);
    sim.scan(&line.id, &code).unwrap();
    let _ = signals(&mut rx).await;

    sim.drop_connection(&line.id);
    assert!(matches!(signals(&mut rx).await.as_slice(), [SessionSignal::Disconnected { .. }]));
    sim.fail_reconnects(&line.id, 2);
    for _ in 0..2 {
        assert_eq!(sim.reconnect(&line).await.unwrap_err().kind, ProviderErrorKind::Retryable);
    }
    sim.reconnect(&line).await.unwrap();

    sim.signal(&line.id, SessionSignal::RateLimited { reason: "429".into(), retry_after: None });
    assert!(matches!(signals(&mut rx).await.as_slice(), [SessionSignal::RateLimited { .. }]));

    sim.unlink_from_phone(&line.id);
    assert!(matches!(signals(&mut rx).await.as_slice(), [SessionSignal::LoggedOut { .. }]));
    assert!(!sim.is_paired(&line.id));
    assert_eq!(sim.reconnect(&line).await.unwrap_err().line_state, Some(LifecycleState::QrRequired));

    // logout forgets too.
    sim.start_pairing(&line, &PairingMethod::Qr).await.unwrap();
    let (code, _) = qr_of(&signals(&mut rx).await[0]);
    sim.scan(&line.id, &code).unwrap();
    sim.logout(&line).await.unwrap();
    assert!(!sim.is_paired(&line.id));
}
