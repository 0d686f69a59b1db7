//! The audit trail: every sensitive change (roles, memberships, line permissions, tokens,
//! webhooks, lines, billing, support access) with actor, target, time and before/after.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::ids::{AuditEventId, OrganizationId};
use crate::model::{AuditActor, AuditEvent};
use crate::ports::Page;
use crate::principal::Principal;
use crate::time::Timestamp;

use super::runtime::Inner;

/// The longest `eventType` filter accepted.
pub const MAX_EVENT_TYPE_LEN: usize = 100;

/// Who a principal is, as the audit trail records it.
pub(crate) fn actor_of(principal: &Principal) -> AuditActor {
    match principal {
        Principal::User(u) => AuditActor { kind: "user", id: Some(u.user_id.to_string()) },
        Principal::Line(l) => AuditActor { kind: "line_token", id: Some(l.token_id.to_string()) },
    }
}

/// What changed, for one audit entry.
#[derive(Debug, Clone)]
pub(crate) struct Change<'a> {
    /// `membership.role_changed`, `line.archived`, ...
    pub(crate) action: &'a str,
    /// `membership`, `line`, `line_permission`, ...
    pub(crate) target_kind: &'a str,
    /// The target's id.
    pub(crate) target_id: String,
    /// The relevant fields before (never secrets).
    pub(crate) before: Option<Value>,
    /// The relevant fields after (never secrets).
    pub(crate) after: Option<Value>,
    /// Anything else worth keeping (never secrets).
    pub(crate) details: Value,
}

/// Builds an audit entry for `change` made by `actor` in `org` at `at`.
pub(crate) fn entry(org: &OrganizationId, actor: AuditActor, change: Change<'_>, at: Timestamp) -> AuditEvent {
    AuditEvent {
        id: AuditEventId::generate(at.unix_ms()),
        organization_id: org.clone(),
        actor,
        action: change.action.to_owned(),
        target_kind: change.target_kind.to_owned(),
        target_id: change.target_id,
        details: change.details,
        before: change.before,
        after: change.after,
        created_at: at,
    }
}

/// Audit trail reads.
#[derive(Clone, Copy)]
pub struct AuditService<'a> {
    pub(crate) inner: &'a Inner,
}

impl AuditService<'_> {
    /// The organization's audit trail, newest first (owners and admins). `event_type` keeps
    /// only one action (`membership.role_changed`), or a family when it ends with a dot
    /// (`membership.`).
    ///
    /// # Errors
    /// 403 for operators and line tokens; 400 `invalid_limit`, `invalid_cursor`,
    /// `invalid_event_type`.
    pub async fn list(
        &self,
        principal: &Principal,
        event_type: Option<&str>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<AuditEvent>> {
        match principal {
            Principal::User(u) if u.role.is_manager() => {}
            _ => return Err(Error::forbidden("only owners and admins can read the audit trail")),
        }
        if !(1..=200).contains(&limit) {
            return Err(Error::invalid("invalid_limit", "limit must be between 1 and 200"));
        }
        let event_type = event_type.map(str::trim).filter(|t| !t.is_empty());
        if let Some(t) = event_type {
            let valid = t.len() <= MAX_EVENT_TYPE_LEN
                && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
            if !valid {
                return Err(Error::invalid(
                    "invalid_event_type",
                    "eventType is an action such as membership.role_changed, or a family such as membership.",
                ));
            }
        }
        self.inner.store.list_audit(principal.organization_id(), event_type, cursor, limit).await
    }
}
