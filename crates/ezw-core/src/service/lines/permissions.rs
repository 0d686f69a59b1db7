//! Per-line permissions: which lines an operator may view and send from. Without an explicit
//! permission an operator has the workspace default ([`LineRights::OPERATOR_DEFAULT`]: view and
//! send every line); owners and admins always have full access.

use serde::Serialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::ids::{LineId, UserId};
use crate::model::{LinePermission, LineRights};
use crate::ports::LiveHint;
use crate::principal::{LineAccess, Principal};

use super::super::audit::{actor_of, entry, Change};
use super::super::runtime::Inner;
use super::{authorize_line, ensure_not_archived, LinesService};

/// A line's permissions as owners and admins see them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinePermissions {
    /// The line.
    pub line_id: LineId,
    /// What operators without an explicit permission may do.
    pub default: LineRights,
    /// The explicit permissions, oldest change first.
    pub permissions: Vec<LinePermission>,
}

fn rights_json(rights: LineRights) -> serde_json::Value {
    json!({ "canView": rights.can_view, "canSend": rights.can_send })
}

fn publish_access_changed(inner: &Inner, line: &LineId, user: &UserId, principal: &Principal) {
    inner.live.publish(LiveHint {
        user_id: Some(user.clone()),
        line_id: Some(line.clone()),
        ..LiveHint::new("access.changed", principal.organization_id().clone())
    });
}

impl LinesService<'_> {
    /// A line's explicit permissions and the default (owners and admins).
    ///
    /// # Errors
    /// `not_found` (404); `forbidden` (403) for operators and line tokens.
    pub async fn permissions(&self, principal: &Principal, line_id: &LineId) -> Result<LinePermissions> {
        let line = authorize_line(self.inner, principal, line_id, LineAccess::Manage).await?;
        let permissions = self.inner.store.list_line_permissions(&line.organization_id, &line.id).await?;
        Ok(LinePermissions { line_id: line.id, default: LineRights::OPERATOR_DEFAULT, permissions })
    }

    /// Sets an operator's explicit permission on a line (owners and admins), audited
    /// `line_permission.set` with before/after. The operator's next request uses it.
    ///
    /// # Errors
    /// `invalid_permission` (400) for `can_send` without `can_view`; `not_found` (404) for the
    /// line or a user who is not a member of the organization; `forbidden` (403);
    /// `line_archived` (409); `manager_has_full_access` (409) for owners and admins.
    pub async fn set_permission(
        &self,
        principal: &Principal,
        line_id: &LineId,
        target: &UserId,
        rights: LineRights,
    ) -> Result<LinePermission> {
        if !rights.is_valid() {
            return Err(Error::invalid("invalid_permission", "canSend needs canView"));
        }
        let line = authorize_line(self.inner, principal, line_id, LineAccess::Manage).await?;
        ensure_not_archived(&line)?;
        let org = &line.organization_id;
        let membership = self.inner.store.get_membership(org, target).await?.ok_or_else(|| Error::not_found("user"))?;
        if membership.role.is_manager() {
            return Err(Error::conflict(
                "manager_has_full_access",
                format!("{}s always have full access to every line", membership.role.as_str()),
            ));
        }
        let before = self.inner.store.get_line_permission(org, &line.id, target).await?;
        let now = self.inner.clock.now();
        let permission = LinePermission {
            organization_id: org.clone(),
            line_id: line.id.clone(),
            user_id: target.clone(),
            can_view: rights.can_view,
            can_send: rights.can_send,
            updated_at: now,
            updated_by: principal.user_id().cloned(),
        };
        let change = Change {
            action: "line_permission.set",
            target_kind: "line_permission",
            target_id: format!("{}:{}", line.id, target),
            before: before.map(|p| rights_json(p.rights())),
            after: Some(rights_json(rights)),
            details: json!({ "lineId": line.id, "userId": target }),
        };
        let audit = entry(org, actor_of(principal), change, now);
        self.inner.store.set_line_permission(&permission, &audit).await?;
        publish_access_changed(self.inner, &line.id, target, principal);
        Ok(permission)
    }

    /// Clears an explicit permission: the user is back to the workspace default (owners and
    /// admins; idempotent). Audited `line_permission.cleared` when one was cleared.
    ///
    /// # Errors
    /// `not_found` (404) for the line or a user who is not a member of the organization;
    /// `forbidden` (403); `line_archived` (409).
    pub async fn clear_permission(&self, principal: &Principal, line_id: &LineId, target: &UserId) -> Result<()> {
        let line = authorize_line(self.inner, principal, line_id, LineAccess::Manage).await?;
        ensure_not_archived(&line)?;
        let org = &line.organization_id;
        self.inner.store.get_membership(org, target).await?.ok_or_else(|| Error::not_found("user"))?;
        let Some(before) = self.inner.store.get_line_permission(org, &line.id, target).await? else {
            return Ok(());
        };
        let change = Change {
            action: "line_permission.cleared",
            target_kind: "line_permission",
            target_id: format!("{}:{}", line.id, target),
            before: Some(rights_json(before.rights())),
            after: None,
            details: json!({ "lineId": line.id, "userId": target, "default": rights_json(LineRights::OPERATOR_DEFAULT) }),
        };
        let audit = entry(org, actor_of(principal), change, self.inner.clock.now());
        if self.inner.store.clear_line_permission(org, &line.id, target, &audit).await? {
            publish_access_changed(self.inner, &line.id, target, principal);
        }
        Ok(())
    }
}
