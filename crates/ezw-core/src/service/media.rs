//! Inbound media: fetched from the provider into the blob store in the background, then linked
//! to the message as an attachment.

use std::sync::Arc;
use std::time::Duration;

use crate::crypto::sha256_hex;
use crate::ids::AttachmentId;
use crate::model::{Attachment, Message};
use crate::ports::ProviderErrorKind;

use super::events::message_hint;
use super::runtime::Inner;

const ATTEMPTS: u32 = 4;

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
