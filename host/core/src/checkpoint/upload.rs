//! The asynchronous part of a subtask's snapshot: uploading its local files to the
//! checkpoint storage (reusing immutable files an earlier checkpoint of the same subtask
//! uploaded: incremental checkpoints) and describing them for the metadata.

use super::metadata::{FileHandle, KeyedStateHandle, SnapshotKind, SubtaskState};
use super::{CheckpointStorage, checkpoint_folder, job_folder, savepoint_folder};
use crate::state::{SnapshotFile, StateDescriptor};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Immutable files a subtask uploaded, by name: what its next checkpoint may reuse.
pub(crate) type Uploaded = Arc<Mutex<HashMap<String, FileHandle>>>;

/// A subtask's keyed state written to local files at a barrier.
pub(crate) struct LocalKeyed {
    pub format: String,
    pub key_groups: (usize, usize),
    pub states: Vec<StateDescriptor>,
    pub files: Vec<SnapshotFile>,
    pub uploaded: Uploaded,
}

/// One operator subtask's snapshot before upload.
pub(crate) struct LocalState {
    pub vertex_id: String,
    pub subtask: usize,
    pub keyed: Option<LocalKeyed>,
    pub operator_state: Option<Vec<u8>>,
}

/// Everything a chain subtask snapshotted for one checkpoint.
pub(crate) struct LocalSnapshot {
    pub checkpoint: u64,
    pub kind: SnapshotKind,
    pub states: Vec<LocalState>,
    /// Removed once uploaded.
    pub dir: PathBuf,
}

/// Uploads `snap` for `job`; returns each operator subtask's state handle by vertex id.
pub(crate) fn upload(
    storage: &dyn CheckpointStorage,
    job: &str,
    snap: LocalSnapshot,
) -> Result<Vec<(String, SubtaskState)>, String> {
    let folder = match snap.kind {
        SnapshotKind::Checkpoint => checkpoint_folder(job, snap.checkpoint),
        SnapshotKind::Savepoint => savepoint_folder(job, snap.checkpoint),
    };
    let result = (|| {
        let mut out = Vec::with_capacity(snap.states.len());
        for st in snap.states {
            let keyed = match st.keyed {
                None => None,
                Some(k) => {
                    let mut reusable = k.uploaded.lock().unwrap_or_else(|p| p.into_inner());
                    let mut handles = Vec::with_capacity(k.files.len());
                    for f in &k.files {
                        let incremental = f.immutable && snap.kind == SnapshotKind::Checkpoint;
                        if incremental && let Some(h) = reusable.get(&f.name) {
                            handles.push(h.clone());
                            continue;
                        }
                        let path = if incremental {
                            format!(
                                "{}/shared/{}/{}/{}-{}",
                                job_folder(job),
                                st.vertex_id,
                                st.subtask,
                                snap.checkpoint,
                                f.name
                            )
                        } else {
                            format!("{folder}/{}/{}/{}", st.vertex_id, st.subtask, f.name)
                        };
                        let (size, xxh3) = file_digest(&f.path)?;
                        storage
                            .put_file(&path, &f.path)
                            .map_err(|e| format!("uploading {}: {e}", f.path.display()))?;
                        handles.push(FileHandle {
                            name: f.name.clone(),
                            path,
                            size,
                            xxh3,
                            immutable: incremental,
                        });
                    }
                    if snap.kind == SnapshotKind::Checkpoint {
                        *reusable = handles
                            .iter()
                            .filter(|h| h.immutable)
                            .map(|h| (h.name.clone(), h.clone()))
                            .collect();
                    }
                    Some(KeyedStateHandle {
                        format: k.format,
                        key_groups: k.key_groups,
                        states: k.states,
                        files: handles,
                    })
                }
            };
            out.push((
                st.vertex_id,
                SubtaskState {
                    subtask: st.subtask,
                    keyed,
                    operator_state: st.operator_state,
                },
            ));
        }
        Ok(out)
    })();
    let _ = std::fs::remove_dir_all(&snap.dir);
    result
}

/// Size and xxh3-64 of a local file.
pub(crate) fn file_digest(path: &Path) -> Result<(u64, u64), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, h.digest()))
}
