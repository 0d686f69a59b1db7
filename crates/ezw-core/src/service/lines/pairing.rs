//! QR lines: pairing requests, the current code, and the history of lifecycle transitions.

use crate::crypto::sha256_hex;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{LineId, PairingId};
use crate::model::{LifecycleState, Line, Pairing, PairingMethod, PairingStatus, RecordedTransition};
use crate::ports::PairingRequestOutcome;
use crate::principal::{LineAccess, Principal};

use super::{authorize_line, ensure_not_archived, validate_key, LinesService};
use crate::service::runtime::Inner;

/// The result of [`LinesService::request_pairing`].
#[derive(Debug, Clone)]
pub struct PairingRequested {
    /// The pairing as stored (status `requested` unless replayed later).
    pub pairing: Pairing,
    /// Whether this is the pairing an earlier request with the same idempotency key created.
    pub replayed: bool,
}

/// How many transitions one history page holds at most.
pub const MAX_TRANSITIONS_PAGE: u32 = 200;

fn fingerprint(method: &PairingMethod) -> String {
    let text = match method {
        PairingMethod::Qr => "v1|qr".to_owned(),
        PairingMethod::PhoneCode { phone } => format!("v1|phone_code|{}", phone.as_str()),
    };
    sha256_hex(text.as_bytes())
}

/// 409 unless the line is a session (QR) line of a configured provider.
fn ensure_session_line(inner: &Inner, line: &Line) -> Result<()> {
    let provider = inner.provider(line.provider_kind)?;
    if provider.runs_session(line) {
        Ok(())
    } else {
        Err(Error::conflict("line_not_qr_paired", "this line's provider is not paired by QR code")
            .with_detail("providerKind", line.provider_kind.as_str()))
    }
}

/// Queues QR pairing for a QR line just created ("create a line and queue QR pairing"). A failure
/// is logged: the line exists, and `POST .../qr` requests pairing again.
pub(super) async fn queue_first_pairing(inner: &Inner, principal: &Principal, line: &Line) {
    let now = inner.clock.now();
    let pairing = Pairing {
        id: PairingId::generate(now.unix_ms()),
        organization_id: line.organization_id.clone(),
        line_id: line.id.clone(),
        method: PairingMethod::Qr,
        status: PairingStatus::Requested,
        idempotency_key: None,
        qr_code: None,
        phone_code: None,
        rotation: 0,
        expires_at: None,
        reason: None,
        requested_by: principal.user_id().cloned(),
        requested_at: now,
        updated_at: now,
    };
    match inner.store.request_pairing(&pairing, &fingerprint(&PairingMethod::Qr)).await {
        Ok(_) => inner.kick_sessions(),
        Err(e) => tracing::warn!(error = %e, line = %line.id, "queueing the first pairing of a new line failed"),
    }
}

impl LinesService<'_> {
    /// Starts or restarts pairing of a QR line (users who may send from the line). The node
    /// running the line's session picks the request up, shows a code (`GET .../qr`) and rotates
    /// it until the phone scans it, the codes run out or it expires. With an idempotency key, the
    /// same key and method give the same pairing (`replayed`) while it is the line's current
    /// one.
    ///
    /// # Errors
    /// `not_found` (404); `line_send_denied` / `forbidden` (403); `invalid_idempotency_key` (400);
    /// `pairing_method_unsupported` (400) when the provider cannot pair by phone code;
    /// `pairing_phone_mismatch` (400) when the phone is not the line's number;
    /// `line_not_qr_paired`, `line_archived`, `line_already_paired` or `idempotency_key_reused`
    /// (409).
    pub async fn request_pairing(
        &self,
        principal: &Principal,
        line_id: &LineId,
        method: PairingMethod,
        idempotency_key: Option<&str>,
    ) -> Result<PairingRequested> {
        let line = authorize_line(self.inner, principal, line_id, LineAccess::Send).await?;
        let key = validate_key(idempotency_key)?;
        ensure_session_line(self.inner, &line)?;
        ensure_not_archived(&line)?;
        let provider = self.inner.provider(line.provider_kind)?;
        if let PairingMethod::PhoneCode { phone } = &method {
            if !provider.capabilities().phone_code_pairing {
                return Err(Error::invalid(
                    "pairing_method_unsupported",
                    "this line's provider cannot pair by phone code; pair by QR",
                ));
            }
            if phone != &line.phone_number {
                return Err(Error::invalid(
                    "pairing_phone_mismatch",
                    "phone-code pairing must use the line's own phone number",
                ));
            }
        }
        let now = self.inner.clock.now();
        let fingerprint = fingerprint(&method);
        if let (Some(key), Some(current)) =
            (key.as_deref(), self.inner.store.get_pairing(&line.organization_id, &line.id).await?)
        {
            // A retried request must not fail on the connection its first attempt made.
            if current.idempotency_key.as_deref() == Some(key) && current.status == PairingStatus::Paired {
                return Ok(PairingRequested { pairing: current, replayed: true });
            }
        }
        if line.lifecycle_state == LifecycleState::Connected {
            return Err(Error::conflict(
                "line_already_paired",
                "the line is connected; it needs no pairing (log it out from the phone first to re-pair)",
            ));
        }
        let pairing = Pairing {
            id: PairingId::generate(now.unix_ms()),
            organization_id: line.organization_id.clone(),
            line_id: line.id.clone(),
            method,
            status: PairingStatus::Requested,
            idempotency_key: key,
            qr_code: None,
            phone_code: None,
            rotation: 0,
            expires_at: None,
            reason: None,
            requested_by: principal.user_id().cloned(),
            requested_at: now,
            updated_at: now,
        };
        match self.inner.store.request_pairing(&pairing, &fingerprint).await? {
            PairingRequestOutcome::Created(p) => {
                self.inner.kick_sessions();
                Ok(PairingRequested { pairing: *p, replayed: false })
            }
            PairingRequestOutcome::Replayed(p) => Ok(PairingRequested { pairing: *p, replayed: true }),
            PairingRequestOutcome::KeyReused(p) => {
                Err(Error::conflict("idempotency_key_reused", "this idempotencyKey was used with a different request")
                    .with_detail("pairingId", p.id.to_string()))
            }
        }
    }

    /// The line's current pairing code (users who may view the line).
    ///
    /// # Errors
    /// `not_found` (404) for the line; `line_not_qr_paired` (409); `line_already_paired` (409)
    /// when the line is connected; `qr_pending` (409, retry shortly) when pairing was requested
    /// and the session has not issued a code yet; `qr_not_requested` (404) when no pairing is in
    /// progress; `qr_expired`, `qr_codes_exhausted` or `pairing_failed` (404) when the last one
    /// ended (request a new one).
    pub async fn current_code(&self, principal: &Principal, line_id: &LineId) -> Result<Pairing> {
        let line = authorize_line(self.inner, principal, line_id, LineAccess::View).await?;
        ensure_session_line(self.inner, &line)?;
        ensure_not_archived(&line)?;
        if line.lifecycle_state == LifecycleState::Connected {
            return Err(Error::conflict("line_already_paired", "the line is connected; there is no code to scan"));
        }
        let gone = |code: &'static str, message: &str, p: &Pairing| {
            let mut e =
                Error::new(ErrorKind::NotFound, code, message.to_owned()).with_detail("pairingId", p.id.to_string());
            if let Some(reason) = &p.reason {
                e = e.with_detail("reason", reason.clone());
            }
            e
        };
        let Some(p) = self.inner.store.get_pairing(&line.organization_id, &line.id).await? else {
            return Err(Error::new(
                ErrorKind::NotFound,
                "qr_not_requested",
                "no pairing is in progress; request one with POST /api/lines/{lineId}/qr",
            ));
        };
        let now = self.inner.clock.now();
        match p.status {
            PairingStatus::Requested => Err(Error::conflict(
                "qr_pending",
                "pairing was requested; the code is not issued yet (retry in a second)",
            )
            .with_detail("pairingId", p.id.to_string())
            .with_detail("retryAfterMs", 1000)),
            PairingStatus::Active if p.expires_at.is_some_and(|at| at > now) => Ok(p),
            PairingStatus::Active | PairingStatus::Expired => {
                Err(gone("qr_expired", "the last code expired; request a new one", &p))
            }
            PairingStatus::Exhausted => {
                Err(gone("qr_codes_exhausted", "WhatsApp issued no more codes; request a new pairing", &p))
            }
            PairingStatus::Failed => {
                Err(gone("pairing_failed", "the session could not pair; request a new pairing", &p))
            }
            PairingStatus::Paired => {
                Err(Error::conflict("line_already_paired", "the pairing succeeded; the line is connected"))
            }
            PairingStatus::Cancelled => Err(gone("qr_not_requested", "the last pairing was cancelled", &p)),
        }
    }

    /// The line's recorded lifecycle transitions, newest first (users who may view the line).
    ///
    /// # Errors
    /// `not_found` (404); `invalid_limit` (400) outside 1..=200.
    pub async fn transitions(
        &self,
        principal: &Principal,
        line_id: &LineId,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RecordedTransition>> {
        if !(1..=MAX_TRANSITIONS_PAGE).contains(&limit) {
            return Err(Error::invalid("invalid_limit", "limit must be between 1 and 200"));
        }
        let line = authorize_line(self.inner, principal, line_id, LineAccess::View).await?;
        self.inner.store.list_line_transitions(&line.organization_id, &line.id, before_seq, limit).await
    }
}
