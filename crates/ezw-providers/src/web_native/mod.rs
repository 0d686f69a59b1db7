//! QR lines run in-process by the [`whatsapp-rust`](whatsapp_rust) crate (feature
//! `web-session-native`), their protocol state kept in EZW's storage.
//!
//! - `provider`: [`WebSessionProvider`], one client per line this node holds the session lease
//!   of: pairing by QR or phone code, reconnects with stored credentials, text, media (by URL)
//!   and reply sends, inbound messages and receipts.
//! - `store`: [`EzwBackend`], the crate's storage traits on EZW's
//!   [`SessionStore`](ezw_core::ports::SessionStore), scoped by organization and line and sealed
//!   at rest, so a session survives restarts and can move to another node.
//! - `events`: the pure mapping of the client's events to EZW's session signals, inbound
//!   messages and statuses.
//! - `config`: the line configuration (`{}` or `{"deviceName": "..."}`).
//! - `media`: outbound media fetching (guarded against internal addresses) and the sealed
//!   handles of inbound media.

mod config;
mod events;
mod media;
mod provider;
mod store;

#[cfg(test)]
mod tests;

pub use config::{WebSessionConfig, DEFAULT_DEVICE_NAME};
pub use events::{account_of, jid_to_phone, phone_to_jid, receipt_status, session_signal};
pub use provider::{WebSessionOptions, WebSessionProvider};
pub use store::{kind, EzwBackend};
