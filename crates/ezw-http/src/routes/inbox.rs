//! `GET /api/conversations` (filters), `GET /api/conversations/{id}`, its messages, claims and
//! assignments, the contact's name, and internal notes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ezw_core::model::{Contact, Conversation, InboxConversation, Message, Note};
use ezw_core::service::{AssigneeFilter, InboxFilter};
use ezw_core::{ConversationId, Error};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lines::{nullable, parse_body_user_id, parse_line_id};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryArgs, UserAuth};
use crate::state::AppState;

fn parse_conversation_id(raw: &str) -> Result<ConversationId, ApiError> {
    ConversationId::parse(raw).ok_or_else(|| ApiError(Error::not_found("conversation")))
}

/// `expectedVersion` as sent: anything but an integer is `None` (the service answers
/// `400 invalid_expected_version`).
fn expected_version(raw: Option<&Value>) -> Option<i64> {
    raw.and_then(Value::as_i64)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListConversationsQuery {
    line_id: Option<String>,
    assignee_id: Option<String>,
    #[serde(default)]
    unassigned: bool,
    status: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConversationList {
    conversations: Vec<InboxConversation>,
    next_cursor: Option<String>,
}

pub(crate) async fn list_conversations(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    QueryArgs(q): QueryArgs<ListConversationsQuery>,
) -> ApiResult<Json<ConversationList>> {
    let filter = InboxFilter {
        line_id: q.line_id.as_deref().map(parse_line_id).transpose()?,
        assignee: q.assignee_id.as_deref().map(AssigneeFilter::parse).transpose()?,
        unassigned: q.unassigned,
        status: q.status,
        q: q.q,
        cursor: q.cursor,
        limit: q.limit,
    };
    let page = state.ezw.inbox().list(&principal, filter).await?;
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ClaimBody {
    #[serde(default)]
    expected_version: Option<Value>,
}

pub(crate) async fn claim(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ClaimBody>,
) -> ApiResult<Json<Conversation>> {
    let id = parse_conversation_id(&id)?;
    let version = expected_version(body.expected_version.as_ref());
    Ok(Json(state.ezw.inbox().claim(&principal, &id, version).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AssignBody {
    #[serde(default, deserialize_with = "nullable")]
    target_user_id: Option<Option<String>>,
    #[serde(default)]
    expected_version: Option<Value>,
}

pub(crate) async fn assign(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AssignBody>,
) -> ApiResult<Json<Conversation>> {
    let id = parse_conversation_id(&id)?;
    let target = body
        .target_user_id
        .ok_or_else(|| ApiError::invalid("invalid_request", "targetUserId is required (null unassigns)"))?;
    let target = parse_body_user_id(target.as_deref(), "targetUserId")?;
    let version = expected_version(body.expected_version.as_ref());
    Ok(Json(state.ezw.inbox().assign(&principal, &id, target.as_ref(), version).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ContactBody {
    #[serde(default, deserialize_with = "nullable")]
    display_name: Option<Option<String>>,
}

pub(crate) async fn update_contact(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ContactBody>,
) -> ApiResult<Json<Contact>> {
    let id = parse_conversation_id(&id)?;
    let name = body
        .display_name
        .ok_or_else(|| ApiError::invalid("invalid_request", "displayName is required (null clears it)"))?;
    Ok(Json(state.ezw.inbox().set_contact_name(&principal, &id, name.as_deref()).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NoteBody {
    body: String,
}

pub(crate) async fn add_note(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NoteBody>,
) -> ApiResult<(StatusCode, Json<Note>)> {
    let id = parse_conversation_id(&id)?;
    let note = state.ezw.inbox().add_note(&principal, &id, &body.body).await?;
    Ok((StatusCode::CREATED, Json(note)))
}

#[derive(Deserialize)]
pub(crate) struct ListNotesQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NoteList {
    notes: Vec<Note>,
    next_cursor: Option<String>,
}

pub(crate) async fn list_notes(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<ListNotesQuery>,
) -> ApiResult<Json<NoteList>> {
    let id = parse_conversation_id(&id)?;
    let page = state.ezw.inbox().notes(&principal, &id, q.cursor.as_deref(), q.limit.unwrap_or(50)).await?;
    Ok(Json(NoteList { notes: page.items, next_cursor: page.next_cursor }))
}
