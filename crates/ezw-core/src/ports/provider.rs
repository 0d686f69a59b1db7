//! The line provider port.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::{Error, ErrorKind, Result};
use crate::ids::LineId;
use crate::model::{LifecycleState, Line, MediaRef, Message, Pacing, PairingMethod, ProviderKind};
use crate::phone::PhoneNumber;
use crate::ports::store::{NewInbound, StatusUpdate};
use crate::time::Timestamp;

/// What a provider can do (unsupported calls return [`ProviderErrorKind::Unsupported`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)]
pub struct Capabilities {
    /// Text messages.
    pub text: bool,
    /// Media by external URL.
    pub media_url: bool,
    /// CTA URL buttons.
    pub cta_url_button: bool,
    /// Template messages.
    pub templates: bool,
    /// Pairing by QR code (a session-style line: one live connection per line, run by the node
    /// holding its session lease).
    pub qr_pairing: bool,
    /// Pairing by a code typed on the phone ("link with phone number").
    pub phone_code_pairing: bool,
    /// The provider deduplicates a repeated send, so an ambiguous attempt may be retried safely.
    pub deduplicates_sends: bool,
    /// Reports delivery status events.
    pub status_events: bool,
}

/// A message to hand to a provider.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// The message (its id is stable across attempts).
    pub message: Message,
    /// The recipient.
    pub to: PhoneNumber,
    /// Which attempt this is (1-based).
    pub attempt: u32,
}

/// A provider accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The provider's id for the message.
    pub provider_message_id: String,
}

/// The provider's view of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderHealth {
    /// Lifecycle state as the provider sees it.
    pub lifecycle_state: LifecycleState,
    /// Why, when not connected.
    pub reason: Option<String>,
}

/// How a provider call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderErrorKind {
    /// Transient (timeouts before sending, 429, 5xx, retryable vendor codes): retry later.
    Retryable,
    /// Permanent: retrying cannot help.
    Permanent,
    /// The request may have reached the provider; the outcome is unknown.
    Ambiguous,
    /// The line cannot send right now (auth failure, logged out): hold the queue.
    LineUnavailable,
    /// The provider does not support this call.
    Unsupported,
    /// An inbound request failed verification (missing or wrong signature): answer 401 and
    /// store nothing.
    Unauthorized,
}

/// A provider failure, classified, with the provider's own code.
#[derive(Clone)]
pub struct ProviderError {
    /// Classification.
    pub kind: ProviderErrorKind,
    /// The provider's code (e.g. Meta `131047`) or an EZW code.
    pub code: String,
    /// Human message (never contains credentials).
    pub message: String,
    /// Provider-requested delay.
    pub retry_after: Option<Duration>,
    /// The line state this failure implies (e.g. `AuthFailed`).
    pub line_state: Option<LifecycleState>,
}

impl ProviderError {
    /// A new error.
    pub fn new(kind: ProviderErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { kind, code: code.into(), message: message.into(), retry_after: None, line_state: None }
    }

    /// An `Unsupported` error for an operation name.
    #[must_use]
    pub fn unsupported(operation: &str) -> Self {
        Self::new(
            ProviderErrorKind::Unsupported,
            "unsupported",
            format!("{operation} is not supported by this provider"),
        )
    }

    /// Sets the provider-requested delay.
    #[must_use]
    pub fn with_retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }

    /// Sets the line state this failure implies.
    #[must_use]
    pub fn with_line_state(mut self, state: LifecycleState) -> Self {
        self.line_state = Some(state);
        self
    }

    /// Whether a retry may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        self.kind == ProviderErrorKind::Retryable
    }
}

impl fmt::Debug for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderError")
            .field("kind", &self.kind)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} provider error {}: {}", self.kind, self.code, self.message)
    }
}

impl std::error::Error for ProviderError {}

impl From<ProviderError> for Error {
    fn from(e: ProviderError) -> Self {
        let kind = match e.kind {
            ProviderErrorKind::Unsupported => ErrorKind::Unsupported,
            ProviderErrorKind::Unauthorized => ErrorKind::Unauthenticated,
            ProviderErrorKind::Permanent => ErrorKind::InvalidInput,
            ProviderErrorKind::LineUnavailable => ErrorKind::Conflict,
            ProviderErrorKind::Retryable | ProviderErrorKind::Ambiguous => ErrorKind::Temporary,
        };
        Error::new(kind, format!("provider_{}", e.code), e.message.clone())
    }
}

/// A webhook request from a vendor, as received: everything a provider needs to verify and
/// parse it, without HTTP types.
#[derive(Debug, Clone, Default)]
pub struct InboundRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The full public URL the vendor called, query included (Twilio signs it).
    pub public_url: String,
    /// What follows `/hooks/{kind}/{lineId}` (`""` or `"status"`).
    pub route: String,
    /// Query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers with lower-case names.
    pub headers: Vec<(String, String)>,
    /// The raw body bytes (signatures cover these exactly).
    pub body: Vec<u8>,
}

impl InboundRequest {
    /// A header's value (name in lower case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A query parameter's first value.
    #[must_use]
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What to answer the vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestResponse {
    /// HTTP status.
    pub status: u16,
    /// Content type of `body`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl IngestResponse {
    /// `200` with an empty JSON object.
    #[must_use]
    pub fn ok_json() -> Self {
        Self { status: 200, content_type: "application/json", body: "{}".into() }
    }
}

/// A verified, parsed webhook: events to apply and the answer to send once they are stored.
#[derive(Debug, Clone)]
pub struct IngestOutcome {
    /// Events, in the order the vendor listed them.
    pub events: Vec<ProviderEvent>,
    /// The answer.
    pub response: IngestResponse,
}

/// Media bytes fetched from a provider.
#[derive(Clone)]
pub struct FetchedMedia {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// MIME type as the provider reported it.
    pub content_type: String,
}

impl fmt::Debug for FetchedMedia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedMedia")
            .field("len", &self.bytes.len())
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// Something a provider observed: a status, an inbound message, a line state change.
#[derive(Debug, Clone)]
pub enum ProviderEvent {
    /// A delivery status for an outbound message.
    Status(StatusUpdate),
    /// An inbound message.
    Inbound(Box<NewInbound>),
    /// The line changed state.
    LineState {
        /// Line.
        line_id: LineId,
        /// New state.
        state: LifecycleState,
        /// Why.
        reason: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// A session-style line's connection reported something (see [`SessionSignal`]).
    Session {
        /// Line.
        line_id: LineId,
        /// What happened.
        signal: SessionSignal,
        /// When.
        at: Timestamp,
    },
}

/// What a session-style (QR) line's connection reported. The runtime feeds these to the line's
/// lifecycle state machine ([`crate::session`]), which decides the transitions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionSignal {
    /// A QR pairing string was issued (the first of a pairing, or a rotation); valid for `ttl`.
    Qr {
        /// What the QR image encodes.
        code: String,
        /// How long it can be scanned.
        ttl: Duration,
    },
    /// A phone pairing code was issued; valid for `ttl`.
    PhoneCode {
        /// The code the person types on the phone.
        code: String,
        /// How long it can be used.
        ttl: Duration,
    },
    /// WhatsApp will issue no more QR codes for this pairing.
    QrExhausted,
    /// The phone paired, or the session (re)connected with stored credentials.
    Connected {
        /// The WhatsApp account the session runs as, when known (`972501234567`).
        account: Option<String>,
    },
    /// The connection dropped (network); the credentials are still good.
    Disconnected {
        /// Why, as the backend saw it.
        reason: String,
    },
    /// The device was unlinked from the phone (or WhatsApp logged it out): the credentials are
    /// gone and the line needs a new QR scan.
    LoggedOut {
        /// Why, as the backend saw it.
        reason: String,
    },
    /// WhatsApp banned the number.
    Banned {
        /// Why, as WhatsApp said.
        reason: String,
    },
    /// WhatsApp restricted the account (it may still receive).
    Restricted {
        /// Why, as WhatsApp said.
        reason: String,
    },
    /// WhatsApp signalled a rate limit; sends should stop for `retry_after` (or a default).
    RateLimited {
        /// Why, as WhatsApp said.
        reason: String,
        /// How long WhatsApp asked to wait, when it said.
        retry_after: Option<Duration>,
    },
}

impl SessionSignal {
    /// A short name for logs and records.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Qr { .. } => "qr",
            Self::PhoneCode { .. } => "phone_code",
            Self::QrExhausted => "qr_exhausted",
            Self::Connected { .. } => "connected",
            Self::Disconnected { .. } => "disconnected",
            Self::LoggedOut { .. } => "logged_out",
            Self::Banned { .. } => "banned",
            Self::Restricted { .. } => "restricted",
            Self::RateLimited { .. } => "rate_limited",
        }
    }
}

/// Where session-style providers (simulator, web sessions) push what they observe. The
/// runtime applies events to the store in batches.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<ProviderEvent>,
}

impl EventSink {
    /// A sink and the receiver the runtime drains.
    #[must_use]
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<ProviderEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }

    /// Emits an event; returns false when the runtime has stopped.
    pub fn emit(&self, event: ProviderEvent) -> bool {
        self.tx.send(event).is_ok()
    }
}

/// A provider that runs lines of one [`ProviderKind`].
#[async_trait]
pub trait LineProvider: Send + Sync + 'static {
    /// The kind of line this provider runs.
    fn kind(&self) -> ProviderKind;

    /// What it supports.
    fn capabilities(&self) -> Capabilities;

    /// Validates a line's provider configuration and returns the form to store.
    ///
    /// # Errors
    /// `InvalidInput` naming the wrong field.
    fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value>;

    /// The send pacing lines of this provider use unless they set their own.
    fn default_pacing(&self) -> Pacing {
        Pacing { per_second: 80.0, media_per_second: None, max_in_flight: 16, jitter_ms: 0 }
    }

    /// The lifecycle state a newly created line with this (validated) configuration starts in.
    fn initial_state(&self, config: &serde_json::Value) -> LifecycleState {
        let _ = config;
        LifecycleState::Created
    }

    /// Whether `line` is a session-style line: one live connection, paired by QR, run on the node
    /// holding its session lease, with its lifecycle driven by [`SessionSignal`]s. Defaults to
    /// the `qr_pairing` capability.
    fn runs_session(&self, line: &Line) -> bool {
        let _ = line;
        self.capabilities().qr_pairing
    }

    /// Hands one message to the provider.
    ///
    /// # Errors
    /// A classified [`ProviderError`].
    async fn send(&self, line: &Line, message: &OutboundMessage) -> Result<SendReceipt, ProviderError>;

    /// The provider's view of the line; `wakeup` allows it to call the vendor and (re)connect.
    ///
    /// # Errors
    /// A classified [`ProviderError`].
    async fn health(&self, line: &Line, wakeup: bool) -> Result<ProviderHealth, ProviderError>;

    /// The line's configuration as callers may see it: identifiers in full, secrets masked.
    fn describe_config(&self, config: &serde_json::Value) -> serde_json::Value {
        let _ = config;
        serde_json::json!({})
    }

    /// Verifies (signature first) and parses a vendor webhook for `line`.
    ///
    /// # Errors
    /// [`ProviderErrorKind::Unauthorized`] for a missing or wrong signature; `Permanent` for
    /// a payload that cannot be parsed; `Unsupported` for providers without webhooks.
    async fn ingest(&self, line: &Line, request: &InboundRequest) -> Result<IngestOutcome, ProviderError> {
        let _ = (line, request);
        Err(ProviderError::unsupported("webhook ingress"))
    }

    /// Session-style providers (QR-paired web sessions) keep one live connection per line. The
    /// runtime calls this on the one node holding the line's session lease (see
    /// [`ClusterStore`](super::ClusterStore)), once per acquisition; another node takes the line
    /// over when this node stops renewing. Only called for providers whose capabilities include
    /// `qr_pairing`.
    ///
    /// # Errors
    /// A classified [`ProviderError`]; the runtime tries again at its next lease renewal.
    async fn open_session(&self, line: &Line) -> Result<(), ProviderError> {
        let _ = line;
        Ok(())
    }

    /// Closes what [`LineProvider::open_session`] opened: this node lost or gave up the lease, or
    /// the line was archived. Stored credentials stay (another node may resume the session).
    async fn close_session(&self, line: &Line) {
        let _ = line;
    }

    /// Connects the session with its stored credentials. Success is reported by a
    /// [`SessionSignal::Connected`] (now or soon); no credentials is a [`SessionSignal::LoggedOut`]
    /// or an error with `line_state` `QrRequired`.
    ///
    /// # Errors
    /// A classified [`ProviderError`]; the runtime retries with backoff.
    async fn reconnect(&self, line: &Line) -> Result<(), ProviderError> {
        let _ = line;
        Err(ProviderError::unsupported("session reconnect"))
    }

    /// Starts (or restarts) pairing: the provider drops any stored credentials and reports codes
    /// as [`SessionSignal::Qr`] / [`SessionSignal::PhoneCode`], then [`SessionSignal::Connected`]
    /// once the phone pairs.
    ///
    /// # Errors
    /// A classified [`ProviderError`]; `Unsupported` for a method the provider lacks.
    async fn start_pairing(&self, line: &Line, method: &PairingMethod) -> Result<(), ProviderError> {
        let _ = (line, method);
        Err(ProviderError::unsupported("pairing"))
    }

    /// Stops issuing codes for a pairing that expired or was replaced.
    async fn stop_pairing(&self, line: &Line) {
        let _ = line;
    }

    /// Logs the session out and deletes its stored credentials (the phone shows the device as
    /// unlinked). Used when the line is archived or re-paired.
    ///
    /// # Errors
    /// A classified [`ProviderError`]; the credentials are deleted locally regardless.
    async fn logout(&self, line: &Line) -> Result<(), ProviderError> {
        let _ = line;
        Ok(())
    }

    /// Downloads inbound media named by `media` (a provider media id or a provider URL).
    ///
    /// # Errors
    /// A classified [`ProviderError`].
    async fn fetch_media(&self, line: &Line, media: &MediaRef) -> Result<FetchedMedia, ProviderError> {
        let _ = (line, media);
        Err(ProviderError::unsupported("media download"))
    }
}
