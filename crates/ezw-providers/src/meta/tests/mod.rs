//! Tests for the Meta provider: webhook fixtures, exact wire requests against the local mock,
//! error classification, media and health.

use std::time::Duration;

use ezw_core::crypto::{derive_key, SecretCipher};
use ezw_core::model::{LifecycleState, Line, MessageContent, MessageKind, ProviderKind};
use ezw_core::ports::{LineProvider, OutboundMessage};
use ezw_core::PhoneNumber;
use serde_json::json;

use super::{MetaOptions, MetaProvider};

mod client;
mod ingest;
mod media_health;

pub(super) const PNID: &str = "106540352242922";
pub(super) const APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
pub(super) const TOKEN: &str = "EAAGtestaccesstoken1234567890XYZ";
pub(super) const VERIFY_TOKEN: &str = "verify-me-please";

pub(super) fn cipher() -> SecretCipher {
    SecretCipher::new(&derive_key(b"meta tests", "credentials"))
}

pub(super) fn http_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().expect("reqwest client")
}

pub(super) fn provider() -> MetaProvider {
    provider_with(http_with_timeout(Duration::from_secs(5)))
}

pub(super) fn provider_with(http: reqwest::Client) -> MetaProvider {
    MetaProvider::new(MetaOptions { http, cipher: cipher() })
}

/// A submitted config pointing at `base_url`.
pub(super) fn submitted(base_url: &str) -> serde_json::Value {
    json!({
        "phoneNumberId": PNID,
        "wabaId": "102290129340398",
        "appId": "1234567890",
        "appSecret": APP_SECRET,
        "accessToken": TOKEN,
        "verifyToken": VERIFY_TOKEN,
        "apiBaseUrl": base_url,
    })
}

/// A line whose stored config (sealed by the provider) points at `base_url`.
pub(super) fn line(base_url: &str) -> Line {
    let stored = provider().validate_config(&submitted(base_url)).expect("valid config");
    ezw_core::testing::line(ProviderKind::Meta, stored)
}

pub(super) fn outbound(kind: MessageKind, content: MessageContent) -> OutboundMessage {
    ezw_core::testing::outbound(kind, content, PhoneNumber::parse("+16505551234").expect("phone"))
}

#[test]
fn provider_is_object_safe_and_declares_capabilities() {
    let p: std::sync::Arc<dyn LineProvider> = std::sync::Arc::new(provider());
    assert_eq!(p.kind(), ProviderKind::Meta);
    assert_eq!(p.initial_state(&serde_json::json!({})), LifecycleState::Connected);
    let c = p.capabilities();
    assert!(c.text && c.media_url && c.cta_url_button && c.templates && c.status_events);
    assert!(!c.qr_pairing && !c.deduplicates_sends);
}

#[test]
fn validate_and_describe_config_through_the_provider() {
    let p = provider();
    let stored = p.validate_config(&submitted("https://graph.facebook.com")).unwrap();
    let text = stored.to_string();
    assert!(!text.contains(TOKEN) && !text.contains(APP_SECRET) && !text.contains(VERIFY_TOKEN), "{text}");
    assert_eq!(stored["apiVersion"], "v23.0");
    let shown = p.describe_config(&stored);
    assert_eq!(shown["phoneNumberId"], PNID);
    assert_eq!(shown["accessToken"], "…0XYZ");
    assert_eq!(shown["verifyToken"], "…ease");
    let shown_text = shown.to_string();
    assert!(!shown_text.contains(TOKEN) && !shown_text.contains("enc:v1:"), "{shown_text}");
    // Another server key: identifiers only.
    let other = MetaProvider::new(MetaOptions {
        http: reqwest::Client::new(),
        cipher: SecretCipher::new(&derive_key(b"other", "credentials")),
    });
    let shown = other.describe_config(&stored);
    assert_eq!(shown["phoneNumberId"], PNID);
    assert_eq!(shown["credentialsReadable"], false);
    assert!(shown.get("accessToken").is_none());
    let mut bad = submitted("https://graph.facebook.com");
    bad["appSecret"] = json!("nope");
    assert!(p.validate_config(&bad).unwrap_err().message().starts_with("appSecret:"));
}
