//! Graph API request, response and webhook types, spelled exactly as Meta spells them.
//! Response and webhook types tolerate unknown fields and default every optional one.

use serde::{Deserialize, Deserializer, Serialize};

// ---------------------------------------------------------------------------------------------
// Send: POST /{version}/{phone-number-id}/messages

/// The body of a send request.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SendRequest {
    /// Always `whatsapp`.
    pub(crate) messaging_product: &'static str,
    /// Always `individual`.
    pub(crate) recipient_type: &'static str,
    /// Recipient's number, digits only.
    pub(crate) to: String,
    /// The message replied to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) context: Option<SendContext>,
    /// `type` and the matching object.
    #[serde(flatten)]
    pub(crate) payload: SendPayload,
}

/// `context` of a reply.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SendContext {
    pub(crate) message_id: String,
}

/// The typed part of a send request: `"type": ...` and the object of that name.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum SendPayload {
    Text { text: TextObject },
    Interactive { interactive: InteractiveObject },
    Image { image: MediaObject },
    Video { video: MediaObject },
    Audio { audio: MediaObject },
    Document { document: MediaObject },
    Template { template: TemplateObject },
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TextObject {
    pub(crate) body: String,
    pub(crate) preview_url: bool,
}

/// An interactive `cta_url` message.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct InteractiveObject {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) body: InteractiveBody,
    pub(crate) action: CtaUrlAction,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct InteractiveBody {
    pub(crate) text: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CtaUrlAction {
    pub(crate) name: &'static str,
    pub(crate) parameters: CtaUrlParameters,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CtaUrlParameters {
    pub(crate) display_text: String,
    pub(crate) url: String,
}

/// Media by link.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MediaObject {
    pub(crate) link: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) caption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) filename: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TemplateObject {
    pub(crate) name: String,
    pub(crate) language: TemplateLanguage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) components: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TemplateLanguage {
    /// Always `deterministic` (the only policy; Meta's spec requires it).
    pub(crate) policy: &'static str,
    /// Language and locale code, e.g. `en_US`.
    pub(crate) code: String,
}

/// `{"messaging_product","contacts":[{"input","wa_id"}],"messages":[{"id","message_status"?}]}`
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct SendResponse {
    #[serde(default)]
    pub(crate) messages: Vec<SentMessage>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct SentMessage {
    #[serde(default)]
    pub(crate) id: String,
    /// `accepted`, `held_for_quality_assessment` or `paused`.
    #[serde(default)]
    pub(crate) message_status: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Errors

/// `{"error":{...}}`
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorResponse {
    pub(crate) error: GraphError,
}

/// A Graph API error.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct GraphError {
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) code: Option<i64>,
    #[serde(default)]
    pub(crate) error_subcode: Option<i64>,
    #[serde(default)]
    pub(crate) error_data: Option<ErrorData>,
    #[serde(default)]
    pub(crate) fbtrace_id: Option<String>,
}

/// `error_data` of an API error or a webhook error.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorData {
    #[serde(default)]
    pub(crate) details: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Media: GET /{version}/{media-id}

/// `{"url","mime_type","sha256","file_size","id","messaging_product"}`
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct MediaMetadata {
    #[serde(default)]
    pub(crate) url: Option<String>,
    #[serde(default)]
    pub(crate) mime_type: Option<String>,
    /// Meta documents a string; the API has also returned a number.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub(crate) file_size: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Health: GET /{version}/{phone-number-id}?fields=status,quality_rating,name_status

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct PhoneNumberStatus {
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) quality_rating: Option<String>,
    #[serde(default)]
    pub(crate) name_status: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// `{"object":"whatsapp_business_account","entry":[...]}`
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WebhookPayload {
    pub(crate) object: String,
    #[serde(default)]
    pub(crate) entry: Vec<Entry>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Entry {
    /// The WhatsApp Business Account id.
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) changes: Vec<Change>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Change {
    #[serde(default)]
    pub(crate) field: String,
    #[serde(default)]
    pub(crate) value: ChangeValue,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ChangeValue {
    #[serde(default)]
    pub(crate) metadata: Option<Metadata>,
    #[serde(default)]
    pub(crate) contacts: Vec<ContactProfile>,
    #[serde(default)]
    pub(crate) messages: Vec<InboundMessage>,
    #[serde(default)]
    pub(crate) statuses: Vec<Status>,
    #[serde(default)]
    pub(crate) errors: Vec<WebhookError>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Metadata {
    #[serde(default)]
    pub(crate) phone_number_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ContactProfile {
    #[serde(default)]
    pub(crate) profile: Option<Profile>,
    #[serde(default)]
    pub(crate) wa_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Profile {
    #[serde(default)]
    pub(crate) name: Option<String>,
}

/// A customer message; the object named by `type` carries its content.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct InboundMessage {
    #[serde(default)]
    pub(crate) from: String,
    #[serde(default)]
    pub(crate) id: String,
    /// Unix seconds (a string in Meta's payloads).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub(crate) timestamp: Option<i64>,
    #[serde(default, rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) context: Option<MessageContext>,
    #[serde(default)]
    pub(crate) text: Option<TextContent>,
    #[serde(default)]
    pub(crate) image: Option<MediaContent>,
    #[serde(default)]
    pub(crate) video: Option<MediaContent>,
    #[serde(default)]
    pub(crate) audio: Option<MediaContent>,
    #[serde(default)]
    pub(crate) document: Option<MediaContent>,
    #[serde(default)]
    pub(crate) sticker: Option<MediaContent>,
    #[serde(default)]
    pub(crate) location: Option<LocationContent>,
    #[serde(default)]
    pub(crate) contacts: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) interactive: Option<InteractiveContent>,
    #[serde(default)]
    pub(crate) button: Option<ButtonContent>,
    #[serde(default)]
    pub(crate) reaction: Option<ReactionContent>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct MessageContext {
    #[serde(default)]
    pub(crate) id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct TextContent {
    #[serde(default)]
    pub(crate) body: String,
}

/// `image`, `video`, `audio`, `document` and `sticker` objects.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct MediaContent {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) mime_type: Option<String>,
    #[serde(default)]
    pub(crate) sha256: Option<String>,
    #[serde(default)]
    pub(crate) caption: Option<String>,
    #[serde(default)]
    pub(crate) filename: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct LocationContent {
    #[serde(default)]
    pub(crate) latitude: Option<f64>,
    #[serde(default)]
    pub(crate) longitude: Option<f64>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) address: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct InteractiveContent {
    #[serde(default, rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) button_reply: Option<ReplyOption>,
    #[serde(default)]
    pub(crate) list_reply: Option<ReplyOption>,
}

/// A `button_reply` or `list_reply`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ReplyOption {
    #[serde(default)]
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) title: String,
    #[serde(default)]
    pub(crate) description: Option<String>,
}

/// A template quick-reply button tap.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ButtonContent {
    #[serde(default)]
    pub(crate) payload: String,
    #[serde(default)]
    pub(crate) text: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ReactionContent {
    #[serde(default)]
    pub(crate) message_id: String,
    /// Absent or empty when the reaction was removed.
    #[serde(default)]
    pub(crate) emoji: Option<String>,
}

/// A delivery status for a message the business sent.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Status {
    #[serde(default)]
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) status: String,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub(crate) timestamp: Option<i64>,
    #[serde(default)]
    pub(crate) errors: Vec<WebhookError>,
}

/// An error in a webhook (`statuses[].errors[]`, `value.errors[]`, `messages[].errors[]`).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct WebhookError {
    #[serde(default)]
    pub(crate) code: Option<i64>,
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) error_data: Option<ErrorData>,
}

// ---------------------------------------------------------------------------------------------
// Lenient numbers: Meta sends numbers as strings in some places and as numbers in others.

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(serde_json::Number),
    String(String),
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<NumberOrString>::deserialize(d)? {
        Some(NumberOrString::Number(n)) => n.as_i64(),
        Some(NumberOrString::String(s)) => s.trim().parse().ok(),
        None => None,
    })
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<NumberOrString>::deserialize(d)? {
        Some(NumberOrString::Number(n)) => n.as_u64(),
        Some(NumberOrString::String(s)) => s.trim().parse().ok(),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_numbers_may_be_strings_or_numbers() {
        let m: MediaMetadata = serde_json::from_str(r#"{"url":"u","file_size":"303833","id":"1"}"#).unwrap();
        assert_eq!(m.file_size, Some(303_833));
        let m: MediaMetadata = serde_json::from_str(r#"{"file_size":303833}"#).unwrap();
        assert_eq!(m.file_size, Some(303_833));
        let s: Status = serde_json::from_str(r#"{"id":"x","status":"read","timestamp":1750263773}"#).unwrap();
        assert_eq!(s.timestamp, Some(1_750_263_773));
        let s: Status = serde_json::from_str(r#"{"id":"x","status":"read","timestamp":null}"#).unwrap();
        assert_eq!(s.timestamp, None);
    }

    #[test]
    fn error_body_parses_with_and_without_optional_fields() {
        let e: ErrorResponse = serde_json::from_str(
            r#"{"error":{"message":"(#131047) Re-engagement message","type":"OAuthException","code":131047,
            "error_data":{"messaging_product":"whatsapp","details":"Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
            "fbtrace_id":"Az8or2yhqkZfEZ-_4Qn_Bam"}}"#,
        )
        .unwrap();
        assert_eq!(e.error.code, Some(131_047));
        assert_eq!(e.error.kind.as_deref(), Some("OAuthException"));
        assert!(e.error.error_data.unwrap().details.unwrap().contains("24 hours"));
        let e: ErrorResponse =
            serde_json::from_str(r#"{"error":{"message":"x","code":190,"error_subcode":463}}"#).unwrap();
        assert_eq!((e.error.code, e.error.error_subcode), (Some(190), Some(463)));
    }
}
