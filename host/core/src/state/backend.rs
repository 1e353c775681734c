//! The byte-level interface of a state backend: an ordered key-value store holding one
//! operator subtask's keyed state, with keys laid out by [`super::layout`] so that they
//! start with their key group. Heap ([`super::HeapKvBackend`]) and RocksDB
//! (`sluice-rocksdb`) implement it; everything above it — value, map and list state, TTL,
//! timers, snapshots, rescaling — is written once, in [`super::KeyedStateStore`].
//!
//! Modelled on Flink's `KeyedStateBackend` split into a storage layer (`RocksDB` column
//! families / `CopyOnWriteStateMap`) and the state primitives above it.

use std::path::{Path, PathBuf};

/// A state backend failure: the message says which backend, which file or directory, and
/// what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);

impl StateError {
    /// An error with a message built from `context` and the underlying error.
    pub fn new(context: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        StateError(format!("{context}: {e}"))
    }
}

/// One file of a backend's snapshot, on local disk until the checkpoint uploads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The file's name within the snapshot (no directories), e.g. `000012.sst`.
    pub name: String,
    /// Where it is now.
    pub path: PathBuf,
    /// Whether a file of this name always has these contents (RocksDB SST files): a later
    /// checkpoint that lists the same name reuses the uploaded copy instead of uploading
    /// it again (incremental checkpoints).
    pub immutable: bool,
}

/// A snapshot of a backend written to local files by [`KvBackend::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSnapshot {
    /// The backend kind (`heap`, `rocksdb`), which must match on restore.
    pub kind: String,
    /// The files that make it up.
    pub files: Vec<SnapshotFile>,
}

/// Calls back for each entry of a scan: `(key, value)`; return `false` to stop.
pub type ScanFn<'a> = dyn FnMut(&[u8], &[u8]) -> bool + 'a;

/// An ordered byte-key/byte-value store: one operator subtask's keyed state.
///
/// Keys are compared as bytes. A backend is used from one subtask thread at a time.
pub trait KvBackend: Send {
    /// The backend kind, e.g. `heap` or `rocksdb`.
    fn kind(&self) -> &'static str;

    /// The value under `key`, if any.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Stores `value` under `key`, replacing any value there.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError>;

    /// Removes the value under `key`, if any.
    fn delete(&mut self, key: &[u8]) -> Result<(), StateError>;

    /// Removes every entry with `start <= key < end`.
    fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), StateError>;

    /// Calls `f` for each entry with `start <= key < end`, in key order, until it returns
    /// `false`. `f` must not modify the backend (collect keys and modify after).
    fn scan(&mut self, start: &[u8], end: &[u8], f: &mut ScanFn<'_>) -> Result<(), StateError>;

    /// Writes a consistent snapshot of every entry into files under `dir` (an empty
    /// directory that the caller removes after uploading). Writes made after this call
    /// returns are not in it. A backend may hard-link immutable files rather than copy.
    fn snapshot(&mut self, dir: &Path) -> Result<BackendSnapshot, StateError>;

    /// Roughly how many bytes the state takes (for metrics); 0 if unknown.
    fn approximate_bytes(&self) -> u64 {
        0
    }
}

/// Creates the backends of a job's stateful subtasks, chosen in the job spec.
pub trait KvBackendFactory: Send + Sync {
    /// The kind of backend this factory creates (`heap`, `rocksdb`).
    fn kind(&self) -> &'static str;

    /// An empty backend working in `dir` (created if missing; a backend that keeps
    /// nothing on disk ignores it).
    fn create(&self, dir: &Path) -> Result<Box<dyn KvBackend>, StateError>;

    /// A backend working in `dir`, holding what the snapshot made of `files` held. The
    /// files were written by [`KvBackend::snapshot`] of a backend of this kind, and
    /// downloaded to local paths; `name` is each one's [`SnapshotFile::name`].
    fn restore(
        &self,
        dir: &Path,
        files: &[(String, PathBuf)],
    ) -> Result<Box<dyn KvBackend>, StateError>;
}
