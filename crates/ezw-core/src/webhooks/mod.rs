//! Outgoing webhooks: events, payload formats, Standard Webhooks signatures and the retry
//! schedule. Storage backends call [`plan_deliveries`] inside the transaction that records a state
//! change, so an event is queued for its subscribers exactly when the change is stored.

mod event;
mod schedule;
mod signature;
mod whapi;

pub use event::{chat_changes, EventEnvelope, LineStateChange, WebhookEvent};
pub use schedule::{next_delay, MAX_ATTEMPTS, MAX_RETRY_AFTER, RETRY_SCHEDULE};
pub use signature::{signature_header, verify, SigningSecret, VerifyError, SECRET_PREFIX, TOLERANCE_SECS};
pub use whapi::render_whapi;

use crate::ids::{DeliveryId, WebhookId};
use crate::model::PayloadFormat;

/// The body of `envelope` in `format`, exactly as it will be POSTed on every attempt.
#[must_use]
pub fn render(format: PayloadFormat, envelope: &EventEnvelope) -> String {
    let value = match format {
        PayloadFormat::Ezw => envelope.render_ezw(),
        PayloadFormat::Whapi => render_whapi(envelope),
    };
    value.to_string()
}

/// A webhook subscribed to an event, as storage finds it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The webhook.
    pub webhook_id: WebhookId,
    /// Its body format.
    pub format: PayloadFormat,
}

/// A delivery row to insert.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// Its id (the `webhook-id` header on every attempt).
    pub id: DeliveryId,
    /// The webhook.
    pub webhook_id: WebhookId,
    /// The body to POST.
    pub body: String,
}

/// One delivery per subscriber, rendering each format once.
#[must_use]
pub fn plan_deliveries(envelope: &EventEnvelope, subscribers: &[Subscriber]) -> Vec<NewDelivery> {
    let mut bodies: Vec<(PayloadFormat, String)> = Vec::with_capacity(2);
    subscribers
        .iter()
        .map(|s| {
            let body = match bodies.iter().find(|(f, _)| *f == s.format) {
                Some((_, body)) => body.clone(),
                None => {
                    let body = render(s.format, envelope);
                    bodies.push((s.format, body.clone()));
                    body
                }
            };
            NewDelivery {
                id: DeliveryId::generate(envelope.occurred_at.unix_ms()),
                webhook_id: s.webhook_id.clone(),
                body,
            }
        })
        .collect()
}
