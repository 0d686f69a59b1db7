#![doc = include_str!("../README.md")]
//!
//! ## Crate features
//!
//! - `sqlite` (default): the embedded SQLite store, as [`storage`].
//! - `sim` (default): the deterministic simulator provider, as [`providers`].
//! - `http`: the HTTP facade and `ezw-server`, as [`http`].

pub use ezw_core as core;
pub use ezw_core::webhooks;
pub use ezw_core::{
    model, ports, service, Clock, ConversationId, Error, ErrorKind, Ezw, EzwConfig, LineId, ManualClock, MessageId,
    OrganizationId, PhoneNumber, Principal, Result, Secret, SystemClock, Timestamp, UserId,
};

/// Storage backends (`ezw-storage`).
#[cfg(feature = "sqlite")]
pub use ezw_storage as storage;

/// Line providers (`ezw-providers`).
#[cfg(feature = "sim")]
pub use ezw_providers as providers;

/// The HTTP facade (`ezw-http`).
#[cfg(feature = "http")]
pub use ezw_http as http;
