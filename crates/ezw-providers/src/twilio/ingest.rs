//! Inbound webhooks: `X-Twilio-Signature` verification, then normalisation of incoming
//! messages and status callbacks into [`ProviderEvent`]s. Pure functions; the provider supplies
//! the line, its configuration and the time.
//!
//! The signature is base64 HMAC-SHA1 of the URL Twilio called plus, for form bodies, every POST
//! parameter (names sorted; a repeated name's distinct values sorted), keyed with the account's
//! Auth Token. JSON bodies are covered by a `bodySHA256` query parameter instead.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ezw_core::crypto::{constant_time_eq, sha256_hex};
use ezw_core::model::{
    InteractiveReply, Line, Location, MediaKind, MediaRef, MessageContent, MessageError, MessageKind, MessageStatus,
};
use ezw_core::ports::{
    InboundRequest, IngestOutcome, IngestResponse, NewInbound, ProviderError, ProviderErrorKind, ProviderEvent,
    StatusUpdate,
};
use ezw_core::{PhoneNumber, Secret, Timestamp};
use sha1::Sha1;

use super::config::TwilioConfig;
use super::wire::{field, form_pairs, from_form, InboundMessage, StatusCallback};
/// The header Twilio signs requests with (lower case, as in [`InboundRequest::headers`]).
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// HMAC-SHA1 (RFC 2104), the MAC Twilio signs with.
pub(crate) fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    use hmac::Mac as _;
    let mut mac = <hmac::Hmac<Sha1> as hmac::Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The `X-Twilio-Signature` value for `url` and POST `params` (pass none for JSON bodies).
#[must_use]
pub fn compute_signature(auth_token: &Secret, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut data = String::with_capacity(url.len() + 64 * sorted.len());
    data.push_str(url);
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    STANDARD.encode(hmac_sha1(auth_token.expose().as_bytes(), data.as_bytes()))
}

fn unauthorized(message: &str) -> ProviderError {
    ProviderError::new(ProviderErrorKind::Unauthorized, "invalid_signature", message)
}

/// Whether a request's body is form-encoded.
pub(crate) fn is_form(request: &InboundRequest) -> bool {
    request.header("content-type").is_some_and(|ct| {
        ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    })
}

/// Verifies a webhook's `X-Twilio-Signature` against `request.public_url` (also tried with the
/// default port added, or its explicit port removed, as Twilio's own validators do). Form
/// bodies sign their parameters; other bodies must match the URL's `bodySHA256`; an empty
/// body signs the URL alone.
///
/// # Errors
/// [`ProviderErrorKind::Unauthorized`] (`invalid_signature`) when the header is missing, the
/// body hash does not match, or no URL variant matches.
pub fn verify_signature(auth_token: &Secret, request: &InboundRequest) -> Result<(), ProviderError> {
    let provided = request
        .header(SIGNATURE_HEADER)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unauthorized("missing X-Twilio-Signature header"))?;
    let url = request.public_url.as_str();
    let params = if is_form(request) {
        url::form_urlencoded::parse(&request.body).into_owned().collect()
    } else if let Some(expected) = body_sha256(url) {
        let actual = sha256_hex(&request.body);
        if !constant_time_eq(expected.to_ascii_lowercase().as_bytes(), actual.as_bytes()) {
            return Err(unauthorized("bodySHA256 does not match the request body"));
        }
        Vec::new()
    } else if request.body.is_empty() {
        Vec::new()
    } else {
        return Err(unauthorized("a non-form body must be covered by bodySHA256"));
    };
    let mut valid = false;
    for candidate in url_variants(url) {
        let expected = compute_signature(auth_token, &candidate, &params);
        valid |= constant_time_eq(expected.as_bytes(), provided.as_bytes());
    }
    if valid {
        Ok(())
    } else {
        Err(unauthorized("X-Twilio-Signature does not match"))
    }
}

/// The `bodySHA256` query parameter of a URL.
fn body_sha256(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "bodySHA256").map(|(_, v)| v.into_owned())
}

/// The URL as given, plus the same URL with the scheme's default port added (when it has no
/// port) or with its explicit port removed. Everything but the port stays byte-identical.
pub(crate) fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    // The port separator is the last ':' outside an IPv6 literal.
    let port_sep = host_port.rfind(':').filter(|&i| !host_port[i..].contains(']'));
    let prefix = format!("{scheme}://{}", &authority[..host_start]);
    match port_sep {
        Some(i) if host_port[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            out.push(format!("{prefix}{}{tail}", &host_port[..i]));
        }
        Some(_) => {}
        None => {
            let port = match scheme.to_ascii_lowercase().as_str() {
                "https" => "443",
                "http" => "80",
                _ => return out,
            };
            out.push(format!("{prefix}{host_port}:{port}{tail}"));
        }
    }
    out
}

/// The answer to an incoming-message webhook: empty TwiML (no auto-reply).
pub(crate) const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

fn invalid_payload(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ProviderErrorKind::Permanent, "invalid_payload", message)
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.is_empty())
}

/// Parses a webhook whose signature has been verified: `route` `""` is an incoming message,
/// `"status"` a status callback. `config` is the line's (its `AccountSid` must match); `now`
/// stamps the events.
///
/// # Errors
/// `Permanent` `invalid_payload` (unparseable body or missing fields), `account_mismatch`, or
/// `unknown_route`.
pub(crate) fn parse_webhook(
    line: &Line,
    config: &TwilioConfig,
    request: &InboundRequest,
    now: Timestamp,
) -> Result<IngestOutcome, ProviderError> {
    let route = request.route.as_str();
    if !route.is_empty() && route != "status" {
        return Err(ProviderError::new(
            ProviderErrorKind::Permanent,
            "unknown_route",
            format!("no Twilio webhook route '{route}'"),
        ));
    }
    let pairs = webhook_fields(request)?;
    if route == "status" {
        let status: StatusCallback = from_form(&pairs).map_err(|e| invalid_payload(format!("status callback: {e}")))?;
        check_account(status.account_sid.as_deref(), config, false)?;
        // Our StatusCallback URL names the message (`?message_id=`); the signature covers it.
        let ours = request.query_param("message_id").and_then(ezw_core::MessageId::parse);
        let events = status_event(line, status, now, ours)?.map(ProviderEvent::Status).into_iter().collect();
        return Ok(IngestOutcome { events, response: IngestResponse::ok_json() });
    }
    let inbound: InboundMessage = from_form(&pairs).map_err(|e| invalid_payload(format!("incoming message: {e}")))?;
    check_account(inbound.account_sid.as_deref(), config, true)?;
    let events = inbound_events(line, config, inbound, &pairs, now)?
        .into_iter()
        .map(|m| ProviderEvent::Inbound(Box::new(m)))
        .collect();
    Ok(IngestOutcome {
        events,
        response: IngestResponse { status: 200, content_type: "text/xml", body: EMPTY_TWIML.to_owned() },
    })
}

/// The webhook's fields: the form body, or the query of a body-less (GET) webhook.
fn webhook_fields(request: &InboundRequest) -> Result<Vec<(String, String)>, ProviderError> {
    if is_form(request) {
        Ok(form_pairs(&request.body))
    } else if request.body.is_empty() {
        Ok(request.query.clone())
    } else {
        Err(invalid_payload("Twilio messaging webhooks must be application/x-www-form-urlencoded"))
    }
}

fn check_account(given: Option<&str>, config: &TwilioConfig, required: bool) -> Result<(), ProviderError> {
    match given {
        Some(sid) if sid == config.account_sid => Ok(()),
        None if !required => Ok(()),
        None => Err(invalid_payload("AccountSid is missing")),
        Some(_) => Err(ProviderError::new(
            ProviderErrorKind::Permanent,
            "account_mismatch",
            "AccountSid does not match the line's Twilio account",
        )),
    }
}

fn status_event(
    line: &Line,
    cb: StatusCallback,
    at: Timestamp,
    message_id: Option<ezw_core::MessageId>,
) -> Result<Option<StatusUpdate>, ProviderError> {
    let sid = non_empty(cb.message_sid).ok_or_else(|| invalid_payload("MessageSid is missing"))?;
    let reported = non_empty(cb.message_status).ok_or_else(|| invalid_payload("MessageStatus is missing"))?;
    let (status, error) = match reported.as_str() {
        "sent" => (MessageStatus::Sent, None),
        "delivered" => (MessageStatus::Delivered, None),
        "read" => (MessageStatus::Read, None),
        "failed" | "undelivered" => {
            let code = non_empty(cb.error_code);
            let message = non_empty(cb.error_message).unwrap_or_else(|| describe_failure(&reported, code.as_deref()));
            (MessageStatus::Failed, Some(MessageError { code: code.unwrap_or(reported), message }))
        }
        // queued, accepted, scheduled, sending, canceled, and anything Twilio adds later.
        _ => return Ok(None),
    };
    Ok(Some(StatusUpdate { line_id: line.id.clone(), provider_message_id: sid, message_id, status, at, error }))
}

/// A description for a failure Twilio reported without `ErrorMessage`.
pub(crate) fn describe_failure(status: &str, code: Option<&str>) -> String {
    match code {
        Some("63016") => "outside the 24-hour customer service window: freeform messages are not allowed; \
                          send an approved template (ContentSid)"
            .to_owned(),
        Some(code) => format!(
            "Twilio reported the message {status} (error {code}, see https://www.twilio.com/docs/errors/{code})"
        ),
        None => format!("Twilio reported the message {status}"),
    }
}

/// `whatsapp:+E164` (or a bare number) to a phone number.
fn parse_address(value: Option<&str>, field: &str) -> Result<PhoneNumber, ProviderError> {
    let raw = value.filter(|s| !s.is_empty()).ok_or_else(|| invalid_payload(format!("{field} is missing")))?;
    let number = raw.strip_prefix("whatsapp:").unwrap_or(raw);
    PhoneNumber::parse(number).map_err(|_| invalid_payload(format!("{field} is not a WhatsApp address")))
}

/// The media kind for a MIME type.
pub(crate) fn media_kind(content_type: &str) -> MediaKind {
    match content_type.split('/').next().map(str::to_ascii_lowercase).as_deref() {
        Some("image") => MediaKind::Image,
        Some("video") => MediaKind::Video,
        Some("audio") => MediaKind::Audio,
        _ => MediaKind::Document,
    }
}

fn media_ref(pairs: &[(String, String)], n: usize, caption: Option<String>) -> Result<MediaRef, ProviderError> {
    let url = field(pairs, &format!("MediaUrl{n}"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid_payload(format!("MediaUrl{n} is missing")))?;
    let mime_type = field(pairs, &format!("MediaContentType{n}")).filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(MediaRef {
        kind: mime_type.as_deref().map_or(MediaKind::Document, media_kind),
        url: Some(url.to_owned()),
        attachment_id: None,
        provider_media_id: None,
        sha256: None,
        caption,
        filename: None,
        mime_type,
    })
}

fn parse_coordinate(value: Option<String>, field: &str, limit: f64) -> Result<Option<f64>, ProviderError> {
    non_empty(value)
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && x.abs() <= limit)
                .ok_or_else(|| invalid_payload(format!("{field} is not a coordinate")))
        })
        .transpose()
}

fn inbound_events(
    line: &Line,
    config: &TwilioConfig,
    msg: InboundMessage,
    pairs: &[(String, String)],
    now: Timestamp,
) -> Result<Vec<NewInbound>, ProviderError> {
    let sid = non_empty(msg.message_sid).ok_or_else(|| invalid_payload("MessageSid is missing"))?;
    // `From` is the sender's address; `WaId` (digits) stands in only when `From` is absent.
    let from = match (non_empty(msg.from), non_empty(msg.wa_id)) {
        (None, Some(wa_id)) => parse_address(Some(&format!("+{wa_id}")), "WaId")?,
        (from, _) => parse_address(from.as_deref(), "From")?,
    };
    if msg.to.as_deref().and_then(|to| parse_address(Some(to), "To").ok()).is_some_and(|to| to != config.from) {
        tracing::debug!(line = %line.id, "Twilio inbound To differs from the line's configured sender");
    }
    let num_media = match non_empty(msg.num_media) {
        None => 0,
        Some(n) => n.trim().parse::<usize>().map_err(|_| invalid_payload("NumMedia is not a number"))?,
    };
    let body = non_empty(msg.body);
    let mut content = MessageContent {
        body: body.clone(),
        reply_to: non_empty(msg.original_replied_message_sid),
        ..MessageContent::default()
    };
    let latitude = parse_coordinate(msg.latitude, "Latitude", 90.0)?;
    let longitude = parse_coordinate(msg.longitude, "Longitude", 180.0)?;
    let (payload, title) = (non_empty(msg.button_payload), non_empty(msg.button_text));
    let kind = if num_media >= 1 {
        let media = media_ref(pairs, 0, body)?;
        let kind = media.kind.message_kind();
        content.media = Some(media);
        kind
    } else if let (Some(latitude), Some(longitude)) = (latitude, longitude) {
        let (name, address) = (non_empty(msg.label), non_empty(msg.address));
        content.location = Some(Location { latitude, longitude, name, address });
        MessageKind::Location
    } else if payload.is_some() || title.is_some() {
        let (id, title) = (payload.or_else(|| title.clone()).unwrap_or_default(), title.unwrap_or_default());
        content.interactive_reply = Some(InteractiveReply { kind: "button".into(), id, title, description: None });
        MessageKind::Interactive
    } else if content.body.is_some() {
        MessageKind::Text
    } else {
        MessageKind::Unsupported
    };
    let profile_name = non_empty(msg.profile_name);
    let base = |provider_message_id: String, kind: MessageKind, content: MessageContent| NewInbound {
        organization_id: line.organization_id.clone(),
        line_id: line.id.clone(),
        from: from.clone(),
        profile_name: profile_name.clone(),
        provider_message_id,
        kind,
        content,
        received_at: now,
    };
    let mut out = vec![base(sid.clone(), kind, content)];
    for n in 1..num_media {
        let media = media_ref(pairs, n, None)?;
        let kind = media.kind.message_kind();
        out.push(base(format!("{sid}:{n}"), kind, MessageContent { media: Some(media), ..MessageContent::default() }));
    }
    Ok(out)
}
