//! `ezw-server lines pair <lineId>`: pairs a QR line from the terminal. It stores a pairing
//! request beside the running server (which picks it up within its session round; on PostgreSQL
//! at once through the `Sessions` wake), then follows the line's pairing and prints each code as
//! it rotates until the phone scans it or the pairing ends.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use ezw_core::crypto::sha256_hex;
use ezw_core::model::{LifecycleState, Line, Pairing, PairingMethod, PairingStatus, ProviderKind};
use ezw_core::ports::{EventSink, LineProvider, PairingRequestOutcome, Store};
use ezw_core::{Clock, Error, Ezw, LineId, PairingId, Result, SystemClock};
use ezw_providers::sim::SimProvider;

use crate::terminal_qr::{render, Background};

/// How often the pairing is read back.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The phone paired: the line is connected.
    Paired,
    /// The pairing ended without a scan (expired, exhausted, failed, cancelled).
    Ended {
        /// Its final status.
        status: PairingStatus,
        /// Why, as recorded.
        reason: Option<String>,
    },
    /// Another request (the API, another terminal) replaced this pairing.
    Replaced,
    /// `--timeout-secs` passed first.
    TimedOut(Duration),
    /// Ctrl-C.
    Interrupted,
}

impl Outcome {
    /// The process exit code: 0 paired, 130 interrupted, 1 otherwise.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Paired => 0,
            Self::Interrupted => 130,
            _ => 1,
        }
    }

    /// What to tell the person (stdout for `paired`, stderr otherwise).
    pub(crate) fn message(&self) -> String {
        let because = |reason: &Option<String>| reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        match self {
            Self::Paired => "paired".to_owned(),
            Self::Ended { status: PairingStatus::Expired, reason } => {
                format!("the code expired before it was scanned{}; run the command again", because(reason))
            }
            Self::Ended { status: PairingStatus::Exhausted, reason } => {
                format!("WhatsApp issued no more codes{}; run the command again", because(reason))
            }
            Self::Ended { status: PairingStatus::Failed, reason } => format!("pairing failed{}", because(reason)),
            Self::Ended { status, reason } => format!("pairing {}{}", status.as_str(), because(reason)),
            Self::Replaced => "another pairing request replaced this one".to_owned(),
            Self::TimedOut(after) => format!(
                "not paired within {} s (the server keeps the pairing open until its codes run out)",
                after.as_secs()
            ),
            Self::Interrupted => "interrupted".to_owned(),
        }
    }
}

/// Whether the line is paired by QR code (a session line). The simulator decides per line
/// (`"pairing": "qr"`); WhatsApp Web lines, native or through WAHA, always are.
fn runs_session(line: &Line) -> bool {
    match line.provider_kind {
        ProviderKind::WebSession | ProviderKind::Waha => true,
        ProviderKind::Simulator => {
            let (sink, _events) = EventSink::channel();
            SimProvider::new(Arc::new(SystemClock), sink).runs_session(line)
        }
        _ => false,
    }
}

/// Refuses lines that cannot be paired now.
///
/// # Errors
/// `line_archived`, `line_already_paired`, `line_not_qr_paired` (conflicts).
pub(crate) fn check_line(line: &Line, session_line: bool) -> Result<()> {
    if !session_line {
        return Err(Error::conflict(
            "line_not_qr_paired",
            format!("line {} ({}) is not paired by QR code", line.id, line.provider_kind.as_str()),
        ));
    }
    match line.lifecycle_state {
        LifecycleState::Archived => Err(Error::conflict("line_archived", format!("line {} is archived", line.id))),
        LifecycleState::Connected => Err(Error::conflict(
            "line_already_paired",
            format!("line {} is connected; log it out from the phone first to pair it again", line.id),
        )),
        _ => Ok(()),
    }
}

/// Stores a new pairing request for `line_id` (QR, or phone code on the line's own number).
///
/// # Errors
/// `invalid_line_id`, `not_found`, the refusals of [`check_line`], storage errors.
pub(crate) async fn request(
    store: &Arc<dyn Store>,
    clock: &dyn Clock,
    line_id: &str,
    phone_code: bool,
) -> Result<Pairing> {
    let id = LineId::parse(line_id).ok_or_else(|| Error::invalid("invalid_line_id", "not a line id (line_...)"))?;
    let line = store.get_line_unscoped(&id).await?.ok_or_else(|| Error::not_found("line"))?;
    check_line(&line, runs_session(&line))?;
    let method =
        if phone_code { PairingMethod::PhoneCode { phone: line.phone_number.clone() } } else { PairingMethod::Qr };
    // The same fingerprint as `POST /api/lines/{lineId}/qr` stores (it only matters with an
    // idempotency key, which the CLI never sends).
    let fingerprint = sha256_hex(
        match &method {
            PairingMethod::Qr => "v1|qr".to_owned(),
            PairingMethod::PhoneCode { phone } => format!("v1|phone_code|{}", phone.as_str()),
        }
        .as_bytes(),
    );
    let now = clock.now();
    let pairing = Pairing {
        id: PairingId::generate(now.unix_ms()),
        organization_id: line.organization_id.clone(),
        line_id: line.id.clone(),
        method,
        status: PairingStatus::Requested,
        idempotency_key: None,
        qr_code: None,
        phone_code: None,
        rotation: 0,
        expires_at: None,
        reason: None,
        requested_by: None,
        requested_at: now,
        updated_at: now,
    };
    match store.request_pairing(&pairing, &fingerprint).await? {
        PairingRequestOutcome::Created(p) => Ok(*p),
        PairingRequestOutcome::Replayed(p) | PairingRequestOutcome::KeyReused(p) => {
            Err(Error::internal(format!("a pairing request without a key was matched to pairing {}", p.id)))
        }
    }
}

/// Runs the command on an opened data directory: requests pairing of `line_id` and follows it on
/// stdout until it ends, `timeout` passes or Ctrl-C.
///
/// # Errors
/// The refusals of [`request`]; storage errors.
pub(crate) async fn run(
    ezw: &Ezw,
    line_id: &str,
    phone_code: bool,
    timeout: Duration,
    background: Background,
) -> Result<Outcome> {
    let store = ezw.store().clone();
    let clock = ezw.clock().clone();
    let pairing = request(&store, clock.as_ref(), line_id, phone_code).await?;
    let fetch = || {
        let store = store.clone();
        let (org, line) = (pairing.organization_id.clone(), pairing.line_id.clone());
        async move { store.get_pairing(&org, &line).await }
    };
    let view = View { interval: POLL_INTERVAL, timeout, background, clear_screen: std::io::stdout().is_terminal() };
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handler: only the timeout or the pairing's end stop the command.
            std::future::pending::<()>().await;
        }
    };
    follow(&pairing.id, fetch, clock.as_ref(), view, ctrl_c, &mut std::io::stdout()).await
}

/// How [`follow`] polls and shows codes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View {
    /// How often the pairing is read ([`POLL_INTERVAL`]).
    pub(crate) interval: Duration,
    /// How long to wait for the phone at most (`--timeout-secs`).
    pub(crate) timeout: Duration,
    /// Which modules the QR draws.
    pub(crate) background: Background,
    /// Clear the screen before each new code (when printing to a terminal).
    pub(crate) clear_screen: bool,
}

/// Follows pairing `id` through `fetch` (the line's current pairing) every `view.interval` on
/// `clock`, printing each new code to `out`, until it ends, `view.timeout` passes or `cancel`
/// completes. Temporary storage errors are retried at the next poll.
///
/// # Errors
/// Other storage errors, and failures to write to `out`.
pub(crate) async fn follow<F, Fut>(
    id: &PairingId,
    mut fetch: F,
    clock: &dyn Clock,
    view: View,
    cancel: impl Future<Output = ()>,
    out: &mut dyn Write,
) -> Result<Outcome>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<Pairing>>>,
{
    let io = |e: std::io::Error| Error::internal(format!("writing to the terminal: {e}"));
    tokio::pin!(cancel);
    let start = clock.now();
    let deadline = start.plus(view.timeout);
    let mut next = start;
    let mut shown: Option<(u32, Option<String>, Option<String>)> = None;
    let mut said_waiting = false;
    loop {
        let current = tokio::select! {
            biased;
            () = &mut cancel => return Ok(Outcome::Interrupted),
            read = fetch() => read,
        };
        match current {
            Err(e) if e.is_retryable() => tracing::debug!(error = %e, "reading the pairing failed; retrying"),
            Err(e) => return Err(e),
            Ok(None) => return Ok(Outcome::Replaced),
            Ok(Some(p)) if &p.id != id => return Ok(Outcome::Replaced),
            Ok(Some(p)) => match p.status {
                PairingStatus::Paired => return Ok(Outcome::Paired),
                PairingStatus::Requested => {
                    if !said_waiting {
                        said_waiting = true;
                        writeln!(
                            out,
                            "Pairing {} requested; waiting for the server running line {} to issue a code \
                             (is ezw-server running?)",
                            p.id, p.line_id
                        )
                        .map_err(io)?;
                    }
                }
                PairingStatus::Active => {
                    let key = (p.rotation, p.qr_code.clone(), p.phone_code.clone());
                    if shown.as_ref() != Some(&key) {
                        show(&p, clock, view, out).map_err(io)?;
                        shown = Some(key);
                    }
                }
                status => return Ok(Outcome::Ended { status, reason: p.reason }),
            },
        }
        if clock.now() >= deadline {
            return Ok(Outcome::TimedOut(view.timeout));
        }
        next = next.plus(view.interval);
        tokio::select! {
            biased;
            () = &mut cancel => return Ok(Outcome::Interrupted),
            () = clock.sleep_until(next.min(deadline)) => {}
        }
    }
}

/// Prints one code: the QR (or the phone code), what to do with it, and its expiry.
fn show(p: &Pairing, clock: &dyn Clock, view: View, out: &mut dyn Write) -> std::io::Result<()> {
    if view.clear_screen {
        write!(out, "\x1b[2J\x1b[H")?;
    }
    if let Some(code) = &p.phone_code {
        writeln!(out, "On the phone: WhatsApp > Linked devices > Link a device > Link with phone number instead,")?;
        writeln!(out, "then enter this code:\n\n    {code}\n")?;
    } else if let Some(qr) = &p.qr_code {
        match render(qr, view.background) {
            Ok(image) => writeln!(out, "{image}")?,
            Err(e) => writeln!(out, "(the code cannot be drawn as a QR code: {e})")?,
        }
        writeln!(out, "Scan with WhatsApp on the phone: Settings > Linked devices > Link a device.")?;
    }
    match p.expires_at {
        Some(at) => writeln!(
            out,
            "Code {} of pairing {} expires at {} (in {} s).",
            p.rotation,
            p.id,
            at.to_rfc3339(),
            at.since(clock.now()).as_secs()
        )?,
        None => writeln!(out, "Code {} of pairing {}.", p.rotation, p.id)?,
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use ezw_core::model::{LifecycleState, Line, Pairing, PairingMethod, PairingStatus, ProviderKind};
    use ezw_core::{Clock, Error, ErrorKind, LineId, ManualClock, OrganizationId, PairingId, PhoneNumber, Timestamp};

    use super::*;

    const START: Timestamp = Timestamp::from_unix_ms(1_700_000_000_000);

    fn line(kind: ProviderKind, state: LifecycleState) -> Line {
        Line {
            id: LineId::from_raw("line_test"),
            organization_id: OrganizationId::from_raw("org_test"),
            display_name: "Support".into(),
            phone_number: PhoneNumber::from_raw("+15550783881"),
            provider_kind: kind,
            provider_config: serde_json::json!({}),
            lifecycle_state: state,
            state_reason: None,
            default_assignee_id: None,
            pacing: None,
            created_at: START,
            updated_at: START,
        }
    }

    fn pairing(id: &PairingId, status: PairingStatus) -> Pairing {
        Pairing {
            id: id.clone(),
            organization_id: OrganizationId::from_raw("org_test"),
            line_id: LineId::from_raw("line_test"),
            method: PairingMethod::Qr,
            status,
            idempotency_key: None,
            qr_code: None,
            phone_code: None,
            rotation: 0,
            expires_at: None,
            reason: None,
            requested_by: None,
            requested_at: START,
            updated_at: START,
        }
    }

    fn active(id: &PairingId, rotation: u32, code: &str, expires_at: Timestamp) -> Pairing {
        Pairing {
            qr_code: Some(code.into()),
            rotation,
            expires_at: Some(expires_at),
            ..pairing(id, PairingStatus::Active)
        }
    }

    /// Runs [`follow`] over a script of reads; each read moves the manual clock one interval on.
    async fn run(
        id: &PairingId,
        script: Vec<Result<Option<Pairing>>>,
        timeout: Duration,
    ) -> (Result<Outcome>, String, usize) {
        let clock = ManualClock::new(START);
        let reads = Mutex::new(VecDeque::from(script));
        let count = Mutex::new(0usize);
        let mut out = Vec::new();
        let fetch = || {
            let next = reads.lock().unwrap().pop_front();
            *count.lock().unwrap() += 1;
            clock.advance(POLL_INTERVAL);
            // When the script runs out the pairing stays as last read (requested).
            async move { next.unwrap_or_else(|| Ok(Some(pairing(id, PairingStatus::Requested)))) }
        };
        let view = View { interval: POLL_INTERVAL, timeout, background: Background::Light, clear_screen: false };
        let outcome = follow(id, fetch, &clock, view, std::future::pending(), &mut out).await;
        let reads = *count.lock().unwrap();
        (outcome, String::from_utf8(out).unwrap(), reads)
    }

    #[tokio::test]
    async fn prints_each_rotation_once_and_ends_paired() {
        let id = PairingId::generate(START.unix_ms());
        let first = active(&id, 1, "2@ref-1,a,b,c", START.plus(Duration::from_secs(60)));
        let second = active(&id, 2, "2@ref-2,a,b,c", START.plus(Duration::from_secs(80)));
        let script = vec![
            Ok(Some(pairing(&id, PairingStatus::Requested))),
            Ok(Some(pairing(&id, PairingStatus::Requested))),
            Ok(Some(first.clone())),
            Ok(Some(first)),
            Err(Error::temporary("database is busy")),
            Ok(Some(second.clone())),
            Ok(Some(second)),
            Ok(Some(pairing(&id, PairingStatus::Paired))),
        ];
        let (outcome, out, reads) = run(&id, script, Duration::from_secs(300)).await;
        assert_eq!(outcome.unwrap(), Outcome::Paired);
        assert_eq!(reads, 8);
        assert_eq!(out.matches("waiting for the server").count(), 1, "{out}");
        assert_eq!(out.matches("Scan with WhatsApp").count(), 2, "{out}");
        assert!(out.contains("Code 1 of pairing"), "{out}");
        assert!(out.contains(&format!("expires at {}", START.plus(Duration::from_secs(60)).to_rfc3339())), "{out}");
        assert!(out.contains("Code 2 of pairing"), "{out}");
        // Each QR printed is the one the code encodes.
        let qr = render("2@ref-2,a,b,c", Background::Light).unwrap();
        assert!(out.contains(&qr));
        assert_eq!(Outcome::Paired.exit_code(), 0);
        assert_eq!(Outcome::Paired.message(), "paired");
    }

    #[tokio::test]
    async fn shows_a_phone_code() {
        let id = PairingId::generate(START.unix_ms());
        let mut p = active(&id, 1, "", START.plus(Duration::from_secs(180)));
        p.qr_code = None;
        p.phone_code = Some("ABCD-EFGH".into());
        p.method = PairingMethod::PhoneCode { phone: PhoneNumber::from_raw("+15550783881") };
        let (outcome, out, _) =
            run(&id, vec![Ok(Some(p)), Ok(Some(pairing(&id, PairingStatus::Paired)))], Duration::from_secs(300)).await;
        assert_eq!(outcome.unwrap(), Outcome::Paired);
        assert!(out.contains("    ABCD-EFGH\n"), "{out}");
        assert!(!out.contains('\u{2588}'), "no QR for a phone code: {out}");
    }

    #[tokio::test]
    async fn an_ended_pairing_fails_with_its_reason() {
        for status in
            [PairingStatus::Expired, PairingStatus::Exhausted, PairingStatus::Failed, PairingStatus::Cancelled]
        {
            let id = PairingId::generate(START.unix_ms());
            let ended = Pairing { reason: Some("qr_expired".into()), ..pairing(&id, status) };
            let (outcome, _, _) = run(&id, vec![Ok(Some(ended))], Duration::from_secs(300)).await;
            let outcome = outcome.unwrap();
            assert_eq!(outcome, Outcome::Ended { status, reason: Some("qr_expired".into()) });
            assert_eq!(outcome.exit_code(), 1);
            assert!(outcome.message().contains("(qr_expired)"), "{}", outcome.message());
        }
    }

    #[tokio::test]
    async fn a_replaced_pairing_stops_following() {
        let id = PairingId::generate(START.unix_ms());
        let other = PairingId::generate(START.unix_ms() + 1);
        let (outcome, _, _) =
            run(&id, vec![Ok(Some(pairing(&other, PairingStatus::Requested)))], Duration::from_secs(300)).await;
        assert_eq!(outcome.unwrap(), Outcome::Replaced);
        let (outcome, _, _) = run(&id, vec![Ok(None)], Duration::from_secs(300)).await;
        assert_eq!(outcome.unwrap(), Outcome::Replaced);
    }

    #[tokio::test]
    async fn gives_up_after_the_timeout() {
        let id = PairingId::generate(START.unix_ms());
        let timeout = Duration::from_secs(5);
        let (outcome, out, reads) = run(&id, vec![], timeout).await;
        let outcome = outcome.unwrap();
        assert_eq!(outcome, Outcome::TimedOut(timeout));
        assert_eq!(outcome.exit_code(), 1);
        // One read per 500 ms until the deadline.
        assert_eq!(reads, 10);
        assert_eq!(out.matches("waiting for the server").count(), 1);
    }

    #[tokio::test]
    async fn a_permanent_storage_error_stops() {
        let id = PairingId::generate(START.unix_ms());
        let (outcome, _, _) = run(&id, vec![Err(Error::internal("broken"))], Duration::from_secs(300)).await;
        assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Internal);
    }

    #[tokio::test]
    async fn ctrl_c_interrupts_with_130() {
        let id = PairingId::generate(START.unix_ms());
        let clock = ManualClock::new(START);
        let mut out = Vec::new();
        let view = View {
            interval: POLL_INTERVAL,
            timeout: Duration::from_secs(300),
            background: Background::Dark,
            clear_screen: true,
        };
        let fetch = || async { Ok(Some(pairing(&id, PairingStatus::Requested))) };
        let outcome = follow(&id, fetch, &clock, view, async {}, &mut out).await.unwrap();
        assert!(out.is_empty(), "nothing is read or shown once interrupted");
        assert_eq!(outcome, Outcome::Interrupted);
        assert_eq!(outcome.exit_code(), 130);
        assert_eq!(clock.now(), START);
    }

    #[test]
    fn refuses_lines_that_cannot_pair_now() {
        let code = |line: &Line, session: bool| check_line(line, session).map_err(|e| e.code().to_owned());
        assert_eq!(code(&line(ProviderKind::Waha, LifecycleState::Created), true), Ok(()));
        assert_eq!(code(&line(ProviderKind::Waha, LifecycleState::QrRequired), true), Ok(()));
        assert_eq!(code(&line(ProviderKind::Waha, LifecycleState::Pairing), true), Ok(()));
        assert_eq!(
            code(&line(ProviderKind::Waha, LifecycleState::Connected), true),
            Err("line_already_paired".to_owned())
        );
        assert_eq!(code(&line(ProviderKind::Waha, LifecycleState::Archived), true), Err("line_archived".to_owned()));
        assert_eq!(
            code(&line(ProviderKind::Meta, LifecycleState::Created), false),
            Err("line_not_qr_paired".to_owned())
        );
    }

    #[test]
    fn web_session_lines_are_session_lines_and_cloud_lines_are_not() {
        assert!(runs_session(&line(ProviderKind::WebSession, LifecycleState::Created)));
        assert!(runs_session(&line(ProviderKind::Waha, LifecycleState::Created)));
        assert!(!runs_session(&line(ProviderKind::Meta, LifecycleState::Connected)));
        assert!(!runs_session(&line(ProviderKind::Twilio, LifecycleState::Connected)));
        // A default simulator line is always connected, never paired.
        assert!(!runs_session(&line(ProviderKind::Simulator, LifecycleState::Connected)));
    }
}
