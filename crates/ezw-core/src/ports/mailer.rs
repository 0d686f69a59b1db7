//! The mailer port: how invitations reach people. The default [`LogMailer`] only logs that an
//! invitation was issued; a deployment that sends email plugs in its own [`Mailer`].

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Organization, Role};
use crate::secret::Secret;
use crate::time::Timestamp;

/// An invitation to hand to its recipient.
#[derive(Debug, Clone)]
pub struct InvitationMail {
    /// The organization inviting.
    pub organization: Organization,
    /// The recipient's (lower-cased) email.
    pub email: String,
    /// The role offered.
    pub role: Role,
    /// The invitation token (`ezw_inv_...`) the recipient accepts with; prints `[redacted]`.
    pub token: Secret,
    /// When the token stops working.
    pub expires_at: Timestamp,
}

/// Delivers invitations.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Hands an invitation to its recipient. The invitation is already stored; a failure here is
    /// logged and the inviting admin still gets the token.
    ///
    /// # Errors
    /// When the message could not be handed over.
    async fn send_invitation(&self, mail: &InvitationMail) -> Result<()>;
}

/// The default mailer: logs recipient, organization, role and expiry (never the token) at
/// `info`. The token reaches the invitee through the admin, who receives it once in the API
/// answer.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogMailer;

#[async_trait]
impl Mailer for LogMailer {
    async fn send_invitation(&self, mail: &InvitationMail) -> Result<()> {
        tracing::info!(
            recipient = %mail.email,
            organization = %mail.organization.id,
            role = mail.role.as_str(),
            expires_at = %mail.expires_at,
            "invitation issued (no mail transport configured: the inviting admin passes the token on)"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use super::*;
    use crate::ids::OrganizationId;
    use crate::model::{BillingState, DEFAULT_PLAN};

    /// Collects every field of every event as text.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<String>>);

    impl Visit for Capture {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let mut out = self.0.lock().unwrap();
            let _ = write!(out, "{}={value:?} ", field.name());
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            event.record(&mut self.clone());
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[tokio::test]
    async fn log_mailer_logs_the_invitation_but_never_the_token() {
        let capture = Capture::default();
        let token = "ezw_inv_TOPSECRETtokenVALUE123";
        let mail = InvitationMail {
            organization: crate::model::Organization {
                id: OrganizationId::generate(1),
                name: "Acme".into(),
                slug: "acme".into(),
                billing_state: BillingState::Active,
                line_slots: 1,
                plan: DEFAULT_PLAN.into(),
                created_at: Timestamp::from_unix_ms(1),
            },
            email: "new.person@example.com".into(),
            role: Role::Operator,
            token: Secret::new(token),
            expires_at: Timestamp::from_unix_ms(604_800_000),
        };
        let dispatch = tracing::Dispatch::new(capture.clone());
        let guard = tracing::dispatcher::set_default(&dispatch);
        LogMailer.send_invitation(&mail).await.unwrap();
        drop(guard);
        let logged = capture.0.lock().unwrap().clone();
        assert!(logged.contains("new.person@example.com"), "{logged}");
        assert!(logged.contains(mail.organization.id.as_str()), "{logged}");
        assert!(logged.contains("operator"), "{logged}");
        assert!(logged.contains("1970-01-08"), "the expiry is logged: {logged}");
        assert!(!logged.contains("TOPSECRET"), "the token leaked into the log: {logged}");
        assert!(!format!("{mail:?}").contains("TOPSECRET"), "Debug of the mail shows the token");
    }
}
