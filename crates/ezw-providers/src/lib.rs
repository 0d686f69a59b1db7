//! # ezw-providers
//!
//! Line providers for EZW, each an implementation of
//! [`LineProvider`](ezw_core::ports::LineProvider):
//!
//! - `meta` (feature `meta`): Meta WhatsApp Cloud API (Graph API) sends, media, health, and the
//!   `X-Hub-Signature-256`-verified webhook ingress.
//! - `twilio` (feature `twilio`): Twilio Programmable Messaging for WhatsApp, with
//!   `X-Twilio-Signature`-verified inbound and status webhooks.
//! - `sim` (feature `sim`): a deterministic simulator for demos and tests, with an optional QR
//!   pairing flow.
//! - `waha` (feature `waha`): QR-paired WhatsApp Web lines served by a WAHA-compatible sidecar.
//! - `web_native` (feature `web-session-native`): QR-paired WhatsApp Web lines run in-process by
//!   the `whatsapp-rust` crate, with its protocol state in EZW's storage.
//!
//! Beside the providers, `webhook` (feature `webhooks`) holds `HttpWebhookTransport`, the HTTP
//! [`WebhookTransport`](ezw_core::ports::WebhookTransport) with an SSRF guard.
//!
//! Every vendor provider has the same file set: `mod.rs` (re-exports), `config.rs` (its line
//! configuration, credentials sealed with [`SecretCipher`](ezw_core::crypto::SecretCipher)),
//! `client.rs` (HTTP calls and the single `parse_error`), `wire.rs` (request, response and
//! webhook types exactly as the vendor spells them), `ingest.rs` (verify and normalise inbound
//! webhooks), and tests with JSON fixtures beside them.

#[cfg(feature = "meta")]
pub mod meta;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "twilio")]
pub mod twilio;
#[cfg(feature = "waha")]
pub mod waha;
#[cfg(feature = "web-session-native")]
pub mod web_native;
#[cfg(feature = "webhooks")]
pub mod webhook;

#[cfg(any(feature = "meta", feature = "twilio", feature = "waha", feature = "web-session-native"))]
mod body;
#[cfg(test)]
pub(crate) mod mock;
