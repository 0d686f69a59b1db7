//! The simulator: a real [`LineProvider`](ezw_core::ports::LineProvider) whose "network" is
//! deterministic. Sends are accepted and progress sent -> delivered -> read after configurable
//! delays on the injected [`Clock`](ezw_core::Clock); it can be told to fail (transient,
//! permanent, ambiguous) per recipient or by script; it reports a paired, sendable line; and it
//! can inject inbound messages and line state changes for demos and tests.
//!
//! A line configured with `"pairing": "qr"` is a QR (web session) line instead: it starts
//! unpaired, issues WhatsApp-like QR codes that rotate on the clock (60 s, then 20 s each, six
//! codes, all configurable), and connects once one is "scanned" with [`SimProvider::scan`]; the
//! simulator then plays what WhatsApp does to a linked device on command
//! ([`SimProvider::unlink_from_phone`], [`SimProvider::drop_connection`],
//! [`SimProvider::fail_reconnects`], [`SimProvider::signal`]).

mod config;
mod provider;
mod session;

pub use config::{SimConfig, SimFailure, SimPairing};
pub use provider::SimProvider;
pub use session::SimScanError;
