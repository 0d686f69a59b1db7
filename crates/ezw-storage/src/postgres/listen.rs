//! One connection per node that `LISTEN`s on this schema's channels and fans notifications out:
//! wake-ups to the workers (outbox, webhooks, QR sessions) ([`PgWakeSource`]) and live hints to the [`PgLiveHub`](super::PgLiveHub).
//! When the connection drops it reconnects with backoff, then wakes every worker and tells the
//! hub that hints may have been missed.

use std::sync::Arc;
use std::time::Duration;

use ezw_core::ports::{Wake, WakeSource};
use ezw_core::{Error, ErrorKind, Result};
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

/// What the listener tells the live hub.
#[derive(Debug, Clone)]
pub(crate) enum LiveSignal {
    /// A hint's notification payload (`<seq> <json>`).
    Hint(Arc<str>),
    /// The listener reconnected: notifications sent meanwhile are lost.
    Reconnected,
}

/// Channel names of a schema.
pub(crate) struct Channels {
    pub(crate) outbox: String,
    pub(crate) webhooks: String,
    pub(crate) sessions: String,
    pub(crate) live: String,
}

impl Channels {
    pub(crate) fn of(schema: &str) -> Self {
        Self {
            outbox: format!("ezw_outbox_{schema}"),
            webhooks: format!("ezw_webhooks_{schema}"),
            sessions: format!("ezw_sessions_{schema}"),
            live: format!("ezw_live_{schema}"),
        }
    }
}

/// Where live signals go: one unbounded queue per hub, so a hub that falls behind under load
/// catches up later instead of losing hints.
type LiveSubscribers = Arc<std::sync::Mutex<Vec<mpsc::UnboundedSender<LiveSignal>>>>;

/// The listening connection's task and its fan-out channels.
pub(crate) struct Listener {
    wakes: broadcast::Sender<Wake>,
    live: LiveSubscribers,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Connects (failing when the database is unreachable) and starts listening.
    pub(crate) async fn start(config: Config, schema: &str) -> Result<Self> {
        let channels = Channels::of(schema);
        let (wakes, _) = broadcast::channel(64);
        let live = LiveSubscribers::default();
        let first = connect(&config, &channels).await?;
        let task = tokio::spawn(run(config, channels, first, wakes.clone(), live.clone()));
        Ok(Self { wakes, live, task })
    }

    /// The live signals from now on (for a hub).
    pub(crate) fn subscribe_live(&self) -> mpsc::UnboundedReceiver<LiveSignal> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(tx);
        rx
    }

    /// A handle for workers.
    pub(crate) fn wake_source(&self) -> PgWakeSource {
        PgWakeSource { wakes: self.wakes.clone() }
    }
}

/// Notifications of one connection, until it ends.
type Notifications = mpsc::UnboundedReceiver<tokio_postgres::Notification>;

async fn connect(config: &Config, channels: &Channels) -> Result<(Client, Notifications)> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(|e| {
        Error::new(ErrorKind::Temporary, "storage_unavailable", format!("connecting to PostgreSQL failed: {e}"))
            .with_source(e)
    })?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the PostgreSQL listening connection failed");
                    return;
                }
                None => return,
            }
        }
    });
    client
        .batch_execute(&format!(
            "LISTEN {}; LISTEN {}; LISTEN {}; LISTEN {};",
            channels.outbox, channels.webhooks, channels.sessions, channels.live
        ))
        .await
        .map_err(super::db_err)?;
    Ok((client, rx))
}

async fn run(
    config: Config,
    channels: Channels,
    first: (Client, Notifications),
    wakes: broadcast::Sender<Wake>,
    live: LiveSubscribers,
) {
    let send_live = |signal: LiveSignal| {
        let mut hubs = live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        hubs.retain(|hub| hub.send(signal.clone()).is_ok());
    };
    let mut current = first;
    loop {
        let (client, mut notifications) = current;
        while let Some(n) = notifications.recv().await {
            let channel = n.channel();
            if channel == channels.live {
                send_live(LiveSignal::Hint(n.payload().into()));
            } else if channel == channels.outbox {
                let _ = wakes.send(Wake::Outbox);
            } else if channel == channels.webhooks {
                let _ = wakes.send(Wake::Webhooks);
            } else if channel == channels.sessions {
                let _ = wakes.send(Wake::Sessions);
            }
        }
        drop(client);
        let mut pause = Duration::from_millis(100);
        current = loop {
            tokio::time::sleep(pause).await;
            match connect(&config, &channels).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "reconnecting the PostgreSQL listener failed; retrying");
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        };
        tracing::info!("the PostgreSQL listener reconnected");
        // Whatever was notified meanwhile is lost: look at the queues now, and tell the hub.
        let _ = wakes.send(Wake::Outbox);
        let _ = wakes.send(Wake::Webhooks);
        let _ = wakes.send(Wake::Sessions);
        send_live(LiveSignal::Reconnected);
    }
}

/// Sends wake-ups after commits: `wake` only sets a flag; a task sends one `pg_notify` per
/// raised flag on a pooled connection, then pauses briefly, so a burst of writes costs a few
/// notifications. Notifying from the writing transaction instead would serialize commits:
/// PostgreSQL takes a database-wide lock to commit a transaction that notifies.
pub(crate) struct Notifier {
    outbox: std::sync::atomic::AtomicBool,
    webhooks: std::sync::atomic::AtomicBool,
    sessions: std::sync::atomic::AtomicBool,
    signal: tokio::sync::Notify,
}

/// Pause between notification rounds (the coalescing window).
const NOTIFY_PAUSE: Duration = Duration::from_millis(2);

impl Notifier {
    /// The notifier and its task (abort the task when the store goes).
    pub(crate) fn start(pool: deadpool_postgres::Pool, schema: &str) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let notifier = Arc::new(Self {
            outbox: std::sync::atomic::AtomicBool::new(false),
            webhooks: std::sync::atomic::AtomicBool::new(false),
            sessions: std::sync::atomic::AtomicBool::new(false),
            signal: tokio::sync::Notify::new(),
        });
        let n = notifier.clone();
        let channels = Channels::of(schema);
        let task = tokio::spawn(async move {
            loop {
                let notified = n.signal.notified();
                let outbox = n.outbox.swap(false, std::sync::atomic::Ordering::AcqRel);
                let webhooks = n.webhooks.swap(false, std::sync::atomic::Ordering::AcqRel);
                let sessions = n.sessions.swap(false, std::sync::atomic::Ordering::AcqRel);
                if outbox || webhooks || sessions {
                    let raised = Raised { outbox, webhooks, sessions };
                    if let Err(e) = send(&pool, &channels, raised).await {
                        tracing::warn!(error = %e, "sending a wake-up failed; other nodes notice the work at their poll");
                    }
                    tokio::time::sleep(NOTIFY_PAUSE).await;
                    continue;
                }
                notified.await;
            }
        });
        (notifier, task)
    }

    /// Raises a wake-up; sent soon after.
    pub(crate) fn wake(&self, wake: Wake) {
        let flag = match wake {
            Wake::Outbox => &self.outbox,
            Wake::Webhooks => &self.webhooks,
            Wake::Sessions => &self.sessions,
        };
        if !flag.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.signal.notify_one();
        }
    }
}

/// The wake-ups one notification round sends.
#[derive(Clone, Copy)]
struct Raised {
    outbox: bool,
    webhooks: bool,
    sessions: bool,
}

async fn send(pool: &deadpool_postgres::Pool, channels: &Channels, raised: Raised) -> Result<()> {
    let conn = pool.get().await.map_err(|e| Error::temporary(format!("no connection for a wake-up: {e}")))?;
    let stmt = conn.prepare_cached("SELECT pg_notify($1, '')").await.map_err(super::db_err)?;
    let rounds = [
        (raised.outbox, &channels.outbox),
        (raised.webhooks, &channels.webhooks),
        (raised.sessions, &channels.sessions),
    ];
    for (_, channel) in rounds.into_iter().filter(|(raised, _)| *raised) {
        conn.execute(&stmt, &[channel]).await.map_err(super::db_err)?;
    }
    Ok(())
}

/// Cross-node wake-ups from `LISTEN/NOTIFY` (see [`PgStore::wake_source`](super::PgStore::wake_source)).
#[derive(Clone)]
pub struct PgWakeSource {
    wakes: broadcast::Sender<Wake>,
}

impl std::fmt::Debug for PgWakeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWakeSource").finish_non_exhaustive()
    }
}

impl WakeSource for PgWakeSource {
    fn subscribe(&self) -> broadcast::Receiver<Wake> {
        self.wakes.subscribe()
    }
}
