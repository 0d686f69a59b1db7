//! `POST /api/auth/login`, `POST /api/auth/refresh`, `POST /api/auth/logout`,
//! `GET /api/auth/session`, `POST /api/signup/organization`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use ezw_core::service::{LoginRequest, LoginResponse, SessionInfo, SignupRequest};
use ezw_core::{OrganizationId, Secret};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, UserAuth};
use crate::state::AppState;

/// The TCP peer's address, when the server was started with connect info (it always is by
/// [`crate::start`]; routers served otherwise simply see `None`).
pub(crate) struct ClientAddr(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

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
    ClientAddr(client_addr): ClientAddr,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Json<LoginResponse>> {
    let organization_id =
        match body.organization_id {
            None => None,
            Some(raw) => Some(OrganizationId::parse(&raw).ok_or_else(|| {
                ApiError::invalid("invalid_organization_id", "organizationId is not an organization id")
            })?),
        };
    let request = LoginRequest { email: body.email, password: body.password, organization_id, client_addr };
    Ok(Json(state.ezw.auth().login(request).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RefreshBody {
    refresh_token: Secret,
}

pub(crate) async fn refresh(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<Json<LoginResponse>> {
    Ok(Json(state.ezw.auth().refresh(&body.refresh_token).await?))
}

pub(crate) async fn logout(State(state): State<AppState>, UserAuth(principal): UserAuth) -> ApiResult<StatusCode> {
    state.ezw.auth().logout(&principal).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn session(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
) -> ApiResult<Json<SessionInfo>> {
    Ok(Json(state.ezw.auth().session(&principal).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SignupBody {
    organization_name: String,
    owner_name: String,
    email: String,
    password: Secret,
    #[serde(default)]
    line_slots: Option<u32>,
}

pub(crate) async fn signup(
    State(state): State<AppState>,
    ClientAddr(client_addr): ClientAddr,
    JsonBody(body): JsonBody<SignupBody>,
) -> ApiResult<(StatusCode, Json<LoginResponse>)> {
    let request = SignupRequest {
        organization_name: body.organization_name,
        owner_name: body.owner_name,
        email: body.email,
        password: body.password,
        line_slots: body.line_slots,
        client_addr,
    };
    Ok((StatusCode::CREATED, Json(state.ezw.orgs().signup(request).await?)))
}
