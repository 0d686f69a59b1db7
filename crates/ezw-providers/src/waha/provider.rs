//! [`WahaProvider`]: the [`LineProvider`] for QR lines served by a WAHA sidecar.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ezw_core::crypto::SecretCipher;
use ezw_core::model::{LifecycleState, Line, MediaRef, Pacing, PairingMethod, ProviderKind};
use ezw_core::ports::{
    Capabilities, EventSink, FetchedMedia, InboundRequest, IngestOutcome, LineProvider, OutboundMessage, ProviderError,
    ProviderErrorKind, ProviderEvent, ProviderHealth, SendReceipt, SessionSignal,
};
use ezw_core::{Clock, Result};
use serde_json::json;

use super::client::{send_request, Client, SendRequest, MAX_MEDIA_BYTES};
use super::config::{describe_unreadable, WahaConfig};
use super::ingest::{lid_sender, parse_webhook, session_signal, verify_hmac};
use super::session::{SharedWatchers, Watch, Watcher, PHONE_CODE_TTL};
use super::wire::{status, HmacConfiguration, SessionConfig, WebhookConfig, EVENTS};

/// How often a pairing session is polled for a new QR code unless set otherwise.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How many polls a phone-code pairing waits for the session to be ready for a code.
const READY_TRIES: u32 = 15;

/// What a [`WahaProvider`] needs from its host.
#[derive(Clone)]
pub struct WahaOptions {
    /// The HTTP client for sidecar calls (set its timeouts here).
    pub http: reqwest::Client,
    /// Seals and opens the lines' API and webhook keys.
    pub cipher: SecretCipher,
    /// EZW's public base URL as the sidecar reaches it; webhooks go to
    /// `{public_url}/hooks/waha/{lineId}`.
    pub public_url: url::Url,
    /// Paces the pairing watchers and stamps events.
    pub clock: Arc<dyn Clock>,
    /// Where session signals (QR codes, pairing outcomes) go.
    pub sink: EventSink,
    /// How often a pairing session is polled (default [`DEFAULT_POLL_INTERVAL`], 2 s: well under
    /// the 20 s a rotated QR code lives).
    pub poll_interval: Duration,
}

impl WahaOptions {
    /// Options with the default poll interval.
    #[must_use]
    pub fn new(
        http: reqwest::Client,
        cipher: SecretCipher,
        public_url: url::Url,
        clock: Arc<dyn Clock>,
        sink: EventSink,
    ) -> Self {
        Self { http, cipher, public_url, clock, sink, poll_interval: DEFAULT_POLL_INTERVAL }
    }
}

impl fmt::Debug for WahaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WahaOptions")
            .field("cipher", &self.cipher)
            .field("public_url", &self.public_url.as_str())
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// WhatsApp Web lines run by a WAHA sidecar: sessions created with EZW's signed webhook, QR and
/// phone-code pairing, text and media sends, `X-Webhook-Hmac`-verified events.
#[derive(Clone)]
pub struct WahaProvider {
    options: WahaOptions,
    watchers: SharedWatchers,
}

impl fmt::Debug for WahaProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WahaProvider").field("options", &self.options).finish_non_exhaustive()
    }
}

fn not_found(e: &ProviderError) -> bool {
    e.code == "session_not_found"
}

impl WahaProvider {
    /// A provider with `options`.
    #[must_use]
    pub fn new(options: WahaOptions) -> Self {
        Self { options, watchers: SharedWatchers::default() }
    }

    /// The line's configuration; an unreadable one holds the line until it is fixed.
    fn config(&self, line: &Line) -> Result<WahaConfig, ProviderError> {
        WahaConfig::parse(&line.provider_config, &self.options.cipher).map_err(|e| {
            ProviderError::new(ProviderErrorKind::LineUnavailable, "invalid_provider_config", e.message().to_owned())
                .with_line_state(LifecycleState::AuthFailed)
        })
    }

    /// The session config EZW keeps on the sidecar: its signed webhook for the line.
    fn session_config(&self, line: &Line, config: &WahaConfig) -> SessionConfig {
        let url = format!("{}/hooks/waha/{}", self.options.public_url.as_str().trim_end_matches('/'), line.id);
        let mut metadata = serde_json::Map::new();
        metadata.insert("ezw.lineId".into(), json!(line.id.to_string()));
        SessionConfig {
            webhooks: vec![WebhookConfig {
                url,
                events: EVENTS.iter().map(|e| (*e).to_owned()).collect(),
                hmac: HmacConfiguration { key: config.webhook_hmac_key.expose().to_owned() },
            }],
            metadata,
        }
    }

    fn watcher(&self, line: &Line, config: WahaConfig) -> Watcher {
        Watcher {
            http: self.options.http.clone(),
            session: config.session_name(&line.id),
            config,
            line_id: line.id.clone(),
            clock: self.options.clock.clone(),
            sink: self.options.sink.clone(),
            interval: self.options.poll_interval,
        }
    }

    /// Drops the session's credentials and starts it again, so it asks for a new pairing.
    async fn restart_unpaired(&self, line: &Line, config: &WahaConfig) -> Result<(), ProviderError> {
        let client = Client::new(&self.options.http, config);
        let session = config.session_name(&line.id);
        match client.logout(&session).await {
            Ok(()) => {}
            // The sidecar lost the session (or never had it): create it first.
            Err(e) if not_found(&e) => client.upsert_session(&session, self.session_config(line, config)).await?,
            Err(e) => return Err(e),
        }
        client.start(&session).await
    }
}

#[async_trait]
impl LineProvider for WahaProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Waha
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            text: true,
            media_url: true,
            cta_url_button: false,
            templates: false,
            qr_pairing: true,
            phone_code_pairing: true,
            deduplicates_sends: false,
            status_events: true,
        }
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value> {
        WahaConfig::parse(config, &self.options.cipher).map(|c| c.to_stored(&self.options.cipher))
    }

    fn default_pacing(&self) -> Pacing {
        // A personal number paired as a linked device: send like a person would, one at a time,
        // at most one message every 5 s plus up to 4 s of random spread (anti-ban).
        Pacing { per_second: 0.2, media_per_second: Some(0.1), max_in_flight: 1, jitter_ms: 4000 }
    }

    fn initial_state(&self, _config: &serde_json::Value) -> LifecycleState {
        LifecycleState::Created
    }

    async fn send(&self, line: &Line, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let config = self.config(line)?;
        let request = send_request(&config.session_name(&line.id), message)?;
        let client = Client::new(&self.options.http, &config);
        let sent = match &request {
            SendRequest::Text(body) => client.send_text(body).await?,
            SendRequest::File { path, body } => client.send_file(path, body).await?,
        };
        let provider_message_id = sent.serialized_id(request.chat_id()).unwrap_or_default();
        if provider_message_id.is_empty() {
            tracing::warn!(line = %line.id, "WAHA accepted a message without an id; its acks cannot be matched");
        }
        Ok(SendReceipt { provider_message_id })
    }

    async fn health(&self, line: &Line, wakeup: bool) -> Result<ProviderHealth, ProviderError> {
        let current = ProviderHealth { lifecycle_state: line.lifecycle_state, reason: line.state_reason.clone() };
        if !wakeup {
            return Ok(current);
        }
        // The line's lifecycle machine decides its state: hand it what the sidecar says.
        let config = self.config(line)?;
        let info = Client::new(&self.options.http, &config).session(&config.session_name(&line.id)).await?;
        let pairing = line.lifecycle_state == LifecycleState::Pairing;
        if let Some(signal) = session_signal(&info.status, info.me.as_ref().and_then(|m| m.account())) {
            if !(pairing && matches!(signal, SessionSignal::LoggedOut { .. })) {
                let at = self.options.clock.now();
                self.options.sink.emit(ProviderEvent::Session { line_id: line.id.clone(), signal, at });
            }
        }
        Ok(current)
    }

    fn describe_config(&self, config: &serde_json::Value) -> serde_json::Value {
        WahaConfig::parse(config, &self.options.cipher).map_or_else(|_| describe_unreadable(config), |c| c.describe())
    }

    async fn ingest(&self, line: &Line, request: &InboundRequest) -> Result<IngestOutcome, ProviderError> {
        let config = self.config(line)?;
        verify_hmac(&config.webhook_hmac_key, request)?;
        let session = config.session_name(&line.id);
        // A sender behind a privacy id: ask the sidecar for the number (a failure is retryable,
        // so WAHA redelivers the event).
        let lid_phone = match lid_sender(&request.body) {
            Some(lid) => match Client::new(&self.options.http, &config).lid_phone(&session, &lid).await {
                Ok(pn) => pn,
                Err(e) if e.code == "session_not_found" => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        parse_webhook(line, &session, request, self.options.clock.now(), lid_phone.as_deref())
    }

    async fn open_session(&self, line: &Line) -> Result<(), ProviderError> {
        let config = self.config(line)?;
        let client = Client::new(&self.options.http, &config);
        let session = config.session_name(&line.id);
        client.upsert_session(&session, self.session_config(line, &config)).await?;
        // Only a paired line has credentials to start with; an unpaired one starts when a person
        // asks for a QR code (a started unpaired session would churn through codes nobody sees).
        if matches!(
            line.lifecycle_state,
            LifecycleState::Connected | LifecycleState::Reconnecting | LifecycleState::Restricted
        ) {
            client.start(&session).await?;
        }
        Ok(())
    }

    async fn close_session(&self, line: &Line) {
        self.watchers.stop(&line.id);
    }

    async fn reconnect(&self, line: &Line) -> Result<(), ProviderError> {
        let config = self.config(line)?;
        let client = Client::new(&self.options.http, &config);
        let session = config.session_name(&line.id);
        client.start(&session).await?;
        let info = client.session(&session).await?;
        match info.status.as_str() {
            status::WORKING => Ok(()),
            status::SCAN_QR_CODE => Err(ProviderError::new(
                ProviderErrorKind::LineUnavailable,
                "qr_required",
                "the WAHA session has no credentials and asks for a QR scan",
            )
            .with_line_state(LifecycleState::QrRequired)),
            other => Err(ProviderError::new(
                ProviderErrorKind::Retryable,
                format!("session_{}", other.to_ascii_lowercase()),
                format!("the WAHA session is {other}"),
            )),
        }
    }

    async fn start_pairing(&self, line: &Line, method: &PairingMethod) -> Result<(), ProviderError> {
        self.watchers.stop(&line.id);
        let config = self.config(line)?;
        self.restart_unpaired(line, &config).await?;
        let watcher = self.watcher(line, config.clone());
        match method {
            PairingMethod::Qr => self.watchers.start(watcher, Watch::Qr),
            PairingMethod::PhoneCode { phone } => {
                watcher.wait_for_scan(READY_TRIES).await?;
                let digits = phone.as_str().trim_start_matches('+');
                let code = Client::new(&self.options.http, &config)
                    .request_code(&config.session_name(&line.id), digits)
                    .await?;
                let at = self.options.clock.now();
                let signal = SessionSignal::PhoneCode { code, ttl: PHONE_CODE_TTL };
                self.options.sink.emit(ProviderEvent::Session { line_id: line.id.clone(), signal, at });
                self.watchers.start(watcher, Watch::Outcome);
            }
        }
        Ok(())
    }

    async fn stop_pairing(&self, line: &Line) {
        self.watchers.stop(&line.id);
        // Stop the sidecar's session too, so it stops generating codes nobody scans.
        if let Ok(config) = self.config(line) {
            if let Err(e) = Client::new(&self.options.http, &config).stop(&config.session_name(&line.id)).await {
                tracing::debug!(line = %line.id, error = %e, "stopping a pairing WAHA session failed");
            }
        }
    }

    async fn logout(&self, line: &Line) -> Result<(), ProviderError> {
        self.watchers.stop(&line.id);
        let config = self.config(line)?;
        let client = Client::new(&self.options.http, &config);
        let session = config.session_name(&line.id);
        for result in [client.logout(&session).await, client.stop(&session).await] {
            match result {
                Ok(()) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn fetch_media(&self, line: &Line, media: &MediaRef) -> Result<FetchedMedia, ProviderError> {
        let url = media.url.as_deref().ok_or_else(|| {
            ProviderError::new(ProviderErrorKind::Permanent, "media_url_missing", "WAHA did not download the media")
        })?;
        let config = self.config(line)?;
        let (bytes, content_type) = Client::new(&self.options.http, &config).fetch_media(url, MAX_MEDIA_BYTES).await?;
        let content_type =
            content_type.or_else(|| media.mime_type.clone()).unwrap_or_else(|| "application/octet-stream".to_owned());
        Ok(FetchedMedia { bytes, content_type })
    }
}

#[cfg(test)]
impl WahaProvider {
    /// Whether a pairing watcher runs for the line.
    pub(crate) fn watching(&self, line: &ezw_core::LineId) -> bool {
        self.watchers.is_running(line)
    }
}
