//! QR lines: `POST /api/lines/{lineId}/qr` (start or restart pairing), `GET
//! /api/lines/{lineId}/qr` (the current code as a PNG data URL) and `GET
//! /api/lines/{lineId}/transitions` (the lifecycle history).

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ezw_core::model::{Pairing, PairingMethod, RecordedTransition};
use ezw_core::{Error, PhoneNumber, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::lines::parse_line_id;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryArgs, UserAuth, MAX_JSON_BODY};
use crate::state::AppState;

/// Pixels per QR module in the served PNG.
const MODULE_PX: usize = 8;
/// Light modules around the code (the QR standard asks for four).
const QUIET_ZONE: usize = 4;

/// Renders `text` as a QR code (error correction level M) in a grayscale PNG: `MODULE_PX`
/// pixels per module and a `QUIET_ZONE`-module light border.
///
/// # Errors
/// `internal` when the text does not fit in a QR code or the PNG cannot be written.
pub(crate) fn qr_png(text: &str) -> Result<Vec<u8>, Error> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M)
        .map_err(|e| Error::internal(format!("encoding the QR code: {e}")))?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * MODULE_PX;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
        for y in my * MODULE_PX..(my + 1) * MODULE_PX {
            pixels[y * side + mx * MODULE_PX..y * side + (mx + 1) * MODULE_PX].fill(0);
        }
    }
    let side_u32 = u32::try_from(side).map_err(|_| Error::internal("QR image too large"))?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side_u32, side_u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let png_error = |e: png::EncodingError| Error::internal(format!("writing the QR PNG: {e}"));
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(&pixels).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    Ok(out)
}

/// `data:image/png;base64,...` of [`qr_png`].
pub(crate) fn qr_data_url(text: &str) -> Result<String, Error> {
    Ok(format!("data:image/png;base64,{}", STANDARD.encode(qr_png(text)?)))
}

/// A JSON body that may be absent (no bytes, or only whitespace): then `T::default()`. A present
/// body is read like [`JsonBody`] (same 400/413/415 answers).
pub(crate) struct OptionalJson<T>(pub(crate) T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_JSON_BODY).await.map_err(|_| {
            ApiError(Error::new(
                ezw_core::ErrorKind::PayloadTooLarge,
                "payload_too_large",
                format!("the request body is larger than {MAX_JSON_BODY} bytes"),
            ))
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        JsonBody::<T>::from_request(req, state).await.map(|JsonBody(v)| Self(v))
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PairBody {
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    phone_number: Option<String>,
}

/// A pairing as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PairingView {
    pairing_id: String,
    line_id: String,
    status: &'static str,
    method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<String>,
    rotation: u32,
    expires_at: Option<Timestamp>,
    reason: Option<String>,
    idempotency_key: Option<String>,
    requested_at: Timestamp,
    updated_at: Timestamp,
}

impl PairingView {
    fn new(p: &Pairing) -> Self {
        let phone_number = match &p.method {
            PairingMethod::PhoneCode { phone } => Some(phone.to_string()),
            PairingMethod::Qr => None,
        };
        Self {
            pairing_id: p.id.to_string(),
            line_id: p.line_id.to_string(),
            status: p.status.as_str(),
            method: p.method.as_str(),
            phone_number,
            rotation: p.rotation,
            expires_at: p.expires_at,
            reason: p.reason.clone(),
            idempotency_key: p.idempotency_key.clone(),
            requested_at: p.requested_at,
            updated_at: p.updated_at,
        }
    }
}

/// The `{"data": ...}` envelope of the QR routes.
#[derive(Serialize)]
pub(crate) struct Data<T> {
    pub(crate) data: T,
}

/// `202` with the new pairing; `200` with the pairing an earlier request with the same
/// `idempotencyKey` created.
pub(crate) async fn request(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(line_id): Path<String>,
    OptionalJson(body): OptionalJson<PairBody>,
) -> ApiResult<(StatusCode, Json<Data<PairingView>>)> {
    let line_id = parse_line_id(&line_id)?;
    let method = match body.method.as_deref() {
        None | Some("qr") => {
            if body.phone_number.is_some() {
                return Err(ApiError::invalid("invalid_request", "phoneNumber is only for method phone_code"));
            }
            PairingMethod::Qr
        }
        Some("phone_code") => {
            let phone = match body.phone_number.as_deref() {
                Some(raw) => PhoneNumber::parse(raw)?,
                None => state.ezw.lines().get(&principal, &line_id).await?.phone_number,
            };
            PairingMethod::PhoneCode { phone }
        }
        Some(_) => return Err(ApiError::invalid("invalid_pairing_method", "method must be qr or phone_code")),
    };
    let requested =
        state.ezw.lines().request_pairing(&principal, &line_id, method, body.idempotency_key.as_deref()).await?;
    let status = if requested.replayed { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(Data { data: PairingView::new(&requested.pairing) })))
}

/// The current code, ready to show.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CodeView {
    #[serde(flatten)]
    pairing: PairingView,
    /// The QR image, for QR pairing.
    qr: Option<String>,
    /// What the QR image encodes.
    code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_code: Option<String>,
    expires_in_ms: u64,
}

/// `200` with the code to scan (never cached).
pub(crate) async fn current(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(line_id): Path<String>,
) -> ApiResult<Response> {
    let p = state.ezw.lines().current_code(&principal, &parse_line_id(&line_id)?).await?;
    let qr = p.qr_code.as_deref().map(qr_data_url).transpose()?;
    let expires_in_ms =
        p.expires_at.map_or(0, |at| u64::try_from(at.since(state.ezw.clock().now()).as_millis()).unwrap_or(u64::MAX));
    let view = CodeView {
        pairing: PairingView::new(&p),
        qr,
        code: p.qr_code.clone(),
        phone_code: p.phone_code.clone(),
        expires_in_ms,
    };
    let mut response = Json(Data { data: view }).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Deserialize)]
pub(crate) struct TransitionsQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TransitionList {
    data: Vec<RecordedTransition>,
    /// Pass as `before` for the next (older) page; `null` on the last page.
    next_before: Option<i64>,
}

/// The line's lifecycle transitions, newest first.
pub(crate) async fn transitions(
    State(state): State<AppState>,
    UserAuth(principal): UserAuth,
    Path(line_id): Path<String>,
    QueryArgs(q): QueryArgs<TransitionsQuery>,
) -> ApiResult<Json<TransitionList>> {
    let limit = q.limit.unwrap_or(50);
    let data = state.ezw.lines().transitions(&principal, &parse_line_id(&line_id)?, q.before, limit).await?;
    let next_before =
        if data.len() >= usize::try_from(limit).unwrap_or(usize::MAX) { data.last().map(|t| t.seq) } else { None };
    Ok(Json(TransitionList { data, next_before }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png_bytes: &[u8]) -> String {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_png_decodes_back_to_the_text() {
        let text = "2@AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/=,\
                    q1Xb8Jm0wqkQxq1Xb8Jm0wqkQxq1Xb8Jm0wqkQxq1Xb8=,\
                    Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyMDE=,\
                    YWR2LXNlY3JldC1hZHYtc2VjcmV0LWFkdi1zZWNyZXQ=";
        let png_bytes = qr_png(text).unwrap();
        assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(decode(&png_bytes), text);
        let url = qr_data_url(text).unwrap();
        let b64 = url.strip_prefix("data:image/png;base64,").unwrap();
        assert_eq!(STANDARD.decode(b64).unwrap(), png_bytes);
    }

    #[test]
    fn the_image_has_a_quiet_zone_and_whole_modules() {
        let png_bytes = qr_png("hello").unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        // Version 1 (21 modules) plus the quiet zone, 8 px each.
        assert_eq!((info.width, info.height), (232, 232));
        let w = info.width as usize;
        assert!(buf[..w * QUIET_ZONE * MODULE_PX].iter().all(|p| *p == 255), "light border");
        let top_left = QUIET_ZONE * MODULE_PX;
        assert_eq!(buf[top_left * w + top_left], 0, "the finder pattern starts dark");
    }
}
