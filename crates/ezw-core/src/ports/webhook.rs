//! The transport webhook deliveries go out through (an HTTP client with an SSRF guard in
//! `ezw-providers`; tests may use any implementation).

use std::time::Duration;

use async_trait::async_trait;

/// How much of a receiver's answer is kept as evidence.
pub const RESPONSE_EXCERPT_BYTES: usize = 4096;

/// One POST of a delivery.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// Target URL (already checked by [`WebhookTransport::check_target`] at configuration time;
    /// the transport checks the addresses it connects to again).
    pub url: String,
    /// Headers besides `content-type: application/json`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: String,
    /// Give up after this long.
    pub timeout: Duration,
}

/// The receiver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` in seconds or as an HTTP date, converted to a wait.
    pub retry_after: Option<Duration>,
    /// At most [`RESPONSE_EXCERPT_BYTES`] of the body, lossily decoded as UTF-8.
    pub body_excerpt: String,
}

/// Why a POST got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// Could not connect (refused, unreachable, DNS failure, TLS failure).
    Connect,
    /// No answer within the timeout.
    Timeout,
    /// The target resolved to an address the SSRF guard refuses.
    RefusedTarget,
    /// Anything else (the connection broke mid-answer, ...).
    Other,
}

impl TransportErrorKind {
    /// Stable name, recorded as the attempt's error prefix.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::RefusedTarget => "refused_target",
            Self::Other => "other",
        }
    }
}

/// A POST that got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct TransportError {
    /// Classification.
    pub kind: TransportErrorKind,
    /// Human detail (no secrets).
    pub message: String,
}

impl TransportError {
    /// A new error.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

/// Sends webhook deliveries.
#[async_trait]
pub trait WebhookTransport: Send + Sync + 'static {
    /// Checks a target URL when a webhook is configured: `http`/`https` only, and (unless private
    /// targets are allowed) no host that resolves to loopback, private, link-local, shared,
    /// unspecified or cloud-metadata addresses.
    ///
    /// # Errors
    /// 400-class errors: `invalid_webhook_url`, `webhook_target_private`,
    /// `webhook_target_unresolvable`.
    async fn check_target(&self, url: &str) -> crate::Result<()>;

    /// POSTs one delivery. Redirects are not followed (a 3xx is an answer like any other).
    ///
    /// # Errors
    /// [`TransportError`] when no HTTP answer came back.
    async fn post(&self, request: WebhookRequest) -> Result<WebhookResponse, TransportError>;
}
