//! Where checkpoints and savepoints are kept: an object store addressed by `/`-separated
//! paths relative to the storage root. `sluice-storage` implements it with `object_store`
//! (a local directory, or S3-compatible); [`MemoryStorage`] keeps objects in memory, for
//! tests and for jobs that want recovery within one process only.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// A storage failure; the message names the storage, the path and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// No object at the path.
    #[error("{0}: not found")]
    NotFound(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// An object store for checkpoint files. Every call blocks until done.
///
/// `put` and `put_file` are atomic: a reader sees the whole object or none (object
/// stores guarantee it; a local directory writes a temporary file and renames it).
pub trait CheckpointStorage: Send + Sync {
    /// Where the objects go, for messages (`file:///var/sluice/checkpoints`, `s3://b/p`).
    fn describe(&self) -> String;
    /// Stores `bytes` at `path`.
    fn put(&self, path: &str, bytes: Vec<u8>) -> Result<(), StorageError>;
    /// Stores the contents of the local file `local` at `path`; returns its size in bytes.
    fn put_file(&self, path: &str, local: &Path) -> Result<u64, StorageError> {
        let bytes = std::fs::read(local)
            .map_err(|e| StorageError::Other(format!("{}: {e}", local.display())))?;
        let n = bytes.len() as u64;
        self.put(path, bytes)?;
        Ok(n)
    }
    /// The object at `path`.
    fn get(&self, path: &str) -> Result<Vec<u8>, StorageError>;
    /// Writes the object at `path` to the local file `local`.
    fn get_to_file(&self, path: &str, local: &Path) -> Result<(), StorageError> {
        let bytes = self.get(path)?;
        std::fs::write(local, bytes)
            .map_err(|e| StorageError::Other(format!("{}: {e}", local.display())))
    }
    /// The paths of every object under `prefix` (a folder path, with or without a
    /// trailing `/`), in any order.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// Deletes the object at `path` (no error if there is none).
    fn delete(&self, path: &str) -> Result<(), StorageError>;
}

/// Objects in memory: they live as long as the storage value.
#[derive(Default)]
pub struct MemoryStorage {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CheckpointStorage for MemoryStorage {
    fn describe(&self) -> String {
        "memory".into()
    }
    fn put(&self, path: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.objects().insert(path.to_string(), bytes);
        Ok(())
    }
    fn get(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        self.objects()
            .get(path)
            .cloned()
            .ok_or_else(|| StorageError::NotFound(format!("memory:{path}")))
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let prefix = format!("{}/", prefix.trim_end_matches('/'));
        Ok(self
            .objects()
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect())
    }
    fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.objects().remove(path);
        Ok(())
    }
}
