//! Media for web session lines: fetching an outbound media URL (guarded against internal
//! targets), the outgoing media message, and the sealed handle that names inbound media.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ezw_core::crypto::SecretCipher;
use ezw_core::model::MediaKind;
use ezw_core::ports::{ProviderError, ProviderErrorKind};
use ezw_core::Secret;
use serde::{Deserialize, Serialize};
use whatsapp_rust::download::{DownloadParams, MediaType};
use whatsapp_rust::prelude::wa;
use whatsapp_rust::upload::UploadResponse;

/// The largest outbound media EZW fetches for a web session line (WhatsApp's own limit for
/// documents is higher; images, audio and video are capped at 16 MB).
pub(crate) const MAX_MEDIA_BYTES: usize = 16 * 1024 * 1024;

/// The prefix of sealed media handles.
const HANDLE_PREFIX: &str = "wa-media:";

/// What is needed to download and decrypt one inbound media file from WhatsApp's CDN. Stored in
/// [`MediaRef::provider_media_id`](ezw_core::model::MediaRef) sealed, since it holds the media
/// key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MediaHandle {
    kind: MediaKind,
    direct_path: String,
    media_key: Vec<u8>,
    file_sha256: Vec<u8>,
    file_enc_sha256: Vec<u8>,
    file_length: u64,
}

pub(crate) fn media_type(kind: MediaKind) -> MediaType {
    match kind {
        MediaKind::Image => MediaType::Image,
        MediaKind::Video => MediaType::Video,
        MediaKind::Audio => MediaType::Audio,
        MediaKind::Document => MediaType::Document,
    }
}

impl MediaHandle {
    /// A handle from a media message's fields; `None` when the path or key is missing.
    pub(crate) fn from_parts(
        kind: MediaKind,
        direct_path: Option<&String>,
        media_key: Option<&Vec<u8>>,
        file_sha256: Option<&Vec<u8>>,
        file_enc_sha256: Option<&Vec<u8>>,
        file_length: Option<u64>,
    ) -> Option<Self> {
        Some(Self {
            kind,
            direct_path: direct_path?.clone(),
            media_key: media_key?.clone(),
            file_sha256: file_sha256.cloned().unwrap_or_default(),
            file_enc_sha256: file_enc_sha256.cloned().unwrap_or_default(),
            file_length: file_length.unwrap_or(0),
        })
    }

    /// The handle sealed for storage (`wa-media:<sealed>`).
    pub(crate) fn seal(&self, cipher: &SecretCipher) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{HANDLE_PREFIX}{}", cipher.seal(&Secret::new(URL_SAFE_NO_PAD.encode(json))))
    }

    /// Opens a sealed handle; `None` when it is not one or does not open with this key.
    pub(crate) fn open(sealed: &str, cipher: &SecretCipher) -> Option<Self> {
        let inner = sealed.strip_prefix(HANDLE_PREFIX)?;
        let plain = cipher.open(inner).ok()?;
        let json = URL_SAFE_NO_PAD.decode(plain.expose()).ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// The crate's download parameters.
    pub(crate) fn params(&self) -> DownloadParams {
        DownloadParams::encrypted(
            self.direct_path.clone(),
            &self.media_key,
            &self.file_sha256,
            &self.file_enc_sha256,
            self.file_length,
            media_type(self.kind),
        )
    }
}

fn fetch_error(kind: ProviderErrorKind, code: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(kind, code, message)
}

/// Downloads an outbound media URL: http(s) only, no redirects, at most [`MAX_MEDIA_BYTES`],
/// and (unless `allow_private`) never from a loopback, private, link-local or otherwise
/// internal address, checked on the resolved address the request then uses.
///
/// # Errors
/// `Permanent` `media_url_refused` / `media_too_large` / `media_fetch_failed` (a 4xx);
/// `Retryable` `media_fetch_failed` for network errors and 5xx.
pub(crate) async fn fetch_url(url: &str, allow_private: bool) -> Result<(Vec<u8>, Option<String>), ProviderError> {
    let refused = |why: &str| fetch_error(ProviderErrorKind::Permanent, "media_url_refused", why.to_owned());
    let parsed = url::Url::parse(url).map_err(|_| refused("the media URL is not a valid URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(refused("the media URL must be http or https"));
    }
    let host = parsed.host_str().ok_or_else(|| refused("the media URL has no host"))?.to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let lookup_host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((lookup_host.as_str(), port))
        .await
        .map_err(|e| fetch_error(ProviderErrorKind::Retryable, "media_fetch_failed", format!("resolving {host}: {e}")))?
        .collect();
    let addr = addrs.first().copied().ok_or_else(|| refused("the media host does not resolve"))?;
    if !allow_private && addrs.iter().any(|a| crate::webhook::is_refused_address(a.ip())) {
        return Err(refused("the media URL points at an internal address"));
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .resolve(&lookup_host, addr)
        .build()
        .map_err(|e| fetch_error(ProviderErrorKind::Retryable, "media_fetch_failed", e.to_string()))?;
    let response = client.get(parsed).send().await.map_err(|e| {
        fetch_error(ProviderErrorKind::Retryable, "media_fetch_failed", format!("fetching the media: {e}"))
    })?;
    let status = response.status();
    if !status.is_success() {
        let kind = if status.is_server_error() || status.as_u16() == 429 {
            ProviderErrorKind::Retryable
        } else {
            ProviderErrorKind::Permanent
        };
        return Err(fetch_error(kind, "media_fetch_failed", format!("the media URL answered {status}")));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
    let too_large = || fetch_error(ProviderErrorKind::Permanent, "media_too_large", "the media is larger than 16 MB");
    let failed = |e| fetch_error(ProviderErrorKind::Retryable, "media_fetch_failed", format!("reading the media: {e}"));
    let bytes = crate::body::read_limited(response, MAX_MEDIA_BYTES as u64, too_large, failed).await?;
    Ok((bytes, content_type))
}

/// What an outgoing media message says besides the uploaded file.
pub(crate) struct MediaText<'a> {
    pub(crate) mime: &'a str,
    pub(crate) caption: Option<String>,
    pub(crate) filename: Option<String>,
    pub(crate) context: Option<wa::ContextInfo>,
}

/// The media message for an upload.
pub(crate) fn media_message(kind: MediaKind, up: &UploadResponse, text: MediaText<'_>) -> wa::Message {
    use whatsapp_rust::prelude::MessageField;
    let context = text.context.map_or_else(MessageField::default, MessageField::some);
    let mime = Some(text.mime.to_owned());
    let (url, direct_path) = (Some(up.url.clone()), Some(up.direct_path.clone()));
    let (media_key, file_sha256, file_enc_sha256) =
        (Some(up.media_key.to_vec()), Some(up.file_sha256.to_vec()), Some(up.file_enc_sha256.to_vec()));
    let (file_length, media_key_timestamp) = (Some(up.file_length), Some(up.media_key_timestamp));
    match kind {
        MediaKind::Image => wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                url,
                direct_path,
                media_key,
                file_sha256,
                file_enc_sha256,
                file_length,
                media_key_timestamp,
                mimetype: mime,
                caption: text.caption,
                context_info: context,
                ..Default::default()
            }),
            ..Default::default()
        },
        MediaKind::Video => wa::Message {
            video_message: MessageField::some(wa::message::VideoMessage {
                url,
                direct_path,
                media_key,
                file_sha256,
                file_enc_sha256,
                file_length,
                media_key_timestamp,
                mimetype: mime,
                caption: text.caption,
                streaming_sidecar: up.streaming_sidecar.clone(),
                context_info: context,
                ..Default::default()
            }),
            ..Default::default()
        },
        MediaKind::Audio => wa::Message {
            audio_message: MessageField::some(wa::message::AudioMessage {
                url,
                direct_path,
                media_key,
                file_sha256,
                file_enc_sha256,
                file_length,
                media_key_timestamp,
                mimetype: mime,
                streaming_sidecar: up.streaming_sidecar.clone(),
                context_info: context,
                ..Default::default()
            }),
            ..Default::default()
        },
        _ => wa::Message {
            document_message: MessageField::some(wa::message::DocumentMessage {
                url,
                direct_path,
                media_key,
                file_sha256,
                file_enc_sha256,
                file_length,
                media_key_timestamp,
                mimetype: mime,
                caption: text.caption,
                file_name: text.filename.clone(),
                title: text.filename,
                context_info: context,
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// A default MIME type for a media kind when neither the message nor the URL says.
pub(crate) fn default_mime(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "image/jpeg",
        MediaKind::Video => "video/mp4",
        MediaKind::Audio => "audio/ogg; codecs=opus",
        _ => "application/octet-stream",
    }
}
