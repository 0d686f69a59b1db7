//! [`WebSessionProvider`]: web session (QR) lines run in-process, one `whatsapp-rust` client per
//! line held by this node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ezw_core::crypto::SecretCipher;
use ezw_core::ids::LineId;
use ezw_core::model::{LifecycleState, Line, MediaRef, MessageContent, Pacing, PairingMethod, ProviderKind};
use ezw_core::ports::{
    Capabilities, EventSink, FetchedMedia, LineProvider, OutboundMessage, ProviderError, ProviderErrorKind,
    ProviderHealth, SendReceipt, SessionStore,
};
use ezw_core::{Clock, Result};
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::prelude::{
    wa, Bot, BotHandle, Client, Event, EventHandler, MessageBuilderExt, MessageField, SendError,
};
use whatsapp_rust::store::traits::Backend;
use whatsapp_rust::upload::UploadOptions;
use whatsapp_rust::wacore::store::traits::DeviceStore;
use whatsapp_rust::wacore::store::DevicePropsOverride;
use whatsapp_rust::ClientError;

use super::config::WebSessionConfig;
use super::events::{account_of, phone_to_jid, Bridge};
use super::media::{self, MediaHandle, MediaText};
use super::store::EzwBackend;

/// How long [`LineProvider::reconnect`] waits for the client to log in.
const CONNECT_WAIT: Duration = Duration::from_secs(60);
/// How long a client gets to flush its state and stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// What [`WebSessionProvider`] needs from the server.
#[derive(Clone)]
pub struct WebSessionOptions {
    /// Where each line's session state lives (sealed with `cipher`).
    pub store: Arc<dyn SessionStore>,
    /// Seals session state and inbound media handles at rest.
    pub cipher: SecretCipher,
    /// Event times.
    pub clock: Arc<dyn Clock>,
    /// Where session signals, inbound messages and statuses go.
    pub sink: EventSink,
    /// Whether outbound media may be fetched from loopback, private and link-local addresses
    /// (development servers that serve their own media links on `127.0.0.1`). Default off.
    pub allow_private_media: bool,
}

impl std::fmt::Debug for WebSessionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSessionOptions")
            .field("allow_private_media", &self.allow_private_media)
            .finish_non_exhaustive()
    }
}

/// The events a running client reports, through its line's [`Bridge`].
struct SharedBridge(Arc<Bridge>);

impl EventHandler for SharedBridge {
    fn handle_event(&self, event: Arc<Event>) {
        self.0.handle_event(event);
    }
}

/// A running client.
struct Running {
    handle: BotHandle,
    client: Arc<Client>,
    bridge: Arc<Bridge>,
}

/// One line held by this node.
struct LineSession {
    backend: Arc<EzwBackend>,
    running: tokio::sync::Mutex<Option<Running>>,
}

/// Web session lines run in-process by `whatsapp-rust`: one client per line this node holds the
/// session lease of, its keys and sessions in EZW's storage ([`EzwBackend`]). Clone it freely.
#[derive(Clone)]
pub struct WebSessionProvider {
    opts: Arc<WebSessionOptions>,
    sessions: Arc<Mutex<HashMap<LineId, Arc<LineSession>>>>,
}

impl std::fmt::Debug for WebSessionProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSessionProvider").finish_non_exhaustive()
    }
}

fn unavailable(code: &str, message: &str) -> ProviderError {
    ProviderError::new(ProviderErrorKind::LineUnavailable, code, message)
}

fn retryable(code: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(ProviderErrorKind::Retryable, code, message)
}

/// How a failed send is classified.
pub(crate) fn send_error(e: &SendError) -> ProviderError {
    match e {
        SendError::NotLoggedIn | SendError::Client(ClientError::NotLoggedIn) => {
            unavailable("session_not_logged_in", "the web session is not logged in")
        }
        SendError::Client(ClientError::NotConnected) => {
            unavailable("session_not_connected", "the web session is not connected")
        }
        SendError::InvalidRequest(m) => ProviderError::new(ProviderErrorKind::Permanent, "invalid_request", m.clone()),
        // A query made before anything was written (recipient devices, keys).
        SendError::Iq(e) => retryable("send_query_failed", e.to_string()),
        // The stanza may have been written before the connection failed.
        other => ProviderError::new(ProviderErrorKind::Ambiguous, "send_failed", other.to_string()),
    }
}

impl WebSessionProvider {
    /// A provider with `options`.
    #[must_use]
    pub fn new(options: WebSessionOptions) -> Self {
        Self { opts: Arc::new(options), sessions: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// The storage backend a line's client runs on (the same one for every call).
    #[must_use]
    pub fn backend(&self, line: &Line) -> Arc<EzwBackend> {
        self.session(line).backend.clone()
    }

    fn session(&self, line: &Line) -> Arc<LineSession> {
        let mut sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sessions.entry(line.id.clone()).or_insert_with(|| Arc::new(self.new_session(line))).clone()
    }

    fn new_session(&self, line: &Line) -> LineSession {
        LineSession {
            backend: Arc::new(EzwBackend::new(
                self.opts.store.clone(),
                self.opts.cipher.clone(),
                line.organization_id.clone(),
                line.id.clone(),
            )),
            running: tokio::sync::Mutex::new(None),
        }
    }

    fn existing(&self, line: &LineId) -> Option<Arc<LineSession>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(line).cloned()
    }

    /// Builds and starts a client on the line's stored state (a fresh device when there is none).
    async fn start(
        &self,
        line: &Line,
        session: &LineSession,
        account: Option<String>,
        phone_code: Option<PairCodeOptions>,
    ) -> Result<Running, ProviderError> {
        let config = WebSessionConfig::from_json(&line.provider_config)
            .map_err(|e| ProviderError::new(ProviderErrorKind::Permanent, "bad_config", e.message().to_owned()))?;
        let bridge = Arc::new(Bridge {
            org: line.organization_id.clone(),
            line: line.id.clone(),
            sink: self.opts.sink.clone(),
            cipher: self.opts.cipher.clone(),
            clock: self.opts.clock.clone(),
            account: Mutex::new(account),
            muted: AtomicBool::new(false),
            // A phone-code pairing shows its code, not the QR codes the client issues beside it.
            suppress_qr: AtomicBool::new(phone_code.is_some()),
        });
        let backend: Arc<dyn Backend> = session.backend.clone();
        let mut builder = Bot::builder()
            .with_backend_arc(backend)
            .with_event_handler(SharedBridge(bridge.clone()))
            .with_device_props(DevicePropsOverride::new().with_os(config.device_name()))
            // EZW records conversations from the pairing on; it does not import the phone's history.
            .skip_history_sync();
        if let Some(options) = phone_code {
            builder = builder.with_pair_code(options);
        }
        let bot = builder
            .build()
            .await
            .map_err(|e| retryable("session_start_failed", format!("starting the client: {e}")))?;
        let handle = bot.spawn();
        let client = handle.client();
        Ok(Running { handle, client, bridge })
    }

    /// Stops a line's client (after logging it out when `logout`), quietly.
    async fn stop(running: Running, logout: bool) {
        running.bridge.muted.store(true, Ordering::Release);
        if logout && tokio::time::timeout(SHUTDOWN_WAIT, running.client.logout()).await.is_err() {
            tracing::warn!(line = %running.bridge.line, "logging the web session out timed out");
        }
        // Dropping the handle on timeout aborts the client task.
        if tokio::time::timeout(SHUTDOWN_WAIT, running.handle.shutdown()).await.is_err() {
            tracing::warn!(line = %running.bridge.line, "a web session client did not stop in time; aborted");
        }
    }

    /// The line's logged-in client.
    async fn client(&self, line: &Line) -> Result<Arc<Client>, ProviderError> {
        let Some(session) = self.existing(&line.id) else {
            return Err(unavailable("session_not_open", "the web session does not run on this node"));
        };
        let running = session.running.lock().await;
        match running.as_ref() {
            Some(r) if r.client.is_logged_in() && r.client.is_connected() => Ok(r.client.clone()),
            _ => Err(unavailable("session_not_connected", "the web session is not connected")),
        }
    }

    async fn outgoing(&self, client: &Client, message: &OutboundMessage) -> Result<wa::Message, ProviderError> {
        let content: &MessageContent = &message.message.content;
        let context = content.reply_to.as_ref().map(|id| wa::ContextInfo {
            stanza_id: Some(id.clone()),
            // EZW knows the quoted message's id only: in a one-to-one chat it is taken to be the
            // customer's (the usual reply).
            participant: Some(phone_to_jid(&message.to).to_string()),
            ..Default::default()
        });
        if let Some(m) = &content.media {
            return self.media_message(client, m, context).await;
        }
        let Some(body) = content.body.clone() else {
            return Err(ProviderError::unsupported("this message kind on web session lines"));
        };
        Ok(match context {
            Some(context) => wa::Message {
                extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
                    text: Some(body),
                    context_info: MessageField::some(context),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None => wa::Message::text(body),
        })
    }

    async fn media_message(
        &self,
        client: &Client,
        m: &MediaRef,
        context: Option<wa::ContextInfo>,
    ) -> Result<wa::Message, ProviderError> {
        let url = m.url.as_deref().ok_or_else(|| ProviderError::unsupported("sending media without a URL"))?;
        let (bytes, fetched_type) = media::fetch_url(url, self.opts.allow_private_media).await?;
        let mime = m.mime_type.clone().or(fetched_type).unwrap_or_else(|| media::default_mime(m.kind).to_owned());
        let upload = client
            .upload(bytes, media::media_type(m.kind), UploadOptions::default())
            .await
            .map_err(|e| retryable("media_upload_failed", format!("uploading the media to WhatsApp: {e}")))?;
        let text = MediaText { mime: &mime, caption: m.caption.clone(), filename: m.filename.clone(), context };
        Ok(media::media_message(m.kind, &upload, text))
    }
}

#[async_trait]
impl LineProvider for WebSessionProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::WebSession
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
        WebSessionConfig::from_json(config).map(|c| c.to_json())
    }

    /// Anti-ban defaults: a linked device that sends like a person. One send every 5 s on
    /// average (0.2/s; media 0.1/s), one at a time, each after up to 4 s of random extra delay,
    /// so the timing is neither fast nor regular. Lines may set their own pacing.
    fn default_pacing(&self) -> Pacing {
        Pacing { per_second: 0.2, media_per_second: Some(0.1), max_in_flight: 1, jitter_ms: 4000 }
    }

    fn initial_state(&self, _config: &serde_json::Value) -> LifecycleState {
        LifecycleState::Created
    }

    fn describe_config(&self, config: &serde_json::Value) -> serde_json::Value {
        WebSessionConfig::from_json(config).map(|c| c.to_json()).unwrap_or_else(|_| serde_json::json!({}))
    }

    async fn send(&self, line: &Line, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let client = self.client(line).await?;
        let wa_message = self.outgoing(&client, message).await?;
        let sent = client.send_message(phone_to_jid(&message.to), wa_message).await.map_err(|e| send_error(&e))?;
        Ok(SendReceipt { provider_message_id: sent.message_id })
    }

    async fn health(&self, line: &Line, _wakeup: bool) -> Result<ProviderHealth, ProviderError> {
        // The lifecycle is driven by the node holding the session; the store has its view.
        Ok(ProviderHealth { lifecycle_state: line.lifecycle_state, reason: line.state_reason.clone() })
    }

    async fn open_session(&self, line: &Line) -> Result<(), ProviderError> {
        let session = self.session(line);
        // Fail early (and let another node try) when the stored state cannot be read here.
        session
            .backend
            .exists()
            .await
            .map(|_| ())
            .map_err(|e| retryable("session_state_unreadable", format!("reading the session state: {e}")))
    }

    async fn close_session(&self, line: &Line) {
        let session = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&line.id);
        if let Some(session) = session {
            if let Some(running) = session.running.lock().await.take() {
                Self::stop(running, false).await;
            }
        }
    }

    async fn reconnect(&self, line: &Line) -> Result<(), ProviderError> {
        let session = self.session(line);
        let client = {
            let mut running = session.running.lock().await;
            if running.is_none() {
                let device =
                    session.backend.load().await.map_err(|e| {
                        retryable("session_state_unreadable", format!("reading the session state: {e}"))
                    })?;
                let Some(pn) = device.and_then(|d| d.pn) else {
                    return Err(unavailable("no_credentials", "the line has no paired session; pair it again")
                        .with_line_state(LifecycleState::QrRequired));
                };
                *running = Some(self.start(line, &session, account_of(&pn), None).await?);
            }
            running.as_ref().map(|r| r.client.clone())
        };
        let Some(client) = client else { return Err(retryable("session_not_running", "the client stopped")) };
        client
            .wait_for_connected(CONNECT_WAIT)
            .await
            .map_err(|e| retryable("session_connect_timeout", format!("connecting the web session: {e}")))
    }

    async fn start_pairing(&self, line: &Line, method: &PairingMethod) -> Result<(), ProviderError> {
        let session = self.session(line);
        let mut running = session.running.lock().await;
        if let Some(previous) = running.take() {
            Self::stop(previous, false).await;
        }
        // A new pairing starts from a new device.
        session
            .backend
            .clear()
            .await
            .map_err(|e| retryable("session_state_unwritable", format!("clearing the session state: {e}")))?;
        let phone_code = match method {
            PairingMethod::Qr => None,
            PairingMethod::PhoneCode { phone } => {
                Some(PairCodeOptions { phone_number: phone.digits().to_owned(), ..PairCodeOptions::default() })
            }
        };
        *running = Some(self.start(line, &session, None, phone_code).await?);
        Ok(())
    }

    async fn stop_pairing(&self, line: &Line) {
        let Some(session) = self.existing(&line.id) else { return };
        let mut running = session.running.lock().await;
        // A client that paired meanwhile keeps running.
        if running.as_ref().is_some_and(|r| !r.client.is_logged_in()) {
            if let Some(r) = running.take() {
                Self::stop(r, false).await;
            }
        }
    }

    async fn logout(&self, line: &Line) -> Result<(), ProviderError> {
        // Also called for lines this node no longer runs (archived): then nothing is kept.
        let session = self.existing(&line.id).unwrap_or_else(|| Arc::new(self.new_session(line)));
        let mut running = session.running.lock().await;
        if let Some(r) = running.take() {
            Self::stop(r, true).await;
        }
        session
            .backend
            .clear()
            .await
            .map(|_| ())
            .map_err(|e| retryable("session_state_unwritable", format!("deleting the session state: {e}")))
    }

    async fn fetch_media(&self, line: &Line, media: &MediaRef) -> Result<FetchedMedia, ProviderError> {
        let handle =
            media.provider_media_id.as_deref().and_then(|h| MediaHandle::open(h, &self.opts.cipher)).ok_or_else(
                || ProviderError::new(ProviderErrorKind::Permanent, "media_not_found", "unknown media handle"),
            )?;
        let client = self.client(line).await?;
        let bytes = client
            .download_from_params(&handle.params())
            .await
            .map_err(|e| retryable("media_download_failed", format!("downloading the media from WhatsApp: {e}")))?;
        let content_type = media.mime_type.clone().unwrap_or_else(|| media::default_mime(media.kind).to_owned());
        Ok(FetchedMedia { bytes, content_type })
    }
}
