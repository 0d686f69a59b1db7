//! Twilio's wire formats, spelled as Twilio spells them: the `Messages.json` create request and
//! Message resource, the REST error body, the Account resource, and the form fields of the
//! incoming-message and status-callback webhooks (REST API 2010-04-01).

use serde::{Deserialize, Serialize};

/// `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded in this field order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateMessage {
    /// `whatsapp:+E164` of the recipient.
    pub(crate) to: String,
    /// `whatsapp:+E164` of the line.
    pub(crate) from: String,
    /// Where Twilio posts status callbacks for this message.
    pub(crate) status_callback: String,
    /// Text, or the caption of a media message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body: Option<String>,
    /// A public media URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) media_url: Option<String>,
    /// A Content API template (`HX...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content_sid: Option<String>,
    /// Template variables: a JSON object serialised as a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content_variables: Option<String>,
}

/// The Message resource (the `201` answer to a create). Only the fields EZW reads; Twilio
/// also sends `to`, `from`, `body`, `num_media`, `date_*`, `price`, `uri` and more.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct MessageResource {
    /// `SM...` or `MM...`: the provider message id.
    #[serde(default)]
    pub(crate) sid: Option<String>,
    /// `queued`, `accepted`, `sending`, `sent`, `failed`, ...
    #[serde(default)]
    pub(crate) status: Option<String>,
    /// Set when `status` is `failed` or `undelivered`.
    #[serde(default)]
    pub(crate) error_code: Option<i64>,
    /// The description of `error_code`.
    #[serde(default)]
    pub(crate) error_message: Option<String>,
}

/// A REST error body: `{"code": 21211, "message": "...", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ApiError {
    /// Twilio's error code.
    #[serde(default)]
    pub(crate) code: Option<i64>,
    /// What went wrong.
    #[serde(default)]
    pub(crate) message: Option<String>,
    /// A link to the code's documentation.
    #[serde(default)]
    pub(crate) more_info: Option<String>,
}

/// The Account resource (`GET /2010-04-01/Accounts/{Sid}.json`). It also carries the account's
/// `auth_token`, which is deliberately not modelled so it is never held or logged.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Account {
    /// `active`, `suspended` or `closed`.
    pub(crate) status: String,
}

/// The incoming-message webhook (`route == ""`): the form fields EZW reads. Numbered media
/// fields (`MediaUrl{N}`, `MediaContentType{N}`) are read separately.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InboundMessage {
    /// `SM...`/`MM...`.
    pub(crate) message_sid: Option<String>,
    /// The account the message belongs to.
    pub(crate) account_sid: Option<String>,
    /// `whatsapp:+E164` of the customer.
    pub(crate) from: Option<String>,
    /// `whatsapp:+E164` of the line.
    pub(crate) to: Option<String>,
    /// Text (or the caption of the first media).
    pub(crate) body: Option<String>,
    /// How many media items are attached.
    pub(crate) num_media: Option<String>,
    /// The customer's WhatsApp profile name.
    pub(crate) profile_name: Option<String>,
    /// The customer's WhatsApp id (digits).
    pub(crate) wa_id: Option<String>,
    /// A shared location's latitude.
    pub(crate) latitude: Option<String>,
    /// A shared location's longitude.
    pub(crate) longitude: Option<String>,
    /// A shared location's address.
    pub(crate) address: Option<String>,
    /// A shared location's name.
    pub(crate) label: Option<String>,
    /// A quick-reply button's text.
    pub(crate) button_text: Option<String>,
    /// A quick-reply button's payload.
    pub(crate) button_payload: Option<String>,
    /// The message this one replies to.
    pub(crate) original_replied_message_sid: Option<String>,
}

/// The status-callback webhook (`route == "status"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct StatusCallback {
    /// The outbound message.
    pub(crate) message_sid: Option<String>,
    /// The account the message belongs to.
    pub(crate) account_sid: Option<String>,
    /// `queued`, `accepted`, `scheduled`, `sending`, `sent`, `delivered`, `read`, `failed`,
    /// `undelivered`, `canceled` (Twilio may add more).
    pub(crate) message_status: Option<String>,
    /// Set for `failed` and `undelivered`.
    pub(crate) error_code: Option<String>,
    /// Sometimes given with `ErrorCode`.
    pub(crate) error_message: Option<String>,
}

/// Decodes an `application/x-www-form-urlencoded` body into name/value pairs, in order.
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Reads a webhook struct from form pairs (the first value of each name wins).
pub(crate) fn from_form<T: for<'de> Deserialize<'de>>(pairs: &[(String, String)]) -> serde_json::Result<T> {
    let mut map = serde_json::Map::new();
    for (k, v) in pairs {
        map.entry(k.clone()).or_insert_with(|| serde_json::Value::String(v.clone()));
    }
    serde_json::from_value(serde_json::Value::Object(map))
}

/// The first value of a form field.
pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
