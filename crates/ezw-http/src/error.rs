//! The one mapping from EZW errors to HTTP responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ezw_core::{Error, ErrorKind};

/// An error returned by a handler: `{"error":{"code","message",...details}}` with the status
/// of its kind.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl ApiError {
    /// A 400 with `code`.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self(Error::invalid(code, message))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.kind().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if matches!(e.kind(), ErrorKind::Internal | ErrorKind::Temporary) {
            tracing::error!(code = e.code(), error = %e, "request failed");
        }
        let mut body = serde_json::Map::new();
        body.insert("code".into(), e.code().into());
        body.insert("message".into(), e.message().into());
        if let Some(details) = e.details() {
            for (k, v) in details {
                body.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let mut response = (status, axum::Json(serde_json::json!({ "error": body }))).into_response();
        if let Some(after) = e.retry_after() {
            if let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
