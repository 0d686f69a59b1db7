//! The one error type of EZW's core boundary.
//!
//! An [`Error`] has a [`ErrorKind`] (which the HTTP facade maps to a status code), a stable
//! machine-readable `code` (e.g. `line_not_sendable`), a human message, optional structured
//! details (merged into the JSON error body) and an optional source.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// Convenience alias used across EZW.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in classes a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed or violates a rule (HTTP 400).
    InvalidInput,
    /// Missing, invalid or expired credentials (HTTP 401).
    Unauthenticated,
    /// Authenticated, but not allowed (HTTP 403).
    Forbidden,
    /// Not found, or not visible to the caller's organization (HTTP 404).
    NotFound,
    /// Optimistic conflict, duplicate, reused key or a state that forbids the call (HTTP 409).
    Conflict,
    /// Too many attempts; try again later (HTTP 429).
    RateLimited,
    /// The payload is larger than allowed (HTTP 413).
    PayloadTooLarge,
    /// The payload's media type (told from its bytes) is not accepted (HTTP 415).
    UnsupportedMediaType,
    /// The deployment or provider does not support this (HTTP 501).
    Unsupported,
    /// A dependency is temporarily unavailable; retrying may succeed (HTTP 503).
    Temporary,
    /// A bug or broken invariant (HTTP 500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status code the facade uses for this kind.
    #[must_use]
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidInput => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::RateLimited => 429,
            Self::Unsupported => 501,
            Self::Temporary => 503,
            Self::Internal => 500,
        }
    }
}

/// EZW's error: a kind, a machine-readable code, a message, details and a source.
pub struct Error {
    kind: ErrorKind,
    code: Cow<'static, str>,
    message: String,
    details: Option<serde_json::Map<String, serde_json::Value>>,
    retry_after: Option<Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A new error of `kind` with a stable `code` and a human `message`.
    pub fn new(kind: ErrorKind, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self { kind, code: code.into(), message: message.into(), details: None, retry_after: None, source: None }
    }

    /// 400 with `code`.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, code, message)
    }

    /// 404 `not_found` for a resource type (`"line"`, `"conversation"`...).
    pub fn not_found(what: &'static str) -> Self {
        Self::new(ErrorKind::NotFound, "not_found", format!("{what} not found"))
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, "unauthenticated", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden", message)
    }

    /// 409 with `code`.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    /// 500 `internal` for a broken invariant.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal", message)
    }

    /// 503 `temporarily_unavailable` (retryable).
    pub fn temporary(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Temporary, "temporarily_unavailable", message)
    }

    /// Adds a structured detail, returned to API callers beside `code` and `message`.
    #[must_use]
    pub fn with_detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.get_or_insert_with(Default::default).insert(key.to_owned(), value.into());
        self
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Sets how long the caller should wait before retrying.
    #[must_use]
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The error's kind.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The human message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Structured details, if any.
    #[must_use]
    pub fn details(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.details.as_ref()
    }

    /// Whether retrying the same call may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Temporary | ErrorKind::RateLimited)
    }

    /// How long to wait before a retry, when known.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("code", &self.code).field("message", &self.message);
        if let Some(details) = &self.details {
            d.field("details", details);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_documented_statuses() {
        assert_eq!(ErrorKind::InvalidInput.http_status(), 400);
        assert_eq!(ErrorKind::Unauthenticated.http_status(), 401);
        assert_eq!(ErrorKind::Forbidden.http_status(), 403);
        assert_eq!(ErrorKind::NotFound.http_status(), 404);
        assert_eq!(ErrorKind::Conflict.http_status(), 409);
        assert_eq!(ErrorKind::Unsupported.http_status(), 501);
    }

    #[test]
    fn details_and_retry_classification() {
        let e = Error::conflict("stale_version", "stale").with_detail("currentVersion", 8);
        assert_eq!(e.details().unwrap()["currentVersion"], 8);
        assert!(!e.is_retryable());
        assert!(Error::temporary("busy").is_retryable());
    }
}
