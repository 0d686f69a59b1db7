//! Starting and stopping the server: data directory, server key, storage, providers, workers,
//! the demo workspace and the HTTP listener. Used by the `ezw-server` binary and by tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ezw_core::crypto::{derive_key, SecretCipher};
use ezw_core::ports::{BillingGateway, Mailer};
use ezw_core::{Clock, Error, Ezw, EzwBuilder, EzwConfig, Result, SystemClock, WorkerHandle};
use ezw_providers::meta::{MetaOptions, MetaProvider};
use ezw_providers::sim::SimProvider;
use ezw_providers::twilio::{TwilioOptions, TwilioProvider};
use ezw_providers::waha::{WahaOptions, WahaProvider};
use ezw_providers::webhook::HttpWebhookTransport;
use ezw_storage::blob::FsBlobStore;
use ezw_storage::postgres::{PgOptions, PgStore};
use ezw_storage::sqlite::SqliteStore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::demo::{ensure_demo, write_private, DemoInfo};
use crate::routes::router;
use crate::state::AppState;

/// How to run the server.
#[derive(Clone)]
#[must_use]
pub struct ServerOptions {
    bind: SocketAddr,
    data_dir: PathBuf,
    database_url: Option<String>,
    database_schema: Option<String>,
    demo: bool,
    clock: Arc<dyn Clock>,
    config: EzwConfig,
    shutdown_grace: Duration,
    workers: bool,
    public_url: Option<url::Url>,
    provider_timeout: Duration,
    allow_private_webhook_targets: bool,
    mailer: Option<Arc<dyn Mailer>>,
    billing_gateway: Option<Arc<dyn BillingGateway>>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("demo", &self.demo)
            .finish_non_exhaustive()
    }
}

impl ServerOptions {
    /// Listen on `bind`, keep data in `data_dir`.
    pub fn new(bind: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind,
            data_dir: data_dir.into(),
            database_url: None,
            database_schema: None,
            demo: false,
            clock: Arc::new(SystemClock),
            config: EzwConfig::default(),
            shutdown_grace: Duration::from_secs(10),
            workers: true,
            public_url: None,
            provider_timeout: Duration::from_secs(30),
            allow_private_webhook_targets: false,
            mailer: None,
            billing_gateway: None,
        }
    }

    /// Where invitations go (default: the runtime's `LogMailer`, which never logs the token).
    pub fn mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// Where checkout sessions come from (default: the manual gateway, settled with
    /// `ezw-server billing settle`).
    pub fn billing_gateway(mut self, gateway: Arc<dyn BillingGateway>) -> Self {
        self.billing_gateway = Some(gateway);
        self
    }

    /// The mailer and billing gateway, when set, on `builder`.
    fn access_ports(&self, mut builder: EzwBuilder) -> EzwBuilder {
        if let Some(mailer) = self.mailer.clone() {
            builder = builder.mailer(mailer);
        }
        if let Some(gateway) = self.billing_gateway.clone() {
            builder = builder.billing_gateway(gateway);
        }
        builder
    }

    /// Let webhooks target loopback, private and link-local addresses (default off: the SSRF
    /// guard refuses them). For tests and local development.
    pub fn allow_private_webhook_targets(mut self, allow: bool) -> Self {
        self.allow_private_webhook_targets = allow;
        self
    }

    /// How long one vendor HTTP call may take before it counts as timed out (default 30 s).
    pub fn provider_timeout(mut self, timeout: Duration) -> Self {
        self.provider_timeout = timeout;
        self
    }

    /// The public base URL vendors call (default `http://<bind address>`). Twilio signs
    /// webhooks over it and status callbacks are sent to it, so it must be what the vendor sees.
    pub fn public_url(mut self, url: Option<url::Url>) -> Self {
        self.public_url = url;
        self
    }

    /// Run the background workers (default on). Off, sends are accepted and stay queued: for
    /// benchmarks of the accept path and for inspecting queued state.
    pub fn workers(mut self, run: bool) -> Self {
        self.workers = run;
        self
    }

    /// The database (default: `sqlite://<data-dir>/ezw.db`; see [`database`]).
    pub fn database_url(mut self, url: Option<String>) -> Self {
        self.database_url = url;
        self
    }

    /// The PostgreSQL schema to use (default `public`); several deployments can share one
    /// database in different schemas. Ignored for SQLite.
    pub fn database_schema(mut self, schema: Option<String>) -> Self {
        self.database_schema = schema;
        self
    }

    /// Create or reuse the demo workspace (default off).
    pub fn demo(mut self, demo: bool) -> Self {
        self.demo = demo;
        self
    }

    /// The clock (default: the system clock; tests pass a manual clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runtime settings.
    pub fn config(mut self, config: EzwConfig) -> Self {
        self.config = config;
        self
    }

    /// How long shutdown waits for in-flight work (default 10 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The runtime (for embedding tests).
    pub ezw: Ezw,
    /// The simulator provider (a control handle for demos and tests).
    pub sim: SimProvider,
    /// The SQLite store (for its writer statistics), when the server runs on SQLite.
    pub sqlite: Option<Arc<SqliteStore>>,
    /// The demo workspace, when started with `--demo`.
    pub demo: Option<DemoInfo>,
    stop: oneshot::Sender<()>,
    http: JoinHandle<std::io::Result<()>>,
    workers: Option<WorkerHandle>,
    grace: Duration,
}

/// Where the data lives, from `--database-url`.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// The embedded SQLite file at this path.
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by every node (`postgres://` or `postgresql://` URL).
    Postgres(String),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            // The URL may carry a password.
            Self::Postgres(_) => f.write_str("Postgres([redacted])"),
        }
    }
}

/// Resolves `--database-url`: empty means `sqlite://<data-dir>/ezw.db`; `sqlite://path` (or a
/// bare path) a SQLite file; `postgres://...` or `postgresql://...` PostgreSQL.
///
/// # Errors
/// `unsupported_database` for other schemes.
pub fn database(database_url: Option<&str>, data_dir: &Path) -> Result<Database> {
    let Some(url) = database_url.filter(|u| !u.is_empty()) else {
        return Ok(Database::Sqlite(data_dir.join("ezw.db")));
    };
    if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        return Ok(Database::Sqlite(PathBuf::from(rest)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Database::Postgres(url.to_owned()));
    }
    if url.contains("://") {
        return Err(Error::new(
            ezw_core::ErrorKind::Unsupported,
            "unsupported_database",
            format!(
                "unsupported database URL scheme in '{}': this build supports sqlite and postgres",
                url.split("://").next().unwrap_or("")
            ),
        ));
    }
    Ok(Database::Sqlite(PathBuf::from(url)))
}

/// The store a server runs on, with what the PostgreSQL backend adds for several nodes.
struct Storage {
    store: Arc<dyn ezw_core::ports::Store>,
    sqlite: Option<Arc<SqliteStore>>,
    postgres: Option<Arc<PgStore>>,
}

async fn open_storage(database: &Database, schema: Option<&str>) -> Result<Storage> {
    match database {
        Database::Sqlite(path) => {
            let store = Arc::new(SqliteStore::open(path)?);
            tracing::info!(database = %path.display(), "storage ready (SQLite)");
            Ok(Storage { store: store.clone(), sqlite: Some(store), postgres: None })
        }
        Database::Postgres(url) => {
            let mut options = PgOptions::new(url.clone());
            if let Some(schema) = schema {
                options = options.schema(schema);
            }
            let store = Arc::new(PgStore::connect(options).await?);
            tracing::info!(schema = store.schema(), "storage ready (PostgreSQL)");
            Ok(Storage { store: store.clone(), sqlite: None, postgres: Some(store) })
        }
    }
}

/// Reads the server key from `<data-dir>/server.key`, generating it on first start.
fn server_key(data_dir: &Path) -> Result<Vec<u8>> {
    let path = data_dir.join("server.key");
    match std::fs::read_to_string(&path) {
        Ok(hex) => decode_hex(hex.trim())
            .ok_or_else(|| Error::internal(format!("{} is not a 64-digit hex key", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = ezw_core::crypto::random_key();
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            write_private(&path, hex.as_bytes())?;
            Ok(key.to_vec())
        }
        Err(e) => Err(Error::internal(format!("reading {}: {e}", path.display()))),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The HTTP client providers share: bounded timeouts, a few redirects (media CDNs), no proxy
/// surprises.
fn provider_http_client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("ezw/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::internal(format!("building the HTTP client: {e}")))
}

/// Starts the server: storage, runtime, workers, demo, listener.
///
/// # Errors
/// When the data directory, key, database or listener cannot be set up.
pub async fn start(options: ServerOptions) -> Result<RunningServer> {
    std::fs::create_dir_all(&options.data_dir)
        .map_err(|e| Error::internal(format!("creating data dir {}: {e}", options.data_dir.display())))?;
    let key = server_key(&options.data_dir)?;
    let storage = open_storage(
        &database(options.database_url.as_deref(), &options.data_dir)?,
        options.database_schema.as_deref(),
    )
    .await?;

    let listener = tokio::net::TcpListener::bind(options.bind)
        .await
        .map_err(|e| Error::internal(format!("binding {}: {e}", options.bind)))?;
    let addr = listener.local_addr().map_err(|e| Error::internal(format!("local address: {e}")))?;
    let public_url = match options.public_url.clone() {
        Some(url) => url,
        None => url::Url::parse(&format!("http://{addr}")).map_err(|e| Error::internal(format!("public URL: {e}")))?,
    };

    let cipher = SecretCipher::new(&derive_key(&key, "ezw credentials v1"));
    let http = provider_http_client(options.provider_timeout)?;
    let blobs = Arc::new(FsBlobStore::open(options.data_dir.join("blobs"))?);
    let mut builder = ezw_core::Ezw::builder(storage.store.clone()).clock(options.clock.clone());
    if let Some(pg) = &storage.postgres {
        // Several nodes: wake-ups and live hints cross nodes through LISTEN/NOTIFY.
        let config = &options.config;
        builder = builder.wake_source(Arc::new(pg.wake_source())).live_hub(
            pg.live_hub(config.live_replay_capacity, config.live_replay_window, options.clock.clone()).await?,
        );
    }
    let builder = builder
        .config(runtime_config(&options.config, &public_url))
        .blob_store(blobs)
        .webhook_transport(Arc::new(HttpWebhookTransport::new(options.allow_private_webhook_targets)));
    let builder = options.access_ports(builder);
    let sim = SimProvider::new(options.clock.clone(), builder.event_sink());
    // QR lines run in-process by `whatsapp-rust`, their state sealed in this server's storage.
    #[cfg(feature = "web-session-native")]
    let builder = {
        let store: Arc<dyn ezw_core::ports::SessionStore> = storage.store.clone();
        let web = ezw_providers::web_native::WebSessionProvider::new(ezw_providers::web_native::WebSessionOptions {
            store,
            cipher: cipher.clone(),
            clock: options.clock.clone(),
            sink: builder.event_sink(),
            // Development servers serve their own media links on private addresses.
            allow_private_media: options.allow_private_webhook_targets,
        });
        builder.provider(Arc::new(web))
    };
    let meta = MetaProvider::new(MetaOptions { http: http.clone(), cipher: cipher.clone() });
    // QR lines served by a WAHA sidecar, which posts its events to `{public_url}/hooks/waha/{lineId}`.
    let waha = WahaProvider::new(WahaOptions::new(
        http.clone(),
        cipher.clone(),
        public_url.clone(),
        options.clock.clone(),
        builder.event_sink(),
    ));
    let twilio = TwilioProvider::new(TwilioOptions {
        http,
        cipher,
        public_url: public_url.clone(),
        clock: options.clock.clone(),
    });
    let ezw = builder
        .provider(Arc::new(sim.clone()))
        .provider(Arc::new(meta))
        .provider(Arc::new(twilio))
        .provider(Arc::new(waha))
        .signing_key(&derive_key(&key, "ezw id tokens v1"))
        .build()?;
    let workers = if options.workers { Some(ezw.start()?) } else { None };

    let demo =
        if options.demo { Some(ensure_demo(&ezw, &options.data_dir, &format!("http://{addr}")).await?) } else { None };

    let state = AppState { ezw: ezw.clone(), public_url: public_url.clone(), sim: Some(sim.clone()) };
    let app = router(state).layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response));
    let (stop, stopped) = oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        // Connect info gives handlers the peer address (login and signup throttling per address).
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%addr, public_url = %public_url, "ezw-server listening");
    Ok(RunningServer {
        addr,
        ezw,
        sim,
        sqlite: storage.sqlite,
        demo,
        stop,
        http,
        workers,
        grace: options.shutdown_grace,
    })
}

/// The runtime settings, with media links built on the public URL unless set explicitly.
fn runtime_config(config: &EzwConfig, public_url: &url::Url) -> EzwConfig {
    let mut config = config.clone();
    if config.media_base_url.is_none() {
        config.media_base_url = Some(public_url.clone());
    }
    config
}

/// Opens an existing data directory for administrative commands (`ezw-server billing ...`): the
/// database and server key, no listener, providers or workers. Safe beside running servers
/// (SQLite serialises the writers; PostgreSQL transactions do).
///
/// # Errors
/// `not_found` when the directory has no SQLite database or no server key yet (start the
/// server once).
pub async fn open_admin(data_dir: &Path, database_url: Option<&str>, schema: Option<&str>) -> Result<Ezw> {
    let database = database(database_url, data_dir)?;
    let missing = |what: String| Error::new(ezw_core::ErrorKind::NotFound, "not_found", what);
    if let Database::Sqlite(path) = &database {
        if !path.exists() {
            return Err(missing(format!("no database at {}", path.display())));
        }
    }
    if !data_dir.join("server.key").exists() {
        return Err(missing(format!("no server key in {}", data_dir.display())));
    }
    let key = server_key(data_dir)?;
    let storage = open_storage(&database, schema).await?;
    ezw_core::Ezw::builder(storage.store).signing_key(&derive_key(&key, "ezw id tokens v1")).build()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    tracing::error!("a request handler panicked");
    axum::response::IntoResponse::into_response(crate::error::ApiError(Error::internal("internal error")))
}

impl RunningServer {
    /// Graceful shutdown: stop accepting, finish in-flight requests, let workers record
    /// in-flight sends, then flush storage.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(self.grace, self.http).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "HTTP server error"),
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
            Err(_) => tracing::warn!("in-flight requests did not finish within the grace period"),
        }
        if let Some(workers) = self.workers {
            if !workers.shutdown(self.grace).await {
                tracing::warn!("workers did not stop within the grace period; leased jobs come back after their lease");
            }
        }
        // Dropping the runtime drops the store: the writer commits what is queued and stops.
        drop(self.ezw);
        drop(self.sim);
        drop(self.sqlite);
        tracing::info!("ezw-server stopped");
    }
}
