//! Local-filesystem storage: objects are files under a root directory. Writes go to a temporary file in the
//! target directory and are renamed into place (atomic on POSIX), so readers see the old object or the new one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use crate::{ObjectRef, Storage, StorageError, sha256_hex, validate_key};

/// Objects under a directory.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

fn io(what: &Path, e: impl std::fmt::Display) -> StorageError {
    StorageError::Io(what.display().to_string(), e.to_string())
}

impl LocalStorage {
    /// Storage rooted at `root` (created if missing; made absolute).
    pub fn new(root: impl AsRef<Path>) -> Result<Self, StorageError> {
        let root = root.as_ref();
        std::fs::create_dir_all(root).map_err(|e| io(root, e))?;
        let root = root.canonicalize().map_err(|e| io(root, e))?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

#[async_trait::async_trait]
impl Storage for LocalStorage {
    async fn put(&self, key: &str, data: Bytes, _content_type: &str) -> Result<ObjectRef, StorageError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let sha256 = sha256_hex(&data);
        let len = data.len() as u64;
        let target = path.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            use std::io::Write as _;
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| io(&dir, e))?;
            tmp.write_all(&data).map_err(|e| io(&target, e))?;
            tmp.as_file().sync_all().map_err(|e| io(&target, e))?;
            tmp.persist(&target).map_err(|e| io(&target, e.error))?;
            Ok(())
        })
        .await
        .map_err(|e| io(&path, e))??;
        Ok(ObjectRef { uri: format!("file://{}", path.display()), key: key.to_string(), sha256, bytes: len })
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Bytes::from(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound(key.to_string())),
            Err(e) => Err(io(&path, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path, e)),
        }
    }

    async fn presigned_get(&self, _key: &str, _expires_in: Duration) -> Result<Option<String>, StorageError> {
        Ok(None)
    }

    fn key_of(&self, uri: &str) -> Result<String, StorageError> {
        let unknown = |why: &str| StorageError::UnknownUri(uri.to_string(), why.to_string());
        let path = uri.strip_prefix("file://").ok_or_else(|| unknown("not a file:// URI"))?;
        let key = Path::new(path).strip_prefix(&self.root).map_err(|_| unknown("outside this storage's root"))?;
        let key = key.to_str().ok_or_else(|| unknown("not UTF-8"))?.to_string();
        validate_key(&key)?;
        Ok(key)
    }
}
