//! The heap state backend at the byte level: an ordered map in memory, snapshotted in
//! full to one portable state file (Flink's `HashMapStateBackend`, which also snapshots
//! in full).

use super::backend::{
    BackendSnapshot, KvBackend, KvBackendFactory, ScanFn, SnapshotFile, StateError,
};
use super::kvfile::{KvFileWriter, read_kv_file};
use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included};
use std::path::{Path, PathBuf};

/// The name of the heap backend's one snapshot file.
const FILE: &str = "heap.kv";

/// The heap backend's kind. Its snapshot is one portable state file
/// ([`super::kvfile`]).
pub(crate) const HEAP: &str = "heap";

/// Keyed state in an ordered map on the heap: for state that fits in memory.
#[derive(Default)]
pub struct HeapKvBackend {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    bytes: u64,
}

impl HeapKvBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvBackend for HeapKvBackend {
    fn kind(&self) -> &'static str {
        HEAP
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        match self.map.get_mut(key) {
            Some(v) => {
                self.bytes = self.bytes + value.len() as u64 - v.len() as u64;
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                self.bytes += (key.len() + value.len()) as u64;
                self.map.insert(key.to_vec(), value.to_vec());
            }
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
        if let Some(v) = self.map.remove(key) {
            self.bytes -= (key.len() + v.len()) as u64;
        }
        Ok(())
    }

    fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), StateError> {
        if start >= end {
            // BTreeMap::range panics on an inverted range; an empty one deletes nothing.
            return Ok(());
        }
        let keys: Vec<Vec<u8>> = self
            .map
            .range::<[u8], _>((Included(start), Excluded(end)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.delete(&k)?;
        }
        Ok(())
    }

    fn scan(&mut self, start: &[u8], end: &[u8], f: &mut ScanFn<'_>) -> Result<(), StateError> {
        if start >= end {
            return Ok(());
        }
        for (k, v) in self.map.range::<[u8], _>((Included(start), Excluded(end))) {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, dir: &Path) -> Result<BackendSnapshot, StateError> {
        let path = dir.join(FILE);
        let mut w = KvFileWriter::create(&path)?;
        for (k, v) in &self.map {
            w.put(k, v)?;
        }
        w.finish()?;
        Ok(BackendSnapshot {
            kind: HEAP.into(),
            files: vec![SnapshotFile {
                name: FILE.into(),
                path,
                immutable: false,
            }],
        })
    }

    fn approximate_bytes(&self) -> u64 {
        self.bytes
    }
}

/// Creates [`HeapKvBackend`]s.
pub struct HeapKvBackendFactory;

impl KvBackendFactory for HeapKvBackendFactory {
    fn kind(&self) -> &'static str {
        HEAP
    }

    fn create(&self, _dir: &Path) -> Result<Box<dyn KvBackend>, StateError> {
        Ok(Box::new(HeapKvBackend::new()))
    }

    fn restore(
        &self,
        _dir: &Path,
        files: &[(String, PathBuf)],
    ) -> Result<Box<dyn KvBackend>, StateError> {
        let mut backend = HeapKvBackend::new();
        for (name, path) in files {
            if name != FILE {
                return Err(StateError(format!(
                    "heap state snapshot has an unexpected file '{name}' (is it a snapshot of another backend?)"
                )));
            }
            read_kv_file(path, |k, v| backend.put(k, v))?;
        }
        Ok(Box::new(backend))
    }
}
