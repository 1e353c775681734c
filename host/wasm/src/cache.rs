//! On-disk cache of compiled components.
//!
//! An entry is `<dir>/compiled/<sha256 of the .wasm>-<engine hash>.cwasm`, where the
//! engine hash is a digest of [`wasmtime::Engine::precompile_compatibility_hash`] (the
//! wasmtime version, target and every setting that changes compiled code): a new
//! wasmtime or another configuration simply misses. Entries are written to a temporary
//! file and renamed into place, so readers never see a partial entry and concurrent
//! writers (threads or processes) are harmless. An entry that fails to load (corrupt,
//! truncated) is recompiled and rewritten.
//!
//! The cache directory must be trusted: its entries are native code, loaded as is. Loaded
//! components map their entry's file: an entry must only ever be replaced by renaming a
//! new file over it (as `store` does), never truncated or rewritten in place, or the
//! processes using it fault (SIGBUS). Deleting entries is safe.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a [`LoadedComponent`](crate::LoadedComponent) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the on-disk cache, without compiling.
    Hit,
    /// Compiled, and stored in the cache.
    Compiled,
    /// Compiled; the cache is disabled or storing the entry failed (logged).
    CompiledUncached,
    /// The cache held an entry that did not load (logged); recompiled and replaced.
    Recompiled,
}

/// Feeds `Hash` output into SHA-256, so the engine hash is stable across processes.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0 // never used: the digest is read with `finalize`
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A short digest of the engine's compatibility hash.
pub(crate) fn engine_key(engine: &Engine) -> String {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex(&h.0.finalize()[..8])
}

/// SHA-256 of the component bytes, hex.
pub(crate) fn content_key(wasm: &[u8]) -> String {
    hex(&Sha256::digest(wasm))
}

/// The on-disk cache, rooted at `<dir>/compiled`.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    engine_key: String,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl DiskCache {
    pub(crate) fn new(root: &Path, engine: &Engine) -> DiskCache {
        DiskCache {
            dir: root.join("compiled"),
            engine_key: engine_key(engine),
        }
    }

    pub(crate) fn entry_path(&self, content_key: &str) -> PathBuf {
        self.dir
            .join(format!("{content_key}-{}.cwasm", self.engine_key))
    }

    /// Loads the entry for `content_key`: `Ok(None)` if there is none, `Err` if one exists
    /// but does not load.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        content_key: &str,
    ) -> Result<Option<Component>, String> {
        let path = self.entry_path(content_key);
        if !path.is_file() {
            return Ok(None);
        }
        // SAFETY: the cache directory is trusted (documented); entries are written only by
        // `store` below, from `Component::serialize` of the same engine configuration
        // (the file name carries the engine's compatibility hash), and wasmtime checks
        // the header and metadata of what it loads.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Ok(Some(c)),
            Err(e) => Err(format!("{}: {e:#}", path.display())),
        }
    }

    /// Stores `component` for `content_key`, atomically (temporary file, then rename).
    pub(crate) fn store(
        &self,
        content_key: &str,
        component: &Component,
    ) -> Result<PathBuf, String> {
        let bytes = component
            .serialize()
            .map_err(|e| format!("serializing: {e:#}"))?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let path = self.entry_path(content_key);
        let tmp = self.dir.join(format!(
            ".{content_key}.{}.{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("writing {}: {e}", path.display()));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| path)
    }
}
