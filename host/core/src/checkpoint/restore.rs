//! Restoring operator state from a checkpoint or savepoint: downloading and verifying
//! files, reopening a backend from its own snapshot when nothing changed, and otherwise
//! (another parallelism, another backend, a savepoint) loading the key groups a new
//! subtask owns from every old subtask whose range overlaps them — Flink's key-group
//! redistribution.

use super::CheckpointStorage;
use super::metadata::{CheckpointMetadata, FileHandle, KeyedStateHandle, PORTABLE};
use super::upload::{Uploaded, file_digest};
use crate::keygroup::key_group_range;
use crate::state::kvfile::read_kv_file;
use crate::state::layout::{key_groups_range, parse};
use crate::state::{Clock, KeyedStateStore, KvBackendFactory, StateDescriptor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A complete checkpoint or savepoint to restore a job from.
#[derive(Clone)]
pub struct RestorePoint {
    /// Where its files are.
    pub storage: Arc<dyn CheckpointStorage>,
    /// Its folder in the storage (for messages).
    pub folder: String,
    /// Its metadata.
    pub metadata: CheckpointMetadata,
    /// Whether state of a vertex the job no longer has may be dropped (otherwise the
    /// restore fails).
    pub allow_non_restored_state: bool,
}

impl RestorePoint {
    /// Loads the checkpoint or savepoint in `folder`. Errors: its metadata is missing,
    /// unreadable, corrupted or of an unsupported format (the message names the file).
    pub fn load(storage: Arc<dyn CheckpointStorage>, folder: &str) -> Result<Self, String> {
        let metadata = super::load_metadata(storage.as_ref(), folder)?;
        Ok(RestorePoint {
            storage,
            folder: folder.trim_end_matches('/').to_string(),
            metadata,
            allow_non_restored_state: false,
        })
    }

    /// Downloads `f` to `dir` and checks its size and checksum. Errors name the
    /// checkpoint and the file.
    fn download(&self, f: &FileHandle, dir: &Path) -> Result<PathBuf, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let local = dir.join(&f.name);
        let what = || format!("{} in {}", f.path, self.storage.describe());
        self.storage
            .get_to_file(&f.path, &local)
            .map_err(|e| format!("{}: cannot read {}: {e}", self.folder, what()))?;
        let (size, xxh3) = file_digest(&local)?;
        if size != f.size || xxh3 != f.xxh3 {
            return Err(format!(
                "{}: file {} is corrupted ({} bytes, expected {}{})",
                self.folder,
                what(),
                size,
                f.size,
                if size == f.size {
                    "; checksum mismatch"
                } else {
                    ""
                }
            ));
        }
        Ok(local)
    }

    /// Downloads and verifies every file the restore point references (into a scratch
    /// folder that is then removed): a restore that would fail on a missing or corrupted
    /// file fails here, before the job starts.
    pub fn verify(&self, scratch: &Path) -> Result<(), String> {
        for v in self.metadata.vertices.values() {
            for s in &v.subtasks {
                for f in s.keyed.iter().flat_map(|k| &k.files) {
                    let local = self.download(f, scratch)?;
                    let _ = std::fs::remove_file(local);
                }
            }
        }
        Ok(())
    }
}

/// Everything needed to give one operator subtask its keyed state.
pub(crate) struct KeyedRestore<'a> {
    pub point: Option<&'a RestorePoint>,
    pub vertex_id: &'a str,
    pub subtask: usize,
    pub parallelism: usize,
    pub max_parallelism: usize,
    pub backend: &'a dyn KvBackendFactory,
    /// Every backend kind the runtime knows, to read checkpoints of another kind.
    pub backends: &'a [Arc<dyn KvBackendFactory>],
    /// This subtask's working folder.
    pub dir: PathBuf,
    pub clock: Clock,
}

impl KeyedRestore<'_> {
    /// The subtask's keyed state store (restored, or fresh), and the immutable files
    /// its next checkpoint may reuse.
    pub fn open(self) -> Result<(KeyedStateStore, Uploaded), String> {
        let range = key_group_range(self.subtask, self.parallelism, self.max_parallelism);
        let ctx = format!(
            "keyed state of '{}' (subtask {}/{})",
            self.vertex_id,
            self.subtask + 1,
            self.parallelism
        );
        let uploaded = Uploaded::default();
        let fresh_dir = self.dir.join("db");
        let _ = std::fs::remove_dir_all(&self.dir);
        let old = self
            .point
            .and_then(|p| p.metadata.vertices.get(self.vertex_id).map(|v| (p, v)));
        let Some((point, old)) = old else {
            let backend = self
                .backend
                .create(&fresh_dir)
                .map_err(|e| format!("{ctx}: {e}"))?;
            return KeyedStateStore::new(backend, self.max_parallelism, range, self.clock)
                .map(|s| (s, uploaded))
                .map_err(|e| format!("{ctx}: {e}"));
        };
        let handles: Vec<&KeyedStateHandle> = old
            .subtasks
            .iter()
            .filter_map(|s| s.keyed.as_ref())
            .collect();
        // Same subtask, same key groups, same backend: reopen its own snapshot.
        let own = handles
            .iter()
            .find(|h| h.key_groups == (range.start, range.end) && h.format == self.backend.kind());
        if old.parallelism == self.parallelism
            && let Some(h) = own
        {
            let download = self.dir.join("download");
            let mut files = Vec::new();
            for f in &h.files {
                files.push((f.name.clone(), point.download(f, &download)?));
            }
            let backend = self
                .backend
                .restore(&fresh_dir, &files)
                .map_err(|e| format!("{ctx}: restoring from {}: {e}", point.folder))?;
            let _ = std::fs::remove_dir_all(&download);
            {
                let mut u = uploaded.lock().unwrap_or_else(|p| p.into_inner());
                for f in h.files.iter().filter(|f| f.immutable) {
                    u.insert(f.name.clone(), f.clone());
                }
            }
            let mut store = KeyedStateStore::new(backend, self.max_parallelism, range, self.clock)
                .map_err(|e| format!("{ctx}: {e}"))?;
            store.adopt_states(h.states.clone());
            return Ok((store, uploaded));
        }
        // Otherwise: load the overlapping key groups of every old subtask.
        let mut backend = self
            .backend
            .create(&fresh_dir)
            .map_err(|e| format!("{ctx}: {e}"))?;
        let mut table: Vec<StateDescriptor> = Vec::new();
        for (i, h) in handles.iter().enumerate() {
            let lo = h.key_groups.0.max(range.start);
            let hi = h.key_groups.1.min(range.end);
            if lo >= hi {
                continue;
            }
            // Old state id -> id in the merged table, by name.
            let ids: Vec<u16> = h
                .states
                .iter()
                .map(|d| match table.iter().position(|t| t.name == d.name) {
                    Some(j) => j as u16,
                    None => {
                        table.push(d.clone());
                        (table.len() - 1) as u16
                    }
                })
                .collect();
            let scratch = self.dir.join(format!("old-{i}"));
            let mut copy = |k: &[u8], v: &[u8]| -> Result<(), String> {
                let Some((kg, id, _, _)) = parse(k) else {
                    return Err(format!(
                        "{ctx}: a restored entry is not in Sluice's key layout"
                    ));
                };
                if !(lo..hi).contains(&(kg as usize)) {
                    return Ok(());
                }
                let new_id = match ids.get(id as usize) {
                    Some(n) => *n,
                    None if id >= 0xfff0 => id,
                    None => {
                        return Err(format!(
                            "{ctx}: a restored entry has an unknown state id {id}"
                        ));
                    }
                };
                let mut key = k.to_vec();
                key[2..4].copy_from_slice(&new_id.to_be_bytes());
                backend.put(&key, v).map_err(|e| format!("{ctx}: {e}"))
            };
            // Portable and heap snapshots are state files that any backend loads.
            if h.format == PORTABLE || h.format == crate::state::HEAP {
                for f in &h.files {
                    let local = point.download(f, &scratch)?;
                    read_kv_file(&local, |k, v| copy(k, v).map_err(crate::state::StateError))
                        .map_err(|e| e.0)?;
                }
            } else {
                let factory = self
                    .backends
                    .iter()
                    .find(|b| b.kind() == h.format)
                    .ok_or_else(|| {
                        format!(
                            "{ctx}: {} holds '{}' state, and this build has no such backend",
                            point.folder, h.format
                        )
                    })?;
                let mut files = Vec::new();
                for f in &h.files {
                    files.push((f.name.clone(), point.download(f, &scratch.join("files"))?));
                }
                let mut old_backend = factory
                    .restore(&scratch.join("db"), &files)
                    .map_err(|e| format!("{ctx}: restoring from {}: {e}", point.folder))?;
                let (start, end) = key_groups_range(lo..hi);
                let mut err = None;
                old_backend
                    .scan(&start, &end, &mut |k, v| match copy(k, v) {
                        Ok(()) => true,
                        Err(e) => {
                            err = Some(e);
                            false
                        }
                    })
                    .map_err(|e| format!("{ctx}: {e}"))?;
                if let Some(e) = err {
                    return Err(e);
                }
            }
            let _ = std::fs::remove_dir_all(&scratch);
        }
        let mut store = KeyedStateStore::new(backend, self.max_parallelism, range, self.clock)
            .map_err(|e| format!("{ctx}: {e}"))?;
        store.adopt_states(table);
        Ok((store, uploaded))
    }
}

/// Every old subtask's operator state of `vertex_id` (union redistribution).
pub(crate) fn union_operator_states(point: Option<&RestorePoint>, vertex_id: &str) -> Vec<Vec<u8>> {
    point
        .and_then(|p| p.metadata.vertices.get(vertex_id))
        .map(|v| {
            v.subtasks
                .iter()
                .filter_map(|s| s.operator_state.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The positions source subtask `subtask` of `parallelism` restores from: its own when
/// the parallelism is unchanged; otherwise every old subtask's, from which its reader
/// takes the splits it now owns (Flink's Kafka source redistributes partitions so).
pub(crate) fn source_positions(
    point: Option<&RestorePoint>,
    vertex_id: &str,
    subtask: usize,
    parallelism: usize,
) -> Vec<Vec<u8>> {
    match point.and_then(|p| p.metadata.vertices.get(vertex_id)) {
        Some(old) if old.parallelism != parallelism => union_operator_states(point, vertex_id),
        _ => operator_states(point, vertex_id, subtask, parallelism),
    }
}

/// The operator states a subtask restores: its own when the parallelism is unchanged;
/// otherwise old subtask `i`'s goes to new subtask `i % parallelism` (Flink's
/// round-robin redistribution of operator list state).
pub(crate) fn operator_states(
    point: Option<&RestorePoint>,
    vertex_id: &str,
    subtask: usize,
    parallelism: usize,
) -> Vec<Vec<u8>> {
    let Some(old) = point.and_then(|p| p.metadata.vertices.get(vertex_id)) else {
        return Vec::new();
    };
    old.subtasks
        .iter()
        .filter(|s| {
            if old.parallelism == parallelism {
                s.subtask == subtask
            } else {
                s.subtask % parallelism == subtask
            }
        })
        .filter_map(|s| s.operator_state.clone())
        .collect()
}

/// Writes a savepoint's portable state file for `store`: every live entry of its key
/// groups (expired ones are cleaned first and left out). Returns the file.
pub(crate) fn export_portable(
    store: &mut KeyedStateStore,
    dir: &Path,
) -> Result<crate::state::SnapshotFile, String> {
    store.cleanup_expired(usize::MAX).map_err(|e| e.0)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("state.kv");
    let mut w = crate::state::kvfile::KvFileWriter::create(&path).map_err(|e| e.0)?;
    let (start, end) = key_groups_range(store.key_groups());
    let mut err = None;
    store
        .backend_mut()
        .scan(&start, &end, &mut |k, v| match w.put(k, v) {
            Ok(()) => true,
            Err(e) => {
                err = Some(e);
                false
            }
        })
        .map_err(|e| e.0)?;
    if let Some(e) = err {
        return Err(e.0);
    }
    w.finish().map_err(|e| e.0)?;
    Ok(crate::state::SnapshotFile {
        name: "state.kv".into(),
        path,
        immutable: false,
    })
}
