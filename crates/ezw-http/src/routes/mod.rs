//! The router: Workspace API (`/api/...`), Channel API v1 (`/api/v1/...`).

mod audit;
mod auth;
mod billing;
mod channel;
mod hooks;
mod inbox;
mod lines;
mod live;
mod media;
mod members;
mod openapi;
mod ops;
mod qr;
mod sends;
mod simulator;
mod views;
mod webhooks;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use ezw_core::{Error, ErrorKind};

use crate::error::ApiError;
use crate::state::AppState;

/// Every route of the HTTP facade.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route("/metrics", get(ops::metrics))
        .route("/api/messages/{message_id}/resolve", post(ops::resolve_unknown))
        // Workspace API
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/session", get(auth::session))
        .route("/api/lines", get(lines::list).post(lines::create))
        .route("/api/lines/{line_id}", get(lines::get))
        .route("/api/lines/{line_id}/api-token", post(lines::rotate_token))
        .route("/api/conversations", get(inbox::list_conversations))
        .route("/api/conversations/{conversation_id}", get(inbox::get_conversation))
        .route("/api/conversations/{conversation_id}/messages", get(inbox::list_messages))
        .route("/api/audit-logs", get(audit::list))
        .route("/api/auth/refresh", post(auth::refresh))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/auth/accept-invitation", post(members::accept_invitation))
        .route("/api/signup/organization", post(auth::signup))
        .route("/api/memberships", get(members::list).post(members::invite))
        .route("/api/memberships/{target_user_id}", axum::routing::patch(members::update).delete(members::disable))
        .route("/api/billing/status", get(billing::status))
        .route("/api/billing/recovery/checkout", post(billing::checkout))
        .route("/api/lines/{line_id}/permissions", get(lines::permissions))
        .route(
            "/api/lines/{line_id}/permissions/{target_user_id}",
            axum::routing::put(lines::set_permission).delete(lines::clear_permission),
        )
        .route("/api/lines/{line_id}/assignment", axum::routing::put(lines::set_assignment))
        .route("/api/lines/{line_id}/archive", post(lines::archive))
        .route("/api/lines/{line_id}/qr", get(qr::current).post(qr::request))
        .route("/api/lines/{line_id}/transitions", get(qr::transitions))
        .route("/api/lines/{line_id}/simulator/scan", post(simulator::scan))
        .route("/api/conversations/{conversation_id}/claim", post(inbox::claim))
        .route("/api/conversations/{conversation_id}/assign", post(inbox::assign))
        .route("/api/conversations/{conversation_id}/contact", axum::routing::patch(inbox::update_contact))
        .route("/api/conversations/{conversation_id}/notes", get(inbox::list_notes).post(inbox::add_note))
        .route("/api/lines/{line_id}/send", post(sends::send))
        .route("/api/attachments/{attachment_id}/url", get(media::attachment_url))
        .route("/media/{attachment_id}", get(media::download))
        .route("/api/live/stream", get(live::stream))
        // [openapi routes]
        .route("/api/openapi.json", get(openapi::document))
        .merge(webhook_routes("/api/lines/{line_id}/webhooks"))
        // Channel API v1
        .merge(webhook_routes("/api/v1/webhooks"))
        .route("/api/v1/health", get(channel::health))
        .route("/api/v1/messages/text", post(channel::send_text))
        .route("/api/v1/messages/media", post(channel::send_media))
        .route("/api/v1/messages/{message_id}", get(channel::get_message))
        // Vendor webhooks (verified by the provider's signature scheme)
        .route("/hooks/meta/{line_id}", get(hooks::meta).post(hooks::meta))
        .route("/hooks/twilio/{line_id}", post(hooks::twilio_inbound))
        .route("/hooks/twilio/{line_id}/status", post(hooks::twilio_status))
        .route("/hooks/waha/{line_id}", post(hooks::waha))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(enveloped_rejections))
        .with_state(state)
}

/// Rewrites the plain-text 4xx answers axum's own extractors give (a path segment that is not
/// UTF-8 after percent-decoding, say) into the JSON error envelope every other error uses.
async fn enveloped_rejections(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !status.is_client_error() || !plain {
        return response;
    }
    let (kind, code, message) = match status {
        StatusCode::NOT_FOUND => (ErrorKind::NotFound, "not_found", "no such resource"),
        StatusCode::PAYLOAD_TOO_LARGE => {
            (ErrorKind::PayloadTooLarge, "payload_too_large", "the request body is too large")
        }
        _ => (ErrorKind::InvalidInput, "invalid_request", "the request path or parameters are malformed"),
    };
    ApiError(Error::new(kind, code, message)).into_response()
}

/// The webhook routes under `base` (the caller and line come from [`webhooks::LineCaller`]).
fn webhook_routes(base: &str) -> Router<AppState> {
    let routes: [(&str, MethodRouter<AppState>); 6] = [
        ("", get(webhooks::list).post(webhooks::upsert)),
        ("/{webhook_id}", get(webhooks::get).patch(webhooks::update).delete(webhooks::delete)),
        ("/{webhook_id}/secret", post(webhooks::rotate_secret)),
        ("/{webhook_id}/deliveries", get(webhooks::deliveries)),
        ("/{webhook_id}/deliveries/{delivery_id}", get(webhooks::delivery)),
        ("/{webhook_id}/deliveries/{delivery_id}/redeliver", post(webhooks::redeliver)),
    ];
    routes.into_iter().fold(Router::new(), |router, (path, method)| router.route(&format!("{base}{path}"), method))
}

async fn not_found() -> ApiError {
    ApiError(Error::new(ErrorKind::NotFound, "route_not_found", "no such route"))
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(
            serde_json::json!({ "error": { "code": "method_not_allowed", "message": "this route does not accept that method" } }),
        ),
    )
}
