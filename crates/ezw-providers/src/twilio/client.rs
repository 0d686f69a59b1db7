//! Twilio REST calls (create a message, fetch the account, download media) and the single
//! [`parse_error`] that classifies every failure.

use std::time::Duration;

use ezw_core::model::{LifecycleState, MessageContent, MessageKind};
use ezw_core::ports::{OutboundMessage, ProviderError, ProviderErrorKind};
use reqwest::header::RETRY_AFTER;
use reqwest::Response;

use super::config::TwilioConfig;
use super::wire::{Account, ApiError, CreateMessage, MessageResource};

/// The largest media download accepted (100 MiB).
pub(crate) const MAX_MEDIA_BYTES: u64 = 100 * 1024 * 1024;

/// The delay suggested for a `429` without a usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Classifies a non-2xx Twilio answer from its HTTP status, `Retry-After` header and body.
pub(crate) fn parse_error(status: u16, retry_after: Option<&str>, body: &[u8]) -> ProviderError {
    let api: ApiError = serde_json::from_slice(body).unwrap_or_default();
    let retry_after = retry_after.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    let code = api.code.map_or_else(|| format!("http_{status}"), |c| c.to_string());
    let detail = match (api.message.as_deref(), api.more_info.as_deref()) {
        (Some(m), Some(info)) => format!("{m} ({info})"),
        (Some(m), None) => m.to_owned(),
        (None, Some(info)) => format!("HTTP {status} ({info})"),
        (None, None) => format!("HTTP {status}"),
    };
    let message = format!("Twilio error {code}: {detail}");
    match api.code {
        _ if status == 429 || api.code == Some(20429) => {
            ProviderError::new(ProviderErrorKind::Retryable, code, message)
                .with_retry_after(retry_after.unwrap_or(DEFAULT_RETRY_AFTER))
        }
        Some(20003) => auth_failed(code, message),
        _ if status == 401 => auth_failed(code, message),
        _ if status >= 500 => {
            let e = ProviderError::new(ProviderErrorKind::Retryable, code, message);
            match retry_after {
                Some(d) => e.with_retry_after(d),
                None => e,
            }
        }
        Some(63016) => ProviderError::new(
            ProviderErrorKind::Permanent,
            code,
            format!(
                "outside the 24-hour customer service window freeform messages are not allowed: \
                 send an approved template (ContentSid) instead. {message}"
            ),
        ),
        Some(21211) => {
            ProviderError::new(ProviderErrorKind::Permanent, code, format!("the recipient (To) is invalid. {message}"))
        }
        _ => ProviderError::new(ProviderErrorKind::Permanent, code, message),
    }
}

fn auth_failed(code: String, message: String) -> ProviderError {
    ProviderError::new(ProviderErrorKind::LineUnavailable, code, format!("Twilio rejected the credentials. {message}"))
        .with_line_state(LifecycleState::AuthFailed)
}

/// Classifies a transport failure. A connect error never reached Twilio; anything later may have
/// (`Ambiguous`) unless the call is idempotent (`Retryable`).
fn transport_error(e: &reqwest::Error, idempotent: bool) -> ProviderError {
    if e.is_connect() {
        return ProviderError::new(ProviderErrorKind::Retryable, "connect_error", format!("cannot reach Twilio: {e}"));
    }
    let code = if e.is_timeout() { "timeout" } else { "transport_error" };
    let kind = if idempotent { ProviderErrorKind::Retryable } else { ProviderErrorKind::Ambiguous };
    ProviderError::new(kind, code, format!("Twilio request failed after it was sent: {e}"))
}

async fn error_from(response: Response) -> ProviderError {
    let status = response.status().as_u16();
    let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.bytes().await.unwrap_or_default();
    let error = parse_error(status, retry_after.as_deref(), &body);
    tracing::debug!(status, code = %error.code, kind = ?error.kind, "Twilio call failed");
    error
}

/// The create-message form for `message` sent from `config.from`, status callbacks to
/// `status_callback`.
///
/// # Errors
/// `Unsupported` for content Twilio cannot send this way (CTA buttons, media without a URL,
/// locations, reactions, ...); `Permanent` `invalid_template` for non-object variables.
pub(crate) fn create_message_form(
    config: &TwilioConfig,
    status_callback: String,
    message: &OutboundMessage,
) -> Result<CreateMessage, ProviderError> {
    let m = &message.message;
    let c: &MessageContent = &m.content;
    let mut form = CreateMessage {
        to: format!("whatsapp:{}", message.to),
        from: format!("whatsapp:{}", config.from),
        status_callback,
        ..CreateMessage::default()
    };
    if c.cta_url_button.is_some() {
        return Err(ProviderError::unsupported("a CTA URL button"));
    }
    if c.location.is_some() || c.contacts.is_some() || c.reaction.is_some() || c.interactive_reply.is_some() {
        return Err(ProviderError::unsupported(&format!("sending a {} message", m.kind.as_str())));
    }
    if let Some(template) = &c.template {
        form.content_sid = Some(template.name.clone());
        form.content_variables = match &template.components {
            None | Some(serde_json::Value::Null) => None,
            Some(v @ serde_json::Value::Object(_)) => Some(v.to_string()),
            Some(_) => {
                return Err(ProviderError::new(
                    ProviderErrorKind::Permanent,
                    "invalid_template",
                    "Twilio content variables (template.components) must be a JSON object",
                ))
            }
        };
    } else if let Some(media) = &c.media {
        let url = media.url.clone().ok_or_else(|| ProviderError::unsupported("media without a public URL"))?;
        form.media_url = Some(url);
        form.body = media.caption.clone().filter(|s| !s.is_empty());
    } else if m.kind == MessageKind::Text && c.body.as_deref().is_some_and(|b| !b.is_empty()) {
        form.body = c.body.clone();
    } else {
        return Err(ProviderError::unsupported(&format!("sending a {} message", m.kind.as_str())));
    }
    Ok(form)
}

/// Whether the account credentials may be sent to `url`: Twilio's own https hosts, or the
/// origin of the line's `apiBaseUrl` (a proxy or a test server).
pub(crate) fn sends_credentials_to(config: &TwilioConfig, url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let twilio = url.scheme() == "https"
        && url
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("twilio.com") || h.to_ascii_lowercase().ends_with(".twilio.com"));
    let same_origin = url::Url::parse(&config.api_base_url).is_ok_and(|base| base.origin() == url.origin());
    twilio || same_origin
}

/// A Twilio REST client for one line's account.
pub(crate) struct Client<'a> {
    http: &'a reqwest::Client,
    config: &'a TwilioConfig,
}

impl<'a> Client<'a> {
    pub(crate) fn new(http: &'a reqwest::Client, config: &'a TwilioConfig) -> Self {
        Self { http, config }
    }

    fn account_url(&self) -> String {
        format!("{}/2010-04-01/Accounts/{}", self.config.api_base_url, self.config.account_sid)
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.basic_auth(&self.config.account_sid, Some(self.config.auth_token.expose()))
    }

    /// `POST .../Messages.json`; returns the created Message resource.
    pub(crate) async fn create_message(&self, form: &CreateMessage) -> Result<MessageResource, ProviderError> {
        let url = format!("{}/Messages.json", self.account_url());
        let response =
            self.authed(self.http.post(url)).form(form).send().await.map_err(|e| transport_error(&e, false))?;
        if !response.status().is_success() {
            return Err(error_from(response).await);
        }
        // Twilio created the message: from here on a failure leaves the outcome unknown.
        let body = response.bytes().await.map_err(|e| transport_error(&e, false))?;
        let resource: MessageResource = serde_json::from_slice(&body).map_err(|e| {
            ProviderError::new(ProviderErrorKind::Ambiguous, "invalid_response", format!("unreadable Message: {e}"))
        })?;
        if resource.sid.as_deref().is_none_or(str::is_empty) {
            return Err(ProviderError::new(ProviderErrorKind::Ambiguous, "invalid_response", "Message without a sid"));
        }
        if resource.error_code.is_some() {
            tracing::warn!(
                sid = resource.sid.as_deref().unwrap_or_default(),
                status = resource.status.as_deref().unwrap_or_default(),
                error_code = ?resource.error_code,
                error_message = resource.error_message.as_deref().unwrap_or_default(),
                "Twilio accepted the message with an error"
            );
        }
        Ok(resource)
    }

    /// `GET /2010-04-01/Accounts/{Sid}.json`.
    pub(crate) async fn fetch_account(&self) -> Result<Account, ProviderError> {
        let url = format!("{}.json", self.account_url());
        let response = self.authed(self.http.get(url)).send().await.map_err(|e| transport_error(&e, true))?;
        if !response.status().is_success() {
            return Err(error_from(response).await);
        }
        let body = response.bytes().await.map_err(|e| transport_error(&e, true))?;
        serde_json::from_slice(&body).map_err(|e| {
            ProviderError::new(ProviderErrorKind::Retryable, "invalid_response", format!("unreadable Account: {e}"))
        })
    }

    /// `GET {media_url}`, following Twilio's redirect to its CDN (reqwest drops the
    /// `Authorization` header when the host changes). Refuses more than `limit` bytes.
    pub(crate) async fn fetch_media(
        &self,
        media_url: &str,
        limit: u64,
    ) -> Result<(Vec<u8>, Option<String>), ProviderError> {
        let too_large = || {
            ProviderError::new(
                ProviderErrorKind::Permanent,
                "media_too_large",
                format!("the media is larger than {limit} bytes"),
            )
        };
        if !sends_credentials_to(self.config, media_url) {
            return Err(ProviderError::new(
                ProviderErrorKind::Permanent,
                "untrusted_media_url",
                "media URLs must be on https://*.twilio.com or the line's apiBaseUrl",
            ));
        }
        let response = self.authed(self.http.get(media_url)).send().await.map_err(|e| transport_error(&e, true))?;
        if !response.status().is_success() {
            return Err(error_from(response).await);
        }
        let content_type = crate::body::content_type(&response);
        let bytes = crate::body::read_limited(response, limit, too_large, |e| transport_error(&e, true)).await?;
        Ok((bytes, content_type))
    }
}
