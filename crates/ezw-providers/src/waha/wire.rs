//! WAHA's wire formats, spelled as WAHA spells them (OpenAPI `2026.7.1`,
//! `../shared/specs/waha-openapi.json`): session requests and answers, pairing, sends, the
//! error body, and the webhook envelope with the `session.status`, `message` and `message.ack`
//! payloads.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A session status (`SessionDTO.status`, `WASessionStatusBody.status`).
pub(crate) mod status {
    /// Not running.
    pub(crate) const STOPPED: &str = "STOPPED";
    /// Waiting for a QR scan (or a phone code): no usable credentials.
    pub(crate) const SCAN_QR_CODE: &str = "SCAN_QR_CODE";
    /// Connected and able to send.
    pub(crate) const WORKING: &str = "WORKING";
    /// Failed (connection lost, pairing gave up).
    pub(crate) const FAILED: &str = "FAILED";
}

/// The events EZW subscribes to.
pub(crate) const EVENTS: [&str; 3] = ["session.status", "message", "message.ack"];

/// `HmacConfiguration`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HmacConfiguration {
    /// The key WAHA signs webhook bodies with.
    pub(crate) key: String,
}

/// `WebhookConfig`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WebhookConfig {
    /// Where WAHA posts events.
    pub(crate) url: String,
    /// Which events.
    pub(crate) events: Vec<String>,
    /// Signing.
    pub(crate) hmac: HmacConfiguration,
}

/// `SessionConfig` (only what EZW sets).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SessionConfig {
    /// EZW's webhook for the line.
    pub(crate) webhooks: Vec<WebhookConfig>,
    /// Echoed in every webhook (`metadata`): the line id.
    pub(crate) metadata: serde_json::Map<String, Value>,
}

/// `POST /api/sessions`: `SessionCreateRequest`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SessionCreateRequest {
    /// Session name.
    pub(crate) name: String,
    /// Start at once (EZW starts sessions itself: `false`).
    pub(crate) start: bool,
    /// Config.
    pub(crate) config: SessionConfig,
}

/// `PUT /api/sessions/{session}`: `SessionUpdateRequest`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SessionUpdateRequest {
    /// Config.
    pub(crate) config: SessionConfig,
}

/// `MeInfo`: the account a session runs as.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct MeInfo {
    /// `11111111111@c.us`.
    #[serde(default)]
    pub(crate) id: Option<String>,
}

impl MeInfo {
    /// The account's number as digits (`11111111111`), when `id` is a phone JID.
    pub(crate) fn account(&self) -> Option<String> {
        let id = self.id.as_deref()?;
        let user = id.split('@').next()?.split(':').next()?;
        (!user.is_empty() && user.bytes().all(|b| b.is_ascii_digit())).then(|| user.to_owned())
    }
}

/// `SessionDTO` / `SessionInfo`: what EZW reads of a session.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SessionInfo {
    /// `STOPPED`, `STARTING`, `SCAN_QR_CODE`, `WORKING`, `FAILED`, `PASSKEY_*`.
    pub(crate) status: String,
    /// The account, once paired.
    #[serde(default)]
    pub(crate) me: Option<MeInfo>,
}

/// `QRCodeValue`: `GET /api/{session}/auth/qr?format=raw`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct QrCodeValue {
    /// The pairing string the QR image encodes.
    pub(crate) value: String,
}

/// `RequestCodeRequest`: `POST /api/{session}/auth/request-code`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestCodeRequest {
    /// The line's number, digits only.
    pub(crate) phone_number: String,
}

/// The answer to `request-code` (not described by the spec; WAHA answers `{"code": "ABCD-ABCD"}`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RequestCodeResponse {
    /// The code to type on the phone.
    #[serde(default)]
    pub(crate) code: Option<String>,
}

/// `LidToPhoneNumber`: `GET /api/{session}/lids/{lid}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct LidToPhoneNumber {
    /// The phone number's chat id (`3333333@c.us`), when WAHA knows it.
    #[serde(default)]
    pub(crate) pn: Option<String>,
}

/// `RemoteFile`: media by URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RemoteFile {
    /// Public URL WAHA downloads.
    pub(crate) url: String,
    /// MIME type (required by the spec).
    pub(crate) mimetype: String,
    /// A document's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) filename: Option<String>,
}

/// `MessageTextRequest`: `POST /api/sendText`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageTextRequest {
    /// Session.
    pub(crate) session: String,
    /// `<digits>@c.us`.
    pub(crate) chat_id: String,
    /// The text.
    pub(crate) text: String,
    /// The message replied to (`false_11111111111@c.us_AAAA...`).
    #[serde(rename = "reply_to", skip_serializing_if = "Option::is_none")]
    pub(crate) reply_to: Option<String>,
}

/// `MessageImageRequest` / `MessageFileRequest`: `POST /api/sendImage`, `/api/sendFile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageFileRequest {
    /// Session.
    pub(crate) session: String,
    /// `<digits>@c.us`.
    pub(crate) chat_id: String,
    /// The media.
    pub(crate) file: RemoteFile,
    /// Caption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) caption: Option<String>,
    /// The message replied to.
    #[serde(rename = "reply_to", skip_serializing_if = "Option::is_none")]
    pub(crate) reply_to: Option<String>,
}

/// The answer to a send: a `WAMessage`. Engines spell the id differently: a string (`NOWEB`,
/// `GOWS`), an object with `_serialized` (`WEBJS`), or only a `key.id`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct SentMessage {
    /// The message id, in one of the spellings above.
    #[serde(default)]
    pub(crate) id: Option<Value>,
    /// Baileys-style key.
    #[serde(default)]
    pub(crate) key: Option<Value>,
}

impl SentMessage {
    /// The serialized id (`true_<chatId>_<id>`), the form `message.ack` events carry.
    pub(crate) fn serialized_id(&self, chat_id: &str) -> Option<String> {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        match &self.id {
            Some(Value::String(s)) => return non_empty(s),
            Some(Value::Object(o)) => {
                if let Some(s) = o.get("_serialized").and_then(Value::as_str) {
                    return non_empty(s);
                }
            }
            _ => {}
        }
        let id = self.key.as_ref()?.get("id")?.as_str()?;
        (!id.is_empty()).then(|| format!("true_{chat_id}_{id}"))
    }
}

/// A WAHA error body (NestJS style): `{"statusCode": 422, "message": "...", "error": "..."}`;
/// session errors add `session`, `status` and `expected`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiError {
    /// What went wrong (a string, or a list of validation messages).
    #[serde(default)]
    pub(crate) message: Option<Value>,
    /// The HTTP reason.
    #[serde(default)]
    pub(crate) error: Option<String>,
    /// The session's status, for "session status is not as expected".
    #[serde(default)]
    pub(crate) status: Option<String>,
}

impl ApiError {
    /// The message as one line.
    pub(crate) fn text(&self) -> Option<String> {
        match &self.message {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            _ => self.error.clone(),
        }
    }
}

/// Every webhook's envelope (`WAHAWebhook*`): the event name, the session, the payload.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WebhookEnvelope {
    /// `session.status`, `message`, `message.ack`, ...
    pub(crate) event: String,
    /// The session name.
    pub(crate) session: String,
    /// The event's body.
    #[serde(default)]
    pub(crate) payload: Value,
    /// The account the session runs as.
    #[serde(default)]
    pub(crate) me: Option<MeInfo>,
}

/// `WASessionStatusBody`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SessionStatusBody {
    /// The new status.
    pub(crate) status: String,
}

/// `WAMedia`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct WaMedia {
    /// Where WAHA serves the downloaded media.
    #[serde(default)]
    pub(crate) url: Option<String>,
    /// MIME type.
    #[serde(default)]
    pub(crate) mimetype: Option<String>,
    /// The original file name.
    #[serde(default)]
    pub(crate) filename: Option<String>,
}

/// `WALocation` (coordinates are strings in the spec; some engines send numbers).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct WaLocation {
    /// Latitude.
    #[serde(default)]
    pub(crate) latitude: Option<Value>,
    /// Longitude.
    #[serde(default)]
    pub(crate) longitude: Option<Value>,
    /// Place name.
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Address.
    #[serde(default)]
    pub(crate) address: Option<String>,
}

/// `ReplyToMessage`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ReplyToMessage {
    /// The quoted message's id.
    #[serde(default)]
    pub(crate) id: Option<String>,
}

/// `WAMessage` as a `message` event carries it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WaMessage {
    /// `false_11111111111@c.us_AAAA...`.
    #[serde(default)]
    pub(crate) id: Option<String>,
    /// The chat (`11111111111@c.us`; groups end in `@g.us`).
    #[serde(default)]
    pub(crate) from: Option<String>,
    /// Sent by this session.
    #[serde(default)]
    pub(crate) from_me: bool,
    /// Text or caption.
    #[serde(default)]
    pub(crate) body: Option<String>,
    /// Whether media is attached.
    #[serde(default)]
    pub(crate) has_media: bool,
    /// The media, once WAHA downloaded it.
    #[serde(default)]
    pub(crate) media: Option<WaMedia>,
    /// A shared location.
    #[serde(default)]
    pub(crate) location: Option<WaLocation>,
    /// The message this one quotes.
    #[serde(default)]
    pub(crate) reply_to: Option<ReplyToMessage>,
    /// The engine's raw message (the sender's push name lives here).
    #[serde(default, rename = "_data")]
    pub(crate) data: Option<Value>,
}

impl WaMessage {
    /// The sender's WhatsApp profile name, when the engine reports it.
    pub(crate) fn push_name(&self) -> Option<String> {
        let data = self.data.as_ref()?;
        ["notifyName", "pushName"]
            .iter()
            .find_map(|k| data.get(*k).and_then(Value::as_str))
            .or_else(|| data.get("Info").and_then(|i| i.get("PushName")).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
}

/// `WAMessageAckBody`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageAckBody {
    /// The acknowledged message (`true_11111111111@c.us_AAAA...`).
    #[serde(default)]
    pub(crate) id: Option<String>,
    /// Whether the acknowledged message was sent by this session.
    #[serde(default)]
    pub(crate) from_me: bool,
    /// `-1` error, `0` pending, `1` server, `2` device, `3` read, `4` played.
    #[serde(default)]
    pub(crate) ack: Option<i64>,
    /// `ERROR`, `PENDING`, `SERVER`, `DEVICE`, `READ`, `PLAYED`.
    #[serde(default)]
    pub(crate) ack_name: Option<String>,
}
