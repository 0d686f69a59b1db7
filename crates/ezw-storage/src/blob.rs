//! [`FsBlobStore`]: media bytes as files under a directory (the default blob store).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ezw_core::ports::BlobStore;
use ezw_core::{Error, Result};

/// Blobs as files `<root>/<first 2 chars of the key's body>/<key>`, written to a temporary file,
/// synced and renamed, so a reader never sees half a blob. Nothing here is public-readable; media
/// is served only through signed, expiring URLs.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// A store rooted at `root` (created when missing).
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| Error::internal(format!("creating {}: {e}", root.display())))?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        let valid = !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(Error::invalid("invalid_blob_key", "blob keys are attachment ids"));
        }
        let body = key.rsplit('_').next().unwrap_or(key);
        let shard: String = body.chars().rev().take(2).collect();
        Ok(self.root.join(shard).join(key))
    }
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::temporary(format!("blob store I/O on {}: {e}", path.display())).with_source(e)
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        use std::io::Write as _;
        let path = self.path(key)?;
        tokio::task::spawn_blocking(move || {
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            let tmp = path.with_extension("tmp");
            let mut file = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
            file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(|e| io_err(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))
        })
        .await
        .map_err(|e| Error::internal(format!("blob write task failed: {e}")))?
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
        })
        .await
        .map_err(|e| Error::internal(format!("blob read task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_round_trip_and_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobStore::open(dir.path().join("blobs")).unwrap();
        assert_eq!(blobs.get("att_01ABC").await.unwrap(), None);
        blobs.put("att_01ABC", b"hello".to_vec()).await.unwrap();
        assert_eq!(blobs.get("att_01ABC").await.unwrap().as_deref(), Some(&b"hello"[..]));
        blobs.put("att_01ABC", b"again".to_vec()).await.unwrap();
        assert_eq!(blobs.get("att_01ABC").await.unwrap().as_deref(), Some(&b"again"[..]));
        for bad in ["", "../etc/passwd", "att_01/x", "a b"] {
            assert_eq!(blobs.put(bad, vec![]).await.unwrap_err().code(), "invalid_blob_key", "{bad}");
        }
    }
}
