//! EZW integration tests, compiled as one binary.

mod support;
mod vendor_mock;

mod access;
mod authz;
mod channel_api;
mod cluster;
mod delivery;
mod embedded;
mod errors;
mod faults;
mod idempotency;
mod inbox;
mod live;
mod meta_e2e;
mod openapi;
mod prism;
mod qr;
mod scoping;
mod twilio_e2e;
mod waha_e2e;
mod webhook_verifier;
mod webhooks;
mod workspace_sends;
