//! Lines: creation, visibility, API tokens, health.

use serde::Serialize;

use crate::crypto::{random_token, sha256_hex};
use crate::error::{Error, Result};
use crate::ids::{LineId, LineTokenId};
use crate::model::{
    EffectiveSendState, HealthStatus, LifecycleState, Line, LineTokenRecord, Organization, ProviderKind,
};
use crate::phone::PhoneNumber;
use crate::ports::{LineContext, LiveHint};
use crate::principal::{LineAccess, Principal};
use crate::secret::Secret;

use super::auth::LINE_TOKEN_PREFIX;
use super::runtime::Inner;

/// A line to create.
#[derive(Debug, Clone)]
pub struct NewLine {
    /// Display name.
    pub display_name: String,
    /// The line's number.
    pub phone_number: String,
    /// Provider.
    pub provider_kind: ProviderKind,
    /// Provider configuration, validated by the provider.
    pub provider_config: serde_json::Value,
    /// Send pacing; `None` uses the provider's defaults.
    pub pacing: Option<crate::model::Pacing>,
}

/// A freshly created or rotated line token: shown once.
#[derive(Debug, Clone)]
pub struct RotatedToken {
    /// The token record id.
    pub token_id: LineTokenId,
    /// The line.
    pub line_id: LineId,
    /// The token (only here; EZW keeps its hash).
    pub token: Secret,
    /// Whether an earlier token was revoked.
    pub rotated: bool,
}

/// A line's health as the Channel API reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineHealth {
    /// The line.
    pub line: Line,
    /// Whether a provider wake-up was requested.
    pub wakeup_requested: bool,
    /// Whapi-compatible status.
    pub status: HealthStatus,
    /// Effective send state.
    pub effective_send_state: EffectiveSendState,
}

impl LineHealth {
    /// Whether sends are accepted now.
    #[must_use]
    pub fn sendable(&self) -> bool {
        self.effective_send_state == EffectiveSendState::Sendable
    }
}

/// Line service.
#[derive(Clone, Copy)]
pub struct LinesService<'a> {
    pub(crate) inner: &'a Inner,
}

/// Loads a line within the principal's organization and checks access. Another organization's
/// line, or another line for a line token, is a 404.
pub(crate) async fn authorize_line(
    inner: &Inner,
    principal: &Principal,
    line_id: &LineId,
    access: LineAccess,
) -> Result<Line> {
    authorize_line_context(inner, principal, line_id, access).await.map(|c| c.line)
}

/// [`authorize_line`], also returning the organization's billing state (one read).
pub(crate) async fn authorize_line_context(
    inner: &Inner,
    principal: &Principal,
    line_id: &LineId,
    access: LineAccess,
) -> Result<LineContext> {
    if let Principal::Line(lp) = principal {
        if &lp.line_id != line_id {
            return Err(Error::not_found("line"));
        }
    }
    let ctx = inner
        .store
        .get_line_context(principal.organization_id(), line_id)
        .await?
        .ok_or_else(|| Error::not_found("line"))?;
    match (principal, access) {
        (Principal::Line(_), LineAccess::Manage) => {
            Err(Error::forbidden("line tokens cannot manage lines; use a workspace token"))
        }
        (Principal::User(u), LineAccess::Manage) if !u.role.is_manager() => {
            Err(Error::forbidden("only owners and admins can manage lines"))
        }
        _ => Ok(ctx),
    }
}

/// The lines a principal may view: `None` means every line of its organization. The inbox
/// list, live stream and other multi-line reads filter by this.
pub(crate) async fn visible_line_ids(_inner: &Inner, principal: &Principal) -> Result<Option<Vec<LineId>>> {
    Ok(match principal {
        Principal::Line(lp) => Some(vec![lp.line_id.clone()]),
        Principal::User(_) => None,
    })
}

pub(crate) async fn organization(inner: &Inner, principal: &Principal) -> Result<Organization> {
    inner
        .store
        .get_organization(principal.organization_id())
        .await?
        .ok_or_else(|| Error::unauthenticated("organization not found"))
}

impl LinesService<'_> {
    /// Creates a line (owners and admins).
    ///
    /// # Errors
    /// `forbidden` (403) for operators and line tokens; `invalid_phone_number`,
    /// `invalid_display_name` or the provider's config error (400); `provider_not_configured`
    /// (501); `line_exists` or `line_slots_exhausted` (409).
    pub async fn create_line(&self, principal: &Principal, new: NewLine) -> Result<Line> {
        let Principal::User(user) = principal else {
            return Err(Error::forbidden("line tokens cannot create lines"));
        };
        if !user.role.is_manager() {
            return Err(Error::forbidden("only owners and admins can create lines"));
        }
        let display_name = new.display_name.trim();
        if display_name.is_empty() || display_name.chars().count() > 80 {
            return Err(Error::invalid("invalid_display_name", "displayName must be 1 to 80 characters"));
        }
        let phone = PhoneNumber::parse(&new.phone_number)?;
        let provider = self.inner.provider(new.provider_kind)?;
        let config = provider.validate_config(&new.provider_config)?;
        if let Some(p) = &new.pacing {
            p.validate()?;
        }
        let org = organization(self.inner, principal).await?;
        let lines = self.inner.store.list_lines(&org.id).await?;
        let active = lines.iter().filter(|l| l.lifecycle_state != LifecycleState::Archived).count();
        if active >= org.line_slots as usize {
            return Err(Error::conflict(
                "line_slots_exhausted",
                format!("the plan allows {} active lines", org.line_slots),
            ));
        }
        let now = self.inner.clock.now();
        let line = Line {
            id: LineId::generate(now.unix_ms()),
            organization_id: org.id,
            display_name: display_name.to_owned(),
            phone_number: phone,
            provider_kind: new.provider_kind,
            provider_config: config,
            lifecycle_state: provider.initial_state(),
            state_reason: None,
            default_assignee_id: None,
            pacing: new.pacing,
            created_at: now,
            updated_at: now,
        };
        self.inner.store.insert_line(&line).await?;
        Ok(line)
    }

    /// A line the caller may see.
    ///
    /// # Errors
    /// `not_found` (404).
    pub async fn get(&self, principal: &Principal, id: &LineId) -> Result<Line> {
        authorize_line(self.inner, principal, id, LineAccess::View).await
    }

    /// The lines the caller may see.
    ///
    /// # Errors
    /// Storage errors only.
    pub async fn list(&self, principal: &Principal) -> Result<Vec<Line>> {
        let lines = self.inner.store.list_lines(principal.organization_id()).await?;
        Ok(match principal {
            Principal::Line(lp) => lines.into_iter().filter(|l| l.id == lp.line_id).collect(),
            Principal::User(_) => lines,
        })
    }

    /// Creates or rotates the line's API token (owners and admins). The old token stops
    /// working at once. The new token is returned once and stored only as a hash.
    ///
    /// # Errors
    /// `not_found` (404); `forbidden` (403).
    pub async fn rotate_api_token(&self, principal: &Principal, id: &LineId) -> Result<RotatedToken> {
        let line = authorize_line(self.inner, principal, id, LineAccess::Manage).await?;
        let token = random_token(LINE_TOKEN_PREFIX, 24);
        let now = self.inner.clock.now();
        let record = LineTokenRecord {
            id: LineTokenId::generate(now.unix_ms()),
            organization_id: line.organization_id.clone(),
            line_id: line.id.clone(),
            token_hash: sha256_hex(token.as_bytes()),
            last_four: token[token.len() - 4..].to_owned(),
            created_by: principal.user_id().cloned(),
            created_at: now,
        };
        let had_token = self.inner.store.replace_line_token(&record).await?;
        Ok(RotatedToken { token_id: record.id, line_id: line.id, token: Secret::new(token), rotated: had_token })
    }

    /// The line's provider configuration as callers may see it (`kind`, identifiers, masked
    /// secrets).
    #[must_use]
    pub fn provider_view(&self, line: &Line) -> serde_json::Value {
        let mut view = match self.inner.providers.get(&line.provider_kind) {
            Some(p) => p.describe_config(&line.provider_config),
            None => serde_json::json!({}),
        };
        if let Some(map) = view.as_object_mut() {
            map.insert("kind".into(), line.provider_kind.as_str().into());
        }
        view
    }

    /// The pacing the line sends with: its own, or its provider's defaults.
    #[must_use]
    pub fn effective_pacing(&self, line: &Line) -> Option<crate::model::Pacing> {
        line.pacing.or_else(|| self.inner.providers.get(&line.provider_kind).map(|p| p.default_pacing()))
    }

    /// The line's health. With `wakeup`, the provider is asked (and may reconnect); without,
    /// the call is read-only.
    ///
    /// # Errors
    /// `not_found` (404).
    pub async fn health(&self, principal: &Principal, id: &LineId, wakeup: bool) -> Result<LineHealth> {
        let mut line = authorize_line(self.inner, principal, id, LineAccess::View).await?;
        if wakeup && line.lifecycle_state != LifecycleState::Archived {
            let provider = self.inner.provider(line.provider_kind)?;
            match provider.health(&line, true).await {
                Ok(h) if h.lifecycle_state != line.lifecycle_state => {
                    if let Some(updated) = self.set_state(&line, h.lifecycle_state, h.reason.as_deref()).await? {
                        line = updated;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(line = %line.id, error = %e, "provider health check failed"),
            }
        }
        let org = organization(self.inner, principal).await?;
        let effective = line.effective_send_state(org.billing_state.allows_sending());
        Ok(LineHealth {
            status: HealthStatus::from_lifecycle(line.lifecycle_state),
            effective_send_state: effective,
            wakeup_requested: wakeup,
            line,
        })
    }

    async fn set_state(&self, line: &Line, state: LifecycleState, reason: Option<&str>) -> Result<Option<Line>> {
        let now = self.inner.clock.now();
        let updated = self.inner.store.set_line_state(&line.organization_id, &line.id, state, reason, now).await?;
        publish_line_state(self.inner, line, state);
        self.inner.wake_webhooks();
        if state == LifecycleState::Connected {
            self.inner.outbox_wake.notify_one();
        }
        Ok(updated)
    }
}

pub(crate) fn publish_line_state(inner: &Inner, line: &Line, state: LifecycleState) {
    inner.live.publish(LiveHint {
        line_id: Some(line.id.clone()),
        state: Some(state.as_str()),
        ..LiveHint::new("line.state", line.organization_id.clone())
    });
}
