//! The operator store: uploaded components by content hash (SHA-256), with name and
//! version metadata, in `<data dir>/operators/<hash>.wasm` and `<hash>.json`.

use crate::engine::ComponentInfo;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use utoipa::ToSchema;

/// An operator in the store.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperatorMeta {
    /// SHA-256 of the component, lowercase hex: its id.
    pub hash: String,
    /// Its name (unique with `version`).
    pub name: String,
    /// Its version.
    pub version: String,
    /// Size of the component, bytes.
    pub size: u64,
    /// When it was uploaded (RFC 3339, UTC).
    pub uploaded_at: String,
    /// What the component declares.
    #[serde(flatten)]
    pub component: ComponentInfo,
}

/// The store; all methods are safe to call from several threads.
pub struct OperatorStore {
    dir: PathBuf,
    index: Mutex<BTreeMap<String, OperatorMeta>>,
}

/// Why a `put` was refused.
#[derive(Debug)]
pub enum PutError {
    /// `name@version` is taken by another component.
    Taken(String),
    /// The disk failed.
    Io(String),
}

impl OperatorStore {
    /// Opens (creating) the store in `dir`, reading the metadata of what it holds.
    ///
    /// Errors: the folder cannot be created or read, or a metadata file is corrupt.
    pub fn open(dir: &Path) -> Result<OperatorStore, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut index = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            if path.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let meta: OperatorMeta =
                    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                index.insert(meta.hash.clone(), meta);
            }
        }
        Ok(OperatorStore {
            dir: dir.to_path_buf(),
            index: Mutex::new(index),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, OperatorMeta>> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The SHA-256 of `bytes`, lowercase hex.
    pub fn hash(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Stores a validated component. Returns its metadata and whether it is new (the same
    /// bytes under the same name and version are accepted again, unchanged).
    pub fn put(
        &self,
        bytes: &[u8],
        name: &str,
        version: &str,
        component: ComponentInfo,
    ) -> Result<(OperatorMeta, bool), PutError> {
        let hash = Self::hash(bytes);
        let mut index = self.index();
        if let Some(m) = index.get(&hash)
            && m.name == name
            && m.version == version
        {
            return Ok((m.clone(), false));
        }
        if let Some(other) = index
            .values()
            .find(|m| m.name == name && m.version == version)
        {
            return Err(PutError::Taken(format!(
                "operator {name}@{version} exists with other content (sha256 {}); upload a new version",
                other.hash
            )));
        }
        let meta = OperatorMeta {
            hash: hash.clone(),
            name: name.to_string(),
            version: version.to_string(),
            size: bytes.len() as u64,
            uploaded_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            component,
        };
        let io = |e: std::io::Error| PutError::Io(format!("storing operator {hash}: {e}"));
        write_atomic(&self.wasm_path(&hash), bytes).map_err(io)?;
        let json = serde_json::to_vec_pretty(&meta).expect("metadata serializes");
        write_atomic(&self.dir.join(format!("{hash}.json")), &json).map_err(io)?;
        index.insert(hash, meta.clone());
        Ok((meta, true))
    }

    /// Every operator, by hash.
    pub fn list(&self) -> Vec<OperatorMeta> {
        self.index().values().cloned().collect()
    }

    /// The operator named by `reference`: its hash (optionally `sha256:`-prefixed) or
    /// `name@version`.
    pub fn find(&self, reference: &str) -> Option<OperatorMeta> {
        let index = self.index();
        let hash = reference.strip_prefix("sha256:").unwrap_or(reference);
        if let Some(m) = index.get(hash) {
            return Some(m.clone());
        }
        let (name, version) = reference.rsplit_once('@')?;
        index
            .values()
            .find(|m| m.name == name && m.version == version)
            .cloned()
    }

    /// Where the component `hash` is stored.
    pub fn wasm_path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.wasm"))
    }

    /// Removes operator `hash` (the caller checked that no job uses it).
    pub fn delete(&self, hash: &str) -> Result<(), String> {
        let mut index = self.index();
        index.remove(hash);
        for ext in ["json", "wasm"] {
            let p = self.dir.join(format!("{hash}.{ext}"));
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(format!("{}: {e}", p.display()));
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a crash never
/// leaves half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
