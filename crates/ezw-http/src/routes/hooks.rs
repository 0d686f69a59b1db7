//! Vendor webhooks: `/hooks/meta/{lineId}` (GET verification, POST events),
//! `/hooks/twilio/{lineId}` (inbound), `/hooks/twilio/{lineId}/status` (status callbacks) and
//! `/hooks/waha/{lineId}` (WAHA sidecar events, `X-Webhook-Hmac`-signed).
//! The raw body is passed through untouched: signatures cover its exact bytes.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ezw_core::model::ProviderKind;
use ezw_core::ports::InboundRequest;
use ezw_core::{Error, LineId};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The largest webhook body accepted (1 MiB; Meta batches stay far below it).
pub(crate) const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

/// A webhook request as received: line id from the path, the raw request for the provider.
pub(crate) struct RawHook {
    line_id: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl axum::extract::FromRequest<AppState> for RawHook {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Path(line_id) =
            <Path<String> as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, state)
                .await
                .map_err(|_| ApiError(Error::not_found("line")))?;
        let body = axum::body::to_bytes(body, MAX_WEBHOOK_BODY).await.map_err(|_| {
            ApiError(Error::new(ezw_core::ErrorKind::PayloadTooLarge, "payload_too_large", "webhook body too large"))
        })?;
        Ok(Self { line_id, method: parts.method, uri: parts.uri, headers: parts.headers, body })
    }
}

/// Verifies, stores and answers one webhook.
async fn handle(state: &AppState, kind: ProviderKind, route: &str, hook: RawHook) -> ApiResult<Response> {
    let base = state.public_url.as_str().trim_end_matches('/');
    let path_and_query = hook.uri.path_and_query().map_or(hook.uri.path(), |pq| pq.as_str());
    let request = InboundRequest {
        method: hook.method.as_str().to_owned(),
        public_url: format!("{base}{path_and_query}"),
        route: route.to_owned(),
        query: url::form_urlencoded::parse(hook.uri.query().unwrap_or("").as_bytes()).into_owned().collect(),
        headers: hook
            .headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned())))
            .collect(),
        body: hook.body.to_vec(),
    };
    let line_id = LineId::parse(&hook.line_id).ok_or_else(|| ApiError(Error::not_found("line")))?;
    let answer = state.ezw.ingest().handle(kind, &line_id, &request).await?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    Ok((status, [(header::CONTENT_TYPE, answer.content_type)], answer.body).into_response())
}

pub(crate) async fn meta(State(state): State<AppState>, hook: RawHook) -> ApiResult<Response> {
    handle(&state, ProviderKind::Meta, "", hook).await
}

pub(crate) async fn twilio_inbound(State(state): State<AppState>, hook: RawHook) -> ApiResult<Response> {
    handle(&state, ProviderKind::Twilio, "", hook).await
}

pub(crate) async fn twilio_status(State(state): State<AppState>, hook: RawHook) -> ApiResult<Response> {
    handle(&state, ProviderKind::Twilio, "status", hook).await
}

pub(crate) async fn waha(State(state): State<AppState>, hook: RawHook) -> ApiResult<Response> {
    handle(&state, ProviderKind::Waha, "", hook).await
}
