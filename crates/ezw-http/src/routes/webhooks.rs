//! Outgoing webhook configuration and delivery evidence, for one line: under
//! `/api/v1/webhooks` with the line's API token, and under `/api/lines/{lineId}/webhooks` with a
//! workspace token (owners and admins).

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use ezw_core::model::WebhookDelivery;
use ezw_core::service::{DeliveryView, WebhookInput, WebhookView};
use ezw_core::{DeliveryId, Error, LineId, Principal, WebhookId};
use serde::{Deserialize, Deserializer, Serialize};

use super::lines::parse_line_id;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, LineAuth, QueryArgs, UserAuth};
use crate::state::AppState;

/// Who manages a line's webhooks, and which line: the line token's own line on `/api/v1`, the
/// path's line for a workspace user.
pub(crate) struct LineCaller {
    principal: Principal,
    line_id: LineId,
    params: HashMap<String, String>,
}

impl LineCaller {
    fn webhook_id(&self) -> Result<WebhookId, ApiError> {
        self.params
            .get("webhook_id")
            .and_then(|raw| WebhookId::parse(raw))
            .ok_or_else(|| ApiError(Error::not_found("webhook")))
    }

    fn delivery_id(&self) -> Result<DeliveryId, ApiError> {
        self.params
            .get("delivery_id")
            .and_then(|raw| DeliveryId::parse(raw))
            .ok_or_else(|| ApiError(Error::not_found("delivery")))
    }
}

impl FromRequestParts<AppState> for LineCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError(Error::not_found("resource")))?;
        match params.get("line_id") {
            Some(raw) => {
                let line_id = parse_line_id(raw)?;
                let UserAuth(principal) = UserAuth::from_request_parts(parts, state).await?;
                Ok(Self { principal, line_id, params })
            }
            None => {
                let LineAuth { principal, line_id } = LineAuth::from_request_parts(parts, state).await?;
                Ok(Self { principal, line_id, params })
            }
        }
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct WebhookBody {
    target_url: Option<String>,
    events: Option<Vec<String>>,
    payload_format: Option<String>,
    enabled: Option<bool>,
    persistent: Option<bool>,
    max_concurrency: Option<u32>,
    #[serde(default, deserialize_with = "double_option")]
    rate_per_second: Option<Option<f64>>,
}

impl From<WebhookBody> for WebhookInput {
    fn from(b: WebhookBody) -> Self {
        Self {
            target_url: b.target_url,
            events: b.events,
            payload_format: b.payload_format,
            enabled: b.enabled,
            persistent: b.persistent,
            max_concurrency: b.max_concurrency,
            rate_per_second: b.rate_per_second,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct WebhookList {
    webhooks: Vec<WebhookView>,
}

pub(crate) async fn list(State(state): State<AppState>, caller: LineCaller) -> ApiResult<Json<WebhookList>> {
    let webhooks = state.ezw.webhooks().list(&caller.principal, &caller.line_id).await?;
    Ok(Json(WebhookList { webhooks }))
}

/// Creates a webhook, or updates the line's webhook with the same `targetUrl`: 201 either way.
pub(crate) async fn upsert(
    State(state): State<AppState>,
    caller: LineCaller,
    JsonBody(body): JsonBody<WebhookBody>,
) -> ApiResult<(StatusCode, Json<WebhookView>)> {
    let (view, _created) = state.ezw.webhooks().upsert(&caller.principal, &caller.line_id, body.into()).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub(crate) async fn get(State(state): State<AppState>, caller: LineCaller) -> ApiResult<Json<WebhookView>> {
    let view = state.ezw.webhooks().get(&caller.principal, &caller.line_id, &caller.webhook_id()?).await?;
    Ok(Json(view))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    caller: LineCaller,
    JsonBody(body): JsonBody<WebhookBody>,
) -> ApiResult<(StatusCode, Json<WebhookView>)> {
    let id = caller.webhook_id()?;
    let view = state.ezw.webhooks().update(&caller.principal, &caller.line_id, &id, body.into()).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub(crate) async fn delete(State(state): State<AppState>, caller: LineCaller) -> ApiResult<StatusCode> {
    state.ezw.webhooks().delete(&caller.principal, &caller.line_id, &caller.webhook_id()?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    caller: LineCaller,
) -> ApiResult<(StatusCode, Json<WebhookView>)> {
    let view = state.ezw.webhooks().rotate_secret(&caller.principal, &caller.line_id, &caller.webhook_id()?).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryList {
    deliveries: Vec<WebhookDelivery>,
    next_cursor: Option<String>,
}

pub(crate) async fn deliveries(
    State(state): State<AppState>,
    caller: LineCaller,
    QueryArgs(q): QueryArgs<PageQuery>,
) -> ApiResult<Json<DeliveryList>> {
    let id = caller.webhook_id()?;
    let page = state
        .ezw
        .webhooks()
        .deliveries(&caller.principal, &caller.line_id, &id, q.cursor, q.limit.unwrap_or(50))
        .await?;
    Ok(Json(DeliveryList { deliveries: page.items, next_cursor: page.next_cursor }))
}

pub(crate) async fn delivery(State(state): State<AppState>, caller: LineCaller) -> ApiResult<Json<DeliveryView>> {
    let (webhook, id) = (caller.webhook_id()?, caller.delivery_id()?);
    Ok(Json(state.ezw.webhooks().delivery(&caller.principal, &caller.line_id, &webhook, &id).await?))
}

pub(crate) async fn redeliver(
    State(state): State<AppState>,
    caller: LineCaller,
) -> ApiResult<(StatusCode, Json<WebhookDelivery>)> {
    let (webhook, id) = (caller.webhook_id()?, caller.delivery_id()?);
    let delivery = state.ezw.webhooks().redeliver(&caller.principal, &caller.line_id, &webhook, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}
