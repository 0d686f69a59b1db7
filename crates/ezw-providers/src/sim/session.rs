//! The simulator's QR flow: pairing codes that rotate on the provider's clock, a "phone" that
//! scans them, simulated credentials, and controls that play what WhatsApp does to a linked
//! device (unlink it, drop the connection, ban or limit the number).
//!
//! Everything is kept in the provider's memory: a restarted simulator has forgotten every
//! pairing, so its QR lines ask for a new scan (as a real session whose keys were lost would).

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ezw_core::crypto::hmac_sha256;
use ezw_core::ids::LineId;
use ezw_core::model::{LifecycleState, Line, PairingMethod};
use ezw_core::ports::{ProviderError, ProviderErrorKind, ProviderEvent, SessionSignal};
use ezw_core::{BoxFuture, Timestamp};

use super::config::SimConfig;
use super::provider::SimProvider;

/// What [`SimProvider::scan`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimScanError {
    /// The line shows no code now (no pairing started, or it ended).
    NoPairing,
    /// The code is not the one the line shows now (mistyped, or an older rotation).
    QrMismatch,
}

impl SimScanError {
    /// The machine-readable code (`no_pairing`, `qr_mismatch`).
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::NoPairing => "no_pairing",
            Self::QrMismatch => "qr_mismatch",
        }
    }
}

impl fmt::Display for SimScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoPairing => "the line shows no pairing code; request pairing first",
            Self::QrMismatch => "the code is not the one the line shows now",
        })
    }
}

impl std::error::Error for SimScanError {}

/// One simulated line's session, as the "WhatsApp servers" of the simulator see it.
#[derive(Debug, Default)]
pub(super) struct SimSession {
    /// Whether the line holds simulated credentials (it was paired and not logged out).
    paired: bool,
    /// The account (phone digits) the line pairs as.
    account: String,
    /// Bumped by every start, stop, scan and logout: a rotation task of an older generation
    /// stops at its next wake-up.
    generation: u64,
    /// The code that scans now (a QR string, or a phone code), while a pairing shows one.
    current: Option<String>,
    /// Reconnect attempts still to fail (a demo or test script).
    reconnect_failures: u32,
}

impl SimSession {
    /// Whether the line holds simulated credentials.
    pub(super) fn is_paired(&self) -> bool {
        self.paired
    }
}

/// The QR pairing string of rotation `rotation` of pairing `generation` of `line`, shaped like
/// WhatsApp Web's: `2@<ref>,<noise public key>,<identity public key>,<adv secret>` (base64). The
/// keys belong to the pairing; the reference changes with every rotation.
pub(super) fn qr_string(line: &LineId, generation: u64, rotation: u32) -> String {
    let seed = format!("{line}|{generation}");
    let reference = hmac_sha256(b"ezw-sim qr ref", format!("{seed}|{rotation}").as_bytes());
    let noise = hmac_sha256(b"ezw-sim noise key", seed.as_bytes());
    let identity = hmac_sha256(b"ezw-sim identity key", seed.as_bytes());
    let adv = hmac_sha256(b"ezw-sim adv secret", seed.as_bytes());
    format!(
        "2@{},{},{},{}",
        STANDARD.encode(&reference[..24]),
        STANDARD.encode(noise),
        STANDARD.encode(identity),
        STANDARD.encode(adv)
    )
}

/// The phone pairing code of a rotation, shaped like WhatsApp's: 8 characters of an alphabet
/// without look-alikes, as `ABCD-EFGH`.
pub(super) fn phone_code(line: &LineId, generation: u64, rotation: u32) -> String {
    const ALPHABET: &[u8; 32] = b"123456789ABCDEFGHJKLMNPQRSTVWXYZ";
    let bytes = hmac_sha256(b"ezw-sim phone code", format!("{line}|{generation}|{rotation}").as_bytes());
    let chars: Vec<char> = bytes[..8].iter().map(|b| char::from(ALPHABET[usize::from(b % 32)])).collect();
    format!("{}-{}", chars[..4].iter().collect::<String>(), chars[4..].iter().collect::<String>())
}

/// A code as typed or scanned, for comparison (phone codes ignore case and the dash).
fn normalize(code: &str, phone: bool) -> String {
    let code = code.trim();
    if phone {
        code.chars().filter(|c| *c != '-').map(|c| c.to_ascii_uppercase()).collect()
    } else {
        code.to_owned()
    }
}

/// The error a QR line without credentials answers sends and reconnects with.
pub(super) fn not_paired() -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::LineUnavailable,
        "sim_not_paired",
        "the simulated line is not paired; scan its QR code",
    )
    .with_line_state(LifecycleState::QrRequired)
}

impl SimProvider {
    fn emit_session(&self, line: &LineId, signal: SessionSignal) -> bool {
        self.sink.emit(ProviderEvent::Session { line_id: line.clone(), signal, at: self.clock.now() })
    }

    /// Stores and emits code `rotation` of pairing `generation` if it is still the current
    /// pairing; returns when it expires, or `None` when the pairing is over.
    fn issue(&self, line: &LineId, generation: u64, rotation: u32, phone: bool, ttl: Duration) -> Option<Timestamp> {
        let code = if phone { phone_code(line, generation, rotation) } else { qr_string(line, generation, rotation) };
        {
            let mut st = self.state();
            let session = st.sessions.get_mut(line).filter(|s| s.generation == generation)?;
            session.current = Some(code.clone());
        }
        let signal = if phone { SessionSignal::PhoneCode { code, ttl } } else { SessionSignal::Qr { code, ttl } };
        self.emit_session(line, signal).then(|| self.clock.now().plus(ttl))
    }

    /// Ends pairing `generation` (no more codes) if it is still the current one; returns whether
    /// it was.
    fn end_codes(&self, line: &LineId, generation: u64) -> bool {
        let mut st = self.state();
        match st.sessions.get_mut(line).filter(|s| s.generation == generation) {
            Some(session) => {
                session.current = None;
                true
            }
            None => false,
        }
    }

    /// Forgets the line's credentials and starts a new pairing: the first code now, the next
    /// ones at each expiry, then `QrExhausted`.
    pub(super) fn begin_pairing(&self, line: &Line, method: &PairingMethod) -> Result<(), ProviderError> {
        let config = SimConfig::from_json(&line.provider_config)
            .map_err(|e| ProviderError::new(ProviderErrorKind::Permanent, "sim_bad_config", e.message().to_owned()))?;
        let phone = matches!(method, PairingMethod::PhoneCode { .. });
        let generation = {
            let mut st = self.state();
            let session = st.sessions.entry(line.id.clone()).or_default();
            session.paired = false;
            session.current = None;
            session.account = line.phone_number.digits().to_owned();
            session.generation += 1;
            session.generation
        };
        let Some(expires) = self.issue(&line.id, generation, 1, phone, config.code_ttl(1)) else { return Ok(()) };
        // Registered now, so the first expiry is on the clock before this call returns.
        let first_wait = self.clock.sleep_until(expires);
        tokio::spawn(self.clone().rotate(line.id.clone(), generation, phone, config, first_wait));
        Ok(())
    }

    /// Issues codes 2.. of a pairing at each expiry until it is replaced, scanned or stopped, or
    /// the codes run out.
    async fn rotate(
        self,
        line: LineId,
        generation: u64,
        phone: bool,
        config: SimConfig,
        first: BoxFuture<'static, ()>,
    ) {
        first.await;
        let mut rotation = 1;
        loop {
            if rotation >= config.qr_codes {
                if self.end_codes(&line, generation) {
                    self.emit_session(&line, SessionSignal::QrExhausted);
                }
                return;
            }
            rotation += 1;
            let Some(expires) = self.issue(&line, generation, rotation, phone, config.code_ttl(rotation)) else {
                return;
            };
            self.clock.sleep_until(expires).await;
        }
    }

    /// Stops issuing codes for the line (its pairing ended or was replaced).
    pub(super) fn halt_pairing(&self, line: &LineId) {
        if let Some(session) = self.state().sessions.get_mut(line) {
            session.generation += 1;
            session.current = None;
        }
    }

    /// Connects a QR line with its simulated credentials.
    pub(super) fn resume(&self, line: &LineId) -> Result<(), ProviderError> {
        let mut st = self.state();
        let session = st.sessions.entry(line.clone()).or_default();
        if session.reconnect_failures > 0 {
            session.reconnect_failures -= 1;
            return Err(ProviderError::new(
                ProviderErrorKind::Retryable,
                "sim_reconnect_failed",
                "simulated network failure while reconnecting",
            ));
        }
        if session.is_paired() {
            Ok(())
        } else {
            Err(not_paired())
        }
    }

    /// Forgets the line's simulated credentials and stops its codes.
    pub(super) fn forget(&self, line: &LineId) {
        if let Some(session) = self.state().sessions.get_mut(line) {
            session.paired = false;
            session.generation += 1;
            session.current = None;
        }
    }

    /// "Scans" `code` with the line's phone: when it is the code the line shows now (a QR string,
    /// or a phone code typed with or without its dash), the line is paired (the simulator keeps
    /// its credentials) and reports `Connected` as the line's number.
    ///
    /// # Errors
    /// [`SimScanError::NoPairing`] when the line shows no code; [`SimScanError::QrMismatch`] when
    /// `code` is another one (an older rotation, a typo).
    pub fn scan(&self, line: &LineId, code: &str) -> Result<(), SimScanError> {
        let account = {
            let mut st = self.state();
            let session = st.sessions.get_mut(line).ok_or(SimScanError::NoPairing)?;
            let current = session.current.as_deref().ok_or(SimScanError::NoPairing)?;
            let phone = !current.starts_with("2@");
            if normalize(current, phone) != normalize(code, phone) {
                return Err(SimScanError::QrMismatch);
            }
            session.paired = true;
            session.current = None;
            session.generation += 1;
            session.account.clone()
        };
        self.emit_session(line, SessionSignal::Connected { account: Some(account) });
        Ok(())
    }

    /// The code the line shows now (what [`SimProvider::scan`] accepts), if any.
    #[must_use]
    pub fn current_code(&self, line: &LineId) -> Option<String> {
        self.state().sessions.get(line).and_then(|s| s.current.clone())
    }

    /// Whether the line holds simulated credentials.
    #[must_use]
    pub fn is_paired(&self, line: &LineId) -> bool {
        self.state().sessions.get(line).is_some_and(SimSession::is_paired)
    }

    /// Plays "the device was unlinked from the phone": the credentials are gone and the line
    /// reports `LoggedOut`.
    pub fn unlink_from_phone(&self, line: &LineId) {
        self.forget(line);
        self.emit_session(line, SessionSignal::LoggedOut { reason: "simulated: unlinked from the phone".into() });
    }

    /// Plays a network loss: the line reports `Disconnected` (its credentials stay, so the next
    /// reconnect succeeds unless [`SimProvider::fail_reconnects`] says otherwise).
    pub fn drop_connection(&self, line: &LineId) {
        self.emit_session(line, SessionSignal::Disconnected { reason: "simulated: connection lost".into() });
    }

    /// Makes the line's next `n` reconnect attempts fail with a retryable error.
    pub fn fail_reconnects(&self, line: &LineId, n: u32) {
        self.state().sessions.entry(line.clone()).or_default().reconnect_failures = n;
    }

    /// Reports any session signal for the line (a ban, a restriction, a rate limit...).
    pub fn signal(&self, line: &LineId, signal: SessionSignal) {
        self.emit_session(line, signal);
    }
}

#[cfg(test)]
mod tests;
