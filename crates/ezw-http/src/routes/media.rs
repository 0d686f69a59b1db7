//! Media access: signed URLs for attachments (`GET /api/attachments/{attachmentId}/url`) and
//! the bytes behind them (`GET /media/{attachmentId}?expires=&signature=`, no bearer token:
//! the signature is the credential).

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ezw_core::service::SignedMediaUrl;
use serde::Deserialize;

use crate::error::ApiResult;
use crate::extract::{QueryArgs, UserAuth};
use crate::state::AppState;

#[derive(Deserialize)]
pub(crate) struct UrlQuery {
    #[serde(rename = "expiresInSeconds")]
    expires_in_seconds: Option<String>,
}

pub(crate) async fn attachment_url(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(attachment_id): Path<String>,
    QueryArgs(q): QueryArgs<UrlQuery>,
) -> ApiResult<Json<SignedMediaUrl>> {
    Ok(Json(state.ezw.media().attachment_url(&principal, &attachment_id, q.expires_in_seconds.as_deref()).await?))
}

#[derive(Deserialize)]
pub(crate) struct SignedQuery {
    expires: Option<String>,
    signature: Option<String>,
}

pub(crate) async fn download(
    State(state): State<AppState>,
    Path(attachment_id): Path<String>,
    QueryArgs(q): QueryArgs<SignedQuery>,
) -> ApiResult<Response> {
    let media = state.ezw.media().open_signed(&attachment_id, q.expires.as_deref(), q.signature.as_deref()).await?;
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(media.content_type)),
        (header::CONTENT_LENGTH, HeaderValue::from(media.bytes.len())),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_str(&format!("private, max-age={}", media.max_age_secs))
                .unwrap_or(HeaderValue::from_static("private, no-store")),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::CONTENT_DISPOSITION, HeaderValue::from_static(if media.inline { "inline" } else { "attachment" })),
    ];
    Ok((headers, media.bytes).into_response())
}
