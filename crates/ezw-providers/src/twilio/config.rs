//! Twilio line configuration: the `provider` block of `POST /api/lines` with `kind: twilio`
//! (`accountSid`, `authToken`, `from`, optional `apiBaseUrl`), validated field by field, and its
//! stored form with the auth token sealed.

use std::fmt;

use ezw_core::crypto::{mask, SecretCipher};
use ezw_core::{Error, PhoneNumber, Result, Secret};
use serde_json::{json, Map, Value};

/// Where the Twilio REST API lives unless `apiBaseUrl` says otherwise.
pub(crate) const DEFAULT_API_BASE_URL: &str = "https://api.twilio.com";

const FIELDS: [&str; 4] = ["accountSid", "authToken", "from", "apiBaseUrl"];

/// A Twilio line's settings, credentials included (the token prints as `[redacted]`).
#[derive(Clone, PartialEq, Eq)]
pub struct TwilioConfig {
    /// The Account SID: `AC` and 32 hex characters.
    pub account_sid: String,
    /// The account's Auth Token (32 hex characters): the API password and the webhook
    /// signing key.
    pub auth_token: Secret,
    /// The WhatsApp sender, E.164 (sent as `whatsapp:+E164`).
    pub from: PhoneNumber,
    /// The REST API base URL without a trailing slash (default `https://api.twilio.com`).
    pub api_base_url: String,
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token)
            .field("from", &self.from)
            .field("api_base_url", &self.api_base_url)
            .finish()
    }
}

fn invalid(field: &str, problem: &str) -> Error {
    Error::invalid("invalid_provider_config", format!("{field}: {problem}"))
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl TwilioConfig {
    /// Parses a submitted or stored configuration. `authToken` may be the plain token or a
    /// value sealed with `cipher` (the stored form); either way it must be 32 hex characters.
    ///
    /// # Errors
    /// `invalid_provider_config` (400) naming the wrong field, including unknown fields.
    pub fn parse(value: &Value, cipher: &SecretCipher) -> Result<Self> {
        let Some(obj) = value.as_object() else {
            return Err(Error::invalid("invalid_provider_config", "the twilio provider config must be a JSON object"));
        };
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(unknown, "unknown field (expected accountSid, authToken, from, apiBaseUrl)"));
        }
        let account_sid = required(obj, "accountSid")?;
        if !(account_sid.len() == 34 && account_sid.starts_with("AC") && is_hex(&account_sid[2..])) {
            return Err(invalid("accountSid", "must be AC followed by 32 hexadecimal characters"));
        }
        let auth_token = parse_token(&required(obj, "authToken")?, cipher)?;
        let from = parse_from(&required(obj, "from")?)?;
        let api_base_url = match obj.get("apiBaseUrl") {
            None | Some(Value::Null) => DEFAULT_API_BASE_URL.to_owned(),
            Some(Value::String(s)) => parse_base_url(s)?,
            Some(_) => return Err(invalid("apiBaseUrl", "must be a string")),
        };
        Ok(Self { account_sid, auth_token, from, api_base_url })
    }

    /// The form stored with the line: the token sealed, `from` as `+E164`, defaults filled.
    #[must_use]
    pub fn to_stored(&self, cipher: &SecretCipher) -> Value {
        json!({
            "accountSid": self.account_sid,
            "authToken": cipher.seal(&self.auth_token),
            "from": self.from.as_str(),
            "apiBaseUrl": self.api_base_url,
        })
    }

    /// The form shown to callers: identifiers in full, the token masked.
    #[must_use]
    pub fn describe(&self) -> Value {
        json!({
            "accountSid": self.account_sid,
            "authToken": mask(&self.auth_token),
            "from": self.from.as_str(),
            "apiBaseUrl": self.api_base_url,
        })
    }
}

fn required(obj: &Map<String, Value>, field: &str) -> Result<String> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(invalid(field, "is required")),
        Some(Value::String(s)) => Ok(s.trim().to_owned()),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn parse_token(raw: &str, cipher: &SecretCipher) -> Result<Secret> {
    let token = if SecretCipher::is_sealed(raw) {
        cipher
            .open(raw)
            .map_err(|_| invalid("authToken", "the sealed value cannot be decrypted with this server key"))?
    } else {
        Secret::new(raw)
    };
    if token.expose().len() != 32 || !is_hex(token.expose()) {
        return Err(invalid("authToken", "must be 32 hexadecimal characters"));
    }
    Ok(token)
}

fn parse_from(raw: &str) -> Result<PhoneNumber> {
    let number = raw.strip_prefix("whatsapp:").unwrap_or(raw).trim();
    if !number.starts_with('+') {
        return Err(invalid("from", "must be whatsapp:+E164 or +E164"));
    }
    PhoneNumber::parse(number).map_err(|_| invalid("from", "must be whatsapp:+E164 or +E164"))
}

fn parse_base_url(raw: &str) -> Result<String> {
    let url = url::Url::parse(raw).map_err(|_| invalid("apiBaseUrl", "must be an absolute http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("apiBaseUrl", "must be an absolute http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("apiBaseUrl", "must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("apiBaseUrl", "must not contain credentials"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Best-effort description of a configuration that does not parse: the non-secret fields as
/// stored, never the token.
pub(crate) fn describe_unreadable(value: &Value) -> Value {
    let mut out = Map::new();
    for field in ["accountSid", "from", "apiBaseUrl"] {
        if let Some(v) = value.get(field).and_then(Value::as_str) {
            out.insert(field.to_owned(), Value::String(v.to_owned()));
        }
    }
    out.insert("authToken".to_owned(), Value::String("…".to_owned()));
    Value::Object(out)
}
