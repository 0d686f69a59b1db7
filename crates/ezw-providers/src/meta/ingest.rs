//! Webhook ingress: the `GET` verification handshake, `X-Hub-Signature-256` verification, and
//! normalisation of `messages` webhooks into [`ProviderEvent`]s. Pure functions.

use ezw_core::crypto::{constant_time_eq, hmac_sha256};
use ezw_core::model::{
    InteractiveReply, Line, Location, MediaKind, MediaRef, MessageContent, MessageError, MessageKind, MessageStatus,
    Reaction,
};
use ezw_core::ports::{
    InboundRequest, IngestOutcome, IngestResponse, NewInbound, ProviderError, ProviderErrorKind, ProviderEvent,
    StatusUpdate,
};
use ezw_core::{PhoneNumber, Timestamp};

use super::config::MetaConfig;
use super::wire::{ChangeValue, InboundMessage, MediaContent, Status, WebhookError, WebhookPayload};

/// The header Meta signs webhooks with.
pub(crate) const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Verifies and parses one webhook request for `line`.
pub(crate) fn ingest(
    line: &Line,
    config: &MetaConfig,
    request: &InboundRequest,
) -> Result<IngestOutcome, ProviderError> {
    if request.method.eq_ignore_ascii_case("GET") {
        return verify_challenge(config, request);
    }
    if !request.method.eq_ignore_ascii_case("POST") {
        return Err(ProviderError::new(
            ProviderErrorKind::Permanent,
            "method_not_allowed",
            "Meta webhooks are GET (verification) or POST (events)",
        ));
    }
    verify_signature(config.app_secret.expose().as_bytes(), request.header(SIGNATURE_HEADER), &request.body)?;
    let payload: WebhookPayload = serde_json::from_slice(&request.body).map_err(|e| {
        ProviderError::new(ProviderErrorKind::Permanent, "invalid_payload", format!("not a Meta webhook payload: {e}"))
    })?;
    let events = if payload.object == "whatsapp_business_account" {
        normalise(line, &config.phone_number_id, &payload)
    } else {
        tracing::warn!(line = %line.id, object = %payload.object, "ignoring a Meta webhook for another object");
        Vec::new()
    };
    Ok(IngestOutcome { events, response: IngestResponse::ok_json() })
}

/// The subscription handshake: `hub.mode=subscribe` and the line's verify token (compared in
/// constant time) echo `hub.challenge`.
pub(crate) fn verify_challenge(config: &MetaConfig, request: &InboundRequest) -> Result<IngestOutcome, ProviderError> {
    let expected = config.verify_token.expose().as_bytes();
    let token_ok = request.query_param("hub.verify_token").is_some_and(|t| constant_time_eq(t.as_bytes(), expected));
    if request.query_param("hub.mode") != Some("subscribe") || !token_ok {
        return Err(ProviderError::new(
            ProviderErrorKind::Unauthorized,
            "invalid_verify_token",
            "the webhook verification request did not carry this line's verify token",
        ));
    }
    let challenge = request.query_param("hub.challenge").ok_or_else(|| {
        ProviderError::new(ProviderErrorKind::Permanent, "invalid_payload", "hub.challenge is missing")
    })?;
    Ok(IngestOutcome {
        events: Vec::new(),
        response: IngestResponse { status: 200, content_type: "text/plain", body: challenge.to_owned() },
    })
}

/// `sha256=` + lower-case hex HMAC-SHA256(app secret, body).
pub(crate) fn signature(app_secret: &[u8], body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in hmac_sha256(app_secret, body) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    out
}

/// Checks `X-Hub-Signature-256` against the raw body (constant time).
pub(crate) fn verify_signature(app_secret: &[u8], header: Option<&str>, body: &[u8]) -> Result<(), ProviderError> {
    let expected = signature(app_secret, body);
    match header {
        Some(given) if constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ProviderError::new(
            ProviderErrorKind::Unauthorized,
            "invalid_signature",
            "missing or wrong X-Hub-Signature-256",
        )),
    }
}

/// Turns a parsed payload into events for `line`, in payload order. Changes for other phone
/// numbers and other fields are skipped.
pub(crate) fn normalise(line: &Line, phone_number_id: &str, payload: &WebhookPayload) -> Vec<ProviderEvent> {
    let mut events = Vec::new();
    for entry in &payload.entry {
        for change in &entry.changes {
            let value = &change.value;
            let number = value.metadata.as_ref().map(|m| m.phone_number_id.as_str());
            if change.field != "messages" || number != Some(phone_number_id) {
                tracing::debug!(
                    line = %line.id, waba = entry.id.as_deref().unwrap_or(""), field = %change.field,
                    phone_number_id = number.unwrap_or(""), "skipping a Meta webhook change not for this line"
                );
                continue;
            }
            for message in &value.messages {
                if let Some(inbound) = inbound(line, value, message) {
                    events.push(ProviderEvent::Inbound(Box::new(inbound)));
                }
            }
            for status in &value.statuses {
                if let Some(update) = status_update(line, status) {
                    events.push(ProviderEvent::Status(update));
                }
            }
            for error in &value.errors {
                tracing::warn!(
                    line = %line.id, code = error.code.unwrap_or_default(),
                    title = error.title.as_deref().unwrap_or(""), details = details(error).unwrap_or(""),
                    "Meta reported an asynchronous error"
                );
            }
        }
    }
    events
}

fn unix_ms(secs: i64) -> Timestamp {
    Timestamp::from_unix_ms(secs.saturating_mul(1000))
}

fn inbound(line: &Line, value: &ChangeValue, message: &InboundMessage) -> Option<NewInbound> {
    let from_digits = message.from.trim_start_matches('+');
    let Ok(from) = PhoneNumber::parse(&format!("+{from_digits}")) else {
        tracing::warn!(line = %line.id, wamid = %message.id, "skipping a Meta message whose sender is not a phone number");
        return None;
    };
    let (Some(secs), false) = (message.timestamp, message.id.is_empty()) else {
        tracing::warn!(line = %line.id, wamid = %message.id, "skipping a Meta message without id or timestamp");
        return None;
    };
    let profile_name = value
        .contacts
        .iter()
        .find(|c| c.wa_id.as_deref() == Some(from_digits))
        .or_else(|| value.contacts.first())
        .and_then(|c| c.profile.as_ref()?.name.clone());
    let (kind, mut content) = content(message).unwrap_or_else(|| {
        tracing::debug!(line = %line.id, wamid = %message.id, kind = %message.kind, "unsupported Meta message type");
        (MessageKind::Unsupported, MessageContent::default())
    });
    content.reply_to = message.context.as_ref().and_then(|c| c.id.clone()).filter(|id| !id.is_empty());
    Some(NewInbound {
        organization_id: line.organization_id.clone(),
        line_id: line.id.clone(),
        from,
        profile_name,
        provider_message_id: message.id.clone(),
        kind,
        content,
        received_at: unix_ms(secs),
    })
}

fn content(m: &InboundMessage) -> Option<(MessageKind, MessageContent)> {
    let base = MessageContent::default();
    Some(match m.kind.as_str() {
        "text" => (MessageKind::Text, MessageContent { body: Some(m.text.as_ref()?.body.clone()), ..base }),
        "image" => media(MediaKind::Image, MessageKind::Image, m.image.as_ref()?),
        "video" => media(MediaKind::Video, MessageKind::Video, m.video.as_ref()?),
        "audio" => media(MediaKind::Audio, MessageKind::Audio, m.audio.as_ref()?),
        "document" => media(MediaKind::Document, MessageKind::Document, m.document.as_ref()?),
        "sticker" => media(MediaKind::Image, MessageKind::Sticker, m.sticker.as_ref()?),
        "location" => {
            let l = m.location.as_ref()?;
            let location = Location {
                latitude: l.latitude?,
                longitude: l.longitude?,
                name: l.name.clone(),
                address: l.address.clone(),
            };
            (MessageKind::Location, MessageContent { location: Some(location), ..base })
        }
        "contacts" => (MessageKind::Contacts, MessageContent { contacts: Some(m.contacts.clone()?), ..base }),
        "interactive" => {
            let i = m.interactive.as_ref()?;
            let (kind, option) = match (i.kind.as_str(), &i.button_reply, &i.list_reply) {
                ("button_reply", Some(o), _) => ("button_reply", o),
                ("list_reply", _, Some(o)) => ("list_reply", o),
                _ => return None,
            };
            let reply = InteractiveReply {
                kind: kind.to_owned(),
                id: option.id.clone(),
                title: option.title.clone(),
                description: option.description.clone(),
            };
            (
                MessageKind::Interactive,
                MessageContent { body: Some(reply.title.clone()), interactive_reply: Some(reply), ..base },
            )
        }
        "button" => {
            let b = m.button.as_ref()?;
            let reply = InteractiveReply {
                kind: "button".to_owned(),
                id: b.payload.clone(),
                title: b.text.clone(),
                description: None,
            };
            (
                MessageKind::Interactive,
                MessageContent { body: Some(b.text.clone()), interactive_reply: Some(reply), ..base },
            )
        }
        "reaction" => {
            let r = m.reaction.as_ref()?;
            let reaction = Reaction { message_id: r.message_id.clone(), emoji: r.emoji.clone().unwrap_or_default() };
            (MessageKind::Reaction, MessageContent { reaction: Some(reaction), ..base })
        }
        _ => return None,
    })
}

fn media(media_kind: MediaKind, kind: MessageKind, object: &MediaContent) -> (MessageKind, MessageContent) {
    let caption = if media_kind.allows_caption() { object.caption.clone() } else { None };
    let media = MediaRef {
        kind: media_kind,
        url: None,
        attachment_id: None,
        provider_media_id: object.id.clone(),
        sha256: object.sha256.clone(),
        caption: caption.clone(),
        filename: if media_kind == MediaKind::Document { object.filename.clone() } else { None },
        mime_type: object.mime_type.clone(),
    };
    (kind, MessageContent { body: caption, media: Some(media), ..MessageContent::default() })
}

fn status_update(line: &Line, status: &Status) -> Option<StatusUpdate> {
    let parsed = match status.status.as_str() {
        "sent" => MessageStatus::Sent,
        "delivered" => MessageStatus::Delivered,
        "read" => MessageStatus::Read,
        "failed" => MessageStatus::Failed,
        other => {
            tracing::debug!(line = %line.id, wamid = %status.id, status = other, "ignoring a Meta status");
            return None;
        }
    };
    let (Some(secs), false) = (status.timestamp, status.id.is_empty()) else {
        tracing::warn!(line = %line.id, wamid = %status.id, "skipping a Meta status without id or timestamp");
        return None;
    };
    let error = if parsed == MessageStatus::Failed { status.errors.first().map(message_error) } else { None };
    Some(StatusUpdate {
        line_id: line.id.clone(),
        provider_message_id: status.id.clone(),
        message_id: None,
        status: parsed,
        at: unix_ms(secs),
        error,
    })
}

fn details(e: &WebhookError) -> Option<&str> {
    e.error_data.as_ref()?.details.as_deref().filter(|d| !d.is_empty())
}

fn message_error(e: &WebhookError) -> MessageError {
    let base = [e.message.as_deref(), e.title.as_deref()]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
        .unwrap_or("the message failed");
    let message = match details(e) {
        Some(d) if d != base => format!("{base}: {d}"),
        _ => base.to_owned(),
    };
    MessageError { code: e.code.map_or_else(|| "unknown".to_owned(), |c| c.to_string()), message }
}
