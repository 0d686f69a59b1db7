//! `impl AccessStore for PgStore` (the SQL is in `identity.rs` and `billing.rs`).

use async_trait::async_trait;
use ezw_core::ids::{OrganizationId, SessionId, UserId};
use ezw_core::model::{AuditEvent, BillingState, Checkout, Member, MembershipStatus, Organization};
use ezw_core::ports::{
    AccessStore, BillingUsage, InvitationAcceptance, InvitationRecord, MembershipUpdate, NewInvitation, RefreshRotation,
};
use ezw_core::{Result, Timestamp};

use super::{billing, identity, PgStore};

#[async_trait]
impl AccessStore for PgStore {
    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        new_hash: &str,
        now: Timestamp,
    ) -> Result<RefreshRotation> {
        let (presented, next) = (presented_hash.to_owned(), new_hash.to_owned());
        self.db.retry(|| identity::rotate_refresh_token(&self.db, &presented, &next, now)).await
    }

    async fn revoke_session(&self, id: &SessionId, at: Timestamp) -> Result<bool> {
        let id = id.clone();
        self.db.retry(|| identity::revoke_session(&self.db, &id, at)).await
    }

    async fn list_members(&self, org: &OrganizationId, status: Option<MembershipStatus>) -> Result<Vec<Member>> {
        let org = org.clone();
        identity::list_members(&self.db, &org, status).await
    }

    async fn get_member(&self, org: &OrganizationId, user: &UserId) -> Result<Option<Member>> {
        let (org, user) = (org.clone(), user.clone());
        identity::get_member(&self.db, &org, &user).await
    }

    async fn invite_member(&self, invite: &NewInvitation, audit: &AuditEvent) -> Result<Member> {
        let (invite, audit) = (invite.clone(), audit.clone());
        self.db.retry(|| identity::invite_member(&self.db, &invite, &audit)).await
    }

    async fn find_invitation(&self, token_hash: &str) -> Result<Option<InvitationRecord>> {
        let hash = token_hash.to_owned();
        identity::find_invitation(&self.db, &hash).await
    }

    async fn accept_invitation(&self, accept: &InvitationAcceptance, audit: &AuditEvent) -> Result<Option<Member>> {
        let (accept, audit) = (accept.clone(), audit.clone());
        self.db.retry(|| identity::accept_invitation(&self.db, &accept, &audit)).await
    }

    async fn update_membership(&self, update: &MembershipUpdate, audit: &[AuditEvent]) -> Result<Option<Member>> {
        let (update, audit) = (update.clone(), audit.to_vec());
        self.db.retry(|| identity::update_membership(&self.db, &update, &audit)).await
    }

    async fn billing_usage(&self, org: &OrganizationId) -> Result<BillingUsage> {
        let org = org.clone();
        billing::billing_usage(&self.db, &org).await
    }

    async fn insert_checkout(&self, checkout: &Checkout, audit: &AuditEvent) -> Result<()> {
        let (checkout, audit) = (checkout.clone(), audit.clone());
        self.db.retry(|| billing::insert_checkout(&self.db, &checkout, &audit)).await
    }

    async fn get_checkout(&self, id: &str) -> Result<Option<Checkout>> {
        let id = id.to_owned();
        billing::get_checkout(&self.db, &id).await
    }

    async fn settle_checkout(
        &self,
        id: &str,
        at: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<(Checkout, Organization)>> {
        let (id, audit) = (id.to_owned(), audit.to_vec());
        self.db.retry(|| billing::settle_checkout(&self.db, &id, at, &audit)).await
    }

    async fn set_billing_state(
        &self,
        org: &OrganizationId,
        state: BillingState,
        audit: &AuditEvent,
    ) -> Result<Option<Organization>> {
        let (org, audit) = (org.clone(), audit.clone());
        self.db.retry(|| billing::set_billing_state(&self.db, &org, state, &audit)).await
    }
}
