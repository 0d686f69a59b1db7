//! The [`Ezw`] runtime: ports wired together, services, and the background workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::model::ProviderKind;
use crate::ports::{
    Argon2Hasher, BlobStore, BroadcastHub, EventSink, HmacTokenSigner, LineProvider, LiveHub, PasswordHasher,
    ProviderEvent, Store, TokenSigner, WakeSource, WebhookTransport,
};
use crate::time::{Clock, SystemClock};

use super::{
    AuditService, AuthService, InboxService, IngestService, LinesService, MessagesService, OrgsService, WebhooksService,
};

/// Runtime settings. Defaults suit production; tests shorten them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EzwConfig {
    /// ID token lifetime (default 1 hour).
    pub id_token_ttl: Duration,
    /// Refresh token lifetime (default 30 days).
    pub refresh_token_ttl: Duration,
    /// How long idempotency records are kept (default 24 hours).
    pub idempotency_ttl: Duration,
    /// Send attempts before a message fails `retries_exhausted` (default 8).
    pub max_attempts: u32,
    /// Outbox lease (default 60 s): a crashed worker's jobs come back after it.
    pub lease: Duration,
    /// Jobs claimed per batch (default 256).
    pub claim_batch: u32,
    /// Backstop poll when no wake-up arrives (default 1 s).
    pub poll_interval: Duration,
    /// How long one provider call may take before its outcome is unknown (default 30 s).
    pub send_timeout: Duration,
    /// How long jobs of a non-sendable line wait before the next look (default 5 s).
    pub hold_interval: Duration,
    /// First retry delay (default 2 s), doubled per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    /// Longest retry delay (default 10 min).
    pub max_backoff: Duration,
    /// How long a webhook receiver may take to answer (default 15 s).
    pub webhook_timeout: Duration,
    /// A webhook whose deliveries have all failed for this long is disabled (default 5 days).
    pub webhook_disable_after: Duration,
    /// After a secret rotation, deliveries are also signed with the old secret this long
    /// (default 24 hours).
    pub webhook_secret_grace: Duration,
    /// Webhook delivery lease (default 60 s): a crashed node's deliveries come back after it.
    pub webhook_lease: Duration,
    /// How often a live stream sends a heartbeat and re-checks its session (default 15 s).
    pub live_heartbeat: Duration,
    /// How far back a live stream can resume with `Last-Event-ID` (default 5 minutes, and at
    /// most `live_replay_capacity` hints).
    pub live_replay_window: Duration,
    /// How many recent hints the live hub keeps for resuming (default 10,000).
    pub live_replay_capacity: usize,
    /// The public base URL of this deployment's `/media/...` route (e.g.
    /// `https://app.example.com`): signed media URLs are built on it, and the delivery worker
    /// gives providers such URLs for uploaded attachments. Without it (the default) attachment
    /// URLs answer 501 `media_url_unavailable` and attachment sends fail with that code.
    pub media_base_url: Option<url::Url>,
    /// This node's name among the nodes sharing a store (default: `node-` and 12 random hex
    /// digits). Session leases name their holder by it.
    pub node_id: String,
    /// How long a node holds a session-style line's lease without renewing it (default 30 s;
    /// renewed every third of it). A dead node's sessions move to another node after it.
    pub session_lease: Duration,
    /// Timing and limits of QR lines' lifecycle: code rotation and expiry, reconnect backoff,
    /// rate-limit waits.
    pub session_policy: crate::session::SessionPolicy,
}

impl Default for EzwConfig {
    fn default() -> Self {
        Self {
            id_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            idempotency_ttl: Duration::from_secs(86_400),
            max_attempts: 8,
            lease: Duration::from_secs(60),
            claim_batch: 256,
            poll_interval: Duration::from_secs(1),
            send_timeout: Duration::from_secs(30),
            hold_interval: Duration::from_secs(5),
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            webhook_timeout: Duration::from_secs(15),
            webhook_disable_after: Duration::from_secs(5 * 86_400),
            webhook_secret_grace: Duration::from_secs(86_400),
            webhook_lease: Duration::from_secs(60),
            live_heartbeat: Duration::from_secs(15),
            live_replay_window: Duration::from_secs(300),
            live_replay_capacity: 10_000,
            media_base_url: None,
            node_id: format!("node-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff),
            session_lease: Duration::from_secs(30),
            session_policy: crate::session::SessionPolicy::default(),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) live: Arc<dyn LiveHub>,
    pub(crate) providers: HashMap<ProviderKind, Arc<dyn LineProvider>>,
    pub(crate) hasher: Arc<dyn PasswordHasher>,
    pub(crate) signer: Arc<dyn TokenSigner>,
    pub(crate) outbox_wake: Notify,
    pub(crate) config: EzwConfig,
    pub(crate) events_rx: Mutex<Option<mpsc::UnboundedReceiver<ProviderEvent>>>,
    pub(crate) blobs: Option<Arc<dyn BlobStore>>,
    pub(crate) metrics: crate::metrics::Metrics,
    pub(crate) webhook_transport: Option<Arc<dyn WebhookTransport>>,
    pub(crate) webhook_wake: Notify,
    /// Wake-ups from other nodes, when the store is shared.
    pub(crate) wake_source: Option<Arc<dyn WakeSource>>,
    /// Seals webhook signing secrets at rest.
    pub(crate) secrets: crate::crypto::SecretCipher,
    /// Signs short-lived media URLs (HMAC-SHA256 key derived from the signing key).
    pub(crate) media_key: [u8; 32],
    /// Hands invitations to invitees.
    pub(crate) mailer: Arc<dyn crate::ports::Mailer>,
    /// Creates billing checkouts (`None`: the manual gateway on the runtime's clock).
    pub(crate) billing_gateway: Option<Arc<dyn crate::ports::BillingGateway>>,
    /// Login and signup throttling (in memory, per node).
    pub(crate) throttle: super::throttle::Throttle,
    /// Wakes the session supervisor (a pairing was requested).
    pub(crate) sessions_kick: Notify,
    /// The session drivers of the lines this node holds, by line.
    pub(crate) session_drivers:
        Mutex<HashMap<crate::ids::LineId, mpsc::UnboundedSender<crate::worker::sessions::DriverMsg>>>,
    this: std::sync::Weak<Inner>,
}

impl Inner {
    /// An owning handle to this runtime, for background tasks started from a borrowed one.
    pub(crate) fn self_arc(&self) -> Option<Arc<Inner>> {
        self.this.upgrade()
    }

    /// Wakes the webhook dispatcher (a change may have queued deliveries).
    pub(crate) fn wake_webhooks(&self) {
        self.webhook_wake.notify_one();
    }

    /// Wakes this node's session supervisor (and, through the store, the other nodes').
    pub(crate) fn kick_sessions(&self) {
        self.sessions_kick.notify_one();
    }

    /// Hands an input to the driver of `line` on this node; false when this node does not run
    /// the line's session.
    pub(crate) fn session_input(&self, line: &crate::ids::LineId, input: crate::session::Input) -> bool {
        let drivers = self.session_drivers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        drivers.get(line).is_some_and(|tx| tx.send(crate::worker::sessions::DriverMsg::Machine(input)).is_ok())
    }

    pub(crate) fn provider(&self, kind: ProviderKind) -> Result<&Arc<dyn LineProvider>> {
        self.providers.get(&kind).ok_or_else(|| {
            Error::new(
                crate::ErrorKind::Unsupported,
                "provider_not_configured",
                format!("no {} provider is configured in this deployment", kind.as_str()),
            )
        })
    }
}

/// The EZW runtime: cheap to clone, shared by every service and worker.
#[derive(Clone)]
pub struct Ezw {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Ezw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ezw").field("providers", &self.inner.providers.keys().collect::<Vec<_>>()).finish()
    }
}

/// Builds an [`Ezw`].
#[must_use]
pub struct EzwBuilder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    live: Option<Arc<dyn LiveHub>>,
    providers: HashMap<ProviderKind, Arc<dyn LineProvider>>,
    hasher: Arc<dyn PasswordHasher>,
    signing_key: Option<Vec<u8>>,
    config: EzwConfig,
    sink: EventSink,
    events_rx: mpsc::UnboundedReceiver<ProviderEvent>,
    blobs: Option<Arc<dyn BlobStore>>,
    webhook_transport: Option<Arc<dyn WebhookTransport>>,
    mailer: Arc<dyn crate::ports::Mailer>,
    billing_gateway: Option<Arc<dyn crate::ports::BillingGateway>>,
    throttle_limits: super::ThrottleLimits,
    wake_source: Option<Arc<dyn WakeSource>>,
}

impl EzwBuilder {
    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The live hub (default: an in-process [`BroadcastHub`] on the runtime's clock, keeping
    /// [`EzwConfig::live_replay_capacity`] hints of [`EzwConfig::live_replay_window`]).
    pub fn live_hub(mut self, live: Arc<dyn LiveHub>) -> Self {
        self.live = Some(live);
        self
    }

    /// Wake-ups from the other nodes sharing the store (for PostgreSQL: `PgStore::wake_source`).
    /// Without one, workers notice other nodes' work at their backstop poll.
    pub fn wake_source(mut self, source: Arc<dyn WakeSource>) -> Self {
        self.wake_source = Some(source);
        self
    }

    /// Registers a provider for its kind.
    pub fn provider(mut self, provider: Arc<dyn LineProvider>) -> Self {
        self.providers.insert(provider.kind(), provider);
        self
    }

    /// The password hasher (default: Argon2id).
    pub fn password_hasher(mut self, hasher: Arc<dyn PasswordHasher>) -> Self {
        self.hasher = hasher;
        self
    }

    /// The key ID tokens are signed with (required, at least 32 bytes).
    pub fn signing_key(mut self, key: &[u8]) -> Self {
        self.signing_key = Some(key.to_vec());
        self
    }

    /// Where media bytes are kept (inbound media is fetched into it). Without one, inbound
    /// media stays a provider reference.
    pub fn blob_store(mut self, blobs: Arc<dyn BlobStore>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// The transport outgoing webhooks are POSTed through. Without one, webhook configuration
    /// answers 501 `webhooks_not_configured` and no deliveries are made.
    pub fn webhook_transport(mut self, transport: Arc<dyn WebhookTransport>) -> Self {
        self.webhook_transport = Some(transport);
        self
    }

    /// Where invitations go (default: [`LogMailer`](crate::ports::LogMailer), which logs that
    /// an invitation was issued and leaves passing the token on to the inviting admin).
    pub fn mailer(mut self, mailer: Arc<dyn crate::ports::Mailer>) -> Self {
        self.mailer = mailer;
        self
    }

    /// Where checkout sessions come from (default:
    /// [`ManualBillingGateway`](crate::ports::ManualBillingGateway), settled by an operator).
    pub fn billing_gateway(mut self, gateway: Arc<dyn crate::ports::BillingGateway>) -> Self {
        self.billing_gateway = Some(gateway);
        self
    }

    /// Login and signup throttling limits (default: [`ThrottleLimits::default`](super::ThrottleLimits)).
    pub fn throttle_limits(mut self, limits: super::ThrottleLimits) -> Self {
        self.throttle_limits = limits;
        self
    }

    /// Runtime settings (default: [`EzwConfig::default`]).
    pub fn config(mut self, config: EzwConfig) -> Self {
        self.config = config;
        self
    }

    /// The sink session-style providers push events into; pass it to their constructors.
    #[must_use]
    pub fn event_sink(&self) -> EventSink {
        self.sink.clone()
    }

    /// The clock this runtime will use (to hand to providers).
    #[must_use]
    pub fn clock_handle(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Builds the runtime.
    ///
    /// # Errors
    /// `InvalidInput` (`signing_key`) when the signing key is missing or shorter than 32 bytes.
    pub fn build(self) -> Result<Ezw> {
        let key = self.signing_key.ok_or_else(|| Error::invalid("signing_key", "a signing key is required"))?;
        if key.len() < 32 {
            return Err(Error::invalid("signing_key", "the signing key must be at least 32 bytes"));
        }
        let live = match self.live {
            Some(live) => live,
            None => Arc::new(BroadcastHub::new(
                self.config.live_replay_capacity,
                self.config.live_replay_window,
                self.clock.clone(),
            )),
        };
        Ok(Ezw {
            inner: Arc::new_cyclic(|this| Inner {
                store: self.store,
                clock: self.clock,
                live,
                providers: self.providers,
                hasher: self.hasher,
                signer: Arc::new(HmacTokenSigner::new(&key)),
                outbox_wake: Notify::new(),
                config: self.config,
                events_rx: Mutex::new(Some(self.events_rx)),
                blobs: self.blobs,
                metrics: crate::metrics::Metrics::default(),
                webhook_transport: self.webhook_transport,
                webhook_wake: Notify::new(),
                wake_source: self.wake_source,
                secrets: crate::crypto::SecretCipher::new(&crate::crypto::derive_key(&key, "webhook-secrets")),
                media_key: crate::crypto::derive_key(&key, "media-urls"),
                mailer: self.mailer,
                billing_gateway: self.billing_gateway,
                throttle: super::throttle::Throttle::new(self.throttle_limits),
                sessions_kick: Notify::new(),
                session_drivers: Mutex::new(HashMap::new()),
                this: this.clone(),
            }),
        })
    }
}

impl Ezw {
    /// Starts building a runtime on `store`.
    pub fn builder(store: Arc<dyn Store>) -> EzwBuilder {
        let (sink, events_rx) = EventSink::channel();
        EzwBuilder {
            store,
            clock: Arc::new(SystemClock),
            live: None,
            providers: HashMap::new(),
            hasher: Arc::new(Argon2Hasher),
            signing_key: None,
            config: EzwConfig::default(),
            sink,
            events_rx,
            blobs: None,
            webhook_transport: None,
            mailer: Arc::new(crate::ports::LogMailer),
            billing_gateway: None,
            throttle_limits: super::ThrottleLimits::default(),
            wake_source: None,
        }
    }

    /// Authentication: login, ID tokens, line tokens.
    #[must_use]
    pub fn auth(&self) -> AuthService<'_> {
        AuthService { inner: &self.inner }
    }

    /// Organizations and members.
    #[must_use]
    pub fn orgs(&self) -> OrgsService<'_> {
        OrgsService { inner: &self.inner }
    }

    /// Lines, tokens, health.
    #[must_use]
    pub fn lines(&self) -> LinesService<'_> {
        LinesService { inner: &self.inner }
    }

    /// Conversations.
    #[must_use]
    pub fn inbox(&self) -> InboxService<'_> {
        InboxService { inner: &self.inner }
    }

    /// Vendor webhooks.
    #[must_use]
    pub fn ingest(&self) -> IngestService<'_> {
        IngestService { inner: &self.inner }
    }

    /// Sends and message reads.
    #[must_use]
    pub fn messages(&self) -> MessagesService<'_> {
        MessagesService { inner: &self.inner }
    }

    /// Outgoing webhooks: configuration, delivery evidence, redelivery, audit trail.
    #[must_use]
    pub fn webhooks(&self) -> WebhooksService<'_> {
        WebhooksService { inner: &self.inner }
    }

    /// The audit trail.
    #[must_use]
    pub fn audit(&self) -> AuditService<'_> {
        AuditService { inner: &self.inner }
    }

    /// Team administration: members, invitations, roles.
    #[must_use]
    pub fn members(&self) -> super::MembersService<'_> {
        super::MembersService { inner: &self.inner }
    }

    /// Billing: status, recovery checkout, and the operator's settlement calls.
    #[must_use]
    pub fn billing(&self) -> super::BillingService<'_> {
        super::BillingService { inner: &self.inner }
    }

    /// Media: signed URLs for stored attachments, and reading through them.
    #[must_use]
    pub fn media(&self) -> super::MediaService<'_> {
        super::MediaService { inner: &self.inner }
    }

    /// Live streams of refresh hints (what SSE serves).
    #[must_use]
    pub fn live_stream(&self) -> super::LiveService<'_> {
        super::LiveService { inner: &self.inner }
    }

    /// This node's name among the nodes sharing the store ([`EzwConfig::node_id`]).
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    /// The storage port.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The clock.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Delivery metrics in the Prometheus text format (counters since start, queue gauges now).
    ///
    /// # Errors
    /// Storage errors reading the gauges.
    pub async fn metrics_text(&self) -> Result<String> {
        let stats = self.inner.store.outbox_stats().await?;
        Ok(self.inner.metrics.render(&stats))
    }

    /// The live hub (SSE subscribes here).
    #[must_use]
    pub fn live(&self) -> &Arc<dyn LiveHub> {
        &self.inner.live
    }

    /// Starts the background workers: delivery, provider events, idempotency purge, and webhook
    /// dispatch when a transport is configured.
    ///
    /// # Errors
    /// `already_started` (409) when the workers of this runtime were started before.
    pub fn start(&self) -> Result<WorkerHandle> {
        let rx = self
            .inner
            .events_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| Error::conflict("already_started", "this runtime's workers were already started"))?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(crate::worker::delivery_loop(self.inner.clone(), stop_rx.clone())),
            tokio::spawn(super::events::event_loop(self.inner.clone(), rx, stop_rx.clone())),
            tokio::spawn(crate::worker::purge_loop(self.inner.clone(), stop_rx.clone())),
        ];
        if let Some(source) = &self.inner.wake_source {
            tasks.push(tokio::spawn(crate::worker::wake_loop(self.inner.clone(), source.subscribe(), stop_rx.clone())));
        }
        if self.inner.providers.values().any(|p| p.capabilities().qr_pairing) {
            // Session lines (QR pairing): leases, drivers and their lifecycle.
            tasks.push(tokio::spawn(crate::worker::sessions::session_loop(self.inner.clone(), stop_rx.clone())));
        }
        if let Some(transport) = self.inner.webhook_transport.clone() {
            tasks.push(tokio::spawn(crate::worker::webhooks::dispatch_loop(self.inner.clone(), transport, stop_rx)));
        }
        Ok(WorkerHandle { stop: stop_tx, tasks })
    }
}

/// Running background workers.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Stops claiming new work and waits up to `deadline` for in-flight provider calls to be
    /// recorded. Returns whether everything finished in time (unfinished jobs come back after
    /// their lease).
    pub async fn shutdown(self, deadline: Duration) -> bool {
        let _ = self.stop.send(true);
        let all = async {
            for t in self.tasks {
                let _ = t.await;
            }
        };
        tokio::time::timeout(deadline, all).await.is_ok()
    }
}
