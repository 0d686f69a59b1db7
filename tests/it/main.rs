//! EZW integration tests, compiled as one binary.

mod support;
mod vendor_mock;

mod channel_api;
mod delivery;
mod embedded;
mod errors;
mod faults;
mod idempotency;
mod meta_e2e;
mod prism;
mod scoping;
mod twilio_e2e;
mod webhook_verifier;
mod webhooks;
