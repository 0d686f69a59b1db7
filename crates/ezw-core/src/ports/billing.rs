//! The billing gateway port: where checkout sessions come from. The default
//! [`ManualBillingGateway`] has no payment page: an operator settles each checkout by hand
//! (`ezw-server billing settle <checkoutId>`, or [`BillingService::settle_checkout`]).
//!
//! [`BillingService::settle_checkout`]: crate::service::BillingService::settle_checkout

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{new_id_body, OrganizationId};
use crate::time::Clock;

/// What a checkout is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// The paying organization.
    pub organization_id: OrganizationId,
    /// Its plan.
    pub plan: String,
    /// The line slots to pay for.
    pub line_slots: u32,
}

/// A checkout session created by a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    /// The gateway's id for it (at most 200 characters).
    pub id: String,
    /// The gateway's status (`open`, `awaiting_operator`, ...).
    pub status: String,
    /// The payment page, when the gateway has one.
    pub url: Option<url::Url>,
    /// What the customer should do, when there is no page (or in addition to it).
    pub instructions: Option<String>,
}

/// Creates checkout sessions.
#[async_trait]
pub trait BillingGateway: Send + Sync + 'static {
    /// Starts a checkout for `request`.
    ///
    /// # Errors
    /// When the gateway cannot be reached (`Temporary`) or refuses.
    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<CheckoutSession>;
}

/// The status of checkouts that wait for an operator.
pub const AWAITING_OPERATOR: &str = "awaiting_operator";

/// The default gateway: no payment provider. Each checkout gets an id (`chk_...`), status
/// `awaiting_operator` and instructions saying an operator settles it; it never invents a URL.
#[derive(Clone)]
pub struct ManualBillingGateway {
    clock: Arc<dyn Clock>,
}

impl ManualBillingGateway {
    /// A gateway whose checkout ids are ordered by `clock`'s time.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }
}

impl std::fmt::Debug for ManualBillingGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManualBillingGateway")
    }
}

#[async_trait]
impl BillingGateway for ManualBillingGateway {
    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<CheckoutSession> {
        let id = format!("chk_{}", new_id_body(self.clock.now().unix_ms()));
        let instructions = format!(
            "Payment is settled by an operator: contact support and quote checkout {id} ({} plan, {} line slots).",
            request.plan, request.line_slots
        );
        Ok(CheckoutSession { id, status: AWAITING_OPERATOR.to_owned(), url: None, instructions: Some(instructions) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{ManualClock, Timestamp};

    #[tokio::test]
    async fn manual_checkouts_wait_for_an_operator_and_have_no_url() {
        let gateway = ManualBillingGateway::new(Arc::new(ManualClock::new(Timestamp::from_unix_ms(5_000))));
        let request =
            CheckoutRequest { organization_id: OrganizationId::generate(1), plan: "standard".into(), line_slots: 3 };
        let a = gateway.create_checkout(&request).await.unwrap();
        let b = gateway.create_checkout(&request).await.unwrap();
        assert!(a.id.starts_with("chk_") && a.id != b.id);
        assert_eq!(a.status, AWAITING_OPERATOR);
        assert_eq!(a.url, None);
        assert!(a.instructions.unwrap().contains(&a.id));
    }
}
