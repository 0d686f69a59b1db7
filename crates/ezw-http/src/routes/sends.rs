//! Workspace sends: `POST /api/lines/{lineId}/send` with a JSON body (text or forward) or a
//! `multipart/form-data` body (one image with an optional caption).

use axum::extract::{FromRequest as _, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ezw_core::service::{ImageUpload, SendOutcome, SendTargetInput, WorkspaceSendRequest, MAX_IMAGE_BYTES};
use ezw_core::{Error, LineId};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::{is_multipart, JsonBody, UploadForm, UploadSpec, UserAuth};
use crate::state::AppState;

/// The JSON body: a text (`bodyText`) or a forward (`forwardMessageId`) to one target.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SendBody {
    to: Option<String>,
    conversation_id: Option<String>,
    body_text: Option<String>,
    forward_message_id: Option<String>,
}

/// The multipart form: the target, an optional caption and the image.
const IMAGE_FORM: UploadSpec = UploadSpec {
    text_fields: &["conversationId", "to", "bodyText"],
    file_field: "image",
    max_file_bytes: MAX_IMAGE_BYTES,
};

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| ApiError::invalid("invalid_idempotency_key", "Idempotency-Key must be visible ASCII"))
}

fn accepted(outcome: SendOutcome) -> Response {
    let replayed = outcome.replayed;
    let mut response = (StatusCode::ACCEPTED, Json(outcome)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

pub(crate) async fn send(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(line_id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let line_id = LineId::parse(&line_id).ok_or_else(|| ApiError(Error::not_found("line")))?;
    let idempotency_key = idempotency_key(req.headers())?;
    let request = if is_multipart(req.headers()) {
        let mut form = UploadForm::read(req, IMAGE_FORM).await?;
        let file =
            form.file.take().ok_or_else(|| ApiError::invalid("missing_image", "send the image in the part image"))?;
        let field = |name: &str| form.field(name).map(str::to_owned);
        WorkspaceSendRequest {
            target: SendTargetInput { to: field("to"), conversation_id: field("conversationId") },
            body_text: field("bodyText"),
            forward_message_id: None,
            image: Some(ImageUpload { bytes: file.bytes, filename: file.filename }),
            idempotency_key,
        }
    } else {
        let JsonBody(body) = JsonBody::<SendBody>::from_request(req, &state).await?;
        WorkspaceSendRequest {
            target: SendTargetInput { to: body.to, conversation_id: body.conversation_id },
            body_text: body.body_text,
            forward_message_id: body.forward_message_id,
            image: None,
            idempotency_key,
        }
    };
    let outcome = state.ezw.messages().send_from_workspace(&principal, &line_id, request).await?;
    Ok(accepted(outcome))
}
