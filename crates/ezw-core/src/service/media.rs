//! Media: inbound media fetched from the provider into the blob store in the background (then
//! linked to its message as an attachment), workspace image uploads, and short-lived signed URLs
//! (`/media/{attachmentId}?expires=&signature=`) through which callers and providers read
//! stored media without a bearer token.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::crypto::sha256_hex;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{AttachmentId, MessageId};
use crate::model::{Attachment, Message};
use crate::ports::{BlobStore, ProviderErrorKind};
use crate::principal::Principal;
use crate::time::Timestamp;

use super::events::message_hint;
use super::messages::MessagesService;
use super::runtime::Inner;

const ATTEMPTS: u32 = 4;

/// The largest image a workspace send accepts (25 MB).
pub const MAX_IMAGE_BYTES: usize = 25_000_000;
/// The default lifetime of a signed media URL, in seconds.
pub const DEFAULT_MEDIA_URL_TTL_SECS: i64 = 300;
/// The longest lifetime a caller may ask for a signed media URL, in seconds.
pub const MAX_MEDIA_URL_TTL_SECS: i64 = 3600;
/// How long the URL a provider gets for an attachment stays valid (made fresh per attempt).
const DELIVERY_URL_TTL_SECS: i64 = 3600;
/// How long the delivery worker waits for a send's attachment to be stored before failing it.
const ATTACHMENT_WAIT: Duration = Duration::from_secs(600);

/// Whether a stored message's media still has to be fetched.
pub(crate) fn needs_fetch(m: &Message) -> bool {
    m.content.media.as_ref().is_some_and(|media| {
        media.attachment_id.is_none() && (media.provider_media_id.is_some() || media.url.is_some())
    })
}

/// Fetches a message's media with retries (on the runtime's clock) and records the attachment.
pub(crate) async fn fetch_media(inner: Arc<Inner>, message: Message) {
    let Some(blobs) = inner.blobs.clone() else { return };
    let Some(media) = message.content.media.clone() else { return };
    let Ok(Some(line)) = inner.store.get_line(&message.organization_id, &message.line_id).await else { return };
    let Ok(provider) = inner.provider(line.provider_kind) else { return };
    for attempt in 1..=ATTEMPTS {
        let result = provider.fetch_media(&line, &media).await;
        let fetched = match result {
            Ok(f) => f,
            Err(e) if e.kind == ProviderErrorKind::Retryable || e.kind == ProviderErrorKind::Ambiguous => {
                tracing::warn!(message = %message.id, attempt, code = %e.code, "media fetch failed; retrying");
                inner.clock.sleep(e.retry_after.unwrap_or(Duration::from_secs(2u64.pow(attempt)))).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(message = %message.id, code = %e.code, error = %e.message, "media fetch failed");
                return;
            }
        };
        let now = inner.clock.now();
        let attachment = Attachment {
            id: AttachmentId::generate(now.unix_ms()),
            organization_id: message.organization_id.clone(),
            message_id: Some(message.id.clone()),
            content_type: if fetched.content_type.is_empty() {
                media.mime_type.clone().unwrap_or_else(|| "application/octet-stream".into())
            } else {
                fetched.content_type.clone()
            },
            size_bytes: fetched.bytes.len() as u64,
            sha256: sha256_hex(&fetched.bytes),
            filename: media.filename.clone(),
            created_at: now,
        };
        if let Err(e) = blobs.put(attachment.id.as_str(), fetched.bytes).await {
            tracing::warn!(message = %message.id, error = %e, "storing media failed");
            return;
        }
        match inner.store.insert_attachment(&attachment).await {
            Ok(()) => inner.live.publish(message_hint("message.updated", &message)),
            Err(e) => tracing::warn!(message = %message.id, error = %e, "recording the attachment failed"),
        }
        return;
    }
    tracing::warn!(message = %message.id, "media fetch gave up after {ATTEMPTS} attempts");
}

// ---- uploads ----

/// The image types WhatsApp accepts, told from the bytes (never from a declared type).
pub(crate) fn sniff_sendable_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else {
        None
    }
}

/// The media type of stored bytes, from their magic numbers; `application/octet-stream` when
/// unknown. What `/media` serves, so the type never depends on what a sender declared.
fn sniff_content_type(bytes: &[u8]) -> &'static str {
    if let Some(image) = sniff_sendable_image(bytes) {
        return image;
    }
    let at = |offset: usize, magic: &[u8]| bytes.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        "image/gif"
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        "image/webp"
    } else if at(0, b"%PDF-") {
        "application/pdf"
    } else if at(0, b"OggS") {
        "audio/ogg"
    } else if at(0, b"#!AMR") {
        "audio/amr"
    } else if at(0, b"ID3") || (bytes.first() == Some(&0xFF) && bytes.get(1).is_some_and(|b| b & 0xE0 == 0xE0)) {
        "audio/mpeg"
    } else if at(4, b"ftyp") {
        if at(8, b"3gp") {
            "video/3gpp"
        } else if at(8, b"M4A ") {
            "audio/mp4"
        } else {
            "video/mp4"
        }
    } else {
        "application/octet-stream"
    }
}

/// The blob store, or 501 `media_storage_not_configured`.
pub(crate) fn blob_store(inner: &Inner) -> Result<&Arc<dyn BlobStore>> {
    inner.blobs.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            "media_storage_not_configured",
            "this deployment has no media storage (blob store)",
        )
    })
}

/// Stores uploaded bytes under `attachment_id` and records the attachment, linked to `message`.
pub(crate) async fn store_upload(
    inner: &Inner,
    message: &Message,
    attachment_id: &AttachmentId,
    upload: super::messages::ImageUpload,
    content_type: &str,
    sha256: &str,
) -> Result<()> {
    let attachment = Attachment {
        id: attachment_id.clone(),
        organization_id: message.organization_id.clone(),
        message_id: Some(message.id.clone()),
        content_type: content_type.to_owned(),
        size_bytes: upload.bytes.len() as u64,
        sha256: sha256.to_owned(),
        filename: upload.filename,
        created_at: inner.clock.now(),
    };
    blob_store(inner)?.put(attachment_id.as_str(), upload.bytes).await?;
    inner.store.insert_attachment(&attachment).await
}

// ---- signed URLs ----

fn mac(key: &[u8; 32], attachment_id: &str, expires: i64) -> Result<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|_| Error::internal("the media key was rejected by HMAC"))?;
    mac.update(format!("{attachment_id}:{expires}").as_bytes());
    Ok(mac)
}

/// `<base>/media/{id}?expires=<unix secs>&signature=<base64url HMAC-SHA256(media_key, "id:expires")>`,
/// or 501 `media_url_unavailable` when no public base URL is configured.
fn signed_url(inner: &Inner, attachment_id: &AttachmentId, expires: i64) -> Result<String> {
    let base = inner.config.media_base_url.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            "media_url_unavailable",
            "no public base URL is configured for media links (EzwConfig::media_base_url)",
        )
    })?;
    let signature =
        URL_SAFE_NO_PAD.encode(mac(&inner.media_key, attachment_id.as_str(), expires)?.finalize().into_bytes());
    Ok(format!(
        "{}/media/{}?expires={expires}&signature={signature}",
        base.as_str().trim_end_matches('/'),
        attachment_id
    ))
}

/// How a claimed job's media reaches its provider.
#[derive(Debug)]
pub(crate) enum DeliveryMedia {
    /// Send as is (no stored attachment, or the media already has a URL).
    Ready,
    /// Send with this fresh signed URL in the media's `url`.
    Url(String),
    /// The attachment is not stored yet: try again later.
    Wait,
    /// Cannot be sent: fail the message with this code and message.
    Fail(&'static str, String),
}

/// What the delivery worker does with a job's media: an attachment without a URL gets a signed
/// URL valid for an hour (fresh for each attempt); a missing attachment is waited for (the send
/// stores it right after accepting the message), then fails `attachment_missing`; without a
/// public base URL such a job fails `media_url_unavailable`.
pub(crate) async fn delivery_media(inner: &Inner, message: &Message) -> DeliveryMedia {
    let Some(media) = message.content.media.as_ref() else { return DeliveryMedia::Ready };
    let Some(raw_id) = media.attachment_id.as_deref().filter(|_| media.url.is_none()) else {
        return DeliveryMedia::Ready;
    };
    let Some(id) = AttachmentId::parse(raw_id) else {
        return DeliveryMedia::Fail("attachment_missing", format!("{raw_id} is not an attachment id"));
    };
    if inner.config.media_base_url.is_none() {
        return DeliveryMedia::Fail(
            "media_url_unavailable",
            "no public base URL is configured, so the provider cannot fetch the attachment".into(),
        );
    }
    let now = inner.clock.now();
    match inner.store.get_attachment(&message.organization_id, &id).await {
        Ok(Some(_)) => {}
        Ok(None) if now.since(message.created_at) >= ATTACHMENT_WAIT => {
            return DeliveryMedia::Fail("attachment_missing", format!("attachment {id} was never stored"));
        }
        Ok(None) => return DeliveryMedia::Wait,
        Err(e) => {
            tracing::warn!(message = %message.id, error = %e, "reading an attachment for delivery failed");
            return DeliveryMedia::Wait;
        }
    }
    match signed_url(inner, &id, now.unix_secs().saturating_add(DELIVERY_URL_TTL_SECS)) {
        Ok(url) => DeliveryMedia::Url(url),
        Err(e) => DeliveryMedia::Fail("media_url_unavailable", e.message().to_owned()),
    }
}

/// A signed, expiring URL for one attachment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedMediaUrl {
    /// `<public base>/media/{attachmentId}?expires=<unix secs>&signature=<base64url>`.
    pub url: String,
    /// When the URL stops working.
    pub expires_at: Timestamp,
}

/// Stored media, read through a valid signed URL.
#[derive(Clone)]
pub struct MediaDownload {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The media type, told from the bytes.
    pub content_type: &'static str,
    /// Whether browsers may show it inline (images) rather than download it.
    pub inline: bool,
    /// Seconds until the URL expires (for `Cache-Control: max-age`).
    pub max_age_secs: u64,
}

impl std::fmt::Debug for MediaDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaDownload")
            .field("len", &self.bytes.len())
            .field("content_type", &self.content_type)
            .field("inline", &self.inline)
            .field("max_age_secs", &self.max_age_secs)
            .finish()
    }
}

/// `expiresInSeconds`: a whole number from 1 to [`MAX_MEDIA_URL_TTL_SECS`], default
/// [`DEFAULT_MEDIA_URL_TTL_SECS`].
fn url_ttl(raw: Option<&str>) -> Result<i64> {
    let Some(raw) = raw else { return Ok(DEFAULT_MEDIA_URL_TTL_SECS) };
    raw.trim().parse::<i64>().ok().filter(|n| (1..=MAX_MEDIA_URL_TTL_SECS).contains(n)).ok_or_else(|| {
        Error::invalid(
            "invalid_expires_in",
            format!("expiresInSeconds must be a whole number from 1 to {MAX_MEDIA_URL_TTL_SECS}"),
        )
    })
}

fn invalid_signature() -> Error {
    Error::new(ErrorKind::Forbidden, "invalid_signature", "the media URL's signature is missing or wrong")
}

/// Media access: signed URLs for stored attachments, and reading through them.
#[derive(Clone, Copy)]
pub struct MediaService<'a> {
    pub(crate) inner: &'a Inner,
}

impl MediaService<'_> {
    /// A signed URL for an attachment, valid `expires_in_seconds` (1 to 3600, default 300) on
    /// the runtime's clock. The caller must be able to view the line of the attachment's
    /// message.
    ///
    /// # Errors
    /// 400 `invalid_expires_in`; 404 `not_found` (unknown attachment, another organization's,
    /// one not linked to a message, or a message the caller may not view); 501
    /// `media_url_unavailable` without a public base URL.
    pub async fn attachment_url(
        &self,
        principal: &Principal,
        attachment_id: &str,
        expires_in_seconds: Option<&str>,
    ) -> Result<SignedMediaUrl> {
        let ttl = url_ttl(expires_in_seconds)?;
        let id = AttachmentId::parse(attachment_id).ok_or_else(|| Error::not_found("attachment"))?;
        let attachment = self
            .inner
            .store
            .get_attachment(principal.organization_id(), &id)
            .await?
            .ok_or_else(|| Error::not_found("attachment"))?;
        let message_id: &MessageId = attachment.message_id.as_ref().ok_or_else(|| Error::not_found("attachment"))?;
        MessagesService { inner: self.inner }.get(principal, message_id).await.map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::not_found("attachment")
            } else {
                e
            }
        })?;
        let expires = self.inner.clock.now().unix_secs().saturating_add(ttl);
        let url = signed_url(self.inner, &id, expires)?;
        Ok(SignedMediaUrl { url, expires_at: Timestamp::from_unix_ms(expires.saturating_mul(1000)) })
    }

    /// Reads an attachment through a signed URL's parts. The signature is the credential: it
    /// is checked in constant time before anything else, then the expiry on the runtime's clock.
    ///
    /// # Errors
    /// 403 `invalid_signature` (missing, malformed or wrong signature or expiry, or a changed
    /// id), 403 `url_expired`; 404 `not_found` when the bytes are gone; 501
    /// `media_storage_not_configured`.
    pub async fn open_signed(
        &self,
        attachment_id: &str,
        expires: Option<&str>,
        signature: Option<&str>,
    ) -> Result<MediaDownload> {
        let expires: i64 = expires.and_then(|e| e.parse().ok()).ok_or_else(invalid_signature)?;
        let signature = signature.and_then(|s| URL_SAFE_NO_PAD.decode(s).ok()).ok_or_else(invalid_signature)?;
        mac(&self.inner.media_key, attachment_id, expires)?
            .verify_slice(&signature)
            .map_err(|_| invalid_signature())?;
        let remaining = expires.saturating_sub(self.inner.clock.now().unix_secs());
        if remaining <= 0 {
            return Err(Error::new(ErrorKind::Forbidden, "url_expired", "the media URL has expired"));
        }
        let id = AttachmentId::parse(attachment_id).ok_or_else(|| Error::not_found("attachment"))?;
        let bytes = blob_store(self.inner)?.get(id.as_str()).await?.ok_or_else(|| Error::not_found("attachment"))?;
        let content_type = sniff_content_type(&bytes);
        Ok(MediaDownload {
            bytes,
            content_type,
            inline: content_type.starts_with("image/"),
            max_age_secs: u64::try_from(remaining).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_told_from_their_bytes() {
        assert_eq!(sniff_sendable_image(b"\xFF\xD8\xFF\xE0rest"), Some("image/jpeg"));
        assert_eq!(sniff_sendable_image(b"\x89PNG\r\n\x1A\nrest"), Some("image/png"));
        assert_eq!(sniff_sendable_image(b"GIF89a...."), None);
        assert_eq!(sniff_sendable_image(b"just text named .png"), None);
        assert_eq!(sniff_sendable_image(b""), None);
        assert_eq!(sniff_content_type(b"GIF89a...."), "image/gif");
        assert_eq!(sniff_content_type(b"RIFF\0\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(sniff_content_type(b"%PDF-1.7"), "application/pdf");
        assert_eq!(sniff_content_type(b"OggS\0\x02"), "audio/ogg");
        assert_eq!(sniff_content_type(b"\0\0\0\x18ftypmp42"), "video/mp4");
        assert_eq!(sniff_content_type(b"<html><script>"), "application/octet-stream");
    }

    #[test]
    fn url_lifetimes_are_checked() {
        assert_eq!(url_ttl(None).unwrap(), 300);
        assert_eq!(url_ttl(Some("1")).unwrap(), 1);
        assert_eq!(url_ttl(Some("3600")).unwrap(), 3600);
        for bad in ["0", "3601", "-5", "abc", "", "1.5", "99999999999999999999"] {
            assert_eq!(url_ttl(Some(bad)).unwrap_err().code(), "invalid_expires_in", "{bad}");
        }
    }

    #[test]
    fn signatures_bind_the_id_and_the_expiry() {
        let key = [7u8; 32];
        let sig = mac(&key, "att_01ABC", 100).unwrap().finalize().into_bytes();
        assert!(mac(&key, "att_01ABC", 100).unwrap().verify_slice(&sig).is_ok());
        assert!(mac(&key, "att_01ABD", 100).unwrap().verify_slice(&sig).is_err());
        assert!(mac(&key, "att_01ABC", 101).unwrap().verify_slice(&sig).is_err());
        assert!(mac(&[8u8; 32], "att_01ABC", 100).unwrap().verify_slice(&sig).is_err());
    }
}
