//! The simulator: a real [`LineProvider`](ezw_core::ports::LineProvider) whose "network" is
//! deterministic. Sends are accepted and progress sent -> delivered -> read after configurable
//! delays on the injected [`Clock`](ezw_core::Clock); it can be told to fail (transient,
//! permanent, ambiguous) per recipient or by script; it reports a paired, sendable line; and it
//! can inject inbound messages and line state changes for demos and tests.

mod config;
mod provider;

pub use config::{SimConfig, SimFailure};
pub use provider::SimProvider;
