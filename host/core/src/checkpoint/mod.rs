//! Checkpoints and savepoints: asynchronous barrier snapshots (Carbone et al.,
//! "Lightweight Asynchronous Snapshots for Distributed Dataflows", 2015), as in Flink.
//!
//! The coordinator injects barrier `n` at the sources; a subtask with several inputs
//! aligns barriers (it stops reading an input that delivered barrier `n` until all have);
//! each subtask then snapshots its operators' state to local files (for RocksDB a native
//! checkpoint: hard links, fast), forwards the barrier and goes on, while an uploader
//! thread puts the files into [`CheckpointStorage`] and acknowledges. When every subtask
//! acknowledged, the coordinator writes `_metadata` (atomically: the checkpoint now
//! exists), tells the subtasks, and sinks commit what they pre-committed at the barrier.
//!
//! Storage layout, relative to the storage root:
//!
//! ```text
//! <job>/chk-<id>/_metadata                       the checkpoint's metadata
//! <job>/chk-<id>/<vertex>/<subtask>/<file>       files owned by one checkpoint
//! <job>/shared/<vertex>/<subtask>/<id>-<file>    immutable files (SSTs) that later
//!                                                checkpoints reference (incremental)
//! savepoints/<job>-<id>/_metadata                a savepoint: self-contained, portable
//! savepoints/<job>-<id>/<vertex>/<subtask>/state.kv
//! ```

pub(crate) mod coordinator;
pub mod metadata;
pub(crate) mod restore;
pub mod storage;
pub(crate) mod upload;

pub use coordinator::{Barrier, CheckpointStats};
pub use metadata::{CheckpointMetadata, FileHandle, KeyedStateHandle, SnapshotKind};
pub use restore::RestorePoint;
pub use storage::{CheckpointStorage, MemoryStorage, StorageError};

use std::sync::Arc;
use std::time::Duration;

/// How a job checkpoints.
#[derive(Clone)]
pub struct CheckpointConfig {
    /// Time between the end of one checkpoint and the trigger of the next; zero: no
    /// periodic checkpoints (savepoints only).
    pub interval: Duration,
    /// Where checkpoints and savepoints go.
    pub storage: Arc<dyn CheckpointStorage>,
    /// How many complete checkpoints to keep (the newest); older ones are deleted.
    pub retain: usize,
    /// A checkpoint not complete after this long is abandoned.
    pub timeout: Duration,
}

impl std::fmt::Debug for CheckpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointConfig")
            .field("interval", &self.interval)
            .field("storage", &self.storage.describe())
            .field("retain", &self.retain)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The storage folder of a job's checkpoints: its name with anything but letters,
/// digits, `-` and `_` replaced by `_`.
pub fn job_folder(job: &str) -> String {
    job.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The folder of checkpoint `id` of `job`.
pub fn checkpoint_folder(job: &str, id: u64) -> String {
    format!("{}/chk-{id}", job_folder(job))
}

/// The folder of savepoint `id` of `job`.
pub fn savepoint_folder(job: &str, id: u64) -> String {
    format!("savepoints/{}-{id}", job_folder(job))
}

/// The folder of checkpoint or savepoint `id` of `job`.
pub(crate) fn snapshot_folder(job: &str, kind: SnapshotKind, id: u64) -> String {
    match kind {
        SnapshotKind::Checkpoint => checkpoint_folder(job, id),
        SnapshotKind::Savepoint => savepoint_folder(job, id),
    }
}

/// The ids of `job`'s checkpoints that have a metadata file, newest first. Errors: the
/// storage cannot list the job's folder.
pub fn list_checkpoints(
    storage: &dyn CheckpointStorage,
    job: &str,
) -> Result<Vec<u64>, StorageError> {
    let folder = job_folder(job);
    let mut ids: Vec<u64> = storage
        .list(&folder)?
        .iter()
        .filter_map(|p| {
            p.strip_prefix(&folder)?
                .strip_prefix("/chk-")?
                .strip_suffix("/_metadata")?
                .parse()
                .ok()
        })
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    Ok(ids)
}

/// Reads and parses the metadata in `folder`. Errors say which file and what is wrong.
pub fn load_metadata(
    storage: &dyn CheckpointStorage,
    folder: &str,
) -> Result<CheckpointMetadata, String> {
    let path = format!("{}/_metadata", folder.trim_end_matches('/'));
    let bytes = storage
        .get(&path)
        .map_err(|e| format!("{}: {e}", storage.describe()))?;
    let m: CheckpointMetadata = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{path} in {} is corrupted: {e}", storage.describe()))?;
    if m.format != metadata::FORMAT {
        return Err(format!(
            "{path}: metadata format {} is not supported (this version reads {})",
            m.format,
            metadata::FORMAT
        ));
    }
    Ok(m)
}

/// Deletes checkpoint `meta` of `job`: its own files, and the shared files it
/// references that none of `keep` references. Errors: the first storage failure (what
/// was deleted before it stays deleted; the metadata goes before the checkpoint's own
/// files, so a checkpoint is never left half there).
pub fn discard_checkpoint(
    storage: &dyn CheckpointStorage,
    job: &str,
    meta: &CheckpointMetadata,
    keep: &[&CheckpointMetadata],
) -> Result<(), StorageError> {
    let kept: std::collections::HashSet<&str> = keep.iter().flat_map(|m| shared_paths(m)).collect();
    for path in shared_paths(meta) {
        if !kept.contains(path) {
            storage.delete(path)?;
        }
    }
    let folder = checkpoint_folder(job, meta.id);
    // The metadata first: from then on the checkpoint does not exist.
    storage.delete(&format!("{folder}/_metadata"))?;
    for p in storage.list(&folder)? {
        storage.delete(&p)?;
    }
    Ok(())
}

fn shared_paths(m: &CheckpointMetadata) -> impl Iterator<Item = &str> {
    m.vertices
        .values()
        .flat_map(|v| v.subtasks.iter())
        .filter_map(|s| s.keyed.as_ref())
        .flat_map(|k| k.files.iter())
        .filter(|f| f.immutable)
        .map(|f| f.path.as_str())
}
