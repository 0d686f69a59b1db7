//! Web session line configuration (`provider` block of `POST /api/lines` with
//! `kind: web_session`).

use ezw_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The longest device name accepted.
const MAX_DEVICE_NAME: usize = 40;

/// The name the phone shows under "Linked devices" unless the line sets one.
pub const DEFAULT_DEVICE_NAME: &str = "EZW";

/// Per-line settings of a web session line. Everything else (keys, the paired account) is
/// session state, kept sealed in EZW's storage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebSessionConfig {
    /// The name the phone shows for this linked device (default `EZW`; 1 to 40 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
}

impl WebSessionConfig {
    /// Parses and validates a stored or submitted configuration (`null` is `{}`).
    ///
    /// # Errors
    /// `invalid_provider_config` (400) naming the wrong field.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let value = if value.is_null() { serde_json::json!({}) } else { value.clone() };
        let config: Self = serde_json::from_value(value)
            .map_err(|e| Error::invalid("invalid_provider_config", format!("web_session provider config: {e}")))?;
        if let Some(name) = &config.device_name {
            let len = name.trim().chars().count();
            if len == 0 || len > MAX_DEVICE_NAME || name.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "invalid_provider_config",
                    format!("deviceName must be 1 to {MAX_DEVICE_NAME} printable characters"),
                ));
            }
        }
        Ok(config)
    }

    /// The configuration as stored.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|_| serde_json::json!({}))
    }

    /// The device name the phone shows.
    #[must_use]
    pub fn device_name(&self) -> &str {
        self.device_name.as_deref().map_or(DEFAULT_DEVICE_NAME, str::trim)
    }
}
