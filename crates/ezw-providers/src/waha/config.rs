//! WAHA line configuration: the `provider` block of `POST /api/lines` with `kind: waha`
//! (`baseUrl`, optional `apiKey`, `session` and `webhookHmacKey`), validated field by field, and
//! its stored form with the two secrets sealed.

use std::fmt;

use ezw_core::crypto::{mask, random_token, SecretCipher};
use ezw_core::{Error, LineId, Result, Secret};
use serde_json::{json, Map, Value};

const FIELDS: [&str; 4] = ["baseUrl", "apiKey", "session", "webhookHmacKey"];

/// The shortest webhook HMAC key accepted (a generated one is 43 characters).
const MIN_HMAC_KEY_LEN: usize = 16;
/// The longest secret accepted (API key or HMAC key).
const MAX_SECRET_LEN: usize = 512;
/// The longest session name accepted.
const MAX_SESSION_LEN: usize = 64;

/// A WAHA line's settings, credentials included (the secrets print as `[redacted]`).
#[derive(Clone, PartialEq, Eq)]
pub struct WahaConfig {
    /// The sidecar's base URL without a trailing slash (`http://waha:3000`).
    pub base_url: String,
    /// The sidecar's API key, sent as `X-Api-Key` on every call when set.
    pub api_key: Option<Secret>,
    /// The WAHA session name; `None` derives it from the line id (see [`WahaConfig::session_name`]).
    pub session: Option<String>,
    /// The key WAHA signs webhooks with (`X-Webhook-Hmac`, HMAC-SHA512). Generated when the
    /// submitted block has none.
    pub webhook_hmac_key: Secret,
}

impl fmt::Debug for WahaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WahaConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("session", &self.session)
            .field("webhook_hmac_key", &self.webhook_hmac_key)
            .finish()
    }
}

fn invalid(field: &str, problem: &str) -> Error {
    Error::invalid("invalid_provider_config", format!("{field}: {problem}"))
}

impl WahaConfig {
    /// Parses a submitted or stored configuration. Secrets may be plain or sealed with `cipher`
    /// (the stored form). A missing `webhookHmacKey` is generated, so parse the submitted form
    /// once and store the result ([`WahaConfig::to_stored`]).
    ///
    /// # Errors
    /// `invalid_provider_config` (400) naming the wrong field, including unknown fields; never
    /// echoes a secret.
    pub fn parse(value: &Value, cipher: &SecretCipher) -> Result<Self> {
        let Some(obj) = value.as_object() else {
            return Err(Error::invalid("invalid_provider_config", "the waha provider config must be a JSON object"));
        };
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(unknown, "unknown field (expected baseUrl, apiKey, session, webhookHmacKey)"));
        }
        let base_url = match optional_str(obj, "baseUrl")? {
            Some(s) => parse_base_url(&s)?,
            None => return Err(invalid("baseUrl", "is required")),
        };
        let api_key = optional_str(obj, "apiKey")?.map(|raw| parse_secret("apiKey", &raw, cipher, 1)).transpose()?;
        let session = optional_str(obj, "session")?.map(|s| parse_session(&s)).transpose()?;
        let webhook_hmac_key = match optional_str(obj, "webhookHmacKey")? {
            Some(raw) => parse_secret("webhookHmacKey", &raw, cipher, MIN_HMAC_KEY_LEN)?,
            None => Secret::new(random_token("", 32)),
        };
        Ok(Self { base_url, api_key, session, webhook_hmac_key })
    }

    /// The WAHA session this line runs as: the configured name, or the line id.
    #[must_use]
    pub fn session_name(&self, line: &LineId) -> String {
        self.session.clone().unwrap_or_else(|| line.to_string())
    }

    /// The form stored with the line: secrets sealed, the generated HMAC key kept.
    #[must_use]
    pub fn to_stored(&self, cipher: &SecretCipher) -> Value {
        let mut out = json!({
            "baseUrl": self.base_url,
            "webhookHmacKey": cipher.seal(&self.webhook_hmac_key),
        });
        if let Some(key) = &self.api_key {
            out["apiKey"] = json!(cipher.seal(key));
        }
        if let Some(session) = &self.session {
            out["session"] = json!(session);
        }
        out
    }

    /// The form shown to callers: the URL and session in full, secrets masked; fields not set
    /// are left out.
    #[must_use]
    pub fn describe(&self) -> Value {
        let mut out = json!({
            "baseUrl": self.base_url,
            "webhookHmacKey": mask(&self.webhook_hmac_key),
        });
        if let Some(key) = &self.api_key {
            out["apiKey"] = json!(mask(key));
        }
        if let Some(session) = &self.session {
            out["session"] = json!(session);
        }
        out
    }
}

fn optional_str(obj: &Map<String, Value>, field: &str) -> Result<Option<String>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn parse_secret(field: &str, raw: &str, cipher: &SecretCipher, min_len: usize) -> Result<Secret> {
    let secret = if SecretCipher::is_sealed(raw) {
        cipher.open(raw).map_err(|_| invalid(field, "the sealed value cannot be decrypted with this server key"))?
    } else {
        Secret::new(raw)
    };
    let len = secret.expose().chars().count();
    if len < min_len || len > MAX_SECRET_LEN {
        return Err(invalid(field, &format!("must be {min_len} to {MAX_SECRET_LEN} characters")));
    }
    if secret.expose().chars().any(|c| c.is_control()) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(secret)
}

fn parse_session(raw: &str) -> Result<String> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_SESSION_LEN
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(invalid("session", "must be 1 to 64 letters, digits, '_' or '-'"))
    }
}

fn parse_base_url(raw: &str) -> Result<String> {
    let url = url::Url::parse(raw).map_err(|_| invalid("baseUrl", "must be an absolute http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("baseUrl", "must be an absolute http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("baseUrl", "must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("baseUrl", "must not contain credentials (use apiKey)"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Best-effort description of a configuration that does not parse: the non-secret fields as
/// stored, never a secret.
pub(crate) fn describe_unreadable(value: &Value) -> Value {
    let mut out = Map::new();
    for field in ["baseUrl", "session"] {
        if let Some(v) = value.get(field).and_then(Value::as_str) {
            out.insert(field.to_owned(), Value::String(v.to_owned()));
        }
    }
    out.insert("webhookHmacKey".to_owned(), Value::String("…".to_owned()));
    if value.get("apiKey").is_some_and(|v| !v.is_null()) {
        out.insert("apiKey".to_owned(), Value::String("…".to_owned()));
    }
    Value::Object(out)
}
