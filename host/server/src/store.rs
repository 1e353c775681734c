//! The operator store: uploaded components by content address, under
//! `<data dir>/operators/` as `<sha256>.wasm` with their metadata in `<sha256>.json`.
//! An operator is named by its SHA-256 (64 lowercase hex digits, optionally prefixed
//! `sha256:`) or, when it was uploaded with a name and a version, by `name@version`.

use crate::engine::ComponentInfo;
use crate::error::{ApiError, ApiResult};
use crate::persist::write_atomically;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use utoipa::ToSchema;

/// A stored operator, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperatorInfo {
    /// SHA-256 of the component, lowercase hex: its content address.
    pub sha256: String,
    /// The name it was uploaded with, if any.
    pub name: Option<String>,
    /// The version it was uploaded with, if any.
    pub version: Option<String>,
    /// Size of the component, bytes.
    pub size_bytes: u64,
    /// The WIT world it implements.
    pub world: String,
    /// Its exports.
    pub exports: Vec<String>,
    /// Its imports (all provided by the host).
    pub imports: Vec<String>,
    /// When it was uploaded, ms since the epoch.
    pub uploaded_at: i64,
    /// Ids of the jobs whose specs use it (filled in when answering).
    #[serde(default, skip_deserializing)]
    pub jobs: Vec<String>,
}

/// The store.
pub struct OperatorStore {
    dir: PathBuf,
    index: Mutex<BTreeMap<String, OperatorInfo>>,
}

/// Letters, digits, `.`, `_`, `-`, `+`; 1 to 128 of them, starting with a letter or digit.
pub fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
}

/// The hash in `reference` if it is one (`<64 hex>` or `sha256:<64 hex>`).
pub fn as_hash(reference: &str) -> Option<String> {
    let h = reference.strip_prefix("sha256:").unwrap_or(reference);
    (h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit())).then(|| h.to_ascii_lowercase())
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl OperatorStore {
    /// Opens (creating) the store in `dir`, reading every operator's metadata. A
    /// metadata file that does not parse, or whose component is missing, is skipped with
    /// a warning.
    pub fn open(dir: &Path) -> Result<OperatorStore, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut index = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<OperatorInfo>(&b).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(info) if dir.join(format!("{}.wasm", info.sha256)).is_file() => {
                    index.insert(info.sha256.clone(), info);
                }
                Ok(info) => tracing::warn!(
                    "operator {}: its component file is missing; skipped",
                    info.sha256
                ),
                Err(e) => tracing::warn!("{}: {e}; skipped", path.display()),
            }
        }
        Ok(OperatorStore {
            dir: dir.to_path_buf(),
            index: Mutex::new(index),
        })
    }

    /// The component file of operator `sha256`.
    pub fn file(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.wasm"))
    }

    /// Every operator, by hash.
    pub fn list(&self) -> Vec<OperatorInfo> {
        lock(&self.index).values().cloned().collect()
    }

    /// The operator `reference` names (a hash or `name@version`), if stored.
    pub fn get(&self, reference: &str) -> Option<OperatorInfo> {
        let index = lock(&self.index);
        if let Some(h) = as_hash(reference) {
            return index.get(&h).cloned();
        }
        let (name, version) = reference.rsplit_once('@')?;
        index
            .values()
            .find(|o| o.name.as_deref() == Some(name) && o.version.as_deref() == Some(version))
            .cloned()
    }

    /// Stores `wasm` (already checked: `component`) under `name@version`. Returns the
    /// operator and whether it is new (an identical upload with the same name and
    /// version, or without any, is answered with what is stored).
    ///
    /// Errors: 422 for an invalid name or version, or only one of them; 409 when
    /// `name@version` already names other content, or the content is stored under
    /// another name or version; 500 when the files cannot be written.
    pub fn put(
        &self,
        wasm: &[u8],
        name: Option<String>,
        version: Option<String>,
        component: ComponentInfo,
        now: i64,
    ) -> ApiResult<(OperatorInfo, bool)> {
        check_labels(name.as_deref(), version.as_deref())?;
        let sha256 = sha256_hex(wasm);
        let mut index = lock(&self.index);
        if let (Some(n), Some(v)) = (&name, &version)
            && let Some(other) = index.values().find(|o| {
                o.name.as_deref() == Some(n)
                    && o.version.as_deref() == Some(v)
                    && o.sha256 != sha256
            })
        {
            return Err(ApiError::conflict(
                "conflict",
                format!(
                    "{n}@{v} is already the name of operator {} (a version names one content: upload this one as another version)",
                    other.sha256
                ),
            ));
        }
        if let Some(existing) = index.get(&sha256) {
            let same = name.is_none() || (existing.name == name && existing.version == version);
            if same {
                return Ok((existing.clone(), false));
            }
            return Err(ApiError::conflict(
                "conflict",
                format!(
                    "this component is already stored as operator {} ({}); refer to it by its hash or that name",
                    sha256,
                    match (&existing.name, &existing.version) {
                        (Some(n), Some(v)) => format!("{n}@{v}"),
                        _ => "without a name".to_string(),
                    }
                ),
            ));
        }
        let info = OperatorInfo {
            sha256: sha256.clone(),
            name,
            version,
            size_bytes: wasm.len() as u64,
            world: component.world,
            exports: component.exports,
            imports: component.imports,
            uploaded_at: now,
            jobs: Vec::new(),
        };
        let json =
            serde_json::to_vec_pretty(&info).map_err(|e| ApiError::internal(e.to_string()))?;
        write_atomically(&self.file(&sha256), wasm)
            .and_then(|_| write_atomically(&self.dir.join(format!("{sha256}.json")), &json))
            .map_err(ApiError::internal)?;
        index.insert(sha256, info.clone());
        Ok((info, true))
    }

    /// Deletes operator `sha256` (its metadata first, so that a crash leaves no
    /// half-listed operator). Returns whether it was stored.
    pub fn delete(&self, sha256: &str) -> Result<bool, String> {
        let mut index = lock(&self.index);
        if index.remove(sha256).is_none() {
            return Ok(false);
        }
        for ext in ["json", "wasm"] {
            let p = self.dir.join(format!("{sha256}.{ext}"));
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(format!("{}: {e}", p.display()));
            }
        }
        Ok(true)
    }
}

/// Name and version: both or neither, each a valid label.
fn check_labels(name: Option<&str>, version: Option<&str>) -> ApiResult<()> {
    for (what, v) in [("name", name), ("version", version)] {
        if let Some(v) = v
            && !valid_label(v)
        {
            return Err(ApiError::unprocessable(
                "invalid_name",
                format!(
                    "{what} '{v}' is not valid: use 1 to 128 letters, digits, '.', '_', '-' or '+', starting with a letter or digit"
                ),
            ));
        }
    }
    if name.is_some() != version.is_some() {
        return Err(ApiError::unprocessable(
            "invalid_name",
            "give both a name and a version (an operator is then named name@version), or neither",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ComponentInfo {
        ComponentInfo {
            world: "w".into(),
            exports: vec!["e".into()],
            imports: vec![],
        }
    }

    #[test]
    fn stores_by_hash_and_name_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let store = OperatorStore::open(dir.path()).unwrap();
        let (a, new) = store
            .put(b"aaa", Some("ops".into()), Some("1.0".into()), info(), 5)
            .unwrap();
        assert!(new);
        assert_eq!(a.sha256, sha256_hex(b"aaa"));
        assert_eq!(
            a.sha256,
            "9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0"
        );
        // The same upload again: the stored one, not new.
        let (again, new) = store
            .put(b"aaa", Some("ops".into()), Some("1.0".into()), info(), 6)
            .unwrap();
        assert!(!new);
        assert_eq!(again.uploaded_at, 5);
        // Other content under the same name@version: a conflict.
        let e = store
            .put(b"bbb", Some("ops".into()), Some("1.0".into()), info(), 7)
            .unwrap_err();
        assert_eq!(e.code, "conflict");
        assert_eq!(store.get("ops@1.0").unwrap().sha256, a.sha256);
        assert_eq!(
            store
                .get(&format!("sha256:{}", a.sha256.to_uppercase()))
                .unwrap()
                .sha256,
            a.sha256
        );
        assert!(store.get("ops@2").is_none());
        let reopened = OperatorStore::open(dir.path()).unwrap();
        assert_eq!(reopened.list().len(), 1);
        assert!(reopened.delete(&a.sha256).unwrap());
        assert!(reopened.get(&a.sha256).is_none());
        assert!(OperatorStore::open(dir.path()).unwrap().list().is_empty());
    }

    #[test]
    fn names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = OperatorStore::open(dir.path()).unwrap();
        for (n, v) in [
            (Some("a b"), Some("1")),
            (Some("a"), None),
            (None, Some("1")),
            (Some("a"), Some("../x")),
        ] {
            let e = store
                .put(b"x", n.map(Into::into), v.map(Into::into), info(), 0)
                .unwrap_err();
            assert_eq!(e.code, "invalid_name", "{n:?} {v:?}");
        }
    }
}
