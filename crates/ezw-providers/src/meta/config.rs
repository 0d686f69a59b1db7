//! Meta line configuration: the `provider` block of `POST /api/lines` with `kind: meta`.
//!
//! Submitted form (camelCase, unknown fields rejected):
//! `{"phoneNumberId","wabaId","appId","appSecret","accessToken","verifyToken","apiBaseUrl"?,"apiVersion"?}`.
//! The stored form is the same object with defaults filled in and the three secrets sealed with
//! [`SecretCipher`] (`enc:v1:...`).

use ezw_core::crypto::{mask, SecretCipher};
use ezw_core::{Error, Result, Secret};
use serde_json::{Map, Value};

/// Default Graph API base URL.
pub(crate) const DEFAULT_API_BASE_URL: &str = "https://graph.facebook.com";
/// Default Graph API version.
pub(crate) const DEFAULT_API_VERSION: &str = "v23.0";

const FIELDS: [&str; 8] =
    ["phoneNumberId", "wabaId", "appId", "appSecret", "accessToken", "verifyToken", "apiBaseUrl", "apiVersion"];

/// A Meta (WhatsApp Cloud API) line's configuration with its credentials in memory. `Debug`
/// never prints the secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaConfig {
    /// The business phone number id (digits) sends go from.
    pub phone_number_id: String,
    /// The WhatsApp Business Account id (digits).
    pub waba_id: String,
    /// The Meta app id (digits).
    pub app_id: String,
    /// The app secret that signs webhooks (`X-Hub-Signature-256`).
    pub app_secret: Secret,
    /// The system-user access token for the Graph API.
    pub access_token: Secret,
    /// The token Meta echoes in the webhook verification handshake.
    pub verify_token: Secret,
    /// Graph API base URL without a trailing slash (default `https://graph.facebook.com`).
    pub api_base_url: String,
    /// Graph API version, e.g. `v23.0` (the default).
    pub api_version: String,
}

fn invalid(message: String) -> Error {
    Error::invalid("invalid_provider_config", message)
}

/// Whether secrets in the object are plaintext (submitted) or sealed (stored).
#[derive(Clone, Copy)]
enum Form<'a> {
    Submitted,
    Stored(&'a SecretCipher),
}

impl MetaConfig {
    /// Parses and validates a submitted configuration (secrets in plaintext).
    ///
    /// # Errors
    /// `invalid_provider_config` (400) naming the wrong field; never echoes a secret.
    pub fn from_submitted(value: &Value) -> Result<Self> {
        Self::parse(value, Form::Submitted)
    }

    /// Loads a stored configuration, decrypting its sealed secrets.
    ///
    /// # Errors
    /// `invalid_provider_config` naming the wrong field, or `credentials_unreadable` when a
    /// secret was sealed with another key.
    pub fn from_stored(value: &Value, cipher: &SecretCipher) -> Result<Self> {
        Self::parse(value, Form::Stored(cipher))
    }

    /// The form to store: defaults filled in, secrets sealed.
    #[must_use]
    pub fn to_stored(&self, cipher: &SecretCipher) -> Value {
        serde_json::json!({
            "phoneNumberId": self.phone_number_id,
            "wabaId": self.waba_id,
            "appId": self.app_id,
            "appSecret": cipher.seal(&self.app_secret),
            "accessToken": cipher.seal(&self.access_token),
            "verifyToken": cipher.seal(&self.verify_token),
            "apiBaseUrl": self.api_base_url,
            "apiVersion": self.api_version,
        })
    }

    /// What callers may see: identifiers in full, secrets masked (`…` and the last four).
    #[must_use]
    pub fn describe(&self) -> Value {
        serde_json::json!({
            "phoneNumberId": self.phone_number_id,
            "wabaId": self.waba_id,
            "appId": self.app_id,
            "appSecret": mask(&self.app_secret),
            "accessToken": mask(&self.access_token),
            "verifyToken": mask(&self.verify_token),
            "apiBaseUrl": self.api_base_url,
            "apiVersion": self.api_version,
        })
    }

    /// `{apiBaseUrl}/{apiVersion}/{path}`.
    pub(crate) fn graph_url(&self, path: &str) -> String {
        format!("{}/{}/{}", self.api_base_url, self.api_version, path)
    }

    fn parse(value: &Value, form: Form<'_>) -> Result<Self> {
        let obj = value.as_object().ok_or_else(|| invalid("meta provider config must be a JSON object".into()))?;
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            let shown: String = unknown.chars().take(40).collect();
            return Err(invalid(format!("{shown}: unknown field (expected one of {})", FIELDS.join(", "))));
        }
        let phone_number_id = digits(obj, "phoneNumberId")?;
        let waba_id = digits(obj, "wabaId")?;
        let app_id = digits(obj, "appId")?;
        let app_secret = secret(obj, "appSecret", form)?;
        if app_secret.expose().len() != 32 || !app_secret.expose().bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("appSecret: must be the app's 32 hexadecimal characters".into()));
        }
        let access_token = secret(obj, "accessToken", form)?;
        visible_ascii("accessToken", &access_token, 20, 2048)?;
        let verify_token = secret(obj, "verifyToken", form)?;
        visible_ascii("verifyToken", &verify_token, 1, 256)?;
        let api_base_url = match optional_str(obj, "apiBaseUrl")? {
            Some(s) => base_url(s)?,
            None => DEFAULT_API_BASE_URL.to_owned(),
        };
        let api_version = match optional_str(obj, "apiVersion")? {
            Some(s) if is_api_version(s) => s.to_owned(),
            Some(_) => return Err(invalid("apiVersion: must look like v23.0".into())),
            None => DEFAULT_API_VERSION.to_owned(),
        };
        Ok(Self { phone_number_id, waba_id, app_id, app_secret, access_token, verify_token, api_base_url, api_version })
    }
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(invalid(format!("{field}: is required"))),
        Some(_) => Err(invalid(format!("{field}: must be a string"))),
    }
}

fn optional_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{field}: must be a string"))),
    }
}

fn digits(obj: &Map<String, Value>, field: &str) -> Result<String> {
    let s = required_str(obj, field)?;
    if (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err(invalid(format!("{field}: must be a string of 1 to 32 digits")))
    }
}

fn secret(obj: &Map<String, Value>, field: &str, form: Form<'_>) -> Result<Secret> {
    let s = required_str(obj, field)?;
    match form {
        Form::Submitted => Ok(Secret::new(s)),
        Form::Stored(cipher) => {
            if !SecretCipher::is_sealed(s) {
                return Err(invalid(format!("{field}: stored value is not sealed")));
            }
            cipher.open(s)
        }
    }
}

fn visible_ascii(field: &str, value: &Secret, min: usize, max: usize) -> Result<()> {
    let v = value.expose();
    if (min..=max).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(invalid(format!("{field}: must be {min} to {max} visible ASCII characters")))
    }
}

fn base_url(s: &str) -> Result<String> {
    let err = || invalid("apiBaseUrl: must be an absolute http(s) URL without query or fragment".into());
    let url = url::Url::parse(s).map_err(|_| err())?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.has_host()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !ok {
        return Err(err());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn is_api_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else { return false };
    let Some((major, minor)) = rest.split_once('.') else { return false };
    let number = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    number(major) && number(minor)
}

#[cfg(test)]
mod tests {
    use ezw_core::crypto::derive_key;
    use serde_json::json;

    use super::*;

    const APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "EAAGtestaccesstoken1234567890XYZ";

    fn submitted() -> Value {
        json!({
            "phoneNumberId": "106540352242922",
            "wabaId": "102290129340398",
            "appId": "1234567890",
            "appSecret": APP_SECRET,
            "accessToken": TOKEN,
            "verifyToken": "my-verify-token",
        })
    }

    fn cipher() -> SecretCipher {
        SecretCipher::new(&derive_key(b"test master", "credentials"))
    }

    #[test]
    fn valid_config_is_stored_sealed_with_defaults() {
        let config = MetaConfig::from_submitted(&submitted()).unwrap();
        assert_eq!(config.api_base_url, "https://graph.facebook.com");
        assert_eq!(config.api_version, "v23.0");
        let stored = config.to_stored(&cipher());
        let text = stored.to_string();
        for plain in [APP_SECRET, TOKEN, "my-verify-token"] {
            assert!(!text.contains(plain), "stored config leaks a secret: {text}");
        }
        for field in ["appSecret", "accessToken", "verifyToken"] {
            assert!(SecretCipher::is_sealed(stored[field].as_str().unwrap()), "{field}");
        }
        assert_eq!(stored["phoneNumberId"], "106540352242922");
        assert_eq!(stored["apiBaseUrl"], "https://graph.facebook.com");
        let loaded = MetaConfig::from_stored(&stored, &cipher()).unwrap();
        assert_eq!(loaded, config);
        assert_eq!(loaded.access_token.expose(), TOKEN);
        // The wrong key cannot read it; plaintext is not accepted as stored.
        let other = SecretCipher::new(&derive_key(b"other", "credentials"));
        assert_eq!(MetaConfig::from_stored(&stored, &other).unwrap_err().code(), "credentials_unreadable");
        assert!(MetaConfig::from_stored(&submitted(), &cipher()).is_err());
    }

    #[test]
    fn describe_masks_and_debug_redacts() {
        let config = MetaConfig::from_submitted(&submitted()).unwrap();
        let shown = config.describe();
        assert_eq!(shown["phoneNumberId"], "106540352242922");
        assert_eq!(shown["wabaId"], "102290129340398");
        assert_eq!(shown["accessToken"], "…0XYZ");
        assert_eq!(shown["appSecret"], "…cdef");
        assert_eq!(shown["apiVersion"], "v23.0");
        let text = format!("{shown} {config:?}");
        for plain in [APP_SECRET, TOKEN, "my-verify-token"] {
            assert!(!text.contains(plain), "{text}");
        }
    }

    #[test]
    fn optional_fields_are_validated_and_normalised() {
        let mut v = submitted();
        v["apiBaseUrl"] = json!("http://127.0.0.1:8080/");
        v["apiVersion"] = json!("v21.0");
        let c = MetaConfig::from_submitted(&v).unwrap();
        assert_eq!(c.api_base_url, "http://127.0.0.1:8080");
        assert_eq!(c.graph_url("123/messages"), "http://127.0.0.1:8080/v21.0/123/messages");
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("phoneNumberId", json!("12ab"), "phoneNumberId:"),
            ("phoneNumberId", json!(106_540_352_242_922_u64), "phoneNumberId:"),
            ("wabaId", json!(""), "wabaId:"),
            ("appId", json!("1".repeat(33)), "appId:"),
            ("appSecret", json!("not-hex-not-hex-not-hex-not-hex!"), "appSecret:"),
            ("appSecret", json!("abc"), "appSecret:"),
            ("accessToken", json!("short"), "accessToken:"),
            ("accessToken", json!("has a space in the token value"), "accessToken:"),
            ("verifyToken", json!(""), "verifyToken:"),
            ("apiBaseUrl", json!("ftp://graph.facebook.com"), "apiBaseUrl:"),
            ("apiBaseUrl", json!("https://graph.facebook.com?x=1"), "apiBaseUrl:"),
            ("apiBaseUrl", json!("graph.facebook.com"), "apiBaseUrl:"),
            ("apiVersion", json!("23.0"), "apiVersion:"),
            ("apiVersion", json!("v23"), "apiVersion:"),
        ];
        for (field, bad, expect) in cases {
            let mut v = submitted();
            v[field] = bad.clone();
            let err = MetaConfig::from_submitted(&v).unwrap_err();
            assert_eq!(err.code(), "invalid_provider_config", "{field}={bad}");
            assert!(err.message().starts_with(expect), "{field}={bad}: {}", err.message());
            assert!(!err.message().contains(TOKEN) && !err.message().contains(APP_SECRET));
        }
        let mut missing = submitted();
        missing.as_object_mut().unwrap().remove("accessToken");
        assert_eq!(MetaConfig::from_submitted(&missing).unwrap_err().message(), "accessToken: is required");
        let mut unknown = submitted();
        unknown["kind"] = json!("meta");
        let err = MetaConfig::from_submitted(&unknown).unwrap_err();
        assert!(err.message().starts_with("kind: unknown field"), "{}", err.message());
        assert!(MetaConfig::from_submitted(&json!("nope")).is_err());
    }
}
