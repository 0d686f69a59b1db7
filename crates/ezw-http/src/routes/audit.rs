//! `GET /api/audit-logs`.

use axum::extract::State;
use axum::Json;
use ezw_core::model::AuditEvent;
use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
use crate::extract::{QueryArgs, UserAuth};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditQuery {
    event_type: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditList {
    events: Vec<AuditEvent>,
    next_cursor: Option<String>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    QueryArgs(q): QueryArgs<AuditQuery>,
) -> ApiResult<Json<AuditList>> {
    let page = state.ezw.audit().list(&principal, q.event_type.as_deref(), q.cursor, q.limit.unwrap_or(50)).await?;
    Ok(Json(AuditList { events: page.items, next_cursor: page.next_cursor }))
}
