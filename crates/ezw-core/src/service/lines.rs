//! Lines: creation, visibility and per-line permissions, API tokens, health, default assignee,
//! archiving.

use serde::Serialize;
use serde_json::{json, Value};

use crate::crypto::{random_token, sha256_hex};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{LineId, LineTokenId, UserId};
use crate::model::{
    BillingState, EffectiveSendState, HealthStatus, LifecycleState, Line, LinePermission, LineRights, LineTokenRecord,
    MembershipStatus, Organization, ProviderKind,
};
use crate::phone::PhoneNumber;
use crate::ports::{CreateLine, CreateLineOutcome, LineContext, LineIdempotency, LiveHint};
use crate::principal::{LineAccess, Principal};
use crate::secret::Secret;

use super::audit::{actor_of, entry, Change};
use super::auth::LINE_TOKEN_PREFIX;
use super::messages::MAX_IDEMPOTENCY_KEY_LEN;
use super::runtime::Inner;

mod admin;
mod pairing;
mod permissions;

use pairing::queue_first_pairing;
pub use pairing::{PairingRequested, MAX_TRANSITIONS_PAGE};
pub use permissions::LinePermissions;

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

/// The result of [`LinesService::create`].
#[derive(Debug, Clone)]
pub struct CreatedLine {
    /// The line.
    pub line: Line,
    /// Whether this is the line an earlier request with the same idempotency key created.
    pub replayed: bool,
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
    /// Things an operator should know before sending (QR lines: WhatsApp's limit signals, pacing
    /// faster than the anti-ban defaults). Empty when all is well.
    pub warnings: Vec<HealthWarning>,
}

/// A warning in a line's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthWarning {
    /// Machine-readable code (`rate_limited`, `recent_limit_signal`, `pacing_above_recommended`,
    /// `pacing_without_jitter`).
    pub code: &'static str,
    /// What it means and what to do.
    pub message: String,
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
/// line, another line for a line token, or a line an operator may not view is a 404.
pub(crate) async fn authorize_line(
    inner: &Inner,
    principal: &Principal,
    line_id: &LineId,
    access: LineAccess,
) -> Result<Line> {
    authorize_line_context(inner, principal, line_id, access).await.map(|c| c.line)
}

/// [`authorize_line`], also returning the organization's billing state (one read): a line token
/// reaches its own line; owners and admins every line of their organization; an operator what
/// their explicit permission on the line allows, or [`LineRights::OPERATOR_DEFAULT`] without
/// one. Viewing is needed for everything (else 404); sending without the right is 403
/// `line_send_denied`; managing is for owners and admins (403).
pub(crate) async fn authorize_line_context(
    inner: &Inner,
    principal: &Principal,
    line_id: &LineId,
    access: LineAccess,
) -> Result<LineContext> {
    let not_found = || Error::not_found("line");
    match principal {
        Principal::Line(lp) => {
            if &lp.line_id != line_id {
                return Err(not_found());
            }
            let ctx = inner.store.get_line_context(&lp.organization_id, line_id).await?.ok_or_else(not_found)?;
            if access == LineAccess::Manage {
                return Err(Error::forbidden("line tokens cannot manage lines; use a workspace token"));
            }
            Ok(ctx)
        }
        Principal::User(u) if u.role.is_manager() => {
            inner.store.get_line_context(&u.organization_id, line_id).await?.ok_or_else(not_found)
        }
        Principal::User(u) => {
            let found =
                inner.store.get_line_access(&u.organization_id, line_id, &u.user_id).await?.ok_or_else(not_found)?;
            let rights = found.permission.as_ref().map_or(LineRights::OPERATOR_DEFAULT, LinePermission::rights);
            if !rights.can_view {
                return Err(not_found());
            }
            match access {
                LineAccess::View => Ok(found.context),
                LineAccess::Send if rights.can_send => Ok(found.context),
                LineAccess::Send => Err(Error::new(
                    ErrorKind::Forbidden,
                    "line_send_denied",
                    "your line permission lets you view this line but not send from it",
                )),
                LineAccess::Manage => Err(Error::forbidden("only owners and admins can manage lines")),
            }
        }
    }
}

/// The lines a principal may view: `None` means every line of its organization. The inbox
/// list, live stream and other multi-line reads filter by this (one read for operators).
pub(crate) async fn visible_line_ids(inner: &Inner, principal: &Principal) -> Result<Option<Vec<LineId>>> {
    match principal {
        Principal::Line(lp) => Ok(Some(vec![lp.line_id.clone()])),
        Principal::User(u) if u.role.is_manager() => Ok(None),
        Principal::User(u) => inner.store.visible_line_ids(&u.organization_id, &u.user_id).await,
    }
}

/// Checks that `user` may own conversations of `line`: an active member of the line's
/// organization who may view the line.
///
/// # Errors
/// `not_found` (404) when the user is not a member; `assignee_cannot_view_line` (409) when the
/// membership is not active or the user may not view the line.
pub(crate) async fn check_assignee(inner: &Inner, line: &Line, user: &UserId) -> Result<()> {
    let org = &line.organization_id;
    let membership = inner.store.get_membership(org, user).await?.ok_or_else(|| Error::not_found("user"))?;
    let can_view = membership.role.is_manager()
        || inner.store.get_line_permission(org, &line.id, user).await?.is_none_or(|p| p.can_view);
    if membership.status == MembershipStatus::Active && can_view {
        Ok(())
    } else {
        Err(Error::conflict("assignee_cannot_view_line", "the user is not an active member who may view this line")
            .with_detail("userId", user.to_string()))
    }
}

/// 409 `line_archived` for an archived line (it takes no new work).
pub(crate) fn ensure_not_archived(line: &Line) -> Result<()> {
    if line.lifecycle_state == LifecycleState::Archived {
        Err(Error::conflict("line_archived", "the line is archived and takes no new work")
            .with_detail("lineId", line.id.to_string()))
    } else {
        Ok(())
    }
}

/// Validates an idempotency key: 1 to 255 visible ASCII characters.
fn validate_key(key: Option<&str>) -> Result<Option<String>> {
    let Some(key) = key else { return Ok(None) };
    let valid =
        !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN && key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if valid {
        Ok(Some(key.to_owned()))
    } else {
        Err(Error::invalid("invalid_idempotency_key", "idempotencyKey must be 1 to 255 visible ASCII characters"))
    }
}

/// JSON with object keys sorted at every level, so equal values always give the same text.
fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> =
                keys.into_iter().map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k]))).collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// SHA-256 over what defines a line creation, as the caller gave it (provider secrets are
/// sealed with a fresh nonce each time, so the sealed form cannot be compared).
fn line_fingerprint(display_name: &str, phone: &PhoneNumber, new: &NewLine) -> String {
    let request = json!({
        "v": 1,
        "displayName": display_name,
        "phoneNumber": phone.as_str(),
        "providerKind": new.provider_kind.as_str(),
        "providerConfig": new.provider_config,
        "pacing": new.pacing,
    });
    sha256_hex(canonical_json(&request).as_bytes())
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
    /// As [`LinesService::create`].
    pub async fn create_line(&self, principal: &Principal, new: NewLine) -> Result<Line> {
        self.create(principal, new, None).await.map(|c| c.line)
    }

    /// Creates a line (owners and admins), audited `line.created`. With an idempotency key, the
    /// same key and request give the line created the first time (`replayed`), in one atomic
    /// store call with the insert; keys are kept as long as the organization.
    ///
    /// # Errors
    /// `forbidden` (403) for operators and line tokens; `invalid_phone_number`,
    /// `invalid_display_name`, `invalid_idempotency_key`, `invalid_pacing` or the provider's
    /// config error (400); `provider_not_configured` (501); `billing_restricted` (409) for a
    /// restricted organization; `line_slots_exhausted` (409) when the lines that are not archived
    /// fill the plan's slots; `idempotency_key_reused` (409, with `lineId`); `line_exists` (409).
    pub async fn create(
        &self,
        principal: &Principal,
        new: NewLine,
        idempotency_key: Option<&str>,
    ) -> Result<CreatedLine> {
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
        let key = validate_key(idempotency_key)?;
        let provider = self.inner.provider(new.provider_kind)?;
        let config = provider.validate_config(&new.provider_config)?;
        let initial_state = provider.initial_state(&config);
        if let Some(p) = &new.pacing {
            p.validate()?;
        }
        let org = organization(self.inner, principal).await?;
        if org.billing_state == BillingState::Restricted {
            return Err(Error::conflict(
                "billing_restricted",
                "the organization's billing is restricted; settle it before adding lines",
            ));
        }
        let idempotency =
            key.map(|key| LineIdempotency { fingerprint: line_fingerprint(display_name, &phone, &new), key });
        let now = self.inner.clock.now();
        let line = Line {
            id: LineId::generate(now.unix_ms()),
            organization_id: org.id.clone(),
            display_name: display_name.to_owned(),
            phone_number: phone,
            provider_kind: new.provider_kind,
            provider_config: config,
            lifecycle_state: initial_state,
            state_reason: None,
            default_assignee_id: None,
            pacing: new.pacing,
            created_at: now,
            updated_at: now,
        };
        let change = Change {
            action: "line.created",
            target_kind: "line",
            target_id: line.id.to_string(),
            before: None,
            after: Some(json!({
                "displayName": line.display_name,
                "phoneNumber": line.phone_number,
                "providerKind": line.provider_kind,
                "lifecycleState": line.lifecycle_state,
            })),
            details: json!({ "idempotencyKey": idempotency.as_ref().map(|i| i.key.clone()) }),
        };
        let audit = entry(&org.id, actor_of(principal), change, now);
        let create = CreateLine { line, idempotency, max_active_lines: org.line_slots, audit };
        match self.inner.store.create_line(&create).await? {
            CreateLineOutcome::Created(line) => {
                publish_line_updated(self.inner, &line);
                if provider.runs_session(&line) {
                    queue_first_pairing(self.inner, principal, &line).await;
                }
                Ok(CreatedLine { line: *line, replayed: false })
            }
            CreateLineOutcome::Replayed(line) => Ok(CreatedLine { line: *line, replayed: true }),
            CreateLineOutcome::KeyReused { line_id } => {
                Err(Error::conflict("idempotency_key_reused", "this idempotencyKey was used with a different request")
                    .with_detail("lineId", line_id.to_string()))
            }
            CreateLineOutcome::SlotsExhausted => Err(Error::conflict(
                "line_slots_exhausted",
                format!("the plan allows {} lines that are not archived", org.line_slots),
            )
            .with_detail("lineSlots", org.line_slots)),
        }
    }

    /// A line the caller may see.
    ///
    /// # Errors
    /// `not_found` (404).
    pub async fn get(&self, principal: &Principal, id: &LineId) -> Result<Line> {
        authorize_line(self.inner, principal, id, LineAccess::View).await
    }

    /// A line the caller may `access` (view, send from, manage), for facades that act on a line
    /// outside the services (the simulator's "scan" route).
    ///
    /// # Errors
    /// `not_found` (404) when the caller may not view it; `line_send_denied` / `forbidden` (403).
    pub async fn authorize(&self, principal: &Principal, id: &LineId, access: LineAccess) -> Result<Line> {
        authorize_line(self.inner, principal, id, access).await
    }

    /// The lines the caller may see (an operator's permissions may hide some), oldest first.
    ///
    /// # Errors
    /// Storage errors only.
    pub async fn list(&self, principal: &Principal) -> Result<Vec<Line>> {
        let lines = self.inner.store.list_lines(principal.organization_id()).await?;
        Ok(match visible_line_ids(self.inner, principal).await? {
            Some(visible) => lines.into_iter().filter(|l| visible.contains(&l.id)).collect(),
            None => lines,
        })
    }

    /// Creates or rotates the line's API token (owners and admins), audited
    /// `line.token_rotated` (the token id, never the token). The old token stops working at
    /// once. The new token is returned once and stored only as a hash.
    ///
    /// # Errors
    /// `not_found` (404); `forbidden` (403); `line_archived` (409).
    pub async fn rotate_api_token(&self, principal: &Principal, id: &LineId) -> Result<RotatedToken> {
        let line = authorize_line(self.inner, principal, id, LineAccess::Manage).await?;
        ensure_not_archived(&line)?;
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
        let change = Change {
            action: "line.token_rotated",
            target_kind: "line",
            target_id: line.id.to_string(),
            before: None,
            after: Some(json!({ "tokenId": record.id })),
            details: json!({ "tokenId": record.id }),
        };
        let audit = entry(&line.organization_id, actor_of(principal), change, now);
        let had_token = self.inner.store.rotate_line_token(&record, &audit).await?;
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
        let warnings = self.warnings(&line).await?;
        Ok(LineHealth {
            status: HealthStatus::from_lifecycle(line.lifecycle_state),
            effective_send_state: effective,
            wakeup_requested: wakeup,
            warnings,
            line,
        })
    }

    /// Warnings for a QR line: a rate limit or restriction WhatsApp signalled (now or in the
    /// last 24 hours), and pacing faster than the anti-ban defaults.
    async fn warnings(&self, line: &Line) -> Result<Vec<HealthWarning>> {
        let mut out = Vec::new();
        let Some(provider) = self.inner.providers.get(&line.provider_kind) else { return Ok(out) };
        if !provider.runs_session(line) {
            return Ok(out);
        }
        if line.lifecycle_state == LifecycleState::Restricted {
            out.push(HealthWarning {
                code: "rate_limited",
                message: format!(
                    "WhatsApp limited this number ({}); sends are held until the limit lifts",
                    line.state_reason.as_deref().unwrap_or("no reason given")
                ),
            });
        } else {
            let since = self.inner.clock.now().minus(std::time::Duration::from_secs(24 * 3600));
            let recent = self.inner.store.list_line_transitions(&line.organization_id, &line.id, None, 50).await?;
            if let Some(t) = recent.iter().find(|t| {
                t.transition.at >= since && matches!(t.transition.trigger.as_str(), "rate_limited" | "restricted")
            }) {
                out.push(HealthWarning {
                    code: "recent_limit_signal",
                    message: format!(
                        "WhatsApp signalled a limit on this number in the last 24 hours ({}); keep volumes low",
                        t.transition.reason.as_deref().unwrap_or(&t.transition.trigger)
                    ),
                });
            }
        }
        let recommended = provider.default_pacing();
        if let Some(p) = line.pacing {
            if p.per_second > recommended.per_second {
                out.push(HealthWarning {
                    code: "pacing_above_recommended",
                    message: format!(
                        "this line sends up to {}/s; the anti-ban default for QR lines is {}/s",
                        p.per_second, recommended.per_second
                    ),
                });
            }
            if p.jitter_ms == 0 {
                out.push(HealthWarning {
                    code: "pacing_without_jitter",
                    message: "sends go out at machine-regular intervals (jitterMs 0), a ban signal".to_owned(),
                });
            }
        }
        Ok(out)
    }

    async fn set_state(&self, line: &Line, state: LifecycleState, reason: Option<&str>) -> Result<Option<Line>> {
        let now = self.inner.clock.now();
        let updated = self.inner.store.set_line_state(&line.organization_id, &line.id, state, reason, now).await?;
        let state = updated.as_ref().map_or(state, |l| l.lifecycle_state);
        publish_line_state(self.inner, line, state);
        self.inner.wake_webhooks();
        if state == LifecycleState::Connected {
            self.inner.outbox_wake.notify_one();
        }
        Ok(updated)
    }
}

/// `line.updated`: a line's settings changed (created, default assignee).
pub(crate) fn publish_line_updated(inner: &Inner, line: &Line) {
    inner.live.publish(LiveHint {
        line_id: Some(line.id.clone()),
        ..LiveHint::new("line.updated", line.organization_id.clone())
    });
}

pub(crate) fn publish_line_state(inner: &Inner, line: &Line, state: LifecycleState) {
    inner.live.publish(LiveHint {
        line_id: Some(line.id.clone()),
        state: Some(state.as_str()),
        ..LiveHint::new("line.state", line.organization_id.clone())
    });
}
