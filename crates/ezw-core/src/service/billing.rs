//! Billing: the status members see, the recovery checkout owners start, and the system-level
//! calls an operator (or an embedding app's payment webhook) uses to settle checkouts and set
//! billing states. Every change is audited as `billing.*`.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use crate::error::{Error, ErrorKind, Result};
use crate::ids::OrganizationId;
use crate::model::{AuditActor, BillingState, Checkout, Organization, Role};
use crate::ports::{BillingGateway, CheckoutRequest, ManualBillingGateway};
use crate::principal::Principal;
use crate::time::Timestamp;

use super::audit::{actor_of, entry, Change};
use super::runtime::Inner;

/// The longest checkout id accepted from a gateway or an operator.
const MAX_CHECKOUT_ID_LEN: usize = 200;

/// What an organization may do in its billing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingPolicy {
    /// Outbound messages are sent.
    pub can_send: bool,
    /// A line can be added now (the state allows it and a slot is free).
    pub can_add_lines: bool,
}

/// Line slots of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineSlots {
    /// Slots the plan allows.
    pub allocated: u32,
    /// Lines that are not archived.
    pub used: u32,
    /// Slots free.
    pub available: u32,
}

/// Memberships that count as seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Seats {
    /// Active members.
    pub active: u32,
    /// Invited, not yet accepted.
    pub invited: u32,
}

/// A checkout as members see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutView {
    /// The gateway's id.
    pub id: String,
    /// Its status (`awaiting_operator`, ...).
    pub status: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// What to do, when the gateway says.
    pub instructions: Option<String>,
    /// The payment page, when there is one.
    pub url: Option<String>,
}

impl From<Checkout> for CheckoutView {
    fn from(c: Checkout) -> Self {
        Self { id: c.id, status: c.status, created_at: c.created_at, instructions: c.instructions, url: c.url }
    }
}

/// `GET /api/billing/status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingStatus {
    /// The billing state.
    pub state: BillingState,
    /// The plan.
    pub plan: String,
    /// What the state allows.
    pub policy: BillingPolicy,
    /// Line slots.
    pub line_slots: LineSlots,
    /// Seats.
    pub seats: Seats,
    /// The open checkout, if any.
    pub checkout: Option<CheckoutView>,
}

/// Billing service.
#[derive(Clone, Copy)]
pub struct BillingService<'a> {
    pub(crate) inner: &'a Inner,
}

fn state_json(state: BillingState) -> serde_json::Value {
    json!({ "state": state.as_str() })
}

impl BillingService<'_> {
    fn gateway(&self) -> Arc<dyn BillingGateway> {
        match &self.inner.billing_gateway {
            Some(g) => g.clone(),
            None => Arc::new(ManualBillingGateway::new(self.inner.clock.clone())),
        }
    }

    async fn organization(&self, id: &OrganizationId) -> Result<Organization> {
        self.inner.store.get_organization(id).await?.ok_or_else(|| Error::not_found("organization"))
    }

    /// The billing status of the caller's organization (any member).
    ///
    /// # Errors
    /// 403 for line tokens.
    pub async fn status(&self, principal: &Principal) -> Result<BillingStatus> {
        if matches!(principal, Principal::Line(_)) {
            return Err(Error::forbidden("line tokens cannot read billing"));
        }
        let org = self.organization(principal.organization_id()).await?;
        let usage = self.inner.store.billing_usage(&org.id).await?;
        let available = org.line_slots.saturating_sub(usage.lines_used);
        Ok(BillingStatus {
            state: org.billing_state,
            plan: org.plan,
            policy: BillingPolicy {
                can_send: org.billing_state.allows_sending(),
                can_add_lines: org.billing_state.allows_new_lines() && available > 0,
            },
            line_slots: LineSlots { allocated: org.line_slots, used: usage.lines_used, available },
            seats: Seats { active: usage.active_seats, invited: usage.invited_seats },
            checkout: usage.open_checkout.map(CheckoutView::from),
        })
    }

    /// Starts a checkout to pay for a `restricted` or `pending` workspace (owners only), through
    /// the runtime's [`BillingGateway`].
    ///
    /// # Errors
    /// 403 `owner_role_required`; 409 `billing_not_restricted` when the workspace is active;
    /// the gateway's errors.
    pub async fn start_recovery_checkout(&self, principal: &Principal) -> Result<CheckoutView> {
        match principal {
            Principal::User(u) if u.role == Role::Owner => {}
            _ => {
                return Err(Error::new(ErrorKind::Forbidden, "owner_role_required", "only owners can start a checkout"))
            }
        }
        let org = self.organization(principal.organization_id()).await?;
        if !org.billing_state.needs_checkout() {
            return Err(Error::conflict("billing_not_restricted", "the workspace is paid up: nothing to recover")
                .with_detail("state", org.billing_state.as_str()));
        }
        let request =
            CheckoutRequest { organization_id: org.id.clone(), plan: org.plan.clone(), line_slots: org.line_slots };
        let session = self.gateway().create_checkout(&request).await?;
        if session.id.is_empty() || session.id.len() > MAX_CHECKOUT_ID_LEN {
            return Err(Error::internal("the billing gateway returned an unusable checkout id"));
        }
        let now = self.inner.clock.now();
        let checkout = Checkout {
            id: session.id,
            organization_id: org.id.clone(),
            plan: org.plan,
            line_slots: org.line_slots,
            status: session.status,
            url: session.url.map(String::from),
            instructions: session.instructions,
            created_at: now,
            settled_at: None,
        };
        let audit = entry(
            &org.id,
            actor_of(principal),
            Change {
                action: "billing.checkout_created",
                target_kind: "checkout",
                target_id: checkout.id.clone(),
                before: None,
                after: Some(json!({ "status": checkout.status })),
                details: json!({ "plan": checkout.plan, "lineSlots": checkout.line_slots }),
            },
            now,
        );
        self.inner.store.insert_checkout(&checkout, &audit).await?;
        Ok(checkout.into())
    }

    /// Settles a checkout (system-level: an operator or a payment webhook confirmed payment):
    /// the checkout becomes `settled` and its organization `active`, audited by actor `system`.
    ///
    /// # Errors
    /// 400 `invalid_checkout_id`; 404 for an unknown checkout; 409 `checkout_settled`.
    pub async fn settle_checkout(&self, id: &str) -> Result<(Checkout, Organization)> {
        let id = id.trim();
        if id.is_empty() || id.len() > MAX_CHECKOUT_ID_LEN {
            return Err(Error::invalid("invalid_checkout_id", "a checkout id is 1 to 200 characters"));
        }
        let checkout = self.inner.store.get_checkout(id).await?.ok_or_else(|| Error::not_found("checkout"))?;
        if !checkout.is_open() {
            return Err(settled());
        }
        let org = self.organization(&checkout.organization_id).await?;
        let now = self.inner.clock.now();
        let mut audits = vec![entry(
            &org.id,
            AuditActor::system(),
            Change {
                action: "billing.checkout_settled",
                target_kind: "checkout",
                target_id: checkout.id.clone(),
                before: Some(json!({ "status": checkout.status })),
                after: Some(json!({ "status": Checkout::SETTLED })),
                details: json!({ "plan": checkout.plan, "lineSlots": checkout.line_slots }),
            },
            now,
        )];
        if org.billing_state != BillingState::Active {
            audits.push(entry(
                &org.id,
                AuditActor::system(),
                Change {
                    action: "billing.state_changed",
                    target_kind: "organization",
                    target_id: org.id.to_string(),
                    before: Some(state_json(org.billing_state)),
                    after: Some(state_json(BillingState::Active)),
                    details: json!({ "checkoutId": checkout.id }),
                },
                now,
            ));
        }
        self.inner.store.settle_checkout(id, now, &audits).await?.ok_or_else(|| Error::not_found("checkout"))
    }

    /// Sets an organization's billing state (system-level), audited by actor `system`. Setting
    /// the state it already has changes and records nothing.
    ///
    /// # Errors
    /// 404 for an unknown organization.
    pub async fn set_state(&self, org: &OrganizationId, state: BillingState) -> Result<Organization> {
        let current = self.organization(org).await?;
        if current.billing_state == state {
            return Ok(current);
        }
        let now = self.inner.clock.now();
        let audit = entry(
            org,
            AuditActor::system(),
            Change {
                action: "billing.state_changed",
                target_kind: "organization",
                target_id: org.to_string(),
                before: Some(state_json(current.billing_state)),
                after: Some(state_json(state)),
                details: json!({}),
            },
            now,
        );
        self.inner.store.set_billing_state(org, state, &audit).await?.ok_or_else(|| Error::not_found("organization"))
    }
}

fn settled() -> Error {
    Error::conflict("checkout_settled", "this checkout was already settled")
}
