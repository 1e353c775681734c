//! The metadata file that makes a checkpoint or savepoint complete: which files hold
//! each operator subtask's state. It is written last, in one atomic put, after every
//! subtask acknowledged (Flink's `_metadata`); a checkpoint without it does not exist.

use crate::state::StateDescriptor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The metadata format written by this version.
pub const FORMAT: u32 = 1;

/// Checkpoint (owned by the job: incremental, in the backend's own format, deleted when
/// no longer retained) or savepoint (owned by the user: self-contained and portable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// A periodic checkpoint.
    Checkpoint,
    /// A savepoint.
    Savepoint,
}

impl SnapshotKind {
    /// `checkpoint` or `savepoint`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            SnapshotKind::Checkpoint => "checkpoint",
            SnapshotKind::Savepoint => "savepoint",
        }
    }
}

/// The contents of a `_metadata` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// [`FORMAT`].
    pub format: u32,
    /// The checkpoint id, increasing within a job's lifetime (across restarts).
    pub id: u64,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// The job's name.
    pub job: String,
    /// When it was triggered (ms since the epoch).
    pub triggered_ms: i64,
    /// When it completed (ms since the epoch).
    pub completed_ms: i64,
    /// The job's number of key groups; a restore must use the same.
    pub max_parallelism: usize,
    /// State per vertex id.
    pub vertices: BTreeMap<String, VertexState>,
}

/// The state of one vertex: one entry per subtask that had any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VertexState {
    /// The vertex's parallelism when the snapshot was taken.
    pub parallelism: usize,
    /// Per subtask, in subtask order.
    pub subtasks: Vec<SubtaskState>,
}

/// The state of one operator subtask.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SubtaskState {
    /// The subtask index.
    pub subtask: usize,
    /// Keyed state and timers, if the operator keeps any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyed: Option<KeyedStateHandle>,
    /// Operator (non-keyed) state: a source's position, a sink's pending transactions;
    /// hex-encoded bytes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_bytes")]
    pub operator_state: Option<Vec<u8>>,
}

/// Where one subtask's keyed state is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyedStateHandle {
    /// The format of the files: a backend kind (`heap`, `rocksdb`) for a checkpoint in
    /// the backend's own format, or `portable` for a savepoint's state file.
    pub format: String,
    /// The key groups the subtask owned: `[start, end)`.
    pub key_groups: (usize, usize),
    /// The declared states, indexed by state id.
    pub states: Vec<StateDescriptor>,
    /// The files.
    pub files: Vec<FileHandle>,
}

/// One uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHandle {
    /// Its name in the snapshot (what the backend restores it as).
    pub name: String,
    /// Its path in the storage.
    pub path: String,
    /// Its size, bytes.
    pub size: u64,
    /// xxh3-64 of its contents, checked when it is downloaded for a restore.
    pub xxh3: u64,
    /// Whether a later checkpoint of the same subtask may reference it instead of
    /// uploading the same file again (RocksDB SST files).
    #[serde(default)]
    pub immutable: bool,
}

/// The portable format name of savepoint state files.
pub const PORTABLE: &str = "portable";

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => {
                let mut out = String::with_capacity(b.len() * 2);
                for byte in b {
                    out.push_str(&format!("{byte:02x}"));
                }
                s.serialize_str(&out)
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        let Some(s) = s else { return Ok(None) };
        if s.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd-length hex string"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}
