//! The asynchronous part of a subtask's snapshot: uploading its local files to the
//! checkpoint storage (reusing immutable files an earlier checkpoint of the same subtask
//! uploaded: incremental checkpoints) and describing them for the metadata.

use super::metadata::{FileHandle, KeyedStateHandle, SnapshotKind, SubtaskState};
use super::{CheckpointStorage, job_folder, snapshot_folder};
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

/// Uploads `snap` for `job`; returns each operator subtask's state handle by vertex id,
/// and the bytes uploaded (files reused from an earlier checkpoint not counted). Errors
/// name the operator subtask and the file.
pub(crate) fn upload(
    storage: &dyn CheckpointStorage,
    job: &str,
    snap: LocalSnapshot,
) -> Result<(Vec<(String, SubtaskState)>, u64), String> {
    let folder = snapshot_folder(job, snap.kind, snap.checkpoint);
    let mut uploaded_bytes = 0;
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
                        let in_subtask = |e: String| {
                            format!("'{}' (subtask {}): {e}", st.vertex_id, st.subtask + 1)
                        };
                        let (size, xxh3) = file_digest(&f.path).map_err(in_subtask)?;
                        storage.put_file(&path, &f.path).map_err(|e| {
                            in_subtask(format!("uploading {}: {e}", f.path.display()))
                        })?;
                        uploaded_bytes += size;
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
    result.map(|states| (states, uploaded_bytes))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::MemoryStorage;
    use crate::state::SnapshotFile;

    /// A snapshot of one keyed subtask with an immutable 1000-byte file and a mutable
    /// 10-byte one, written to `dir`.
    fn snapshot(dir: &Path, id: u64, kind: SnapshotKind, uploaded: &Uploaded) -> LocalSnapshot {
        let local = dir.join(format!("{id}"));
        std::fs::create_dir_all(&local).unwrap();
        let file = |name: &str, len: usize, immutable: bool| {
            let path = local.join(name);
            std::fs::write(&path, vec![7u8; len]).unwrap();
            SnapshotFile {
                name: name.into(),
                path,
                immutable,
            }
        };
        LocalSnapshot {
            checkpoint: id,
            kind,
            states: vec![LocalState {
                vertex_id: "v".into(),
                subtask: 0,
                keyed: Some(LocalKeyed {
                    format: "test".into(),
                    key_groups: (0, 128),
                    states: Vec::new(),
                    files: vec![file("000001.sst", 1000, true), file("MANIFEST", 10, false)],
                    uploaded: uploaded.clone(),
                }),
                operator_state: None,
            }],
            dir: local,
        }
    }

    #[test]
    fn immutable_files_are_uploaded_once_per_subtask_and_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let storage = MemoryStorage::new();
        let uploaded = Uploaded::default();
        let up = |id, kind| {
            let (states, bytes) =
                upload(&storage, "j", snapshot(dir.path(), id, kind, &uploaded)).unwrap();
            let files = states[0].1.keyed.as_ref().unwrap().files.clone();
            (files, bytes)
        };
        let (first, bytes) = up(1, SnapshotKind::Checkpoint);
        assert_eq!(bytes, 1010, "both files uploaded");
        assert_eq!(first[0].path, "j/shared/v/0/1-000001.sst");
        let (second, bytes) = up(2, SnapshotKind::Checkpoint);
        assert_eq!(
            bytes, 10,
            "the immutable file is reused, not uploaded again"
        );
        assert_eq!(second[0], first[0]);
        assert_eq!(second[1].path, "j/chk-2/v/0/MANIFEST");
        // A savepoint is self-contained: it uploads everything into its own folder.
        let (sp, bytes) = up(3, SnapshotKind::Savepoint);
        assert_eq!(bytes, 1010);
        assert!(
            sp.iter()
                .all(|f| f.path.starts_with("savepoints/j-3/") && !f.immutable)
        );
        assert!(storage.get("savepoints/j-3/v/0/000001.sst").is_ok());
    }

    #[test]
    fn an_upload_error_names_the_operator_subtask_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let uploaded = Uploaded::default();
        let snap = snapshot(dir.path(), 1, SnapshotKind::Checkpoint, &uploaded);
        std::fs::remove_file(dir.path().join("1").join("MANIFEST")).unwrap();
        let e = upload(&MemoryStorage::new(), "j", snap)
            .map(|_| ())
            .unwrap_err();
        assert!(
            e.contains("'v' (subtask 1)") && e.contains("MANIFEST"),
            "{e}"
        );
    }
}
