//! Simulator line configuration (`provider` block of `POST /api/lines` with `kind: simulator`).

use std::collections::BTreeMap;

use ezw_core::{Error, PhoneNumber, Result};
use serde::{Deserialize, Serialize};

/// How a simulated send fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimFailure {
    /// A transient failure (like a 503): retried.
    Transient,
    /// A permanent failure (like an invalid recipient): the message fails.
    Permanent,
    /// The outcome is unknown (like a timeout after sending).
    Ambiguous,
}

/// How a simulated line is paired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimPairing {
    /// Always connected, never paired (the default): a cloud-API-like line.
    #[default]
    None,
    /// A QR (web session) line: it starts unpaired, shows rotating QR codes through the QR API and
    /// connects once one is "scanned" (`SimProvider::scan`, or `POST
    /// /api/lines/{lineId}/simulator/scan`).
    Qr,
}

/// Per-line simulator settings. All delays count from the provider's acceptance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimConfig {
    /// Delay before the `sent` status event (default 0 ms).
    #[serde(default)]
    pub sent_after_ms: u64,
    /// Delay before `delivered` (default 1000 ms).
    #[serde(default = "default_delivered")]
    pub delivered_after_ms: u64,
    /// Delay before `read`; `null` means never read (default 3000 ms).
    #[serde(default = "default_read")]
    pub read_after_ms: Option<u64>,
    /// Recipients whose sends fail, and how.
    #[serde(default)]
    pub fail_recipients: BTreeMap<String, SimFailure>,
    /// How the line is paired (default `none`: always connected).
    #[serde(default)]
    pub pairing: SimPairing,
    /// QR lines: how long the first code of a pairing can be scanned (default 60000 ms, as
    /// WhatsApp).
    #[serde(default = "default_qr_ttl")]
    pub qr_ttl_ms: u64,
    /// QR lines: how long each later code can be scanned (default 20000 ms, as WhatsApp).
    #[serde(default = "default_qr_rotate")]
    pub qr_rotate_ms: u64,
    /// QR lines: how many codes one pairing issues before it is exhausted (default 6, as
    /// WhatsApp).
    #[serde(default = "default_qr_codes")]
    pub qr_codes: u32,
}

fn default_qr_ttl() -> u64 {
    60_000
}

fn default_qr_rotate() -> u64 {
    20_000
}

fn default_qr_codes() -> u32 {
    6
}

/// The longest a simulated code may live (10 minutes).
const MAX_QR_TTL_MS: u64 = 600_000;
/// The most codes a simulated pairing may issue.
const MAX_QR_CODES: u32 = 100;

fn default_delivered() -> u64 {
    1000
}

#[allow(clippy::unnecessary_wraps)]
fn default_read() -> Option<u64> {
    Some(3000)
}

const MAX_DELAY_MS: u64 = 86_400_000;

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            sent_after_ms: 0,
            delivered_after_ms: default_delivered(),
            read_after_ms: default_read(),
            fail_recipients: BTreeMap::new(),
            pairing: SimPairing::None,
            qr_ttl_ms: default_qr_ttl(),
            qr_rotate_ms: default_qr_rotate(),
            qr_codes: default_qr_codes(),
        }
    }
}

impl SimConfig {
    /// Parses and validates a stored or submitted configuration.
    ///
    /// # Errors
    /// `invalid_provider_config` (400) naming the wrong field.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let value = if value.is_null() { serde_json::json!({}) } else { value.clone() };
        let config: Self = serde_json::from_value(value)
            .map_err(|e| Error::invalid("invalid_provider_config", format!("simulator provider config: {e}")))?;
        for (name, v) in [
            ("sentAfterMs", Some(config.sent_after_ms)),
            ("deliveredAfterMs", Some(config.delivered_after_ms)),
            ("readAfterMs", config.read_after_ms),
        ] {
            if v.is_some_and(|v| v > MAX_DELAY_MS) {
                return Err(Error::invalid(
                    "invalid_provider_config",
                    format!("{name} must be at most {MAX_DELAY_MS}"),
                ));
            }
        }
        if config.delivered_after_ms < config.sent_after_ms
            || config.read_after_ms.is_some_and(|r| r < config.delivered_after_ms)
        {
            return Err(Error::invalid(
                "invalid_provider_config",
                "delays must satisfy sentAfterMs <= deliveredAfterMs <= readAfterMs",
            ));
        }
        for (name, v) in [("qrTtlMs", config.qr_ttl_ms), ("qrRotateMs", config.qr_rotate_ms)] {
            if !(1..=MAX_QR_TTL_MS).contains(&v) {
                return Err(Error::invalid(
                    "invalid_provider_config",
                    format!("{name} must be between 1 and {MAX_QR_TTL_MS}"),
                ));
            }
        }
        if !(1..=MAX_QR_CODES).contains(&config.qr_codes) {
            return Err(Error::invalid(
                "invalid_provider_config",
                format!("qrCodes must be between 1 and {MAX_QR_CODES}"),
            ));
        }
        let mut normalized = BTreeMap::new();
        for (phone, failure) in &config.fail_recipients {
            let phone = PhoneNumber::parse(phone).map_err(|_| {
                Error::invalid("invalid_provider_config", format!("failRecipients: '{phone}' is not an E.164 number"))
            })?;
            normalized.insert(phone.as_str().to_owned(), *failure);
        }
        Ok(Self { fail_recipients: normalized, ..config })
    }

    /// Whether a stored configuration is a QR line's (a quick look, without full validation).
    #[must_use]
    pub fn is_qr(value: &serde_json::Value) -> bool {
        value.get("pairing").and_then(serde_json::Value::as_str) == Some("qr")
    }

    /// The lifetime of code number `rotation` (1 for the first) of a pairing.
    #[must_use]
    pub fn code_ttl(&self, rotation: u32) -> std::time::Duration {
        std::time::Duration::from_millis(if rotation <= 1 { self.qr_ttl_ms } else { self.qr_rotate_ms })
    }

    /// The JSON form stored with the line.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let c = SimConfig::from_json(&serde_json::json!({})).unwrap();
        assert_eq!(c, SimConfig::default());
        let c = SimConfig::from_json(
            &serde_json::json!({"readAfterMs": null, "failRecipients": {"972 50 123 4567": "permanent"}}),
        )
        .unwrap();
        assert_eq!(c.read_after_ms, None);
        assert_eq!(c.fail_recipients.get("+972501234567"), Some(&SimFailure::Permanent));
        assert_eq!(c.pairing, SimPairing::None);
        let c = SimConfig::from_json(&serde_json::json!({"pairing": "qr", "qrCodes": 3})).unwrap();
        assert_eq!((c.pairing, c.qr_ttl_ms, c.qr_rotate_ms, c.qr_codes), (SimPairing::Qr, 60_000, 20_000, 3));
        assert!(SimConfig::is_qr(&c.to_json()));
        assert!(!SimConfig::is_qr(&SimConfig::default().to_json()));
        assert_eq!(c.code_ttl(1).as_millis(), 60_000);
        assert_eq!(c.code_ttl(2).as_millis(), 20_000);
        for bad in [
            serde_json::json!({"deliveredAfterMs": 10, "sentAfterMs": 20}),
            serde_json::json!({"bogus": 1}),
            serde_json::json!({"failRecipients": {"abc": "permanent"}}),
            serde_json::json!({"readAfterMs": 999_999_999_999u64}),
            serde_json::json!({"pairing": "phone"}),
            serde_json::json!({"pairing": "qr", "qrTtlMs": 0}),
            serde_json::json!({"pairing": "qr", "qrRotateMs": 600_001}),
            serde_json::json!({"pairing": "qr", "qrCodes": 0}),
        ] {
            assert_eq!(SimConfig::from_json(&bad).unwrap_err().code(), "invalid_provider_config", "{bad}");
        }
    }
}
