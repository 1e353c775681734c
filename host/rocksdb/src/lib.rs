//! The RocksDB state backend: one operator subtask's keyed state in an embedded RocksDB
//! database on local disk, for state larger than memory (Flink's
//! `EmbeddedRocksDBStateBackend` / `RocksDBKeyedStateBackend`).
//!
//! [`RocksDbBackend`] implements core's byte-level [`KvBackend`]: keys laid out by
//! `sluice_core::state::layout` (key group first) go into RocksDB's default column family
//! as they are, so a key-group range is a contiguous key range; value, map and list state,
//! TTL and timers are built on top by `sluice_core::state::KeyedStateStore`.
//!
//! # Snapshots are incremental
//!
//! [`KvBackend::snapshot`] flushes the memtable and takes a native RocksDB checkpoint
//! (`rocksdb::checkpoint::Checkpoint`): the live SST files are hard-linked, so a snapshot
//! costs a flush and a few small metadata files, whatever the state's size. SST files are
//! never modified once written, so they are listed as immutable: a checkpoint that lists a
//! name already uploaded by an earlier one reuses that copy (Flink's incremental
//! checkpoints, `RocksIncrementalSnapshotStrategy`).
//!
//! An SST's snapshot name is `<lineage>-<file>.sst`, e.g. `3f9c0a1e52b7d846-000012.sst`,
//! where `<lineage>` is a random id drawn when the backend is created or restored. RocksDB
//! numbers files from a counter kept in its MANIFEST, so within one database a file name
//! is never reused; but two databases restored from the same snapshot (a retry after a
//! failed restore, or the original database still running) continue from the same counter
//! and would each write a different `000012.sst`. The lineage prefix keeps those apart, so
//! a name always means one content. SSTs that came from a restore keep the name they were
//! restored from, so the first checkpoint after a restore is incremental too. Every other
//! file (`MANIFEST-*`, `CURRENT`, `OPTIONS-*`, a WAL) is listed as mutable.
//!
//! # Memory
//!
//! Memory is bounded by [`RocksDbOptions`]: one LRU block cache shared by every backend a
//! factory creates (data blocks, and index and filter blocks partitioned into small
//! pieces, all live in it), and per backend at most
//! `max_write_buffers` memtables of `write_buffer_bytes` each. The write-ahead log is off,
//! as in Flink: durability comes from checkpoints, and a snapshot flushes first.

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, DB, DBCompressionType, LogLevel, Options,
    ReadOptions, WaitForCompactOptions, WriteBatch, WriteOptions,
};
use sluice_core::state::{
    BackendSnapshot, KvBackend, KvBackendFactory, ScanFn, SnapshotFile, StateError,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The backend kind, as in job specs and snapshots.
pub const KIND: &str = "rocksdb";

/// The subdirectory of a snapshot directory that holds the RocksDB checkpoint (RocksDB
/// creates it and requires that it does not exist yet).
const CHECKPOINT_DIR: &str = "rocksdb-checkpoint";

/// A [`RocksDbBackend::delete_range`] over at most this many entries deletes them one by
/// one rather than writing a range tombstone: many small range tombstones (a map state
/// cleared per key) slow down every later read of their key range.
const POINT_DELETE_LIMIT: usize = 32;

const MIB: usize = 1 << 20;

/// Tuning of the RocksDB backends a [`RocksDbBackendFactory`] creates. The defaults keep
/// a process's RocksDB memory near 64 MiB + 32 MiB per backend, however large the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RocksDbOptions {
    /// Capacity in bytes of the LRU block cache shared by every backend of the factory:
    /// uncompressed data blocks, and index and filter blocks too
    /// (`cache_index_and_filter_blocks`), so it bounds read-side memory. Default 64 MiB.
    pub block_cache_bytes: usize,
    /// Size in bytes of one memtable (`write_buffer_size`); a full memtable is flushed to
    /// an SST file. Default 16 MiB.
    pub write_buffer_bytes: usize,
    /// Memtables per backend, the one being written plus those being flushed
    /// (`max_write_buffer_number`): a backend's write-side memory is at most
    /// `write_buffer_bytes * max_write_buffers`. Default 2 (the least: 1 is taken as 2).
    pub max_write_buffers: i32,
    /// Files each backend keeps open (`max_open_files`), bounding its table cache.
    /// Default 256 (at least 16; `-1`, RocksDB's "unbounded", is taken as 16 too).
    pub max_open_files: i32,
    /// Background flush and compaction jobs per backend (`max_background_jobs`; RocksDB
    /// runs them on one thread pool per process). Default 2.
    pub background_jobs: i32,
    /// Bloom filter bits per key (0 for none): point reads of absent keys, common for
    /// state (a key's first event), skip the SST files without the key. Default 10
    /// (~1 % false positives).
    pub bloom_bits_per_key: u32,
    /// Compress SST blocks with LZ4 (the only codec built in). Default true.
    pub lz4: bool,
}

impl Default for RocksDbOptions {
    fn default() -> Self {
        RocksDbOptions {
            block_cache_bytes: 64 * MIB,
            write_buffer_bytes: 16 * MIB,
            max_write_buffers: 2,
            max_open_files: 256,
            background_jobs: 2,
            bloom_bits_per_key: 10,
            lz4: true,
        }
    }
}

/// Creates [`RocksDbBackend`]s sharing one block cache.
pub struct RocksDbBackendFactory {
    options: RocksDbOptions,
    cache: Cache,
}

impl RocksDbBackendFactory {
    /// A factory whose backends are tuned by `options`.
    pub fn new(options: RocksDbOptions) -> Self {
        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        RocksDbBackendFactory { options, cache }
    }

    /// The options backends are created with.
    pub fn options(&self) -> &RocksDbOptions {
        &self.options
    }

    /// Bytes held in the shared block cache now.
    pub fn block_cache_usage(&self) -> usize {
        self.cache.get_usage()
    }

    fn db_options(&self) -> Options {
        let o = &self.options;
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        // Index and filter blocks live in the block cache (bounded), cut into ~4 KiB
        // partitions with only the small top level pinned: a whole-file index or filter
        // of a 64 MiB SST is ~0.5 MiB, larger than a shard of a 64 MiB cache, and would be
        // evicted and re-read on nearly every point read once the state outgrows the
        // cache (Flink's `state.backend.rocksdb.memory.partitioned-index-filters`).
        table.set_cache_index_and_filter_blocks(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        if o.bloom_bits_per_key > 0 {
            table.set_bloom_filter(o.bloom_bits_per_key as f64, false);
            table.set_optimize_filters_for_memory(true);
        }
        let mut opts = Options::default();
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_size(o.write_buffer_bytes);
        opts.set_max_write_buffer_number(o.max_write_buffers.max(2));
        opts.set_max_open_files(o.max_open_files.max(16));
        opts.set_max_background_jobs(o.background_jobs.max(1));
        opts.set_compression_type(if o.lz4 {
            DBCompressionType::Lz4
        } else {
            DBCompressionType::None
        });
        opts.set_level_compaction_dynamic_level_bytes(true);
        // RocksDB's own info log: warnings only, and few old copies.
        opts.set_log_level(LogLevel::Warn);
        opts.set_keep_log_file_num(2);
        opts
    }

    fn open(&self, dir: &Path, create: bool) -> Result<RocksDbBackend, StateError> {
        let mut opts = self.db_options();
        opts.create_if_missing(create);
        let db = DB::open(&opts, dir).map_err(|e| {
            StateError(format!(
                "RocksDB state in {}: cannot open the database: {e}",
                dir.display()
            ))
        })?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(RocksDbBackend {
            db,
            path: dir.to_path_buf(),
            read: ReadOptions::default(),
            write,
            lineage: new_lineage(dir),
            restored: HashMap::new(),
        })
    }

    /// [`KvBackendFactory::create`], returning the concrete backend.
    pub fn create_backend(&self, dir: &Path) -> Result<RocksDbBackend, StateError> {
        prepare_empty_dir(dir)?;
        self.open(dir, true)
    }

    /// [`KvBackendFactory::restore`], returning the concrete backend.
    pub fn restore_backend(
        &self,
        dir: &Path,
        files: &[(String, PathBuf)],
    ) -> Result<RocksDbBackend, StateError> {
        let shown = dir.display();
        // (snapshot name, local file name, downloaded path), checked before touching `dir`.
        let mut plan = Vec::with_capacity(files.len());
        let mut placed: HashMap<String, &str> = HashMap::new();
        let mut restored = HashMap::new();
        for (name, src) in files {
            let local = local_name(name).ok_or_else(|| {
                StateError(format!(
                    "RocksDB state in {shown}: the snapshot has a file '{name}' that is not a \
                     RocksDB checkpoint file (is it a snapshot of another backend?)"
                ))
            })?;
            if let Some(other) = placed.insert(local.clone(), name) {
                return Err(StateError(format!(
                    "RocksDB state in {shown}: snapshot files '{other}' and '{name}' are both \
                     the database's {local}"
                )));
            }
            if local.ends_with(".sst") {
                restored.insert(local.clone(), name.clone());
            }
            plan.push((name, local, src));
        }
        if !placed.contains_key("CURRENT") {
            return Err(StateError(format!(
                "RocksDB state in {shown}: the snapshot has no CURRENT file (it lists {} \
                 files), so it is not a complete RocksDB checkpoint",
                files.len()
            )));
        }
        prepare_empty_dir(dir)?;
        let opened = (|| {
            for (name, local, src) in &plan {
                if !src.is_file() {
                    return Err(StateError(format!(
                        "RocksDB state in {shown}: snapshot file '{name}' is missing: no file at {}",
                        src.display()
                    )));
                }
                let dst = dir.join(local);
                let linked = local.ends_with(".sst") && std::fs::hard_link(src, &dst).is_ok();
                if !linked {
                    std::fs::copy(src, &dst).map_err(|e| {
                        StateError(format!(
                            "RocksDB state in {shown}: cannot copy snapshot file '{name}' from {}: {e}",
                            src.display()
                        ))
                    })?;
                }
            }
            self.open(dir, false).map_err(|e| {
                // Name the snapshot files behind the database files RocksDB names.
                let mut msg = e.0;
                for (local, name) in &restored {
                    if msg.contains(&format!("/{local}")) {
                        msg.push_str(&format!("; {local} is the snapshot's file '{name}'"));
                    }
                }
                StateError(format!(
                    "{msg} (restoring a snapshot of {} files)",
                    files.len()
                ))
            })
        })();
        match opened {
            Ok(mut backend) => {
                backend.restored = restored;
                Ok(backend)
            }
            Err(e) => {
                // `dir` was empty: what is in it now is what this call placed there.
                let _ = std::fs::remove_dir_all(dir);
                Err(e)
            }
        }
    }
}

impl Default for RocksDbBackendFactory {
    fn default() -> Self {
        Self::new(RocksDbOptions::default())
    }
}

impl KvBackendFactory for RocksDbBackendFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// Creates an empty database in `dir`, which must be missing or empty.
    fn create(&self, dir: &Path) -> Result<Box<dyn KvBackend>, StateError> {
        Ok(Box::new(self.create_backend(dir)?))
    }

    /// Places the snapshot's files in `dir` (missing or empty): SST files are hard-linked
    /// (copied when `dir` is on another file system), the small metadata files copied, so
    /// nothing the database later writes touches the downloaded files. Then opens it.
    ///
    /// Errors, naming `dir` and the file: a name that is not a RocksDB checkpoint file
    /// (another backend's snapshot), no `CURRENT`, a listed file missing on disk, and
    /// whatever RocksDB finds on open (an SST the MANIFEST needs that was not listed, a
    /// truncated SST, a corrupted MANIFEST). A corrupted block inside an SST is found when
    /// it is read, as an error of that read.
    fn restore(
        &self,
        dir: &Path,
        files: &[(String, PathBuf)],
    ) -> Result<Box<dyn KvBackend>, StateError> {
        Ok(Box::new(self.restore_backend(dir, files)?))
    }
}

/// One subtask's keyed state in a RocksDB database. See the crate docs.
pub struct RocksDbBackend {
    db: DB,
    path: PathBuf,
    /// The options of point reads, made once (`DB::get_pinned` makes and frees a C
    /// `ReadOptions` per call).
    read: ReadOptions,
    /// WAL off: checkpoints, which flush first, are what makes state durable.
    write: WriteOptions,
    /// The prefix of this database's own SST files' snapshot names.
    lineage: String,
    /// Snapshot names of the SST files this database was restored with, by file name.
    restored: HashMap<String, String>,
}

impl RocksDbBackend {
    /// The database's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> StateError {
        StateError(format!(
            "RocksDB state in {}: {what}: {e}",
            self.path.display()
        ))
    }

    /// An integer property of the database (`rocksdb.*`, see RocksDB's `DB::Properties`).
    pub fn property(&self, name: &str) -> Result<Option<u64>, StateError> {
        self.db
            .property_int_value(name)
            .map_err(|e| self.err(&format!("reading property {name}"), e))
    }

    /// Flushes the memtables to SST files and waits for it.
    pub fn flush(&self) -> Result<(), StateError> {
        self.db.flush().map_err(|e| self.err("flush", e))
    }

    /// Flushes, compacts the whole key range into the last level and waits for every
    /// background job, so that the SST files stay as they are until the next write (for
    /// tests and benchmarks: it rewrites every SST).
    pub fn compact_all(&self) -> Result<(), StateError> {
        self.flush()?;
        self.db.compact_range::<&[u8], &[u8]>(None, None);
        self.wait_for_compactions()
    }

    /// Waits until no flush or compaction is running or pending.
    pub fn wait_for_compactions(&self) -> Result<(), StateError> {
        self.db
            .wait_for_compact(&WaitForCompactOptions::default())
            .map_err(|e| self.err("waiting for compactions", e))
    }

    /// The snapshot name of the SST file `file` (e.g. `000012.sst`).
    fn sst_name(&self, file: &str) -> String {
        match self.restored.get(file) {
            Some(name) => name.clone(),
            None => format!("{}-{file}", self.lineage),
        }
    }
}

impl KvBackend for RocksDbBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.db.get_pinned_opt(key, &self.read) {
            Ok(v) => Ok(v.map(|v| v.to_vec())),
            Err(e) => Err(self.err("get", e)),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.db
            .put_opt(key, value, &self.write)
            .map_err(|e| self.err("put", e))
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
        self.db
            .delete_opt(key, &self.write)
            .map_err(|e| self.err("delete", e))
    }

    /// Deletes a few entries one by one, more with one range tombstone (`DeleteRange`
    /// in a write batch).
    fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), StateError> {
        if start >= end {
            return Ok(());
        }
        let mut few = Vec::new();
        let mut many = false;
        self.scan(start, end, &mut |k, _| {
            if few.len() == POINT_DELETE_LIMIT {
                many = true;
                return false;
            }
            few.push(k.to_vec());
            true
        })?;
        if few.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        if many {
            batch.delete_range(start, end);
        } else {
            for k in &few {
                batch.delete(k);
            }
        }
        self.db
            .write_opt(batch, &self.write)
            .map_err(|e| self.err("delete_range", e))
    }

    fn scan(&mut self, start: &[u8], end: &[u8], f: &mut ScanFn<'_>) -> Result<(), StateError> {
        if start >= end {
            return Ok(());
        }
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(start);
        read.set_iterate_upper_bound(end);
        let mut it = self.db.raw_iterator_opt(read);
        it.seek(start);
        while let Some((k, v)) = it.item() {
            if !f(k, v) {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(|e| self.err("scan", e))
    }

    /// Flushes, then writes a native checkpoint into `dir/rocksdb-checkpoint` (hard links
    /// of the SST files, copies of the metadata) and lists its files.
    fn snapshot(&mut self, dir: &Path) -> Result<BackendSnapshot, StateError> {
        let target = dir.join(CHECKPOINT_DIR);
        std::fs::create_dir_all(dir)
            .map_err(|e| self.err(&format!("creating snapshot directory {}", dir.display()), e))?;
        self.flush()?;
        Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(&target))
            .map_err(|e| self.err(&format!("checkpoint into {}", target.display()), e))?;
        let listing = std::fs::read_dir(&target)
            .map_err(|e| self.err(&format!("listing checkpoint {}", target.display()), e))?;
        let mut files = Vec::new();
        for entry in listing {
            let entry = entry
                .map_err(|e| self.err(&format!("listing checkpoint {}", target.display()), e))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            let immutable = file.ends_with(".sst");
            files.push(SnapshotFile {
                name: if immutable {
                    self.sst_name(&file)
                } else {
                    file
                },
                path: entry.path(),
                immutable,
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(BackendSnapshot {
            kind: KIND.into(),
            files,
        })
    }

    /// Live SST bytes plus memtable bytes (`rocksdb.live-sst-files-size` +
    /// `rocksdb.cur-size-all-mem-tables`).
    fn approximate_bytes(&self) -> u64 {
        let p = |name| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        p("rocksdb.live-sst-files-size") + p("rocksdb.cur-size-all-mem-tables")
    }
}

/// The file name in the database directory of snapshot file `name`: an SST's lineage
/// prefix is dropped (`<lineage>-000012.sst` -> `000012.sst`); other names are kept.
/// `None` for a name that no RocksDB checkpoint holds.
fn local_name(name: &str) -> Option<String> {
    let plain = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && !n.starts_with('.')
    };
    if !plain(name) {
        return None;
    }
    if let Some(stem) = name.strip_suffix(".sst") {
        let number = stem.rsplit_once('-').map_or(stem, |(_, n)| n);
        return (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
            .then(|| format!("{number}.sst"));
    }
    let known = name == "CURRENT"
        || name == "IDENTITY"
        || name.starts_with("MANIFEST-")
        || name.starts_with("OPTIONS-")
        || name.ends_with(".log")
        || name.ends_with(".blob");
    known.then(|| name.to_string())
}

/// Creates `dir`, or checks that it is empty: a backend never opens over files it did
/// not place there.
fn prepare_empty_dir(dir: &Path) -> Result<(), StateError> {
    let shown = dir.display();
    std::fs::create_dir_all(dir)
        .map_err(|e| StateError(format!("RocksDB state in {shown}: cannot create it: {e}")))?;
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| StateError(format!("RocksDB state in {shown}: cannot list it: {e}")))?;
    if entries.next().is_some() {
        return Err(StateError(format!(
            "RocksDB state in {shown}: the directory is not empty (a backend needs a fresh one)"
        )));
    }
    Ok(())
}

/// A fresh lineage id: 16 hex digits hashed from the time, the process, a counter and the
/// directory, so that two databases never share one.
fn new_lineage(dir: &Path) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(dir.as_os_str().as_encoded_bytes());
    format!("{:016x}", h.digest())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_drop_the_lineage_and_refuse_strangers() {
        assert_eq!(
            local_name("3f9c0a1e52b7d846-000012.sst").as_deref(),
            Some("000012.sst")
        );
        assert_eq!(local_name("000012.sst").as_deref(), Some("000012.sst"));
        assert_eq!(local_name("CURRENT").as_deref(), Some("CURRENT"));
        assert_eq!(
            local_name("MANIFEST-000005").as_deref(),
            Some("MANIFEST-000005")
        );
        assert_eq!(local_name("000004.log").as_deref(), Some("000004.log"));
        for bad in [
            "heap.kv",
            "../CURRENT",
            "a/000012.sst",
            "x-.sst",
            ".sst",
            "",
            "LOG",
        ] {
            assert_eq!(local_name(bad), None, "{bad}");
        }
    }
}
