//! # ezw-http
//!
//! The thin HTTP facade of EZW (axum): the Workspace API (`/api/...`, ID tokens), the Channel
//! API v1 (`/api/v1/...`, line API tokens), and the `ezw-server` binary. Every rule lives in
//! `ezw-core`; this crate maps HTTP to service calls and errors to status codes.

pub mod demo;
pub mod error;
pub mod extract;
pub mod routes;
pub mod server;
pub mod state;

pub use routes::router;
pub use server::{start, RunningServer, ServerOptions};
