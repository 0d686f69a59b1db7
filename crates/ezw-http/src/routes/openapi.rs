//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the whole HTTP API (`docs/openapi.json`,
//! compiled in), served without authentication.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as committed in `docs/openapi.json`.
const DOCUMENT: &str = include_str!("../../../../docs/openapi.json");

pub(crate) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
