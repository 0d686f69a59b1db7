//! Pairing watchers: while a line pairs, poll its WAHA session on the provider's clock and report
//! what changes as [`SessionSignal`]s: each new QR pairing string (WAHA rotates them), the phone
//! pairing (`WORKING`), and WAHA giving up (`FAILED`). Polling works whichever node receives
//! WAHA's webhooks; the `session.status` webhook only makes `WORKING` arrive sooner.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ezw_core::ports::{EventSink, ProviderError, ProviderEvent, SessionSignal};
use ezw_core::{Clock, LineId};

use super::client::Client;
use super::config::WahaConfig;
use super::wire::status;

/// How long the first QR code of a pairing can be scanned (WhatsApp Web shows it for 60 s).
pub(crate) const FIRST_QR_TTL: Duration = Duration::from_secs(60);
/// How long each rotated QR code can be scanned (WhatsApp Web rotates every 20 s).
pub(crate) const QR_TTL: Duration = Duration::from_secs(20);
/// How long a phone pairing code can be typed.
pub(crate) const PHONE_CODE_TTL: Duration = Duration::from_secs(180);
/// A watcher gives up after this long even if nobody stops it.
const MAX_WATCH: Duration = Duration::from_secs(15 * 60);

/// What a watcher reports besides the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// Fetch and report QR codes while the session waits for a scan.
    Qr,
    /// Only watch for the outcome (phone-code pairing: the code was reported already).
    Outcome,
}

/// Everything a watcher needs, owned (it outlives the call that started it).
#[derive(Clone)]
pub(crate) struct Watcher {
    pub(crate) http: reqwest::Client,
    pub(crate) config: WahaConfig,
    pub(crate) session: String,
    pub(crate) line_id: LineId,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) sink: EventSink,
    pub(crate) interval: Duration,
}

impl Watcher {
    fn emit(&self, signal: SessionSignal) {
        let at = self.clock.now();
        self.sink.emit(ProviderEvent::Session { line_id: self.line_id.clone(), signal, at });
    }

    /// Polls until the phone pairs, WAHA gives up, or [`MAX_WATCH`] passes; first poll at once.
    pub(crate) async fn run(self, watch: Watch) {
        let client = Client::new(&self.http, &self.config);
        let deadline = self.clock.now().plus(MAX_WATCH);
        let mut last_qr: Option<String> = None;
        let mut waited_for_scan = false;
        while self.clock.now() < deadline {
            match client.session(&self.session).await {
                Ok(info) => match info.status.as_str() {
                    status::WORKING => {
                        self.emit(SessionSignal::Connected { account: info.me.as_ref().and_then(|m| m.account()) });
                        return;
                    }
                    status::SCAN_QR_CODE => {
                        waited_for_scan = true;
                        if watch == Watch::Qr {
                            self.report_qr(&client, &mut last_qr).await;
                        }
                    }
                    // WAHA stops offering codes (or someone stopped the session) mid-pairing.
                    status::FAILED => {
                        self.emit(SessionSignal::QrExhausted);
                        return;
                    }
                    status::STOPPED if waited_for_scan => {
                        self.emit(SessionSignal::QrExhausted);
                        return;
                    }
                    _ => {}
                },
                Err(e) => tracing::debug!(line = %self.line_id, error = %e, "polling a pairing WAHA session failed"),
            }
            self.clock.sleep(self.interval).await;
        }
        tracing::warn!(line = %self.line_id, "a WAHA pairing watcher ran out of time");
    }

    async fn report_qr(&self, client: &Client<'_>, last: &mut Option<String>) {
        match client.qr(&self.session).await {
            Ok(code) if last.as_deref() != Some(code.as_str()) => {
                let ttl = if last.is_none() { FIRST_QR_TTL } else { QR_TTL };
                *last = Some(code.clone());
                self.emit(SessionSignal::Qr { code, ttl });
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(line = %self.line_id, error = %e, "fetching a WAHA QR code failed"),
        }
    }

    /// Polls until the session waits for a scan (`SCAN_QR_CODE`), at most `tries` times.
    ///
    /// # Errors
    /// The last call's error, or `Retryable` `session_not_ready` when the session never got
    /// there (`Retryable`, so the driver reports the pairing as failed and a person may retry).
    pub(crate) async fn wait_for_scan(&self, tries: u32) -> Result<(), ProviderError> {
        let client = Client::new(&self.http, &self.config);
        let mut last = String::new();
        for attempt in 0..tries {
            if attempt > 0 {
                self.clock.sleep(self.interval).await;
            }
            let info = client.session(&self.session).await?;
            if info.status == status::SCAN_QR_CODE {
                return Ok(());
            }
            last = info.status;
        }
        Err(ProviderError::new(
            ezw_core::ports::ProviderErrorKind::Retryable,
            "session_not_ready",
            format!("the WAHA session did not become ready for pairing (last status {last})"),
        ))
    }
}

/// The running watchers, one per line at most.
#[derive(Default)]
pub(crate) struct Watchers {
    tasks: Mutex<HashMap<LineId, tokio::task::AbortHandle>>,
}

impl Watchers {
    /// Starts `watcher` for its line, stopping the line's previous one.
    pub(crate) fn start(&self, watcher: Watcher, watch: Watch) {
        let line = watcher.line_id.clone();
        let handle = tokio::spawn(watcher.run(watch)).abort_handle();
        if let Some(old) = self.tasks.lock().unwrap_or_else(PoisonError::into_inner).insert(line, handle) {
            old.abort();
        }
    }

    /// Stops the line's watcher, if any.
    pub(crate) fn stop(&self, line: &LineId) {
        if let Some(old) = self.tasks.lock().unwrap_or_else(PoisonError::into_inner).remove(line) {
            old.abort();
        }
    }

    /// Whether a watcher runs for the line.
    #[cfg(test)]
    pub(crate) fn is_running(&self, line: &LineId) -> bool {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).get(line).is_some_and(|h| !h.is_finished())
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for (_, handle) in self.tasks.get_mut().unwrap_or_else(PoisonError::into_inner).drain() {
            handle.abort();
        }
    }
}

/// Shared between provider clones.
pub(crate) type SharedWatchers = Arc<Watchers>;
