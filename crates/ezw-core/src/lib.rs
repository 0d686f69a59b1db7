//! # ezw-core
//!
//! The domain of EZW, an embeddable WhatsApp support-inbox SDK: organizations, users and roles,
//! WhatsApp numbers ("lines") on pluggable providers, contacts, conversations and messages;
//! the ports that connect it to storage, providers, live subscribers and identity; the services
//! that enforce every policy (organization scope, line access, sendability, idempotency); and
//! the delivery worker.
//!
//! This crate knows no HTTP, SQL or vendor wire format. Storage backends live in `ezw-storage`,
//! providers in `ezw-providers`, the HTTP facade in `ezw-http`.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn ezw_core::ports::Store>) -> ezw_core::Result<()> {
//! use ezw_core::Ezw;
//! let ezw = Ezw::builder(store).signing_key(&[7u8; 32]).build()?;
//! let workers = ezw.start()?;
//! // ... ezw.messages().send(&principal, &line_id, request).await? ...
//! workers.shutdown(std::time::Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

pub mod crypto;
mod error;
pub mod ids;
pub mod metrics;
pub mod model;
mod phone;
pub mod ports;
mod principal;
mod secret;
pub mod service;
pub mod session;
#[cfg(feature = "test-util")]
pub mod testing;
mod time;
pub mod webhooks;
mod worker;

pub use error::{Error, ErrorKind, Result};
pub use ids::{
    AttachmentId, AuditEventId, CampaignId, ContactId, ConversationId, DeliveryId, EventId, LineId, LineTokenId,
    MessageId, NoteId, OrganizationId, PairingId, SessionId, UserId, WebhookId,
};
pub use phone::PhoneNumber;
pub use principal::{LineAccess, LinePrincipal, Principal, UserPrincipal};
pub use secret::Secret;
pub use service::{Ezw, EzwBuilder, EzwConfig, WorkerHandle};
pub use time::{BoxFuture, Clock, ManualClock, SystemClock, Timestamp};
