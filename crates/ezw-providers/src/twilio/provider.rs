//! [`TwilioProvider`]: the [`LineProvider`] for Twilio WhatsApp lines.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ezw_core::crypto::SecretCipher;
use ezw_core::model::{LifecycleState, Line, MediaRef, Pacing, ProviderKind};
use ezw_core::ports::{
    Capabilities, FetchedMedia, InboundRequest, IngestOutcome, LineProvider, OutboundMessage, ProviderError,
    ProviderErrorKind, ProviderHealth, SendReceipt,
};
use ezw_core::{Clock, Result};

use super::client::{create_message_form, Client, MAX_MEDIA_BYTES};
use super::config::{describe_unreadable, TwilioConfig};
use super::ingest::{parse_webhook, verify_signature};

/// What a [`TwilioProvider`] needs from its host.
#[derive(Clone)]
pub struct TwilioOptions {
    /// The HTTP client for Twilio calls (set its timeouts here).
    pub http: reqwest::Client,
    /// Seals and opens the lines' auth tokens.
    pub cipher: SecretCipher,
    /// EZW's public base URL; status callbacks go to `{public_url}/hooks/twilio/{lineId}/status`.
    pub public_url: url::Url,
    /// Stamps inbound messages and status events.
    pub clock: Arc<dyn Clock>,
}

impl fmt::Debug for TwilioOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioOptions")
            .field("cipher", &self.cipher)
            .field("public_url", &self.public_url.as_str())
            .finish_non_exhaustive()
    }
}

/// Twilio Programmable Messaging for WhatsApp: form-encoded sends to `Messages.json`,
/// Content API templates (`ContentSid`), signed inbound and status webhooks, media download,
/// and account health.
#[derive(Debug, Clone)]
pub struct TwilioProvider {
    options: TwilioOptions,
}

impl TwilioProvider {
    /// A provider with `options`.
    #[must_use]
    pub fn new(options: TwilioOptions) -> Self {
        Self { options }
    }

    /// The status callback URL for a line.
    /// Our status route for this line, naming the message so a callback finds it even when the
    /// send's answer (and so its `sid`) was lost.
    fn status_callback(&self, line: &Line, message: &ezw_core::model::Message) -> String {
        format!(
            "{}/hooks/twilio/{}/status?message_id={}",
            self.options.public_url.as_str().trim_end_matches('/'),
            line.id,
            message.id
        )
    }

    /// The line's configuration; an unreadable one holds the line until it is fixed.
    fn config(&self, line: &Line) -> Result<TwilioConfig, ProviderError> {
        TwilioConfig::parse(&line.provider_config, &self.options.cipher).map_err(|e| {
            ProviderError::new(ProviderErrorKind::LineUnavailable, "invalid_provider_config", e.message().to_owned())
                .with_line_state(LifecycleState::AuthFailed)
        })
    }
}

#[async_trait]
impl LineProvider for TwilioProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Twilio
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            text: true,
            media_url: true,
            cta_url_button: false,
            templates: true,
            qr_pairing: false,
            phone_code_pairing: false,
            deduplicates_sends: false,
            status_events: true,
        }
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value> {
        TwilioConfig::parse(config, &self.options.cipher).map(|c| c.to_stored(&self.options.cipher))
    }

    fn default_pacing(&self) -> Pacing {
        // Twilio's WhatsApp defaults: 10 messages/s per sender, media about 1/s.
        Pacing { per_second: 10.0, media_per_second: Some(1.0), max_in_flight: 10, jitter_ms: 0 }
    }

    fn initial_state(&self, _config: &serde_json::Value) -> LifecycleState {
        LifecycleState::Connected
    }

    async fn send(&self, line: &Line, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let config = self.config(line)?;
        let form = create_message_form(&config, self.status_callback(line, &message.message), message)?;
        let resource = Client::new(&self.options.http, &config).create_message(&form).await?;
        let provider_message_id = resource.sid.unwrap_or_default();
        tracing::debug!(line = %line.id, sid = %provider_message_id, status = ?resource.status, "Twilio accepted a message");
        Ok(SendReceipt { provider_message_id })
    }

    async fn health(&self, line: &Line, wakeup: bool) -> Result<ProviderHealth, ProviderError> {
        if !wakeup {
            return Ok(ProviderHealth { lifecycle_state: line.lifecycle_state, reason: line.state_reason.clone() });
        }
        let account = match self.config(line) {
            Ok(config) => Client::new(&self.options.http, &config).fetch_account().await,
            Err(e) => Err(e),
        };
        match account {
            Ok(account) => Ok(match account.status.as_str() {
                "active" => ProviderHealth { lifecycle_state: LifecycleState::Connected, reason: None },
                "suspended" | "closed" => {
                    ProviderHealth { lifecycle_state: LifecycleState::Blocked, reason: Some(account.status) }
                }
                other => ProviderHealth {
                    lifecycle_state: line.lifecycle_state,
                    reason: Some(format!("unknown Twilio account status '{other}'")),
                },
            }),
            Err(e) if e.kind == ProviderErrorKind::LineUnavailable => Ok(ProviderHealth {
                lifecycle_state: e.line_state.unwrap_or(LifecycleState::AuthFailed),
                reason: Some(e.message),
            }),
            Err(e) => Err(e),
        }
    }

    fn describe_config(&self, config: &serde_json::Value) -> serde_json::Value {
        TwilioConfig::parse(config, &self.options.cipher).map_or_else(|_| describe_unreadable(config), |c| c.describe())
    }

    async fn ingest(&self, line: &Line, request: &InboundRequest) -> Result<IngestOutcome, ProviderError> {
        let config = self.config(line)?;
        verify_signature(&config.auth_token, request)?;
        parse_webhook(line, &config, request, self.options.clock.now())
    }

    async fn fetch_media(&self, line: &Line, media: &MediaRef) -> Result<FetchedMedia, ProviderError> {
        let url = media.url.as_deref().ok_or_else(|| {
            ProviderError::new(ProviderErrorKind::Permanent, "media_url_missing", "the media has no Twilio MediaUrl")
        })?;
        let config = self.config(line)?;
        let (bytes, content_type) = Client::new(&self.options.http, &config).fetch_media(url, MAX_MEDIA_BYTES).await?;
        let content_type =
            content_type.or_else(|| media.mime_type.clone()).unwrap_or_else(|| "application/octet-stream".to_owned());
        Ok(FetchedMedia { bytes, content_type })
    }
}
