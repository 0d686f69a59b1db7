//! Graph API calls (send, media download, phone number status) and the one [`parse_error`]
//! that classifies every failure.

use std::time::Duration;

use ezw_core::model::{LifecycleState, MediaKind, Message, MessageKind};
use ezw_core::ports::{FetchedMedia, ProviderError, ProviderErrorKind, ProviderHealth, SendReceipt};
use ezw_core::PhoneNumber;
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};

use super::config::MetaConfig;
use super::wire::{
    CtaUrlAction, CtaUrlParameters, ErrorResponse, InteractiveBody, InteractiveObject, MediaMetadata, MediaObject,
    PhoneNumberStatus, SendContext, SendPayload, SendRequest, SendResponse, TemplateLanguage, TemplateObject,
    TextObject,
};
use crate::body::read_limited;

/// The largest media EZW downloads (WhatsApp's own limit for documents is 100 MB).
pub(crate) const MAX_MEDIA_BYTES: u64 = 100 * 1024 * 1024;
/// The largest JSON answer read from the Graph API.
const MAX_JSON_BYTES: u64 = 1024 * 1024;
/// Longest Retry-After honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Default delay for throughput and rate-limit errors (130429, 4, 80007).
const RATE_LIMIT_DELAY: Duration = Duration::from_secs(60);
/// Default delay for the pair rate limit (131056).
const PAIR_RATE_LIMIT_DELAY: Duration = Duration::from_secs(6);
/// Longest message taken from a vendor error.
const MAX_MESSAGE_CHARS: usize = 600;

/// Graph API calls for one line.
pub(crate) struct Client<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) config: &'a MetaConfig,
}

impl Client<'_> {
    /// `POST /{version}/{phone-number-id}/messages`.
    pub(crate) async fn send(&self, to: &PhoneNumber, message: &Message) -> Result<SendReceipt, ProviderError> {
        let body = send_request(to, message)?;
        let url = self.config.graph_url(&format!("{}/messages", self.config.phone_number_id));
        let request = self.http.post(url).bearer_auth(self.config.access_token.expose()).json(&body);
        let bytes = self.execute(request).await?;
        let response: SendResponse = serde_json::from_slice(&bytes).map_err(|_| {
            ProviderError::new(
                ProviderErrorKind::Ambiguous,
                "invalid_response",
                "Meta accepted the send but its answer was not the documented JSON",
            )
        })?;
        let Some(sent) = response.messages.into_iter().next().filter(|m| !m.id.is_empty()) else {
            return Err(ProviderError::new(
                ProviderErrorKind::Ambiguous,
                "invalid_response",
                "Meta answered the send without a message id",
            ));
        };
        if let Some(status) = sent.message_status.as_deref().filter(|s| *s != "accepted") {
            tracing::info!(wamid = %sent.id, message_status = status, "Meta accepted the send with a non-default status");
        }
        Ok(SendReceipt { provider_message_id: sent.id })
    }

    /// `GET /{version}/{phone-number-id}?fields=status,quality_rating,name_status`, mapped to a
    /// lifecycle state. A rejected token (190) is reported as `AuthFailed`, not as an error.
    pub(crate) async fn health(&self) -> Result<ProviderHealth, ProviderError> {
        let url = self.config.graph_url(&self.config.phone_number_id);
        let request = self
            .http
            .get(url)
            .query(&[("fields", "status,quality_rating,name_status")])
            .bearer_auth(self.config.access_token.expose());
        let bytes = match self.execute(request).await {
            Ok(bytes) => bytes,
            Err(e) if e.line_state == Some(LifecycleState::AuthFailed) => {
                return Ok(ProviderHealth { lifecycle_state: LifecycleState::AuthFailed, reason: Some(e.message) });
            }
            Err(e) => return Err(e),
        };
        let status: PhoneNumberStatus = serde_json::from_slice(&bytes).map_err(|_| {
            ProviderError::new(
                ProviderErrorKind::Retryable,
                "invalid_response",
                "Meta's phone number status was not JSON",
            )
        })?;
        Ok(phone_health(&status))
    }

    /// `GET /{version}/{media-id}` for the short-lived URL, then `GET {url}`; both with the
    /// bearer token.
    pub(crate) async fn fetch_media(&self, media_id: &str) -> Result<FetchedMedia, ProviderError> {
        if media_id.is_empty() || media_id.len() > 64 || !media_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(permanent("invalid_media_id", "a Meta media id is a string of digits"));
        }
        let token = self.config.access_token.expose();
        let request = self.http.get(self.config.graph_url(media_id)).bearer_auth(token);
        let bytes = self.execute(request).await?;
        let meta: MediaMetadata = serde_json::from_slice(&bytes)
            .map_err(|_| permanent("invalid_response", "Meta's media metadata was not the documented JSON"))?;
        if meta.file_size.is_some_and(|n| n > MAX_MEDIA_BYTES) {
            return Err(too_large());
        }
        let url = meta
            .url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| permanent("invalid_response", "Meta's media metadata has no http(s) download URL"))?;
        let response = self.http.get(url).bearer_auth(token).send().await.map_err(transport_error)?;
        if !response.status().is_success() {
            return Err(self.error_from(response).await);
        }
        let header_type = header_str(response.headers(), CONTENT_TYPE.as_str());
        let bytes = read_limited(response, MAX_MEDIA_BYTES, too_large, transport_error).await?;
        let content_type = meta
            .mime_type
            .filter(|m| !m.is_empty())
            .or(header_type)
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        Ok(FetchedMedia { bytes, content_type })
    }

    /// Sends a request and returns the body of a 2xx answer; anything else goes through
    /// [`parse_error`].
    async fn execute(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, ProviderError> {
        let response = request.send().await.map_err(transport_error)?;
        if !response.status().is_success() {
            return Err(self.error_from(response).await);
        }
        let too_large = || permanent("response_too_large", "Meta's answer was larger than any documented response");
        read_limited(response, MAX_JSON_BYTES, too_large, transport_error).await
    }

    async fn error_from(&self, response: reqwest::Response) -> ProviderError {
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        // Error bodies are small; a huge or broken one is classified by its status alone.
        let body = read_limited(response, MAX_JSON_BYTES, too_large, transport_error).await.unwrap_or_default();
        let mut error = parse_error(status, retry_after, &body);
        let token = self.config.access_token.expose();
        if !token.is_empty() && error.message.contains(token) {
            error.message = error.message.replace(token, "[redacted]");
        }
        error
    }
}

/// Builds the send body for `message` to `to`.
pub(crate) fn send_request(to: &PhoneNumber, message: &Message) -> Result<SendRequest, ProviderError> {
    let content = &message.content;
    let payload = if let Some(template) = &content.template {
        SendPayload::Template {
            template: TemplateObject {
                name: template.name.clone(),
                language: TemplateLanguage {
                    policy: "deterministic",
                    code: template.language.clone().unwrap_or_else(|| "en_US".to_owned()),
                },
                components: template.components.clone(),
            },
        }
    } else {
        match message.kind {
            MessageKind::Text => {
                let body = content
                    .body
                    .clone()
                    .filter(|b| !b.trim().is_empty())
                    .ok_or_else(|| permanent("invalid_message", "a text message needs a non-empty body"))?;
                match &content.cta_url_button {
                    Some(cta) => SendPayload::Interactive {
                        interactive: InteractiveObject {
                            kind: "cta_url",
                            body: InteractiveBody { text: body },
                            action: CtaUrlAction {
                                name: "cta_url",
                                parameters: CtaUrlParameters {
                                    display_text: cta.display_text.clone(),
                                    url: cta.url.clone(),
                                },
                            },
                        },
                    },
                    None => {
                        let preview_url = has_url(&body);
                        SendPayload::Text { text: TextObject { body, preview_url } }
                    }
                }
            }
            MessageKind::Image | MessageKind::Video | MessageKind::Audio | MessageKind::Document => {
                media_payload(message)?
            }
            MessageKind::Template => {
                return Err(permanent("invalid_message", "a template message needs a template name"));
            }
            other => {
                return Err(ProviderError::unsupported(&format!("sending {} messages", other.as_str())));
            }
        }
    };
    Ok(SendRequest {
        messaging_product: "whatsapp",
        recipient_type: "individual",
        to: to.digits().to_owned(),
        context: content.reply_to.clone().map(|message_id| SendContext { message_id }),
        payload,
    })
}

fn media_payload(message: &Message) -> Result<SendPayload, ProviderError> {
    let media =
        message.content.media.as_ref().ok_or_else(|| permanent("invalid_message", "a media message needs media"))?;
    let link = media.url.clone().ok_or_else(|| ProviderError::unsupported("sending media without a URL (uploads)"))?;
    let caption = media.caption.clone().filter(|c| !c.is_empty());
    Ok(match media.kind {
        MediaKind::Image => SendPayload::Image { image: MediaObject { link, caption, filename: None } },
        MediaKind::Video => SendPayload::Video { video: MediaObject { link, caption, filename: None } },
        MediaKind::Audio => SendPayload::Audio { audio: MediaObject { link, caption: None, filename: None } },
        MediaKind::Document => {
            let filename = media.filename.clone().filter(|f| !f.is_empty());
            SendPayload::Document { document: MediaObject { link, caption, filename } }
        }
    })
}

/// Whether a text contains an http(s) URL (Meta then renders a link preview).
fn has_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("http://") || lower.contains("https://")
}

fn phone_health(status: &PhoneNumberStatus) -> ProviderHealth {
    let reason = || {
        let mut parts = Vec::new();
        if let Some(s) = &status.status {
            parts.push(format!("status {s}"));
        }
        if let Some(q) = &status.quality_rating {
            parts.push(format!("quality_rating {q}"));
        }
        if let Some(n) = &status.name_status {
            parts.push(format!("name_status {n}"));
        }
        Some(parts.join(", "))
    };
    let state = match status.status.as_deref().map(str::to_ascii_uppercase).as_deref() {
        // No status field: the call succeeded, so the number and its token work.
        None | Some("CONNECTED") => LifecycleState::Connected,
        // Tier statuses name the messaging limit of a working number.
        Some(s) if s.starts_with("MESSAGING_LIMIT_TIER") => LifecycleState::Connected,
        Some("FLAGGED" | "RESTRICTED" | "RATE_LIMITED") => LifecycleState::Restricted,
        // BANNED, DISCONNECTED, DELETED, MIGRATED, PENDING, UNVERIFIED and anything new.
        Some(_) => LifecycleState::Blocked,
    };
    let reason = if state == LifecycleState::Connected { None } else { reason() };
    ProviderHealth { lifecycle_state: state, reason }
}

/// Classifies a non-2xx Graph API answer. `code` is Meta's numeric `error.code` as a string
/// when the body has one, else `http_{status}`.
pub(crate) fn parse_error(status: u16, retry_after: Option<Duration>, body: &[u8]) -> ProviderError {
    let graph = serde_json::from_slice::<ErrorResponse>(body).ok().map(|r| r.error);
    let meta_code = graph.as_ref().and_then(|g| g.code);
    let code = meta_code.map_or_else(|| format!("http_{status}"), |c| c.to_string());
    let described = match &graph {
        Some(g) => {
            let mut text = format!("Meta error {code}");
            if let Some(kind) = g.kind.as_deref().filter(|k| !k.is_empty()) {
                text.push_str(&format!(" ({kind})"));
            }
            if let Some(sub) = g.error_subcode {
                text.push_str(&format!(" subcode {sub}"));
            }
            text.push_str(&format!(" [HTTP {status}]"));
            if let Some(m) = g.message.as_deref().filter(|m| !m.is_empty()) {
                text.push_str(&format!(": {m}"));
            }
            if let Some(d) = g.error_data.as_ref().and_then(|d| d.details.as_deref()).filter(|d| !d.is_empty()) {
                text.push_str(&format!(" ({d})"));
            }
            if let Some(t) = g.fbtrace_id.as_deref().filter(|t| !t.is_empty()) {
                text.push_str(&format!(" fbtrace_id {t}"));
            }
            truncate(&text)
        }
        None => format!("Meta answered HTTP {status}"),
    };
    let retryable = |default: Option<Duration>| {
        let e = ProviderError::new(ProviderErrorKind::Retryable, code.clone(), described.clone());
        match retry_after.or(default) {
            Some(d) => e.with_retry_after(d.min(MAX_RETRY_AFTER)),
            None => e,
        }
    };
    match meta_code {
        Some(130_429 | 4 | 80_007) => retryable(Some(RATE_LIMIT_DELAY)),
        Some(131_056) => retryable(Some(PAIR_RATE_LIMIT_DELAY)),
        Some(131_047) => ProviderError::new(
            ProviderErrorKind::Permanent,
            code,
            format!(
                "the 24-hour customer service window is closed (more than 24 hours since the customer last \
                 replied); send an approved template message instead. {described}"
            ),
        ),
        Some(131_026) => ProviderError::new(
            ProviderErrorKind::Permanent,
            code,
            format!("message undeliverable to this recipient. {described}"),
        ),
        Some(190) => ProviderError::new(
            ProviderErrorKind::LineUnavailable,
            code,
            format!("Meta rejected the line's access token (expired or revoked). {described}"),
        )
        .with_line_state(LifecycleState::AuthFailed),
        // Line-wide conditions: hold the line's queue instead of failing every message.
        Some(131_031) => ProviderError::new(
            ProviderErrorKind::LineUnavailable,
            code,
            format!("the WhatsApp Business account is locked. {described}"),
        )
        .with_line_state(LifecycleState::Blocked),
        Some(368) => ProviderError::new(
            ProviderErrorKind::LineUnavailable,
            code,
            format!("the number is temporarily blocked for policy violations. {described}"),
        )
        .with_line_state(LifecycleState::Restricted),
        Some(133_010) => ProviderError::new(
            ProviderErrorKind::LineUnavailable,
            code,
            format!("the phone number is not registered with the Cloud API. {described}"),
        )
        .with_line_state(LifecycleState::Blocked),
        _ if status == 429 || status >= 500 => retryable(None),
        _ => ProviderError::new(ProviderErrorKind::Permanent, code, described),
    }
}

/// Classifies a transport failure: nothing sent (connect) is retryable; a timeout or a failure
/// after the request left may have reached Meta, so its outcome is unknown.
pub(crate) fn transport_error(e: reqwest::Error) -> ProviderError {
    let e = e.without_url();
    if e.is_builder() {
        permanent("invalid_request", format!("the request could not be built: {e}"))
    } else if e.is_connect() {
        ProviderError::new(ProviderErrorKind::Retryable, "connect_error", format!("could not connect to Meta: {e}"))
    } else if e.is_timeout() {
        ProviderError::new(ProviderErrorKind::Ambiguous, "timeout", format!("Meta did not answer in time: {e}"))
    } else {
        ProviderError::new(ProviderErrorKind::Ambiguous, "transport_error", format!("the Meta call failed: {e}"))
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header_str(headers, RETRY_AFTER.as_str()).and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs)
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn permanent(code: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(ProviderErrorKind::Permanent, code, message)
}

fn too_large() -> ProviderError {
    permanent("media_too_large", format!("media larger than {} MiB is refused", MAX_MEDIA_BYTES / (1024 * 1024)))
}

fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    out.push('…');
    out
}
