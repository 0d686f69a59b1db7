use serde::Serialize;

use crate::ids::{LineId, LineTokenId, OrganizationId, UserId};
use crate::phone::PhoneNumber;
use crate::time::Timestamp;

/// Which provider runs a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProviderKind {
    /// The deterministic simulator.
    Simulator,
    /// Meta WhatsApp Cloud API.
    Meta,
    /// Twilio WhatsApp.
    Twilio,
    /// A QR-paired WhatsApp Web session run in-process (`whatsapp-rust`, feature
    /// `web-session-native`).
    WebSession,
    /// A QR-paired WhatsApp Web session run by a WAHA-compatible sidecar over HTTP.
    Waha,
}

impl ProviderKind {
    /// Stable name (also the `kind` in API provider blocks).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simulator => "simulator",
            Self::Meta => "meta",
            Self::Twilio => "twilio",
            Self::WebSession => "web_session",
            Self::Waha => "waha",
        }
    }

    /// Parses a stable name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "simulator" => Self::Simulator,
            "meta" => Self::Meta,
            "twilio" => Self::Twilio,
            "web_session" => Self::WebSession,
            "waha" => Self::Waha,
            _ => return None,
        })
    }

    /// The `channelType` shown by the health endpoint.
    #[must_use]
    pub fn channel_type(self) -> &'static str {
        match self {
            Self::WebSession | Self::Waha | Self::Simulator => "web",
            Self::Meta => "cloud",
            Self::Twilio => "twilio",
        }
    }
}

/// Where a line is in its lifecycle (one state machine for every provider; cloud lines use a
/// subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LifecycleState {
    /// Created, never started.
    Created,
    /// Pairing: a QR code is issued and waiting to be scanned.
    Pairing,
    /// Connected and able to send.
    Connected,
    /// A new QR scan is needed (expired, logged out from the phone).
    QrRequired,
    /// Connection lost; reconnecting with backoff.
    Reconnecting,
    /// Blocked or banned by WhatsApp.
    Blocked,
    /// Restricted (rate limits, quality) by WhatsApp.
    Restricted,
    /// The provider rejected the line's credentials.
    AuthFailed,
    /// Archived: takes no new work.
    Archived,
}

impl LifecycleState {
    /// Stable storage name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Pairing => "pairing",
            Self::Connected => "connected",
            Self::QrRequired => "qr_required",
            Self::Reconnecting => "reconnecting",
            Self::Blocked => "blocked",
            Self::Restricted => "restricted",
            Self::AuthFailed => "auth_failed",
            Self::Archived => "archived",
        }
    }

    /// Parses a storage name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => Self::Created,
            "pairing" => Self::Pairing,
            "connected" => Self::Connected,
            "qr_required" => Self::QrRequired,
            "reconnecting" => Self::Reconnecting,
            "blocked" => Self::Blocked,
            "restricted" => Self::Restricted,
            "auth_failed" => Self::AuthFailed,
            "archived" => Self::Archived,
            _ => return None,
        })
    }
}

/// Whether outbound work can run on a line right now, and if not, why. Derived from the
/// lifecycle state and the organization's billing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EffectiveSendState {
    /// Sends go out.
    Sendable,
    /// Never started.
    NotStarted,
    /// Waiting for a QR scan.
    Pairing,
    /// A QR scan is needed.
    QrRequired,
    /// Reconnecting.
    Reconnecting,
    /// Blocked by WhatsApp.
    Blocked,
    /// Restricted by WhatsApp.
    Restricted,
    /// Credentials rejected by the provider.
    ProviderAuthFailed,
    /// The organization's billing is restricted.
    BillingRestricted,
    /// Archived.
    Archived,
}

impl EffectiveSendState {
    /// Derives the send state from a line's lifecycle and whether billing allows sending.
    #[must_use]
    pub fn derive(lifecycle: LifecycleState, billing_allows: bool) -> Self {
        match lifecycle {
            LifecycleState::Archived => Self::Archived,
            _ if !billing_allows => Self::BillingRestricted,
            LifecycleState::Connected => Self::Sendable,
            LifecycleState::Created => Self::NotStarted,
            LifecycleState::Pairing => Self::Pairing,
            LifecycleState::QrRequired => Self::QrRequired,
            LifecycleState::Reconnecting => Self::Reconnecting,
            LifecycleState::Blocked => Self::Blocked,
            LifecycleState::Restricted => Self::Restricted,
            LifecycleState::AuthFailed => Self::ProviderAuthFailed,
        }
    }

    /// Stable name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sendable => "sendable",
            Self::NotStarted => "not_started",
            Self::Pairing => "pairing",
            Self::QrRequired => "qr_required",
            Self::Reconnecting => "reconnecting",
            Self::Blocked => "blocked",
            Self::Restricted => "restricted",
            Self::ProviderAuthFailed => "provider_auth_failed",
            Self::BillingRestricted => "billing_restricted",
            Self::Archived => "archived",
        }
    }
}

/// The Whapi-compatible health status (`health.status{code,text}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HealthStatus {
    /// Numeric code: NOT_INIT 0, INIT 1, LAUNCH 2, QR 3, AUTH 4, ERROR 5, SYNC_ERROR 6.
    pub code: u8,
    /// The code's name.
    pub text: &'static str,
}

impl HealthStatus {
    /// Maps a lifecycle state to the health status Whapi-compatible clients expect.
    #[must_use]
    pub fn from_lifecycle(state: LifecycleState) -> Self {
        let (code, text) = match state {
            LifecycleState::Created | LifecycleState::Archived => (0, "NOT_INIT"),
            LifecycleState::Reconnecting => (1, "INIT"),
            LifecycleState::Pairing | LifecycleState::QrRequired => (3, "QR"),
            LifecycleState::Connected => (4, "AUTH"),
            LifecycleState::Blocked | LifecycleState::Restricted | LifecycleState::AuthFailed => (5, "ERROR"),
        };
        Self { code, text }
    }
}

/// A WhatsApp number of an organization, run by one provider.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    /// Id.
    pub id: LineId,
    /// Owning organization.
    pub organization_id: OrganizationId,
    /// Display name ("Billing").
    pub display_name: String,
    /// The line's own number.
    pub phone_number: PhoneNumber,
    /// Provider.
    pub provider_kind: ProviderKind,
    /// Provider configuration (non-secret part; secrets are encrypted by their provider).
    #[serde(skip)]
    pub provider_config: serde_json::Value,
    /// Lifecycle state.
    pub lifecycle_state: LifecycleState,
    /// Why the line is in its state, when the provider said.
    pub state_reason: Option<String>,
    /// Default assignee for new conversations.
    pub default_assignee_id: Option<UserId>,
    /// Send pacing set for this line; `None` uses the provider's defaults.
    pub pacing: Option<Pacing>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl Line {
    /// The effective send state given whether the organization's billing allows sending.
    #[must_use]
    pub fn effective_send_state(&self, billing_allows: bool) -> EffectiveSendState {
        EffectiveSendState::derive(self.lifecycle_state, billing_allows)
    }
}

/// How fast a line sends: a token bucket per line, a separate rate for media, a cap on calls
/// in flight, and random jitter between sends (for QR web sessions, where regular machine-like
/// timing is a ban signal).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pacing {
    /// Sends per second (the bucket refills at this rate; its burst is one second's worth).
    pub per_second: f64,
    /// Media sends per second, when media has a lower limit (Twilio: 1/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_per_second: Option<f64>,
    /// Provider calls in flight at once.
    pub max_in_flight: u32,
    /// Up to this many milliseconds of random extra delay before each send.
    #[serde(default)]
    pub jitter_ms: u64,
}

impl Eq for Pacing {}

impl Pacing {
    /// Checks the values are usable.
    ///
    /// # Errors
    /// `invalid_pacing` (400) naming the field.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(crate::Error::invalid("invalid_pacing", m.to_owned()));
        if !(self.per_second > 0.0 && self.per_second <= 10_000.0) {
            return bad("pacing.perSecond must be above 0 and at most 10000");
        }
        if self.media_per_second.is_some_and(|m| !(m > 0.0 && m <= 10_000.0)) {
            return bad("pacing.mediaPerSecond must be above 0 and at most 10000");
        }
        if !(1..=1000).contains(&self.max_in_flight) {
            return bad("pacing.maxInFlight must be between 1 and 1000");
        }
        if self.jitter_ms > 60_000 {
            return bad("pacing.jitterMs must be at most 60000");
        }
        Ok(())
    }
}

/// What a user may do on one line: see it (its conversations, messages, notes and media) and
/// send from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineRights {
    /// See the line and everything on it.
    pub can_view: bool,
    /// Send from the line (only together with `can_view`).
    pub can_send: bool,
}

impl LineRights {
    /// The workspace default for an operator without an explicit permission on a line: view
    /// and send. Owners and admins always have [`LineRights::FULL`].
    pub const OPERATOR_DEFAULT: Self = Self { can_view: true, can_send: true };
    /// Everything: owners and admins on every line of their organization.
    pub const FULL: Self = Self { can_view: true, can_send: true };

    /// Whether the combination is allowed (`can_send` needs `can_view`).
    #[must_use]
    pub fn is_valid(self) -> bool {
        self.can_view || !self.can_send
    }
}

/// An explicit permission of one operator on one line; without one, the operator has
/// [`LineRights::OPERATOR_DEFAULT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinePermission {
    /// Organization.
    #[serde(skip)]
    pub organization_id: OrganizationId,
    /// Line.
    pub line_id: LineId,
    /// The user it applies to.
    pub user_id: UserId,
    /// See the line and everything on it.
    pub can_view: bool,
    /// Send from the line.
    pub can_send: bool,
    /// Last change.
    pub updated_at: Timestamp,
    /// Who made the last change.
    pub updated_by: Option<UserId>,
}

impl LinePermission {
    /// The rights this permission grants.
    #[must_use]
    pub fn rights(&self) -> LineRights {
        LineRights { can_view: self.can_view, can_send: self.can_send }
    }
}

/// A line API token as stored: only the SHA-256 of the token is kept.
#[derive(Debug, Clone)]
pub struct LineTokenRecord {
    /// Id.
    pub id: LineTokenId,
    /// Organization.
    pub organization_id: OrganizationId,
    /// The one line the token reaches.
    pub line_id: LineId,
    /// Lower-case hex SHA-256 of the token.
    pub token_hash: String,
    /// The last four characters, to help people tell tokens apart.
    pub last_four: String,
    /// Who created it.
    pub created_by: Option<UserId>,
    /// Creation time.
    pub created_at: Timestamp,
}
