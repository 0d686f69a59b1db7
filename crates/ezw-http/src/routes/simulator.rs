//! `POST /api/lines/{lineId}/simulator/scan`: "scans" a simulator QR line's code with its phone,
//! the documented way to pair simulated QR lines in demos and tests.

use axum::extract::{Path, State};
use axum::Json;
use ezw_core::model::ProviderKind;
use ezw_core::{Error, ErrorKind, LineAccess};
use ezw_providers::sim::SimScanError;
use serde::{Deserialize, Serialize};

use super::lines::parse_line_id;
use super::qr::Data;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, UserAuth};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ScanBody {
    code: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Scanned {
    line_id: String,
    scanned: bool,
}

/// `200` when the code is the one the line shows now: the simulated phone pairs and the line
/// connects shortly after (its session driver records the transition). Another organization's
/// line, a line of another provider, and a server without the simulator are `404 not_found`;
/// a wrong or old code is `409 qr_mismatch`; a line showing no code is `409 no_pairing`.
pub(crate) async fn scan(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(line_id): Path<String>,
    JsonBody(body): JsonBody<ScanBody>,
) -> ApiResult<Json<Data<Scanned>>> {
    let line_id = parse_line_id(&line_id)?;
    let line = state.ezw.lines().authorize(&principal, &line_id, LineAccess::Send).await?;
    let sim = match &state.sim {
        Some(sim) if line.provider_kind == ProviderKind::Simulator => sim,
        _ => return Err(ApiError(Error::not_found("line"))),
    };
    sim.scan(&line.id, &body.code).map_err(|e| {
        let message = match e {
            SimScanError::NoPairing => "the line shows no code now; request pairing with POST /api/lines/{lineId}/qr",
            _ => "the code is not the one the line shows now (it may have rotated); read GET /api/lines/{lineId}/qr again",
        };
        ApiError(Error::new(ErrorKind::Conflict, e.code(), message))
    })?;
    Ok(Json(Data { data: Scanned { line_id: line.id.to_string(), scanned: true } }))
}
