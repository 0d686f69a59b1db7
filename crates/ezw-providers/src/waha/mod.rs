//! QR lines served by a WAHA-compatible sidecar (WAHA 2026.7.1, `waha-openapi.json`).
//!
//! - Sessions: the line's WAHA session (named by `session`, else the line id) is created or
//!   updated with EZW's webhook (`{public_url}/hooks/waha/{lineId}`, events `session.status`,
//!   `message`, `message.ack`, signed with the line's HMAC key) when this node takes the line's
//!   session lease, and started when the line was paired. `reconnect` starts it and reads its
//!   status: `WORKING` is connected, `SCAN_QR_CODE` means the credentials are gone.
//! - Pairing: QR pairing logs the session out and starts it, then polls it on the provider's
//!   clock, reporting each new pairing string from `GET /api/{session}/auth/qr?format=raw` (the
//!   first valid 60 s, rotations 20 s) and the outcome (`WORKING` paired; `FAILED` no more codes).
//!   Phone-code pairing asks `POST /api/{session}/auth/request-code` once the session waits.
//! - Sends: text to `/api/sendText`, images by URL to `/api/sendImage`, other media by URL to
//!   `/api/sendFile`, replies with `reply_to`. The receipt is the serialized message id that
//!   `message.ack` events carry. Failures are classified in one place (`client::parse_error`).
//! - Webhooks: `X-Webhook-Hmac` (hex HMAC-SHA512 of the raw body) checked before anything is
//!   parsed; `session.status`, `message` and `message.ack` become session signals, inbound
//!   messages and delivery statuses; other events are ignored. A sender behind a privacy id
//!   (`@lid`) is resolved to its number with `GET /api/{session}/lids/{lid}`.
//! - Media: inbound media is downloaded from the sidecar (only from its own origin, with the API
//!   key), at most 100 MiB.
//!
//! Configuration ([`WahaConfig`]): `{"baseUrl", "apiKey"?, "session"?, "webhookHmacKey"?}`; the
//! two keys are stored sealed and shown masked, and a missing HMAC key is generated.

mod client;
mod config;
mod ingest;
mod provider;
mod session;
mod wire;

#[cfg(test)]
mod tests;

pub use config::WahaConfig;
pub use ingest::{compute_hmac, verify_hmac, HMAC_ALGORITHM_HEADER, HMAC_HEADER};
pub use provider::{WahaOptions, WahaProvider, DEFAULT_POLL_INTERVAL};
