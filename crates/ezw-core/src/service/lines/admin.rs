//! Line administration: the default assignee of new conversations, and archiving.

use serde_json::json;

use crate::error::{Error, Result};
use crate::ids::{LineId, UserId};
use crate::model::{LifecycleState, Line};
use crate::principal::{LineAccess, Principal};

use super::super::audit::{actor_of, entry, Change};
use super::super::events::change_hint;
use super::{
    authorize_line, check_assignee, ensure_not_archived, publish_line_state, publish_line_updated, LinesService,
};

impl LinesService<'_> {
    /// Sets (`Some`) or clears (`None`) the line's default assignee (owners and admins), audited
    /// `line.default_assignee_changed`. New conversations on the line start assigned to them;
    /// existing ones, provider echoes and later messages never change an assignee.
    ///
    /// # Errors
    /// `not_found` (404) for the line or a user who is not a member; `forbidden` (403);
    /// `line_archived` (409); `assignee_cannot_view_line` (409) when the user is not an active
    /// member who may view the line.
    pub async fn set_default_assignee(
        &self,
        principal: &Principal,
        line_id: &LineId,
        assignee: Option<&UserId>,
    ) -> Result<Line> {
        let line = authorize_line(self.inner, principal, line_id, LineAccess::Manage).await?;
        ensure_not_archived(&line)?;
        if let Some(user) = assignee {
            check_assignee(self.inner, &line, user).await?;
        }
        if line.default_assignee_id.as_ref() == assignee {
            return Ok(line);
        }
        let now = self.inner.clock.now();
        let change = Change {
            action: "line.default_assignee_changed",
            target_kind: "line",
            target_id: line.id.to_string(),
            before: Some(json!({ "defaultAssigneeId": line.default_assignee_id })),
            after: Some(json!({ "defaultAssigneeId": assignee })),
            details: json!({}),
        };
        let audit = entry(&line.organization_id, actor_of(principal), change, now);
        let updated = self
            .inner
            .store
            .set_default_assignee(&line.organization_id, &line.id, assignee, now, &audit)
            .await?
            .ok_or_else(|| Error::not_found("line"))?;
        publish_line_updated(self.inner, &updated);
        Ok(updated)
    }

    /// Archives the line (owners and admins; idempotent), audited `line.archived`. An archived
    /// line takes no new work: sends answer 409 `line_not_sendable`, token rotation and
    /// permission or assignment changes 409 `line_archived`, and its queued messages fail with
    /// `line_archived` now (a message whose provider call is already under way finishes as the
    /// provider answers). Inbound messages are still recorded, and its history stays readable.
    ///
    /// # Errors
    /// `not_found` (404); `forbidden` (403).
    pub async fn archive(&self, principal: &Principal, line_id: &LineId) -> Result<Line> {
        let line = authorize_line(self.inner, principal, line_id, LineAccess::Manage).await?;
        if line.lifecycle_state == LifecycleState::Archived {
            return Ok(line);
        }
        let now = self.inner.clock.now();
        let change = Change {
            action: "line.archived",
            target_kind: "line",
            target_id: line.id.to_string(),
            before: Some(json!({ "lifecycleState": line.lifecycle_state })),
            after: Some(json!({ "lifecycleState": LifecycleState::Archived })),
            details: json!({}),
        };
        let audit = entry(&line.organization_id, actor_of(principal), change, now);
        let archived = self
            .inner
            .store
            .archive_line(&line.organization_id, &line.id, now, &audit)
            .await?
            .ok_or_else(|| Error::not_found("line"))?;
        if archived.newly_archived {
            publish_line_state(self.inner, &archived.line, LifecycleState::Archived);
            for m in &archived.failed {
                self.inner.live.publish(change_hint(m));
            }
            self.inner.wake_webhooks();
        }
        Ok(archived.line)
    }
}
