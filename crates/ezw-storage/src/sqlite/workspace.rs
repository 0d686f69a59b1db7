//! `impl WorkspaceStore for SqliteStore`.

use async_trait::async_trait;
use ezw_core::ports::WorkspaceStore;

use super::SqliteStore;

#[async_trait]
impl WorkspaceStore for SqliteStore {}
