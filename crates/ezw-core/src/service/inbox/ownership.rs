//! Claims and assignments: compare-and-set on the conversation's version, so of two operators
//! acting on the same version exactly one wins.

use crate::error::{Error, Result};
use crate::ids::{ConversationId, UserId};
use crate::model::Conversation;
use crate::ports::{AssignConversation, AssignOutcome, LiveHint};
use crate::principal::Principal;

use super::super::lines::check_assignee;
use super::InboxService;

fn expected(version: Option<i64>) -> Result<i64> {
    match version {
        Some(v) if v >= 1 => Ok(v),
        _ => Err(Error::invalid(
            "invalid_expected_version",
            "expectedVersion must be the conversation's current version (an integer of at least 1)",
        )),
    }
}

fn workspace_user(principal: &Principal) -> Result<&UserId> {
    principal.user_id().ok_or_else(|| Error::forbidden("claims and assignments are workspace actions"))
}

impl InboxService<'_> {
    /// Takes the conversation: the caller becomes its assignee, if its version is still
    /// `expected_version` (missing: 400). The version goes up by one; a `chats.patch` event is
    /// queued with the change.
    ///
    /// # Errors
    /// `forbidden` (403) for line tokens; `invalid_expected_version` (400); `not_found` (404);
    /// `stale_version` (409, with `currentVersion` and `assigneeId`).
    pub async fn claim(
        &self,
        principal: &Principal,
        id: &ConversationId,
        expected_version: Option<i64>,
    ) -> Result<Conversation> {
        let user = workspace_user(principal)?.clone();
        let expected = expected(expected_version)?;
        let (conv, _) = self.fetch(principal, id).await?;
        self.change_assignee(principal, &conv, expected, Some(user)).await
    }

    /// Assigns the conversation to `target` (`None` unassigns), if its version is still
    /// `expected_version`. The target must be an active member who may view the line.
    ///
    /// # Errors
    /// `forbidden` (403) for line tokens; `invalid_expected_version` (400); `not_found` (404) for
    /// the conversation or a target who is not a member; `assignee_cannot_view_line` (409);
    /// `stale_version` (409, with `currentVersion` and `assigneeId`).
    pub async fn assign(
        &self,
        principal: &Principal,
        id: &ConversationId,
        target: Option<&UserId>,
        expected_version: Option<i64>,
    ) -> Result<Conversation> {
        workspace_user(principal)?;
        let expected = expected(expected_version)?;
        let (conv, line) = self.fetch(principal, id).await?;
        if let Some(target) = target {
            check_assignee(self.inner, &line, target).await?;
        }
        self.change_assignee(principal, &conv, expected, target.cloned()).await
    }

    async fn change_assignee(
        &self,
        principal: &Principal,
        conv: &Conversation,
        expected_version: i64,
        assignee: Option<UserId>,
    ) -> Result<Conversation> {
        let change = AssignConversation {
            organization_id: conv.organization_id.clone(),
            conversation_id: conv.id.clone(),
            expected_version,
            assignee_id: assignee,
            by: principal.user_id().cloned(),
            at: self.inner.clock.now(),
        };
        match self.inner.store.assign_conversation(&change).await? {
            AssignOutcome::Assigned { after, .. } => {
                self.inner.wake_webhooks();
                self.inner.live.publish(LiveHint {
                    line_id: Some(after.line_id.clone()),
                    conversation_id: Some(after.id.clone()),
                    version: Some(after.version),
                    user_id: after.assignee_id.clone(),
                    ..LiveHint::new("conversation.updated", after.organization_id.clone())
                });
                Ok(*after)
            }
            AssignOutcome::Stale(current) => Err(Error::conflict(
                "stale_version",
                format!("the conversation is at version {}, not {expected_version}", current.version),
            )
            .with_detail("currentVersion", current.version)
            .with_detail("assigneeId", current.assignee_id.as_ref().map(ToString::to_string))),
            AssignOutcome::NotFound => Err(Error::not_found("conversation")),
        }
    }
}
