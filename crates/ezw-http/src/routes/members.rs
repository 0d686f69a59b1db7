//! `/api/memberships`: invitations, roles, disabling; `POST /api/auth/accept-invitation`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ezw_core::model::{Member, MembershipStatus, Role};
use ezw_core::service::{AcceptInvitation, InviteMember, LoginResponse, MemberChange};
use ezw_core::{Secret, Timestamp};
use serde::{Deserialize, Serialize};

use super::auth::ClientAddr;
use super::lines::parse_path_user_id;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryArgs, UserAuth};
use crate::state::AppState;

fn parse_role(raw: &str) -> Result<Role, ApiError> {
    Role::parse(raw).ok_or_else(|| ApiError::invalid("invalid_role", "role must be owner, admin or operator"))
}

fn parse_status(raw: &str, allowed: &[MembershipStatus]) -> Result<MembershipStatus, ApiError> {
    MembershipStatus::parse(raw).filter(|s| allowed.contains(s)).ok_or_else(|| {
        let names: Vec<_> = allowed.iter().map(|s| s.as_str()).collect();
        ApiError::invalid("invalid_status", format!("status must be one of: {}", names.join(", ")))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ListQuery {
    status: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct MemberList {
    members: Vec<Member>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    QueryArgs(q): QueryArgs<ListQuery>,
) -> ApiResult<Json<MemberList>> {
    let all = [MembershipStatus::Active, MembershipStatus::Invited, MembershipStatus::Disabled];
    let status = q.status.as_deref().map(|s| parse_status(s, &all)).transpose()?;
    Ok(Json(MemberList { members: state.ezw.members().list(&principal, status).await? }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct InviteBody {
    email: String,
    role: String,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InvitationView {
    member: Member,
    invitation_token: String,
    invitation_expires_at: Timestamp,
}

pub(crate) async fn invite(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    JsonBody(body): JsonBody<InviteBody>,
) -> ApiResult<(StatusCode, Json<InvitationView>)> {
    let request = InviteMember { email: body.email, role: parse_role(&body.role)?, display_name: body.display_name };
    let invitation = state.ezw.members().invite(&principal, request).await?;
    let view = InvitationView {
        member: invitation.member,
        invitation_token: invitation.token.expose().to_owned(),
        invitation_expires_at: invitation.expires_at,
    };
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UpdateBody {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

pub(crate) async fn update(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(target): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> ApiResult<Json<Member>> {
    let target = parse_path_user_id(&target)?;
    let settable = [MembershipStatus::Active, MembershipStatus::Disabled];
    let change = MemberChange {
        role: body.role.as_deref().map(parse_role).transpose()?,
        status: body.status.as_deref().map(|s| parse_status(s, &settable)).transpose()?,
    };
    Ok(Json(state.ezw.members().update(&principal, &target, change).await?))
}

pub(crate) async fn disable(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(target): Path<String>,
) -> ApiResult<Json<Member>> {
    let target = parse_path_user_id(&target)?;
    Ok(Json(state.ezw.members().disable(&principal, &target).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AcceptBody {
    token: Secret,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    display_name: Option<String>,
}

pub(crate) async fn accept_invitation(
    State(state): State<AppState>,
    ClientAddr(client_addr): ClientAddr,
    JsonBody(body): JsonBody<AcceptBody>,
) -> ApiResult<Json<LoginResponse>> {
    let request =
        AcceptInvitation { token: body.token, password: body.password, display_name: body.display_name, client_addr };
    Ok(Json(state.ezw.members().accept_invitation(request).await?))
}
