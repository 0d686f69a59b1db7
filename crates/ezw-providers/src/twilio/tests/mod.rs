//! Twilio provider tests: signature vectors, webhook fixtures, configuration, and exact wire
//! requests against [`crate::mock::MockServer`].

mod client;
mod config;
mod ingest;
mod signature;

use std::sync::Arc;
use std::time::Duration;

use ezw_core::crypto::SecretCipher;
use ezw_core::model::{Line, MessageContent, MessageKind, ProviderKind};
use ezw_core::ports::{InboundRequest, LineProvider, OutboundMessage};
use ezw_core::{ConversationId, LineId, ManualClock, MessageId, OrganizationId, PhoneNumber, Secret, Timestamp};
use serde_json::{json, Value};

use super::{compute_signature, TwilioOptions, TwilioProvider};

pub(super) const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub(super) const AUTH_TOKEN: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f";
pub(super) const LINE_NUMBER: &str = "+14155238886";
pub(super) const CUSTOMER: &str = "+14155550100";
pub(super) const LINE_ID: &str = "line_01TWILIOTEST";
pub(super) const ORG_ID: &str = "org_01TWILIOTEST";
pub(super) const NOW_MS: i64 = 1_767_225_600_000;
pub(super) const PUBLIC_URL: &str = "https://ezw.example.com/";

pub(super) fn cipher() -> SecretCipher {
    SecretCipher::new(&[7u8; 32])
}

pub(super) fn provider_with(http: reqwest::Client) -> TwilioProvider {
    TwilioProvider::new(TwilioOptions {
        http,
        cipher: cipher(),
        public_url: url::Url::parse(PUBLIC_URL).unwrap(),
        clock: Arc::new(ManualClock::new(Timestamp::from_unix_ms(NOW_MS))),
    })
}

pub(super) fn provider() -> TwilioProvider {
    provider_with(reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap())
}

/// The submitted provider block.
pub(super) fn input_config(api_base_url: Option<&str>) -> Value {
    let mut config = json!({"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "from": "whatsapp:+14155238886"});
    if let Some(url) = api_base_url {
        config["apiBaseUrl"] = json!(url);
    }
    config
}

/// A connected line whose stored config came from `validate_config`.
pub(super) fn line(provider: &TwilioProvider, api_base_url: Option<&str>) -> Line {
    Line {
        id: LineId::from_raw(LINE_ID),
        organization_id: OrganizationId::from_raw(ORG_ID),
        phone_number: PhoneNumber::from_raw(LINE_NUMBER),
        created_at: Timestamp::from_unix_ms(NOW_MS),
        updated_at: Timestamp::from_unix_ms(NOW_MS),
        ..ezw_core::testing::line(ProviderKind::Twilio, provider.validate_config(&input_config(api_base_url)).unwrap())
    }
}

pub(super) fn outbound(kind: MessageKind, content: MessageContent) -> OutboundMessage {
    let mut out = ezw_core::testing::outbound(kind, content, PhoneNumber::from_raw(CUSTOMER));
    out.message.id = MessageId::from_raw("msg_01TWILIOTEST");
    out.message.organization_id = OrganizationId::from_raw(ORG_ID);
    out.message.line_id = LineId::from_raw(LINE_ID);
    out.message.conversation_id = ConversationId::from_raw("conv_01TWILIOTEST");
    out.message.created_at = Timestamp::from_unix_ms(NOW_MS);
    out
}

pub(super) fn hook_url(route: &str) -> String {
    if route.is_empty() {
        format!("https://ezw.example.com/hooks/twilio/{LINE_ID}")
    } else {
        format!("https://ezw.example.com/hooks/twilio/{LINE_ID}/{route}")
    }
}

/// A form webhook for `route`, signed with `token` over the hook URL, as Twilio sends it.
pub(super) fn signed_with(token: &str, route: &str, body: &str) -> InboundRequest {
    let url = hook_url(route);
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let signature = compute_signature(&Secret::new(token), &url, &params);
    InboundRequest {
        method: "POST".into(),
        public_url: url,
        route: route.into(),
        query: Vec::new(),
        headers: vec![
            ("content-type".into(), "application/x-www-form-urlencoded; charset=UTF-8".into()),
            ("x-twilio-signature".into(), signature),
            ("i-twilio-idempotency-token".into(), "6f1c2b3a-0000-4000-8000-000000000000".into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

pub(super) fn signed(route: &str, body: &str) -> InboundRequest {
    signed_with(AUTH_TOKEN, route, body)
}
