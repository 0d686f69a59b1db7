//! Webhook configuration, delivery evidence and redelivery. A line token manages its own line's
//! webhooks; workspace users need to manage the line (owners and admins).

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{DeliveryId, LineId, WebhookId};
use crate::model::{
    AuditActor, AuditEvent, DeliveryAttempt, PayloadFormat, Webhook, WebhookDelivery, WebhookEventKind,
};
use crate::ports::{Page, StoredWebhook, WebhookTransport};
use crate::principal::{LineAccess, Principal};
use crate::webhooks::SigningSecret;

use super::lines::authorize_line;
use super::runtime::Inner;

/// Longest accepted target URL.
pub const MAX_TARGET_URL_LEN: usize = 2048;
/// Highest per-webhook concurrency.
pub const MAX_WEBHOOK_CONCURRENCY: u32 = 64;
/// Concurrency when none is given.
pub const DEFAULT_WEBHOOK_CONCURRENCY: u32 = 8;

/// Settings to create or change a webhook; `None` keeps the current value (or the default on
/// create).
#[derive(Debug, Clone, Default)]
pub struct WebhookInput {
    /// Where deliveries go (required on create).
    pub target_url: Option<String>,
    /// Event names (`messages.post`, ...); default `messages.post` and `statuses.post`.
    pub events: Option<Vec<String>>,
    /// `ezw` (default) or `whapi`.
    pub payload_format: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Retry failed deliveries on the schedule (default true); false gives one attempt.
    pub persistent: Option<bool>,
    /// Deliveries in flight at once (1-64, default 8).
    pub max_concurrency: Option<u32>,
    /// Deliveries per second at most; `Some(None)` removes the limit.
    pub rate_per_second: Option<Option<f64>>,
}

/// A webhook with its signing secret, for those who manage it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The signing secret (`whsec_...`).
    pub secret: String,
}

/// A delivery with its attempts.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: WebhookDelivery,
    /// Its attempts, oldest first.
    pub attempt_log: Vec<DeliveryAttempt>,
    /// The exact body POSTed, parsed.
    pub payload: serde_json::Value,
}

/// Webhook operations.
#[derive(Clone, Copy)]
pub struct WebhooksService<'a> {
    pub(crate) inner: &'a Inner,
}

impl WebhooksService<'_> {
    /// Creates a webhook for `line`, or, when the line already has one for the same target URL,
    /// updates that one. Returns the webhook and whether it was created.
    ///
    /// # Errors
    /// 400 `invalid_webhook_url` / `webhook_target_private` / `webhook_target_unresolvable` /
    /// `invalid_webhook_events` / `invalid_payload_format` / `invalid_webhook_concurrency` /
    /// `invalid_webhook_rate`; 403/404 for callers who may not manage the line; 501
    /// `webhooks_not_configured` without a transport.
    pub async fn upsert(
        &self,
        principal: &Principal,
        line: &LineId,
        input: WebhookInput,
    ) -> Result<(WebhookView, bool)> {
        let transport = self.transport()?;
        authorize(self.inner, principal, line).await?;
        let url = input
            .target_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::invalid("missing_target_url", "targetUrl is required"))?
            .to_owned();
        let existing = self
            .inner
            .store
            .list_webhooks(principal.organization_id(), line)
            .await?
            .into_iter()
            .find(|w| w.webhook.target_url == url);
        if let Some(existing) = existing {
            let view = self.apply_update(principal, existing, input).await?;
            return Ok((view, false));
        }
        check_url(transport, &url).await?;
        let now = self.inner.clock.now();
        let webhook = Webhook {
            id: WebhookId::generate(now.unix_ms()),
            organization_id: principal.organization_id().clone(),
            line_id: line.clone(),
            target_url: url,
            events: match &input.events {
                Some(names) => parse_events(names)?,
                None => vec![WebhookEventKind::MessagesPost, WebhookEventKind::StatusesPost],
            },
            payload_format: parse_format(input.payload_format.as_deref())?.unwrap_or_default(),
            enabled: input.enabled.unwrap_or(true),
            persistent: input.persistent.unwrap_or(true),
            max_concurrency: check_concurrency(input.max_concurrency)?.unwrap_or(DEFAULT_WEBHOOK_CONCURRENCY),
            rate_per_second: check_rate(input.rate_per_second)?.flatten(),
            disabled_reason: None,
            failing_since: None,
            previous_secret_expires_at: None,
            created_at: now,
            updated_at: now,
        };
        let secret = SigningSecret::generate();
        let sealed = self.inner.secrets.seal(secret.as_secret());
        let audit = audit(principal, "webhook.created", &webhook, describe(&webhook), now);
        self.inner.store.insert_webhook(&webhook, &sealed, &audit).await?;
        Ok((WebhookView { webhook, secret: secret.expose().to_owned() }, true))
    }

    /// Changes a webhook's settings. Re-enabling clears a server-side disable and sends the
    /// deliveries held meanwhile.
    ///
    /// # Errors
    /// As [`upsert`](Self::upsert); 404 when the webhook is not on this line;
    /// 409 `webhook_exists` when another webhook of the line has the new target URL.
    pub async fn update(
        &self,
        principal: &Principal,
        line: &LineId,
        id: &WebhookId,
        input: WebhookInput,
    ) -> Result<WebhookView> {
        self.transport()?;
        let stored = self.load(principal, line, id).await?;
        self.apply_update(principal, stored, input).await
    }

    async fn apply_update(
        &self,
        principal: &Principal,
        stored: StoredWebhook,
        input: WebhookInput,
    ) -> Result<WebhookView> {
        let mut w = stored.webhook.clone();
        if let Some(url) = input.target_url.as_deref().map(str::trim) {
            if url != w.target_url {
                check_url(self.transport()?, url).await?;
                w.target_url = url.to_owned();
            }
        }
        if let Some(names) = &input.events {
            w.events = parse_events(names)?;
        }
        if let Some(format) = parse_format(input.payload_format.as_deref())? {
            w.payload_format = format;
        }
        if let Some(persistent) = input.persistent {
            w.persistent = persistent;
        }
        if let Some(c) = check_concurrency(input.max_concurrency)? {
            w.max_concurrency = c;
        }
        if let Some(rate) = check_rate(input.rate_per_second)? {
            w.rate_per_second = rate;
        }
        if let Some(enabled) = input.enabled {
            if enabled && !w.enabled {
                w.disabled_reason = None;
                w.failing_since = None;
            }
            w.enabled = enabled;
        }
        let now = self.inner.clock.now();
        w.updated_at = now;
        let mut details = describe(&w);
        details["previous"] = describe(&stored.webhook);
        let audit = audit(principal, "webhook.updated", &w, details, now);
        if !self.inner.store.update_webhook(&w, &audit).await? {
            return Err(Error::not_found("webhook"));
        }
        self.inner.wake_webhooks();
        let secret = self.open(&stored.secret)?;
        Ok(WebhookView { webhook: w, secret: secret.expose().to_owned() })
    }

    /// Deletes a webhook and its delivery history.
    ///
    /// # Errors
    /// 404 when the webhook is not on this line.
    pub async fn delete(&self, principal: &Principal, line: &LineId, id: &WebhookId) -> Result<()> {
        let stored = self.load(principal, line, id).await?;
        let now = self.inner.clock.now();
        let audit = audit(principal, "webhook.deleted", &stored.webhook, describe(&stored.webhook), now);
        if self.inner.store.delete_webhook(principal.organization_id(), id, &audit).await? {
            Ok(())
        } else {
            Err(Error::not_found("webhook"))
        }
    }

    /// A line's webhooks with their secrets.
    ///
    /// # Errors
    /// 403/404 for callers who may not manage the line.
    pub async fn list(&self, principal: &Principal, line: &LineId) -> Result<Vec<WebhookView>> {
        authorize(self.inner, principal, line).await?;
        let stored = self.inner.store.list_webhooks(principal.organization_id(), line).await?;
        stored.into_iter().map(|s| self.view(s)).collect()
    }

    /// One webhook with its secret.
    ///
    /// # Errors
    /// 404 when the webhook is not on this line.
    pub async fn get(&self, principal: &Principal, line: &LineId, id: &WebhookId) -> Result<WebhookView> {
        let stored = self.load(principal, line, id).await?;
        self.view(stored)
    }

    /// Issues a new signing secret. Deliveries are signed with both the new and the old secret
    /// for the configured grace period, so receivers can switch without losing any.
    ///
    /// # Errors
    /// 404 when the webhook is not on this line.
    pub async fn rotate_secret(&self, principal: &Principal, line: &LineId, id: &WebhookId) -> Result<WebhookView> {
        let stored = self.load(principal, line, id).await?;
        let now = self.inner.clock.now();
        let until = now.plus(self.inner.config.webhook_secret_grace);
        let secret = SigningSecret::generate();
        let sealed = self.inner.secrets.seal(secret.as_secret());
        let details = serde_json::json!({ "previousSecretExpiresAt": until });
        let audit = audit(principal, "webhook.secret_rotated", &stored.webhook, details, now);
        if !self.inner.store.rotate_webhook_secret(principal.organization_id(), id, &sealed, until, &audit).await? {
            return Err(Error::not_found("webhook"));
        }
        let mut webhook = stored.webhook;
        webhook.previous_secret_expires_at = Some(until);
        webhook.updated_at = now;
        Ok(WebhookView { webhook, secret: secret.expose().to_owned() })
    }

    /// A webhook's deliveries, newest first.
    ///
    /// # Errors
    /// 404 when the webhook is not on this line; 400 `invalid_cursor`.
    pub async fn deliveries(
        &self,
        principal: &Principal,
        line: &LineId,
        id: &WebhookId,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<WebhookDelivery>> {
        self.load(principal, line, id).await?;
        self.inner.store.list_webhook_deliveries(principal.organization_id(), id, cursor, limit).await
    }

    /// One delivery of a webhook with its attempts and body.
    ///
    /// # Errors
    /// 404 when the delivery is not of this webhook on this line.
    pub async fn delivery(
        &self,
        principal: &Principal,
        line: &LineId,
        webhook: &WebhookId,
        id: &DeliveryId,
    ) -> Result<DeliveryView> {
        self.load(principal, line, webhook).await?;
        let (delivery, attempt_log) = self
            .inner
            .store
            .get_webhook_delivery(principal.organization_id(), id)
            .await?
            .filter(|(d, _)| &d.webhook_id == webhook)
            .ok_or_else(|| Error::not_found("delivery"))?;
        let payload = serde_json::from_str(&delivery.body).unwrap_or(serde_json::Value::Null);
        Ok(DeliveryView { delivery, attempt_log, payload })
    }

    /// Sends a delivery again now (same delivery id), whatever became of it. A delivery held by a
    /// disabled webhook goes out when the webhook is enabled.
    ///
    /// # Errors
    /// 404 when the delivery is not of this webhook on this line.
    pub async fn redeliver(
        &self,
        principal: &Principal,
        line: &LineId,
        webhook: &WebhookId,
        id: &DeliveryId,
    ) -> Result<WebhookDelivery> {
        self.delivery(principal, line, webhook, id).await?;
        let now = self.inner.clock.now();
        let delivery = self
            .inner
            .store
            .redeliver_webhook_delivery(principal.organization_id(), id, now)
            .await?
            .ok_or_else(|| Error::not_found("delivery"))?;
        self.inner.wake_webhooks();
        Ok(delivery)
    }

    fn transport(&self) -> Result<&dyn WebhookTransport> {
        self.inner.webhook_transport.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                "webhooks_not_configured",
                "this deployment has no webhook transport configured",
            )
        })
    }

    async fn load(&self, principal: &Principal, line: &LineId, id: &WebhookId) -> Result<StoredWebhook> {
        authorize(self.inner, principal, line).await?;
        self.inner
            .store
            .get_webhook(principal.organization_id(), id)
            .await?
            .filter(|w| &w.webhook.line_id == line)
            .ok_or_else(|| Error::not_found("webhook"))
    }

    fn open(&self, sealed: &str) -> Result<SigningSecret> {
        SigningSecret::parse(self.inner.secrets.open(sealed)?.expose())
    }

    fn view(&self, stored: StoredWebhook) -> Result<WebhookView> {
        let secret = self.open(&stored.secret)?;
        Ok(WebhookView { webhook: stored.webhook, secret: secret.expose().to_owned() })
    }
}

/// A line token manages its own line's webhooks; users need to manage the line.
async fn authorize(inner: &Inner, principal: &Principal, line: &LineId) -> Result<()> {
    let access = match principal {
        Principal::Line(_) => LineAccess::View,
        Principal::User(_) => LineAccess::Manage,
    };
    authorize_line(inner, principal, line, access).await.map(drop)
}

async fn check_url(transport: &dyn WebhookTransport, url: &str) -> Result<()> {
    if url.len() > MAX_TARGET_URL_LEN {
        return Err(Error::invalid("invalid_webhook_url", format!("targetUrl is longer than {MAX_TARGET_URL_LEN}")));
    }
    transport.check_target(url).await
}

fn parse_events(names: &[String]) -> Result<Vec<WebhookEventKind>> {
    let mut kinds = Vec::with_capacity(names.len());
    for name in names {
        let kind = WebhookEventKind::parse(name.trim()).ok_or_else(|| {
            let known: Vec<&str> = WebhookEventKind::ALL.iter().map(|k| k.as_str()).collect();
            Error::invalid("invalid_webhook_events", format!("unknown event {name:?}; known: {}", known.join(", ")))
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        return Err(Error::invalid("invalid_webhook_events", "events must name at least one event"));
    }
    kinds.sort();
    Ok(kinds)
}

fn parse_format(name: Option<&str>) -> Result<Option<PayloadFormat>> {
    name.map(|n| {
        PayloadFormat::parse(n)
            .ok_or_else(|| Error::invalid("invalid_payload_format", "payloadFormat must be \"ezw\" or \"whapi\""))
    })
    .transpose()
}

fn check_concurrency(c: Option<u32>) -> Result<Option<u32>> {
    match c {
        Some(n) if !(1..=MAX_WEBHOOK_CONCURRENCY).contains(&n) => Err(Error::invalid(
            "invalid_webhook_concurrency",
            format!("maxConcurrency must be 1 to {MAX_WEBHOOK_CONCURRENCY}"),
        )),
        other => Ok(other),
    }
}

fn check_rate(rate: Option<Option<f64>>) -> Result<Option<Option<f64>>> {
    match rate {
        Some(Some(r)) if !(r.is_finite() && r > 0.0 && r <= 10_000.0) => {
            Err(Error::invalid("invalid_webhook_rate", "ratePerSecond must be above 0 and at most 10000"))
        }
        other => Ok(other),
    }
}

/// Audit details of a webhook's settings (the URL without credentials; never the secret).
fn describe(w: &Webhook) -> serde_json::Value {
    serde_json::json!({
        "lineId": w.line_id,
        "targetUrl": redact_url(&w.target_url),
        "events": w.events,
        "payloadFormat": w.payload_format,
        "enabled": w.enabled,
        "persistent": w.persistent,
        "maxConcurrency": w.max_concurrency,
        "ratePerSecond": w.rate_per_second,
    })
}

fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

pub(crate) fn audit(
    principal: &Principal,
    action: &str,
    webhook: &Webhook,
    details: serde_json::Value,
    at: crate::Timestamp,
) -> AuditEvent {
    system_audit(super::audit::actor_of(principal), action, webhook, details, at)
}

pub(crate) fn system_audit(
    actor: AuditActor,
    action: &str,
    webhook: &Webhook,
    details: serde_json::Value,
    at: crate::Timestamp,
) -> AuditEvent {
    super::audit::entry(
        &webhook.organization_id,
        actor,
        super::audit::Change {
            action,
            target_kind: "webhook",
            target_id: webhook.id.to_string(),
            before: None,
            after: None,
            details,
        },
        at,
    )
}
