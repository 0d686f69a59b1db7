//! Meta WhatsApp Cloud API (Graph API) provider.
//!
//! - Sends: `POST {apiBaseUrl}/{apiVersion}/{phoneNumberId}/messages` with the line's bearer
//!   token: text (with link previews), CTA URL buttons, image/video/audio/document by link,
//!   templates, and replies (`context.message_id`). The receipt is Meta's `wamid`.
//! - Failures are classified in one place (`client::parse_error`): throughput and pair rate
//!   limits are retryable with Meta's delay, 131047 (24-hour window closed) and other 4xx are
//!   permanent with Meta's code, 190 marks the line `auth_failed`, and a timeout after the
//!   request left is ambiguous (Meta does not deduplicate sends).
//! - Webhooks: the `GET` verify-token handshake, `X-Hub-Signature-256` checked over the raw body
//!   before anything is parsed, and `messages` changes normalised to inbound messages and
//!   delivery statuses.
//! - Media: inbound media is downloaded by id (metadata, then the short-lived URL), at most
//!   100 MiB.
//! - Health: with `wakeup`, the phone number's `status` and `quality_rating` map to the line's
//!   lifecycle state.
//!
//! Line configuration is [`MetaConfig`]; credentials are stored sealed with
//! [`SecretCipher`](ezw_core::crypto::SecretCipher).

mod client;
mod config;
mod ingest;
mod provider;
mod wire;

#[cfg(test)]
mod tests;

pub use config::MetaConfig;
pub use provider::{MetaOptions, MetaProvider};
