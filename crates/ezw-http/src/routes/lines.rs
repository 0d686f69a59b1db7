//! `GET/POST /api/lines`, `GET /api/lines/{lineId}`, `POST /api/lines/{lineId}/api-token`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ezw_core::model::ProviderKind;
use ezw_core::service::NewLine;
use ezw_core::{Error, LineId, Principal};
use serde::{Deserialize, Serialize};

use super::views::LineView;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, UserAuth};
use crate::state::AppState;

pub(crate) fn parse_line_id(raw: &str) -> Result<LineId, ApiError> {
    LineId::parse(raw).ok_or_else(|| ApiError(Error::not_found("line")))
}

async fn billing_allows(state: &AppState, principal: &Principal) -> ApiResult<bool> {
    Ok(state
        .ezw
        .store()
        .get_organization(principal.organization_id())
        .await?
        .is_some_and(|o| o.billing_state.allows_sending()))
}

#[derive(Serialize)]
pub(crate) struct LineList {
    lines: Vec<LineView>,
}

pub(crate) async fn list(State(state): State<AppState>, UserAuth(principal): UserAuth) -> ApiResult<Json<LineList>> {
    let billing = billing_allows(&state, &principal).await?;
    let lines = state.ezw.lines().list(&principal).await?;
    Ok(Json(LineList { lines: lines.into_iter().map(|l| LineView::new(l, billing, &state)).collect() }))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(line_id): Path<String>,
) -> ApiResult<Json<LineView>> {
    let line = state.ezw.lines().get(&principal, &parse_line_id(&line_id)?).await?;
    Ok(Json(LineView::new(line, billing_allows(&state, &principal).await?, &state)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateLineBody {
    display_name: String,
    phone_number: String,
    provider: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pacing: Option<ezw_core::model::Pacing>,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    JsonBody(body): JsonBody<CreateLineBody>,
) -> ApiResult<(StatusCode, Json<LineView>)> {
    let mut provider = body.provider;
    let kind = provider.remove("kind").and_then(|k| k.as_str().and_then(ProviderKind::parse)).ok_or_else(|| {
        ApiError::invalid("invalid_provider", "provider.kind must be one of simulator, meta, twilio, web_session")
    })?;
    let line = state
        .ezw
        .lines()
        .create_line(
            &principal,
            NewLine {
                display_name: body.display_name,
                phone_number: body.phone_number,
                provider_kind: kind,
                provider_config: serde_json::Value::Object(provider),
                pacing: body.pacing,
            },
        )
        .await?;
    let billing = billing_allows(&state, &principal).await?;
    Ok((StatusCode::CREATED, Json(LineView::new(line, billing, &state))))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenResponse {
    line_id: LineId,
    token_id: String,
    token: String,
    rotated: bool,
}

pub(crate) async fn rotate_token(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(line_id): Path<String>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    let rotated = state.ezw.lines().rotate_api_token(&principal, &parse_line_id(&line_id)?).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            line_id: rotated.line_id,
            token_id: rotated.token_id.to_string(),
            token: rotated.token.expose().to_owned(),
            rotated: rotated.rotated,
        }),
    ))
}
