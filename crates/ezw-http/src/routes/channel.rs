//! Channel API v1 (line token): health, text and URL media sends, message status.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ezw_core::model::HealthStatus;
use ezw_core::service::{CtaInput, MediaInput, SendRequest, SendTargetInput};
use ezw_core::{Error, MessageId};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, LineAuth, QueryArgs};
use crate::state::AppState;

#[derive(Deserialize)]
pub(crate) struct HealthQuery {
    wakeup: Option<String>,
    channel_type: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HealthResponse {
    channel_id: String,
    channel_type: &'static str,
    wakeup_requested: bool,
    health: HealthBlock,
    line: HealthLine,
    /// Things to know before sending (WhatsApp limit signals, pacing above the anti-ban defaults).
    warnings: Vec<ezw_core::service::HealthWarning>,
}

#[derive(Serialize)]
pub(crate) struct HealthBlock {
    status: HealthStatus,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HealthLine {
    display_name: String,
    phone_number: String,
    lifecycle_state: &'static str,
    effective_send_state: &'static str,
    sendable: bool,
}

fn parse_bool(name: &str, raw: Option<&str>) -> Result<bool, ApiError> {
    match raw.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(_) => Err(ApiError::invalid("invalid_query", format!("{name} must be true or false"))),
    }
}

pub(crate) async fn health(
    State(state): State<AppState>,
    LineAuth { principal, line_id }: LineAuth,
    QueryArgs(q): QueryArgs<HealthQuery>,
) -> ApiResult<Json<HealthResponse>> {
    let wakeup = parse_bool("wakeup", q.wakeup.as_deref())?;
    if let Some(t) = q.channel_type.as_deref() {
        if !matches!(t, "web" | "cloud" | "twilio") {
            return Err(ApiError::invalid("invalid_query", "channel_type must be web, cloud or twilio"));
        }
    }
    let h = state.ezw.lines().health(&principal, &line_id, wakeup).await?;
    Ok(Json(HealthResponse {
        channel_id: h.line.id.to_string(),
        channel_type: h.line.provider_kind.channel_type(),
        wakeup_requested: wakeup,
        health: HealthBlock { status: h.status },
        line: HealthLine {
            display_name: h.line.display_name.clone(),
            phone_number: h.line.phone_number.to_string(),
            lifecycle_state: h.line.lifecycle_state.as_str(),
            effective_send_state: h.effective_send_state.as_str(),
            sendable: h.sendable(),
        },
        warnings: h.warnings,
    }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CtaBody {
    display_text: Option<String>,
    text: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TextBody {
    to: Option<String>,
    conversation_id: Option<String>,
    #[serde(rename = "conversation_id")]
    conversation_id_snake: Option<String>,
    body: Option<serde_json::Value>,
    cta_url_button: Option<CtaBody>,
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MediaBody {
    to: Option<String>,
    conversation_id: Option<String>,
    #[serde(rename = "conversation_id")]
    conversation_id_snake: Option<String>,
    #[serde(rename = "type")]
    media_type: Option<String>,
    url: Option<String>,
    caption: Option<String>,
    filename: Option<String>,
    mime_type: Option<String>,
    idempotency_key: Option<String>,
}

/// The `Idempotency-Key` header wins over the body field.
fn idempotency_key(headers: &HeaderMap, body_key: Option<String>) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        Some(v) => v
            .to_str()
            .map(|s| Some(s.to_owned()))
            .map_err(|_| ApiError::invalid("invalid_idempotency_key", "Idempotency-Key must be visible ASCII")),
        None => Ok(body_key),
    }
}

fn target(to: Option<String>, camel: Option<String>, snake: Option<String>) -> Result<SendTargetInput, ApiError> {
    if camel.is_some() && snake.is_some() && camel != snake {
        return Err(ApiError::invalid("ambiguous_target", "conversationId and conversation_id disagree"));
    }
    Ok(SendTargetInput { to, conversation_id: camel.or(snake) })
}

fn accepted(outcome: ezw_core::service::SendOutcome) -> Response {
    let replayed = outcome.replayed;
    let location = format!("/api/v1/messages/{}", outcome.message.id);
    let mut response = (StatusCode::ACCEPTED, Json(outcome)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert("location", v);
    }
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

pub(crate) async fn send_text(
    State(state): State<AppState>,
    LineAuth { principal, line_id }: LineAuth,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TextBody>,
) -> ApiResult<Response> {
    let text = match body.body {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(_) => return Err(ApiError::invalid("invalid_request", "body must be a string")),
    };
    let request = SendRequest {
        target: target(body.to, body.conversation_id, body.conversation_id_snake)?,
        body: text,
        cta_url_button: body.cta_url_button.map(|c| CtaInput {
            display_text: c.display_text,
            text: c.text,
            url: c.url,
        }),
        media: None,
        idempotency_key: idempotency_key(&headers, body.idempotency_key)?,
    };
    Ok(accepted(state.ezw.messages().send(&principal, &line_id, request).await?))
}

pub(crate) async fn send_media(
    State(state): State<AppState>,
    LineAuth { principal, line_id }: LineAuth,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MediaBody>,
) -> ApiResult<Response> {
    let kind = body
        .media_type
        .ok_or_else(|| ApiError::invalid("missing_media_type", "type is required: image, video, audio or document"))?;
    let request = SendRequest {
        target: target(body.to, body.conversation_id, body.conversation_id_snake)?,
        body: None,
        cta_url_button: None,
        media: Some(MediaInput {
            kind,
            url: body.url,
            caption: body.caption,
            filename: body.filename,
            mime_type: body.mime_type,
        }),
        idempotency_key: idempotency_key(&headers, body.idempotency_key)?,
    };
    Ok(accepted(state.ezw.messages().send(&principal, &line_id, request).await?))
}

pub(crate) async fn get_message(
    State(state): State<AppState>,
    LineAuth { principal, .. }: LineAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<ezw_core::model::Message>> {
    let id = MessageId::parse(&id).ok_or_else(|| ApiError(Error::not_found("message")))?;
    Ok(Json(state.ezw.messages().get(&principal, &id).await?))
}
