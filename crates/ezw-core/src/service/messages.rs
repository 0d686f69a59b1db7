//! Sends (text, URL media, workspace image uploads, forwards) and message reads.

use serde::Serialize;

use crate::crypto::sha256_hex;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{AttachmentId, ConversationId, MessageId};
use crate::model::{
    BillingState, CtaUrlButton, Direction, EffectiveSendState, Line, MediaKind, MediaRef, Message, MessageContent,
    MessageKind,
};
use crate::phone::PhoneNumber;
use crate::ports::{EnqueueOutcome, IdempotencyClaim, LineContext, NewOutbound, Page, SendTarget};
use crate::principal::{LineAccess, Principal};

use super::events::message_hint;
use super::inbox::InboxService;
use super::lines::{authorize_line, authorize_line_context};
use super::media::{self, MAX_IMAGE_BYTES};
use super::runtime::Inner;

/// The longest text body WhatsApp accepts.
pub const MAX_BODY_CHARS: usize = 4096;
/// The longest media caption WhatsApp accepts.
pub const MAX_CAPTION_CHARS: usize = 1024;
/// The longest CTA button label WhatsApp accepts.
pub const MAX_CTA_TEXT_CHARS: usize = 20;
/// The longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The target of a send as a caller gives it: exactly one of the two.
#[derive(Debug, Clone, Default)]
pub struct SendTargetInput {
    /// A phone number.
    pub to: Option<String>,
    /// A conversation id.
    pub conversation_id: Option<String>,
}

/// A CTA URL button as a caller gives it (`displayText` or `text`).
#[derive(Debug, Clone, Default)]
pub struct CtaInput {
    /// The label.
    pub display_text: Option<String>,
    /// Alternative name for the label.
    pub text: Option<String>,
    /// The URL.
    pub url: Option<String>,
}

/// Media by URL as a caller gives it.
#[derive(Debug, Clone, Default)]
pub struct MediaInput {
    /// `image`, `video`, `audio` or `document`.
    pub kind: String,
    /// The http(s) URL.
    pub url: Option<String>,
    /// Caption.
    pub caption: Option<String>,
    /// File name (documents).
    pub filename: Option<String>,
    /// MIME type, when the caller states it.
    pub mime_type: Option<String>,
}

/// A send as a caller gives it; validated by [`MessagesService::send`].
#[derive(Debug, Clone, Default)]
pub struct SendRequest {
    /// Target.
    pub target: SendTargetInput,
    /// Text body (required for text; ignored for media).
    pub body: Option<String>,
    /// Optional CTA URL button (text only).
    pub cta_url_button: Option<CtaInput>,
    /// Media (makes this a media send).
    pub media: Option<MediaInput>,
    /// Idempotency key (the header, or the body field when there is no header).
    pub idempotency_key: Option<String>,
}

/// An image uploaded with a workspace send. Its type is told from the bytes (JPEG or PNG).
#[derive(Clone, Default)]
pub struct ImageUpload {
    /// The file's bytes (at most [`MAX_IMAGE_BYTES`]).
    pub bytes: Vec<u8>,
    /// The file name the client gave, kept on the attachment (path parts are dropped).
    pub filename: Option<String>,
}

impl std::fmt::Debug for ImageUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageUpload").field("len", &self.bytes.len()).field("filename", &self.filename).finish()
    }
}

/// A send from the workspace (`POST /api/lines/{lineId}/send`): a text, one uploaded image with
/// an optional caption, or a forward of a message the caller may view. Validated by
/// [`MessagesService::send_from_workspace`].
#[derive(Debug, Clone, Default)]
pub struct WorkspaceSendRequest {
    /// Target.
    pub target: SendTargetInput,
    /// The text, or the image's caption. Not allowed with `forward_message_id`.
    pub body_text: Option<String>,
    /// Copy the content of this message (text, or media with its caption).
    pub forward_message_id: Option<String>,
    /// The uploaded image.
    pub image: Option<ImageUpload>,
    /// Idempotency key (required).
    pub idempotency_key: Option<String>,
}

/// The result of a send.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendOutcome {
    /// The message.
    #[serde(flatten)]
    pub message: Message,
    /// Whether this is the earlier result of the same idempotency key.
    #[serde(skip)]
    pub replayed: bool,
}

/// Message service.
#[derive(Clone, Copy)]
pub struct MessagesService<'a> {
    pub(crate) inner: &'a Inner,
}

fn non_empty(s: Option<&String>) -> Option<&str> {
    s.map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn validate_http_url(raw: &str, code: &'static str, field: &str) -> Result<String> {
    let bad = || Error::invalid(code, format!("{field} must be an absolute http or https URL"));
    if raw.len() > 2048 {
        return Err(Error::invalid(code, format!("{field} is longer than 2048 characters")));
    }
    let url = url::Url::parse(raw.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(url.to_string())
}

fn validate_target(input: &SendTargetInput) -> Result<SendTarget> {
    match (non_empty(input.to.as_ref()), non_empty(input.conversation_id.as_ref())) {
        (Some(_), Some(_)) => {
            Err(Error::invalid("ambiguous_target", "give exactly one of to or conversationId, not both"))
        }
        (None, None) => Err(Error::invalid("missing_target", "give exactly one of to or conversationId")),
        (Some(to), None) => Ok(SendTarget::Phone(PhoneNumber::parse(to)?)),
        (None, Some(c)) => ConversationId::parse(c)
            .map(SendTarget::Conversation)
            .ok_or_else(|| Error::invalid("invalid_conversation_id", "conversationId is not a conversation id")),
    }
}

fn validate_key(key: Option<&String>) -> Result<Option<String>> {
    let Some(key) = key else { return Ok(None) };
    let valid =
        !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN && key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if valid {
        Ok(Some(key.clone()))
    } else {
        Err(Error::invalid("invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters"))
    }
}

fn validate_content(req: &SendRequest) -> Result<(MessageKind, MessageContent)> {
    if let Some(media) = &req.media {
        if req.cta_url_button.is_some() {
            return Err(Error::invalid("invalid_request", "ctaUrlButton is only allowed on text messages"));
        }
        let kind = MediaKind::parse(media.kind.trim()).ok_or_else(|| {
            Error::invalid("unsupported_media_type", "media type must be one of image, video, audio, document")
        })?;
        let url =
            non_empty(media.url.as_ref()).ok_or_else(|| Error::invalid("missing_media_url", "media needs a url"))?;
        let url = validate_http_url(url, "invalid_media_url", "media url")?;
        let caption = non_empty(media.caption.as_ref()).map(str::to_owned);
        if let Some(c) = &caption {
            if !kind.allows_caption() {
                return Err(Error::invalid("caption_not_allowed", "audio messages cannot have a caption"));
            }
            if c.chars().count() > MAX_CAPTION_CHARS {
                return Err(Error::invalid(
                    "caption_too_long",
                    format!("caption is longer than {MAX_CAPTION_CHARS} characters"),
                ));
            }
        }
        let filename = non_empty(media.filename.as_ref()).map(str::to_owned);
        if filename.is_some() && kind != MediaKind::Document {
            return Err(Error::invalid("filename_not_allowed", "filename is only allowed for documents"));
        }
        if filename.as_ref().is_some_and(|f| f.chars().count() > 240 || f.contains(['/', '\\'])) {
            return Err(Error::invalid(
                "invalid_filename",
                "filename must be a plain file name of at most 240 characters",
            ));
        }
        let mime_type = non_empty(media.mime_type.as_ref()).map(str::to_ascii_lowercase);
        if let Some(m) = &mime_type {
            let family = match kind {
                MediaKind::Image => "image/",
                MediaKind::Video => "video/",
                MediaKind::Audio => "audio/",
                MediaKind::Document => "",
            };
            if !m.contains('/') || !m.starts_with(family) {
                return Err(Error::invalid(
                    "unsupported_media_type",
                    format!("mimeType {m} does not match media type {}", media.kind),
                ));
            }
        }
        let content = MessageContent {
            body: caption.clone(),
            media: Some(MediaRef {
                kind,
                url: Some(url),
                attachment_id: None,
                provider_media_id: None,
                sha256: None,
                caption,
                filename,
                mime_type,
            }),
            ..MessageContent::default()
        };
        return Ok((kind.message_kind(), content));
    }
    let body = req.body.as_deref().unwrap_or_default();
    if body.trim().is_empty() {
        return Err(Error::invalid("empty_body", "body must be a non-empty string"));
    }
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(Error::invalid("body_too_long", format!("body is longer than {MAX_BODY_CHARS} characters")));
    }
    let cta = match &req.cta_url_button {
        None => None,
        Some(cta) => {
            let text = non_empty(cta.display_text.as_ref())
                .or(non_empty(cta.text.as_ref()))
                .ok_or_else(|| Error::invalid("invalid_cta_button", "ctaUrlButton needs displayText (or text)"))?;
            if text.chars().count() > MAX_CTA_TEXT_CHARS {
                return Err(Error::invalid(
                    "invalid_cta_button",
                    format!("ctaUrlButton text is longer than {MAX_CTA_TEXT_CHARS} characters"),
                ));
            }
            let url = non_empty(cta.url.as_ref())
                .ok_or_else(|| Error::invalid("invalid_cta_url", "ctaUrlButton needs a url"))?;
            let url = validate_http_url(url, "invalid_cta_url", "ctaUrlButton.url")?;
            Some(CtaUrlButton { display_text: text.to_owned(), url })
        }
    };
    Ok((
        MessageKind::Text,
        MessageContent { body: Some(body.to_owned()), cta_url_button: cta, ..MessageContent::default() },
    ))
}

/// SHA-256 over the fields that define a send: type, target and content.
fn fingerprint(kind: MessageKind, target: &SendTarget, content: &MessageContent) -> String {
    let target = match target {
        SendTarget::Phone(p) => format!("phone:{p}"),
        SendTarget::Conversation(c) => format!("conversation:{c}"),
    };
    let canonical = serde_json::json!({ "v": 1, "type": kind.as_str(), "target": target, "content": content });
    sha256_hex(canonical.to_string().as_bytes())
}

/// The caption of an uploaded image: trimmed, at most [`MAX_CAPTION_CHARS`].
fn validate_caption(raw: Option<&String>) -> Result<Option<String>> {
    let caption = non_empty(raw).map(str::to_owned);
    if caption.as_ref().is_some_and(|c| c.chars().count() > MAX_CAPTION_CHARS) {
        return Err(Error::invalid(
            "caption_too_long",
            format!("caption is longer than {MAX_CAPTION_CHARS} characters"),
        ));
    }
    Ok(caption)
}

/// The last path part of a client's file name, without control characters; `None` when that
/// leaves nothing or more than 240 characters.
fn clean_filename(raw: Option<&str>) -> Option<String> {
    let name = raw?.rsplit(['/', '\\']).next()?;
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let name = name.trim();
    (!name.is_empty() && name.chars().count() <= 240).then(|| name.to_owned())
}

/// The content a forward of `original` sends: its text (with its CTA button), or its media by
/// the stored attachment (or, for outbound media, the URL it was sent with) and its caption.
fn forward_content(original: &Message) -> Result<(MessageKind, MessageContent)> {
    let not_forwardable = || {
        Error::invalid(
            "message_not_forwardable",
            format!(
                "{} messages cannot be forwarded; text, image, video, audio and document can",
                original.kind.as_str()
            ),
        )
    };
    match original.kind {
        MessageKind::Text => {
            let body = original.content.body.clone().filter(|b| !b.trim().is_empty()).ok_or_else(not_forwardable)?;
            let cta_url_button = original.content.cta_url_button.clone();
            Ok((MessageKind::Text, MessageContent { body: Some(body), cta_url_button, ..MessageContent::default() }))
        }
        MessageKind::Image | MessageKind::Video | MessageKind::Audio | MessageKind::Document => {
            let media = original.content.media.as_ref().ok_or_else(not_forwardable)?;
            let (url, attachment_id) = if media.attachment_id.is_some() {
                (None, media.attachment_id.clone())
            } else if original.direction == Direction::Outbound && media.url.is_some() {
                (media.url.clone(), None)
            } else {
                // Inbound media is sent on only from our stored copy (provider URLs need the
                // provider's credentials); it is fetched in the background after it arrives.
                return Err(Error::conflict(
                    "media_not_available",
                    "the message's media has not been stored yet; try again shortly",
                ));
            };
            let caption = media.caption.clone().filter(|c| !c.trim().is_empty() && media.kind.allows_caption());
            let forwarded = MediaRef {
                kind: media.kind,
                url,
                attachment_id,
                provider_media_id: None,
                sha256: media.sha256.clone(),
                caption: caption.clone(),
                filename: media.filename.clone().filter(|_| media.kind == MediaKind::Document),
                mime_type: media.mime_type.clone(),
            };
            Ok((
                media.kind.message_kind(),
                MessageContent { body: caption, media: Some(forwarded), ..MessageContent::default() },
            ))
        }
        _ => Err(not_forwardable()),
    }
}

impl MessagesService<'_> {
    /// Validates and durably queues a send from `line`. The returned message is `queued` (or,
    /// for a replayed idempotency key, whatever the earlier message is now).
    ///
    /// # Errors
    /// 400 codes: `missing_target`, `ambiguous_target`, `invalid_phone_number`,
    /// `invalid_conversation_id`, `empty_body`, `body_too_long`, `invalid_cta_button`,
    /// `invalid_cta_url`, `unsupported_media_type`, `invalid_media_url`,
    /// `invalid_idempotency_key`, `unsupported_by_provider`; 404 `not_found` (line or
    /// conversation); 409 `billing_restricted`, `line_not_sendable`, `idempotency_key_reused`.
    pub async fn send(&self, principal: &Principal, line_id: &crate::LineId, req: SendRequest) -> Result<SendOutcome> {
        let target = validate_target(&req.target)?;
        let (kind, content) = validate_content(&req)?;
        let key = validate_key(req.idempotency_key.as_ref())?;
        let line = self.admit(principal, line_id, &content).await?;
        let idempotency = key.map(|key| (key, fingerprint(kind, &target, &content)));
        let outcome = self.enqueue(principal, &line, target, kind, content, idempotency).await?;
        self.finish(outcome)
    }

    /// Validates and durably queues a send from the workspace: a text (`body_text`), one
    /// uploaded JPEG or PNG image with an optional caption (stored in the blob store as an
    /// attachment linked to the message; the provider fetches it through a signed URL), or a
    /// forward of a message the caller may view (any line of the organization). The
    /// idempotency key is required; its fingerprint covers an image's SHA-256, and a replay
    /// stores nothing again.
    ///
    /// # Errors
    /// 400 `missing_idempotency_key`, `invalid_request` (`body_text` with a forward, an image
    /// with a forward), `missing_image` (an empty file), `caption_too_long`,
    /// `message_not_forwardable` and the codes of [`MessagesService::send`]; 403 `forbidden`
    /// for line tokens; 404 `not_found` (line, conversation, forwarded message); 409
    /// `media_not_available` (a forwarded message's media is not stored yet),
    /// `billing_restricted`, `line_not_sendable`, `idempotency_key_reused`; 413
    /// `payload_too_large` (image over [`MAX_IMAGE_BYTES`]); `unsupported_media_type` (not
    /// JPEG or PNG; kind `InvalidInput`, answered 415 over HTTP); 501
    /// `media_storage_not_configured`.
    pub async fn send_from_workspace(
        &self,
        principal: &Principal,
        line_id: &crate::LineId,
        req: WorkspaceSendRequest,
    ) -> Result<SendOutcome> {
        if matches!(principal, Principal::Line(_)) {
            return Err(Error::forbidden("workspace sends need a workspace user; line tokens use the Channel API"));
        }
        let key = validate_key(req.idempotency_key.as_ref())?.ok_or_else(|| {
            Error::invalid("missing_idempotency_key", "the Idempotency-Key header is required for workspace sends")
        })?;
        let target = validate_target(&req.target)?;
        if req.forward_message_id.is_some() && (req.body_text.is_some() || req.image.is_some()) {
            return Err(Error::invalid(
                "invalid_request",
                "forwardMessageId copies a message's content: give no bodyText or image with it",
            ));
        }
        if let Some(image) = req.image {
            return self.send_image(principal, line_id, target, key, image, req.body_text.as_ref()).await;
        }
        let (kind, content) = match req.forward_message_id {
            Some(raw) => {
                let id = MessageId::parse(raw.trim()).ok_or_else(|| Error::not_found("message"))?;
                forward_content(&self.get(principal, &id).await?)?
            }
            None => validate_content(&SendRequest { body: req.body_text, ..SendRequest::default() })?,
        };
        let line = self.admit(principal, line_id, &content).await?;
        let fingerprint = fingerprint(kind, &target, &content);
        let outcome = self.enqueue(principal, &line, target, kind, content, Some((key, fingerprint))).await?;
        self.finish(outcome)
    }

    async fn send_image(
        &self,
        principal: &Principal,
        line_id: &crate::LineId,
        target: SendTarget,
        key: String,
        image: ImageUpload,
        caption: Option<&String>,
    ) -> Result<SendOutcome> {
        if image.bytes.is_empty() {
            return Err(Error::invalid("missing_image", "the image file is empty"));
        }
        if image.bytes.len() > MAX_IMAGE_BYTES {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                "payload_too_large",
                format!("images may be at most {MAX_IMAGE_BYTES} bytes"),
            ));
        }
        let content_type = media::sniff_sendable_image(&image.bytes).ok_or_else(|| {
            Error::new(
                crate::ErrorKind::UnsupportedMediaType,
                "unsupported_media_type",
                "the image must be a JPEG or PNG file (told from its bytes)",
            )
        })?;
        let caption = validate_caption(caption)?;
        media::blob_store(self.inner)?;
        let image = ImageUpload { filename: clean_filename(image.filename.as_deref()), ..image };
        let sha256 = sha256_hex(&image.bytes);
        let mut content = MessageContent {
            body: caption.clone(),
            media: Some(MediaRef {
                kind: MediaKind::Image,
                url: None,
                attachment_id: None,
                provider_media_id: None,
                sha256: Some(sha256.clone()),
                caption,
                filename: None,
                mime_type: Some(content_type.to_owned()),
            }),
            ..MessageContent::default()
        };
        let line = self.admit(principal, line_id, &content).await?;
        // The fingerprint covers the bytes (their SHA-256), not the attachment id a replay would
        // otherwise change.
        let fingerprint = fingerprint(MessageKind::Image, &target, &content);
        let attachment_id = AttachmentId::generate(self.inner.clock.now().unix_ms());
        if let Some(m) = content.media.as_mut() {
            m.attachment_id = Some(attachment_id.to_string());
        }
        let outcome =
            self.enqueue(principal, &line, target, MessageKind::Image, content, Some((key, fingerprint))).await?;
        // The bytes are stored only for a new message, before the worker is woken; a replay
        // stores them only if the first request could not (the same bytes, by the fingerprint).
        let stored = match &outcome {
            EnqueueOutcome::Created(m) => {
                media::store_upload(self.inner, m, &attachment_id, image, content_type, &sha256).await
            }
            EnqueueOutcome::Replayed(m) => {
                self.restore_upload(m, image, content_type, &sha256).await;
                Ok(())
            }
            EnqueueOutcome::KeyReused { .. } => Ok(()),
        };
        let outcome = self.finish(outcome)?;
        stored?;
        Ok(outcome)
    }

    /// For a replayed upload whose first request stopped between accepting the message and
    /// storing its bytes: stores them now (best effort; the worker waits for them).
    async fn restore_upload(&self, message: &Message, image: ImageUpload, content_type: &str, sha256: &str) {
        let id = message.content.media.as_ref().and_then(|m| m.attachment_id.as_deref()).and_then(AttachmentId::parse);
        let Some(id) = id else { return };
        match self.inner.store.get_attachment(&message.organization_id, &id).await {
            Ok(Some(_)) => {}
            Ok(None) => match media::store_upload(self.inner, message, &id, image, content_type, sha256).await {
                Ok(()) => self.inner.outbox_wake.notify_one(),
                Err(e) => tracing::warn!(message = %message.id, error = %e, "storing a replayed upload failed"),
            },
            Err(e) => {
                tracing::warn!(message = %message.id, error = %e, "reading a replayed upload's attachment failed");
            }
        }
    }

    /// Line access (send), provider capabilities, billing, then the line's send state.
    async fn admit(&self, principal: &Principal, line_id: &crate::LineId, content: &MessageContent) -> Result<Line> {
        let LineContext { line, billing_state } =
            authorize_line_context(self.inner, principal, line_id, LineAccess::Send).await?;
        let caps = self.inner.provider(line.provider_kind)?.capabilities();
        let unsupported = if content.cta_url_button.is_some() && !caps.cta_url_button {
            Some("CTA URL buttons")
        } else if content.media.is_some() && !caps.media_url {
            Some("media by URL")
        } else if content.template.is_some() && !caps.templates {
            Some("templates")
        } else {
            None
        };
        if let Some(what) = unsupported {
            return Err(Error::invalid(
                "unsupported_by_provider",
                format!("{what} cannot be sent on a {} line", line.provider_kind.as_str()),
            ));
        }
        if billing_state == BillingState::Restricted {
            return Err(Error::conflict(
                "billing_restricted",
                "the organization's billing is restricted: sends are refused until billing is recovered",
            )
            .with_detail("billingState", billing_state.as_str()));
        }
        let effective = line.effective_send_state(billing_state.allows_sending());
        if effective != EffectiveSendState::Sendable {
            return Err(Error::conflict(
                "line_not_sendable",
                format!("the line cannot send now ({})", effective.as_str()),
            )
            .with_detail("effectiveSendState", effective.as_str())
            .with_detail("lifecycleState", line.lifecycle_state.as_str()));
        }
        Ok(line)
    }

    /// Accepts the message durably (one store write with its idempotency record).
    async fn enqueue(
        &self,
        principal: &Principal,
        line: &Line,
        target: SendTarget,
        kind: MessageKind,
        content: MessageContent,
        idempotency: Option<(String, String)>,
    ) -> Result<EnqueueOutcome> {
        let now = self.inner.clock.now();
        let idempotency = idempotency.map(|(key, fingerprint)| IdempotencyClaim {
            fingerprint,
            key,
            expires_at: now.plus(self.inner.config.idempotency_ttl),
        });
        self.inner
            .store
            .enqueue_outbound(NewOutbound {
                organization_id: line.organization_id.clone(),
                line_id: line.id.clone(),
                target,
                message_id: MessageId::generate(now.unix_ms()),
                kind,
                content,
                sent_by_user_id: principal.user_id().cloned(),
                idempotency,
                created_at: now,
            })
            .await
    }

    /// Wakes the worker and publishes the hint for a new message; maps a reused key to 409.
    fn finish(&self, outcome: EnqueueOutcome) -> Result<SendOutcome> {
        match outcome {
            EnqueueOutcome::Created(message) => {
                self.inner.outbox_wake.notify_one();
                self.inner.wake_webhooks();
                self.inner.live.publish(message_hint("message.created", &message));
                Ok(SendOutcome { message, replayed: false })
            }
            EnqueueOutcome::Replayed(message) => Ok(SendOutcome { message, replayed: true }),
            EnqueueOutcome::KeyReused { message_id } => {
                Err(Error::conflict("idempotency_key_reused", "this Idempotency-Key was used with a different request")
                    .with_detail("messageId", message_id.to_string()))
            }
        }
    }

    /// Resolves a message whose last send outcome is unknown: send it again, mark it sent, or
    /// mark it failed. Workspace users who may send from the line.
    ///
    /// # Errors
    /// `not_found` (404); `forbidden` (403) for line tokens; `not_unknown` (409) when the
    /// message is not in status `unknown`.
    pub async fn resolve_unknown(
        &self,
        principal: &Principal,
        id: &MessageId,
        resolution: crate::ports::UnknownResolution,
    ) -> Result<Message> {
        if matches!(principal, Principal::Line(_)) {
            return Err(Error::forbidden("resolving messages is a workspace action"));
        }
        let message = self.get(principal, id).await?;
        let line = authorize_line(self.inner, principal, &message.line_id, LineAccess::Send).await?;
        if resolution == crate::ports::UnknownResolution::Resend
            && line.lifecycle_state == crate::model::LifecycleState::Archived
        {
            return Err(Error::conflict("line_archived", "the line is archived: it sends nothing new"));
        }
        let now = self.inner.clock.now();
        let resolved = self
            .inner
            .store
            .resolve_unknown(principal.organization_id(), id, resolution, now)
            .await?
            .ok_or_else(|| Error::not_found("message"))?;
        self.inner.live.publish(message_hint("message.status", &resolved));
        self.inner.wake_webhooks();
        if resolution == crate::ports::UnknownResolution::Resend {
            self.inner.outbox_wake.notify_one();
        }
        Ok(resolved)
    }

    /// A message the caller may see.
    ///
    /// # Errors
    /// `not_found` (404).
    pub async fn get(&self, principal: &Principal, id: &MessageId) -> Result<Message> {
        let message = self
            .inner
            .store
            .get_message(principal.organization_id(), id)
            .await?
            .ok_or_else(|| Error::not_found("message"))?;
        authorize_line(self.inner, principal, &message.line_id, LineAccess::View)
            .await
            .map_err(|_| Error::not_found("message"))?;
        Ok(message)
    }

    /// A conversation's messages, newest first, `limit` 1 to 200.
    ///
    /// # Errors
    /// `not_found` (404); `invalid_limit`, `invalid_cursor` (400).
    pub async fn list(
        &self,
        principal: &Principal,
        conversation: &ConversationId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Message>> {
        if !(1..=200).contains(&limit) {
            return Err(Error::invalid("invalid_limit", "limit must be between 1 and 200"));
        }
        if cursor.is_some_and(|c| c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_digit())) {
            return Err(Error::invalid("invalid_cursor", "cursor is not one this API returned"));
        }
        let conv = InboxService { inner: self.inner }.get(principal, conversation).await?;
        self.inner.store.list_messages(principal.organization_id(), &conv.id, cursor, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(to: &str, body: &str) -> SendRequest {
        SendRequest {
            target: SendTargetInput { to: Some(to.into()), conversation_id: None },
            body: Some(body.into()),
            ..SendRequest::default()
        }
    }

    #[test]
    fn validates_targets_and_bodies() {
        assert_eq!(validate_target(&SendTargetInput::default()).unwrap_err().code(), "missing_target");
        let both = SendTargetInput { to: Some("+972501234567".into()), conversation_id: Some("conv_1".into()) };
        assert_eq!(validate_target(&both).unwrap_err().code(), "ambiguous_target");
        assert_eq!(validate_content(&text("+1", "  ")).unwrap_err().code(), "empty_body");
        let mut cta = text("+972501234567", "hi");
        cta.cta_url_button =
            Some(CtaInput { display_text: None, text: Some("Open".into()), url: Some("ftp://x.y".into()) });
        assert_eq!(validate_content(&cta).unwrap_err().code(), "invalid_cta_url");
        cta.cta_url_button =
            Some(CtaInput { display_text: None, text: Some("Open".into()), url: Some("https://x.y/a".into()) });
        let (_, content) = validate_content(&cta).unwrap();
        assert_eq!(content.cta_url_button.unwrap().display_text, "Open");
    }

    #[test]
    fn fingerprint_covers_target_and_content() {
        let t1 = SendTarget::Phone(PhoneNumber::parse("+972501234567").unwrap());
        let t2 = SendTarget::Phone(PhoneNumber::parse("+972501234568").unwrap());
        let (k, c) = validate_content(&text("+972501234567", "hello")).unwrap();
        let (_, c2) = validate_content(&text("+972501234567", "hello!")).unwrap();
        assert_eq!(fingerprint(k, &t1, &c), fingerprint(k, &t1, &c.clone()));
        assert_ne!(fingerprint(k, &t1, &c), fingerprint(k, &t2, &c));
        assert_ne!(fingerprint(k, &t1, &c), fingerprint(k, &t1, &c2));
    }
}
