//! The `kind: waha` provider block: validation, sealing, masking, the generated HMAC key.

use ezw_core::crypto::SecretCipher;
use ezw_core::ports::LineProvider;
use ezw_core::LineId;
use serde_json::json;

use super::{cipher, harness, input_config, API_KEY, HMAC_KEY, SESSION};
use crate::waha::WahaConfig;

#[test]
fn a_full_block_is_stored_sealed_and_shown_masked() {
    let h = harness();
    let stored = h.provider.validate_config(&input_config("http://waha:3000/")).unwrap();
    assert_eq!(stored["baseUrl"], "http://waha:3000");
    assert_eq!(stored["session"], SESSION);
    for field in ["apiKey", "webhookHmacKey"] {
        let sealed = stored[field].as_str().unwrap();
        assert!(SecretCipher::is_sealed(sealed), "{field} is sealed");
        assert!(!stored.to_string().contains(API_KEY) && !stored.to_string().contains(HMAC_KEY));
    }
    // The stored form parses back to the same secrets (and validates again unchanged in meaning).
    let config = WahaConfig::parse(&stored, &cipher()).unwrap();
    assert_eq!(config.api_key.as_ref().unwrap().expose(), API_KEY);
    assert_eq!(config.webhook_hmac_key.expose(), HMAC_KEY);
    let shown = h.provider.describe_config(&stored);
    assert_eq!(
        shown,
        json!({"baseUrl": "http://waha:3000", "apiKey": "…6789", "session": SESSION, "webhookHmacKey": "…cdef"})
    );
}

#[test]
fn a_minimal_block_gets_a_generated_hmac_key_that_stays() {
    let h = harness();
    let stored = h.provider.validate_config(&json!({"baseUrl": "https://waha.internal"})).unwrap();
    assert!(stored.get("apiKey").is_none() && stored.get("session").is_none());
    let first = WahaConfig::parse(&stored, &cipher()).unwrap();
    assert!(first.webhook_hmac_key.expose().len() >= 32, "a strong generated key");
    // Parsing the stored form again keeps the generated key.
    let again = WahaConfig::parse(&stored, &cipher()).unwrap();
    assert_eq!(first.webhook_hmac_key, again.webhook_hmac_key);
    // Another line gets another key.
    let other = WahaConfig::parse(
        &h.provider.validate_config(&json!({"baseUrl": "https://waha.internal"})).unwrap(),
        &cipher(),
    )
    .unwrap();
    assert_ne!(first.webhook_hmac_key, other.webhook_hmac_key);
    // No session name: the line id.
    assert_eq!(first.session_name(&LineId::from_raw("line_01abc")), "line_01abc");
    let shown = h.provider.describe_config(&stored);
    assert!(shown.get("apiKey").is_none() && shown.get("session").is_none(), "{shown}");
}

#[test]
fn debug_never_prints_the_secrets() {
    let config = WahaConfig::parse(&input_config("http://waha:3000"), &cipher()).unwrap();
    let printed = format!("{config:?}");
    assert!(!printed.contains(API_KEY) && !printed.contains(HMAC_KEY), "{printed}");
    assert!(printed.contains("[redacted]"));
}

#[test]
fn wrong_fields_are_named() {
    let cases = [
        (json!("http://waha:3000"), "must be a JSON object"),
        (json!({}), "baseUrl: is required"),
        (json!({"baseUrl": "waha:3000"}), "baseUrl: must be an absolute http(s) URL"),
        (json!({"baseUrl": "ftp://waha"}), "baseUrl: must be an absolute http(s) URL"),
        (json!({"baseUrl": "http://u:p@waha"}), "baseUrl: must not contain credentials"),
        (json!({"baseUrl": "http://waha/?x=1"}), "baseUrl: must not have a query"),
        (json!({"baseUrl": 3000}), "baseUrl: must be a string"),
        (json!({"baseUrl": "http://waha", "session": "my session"}), "session: must be 1 to 64"),
        (json!({"baseUrl": "http://waha", "webhookHmacKey": "short"}), "webhookHmacKey: must be 16 to 512"),
        (json!({"baseUrl": "http://waha", "apiKey": "a\u{7}b"}), "apiKey: must not contain control"),
        (json!({"baseUrl": "http://waha", "apiKey": "enc:v1:bm90LXNlYWxlZA"}), "apiKey: the sealed value"),
        (json!({"baseUrl": "http://waha", "token": "x"}), "token: unknown field"),
    ];
    for (input, expected) in cases {
        let e = WahaConfig::parse(&input, &cipher()).unwrap_err();
        assert_eq!(e.code(), "invalid_provider_config", "{input}");
        assert!(e.message().contains(expected), "{input}: {}", e.message());
        assert!(!e.message().contains("a\u{7}b"));
    }
}

#[test]
fn an_unreadable_stored_block_shows_no_secret() {
    let h = harness();
    let stored = json!({"baseUrl": "http://waha:3000", "apiKey": "enc:v1:garbage", "webhookHmacKey": "enc:v1:garbage"});
    assert_eq!(
        h.provider.describe_config(&stored),
        json!({"baseUrl": "http://waha:3000", "apiKey": "…", "webhookHmacKey": "…"})
    );
}
