//! Ports: the traits EZW's core uses to reach storage, providers, live subscribers and identity
//! primitives. All are object-safe, `Send + Sync`, and used as `Arc<dyn Port>`.

mod access_store;
mod billing;
mod blob;
mod cluster;
mod identity;
mod live;
mod mailer;
mod provider;
mod session;
mod store;
mod webhook;
mod workspace_store;

pub use access_store::AccessStore;
pub use access_store::{
    BillingUsage, InvitationAcceptance, InvitationRecord, MembershipState, MembershipUpdate, NewInvitation,
    RefreshRotation,
};
pub use billing::{BillingGateway, CheckoutRequest, CheckoutSession, ManualBillingGateway, AWAITING_OPERATOR};
pub use blob::BlobStore;
pub use cluster::{ClusterStore, SessionLease, Wake, WakeSource};
pub use identity::{Argon2Hasher, HmacTokenSigner, IdClaims, PasswordHasher, TokenSigner};
pub use live::{BroadcastHub, LiveEvent, LiveEventId, LiveHint, LiveHub, Replay, LIVE_HINT_KINDS};
pub use mailer::{InvitationMail, LogMailer, Mailer};
pub use provider::{
    Capabilities, EventSink, FetchedMedia, InboundRequest, IngestOutcome, IngestResponse, LineProvider,
    OutboundMessage, ProviderError, ProviderErrorKind, ProviderEvent, ProviderHealth, SendReceipt, SessionSignal,
};
pub use session::{PairingRequestOutcome, SessionStateRecord, SessionStore, StateSelector, TransitionOutcome};
pub use store::{
    AttemptOutcome, AttemptRecord, ConversationQuery, DeliveryJob, DeliveryOutcome, DeliveryResult, EnqueueOutcome,
    IdempotencyClaim, InboundOutcome, JobDisposition, JobResult, LineContext, LineTokenMatch, MessageChange,
    NewInbound, NewOutbound, OutboxJob, OutboxStats, Page, SendTarget, SessionRecord, StatusUpdate, Store,
    StoredWebhook, UnknownResolution,
};
pub use webhook::{
    TransportError, TransportErrorKind, WebhookRequest, WebhookResponse, WebhookTransport, RESPONSE_EXCERPT_BYTES,
};
pub use workspace_store::WorkspaceStore;
pub use workspace_store::{
    ArchivedLine, AssignConversation, AssignOutcome, CreateLine, CreateLineOutcome, LineAccessContext, LineIdempotency,
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every port must stay usable as a trait object.
    #[allow(dead_code, clippy::too_many_arguments)]
    fn assert_object_safe(
        _: &dyn BlobStore,
        _: &dyn Store,
        _: &dyn LineProvider,
        _: &dyn LiveHub,
        _: &dyn PasswordHasher,
        _: &dyn TokenSigner,
        _: &dyn crate::time::Clock,
        _: &dyn WebhookTransport,
        _: &dyn Mailer,
        _: &dyn BillingGateway,
    ) {
    }

    #[test]
    fn ports_are_send_sync() {
        fn check<T: ?Sized + Send + Sync>() {}
        check::<dyn Store>();
        check::<dyn LineProvider>();
        check::<dyn LiveHub>();
        check::<dyn PasswordHasher>();
        check::<dyn TokenSigner>();
    }
}
