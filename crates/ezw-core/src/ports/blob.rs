//! The blob store port: media bytes, addressed by attachment id.

use async_trait::async_trait;

use crate::error::Result;

/// Stores media bytes. Keys are attachment ids; metadata lives in the [`Store`](super::Store).
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` under `key` durably (replacing any earlier value).
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()>;
    /// The bytes under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
}
