//! # ezw-storage
//!
//! Storage backends for EZW's [`Store`](ezw_core::ports::Store) port.
//!
//! - `sqlite` (default): the embedded backend, [`sqlite::SqliteStore`].
//! - `postgres`: several nodes on one PostgreSQL database, [`postgres::PgStore`].
//! - `conformance`: the behaviour suite every backend must pass ([`conformance`]).
//! - [`blob::FsBlobStore`]: media bytes on the filesystem.

pub mod blob;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(feature = "conformance")]
pub mod conformance;
