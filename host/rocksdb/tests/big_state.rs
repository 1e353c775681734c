//! Larger than memory: 10 million keys of value state through `KeyedStateStore` over
//! RocksDB, ~1.2 GB of state, while the process's peak resident memory stays far below
//! the state's size. Slow (minutes), so it only runs when asked:
//!
//! ```text
//! SLUICE_BIG_STATE=1 cargo test --release -p sluice-rocksdb --test big_state -- --nocapture
//! ```
//!
//! The memory limit is measured, not imposed: the test reads the process's peak resident
//! set size (`VmHWM` in `/proc/self/status`, which counts every page the process ever had
//! resident at once: heap, RocksDB's block cache and memtables, thread stacks, the binary)
//! and fails if it reached half the state's size on disk. The kernel's page cache, which
//! may hold SST file pages for RocksDB's reads, is not the process's memory (it is shared
//! and reclaimable) and is not counted. An address-space limit (`RLIMIT_AS`) was not used:
//! it counts reservations that are never touched (a glibc malloc arena reserves 64 MiB of
//! address space per thread), so it measures the allocator rather than the state.
//!
//! `SLUICE_BIG_STATE_KEYS` sets the number of keys (default 10,000,000) and
//! `SLUICE_BIG_STATE_DIR` the directory (default: a temporary directory).

use sluice_core::state::{KeyedStateStore, KvBackend, StateDescriptor, StateKind};
use sluice_rocksdb::{RocksDbBackendFactory, RocksDbOptions};
use std::sync::Arc;
use std::time::Instant;

const VALUE_LEN: usize = 100;

fn key(i: u64) -> Vec<u8> {
    format!("user-{i:010}").into_bytes()
}

/// The value a key must hold: 100 pseudo-random bytes from `(i, version)` (incompressible,
/// so the state's size on disk is its real size).
fn value(i: u64, version: u64) -> [u8; VALUE_LEN] {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (version << 1) ^ 0x2545_f491_4f6c_dd1d;
    let mut out = [0u8; VALUE_LEN];
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    out
}

/// Keys updated in the second pass hold version 1.
fn version(i: u64) -> u64 {
    u64::from(i % 10 == 3)
}

/// A line of `/proc/self/status`, in KiB (`VmHWM`, `VmRSS`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

const MIB: f64 = (1 << 20) as f64;

#[test]
fn ten_million_keys_in_bounded_memory() {
    if std::env::var_os("SLUICE_BIG_STATE").is_none() {
        eprintln!("skipped: set SLUICE_BIG_STATE=1 (and build with --release) to run it");
        return;
    }
    let n: u64 = std::env::var("SLUICE_BIG_STATE_KEYS")
        .ok()
        .map(|s| s.parse().expect("SLUICE_BIG_STATE_KEYS is a number"))
        .unwrap_or(10_000_000);
    let tmp = match std::env::var_os("SLUICE_BIG_STATE_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let options = RocksDbOptions::default();
    println!("options: {options:?}");
    let factory = RocksDbBackendFactory::new(options);
    let clock = Arc::new(|| 0i64);
    let desc = StateDescriptor {
        name: "profile".into(),
        kind: StateKind::Value,
        ttl_ms: None,
    };
    let backend = factory.create_backend(&tmp.path().join("db")).unwrap();
    let mut store = KeyedStateStore::new(Box::new(backend), 128, 0..128, clock.clone()).unwrap();
    let id = store.declare(desc.clone()).unwrap();

    // Pass 1: every key written once.
    let t = Instant::now();
    for i in 0..n {
        store.set_current_key(&key(i));
        store.value_set(id, &value(i, 0)).unwrap();
    }
    let write_s = t.elapsed().as_secs_f64();
    // Pass 2: read-modify-write of a tenth of the keys.
    let t = Instant::now();
    for i in (3..n).step_by(10) {
        store.set_current_key(&key(i));
        let old = store.value_get(id).unwrap();
        assert_eq!(
            old.as_deref(),
            Some(&value(i, 0)[..]),
            "key {i} before its update"
        );
        store.value_set(id, &value(i, 1)).unwrap();
    }
    let update_s = t.elapsed().as_secs_f64();

    // Snapshot, then restore into a new database and check every key there.
    let t = Instant::now();
    let snap = store
        .backend_mut()
        .snapshot(&tmp.path().join("snap"))
        .unwrap();
    let snapshot_s = t.elapsed().as_secs_f64();
    let approx = store.backend_mut().approximate_bytes();
    drop(store);
    std::fs::remove_dir_all(tmp.path().join("db")).unwrap();
    let files: Vec<_> = snap
        .files
        .iter()
        .map(|f| (f.name.clone(), f.path.clone()))
        .collect();
    let on_disk: u64 = snap
        .files
        .iter()
        .map(|f| std::fs::metadata(&f.path).unwrap().len())
        .sum();
    let t = Instant::now();
    let restored = factory
        .restore_backend(&tmp.path().join("restored"), &files)
        .unwrap();
    let mut store = KeyedStateStore::new(Box::new(restored), 128, 0..128, clock).unwrap();
    let id = store.declare(desc).unwrap();
    let restore_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..n {
        store.set_current_key(&key(i));
        let got = store.value_get(id).unwrap();
        assert_eq!(got.as_deref(), Some(&value(i, version(i))[..]), "key {i}");
    }
    for i in n..n + 1_000 {
        store.set_current_key(&key(i));
        assert_eq!(
            store.value_get(id).unwrap(),
            None,
            "key {i} was never written"
        );
    }
    let verify_s = t.elapsed().as_secs_f64();
    let restored_disk = dir_bytes(&tmp.path().join("restored"));

    let peak = status_kib("VmHWM") * 1024;
    let rss = status_kib("VmRSS") * 1024;
    // Backend key: key group (2) + state id (2) + length (1) + key; then the value.
    let raw = n * (key(0).len() as u64 + 5 + VALUE_LEN as u64);
    println!("keys:                  {n}");
    println!("raw state (keys+values): {:.0} MiB", raw as f64 / MIB);
    println!(
        "snapshot on disk:      {:.0} MiB in {} files",
        on_disk as f64 / MIB,
        snap.files.len()
    );
    println!(
        "restored DB on disk:   {:.0} MiB",
        restored_disk as f64 / MIB
    );
    println!("approximate_bytes:     {:.0} MiB", approx as f64 / MIB);
    println!("peak RSS (VmHWM):      {:.0} MiB", peak as f64 / MIB);
    println!("RSS at the end:        {:.0} MiB", rss as f64 / MIB);
    println!(
        "write {write_s:.1} s ({:.0} k keys/s), update 10 % {update_s:.1} s, snapshot {snapshot_s:.2} s, \
         restore {restore_s:.2} s, verify all {verify_s:.1} s ({:.0} k gets/s)",
        n as f64 / write_s / 1e3,
        n as f64 / verify_s / 1e3
    );
    assert!(
        peak * 2 < on_disk,
        "peak RSS {peak} bytes is not well below the state's {on_disk} bytes on disk"
    );
}

/// Makes sure the helpers above agree with themselves on a small run, in every CI run.
#[test]
fn small_run_of_the_same_code() {
    let tmp = tempfile::tempdir().unwrap();
    let factory = RocksDbBackendFactory::default();
    let mut b = factory.create_backend(&tmp.path().join("db")).unwrap();
    for i in 0..1_000 {
        b.put(&key(i), &value(i, version(i))).unwrap();
    }
    assert_eq!(b.get(&key(13)).unwrap().unwrap(), value(13, 1));
    assert_ne!(value(13, 1), value(13, 0));
    assert!(status_kib("VmHWM") > 0);
}
