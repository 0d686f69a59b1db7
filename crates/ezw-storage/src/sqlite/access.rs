//! `impl AccessStore for SqliteStore`.

use async_trait::async_trait;
use ezw_core::ports::AccessStore;

use super::SqliteStore;

#[async_trait]
impl AccessStore for SqliteStore {}
