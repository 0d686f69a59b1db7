//! WAHA REST calls (sessions, pairing, sends, media) and the single [`parse_error`] that
//! classifies every failure.

use std::time::Duration;

use ezw_core::model::{LifecycleState, MediaKind, MessageKind};
use ezw_core::ports::{OutboundMessage, ProviderError, ProviderErrorKind};
use reqwest::header::RETRY_AFTER;
use reqwest::{RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::config::WahaConfig;
use super::wire::{
    ApiError, LidToPhoneNumber, MessageFileRequest, MessageTextRequest, QrCodeValue, RequestCodeRequest,
    RequestCodeResponse, SentMessage, SessionConfig, SessionCreateRequest, SessionInfo, SessionUpdateRequest,
};

/// The header WAHA reads its API key from.
pub(crate) const API_KEY_HEADER: &str = "x-api-key";

/// The largest media download accepted (100 MiB).
pub(crate) const MAX_MEDIA_BYTES: u64 = 100 * 1024 * 1024;

/// The delay suggested for a `429` without a usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Classifies a non-2xx WAHA answer from its HTTP status, `Retry-After` header and body:
/// `429` and `5xx` are retryable; `401`/`403` (a wrong API key) hold the line as `auth_failed`;
/// `404` (no such session) and `422` "session status is not as expected" hold the line until its
/// session works again; any other `4xx` is permanent.
pub(crate) fn parse_error(status: u16, retry_after: Option<&str>, body: &[u8]) -> ProviderError {
    let api: ApiError = serde_json::from_slice(body).unwrap_or_default();
    let retry_after = retry_after.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    let detail = api.text().unwrap_or_else(|| format!("HTTP {status}"));
    let message = format!("WAHA error {status}: {detail}");
    match status {
        429 => ProviderError::new(ProviderErrorKind::Retryable, "rate_limited", message)
            .with_retry_after(retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
        401 | 403 => ProviderError::new(
            ProviderErrorKind::LineUnavailable,
            "unauthorized",
            format!("the WAHA sidecar rejected the API key. {message}"),
        )
        .with_line_state(LifecycleState::AuthFailed),
        404 => ProviderError::new(ProviderErrorKind::LineUnavailable, "session_not_found", message),
        422 if api.status.is_some() || detail.to_ascii_lowercase().contains("status") => {
            ProviderError::new(ProviderErrorKind::LineUnavailable, "session_not_working", message)
        }
        500..=599 => {
            let e = ProviderError::new(ProviderErrorKind::Retryable, format!("http_{status}"), message);
            match retry_after {
                Some(d) => e.with_retry_after(d),
                None => e,
            }
        }
        _ => ProviderError::new(ProviderErrorKind::Permanent, format!("http_{status}"), message),
    }
}

/// Classifies a transport failure. A connect error never reached WAHA; anything later may have
/// (`Ambiguous`) unless the call is idempotent (`Retryable`).
pub(crate) fn transport_error(e: &reqwest::Error, idempotent: bool) -> ProviderError {
    if e.is_connect() {
        return ProviderError::new(
            ProviderErrorKind::Retryable,
            "connect_error",
            format!("cannot reach the WAHA sidecar: {e}"),
        );
    }
    let code = if e.is_timeout() { "timeout" } else { "transport_error" };
    let kind = if idempotent { ProviderErrorKind::Retryable } else { ProviderErrorKind::Ambiguous };
    ProviderError::new(kind, code, format!("WAHA request failed after it was sent: {e}"))
}

fn invalid_response(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(ProviderErrorKind::Retryable, "invalid_response", format!("unreadable WAHA {what}: {e}"))
}

async fn error_from(response: Response) -> ProviderError {
    let status = response.status().as_u16();
    let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.bytes().await.unwrap_or_default();
    let error = parse_error(status, retry_after.as_deref(), &body);
    tracing::debug!(status, code = %error.code, kind = ?error.kind, "WAHA call failed");
    error
}

/// A send, ready for the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendRequest {
    /// `POST /api/sendText`.
    Text(MessageTextRequest),
    /// `POST {path}` (`/api/sendImage` or `/api/sendFile`).
    File {
        /// Where.
        path: &'static str,
        /// What.
        body: MessageFileRequest,
    },
}

impl SendRequest {
    /// The chat the message goes to.
    pub(crate) fn chat_id(&self) -> &str {
        match self {
            Self::Text(t) => &t.chat_id,
            Self::File { body, .. } => &body.chat_id,
        }
    }
}

/// The WhatsApp chat id of a phone number: its digits and `@c.us`.
pub(crate) fn chat_id(to: &ezw_core::PhoneNumber) -> String {
    format!("{}@c.us", to.as_str().trim_start_matches('+'))
}

/// A MIME type for media sent without one (`RemoteFile.mimetype` is required): from the URL's
/// extension, else a generic type for the kind.
fn guess_mimetype(kind: MediaKind, url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    let by_ext = match ext.as_str() {
        "jpg" | "jpeg" => Some("image/jpeg"),
        "png" => Some("image/png"),
        "webp" => Some("image/webp"),
        "gif" => Some("image/gif"),
        "mp4" => Some("video/mp4"),
        "3gp" => Some("video/3gpp"),
        "mp3" => Some("audio/mpeg"),
        "ogg" | "oga" | "opus" => Some("audio/ogg"),
        "m4a" => Some("audio/mp4"),
        "pdf" => Some("application/pdf"),
        "txt" => Some("text/plain"),
        _ => None,
    };
    by_ext
        .unwrap_or(match kind {
            MediaKind::Image => "image/jpeg",
            MediaKind::Video => "video/mp4",
            MediaKind::Audio => "audio/mpeg",
            MediaKind::Document => "application/octet-stream",
        })
        .to_owned()
}

/// The WAHA request for `message` on `session`: text to `sendText`, an image by URL to
/// `sendImage`, other media by URL to `sendFile`; a reply sets `reply_to`.
///
/// # Errors
/// `Unsupported` for content a WhatsApp Web session cannot send this way (templates, CTA
/// buttons, media without a URL, locations, reactions, ...).
pub(crate) fn send_request(session: &str, message: &OutboundMessage) -> Result<SendRequest, ProviderError> {
    let m = &message.message;
    let c = &m.content;
    if c.template.is_some() {
        return Err(ProviderError::unsupported("a template message on a WhatsApp Web session"));
    }
    if c.cta_url_button.is_some() {
        return Err(ProviderError::unsupported("a CTA URL button"));
    }
    if c.location.is_some() || c.contacts.is_some() || c.reaction.is_some() || c.interactive_reply.is_some() {
        return Err(ProviderError::unsupported(&format!("sending a {} message", m.kind.as_str())));
    }
    let chat_id = chat_id(&message.to);
    let reply_to = c.reply_to.clone().filter(|s| !s.is_empty());
    if let Some(media) = &c.media {
        let url = media.url.clone().ok_or_else(|| ProviderError::unsupported("media without a public URL"))?;
        let mimetype =
            media.mime_type.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| guess_mimetype(media.kind, &url));
        let caption = media.caption.clone().filter(|s| !s.is_empty() && media.kind.allows_caption());
        let filename = media.filename.clone().filter(|s| !s.is_empty());
        let path = if media.kind == MediaKind::Image { "/api/sendImage" } else { "/api/sendFile" };
        let file = super::wire::RemoteFile { url, mimetype, filename };
        return Ok(SendRequest::File {
            path,
            body: MessageFileRequest { session: session.to_owned(), chat_id, file, caption, reply_to },
        });
    }
    match c.body.as_deref() {
        Some(text) if m.kind == MessageKind::Text && !text.is_empty() => Ok(SendRequest::Text(MessageTextRequest {
            session: session.to_owned(),
            chat_id,
            text: text.to_owned(),
            reply_to,
        })),
        _ => Err(ProviderError::unsupported(&format!("sending a {} message", m.kind.as_str()))),
    }
}

/// A WAHA REST client for one line's sidecar.
pub(crate) struct Client<'a> {
    http: &'a reqwest::Client,
    config: &'a WahaConfig,
}

impl<'a> Client<'a> {
    pub(crate) fn new(http: &'a reqwest::Client, config: &'a WahaConfig) -> Self {
        Self { http, config }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url)
    }

    fn authed(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.config.api_key {
            Some(key) => request.header(API_KEY_HEADER, key.expose()),
            None => request,
        }
    }

    /// Sends `request`; a non-2xx answer becomes its classified error.
    async fn call(&self, request: RequestBuilder, idempotent: bool) -> Result<Response, ProviderError> {
        let response = self.authed(request).send().await.map_err(|e| transport_error(&e, idempotent))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error_from(response).await)
        }
    }

    async fn json<T: DeserializeOwned>(response: Response, what: &str, idempotent: bool) -> Result<T, ProviderError> {
        let body = response.bytes().await.map_err(|e| transport_error(&e, idempotent))?;
        serde_json::from_slice(&body).map_err(|e| invalid_response(what, e))
    }

    async fn post_json<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<Response, ProviderError> {
        self.call(self.http.post(self.url(path)).json(body), true).await
    }

    /// Creates the session, or updates its config when it exists (`PUT`, then `POST` on `404`).
    pub(crate) async fn upsert_session(&self, name: &str, config: SessionConfig) -> Result<(), ProviderError> {
        let update = SessionUpdateRequest { config: config.clone() };
        match self.call(self.http.put(self.url(&format!("/api/sessions/{name}"))).json(&update), true).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == "session_not_found" => {
                let create = SessionCreateRequest { name: name.to_owned(), start: false, config };
                self.post_json("/api/sessions", &create).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// `POST /api/sessions/{session}/start` (idempotent).
    pub(crate) async fn start(&self, name: &str) -> Result<(), ProviderError> {
        self.call(self.http.post(self.url(&format!("/api/sessions/{name}/start"))), true).await.map(|_| ())
    }

    /// `POST /api/sessions/{session}/stop` (idempotent).
    pub(crate) async fn stop(&self, name: &str) -> Result<(), ProviderError> {
        self.call(self.http.post(self.url(&format!("/api/sessions/{name}/stop"))), true).await.map(|_| ())
    }

    /// `POST /api/sessions/{session}/logout`: drops the credentials (WAHA restarts a running
    /// session, which then asks for a QR scan).
    pub(crate) async fn logout(&self, name: &str) -> Result<(), ProviderError> {
        self.call(self.http.post(self.url(&format!("/api/sessions/{name}/logout"))), true).await.map(|_| ())
    }

    /// `GET /api/sessions/{session}`.
    pub(crate) async fn session(&self, name: &str) -> Result<SessionInfo, ProviderError> {
        let response = self.call(self.http.get(self.url(&format!("/api/sessions/{name}"))), true).await?;
        Self::json(response, "session", true).await
    }

    /// `GET /api/{session}/auth/qr?format=raw`: the current pairing string.
    pub(crate) async fn qr(&self, name: &str) -> Result<String, ProviderError> {
        let request = self.http.get(self.url(&format!("/api/{name}/auth/qr"))).query(&[("format", "raw")]);
        let response = self.call(request, true).await?;
        let qr: QrCodeValue = Self::json(response, "QR code", true).await?;
        Ok(qr.value)
    }

    /// `POST /api/{session}/auth/request-code`: a code to type on the phone `phone_digits`.
    pub(crate) async fn request_code(&self, name: &str, phone_digits: &str) -> Result<String, ProviderError> {
        let body = RequestCodeRequest { phone_number: phone_digits.to_owned() };
        let response = self.post_json(&format!("/api/{name}/auth/request-code"), &body).await?;
        let answer: RequestCodeResponse = Self::json(response, "pairing code", true).await?;
        answer.code.filter(|c| !c.is_empty()).ok_or_else(|| invalid_response("pairing code", "no `code` in the answer"))
    }

    /// `GET /api/{session}/lids/{lid}`: the phone chat id behind a privacy id, when known.
    pub(crate) async fn lid_phone(&self, name: &str, lid: &str) -> Result<Option<String>, ProviderError> {
        let response = self.call(self.http.get(self.url(&format!("/api/{name}/lids/{lid}"))), true).await?;
        let found: LidToPhoneNumber = Self::json(response, "lid lookup", true).await?;
        Ok(found.pn.filter(|pn| !pn.is_empty()))
    }

    /// `POST /api/sendText`.
    pub(crate) async fn send_text(&self, body: &MessageTextRequest) -> Result<SentMessage, ProviderError> {
        let response = self.call(self.http.post(self.url("/api/sendText")).json(body), false).await?;
        Ok(Self::json(response, "send answer", false).await.unwrap_or_default())
    }

    /// `POST /api/sendImage` or `/api/sendFile` (`path`).
    pub(crate) async fn send_file(&self, path: &str, body: &MessageFileRequest) -> Result<SentMessage, ProviderError> {
        let response = self.call(self.http.post(self.url(path)).json(body), false).await?;
        Ok(Self::json(response, "send answer", false).await.unwrap_or_default())
    }

    /// Whether the API key may be sent to `url`: only to the sidecar's own origin.
    pub(crate) fn is_sidecar_url(&self, url: &str) -> bool {
        match (url::Url::parse(url), url::Url::parse(&self.config.base_url)) {
            (Ok(url), Ok(base)) => url.origin() == base.origin(),
            _ => false,
        }
    }

    /// `GET {media_url}` on the sidecar (`/api/files/...`). Refuses other origins and more than
    /// `limit` bytes.
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
        if !self.is_sidecar_url(media_url) {
            return Err(ProviderError::new(
                ProviderErrorKind::Permanent,
                "untrusted_media_url",
                "media URLs must be on the line's WAHA baseUrl",
            ));
        }
        let response = self.call(self.http.get(media_url), true).await?;
        let content_type = crate::body::content_type(&response);
        let bytes = crate::body::read_limited(response, limit, too_large, |e| transport_error(&e, true)).await?;
        Ok((bytes, content_type))
    }
}
