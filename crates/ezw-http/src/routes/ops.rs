//! Operations: `GET /metrics` (Prometheus text) and `POST /api/messages/{messageId}/resolve`
//! (an operator's decision about a message whose send outcome is unknown).

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use ezw_core::model::Message;
use ezw_core::ports::UnknownResolution;
use ezw_core::{Error, MessageId};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, UserAuth};
use crate::state::AppState;

pub(crate) async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let text = state.ezw.metrics_text().await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResolveBody {
    /// `resend`, `sent` or `fail`.
    action: UnknownResolution,
}

pub(crate) async fn resolve_unknown(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(message_id): Path<String>,
    JsonBody(body): JsonBody<ResolveBody>,
) -> ApiResult<Json<Message>> {
    let id = MessageId::parse(&message_id).ok_or_else(|| ApiError(Error::not_found("message")))?;
    Ok(Json(state.ezw.messages().resolve_unknown(&principal, &id, body.action).await?))
}
