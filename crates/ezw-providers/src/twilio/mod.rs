//! Twilio Programmable Messaging for WhatsApp.
//!
//! - Sends: `POST {apiBaseUrl}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded,
//!   HTTP basic auth `AccountSid:AuthToken`; text (`Body`), media by URL (`MediaUrl`, caption
//!   as `Body`), Content API templates (`ContentSid`, `ContentVariables`). Each send asks for
//!   status callbacks at `{public_url}/hooks/twilio/{lineId}/status`.
//! - Webhooks: incoming messages (route `""`) and status callbacks (route `"status"`), both
//!   verified with `X-Twilio-Signature` before any field is read.
//! - Media: inbound `MediaUrl{N}` downloaded with basic auth (at most 100 MiB).
//! - Health: the Account resource's `status` (`active`, `suspended`, `closed`).
//!
//! Configuration ([`TwilioConfig`]): `{"accountSid", "authToken", "from", "apiBaseUrl"?}`; the
//! auth token is stored sealed and shown masked.

mod client;
mod config;
mod ingest;
mod provider;
mod wire;

#[cfg(test)]
mod tests;

pub use config::TwilioConfig;
pub use ingest::{compute_signature, verify_signature, SIGNATURE_HEADER};
pub use provider::{TwilioOptions, TwilioProvider};
