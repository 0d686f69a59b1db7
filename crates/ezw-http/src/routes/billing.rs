//! `GET /api/billing/status`, `POST /api/billing/recovery/checkout`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ezw_core::service::{BillingStatus, CheckoutView};

use crate::error::ApiResult;
use crate::extract::UserAuth;
use crate::state::AppState;

pub(crate) async fn status(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
) -> ApiResult<Json<BillingStatus>> {
    Ok(Json(state.ezw.billing().status(&principal).await?))
}

pub(crate) async fn checkout(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
) -> ApiResult<(StatusCode, Json<CheckoutView>)> {
    Ok((StatusCode::CREATED, Json(state.ezw.billing().start_recovery_checkout(&principal).await?)))
}
