//! Extractors: JSON bodies with clear 4xx errors, query strings, and bearer authentication.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use ezw_core::{Error, ErrorKind, LineId, Principal};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// The largest JSON body accepted (64 KiB).
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// A JSON body: `415 unsupported_content_type`, `400 missing_body`, `400 invalid_json`,
/// `400 invalid_request` (wrong fields) or `413 payload_too_large`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let is_json =
            essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
        if !content_type.is_empty() && !is_json {
            return Err(ApiError(Error::new(
                ErrorKind::InvalidInput,
                "unsupported_content_type",
                format!("expected Content-Type: application/json, got {content_type}"),
            )));
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_JSON_BODY).await.map_err(|_| {
            ApiError(Error::new(
                ErrorKind::PayloadTooLarge,
                "payload_too_large",
                format!("the request body is larger than {MAX_JSON_BODY} bytes"),
            ))
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid("missing_body", "a JSON request body is required"));
        }
        if content_type.is_empty() {
            return Err(ApiError(Error::new(
                ErrorKind::InvalidInput,
                "unsupported_content_type",
                "Content-Type: application/json is required",
            )));
        }
        // One parse, straight into the target type; serde's error class tells syntax from shape.
        serde_json::from_slice::<T>(&bytes).map(JsonBody).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Syntax | Category::Eof | Category::Io => {
                    ApiError::invalid("invalid_json", format!("the body is not valid JSON: {e}"))
                }
                Category::Data if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') => {
                    ApiError::invalid("invalid_request", "the body must be a JSON object")
                }
                Category::Data => ApiError::invalid("invalid_request", format!("invalid request body: {e}")),
            }
        })
    }
}

/// A query string: `400 invalid_query` when it does not parse.
#[derive(Debug)]
pub struct QueryArgs<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        parse_query(query).map(QueryArgs)
    }
}

fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}").parse().map_err(|_| ApiError::invalid("invalid_query", "malformed query string"))?,
    )
    .map(|q| q.0)
    .map_err(|e| ApiError::invalid("invalid_query", e.body_text()))
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError(Error::new(ErrorKind::Unauthenticated, "missing_token", "Authorization: Bearer <token> is required"))
    })?;
    let value = value.to_str().unwrap_or("");
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError(Error::new(ErrorKind::Unauthenticated, "missing_token", "Authorization must be 'Bearer <token>'"))
        })?;
    Ok(token)
}

/// A Channel API caller: a line API token (`ezw_line_...`) and the one line it reaches.
#[derive(Debug, Clone)]
pub struct LineAuth {
    /// The principal.
    pub principal: Principal,
    /// The token's line.
    pub line_id: LineId,
}

impl FromRequestParts<AppState> for LineAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        let principal = state.ezw.auth().authenticate_line_token(token).await?;
        let Principal::Line(lp) = &principal else {
            return Err(ApiError(Error::unauthenticated("not a line token")));
        };
        let line_id = lp.line_id.clone();
        Ok(Self { principal, line_id })
    }
}

/// A Workspace API caller: a user's ID token.
#[derive(Debug, Clone)]
pub struct UserAuth(pub Principal);

impl FromRequestParts<AppState> for UserAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        if token.starts_with(ezw_core::service::LINE_TOKEN_PREFIX) {
            return Err(ApiError(Error::new(
                ErrorKind::Unauthenticated,
                "wrong_token_type",
                "line API tokens only work on /api/v1 routes; log in for a workspace ID token",
            )));
        }
        Ok(Self(state.ezw.auth().authenticate_id_token(token).await?))
    }
}
