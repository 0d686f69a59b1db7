//! Storage for the team inbox: line permissions, default assignees, archived lines, claims and
//! assignments under `expectedVersion`, contacts, internal notes. A part of
//! [`Store`](super::Store).

use async_trait::async_trait;

/// The team-inbox part of the storage port.
#[async_trait]
pub trait WorkspaceStore: Send + Sync {}
