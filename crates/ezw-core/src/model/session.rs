//! QR-paired web session lines: pairing requests and their codes, and the recorded history of a
//! line's lifecycle transitions.

use serde::Serialize;

use crate::ids::{LineId, OrganizationId, PairingId, UserId};
use crate::model::LifecycleState;
use crate::phone::PhoneNumber;
use crate::time::Timestamp;

/// How a person pairs a line: scanning a QR code, or typing a code on the phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum PairingMethod {
    /// Scan a QR code from WhatsApp's "Linked devices" on the phone.
    Qr,
    /// Type an 8-character code on the phone ("Link with phone number instead"); the phone
    /// must be the line's number.
    PhoneCode {
        /// The phone that pairs (the line's own number).
        phone: PhoneNumber,
    },
}

impl PairingMethod {
    /// Stable name (`qr` or `phone_code`).
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Qr => "qr",
            Self::PhoneCode { .. } => "phone_code",
        }
    }
}

/// Where a pairing request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PairingStatus {
    /// Requested; the node running the line's session has not issued a code yet.
    Requested,
    /// A code is issued and can be scanned (or typed) until it expires.
    Active,
    /// The phone paired: the line is connected.
    Paired,
    /// The last code expired before anyone scanned it.
    Expired,
    /// WhatsApp issued no more codes for this request.
    Exhausted,
    /// A newer request, a logout or the archive replaced it.
    Cancelled,
    /// The session could not start pairing (see `reason`).
    Failed,
}

impl PairingStatus {
    /// Stable storage name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Active => "active",
            Self::Paired => "paired",
            Self::Expired => "expired",
            Self::Exhausted => "exhausted",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    /// Parses a storage name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "requested" => Self::Requested,
            "active" => Self::Active,
            "paired" => Self::Paired,
            "expired" => Self::Expired,
            "exhausted" => Self::Exhausted,
            "cancelled" => Self::Cancelled,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// Whether the request is still live (requested or showing a code).
    #[must_use]
    pub fn is_open(self) -> bool {
        matches!(self, Self::Requested | Self::Active)
    }
}

/// A line's current pairing request (one per line; a new request replaces the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    /// Id (the same across rotations of its code).
    pub id: PairingId,
    /// Organization.
    pub organization_id: OrganizationId,
    /// Line.
    pub line_id: LineId,
    /// QR or phone code.
    pub method: PairingMethod,
    /// Status.
    pub status: PairingStatus,
    /// The caller's idempotency key, when given.
    pub idempotency_key: Option<String>,
    /// The current QR pairing string (what the QR image encodes), while active.
    pub qr_code: Option<String>,
    /// The current phone pairing code, while active (phone-code pairing).
    pub phone_code: Option<String>,
    /// How many codes were issued so far (1 for the first).
    pub rotation: u32,
    /// When the current code expires.
    pub expires_at: Option<Timestamp>,
    /// Why it ended (`qr_expired`, `qr_codes_exhausted`, a provider error code...).
    pub reason: Option<String>,
    /// Who asked.
    pub requested_by: Option<UserId>,
    /// When it was asked.
    pub requested_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// One change of a line's lifecycle state, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineTransition {
    /// The state the line must be in for the change to apply (compare-and-set).
    pub from: LifecycleState,
    /// The new state.
    pub to: LifecycleState,
    /// What caused it (`pairing_requested`, `qr_expired`, `qr_codes_exhausted`, `paired`,
    /// `logged_out`, `network_lost`, `reconnected`, `banned`, `restricted`, `rate_limited`,
    /// `rate_limit_lifted`, `session_opened`, `archived`...).
    pub trigger: String,
    /// The provider's or EZW's explanation, when there is one.
    pub reason: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A recorded transition with its sequence number in the line's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedTransition {
    /// Increasing within the line.
    pub seq: i64,
    /// The line.
    pub line_id: LineId,
    /// The change.
    #[serde(flatten)]
    pub transition: LineTransition,
}
