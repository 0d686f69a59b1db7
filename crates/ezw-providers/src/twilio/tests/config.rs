//! Configuration: validation naming the field, the sealed stored form, the masked description.

use ezw_core::crypto::SecretCipher;
use ezw_core::ports::LineProvider;
use serde_json::{json, Value};

use super::{cipher, input_config, provider, ACCOUNT_SID, AUTH_TOKEN};
use crate::twilio::TwilioConfig;

#[test]
fn stored_form_seals_the_token_and_normalises() {
    let p = provider();
    let stored = p.validate_config(&input_config(None)).unwrap();
    let token = stored["authToken"].as_str().unwrap();
    assert!(SecretCipher::is_sealed(token) && token.starts_with("enc:v1:"));
    assert!(!stored.to_string().contains(AUTH_TOKEN), "no plaintext token in {stored}");
    assert_eq!(cipher().open(token).unwrap().expose(), AUTH_TOKEN);
    assert_eq!(stored["accountSid"], ACCOUNT_SID);
    assert_eq!(stored["from"], "+14155238886");
    assert_eq!(stored["apiBaseUrl"], "https://api.twilio.com");
    assert_eq!(stored.as_object().unwrap().len(), 4);
    // The stored form validates again (the sealed token is accepted) to the same settings.
    let again = p.validate_config(&stored).unwrap();
    assert_eq!(TwilioConfig::parse(&again, &cipher()).unwrap(), TwilioConfig::parse(&stored, &cipher()).unwrap());
}

#[test]
fn from_and_base_url_forms() {
    let p = provider();
    let mut c = input_config(Some("http://127.0.0.1:4010/twilio/"));
    c["from"] = json!("+1 (415) 523-8886");
    let stored = p.validate_config(&c).unwrap();
    assert_eq!(stored["from"], "+14155238886");
    assert_eq!(stored["apiBaseUrl"], "http://127.0.0.1:4010/twilio");
    c["apiBaseUrl"] = Value::Null;
    assert_eq!(p.validate_config(&c).unwrap()["apiBaseUrl"], "https://api.twilio.com");
}

#[test]
fn describe_masks_the_token() {
    let p = provider();
    let stored = p.validate_config(&input_config(None)).unwrap();
    let shown = p.describe_config(&stored);
    assert_eq!(
        shown,
        json!({
            "accountSid": ACCOUNT_SID,
            "authToken": "…1e0f",
            "from": "+14155238886",
            "apiBaseUrl": "https://api.twilio.com",
        })
    );
    // A config sealed under another key still describes its identifiers, never the token.
    let other = SecretCipher::new(&[9u8; 32]);
    let foreign = TwilioConfig::parse(&input_config(None), &other).unwrap().to_stored(&other);
    let shown = p.describe_config(&foreign);
    assert_eq!(shown["accountSid"], ACCOUNT_SID);
    assert_eq!(shown["authToken"], "…");
    assert!(!shown.to_string().contains("enc:v1:"));
}

#[test]
fn debug_never_prints_the_token() {
    let config = TwilioConfig::parse(&input_config(None), &cipher()).unwrap();
    let printed = format!("{config:?}");
    assert!(printed.contains(ACCOUNT_SID) && printed.contains("[redacted]"));
    assert!(!printed.contains(AUTH_TOKEN));
    let options = format!("{:?}", super::provider());
    assert!(!options.contains(AUTH_TOKEN));
}

#[test]
fn bad_fields_are_named() {
    let p = provider();
    let cases: Vec<(&str, Value)> = vec![
        ("accountSid", json!(null)),
        ("accountSid", json!("AB0123456789abcdef0123456789abcdef")),
        ("accountSid", json!("AC0123456789abcdef0123456789abcde")),
        ("accountSid", json!("AC0123456789abcdef0123456789abcdeg")),
        ("accountSid", json!(42)),
        ("authToken", json!(null)),
        ("authToken", json!("f0e1d2c3b4a5968778695a4b3c2d1e0")),
        ("authToken", json!("z0e1d2c3b4a5968778695a4b3c2d1e0f")),
        ("authToken", json!("enc:v1:AAAA")),
        ("from", json!(null)),
        ("from", json!("whatsapp:14155238886")),
        ("from", json!("sms:+14155238886")),
        ("from", json!("+123")),
        ("apiBaseUrl", json!("api.twilio.com")),
        ("apiBaseUrl", json!("ftp://api.twilio.com")),
        ("apiBaseUrl", json!("https://api.twilio.com/?x=1")),
        ("apiBaseUrl", json!("https://api.twilio.com/#x")),
        ("apiBaseUrl", json!("https://user:pw@api.twilio.com")),
        ("apiBaseUrl", json!(true)),
    ];
    for (field, value) in cases {
        let mut c = input_config(None);
        if value.is_null() {
            c.as_object_mut().unwrap().remove(field);
        } else {
            c[field] = value.clone();
        }
        let e = p.validate_config(&c).unwrap_err();
        assert_eq!(e.code(), "invalid_provider_config", "{field} = {value}");
        assert!(e.message().starts_with(&format!("{field}:")), "{field} = {value}: {}", e.message());
        assert!(!e.message().contains(AUTH_TOKEN));
    }
}

#[test]
fn unknown_fields_and_non_objects_are_rejected() {
    let p = provider();
    let mut c = input_config(None);
    c["messagingServiceSid"] = json!("MG0123456789abcdef0123456789abcdef");
    let e = p.validate_config(&c).unwrap_err();
    assert_eq!(e.code(), "invalid_provider_config");
    assert!(e.message().starts_with("messagingServiceSid:"), "{}", e.message());
    for bad in [json!(null), json!([]), json!("AC...")] {
        assert_eq!(p.validate_config(&bad).unwrap_err().code(), "invalid_provider_config");
    }
}
