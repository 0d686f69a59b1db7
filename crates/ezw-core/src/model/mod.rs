//! Domain types of the whole product: organizations and people, lines, contacts,
//! conversations and messages. Areas that later features fill in (notes, Kanban fields,
//! webhooks, campaigns, audit) have their ids in [`crate::ids`] and their fields reserved here
//! (e.g. [`Conversation::status_key`] for Kanban).

mod inbox;
mod line;
mod message;
mod org;
mod session;
mod webhook;

pub use inbox::{Attachment, Contact, Conversation};
pub use inbox::{InboxConversation, Note};
pub use line::{EffectiveSendState, HealthStatus, LifecycleState, Line, LineTokenRecord, Pacing, ProviderKind};
pub use line::{LinePermission, LineRights};
pub use message::{
    CtaUrlButton, Direction, InteractiveReply, Location, MediaKind, MediaRef, Message, MessageContent, MessageError,
    MessageKind, MessageStatus, Reaction, StatusTimestamps, TemplateRef,
};
pub use org::{BillingState, Checkout, Member, Membership, MembershipStatus, Organization, Role, User, DEFAULT_PLAN};
pub use session::{LineTransition, Pairing, PairingMethod, PairingStatus, RecordedTransition};
pub use webhook::{
    AuditActor, AuditEvent, DeliveryAttempt, DeliveryStatus, PayloadFormat, Webhook, WebhookDelivery, WebhookEventKind,
};
