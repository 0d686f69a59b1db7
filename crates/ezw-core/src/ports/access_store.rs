//! Storage for access control: refresh-token chains, invitations, memberships of an
//! organization, billing. A part of [`Store`](super::Store).

use async_trait::async_trait;

/// The access-control part of the storage port.
#[async_trait]
pub trait AccessStore: Send + Sync {}
