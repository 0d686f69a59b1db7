//! Inbound webhooks: `X-Webhook-Hmac` verification, then normalisation of `session.status`,
//! `message` and `message.ack` events into [`ProviderEvent`]s. Pure functions; the provider
//! supplies the line, its session name and the time.
//!
//! WAHA signs each webhook with the session's `config.webhooks[].hmac.key`: `X-Webhook-Hmac` is
//! the lower-case hex HMAC-SHA512 of the raw body, and `X-Webhook-Hmac-Algorithm` is `sha512`.

use ezw_core::crypto::constant_time_eq;
use ezw_core::model::{Line, Location, MediaKind, MediaRef, MessageContent, MessageError, MessageKind, MessageStatus};
use ezw_core::ports::{
    InboundRequest, IngestOutcome, IngestResponse, NewInbound, ProviderError, ProviderErrorKind, ProviderEvent,
    SessionSignal, StatusUpdate,
};
use ezw_core::{PhoneNumber, Secret, Timestamp};
use serde_json::Value;
use sha2::Sha512;

use super::wire::{status, MessageAckBody, SessionStatusBody, WaMessage, WebhookEnvelope};

/// The header carrying the signature (lower case, as in [`InboundRequest::headers`]).
pub const HMAC_HEADER: &str = "x-webhook-hmac";
/// The header naming the signature's algorithm (`sha512`).
pub const HMAC_ALGORITHM_HEADER: &str = "x-webhook-hmac-algorithm";

/// HMAC-SHA512 (RFC 2104 with SHA-512, RFC 4231).
pub(crate) fn hmac_sha512(key: &[u8], data: &[u8]) -> [u8; 64] {
    use hmac::Mac as _;
    let mut mac = <hmac::Hmac<Sha512> as hmac::Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The `X-Webhook-Hmac` value for `body` signed with `key`: lower-case hex HMAC-SHA512.
#[must_use]
pub fn compute_hmac(key: &Secret, body: &[u8]) -> String {
    use std::fmt::Write as _;
    let mac = hmac_sha512(key.expose().as_bytes(), body);
    let mut out = String::with_capacity(128);
    for b in mac {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn unauthorized(message: &str) -> ProviderError {
    ProviderError::new(ProviderErrorKind::Unauthorized, "invalid_signature", message)
}

/// Verifies a webhook's `X-Webhook-Hmac` over its raw body, in constant time. An
/// `X-Webhook-Hmac-Algorithm` other than `sha512` is refused.
///
/// # Errors
/// [`ProviderErrorKind::Unauthorized`] (`invalid_signature`) when the header is missing, the
/// algorithm is not `sha512`, or the signature does not match.
pub fn verify_hmac(key: &Secret, request: &InboundRequest) -> Result<(), ProviderError> {
    let provided = request
        .header(HMAC_HEADER)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unauthorized("missing X-Webhook-Hmac header"))?;
    if let Some(algorithm) = request.header(HMAC_ALGORITHM_HEADER) {
        if !algorithm.trim().eq_ignore_ascii_case("sha512") {
            return Err(unauthorized("X-Webhook-Hmac-Algorithm must be sha512"));
        }
    }
    let expected = compute_hmac(key, &request.body);
    if constant_time_eq(expected.as_bytes(), provided.to_ascii_lowercase().as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized("X-Webhook-Hmac does not match"))
    }
}

fn invalid_payload(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ProviderErrorKind::Permanent, "invalid_payload", message)
}

fn payload<T: serde::de::DeserializeOwned>(value: Value, event: &str) -> Result<T, ProviderError> {
    serde_json::from_value(value).map_err(|e| invalid_payload(format!("{event} payload: {e}")))
}

/// The privacy id (`204863123456789@lid`) a verified `message` event comes from, if it does:
/// WhatsApp hides some senders' numbers behind one, and the provider asks WAHA for the number.
pub(crate) fn lid_sender(body: &[u8]) -> Option<String> {
    let envelope: WebhookEnvelope = serde_json::from_slice(body).ok()?;
    if envelope.event != "message" || envelope.payload.get("fromMe").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let from = envelope.payload.get("from")?.as_str()?;
    let user = from.strip_suffix("@lid")?;
    (!user.is_empty() && user.bytes().all(|b| b.is_ascii_digit())).then(|| from.to_owned())
}

/// Parses a webhook whose signature has been verified. `session` is the line's WAHA session
/// (the event's must match); `now` stamps the events; `lid_phone` is the phone chat id WAHA
/// resolved for a [`lid_sender`]. Events EZW does not use are answered `200` and ignored.
///
/// # Errors
/// `Permanent` `invalid_payload` (not a WAHA event, or a payload missing what EZW needs),
/// `session_mismatch`, or `unknown_route`.
pub(crate) fn parse_webhook(
    line: &Line,
    session: &str,
    request: &InboundRequest,
    now: Timestamp,
    lid_phone: Option<&str>,
) -> Result<IngestOutcome, ProviderError> {
    if !request.route.is_empty() {
        return Err(ProviderError::new(
            ProviderErrorKind::Permanent,
            "unknown_route",
            format!("no WAHA webhook route '{}'", request.route),
        ));
    }
    let envelope: WebhookEnvelope =
        serde_json::from_slice(&request.body).map_err(|e| invalid_payload(format!("not a WAHA webhook event: {e}")))?;
    if envelope.session != session {
        return Err(ProviderError::new(
            ProviderErrorKind::Permanent,
            "session_mismatch",
            format!("the event is for WAHA session '{}', this line runs '{session}'", envelope.session),
        ));
    }
    let event = match envelope.event.as_str() {
        "session.status" => {
            let body: SessionStatusBody = payload(envelope.payload, "session.status")?;
            session_signal(&body.status, envelope.me.as_ref().and_then(super::wire::MeInfo::account))
                .map(|signal| ProviderEvent::Session { line_id: line.id.clone(), signal, at: now })
        }
        "message" => inbound(line, payload(envelope.payload, "message")?, lid_phone, now)?
            .map(|m| ProviderEvent::Inbound(Box::new(m))),
        "message.ack" => {
            status_update(line, payload(envelope.payload, "message.ack")?, now)?.map(ProviderEvent::Status)
        }
        other => {
            tracing::debug!(line = %line.id, event = other, "ignoring a WAHA event EZW does not use");
            None
        }
    };
    Ok(IngestOutcome { events: event.into_iter().collect(), response: IngestResponse::ok_json() })
}

/// The session signal a WAHA status means, if any: `WORKING` is connected; `SCAN_QR_CODE` means
/// the session has no usable credentials (ignored while pairing, so it only matters for a line
/// that was paired: the phone unlinked it); `FAILED` is a dropped connection; `STOPPED`,
/// `STARTING` and passkey states say nothing about the line.
pub(crate) fn session_signal(session_status: &str, account: Option<String>) -> Option<SessionSignal> {
    match session_status {
        status::WORKING => Some(SessionSignal::Connected { account }),
        status::SCAN_QR_CODE => Some(SessionSignal::LoggedOut {
            reason: "the WAHA session has no credentials and asks for a QR scan".into(),
        }),
        status::FAILED => Some(SessionSignal::Disconnected { reason: "the WAHA session failed".into() }),
        _ => None,
    }
}

/// A customer's phone number from a WhatsApp chat id (`972501234567@c.us`); `None` for groups,
/// broadcasts and channels, which EZW lines do not converse with, and for privacy ids (`@lid`).
pub(crate) fn phone_of(chat_id: &str) -> Option<PhoneNumber> {
    let (user, server) = chat_id.split_once('@')?;
    if !matches!(server, "c.us" | "s.whatsapp.net") {
        return None;
    }
    let user = user.split(':').next()?;
    if user.is_empty() || !user.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    PhoneNumber::parse(&format!("+{user}")).ok()
}

/// The media kind for a MIME type.
fn media_kind(mimetype: &str) -> MediaKind {
    match mimetype.split('/').next().map(str::to_ascii_lowercase).as_deref() {
        Some("image") => MediaKind::Image,
        Some("video") => MediaKind::Video,
        Some("audio") => MediaKind::Audio,
        _ => MediaKind::Document,
    }
}

fn coordinate(value: Option<&Value>, limit: f64) -> Option<f64> {
    let x = match value? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (x.is_finite() && x.abs() <= limit).then_some(x)
}

fn inbound(
    line: &Line,
    msg: WaMessage,
    lid_phone: Option<&str>,
    now: Timestamp,
) -> Result<Option<NewInbound>, ProviderError> {
    if msg.from_me {
        return Ok(None);
    }
    let id = msg.id.clone().filter(|s| !s.is_empty()).ok_or_else(|| invalid_payload("message.id is missing"))?;
    let from_chat =
        msg.from.clone().filter(|s| !s.is_empty()).ok_or_else(|| invalid_payload("message.from is missing"))?;
    // A privacy id stands for the number WAHA resolved for it.
    let from_chat = match lid_phone {
        Some(pn) if from_chat.ends_with("@lid") => pn.to_owned(),
        _ => from_chat,
    };
    let Some(from) = phone_of(&from_chat) else {
        if from_chat.ends_with("@lid") {
            tracing::warn!(line = %line.id, "ignoring a WAHA message from a privacy id WAHA cannot resolve to a number");
        }
        tracing::debug!(line = %line.id, "ignoring a WAHA message that is not from a phone number chat");
        return Ok(None);
    };
    let body = msg.body.clone().filter(|s| !s.is_empty());
    let mut content = MessageContent {
        reply_to: msg.reply_to.as_ref().and_then(|r| r.id.clone()).filter(|s| !s.is_empty()),
        ..MessageContent::default()
    };
    let location = msg.location.as_ref().and_then(|l| {
        let latitude = coordinate(l.latitude.as_ref(), 90.0)?;
        let longitude = coordinate(l.longitude.as_ref(), 180.0)?;
        Some(Location { latitude, longitude, name: l.name.clone(), address: l.address.clone() })
    });
    let kind = if msg.has_media {
        let media = msg.media.clone().unwrap_or_default();
        let mime_type = media.mimetype.filter(|s| !s.is_empty());
        let kind = mime_type.as_deref().map_or(MediaKind::Document, media_kind);
        content.body.clone_from(&body);
        content.media = Some(MediaRef {
            kind,
            url: media.url.filter(|s| !s.is_empty()),
            attachment_id: None,
            provider_media_id: None,
            sha256: None,
            caption: body,
            filename: media.filename.filter(|s| !s.is_empty()),
            mime_type,
        });
        kind.message_kind()
    } else if let Some(location) = location {
        content.location = Some(location);
        MessageKind::Location
    } else if body.is_some() {
        content.body = body;
        MessageKind::Text
    } else {
        MessageKind::Unsupported
    };
    Ok(Some(NewInbound {
        organization_id: line.organization_id.clone(),
        line_id: line.id.clone(),
        from,
        profile_name: msg.push_name(),
        provider_message_id: id,
        kind,
        content,
        received_at: now,
    }))
}

fn status_update(line: &Line, ack: MessageAckBody, now: Timestamp) -> Result<Option<StatusUpdate>, ProviderError> {
    if !ack.from_me {
        return Ok(None);
    }
    let id = ack.id.filter(|s| !s.is_empty()).ok_or_else(|| invalid_payload("message.ack id is missing"))?;
    let level = ack.ack.or_else(|| {
        Some(match ack.ack_name.as_deref()? {
            "ERROR" => -1,
            "PENDING" => 0,
            "SERVER" => 1,
            "DEVICE" => 2,
            "READ" => 3,
            "PLAYED" => 4,
            _ => return None,
        })
    });
    let (status, error) = match level {
        Some(1) => (MessageStatus::Sent, None),
        Some(2) => (MessageStatus::Delivered, None),
        Some(3 | 4) => (MessageStatus::Read, None),
        Some(-1) => (
            MessageStatus::Failed,
            Some(MessageError {
                code: "waha_ack_error".into(),
                message: "WhatsApp reported the message failed (ack ERROR)".into(),
            }),
        ),
        // PENDING and levels WAHA may add.
        _ => return Ok(None),
    };
    Ok(Some(StatusUpdate {
        line_id: line.id.clone(),
        provider_message_id: id,
        message_id: None,
        status,
        at: now,
        error,
    }))
}
