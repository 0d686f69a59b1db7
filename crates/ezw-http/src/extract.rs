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

/// The largest text field of a multipart form (16 KiB).
pub const MAX_FORM_FIELD_BYTES: usize = 16 * 1024;
/// Room a multipart body may take beyond its file: text fields, part headers, boundaries.
const MULTIPART_OVERHEAD: usize = 1024 * 1024;

/// What a `multipart/form-data` request may carry: these text fields (each at most once) and
/// at most one file, in the part named `file_field`, of at most `max_file_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct UploadSpec {
    /// The names of the text fields.
    pub text_fields: &'static [&'static str],
    /// The name of the file part.
    pub file_field: &'static str,
    /// The largest file accepted.
    pub max_file_bytes: usize,
}

/// The file part of an upload form.
#[derive(Clone)]
pub struct UploadedFile {
    /// The part's file name, as the client sent it.
    pub filename: Option<String>,
    /// The bytes (the part's declared `Content-Type` is deliberately not kept: types are told
    /// from the bytes).
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for UploadedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadedFile").field("filename", &self.filename).field("len", &self.bytes.len()).finish()
    }
}

/// A `multipart/form-data` body read under an [`UploadSpec`], never buffering more than its
/// limits: `400 invalid_multipart` (malformed), `400 invalid_request` (an unknown, unnamed or
/// repeated part, a text part that is not UTF-8), `400 too_many_files` (a second file), `413
/// payload_too_large` (the file over its limit, a text part over [`MAX_FORM_FIELD_BYTES`], or
/// the whole body over the file limit plus 1 MiB).
#[derive(Debug, Default)]
pub struct UploadForm {
    /// The text fields, in the order received.
    pub fields: Vec<(String, String)>,
    /// The file, when one was sent.
    pub file: Option<UploadedFile>,
}

/// Whether the request says `Content-Type: multipart/form-data`.
pub fn is_multipart(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"))
}

fn too_large(what: &str, limit: usize) -> ApiError {
    ApiError(Error::new(
        ErrorKind::PayloadTooLarge,
        "payload_too_large",
        format!("{what} is larger than {limit} bytes"),
    ))
}

fn multipart_error(e: &axum::extract::multipart::MultipartError, body_limit: usize) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        too_large("the request body", body_limit)
    } else {
        ApiError::invalid("invalid_multipart", format!("the multipart body could not be read: {}", e.body_text()))
    }
}

impl UploadForm {
    /// Reads the form.
    ///
    /// # Errors
    /// The 400 and 413 answers listed on [`UploadForm`].
    pub async fn read(mut req: Request, spec: UploadSpec) -> Result<Self, ApiError> {
        let body_limit = spec.max_file_bytes.saturating_add(MULTIPART_OVERHEAD);
        axum::extract::DefaultBodyLimit::max(body_limit).apply(&mut req);
        let mut multipart = axum::extract::Multipart::from_request(req, &()).await.map_err(|e| {
            ApiError::invalid("invalid_multipart", format!("expected a multipart/form-data body: {}", e.body_text()))
        })?;
        let mut form = Self::default();
        let mut oversized = None;
        loop {
            let mut field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(e) => return Err(oversized.unwrap_or_else(|| multipart_error(&e, body_limit))),
            };
            if oversized.is_some() {
                // Drain what the client still sends (within the body limit), so it reads the
                // answer instead of a reset connection.
                while let Ok(Some(_)) = field.chunk().await {}
                continue;
            }
            let name = field.name().unwrap_or_default().to_owned();
            let is_file = field.file_name().is_some() || name == spec.file_field;
            if is_file && form.file.is_some() {
                return Err(ApiError::invalid(
                    "too_many_files",
                    format!("send exactly one file, in the part {}", spec.file_field),
                ));
            }
            if is_file && name != spec.file_field {
                return Err(ApiError::invalid(
                    "invalid_request",
                    format!("unexpected file part '{name}'; the file goes in the part {}", spec.file_field),
                ));
            }
            if !is_file && !spec.text_fields.contains(&name.as_str()) {
                return Err(ApiError::invalid("invalid_request", format!("unexpected form part '{name}'")));
            }
            if !is_file && form.fields.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::invalid("invalid_request", format!("the form part '{name}' was sent twice")));
            }
            let limit = if is_file { spec.max_file_bytes } else { MAX_FORM_FIELD_BYTES };
            let filename = field.file_name().map(str::to_owned);
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e, body_limit))? {
                if bytes.len() + chunk.len() > limit {
                    oversized = Some(if is_file {
                        too_large("the file", limit)
                    } else {
                        too_large(&format!("the form part '{name}'"), limit)
                    });
                    while let Ok(Some(_)) = field.chunk().await {}
                    break;
                }
                bytes.extend_from_slice(&chunk);
            }
            if oversized.is_some() {
                continue;
            }
            if is_file {
                form.file = Some(UploadedFile { filename, bytes });
            } else {
                let text = String::from_utf8(bytes).map_err(|_| {
                    ApiError::invalid("invalid_request", format!("the form part '{name}' is not UTF-8 text"))
                })?;
                form.fields.push((name, text));
            }
        }
        match oversized {
            Some(e) => Err(e),
            None => Ok(form),
        }
    }

    /// A text field's value.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}
