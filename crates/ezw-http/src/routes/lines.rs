//! `GET/POST /api/lines`, `GET /api/lines/{lineId}`, `POST /api/lines/{lineId}/api-token`,
//! line permissions, the default assignee and archiving.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ezw_core::model::{LinePermission, LineRights, ProviderKind};
use ezw_core::service::{LinePermissions, NewLine};
use ezw_core::{Error, LineId, Principal, UserId};
use serde::{Deserialize, Deserializer, Serialize};

use super::views::LineView;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, UserAuth};
use crate::state::AppState;

pub(crate) fn parse_line_id(raw: &str) -> Result<LineId, ApiError> {
    LineId::parse(raw).ok_or_else(|| ApiError(Error::not_found("line")))
}

/// A user id in a path: malformed is a 404 like an unknown one.
pub(crate) fn parse_path_user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).ok_or_else(|| ApiError(Error::not_found("user")))
}

/// A user id in a body: `null` is `None`; malformed is `400 invalid_user_id`.
pub(crate) fn parse_body_user_id(raw: Option<&str>, field: &str) -> Result<Option<UserId>, ApiError> {
    raw.map(|r| {
        UserId::parse(r)
            .ok_or_else(|| ApiError::invalid("invalid_user_id", format!("{field} must be a user id (usr_...) or null")))
    })
    .transpose()
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub(crate) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
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
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `201` with a new line; `200` with the line an earlier request with the same
/// `idempotencyKey` created.
pub(crate) async fn create(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    JsonBody(body): JsonBody<CreateLineBody>,
) -> ApiResult<(StatusCode, Json<LineView>)> {
    let mut provider = body.provider;
    let kind = provider.remove("kind").and_then(|k| k.as_str().and_then(ProviderKind::parse)).ok_or_else(|| {
        ApiError::invalid("invalid_provider", "provider.kind must be one of simulator, meta, twilio, web_session")
    })?;
    let new = NewLine {
        display_name: body.display_name,
        phone_number: body.phone_number,
        provider_kind: kind,
        provider_config: serde_json::Value::Object(provider),
        pacing: body.pacing,
    };
    let created = state.ezw.lines().create(&principal, new, body.idempotency_key.as_deref()).await?;
    let billing = billing_allows(&state, &principal).await?;
    let status = if created.replayed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(LineView::new(created.line, billing, &state))))
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

pub(crate) async fn permissions(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(line_id): Path<String>,
) -> ApiResult<Json<LinePermissions>> {
    Ok(Json(state.ezw.lines().permissions(&principal, &parse_line_id(&line_id)?).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PermissionBody {
    can_view: bool,
    can_send: bool,
}

pub(crate) async fn set_permission(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path((line_id, user_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<PermissionBody>,
) -> ApiResult<Json<LinePermission>> {
    let (line_id, user_id) = (parse_line_id(&line_id)?, parse_path_user_id(&user_id)?);
    let rights = LineRights { can_view: body.can_view, can_send: body.can_send };
    Ok(Json(state.ezw.lines().set_permission(&principal, &line_id, &user_id, rights).await?))
}

pub(crate) async fn clear_permission(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path((line_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (line_id, user_id) = (parse_line_id(&line_id)?, parse_path_user_id(&user_id)?);
    state.ezw.lines().clear_permission(&principal, &line_id, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AssignmentBody {
    #[serde(default, deserialize_with = "nullable")]
    user_id: Option<Option<String>>,
}

pub(crate) async fn set_assignment(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(line_id): Path<String>,
    JsonBody(body): JsonBody<AssignmentBody>,
) -> ApiResult<Json<LineView>> {
    let line_id = parse_line_id(&line_id)?;
    let user =
        body.user_id.ok_or_else(|| ApiError::invalid("invalid_request", "userId is required (null clears it)"))?;
    let user = parse_body_user_id(user.as_deref(), "userId")?;
    let line = state.ezw.lines().set_default_assignee(&principal, &line_id, user.as_ref()).await?;
    Ok(Json(LineView::new(line, billing_allows(&state, &principal).await?, &state)))
}

pub(crate) async fn archive(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(line_id): Path<String>,
) -> ApiResult<Json<LineView>> {
    let line = state.ezw.lines().archive(&principal, &parse_line_id(&line_id)?).await?;
    Ok(Json(LineView::new(line, billing_allows(&state, &principal).await?, &state)))
}
