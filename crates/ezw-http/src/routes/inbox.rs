//! `GET /api/conversations`, `GET /api/conversations/{id}`, `GET /api/conversations/{id}/messages`.

use axum::extract::{Path, State};
use axum::Json;
use ezw_core::model::{Conversation, Message};
use ezw_core::{ConversationId, Error};
use serde::{Deserialize, Serialize};

use super::lines::parse_line_id;
use crate::error::{ApiError, ApiResult};
use crate::extract::{QueryArgs, UserAuth};
use crate::state::AppState;

fn parse_conversation_id(raw: &str) -> Result<ConversationId, ApiError> {
    ConversationId::parse(raw).ok_or_else(|| ApiError(Error::not_found("conversation")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListConversationsQuery {
    line_id: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConversationList {
    conversations: Vec<Conversation>,
    next_cursor: Option<String>,
}

pub(crate) async fn list_conversations(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    QueryArgs(q): QueryArgs<ListConversationsQuery>,
) -> ApiResult<Json<ConversationList>> {
    let line = q.line_id.as_deref().map(parse_line_id).transpose()?;
    let page = state.ezw.inbox().list(&principal, line.as_ref(), q.cursor, q.limit.unwrap_or(25)).await?;
    Ok(Json(ConversationList { conversations: page.items, next_cursor: page.next_cursor }))
}

pub(crate) async fn get_conversation(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(state.ezw.inbox().get(&principal, &parse_conversation_id(&id)?).await?))
}

#[derive(Deserialize)]
pub(crate) struct ListMessagesQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageList {
    messages: Vec<Message>,
    next_cursor: Option<String>,
}

pub(crate) async fn list_messages(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<ListMessagesQuery>,
) -> ApiResult<Json<MessageList>> {
    let id = parse_conversation_id(&id)?;
    let page = state.ezw.messages().list(&principal, &id, q.cursor.as_deref(), q.limit.unwrap_or(50)).await?;
    Ok(Json(MessageList { messages: page.items, next_cursor: page.next_cursor }))
}
