//! `GET /api/live/stream`: Server-Sent Events hints.
//!
//! Each hint is an event named after its type (`message.created`, `conversation.updated`, ...)
//! whose data is the hint as JSON and whose id resumes the stream (`Last-Event-ID`, or
//! `?lastEventId=` for clients that cannot set headers). Heartbeats are SSE comments. A `reset`
//! event means hints were lost: refetch, then carry on.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use ezw_core::service::{LiveItem, LiveStream};
use serde::Deserialize;

use crate::error::ApiResult;
use crate::extract::{QueryArgs, UserAuth};
use crate::state::AppState;

/// How long a client waits before reconnecting (the SSE `retry` field), in milliseconds.
const RETRY_MS: u64 = 3_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StreamQuery {
    last_event_id: Option<String>,
}

pub(crate) async fn stream(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    headers: HeaderMap,
    QueryArgs(q): QueryArgs<StreamQuery>,
) -> ApiResult<Response> {
    let header = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let last_event_id = header.or(q.last_event_id.as_deref());
    let live = state.ezw.live_stream().open(&principal, last_event_id).await?;
    let ready = Event::default()
        .event("ready")
        .retry(std::time::Duration::from_millis(RETRY_MS))
        .data(serde_json::json!({ "lastEventId": state.ezw.live().last_event_id().to_string() }).to_string());
    let events = futures_util::stream::unfold((Some(ready), live), next_event);
    Ok(([("cache-control", "no-cache"), ("x-accel-buffering", "no")], Sse::new(events)).into_response())
}

async fn next_event(
    (first, mut live): (Option<Event>, LiveStream),
) -> Option<(Result<Event, Infallible>, (Option<Event>, LiveStream))> {
    if let Some(first) = first {
        return Some((Ok(first), (None, live)));
    }
    let event = match live.next().await? {
        LiveItem::Event(e) => Event::default()
            .id(e.id.to_string())
            .event(e.hint.kind)
            .data(serde_json::to_string(&e.hint).unwrap_or_else(|_| "{}".to_owned())),
        LiveItem::Reset { reason } => {
            Event::default().event("reset").data(serde_json::json!({ "reason": reason }).to_string())
        }
        LiveItem::Heartbeat => Event::default().comment("heartbeat"),
    };
    Some((Ok(event), (None, live)))
}
