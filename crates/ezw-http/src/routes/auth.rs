//! `POST /api/auth/login`, `GET /api/auth/session`.

use axum::extract::State;
use axum::Json;
use ezw_core::service::{LoginRequest, LoginResponse, SessionInfo};
use ezw_core::{OrganizationId, Secret};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, UserAuth};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LoginBody {
    email: String,
    password: Secret,
    #[serde(default)]
    organization_id: Option<String>,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Json<LoginResponse>> {
    let organization_id =
        match body.organization_id {
            None => None,
            Some(raw) => Some(OrganizationId::parse(&raw).ok_or_else(|| {
                ApiError::invalid("invalid_organization_id", "organizationId is not an organization id")
            })?),
        };
    let response =
        state.ezw.auth().login(LoginRequest { email: body.email, password: body.password, organization_id }).await?;
    Ok(Json(response))
}

pub(crate) async fn session(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
) -> ApiResult<Json<SessionInfo>> {
    Ok(Json(state.ezw.auth().session(&principal).await?))
}
