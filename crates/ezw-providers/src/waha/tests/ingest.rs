//! Webhooks: `X-Webhook-Hmac` verification (RFC 4231 vectors for the MAC itself, a real
//! signature accepted, forgeries refused before anything is read) and every fixture's mapping.

use ezw_core::model::{LifecycleState, MediaKind, MessageKind, MessageStatus};
use ezw_core::ports::{InboundRequest, LineProvider, ProviderErrorKind, ProviderEvent, SessionSignal};
use ezw_core::{PhoneNumber, Secret};

use super::{fixture, harness, line, signed, signed_with, webhook_fixtures, HMAC_KEY, LINE_ID};
use crate::waha::ingest::hmac_sha512;
use crate::waha::{compute_hmac, verify_hmac};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn hmac_sha512_matches_rfc_4231() {
    let cases: [(Vec<u8>, Vec<u8>, &str); 4] = [
        (
            vec![0x0b; 20],
            b"Hi There".to_vec(),
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
             daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
        ),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
        (
            vec![0xaa; 20],
            vec![0xdd; 50],
            "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39\
             bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
        ),
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
             6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
        ),
    ];
    for (key, data, expected) in cases {
        assert_eq!(hex(&hmac_sha512(&key, &data)), expected);
    }
}

#[test]
fn a_real_signature_verifies() {
    let body = fixture("event_message_text.json");
    let request = signed(&body);
    // The header is the hex HMAC-SHA512 of the exact bytes with the configured key.
    assert_eq!(request.header("x-webhook-hmac").unwrap(), hex(&hmac_sha512(HMAC_KEY.as_bytes(), body.as_bytes())));
    assert_eq!(request.header("x-webhook-hmac").unwrap().len(), 128);
    verify_hmac(&Secret::new(HMAC_KEY), &request).unwrap();
    // Upper-case hex is the same signature.
    let mut upper = request.clone();
    upper.headers[1].1 = upper.headers[1].1.to_ascii_uppercase();
    assert!(verify_hmac(&Secret::new(HMAC_KEY), &upper).is_ok());
    // Without the algorithm header WAHA's only algorithm is assumed.
    let mut bare = request.clone();
    bare.headers.retain(|(k, _)| k != "x-webhook-hmac-algorithm");
    assert!(verify_hmac(&Secret::new(HMAC_KEY), &bare).is_ok());
}

fn refused(request: &InboundRequest) {
    let e = verify_hmac(&Secret::new(HMAC_KEY), request).unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Unauthorized, "invalid_signature"));
}

#[test]
fn forged_signatures_are_refused() {
    let body = fixture("event_message_text.json");
    // Signed with another key.
    refused(&signed_with("another-key-0123456789", &body));
    // One byte of the body changed after signing.
    let mut tampered = signed(&body);
    let i = tampered.body.iter().position(|b| *b == b'?').unwrap();
    tampered.body[i] = b'!';
    refused(&tampered);
    // One hex digit of the signature changed.
    let mut flipped = signed(&body);
    let sig = &mut flipped.headers[1].1;
    let last = if sig.ends_with('0') { '1' } else { '0' };
    sig.pop();
    sig.push(last);
    refused(&flipped);
    // Truncated, empty, missing.
    let mut truncated = signed(&body);
    truncated.headers[1].1.truncate(64);
    refused(&truncated);
    let mut empty = signed(&body);
    empty.headers[1].1.clear();
    refused(&empty);
    let mut missing = signed(&body);
    missing.headers.retain(|(k, _)| k != "x-webhook-hmac");
    refused(&missing);
    // Another algorithm is not accepted, even with a matching SHA-512 value.
    let mut sha256 = signed(&body);
    sha256.headers[2].1 = "sha256".into();
    refused(&sha256);
}

#[tokio::test]
async fn the_provider_verifies_before_it_reads_anything() {
    let h = harness();
    let line = line(&h.provider, "http://127.0.0.1:9", LifecycleState::Connected);
    // A forged request, even with an unreadable body, is unauthorized (not a payload error).
    let forged = signed_with("another-key-0123456789", "not json at all");
    let e = h.provider.ingest(&line, &forged).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Unauthorized);
    let e = h.provider.ingest(&line, &signed("not json at all")).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "invalid_payload"));
    // compute_hmac is what the tests sign with.
    assert_eq!(compute_hmac(&Secret::new(HMAC_KEY), b"{}").len(), 128);
}

async fn events(name: &str) -> Vec<ProviderEvent> {
    let h = harness();
    let line = line(&h.provider, "http://127.0.0.1:9", LifecycleState::Connected);
    let outcome = h.provider.ingest(&line, &signed(&fixture(name))).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!((outcome.response.status, outcome.response.body.as_str()), (200, "{}"), "{name}");
    outcome.events
}

async fn signal(name: &str) -> Option<SessionSignal> {
    let mut events = events(name).await;
    assert!(events.len() <= 1);
    events.pop().map(|e| match e {
        ProviderEvent::Session { line_id, signal, .. } => {
            assert_eq!(line_id.as_str(), LINE_ID);
            signal
        }
        other => panic!("{name}: {other:?}"),
    })
}

#[tokio::test]
async fn session_status_events_become_session_signals() {
    assert_eq!(
        signal("event_session_working.json").await,
        Some(SessionSignal::Connected { account: Some("15550783881".into()) })
    );
    assert!(matches!(signal("event_session_scan_qr.json").await, Some(SessionSignal::LoggedOut { .. })));
    assert!(matches!(signal("event_session_failed.json").await, Some(SessionSignal::Disconnected { .. })));
    assert_eq!(signal("event_session_stopped.json").await, None);
}

async fn inbound(name: &str) -> Box<ezw_core::ports::NewInbound> {
    match events(name).await.as_slice() {
        [ProviderEvent::Inbound(m)] => m.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

#[tokio::test]
async fn messages_become_inbound_messages() {
    let text = inbound("event_message_text.json").await;
    assert_eq!(text.from, PhoneNumber::parse("+972501234567").unwrap());
    assert_eq!(text.provider_message_id, "false_972501234567@c.us_3EB0A1B2C3D4E5F60718");
    assert_eq!(text.kind, MessageKind::Text);
    assert_eq!(text.content.body.as_deref(), Some("Hi, is the store open today?"));
    assert_eq!(text.profile_name.as_deref(), Some("Dana Levi"));
    assert_eq!(text.line_id.as_str(), LINE_ID);

    let image = inbound("event_message_image.json").await;
    assert_eq!(image.kind, MessageKind::Image);
    let media = image.content.media.as_ref().unwrap();
    assert_eq!(media.kind, MediaKind::Image);
    assert_eq!(media.url.as_deref(), Some("http://127.0.0.1:3000/api/files/ezw-support/3EB0IMAGE0000000001.jpeg"));
    assert_eq!((media.mime_type.as_deref(), media.caption.as_deref()), (Some("image/jpeg"), Some("The receipt")));

    let doc = inbound("event_message_document.json").await;
    assert_eq!(doc.kind, MessageKind::Document);
    let media = doc.content.media.as_ref().unwrap();
    assert_eq!((media.filename.as_deref(), media.caption.as_deref()), (Some("invoice.pdf"), None));

    let location = inbound("event_message_location.json").await;
    assert_eq!(location.kind, MessageKind::Location);
    let at = location.content.location.as_ref().unwrap();
    assert_eq!((at.latitude, at.longitude, at.name.as_deref()), (32.0853, 34.7818, Some("Dizengoff Center")));

    let reply = inbound("event_message_reply.json").await;
    assert_eq!(reply.content.reply_to.as_deref(), Some("true_972501234567@c.us_3EB0000000000000000A"));
    assert_eq!(reply.content.body.as_deref(), Some("Yes, that one"));
}

#[tokio::test]
async fn own_messages_groups_and_other_events_are_ignored() {
    for name in ["event_message_from_me.json", "event_message_group.json", "event_presence_update.json"] {
        assert!(events(name).await.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn acks_become_delivery_statuses() {
    let cases = [
        ("event_ack_server.json", Some(MessageStatus::Sent)),
        ("event_ack_device.json", Some(MessageStatus::Delivered)),
        ("event_ack_read.json", Some(MessageStatus::Read)),
        ("event_ack_played.json", Some(MessageStatus::Read)),
        ("event_ack_error.json", Some(MessageStatus::Failed)),
        ("event_ack_pending.json", None),
    ];
    for (name, expected) in cases {
        let got = events(name).await;
        match (got.as_slice(), expected) {
            ([], None) => {}
            ([ProviderEvent::Status(s)], Some(status)) => {
                assert_eq!(s.status, status, "{name}");
                assert_eq!(s.provider_message_id, "true_972501234567@c.us_3EB00000000000000001");
                assert_eq!(s.error.is_some(), status == MessageStatus::Failed, "{name}");
            }
            (other, _) => panic!("{name}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn every_fixture_is_accepted_with_a_200() {
    // (The privacy-id message needs a sidecar to resolve its sender: tested below.)
    for (name, _) in webhook_fixtures().into_iter().filter(|(n, _)| !n.contains("_lid")) {
        events(&name).await;
    }
}

#[tokio::test]
async fn another_session_and_unknown_routes_are_refused() {
    let h = harness();
    let line = line(&h.provider, "http://127.0.0.1:9", LifecycleState::Connected);
    let other = fixture("event_message_text.json").replace("\"session\": \"ezw-support\"", "\"session\": \"default\"");
    let e = h.provider.ingest(&line, &signed(&other)).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "session_mismatch"));
    let mut routed = signed(&fixture("event_message_text.json"));
    routed.route = "status".into();
    let e = h.provider.ingest(&line, &routed).await.unwrap_err();
    assert_eq!(e.code, "unknown_route");
}

#[tokio::test]
async fn a_sender_behind_a_privacy_id_is_looked_up_on_the_sidecar() {
    let mock = super::mock::WahaMock::start(Some(super::API_KEY)).await;
    mock.add_session(super::SESSION, "WORKING", Some(super::ACCOUNT));
    let h = harness();
    let line = line(&h.provider, &mock.url(), LifecycleState::Connected);
    let body = fixture("event_message_lid.json");
    // Unknown to WAHA: ignored (answered 200, nothing stored).
    let outcome = h.provider.ingest(&line, &signed(&body)).await.unwrap();
    assert!(outcome.events.is_empty());
    // Known: the message is from the number.
    mock.add_lid("204863123456789@lid", "972501234567@c.us");
    let outcome = h.provider.ingest(&line, &signed(&body)).await.unwrap();
    match outcome.events.as_slice() {
        [ProviderEvent::Inbound(m)] => {
            assert_eq!(m.from, PhoneNumber::parse("+972501234567").unwrap());
            assert_eq!(m.provider_message_id, "false_204863123456789@lid_3EB0LID0000000000001");
        }
        other => panic!("{other:?}"),
    }
    let lookup = mock.exchanges().into_iter().find(|e| e.path.contains("/lids/")).unwrap();
    assert_eq!(lookup.path, format!("/api/{}/lids/204863123456789@lid", super::SESSION));
    assert_eq!(lookup.header("x-api-key"), Some(super::API_KEY));
    // A forged lid event never reaches the sidecar.
    mock.clear();
    assert!(h.provider.ingest(&line, &signed_with("another-key-0123456789", &body)).await.is_err());
    assert!(mock.calls().is_empty());
    // The sidecar down: retryable, so WAHA redelivers.
    mock.fail(
        &format!("/api/{}/lids/204863123456789@lid", super::SESSION),
        503,
        serde_json::json!({"statusCode": 503}),
    );
    let e = h.provider.ingest(&line, &signed(&body)).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Retryable);
}
