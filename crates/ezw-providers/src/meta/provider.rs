//! [`MetaProvider`]: the [`LineProvider`] for the WhatsApp Cloud API.

use async_trait::async_trait;
use ezw_core::crypto::SecretCipher;
use ezw_core::model::{LifecycleState, Line, MediaRef, Pacing, ProviderKind};
use ezw_core::ports::{
    Capabilities, FetchedMedia, InboundRequest, IngestOutcome, LineProvider, OutboundMessage, ProviderError,
    ProviderErrorKind, ProviderHealth, SendReceipt,
};
use ezw_core::Result;

use super::client::Client;
use super::config::MetaConfig;
use super::ingest;

/// What [`MetaProvider`] needs.
#[derive(Debug, Clone)]
pub struct MetaOptions {
    /// The HTTP client for Graph API calls (its timeouts apply to every call).
    pub http: reqwest::Client,
    /// Seals credentials in stored line configurations and opens them per call.
    pub cipher: SecretCipher,
}

/// The Meta WhatsApp Cloud API provider. Credentials are decrypted from the line's stored
/// configuration for each call and never kept, logged, or printed.
#[derive(Debug, Clone)]
pub struct MetaProvider {
    http: reqwest::Client,
    cipher: SecretCipher,
}

impl MetaProvider {
    /// A provider using `options`.
    #[must_use]
    pub fn new(options: MetaOptions) -> Self {
        Self { http: options.http, cipher: options.cipher }
    }

    /// The line's configuration with its credentials opened.
    fn config(&self, line: &Line) -> Result<MetaConfig, ProviderError> {
        MetaConfig::from_stored(&line.provider_config, &self.cipher).map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Permanent,
                "invalid_line_config",
                format!("the line's Meta configuration cannot be loaded: {}", e.message()),
            )
        })
    }
}

#[async_trait]
impl LineProvider for MetaProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Meta
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            text: true,
            media_url: true,
            cta_url_button: true,
            templates: true,
            qr_pairing: false,
            phone_code_pairing: false,
            deduplicates_sends: false,
            status_events: true,
        }
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value> {
        MetaConfig::from_submitted(config).map(|c| c.to_stored(&self.cipher))
    }

    fn default_pacing(&self) -> Pacing {
        // Meta Cloud API: 80 messages/s per business number by default.
        Pacing { per_second: 80.0, media_per_second: None, max_in_flight: 32, jitter_ms: 0 }
    }

    fn initial_state(&self, _config: &serde_json::Value) -> LifecycleState {
        LifecycleState::Connected
    }

    async fn send(&self, line: &Line, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let config = self.config(line)?;
        Client { http: &self.http, config: &config }.send(&message.to, &message.message).await
    }

    async fn health(&self, line: &Line, wakeup: bool) -> Result<ProviderHealth, ProviderError> {
        if !wakeup {
            return Ok(ProviderHealth { lifecycle_state: line.lifecycle_state, reason: line.state_reason.clone() });
        }
        let config = self.config(line)?;
        Client { http: &self.http, config: &config }.health().await
    }

    fn describe_config(&self, config: &serde_json::Value) -> serde_json::Value {
        match MetaConfig::from_stored(config, &self.cipher) {
            Ok(c) => c.describe(),
            Err(_) => {
                // Unreadable credentials: show the identifiers only.
                let mut shown = serde_json::Map::new();
                for field in ["phoneNumberId", "wabaId", "appId", "apiBaseUrl", "apiVersion"] {
                    if let Some(v) = config.get(field).filter(|v| v.is_string()) {
                        shown.insert(field.to_owned(), v.clone());
                    }
                }
                shown.insert("credentialsReadable".to_owned(), serde_json::Value::Bool(false));
                serde_json::Value::Object(shown)
            }
        }
    }

    async fn ingest(&self, line: &Line, request: &InboundRequest) -> Result<IngestOutcome, ProviderError> {
        let config = self.config(line)?;
        ingest::ingest(line, &config, request)
    }

    async fn fetch_media(&self, line: &Line, media: &MediaRef) -> Result<FetchedMedia, ProviderError> {
        let config = self.config(line)?;
        let media_id = media.provider_media_id.as_deref().ok_or_else(|| {
            ProviderError::new(ProviderErrorKind::Permanent, "missing_media_id", "the media has no Meta media id")
        })?;
        Client { http: &self.http, config: &config }.fetch_media(media_id).await
    }
}
