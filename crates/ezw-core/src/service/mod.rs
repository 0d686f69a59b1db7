//! Services: the whole API as Rust calls, each taking a [`Principal`](crate::Principal) and
//! enforcing organization scope and line access.

pub(crate) mod audit;
mod auth;
mod billing;
pub(crate) mod events;
mod inbox;
mod ingest;
pub(crate) mod lines;
mod live;
mod media;
mod members;
mod messages;
mod orgs;
pub(crate) mod runtime;
pub(crate) mod webhooks;

pub use audit::{AuditService, MAX_EVENT_TYPE_LEN};
mod throttle;
pub use auth::REFRESH_TOKEN_PREFIX;
pub use auth::{AuthService, LoginRequest, LoginResponse, SessionInfo, LINE_TOKEN_PREFIX};
pub use billing::{BillingPolicy, BillingService, BillingStatus, CheckoutView, LineSlots, Seats};
pub use inbox::InboxService;
pub use inbox::{
    AssigneeFilter, InboxFilter, DEFAULT_INBOX_PAGE, MAX_CONTACT_NAME_CHARS, MAX_NOTE_CHARS, MAX_SEARCH_CHARS,
    MAX_STATUS_KEY_CHARS,
};
pub use ingest::IngestService;
pub use lines::{CreatedLine, LinePermissions};
pub use lines::{
    HealthWarning, LineHealth, LinesService, NewLine, PairingRequested, RotatedToken, MAX_TRANSITIONS_PAGE,
};
pub use live::{LiveItem, LiveService, LiveStream};
pub(crate) use media::{delivery_media, DeliveryMedia};
pub use media::{
    MediaDownload, MediaService, SignedMediaUrl, DEFAULT_MEDIA_URL_TTL_SECS, MAX_IMAGE_BYTES, MAX_MEDIA_URL_TTL_SECS,
};
pub use members::{
    AcceptInvitation, Invitation, InviteMember, MemberChange, MembersService, INVITATION_TOKEN_PREFIX, INVITATION_TTL,
};
pub use messages::{
    CtaInput, MediaInput, MessagesService, SendOutcome, SendRequest, SendTargetInput, MAX_BODY_CHARS,
    MAX_CAPTION_CHARS, MAX_CTA_TEXT_CHARS, MAX_IDEMPOTENCY_KEY_LEN,
};
pub use messages::{ImageUpload, WorkspaceSendRequest};
pub use orgs::{NewOrganization, OrgsService};
pub use orgs::{SignupRequest, MAX_SIGNUP_LINE_SLOTS};
pub use runtime::{Ezw, EzwBuilder, EzwConfig, WorkerHandle};
pub use throttle::ThrottleLimits;
pub use webhooks::{
    DeliveryView, WebhookInput, WebhookView, WebhooksService, DEFAULT_WEBHOOK_CONCURRENCY, MAX_TARGET_URL_LEN,
    MAX_WEBHOOK_CONCURRENCY,
};
