//! Tests for the WAHA provider: configuration, HMAC verification and webhook fixtures, exact
//! wire requests and error classification against a local WAHA mock, pairing on a manual clock,
//! and the mock and fixtures checked against WAHA's OpenAPI spec.

use std::sync::Arc;
use std::time::Duration;

use ezw_core::crypto::{derive_key, SecretCipher};
use ezw_core::ids::{ConversationId, LineId, MessageId, OrganizationId};
use ezw_core::model::{LifecycleState, Line, MessageContent, MessageKind, ProviderKind};
use ezw_core::ports::{EventSink, InboundRequest, LineProvider, OutboundMessage, ProviderEvent};

use ezw_core::{ManualClock, PhoneNumber, Secret, Timestamp};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use super::{compute_hmac, WahaOptions, WahaProvider};

mod client;
mod config;
mod ingest;
mod mock;
mod pairing;
mod spec;

pub(super) const LINE_ID: &str = "line_01waha";
pub(super) const ORG_ID: &str = "org_01waha";
pub(super) const SESSION: &str = "ezw-support";
pub(super) const API_KEY: &str = "waha-api-key-0123456789";
pub(super) const HMAC_KEY: &str = "hmac-key-0123456789abcdef";
pub(super) const CUSTOMER: &str = "+972501234567";
pub(super) const ACCOUNT: &str = "15550783881";
pub(super) const NOW_MS: i64 = 1_767_225_600_000;
pub(super) const POLL: Duration = Duration::from_secs(2);

pub(super) fn cipher() -> SecretCipher {
    SecretCipher::new(&derive_key(b"waha tests", "credentials"))
}

/// A provider, its manual clock and the receiver of what it emits.
pub(super) struct Harness {
    pub(super) provider: WahaProvider,
    pub(super) clock: ManualClock,
    pub(super) events: UnboundedReceiver<ProviderEvent>,
}

pub(super) fn harness_with(http: reqwest::Client) -> Harness {
    let clock = ManualClock::new(Timestamp::from_unix_ms(NOW_MS));
    let (sink, events) = EventSink::channel();
    let public_url = url::Url::parse("https://ezw.example.com").unwrap();
    let mut options = WahaOptions::new(http, cipher(), public_url, Arc::new(clock.clone()), sink);
    options.poll_interval = POLL;
    Harness { provider: WahaProvider::new(options), clock, events }
}

pub(super) fn harness() -> Harness {
    harness_with(reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap())
}

/// The submitted provider block for a sidecar at `base_url`.
pub(super) fn input_config(base_url: &str) -> Value {
    json!({"baseUrl": base_url, "apiKey": API_KEY, "session": SESSION, "webhookHmacKey": HMAC_KEY})
}

/// A line in `state` whose stored config came from `validate_config`.
pub(super) fn line(provider: &WahaProvider, base_url: &str, state: LifecycleState) -> Line {
    Line {
        id: LineId::from_raw(LINE_ID),
        organization_id: OrganizationId::from_raw(ORG_ID),
        phone_number: PhoneNumber::from_raw(format!("+{ACCOUNT}")),
        lifecycle_state: state,
        created_at: Timestamp::from_unix_ms(NOW_MS),
        updated_at: Timestamp::from_unix_ms(NOW_MS),
        ..ezw_core::testing::line(ProviderKind::Waha, provider.validate_config(&input_config(base_url)).unwrap())
    }
}

pub(super) fn outbound(kind: MessageKind, content: MessageContent) -> OutboundMessage {
    let mut out = ezw_core::testing::outbound(kind, content, PhoneNumber::from_raw(CUSTOMER));
    out.message.id = MessageId::from_raw("msg_01WAHATEST");
    out.message.organization_id = OrganizationId::from_raw(ORG_ID);
    out.message.line_id = LineId::from_raw(LINE_ID);
    out.message.conversation_id = ConversationId::from_raw("conv_01WAHATEST");
    out.message.created_at = Timestamp::from_unix_ms(NOW_MS);
    out
}

/// A webhook fixture from `fixtures/`.
pub(super) fn fixture(name: &str) -> String {
    let path = format!("{}/src/waha/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every webhook fixture: (file name, body).
pub(super) fn webhook_fixtures() -> Vec<(String, String)> {
    let dir = format!("{}/src/waha/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("event_") && n.ends_with(".json"))
        .map(|n| {
            let body = fixture(&n);
            (n, body)
        })
        .collect();
    out.sort();
    out
}

/// A webhook as WAHA posts it: the body signed with `key`.
pub(super) fn signed_with(key: &str, body: &str) -> InboundRequest {
    InboundRequest {
        method: "POST".into(),
        public_url: format!("https://ezw.example.com/hooks/waha/{LINE_ID}"),
        route: String::new(),
        query: Vec::new(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-webhook-hmac".into(), compute_hmac(&Secret::new(key), body.as_bytes())),
            ("x-webhook-hmac-algorithm".into(), "sha512".into()),
            ("x-webhook-request-id".into(), "01jzwaha0000000000000000".into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

pub(super) fn signed(body: &str) -> InboundRequest {
    signed_with(HMAC_KEY, body)
}

/// Waits (on the real clock, at most 5 s) until `done` holds: for work spawned on the runtime to
/// reach its next step. Never an assertion about time.
pub(super) async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..5000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("condition not reached");
}

/// The next emitted event (at most 5 s of real time).
pub(super) async fn next_event(events: &mut UnboundedReceiver<ProviderEvent>) -> ProviderEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("an event").expect("sink open")
}
