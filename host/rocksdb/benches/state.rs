//! State backend figures (prints a table; not a timed test):
//!
//! 1. put and get throughput of `KeyedStateStore` value state over the heap backend and
//!    over RocksDB;
//! 2. for a large RocksDB state: the duration of a full snapshot (native checkpoint), its
//!    bytes, then rounds of "change 1 % of the keys, snapshot again" with the bytes an
//!    incremental checkpoint uploads (files whose names the previous snapshot did not
//!    list, plus the small mutable files, which are always uploaded), and the time to
//!    restore from the last snapshot.
//!
//! ```text
//! cargo bench -p sluice-rocksdb --bench state
//! SLUICE_BENCH_STATE_MB=1024 cargo bench -p sluice-rocksdb --bench state   # ~1 GB of state
//! ```
//!
//! Environment: `SLUICE_BENCH_OPS` (keys for the throughput part, default 1,000,000),
//! `SLUICE_BENCH_STATE_MB` (state size for the snapshot part in MiB of keys and values,
//! default 256), `SLUICE_BENCH_ROUNDS` (incremental rounds, default 10),
//! `SLUICE_BENCH_DIR` (where the databases go, default a temporary directory).

use sluice_core::state::{
    BackendSnapshot, HeapKvBackend, KeyedStateStore, KvBackend, StateDescriptor, StateKind,
};
use sluice_rocksdb::{RocksDbBackendFactory, RocksDbOptions};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

const VALUE_LEN: usize = 100;
const MIB: f64 = (1 << 20) as f64;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
        .unwrap_or(default)
}

fn key(i: u64) -> Vec<u8> {
    format!("user-{i:010}").into_bytes()
}

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

/// The `j`-th key of a walk over `0..n` in scattered order: `j * P mod n` with `P` a
/// prime larger than any `n` here, so `j` in `0..n` gives each key exactly once.
fn scattered(j: u64, n: u64) -> u64 {
    const P: u128 = 2_654_435_761;
    ((j as u128 * P) % n as u128) as u64
}

fn store_over(backend: Box<dyn KvBackend>) -> (KeyedStateStore, u16) {
    let mut s = KeyedStateStore::new(backend, 128, 0..128, Arc::new(|| 0)).unwrap();
    let id = s
        .declare(StateDescriptor {
            name: "v".into(),
            kind: StateKind::Value,
            ttl_ms: None,
        })
        .unwrap();
    (s, id)
}

/// Writes keys `0..n`, then reads them back in scattered order; returns (puts/s, gets/s).
fn throughput(backend: Box<dyn KvBackend>, n: u64) -> (f64, f64) {
    let (mut s, id) = store_over(backend);
    let t = Instant::now();
    for i in 0..n {
        s.set_current_key(&key(i));
        s.value_set(id, &value(i, 0)).unwrap();
    }
    let put = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for j in 0..n {
        let i = scattered(j, n);
        s.set_current_key(&key(i));
        let v = s.value_get(id).unwrap();
        assert_eq!(v.as_deref(), Some(&value(i, 0)[..]));
    }
    let get = n as f64 / t.elapsed().as_secs_f64();
    (put, get)
}

fn rss_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn file_bytes(snap: &BackendSnapshot, pick: impl Fn(&str, bool) -> bool) -> (usize, u64) {
    let picked: Vec<u64> = snap
        .files
        .iter()
        .filter(|f| pick(&f.name, f.immutable))
        .map(|f| std::fs::metadata(&f.path).unwrap().len())
        .collect();
    (picked.len(), picked.iter().sum())
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let ops = env_num("SLUICE_BENCH_OPS", 1_000_000);
    let state_mb = env_num("SLUICE_BENCH_STATE_MB", 256);
    let rounds = env_num("SLUICE_BENCH_ROUNDS", 10);
    let tmp = match std::env::var_os("SLUICE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let factory = RocksDbBackendFactory::new(RocksDbOptions::default());
    println!("RocksDB options: {:?}", factory.options());
    println!();

    // ---- 1. throughput ----
    println!("value state through KeyedStateStore: {ops} distinct keys, {VALUE_LEN}-byte values");
    println!(
        "{:<10} {:>14} {:>14}",
        "backend", "put (k ops/s)", "get (k ops/s)"
    );
    let (put, get) = throughput(Box::new(HeapKvBackend::new()), ops);
    println!("{:<10} {:>14.0} {:>14.0}", "heap", put / 1e3, get / 1e3);
    let rocks = factory
        .create_backend(&tmp.path().join("throughput"))
        .unwrap();
    let (put, get) = throughput(Box::new(rocks), ops);
    println!("{:<10} {:>14.0} {:>14.0}", "rocksdb", put / 1e3, get / 1e3);
    std::fs::remove_dir_all(tmp.path().join("throughput")).unwrap();
    println!();

    // ---- 2. snapshots of a large state ----
    let per_key = (key(0).len() + 5 + VALUE_LEN) as u64;
    let n = state_mb * (1 << 20) / per_key;
    let db = factory.create_backend(&tmp.path().join("db")).unwrap();
    let (mut s, id) = store_over(Box::new(db));
    let t = Instant::now();
    for i in 0..n {
        s.set_current_key(&key(i));
        s.value_set(id, &value(i, 0)).unwrap();
    }
    let load_s = t.elapsed().as_secs_f64();
    println!(
        "RocksDB state: {n} keys, {:.0} MiB of keys and values, loaded in {load_s:.1} s",
        (n * per_key) as f64 / MIB
    );
    println!(
        "{:<36} {:>9} {:>6} {:>10} {:>15} {:>13} {:>13}",
        "step", "time (s)", "files", "all (MiB)", "new SSTs (MiB)", "mutable (MiB)", "upload (MiB)"
    );
    let t = Instant::now();
    let snap_dir = |r: u64| tmp.path().join(format!("snap-{r}"));
    let mut prev = s.backend_mut().snapshot(&snap_dir(0)).unwrap();
    let snap_s = t.elapsed().as_secs_f64();
    let (files, all) = file_bytes(&prev, |_, _| true);
    let (_, mutable) = file_bytes(&prev, |_, imm| !imm);
    let (ssts, sst_bytes) = file_bytes(&prev, |_, imm| imm);
    println!(
        "{:<36} {:>9.2} {:>6} {:>10.1} {:>15} {:>13.2} {:>13.1}",
        "full snapshot",
        snap_s,
        files,
        all as f64 / MIB,
        format!("{ssts} {:.1}", sst_bytes as f64 / MIB),
        mutable as f64 / MIB,
        all as f64 / MIB
    );
    let mut uploaded_total = 0u64;
    let changes = (n / 100).max(1);
    for round in 1..=rounds {
        let t = Instant::now();
        for j in 0..changes {
            let i = scattered(j + round * changes, n);
            s.set_current_key(&key(i));
            s.value_set(id, &value(i, round)).unwrap();
        }
        let write_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let snap = s.backend_mut().snapshot(&snap_dir(round)).unwrap();
        let snap_s = t.elapsed().as_secs_f64();
        let before: BTreeSet<&str> = prev.files.iter().map(|f| f.name.as_str()).collect();
        let (files, all) = file_bytes(&snap, |_, _| true);
        let (new_ssts, new_bytes) = file_bytes(&snap, |n, imm| imm && !before.contains(n));
        let (_, mutable) = file_bytes(&snap, |_, imm| !imm);
        uploaded_total += new_bytes + mutable;
        println!(
            "{:<36} {:>9.2} {:>6} {:>10.1} {:>15} {:>13.2} {:>13.1}",
            format!("{round:>2}: {changes} keys changed ({write_s:.2} s)"),
            snap_s,
            files,
            all as f64 / MIB,
            format!("{new_ssts} {:.1}", new_bytes as f64 / MIB),
            mutable as f64 / MIB,
            (new_bytes + mutable) as f64 / MIB
        );
        std::fs::remove_dir_all(snap_dir(round - 1)).unwrap();
        prev = snap;
    }
    println!(
        "incremental uploads: {:.1} MiB in {rounds} rounds, {:.1} % of the state per round",
        uploaded_total as f64 / MIB,
        uploaded_total as f64 / rounds.max(1) as f64 / file_bytes(&prev, |_, _| true).1 as f64
            * 100.0
    );
    drop(s);
    let files: Vec<_> = prev
        .files
        .iter()
        .map(|f| (f.name.clone(), f.path.clone()))
        .collect();
    let t = Instant::now();
    let restored = factory
        .restore_backend(&tmp.path().join("restored"), &files)
        .unwrap();
    let (mut r, id) = store_over(Box::new(restored));
    let restore_s = t.elapsed().as_secs_f64();
    let mut gets = |from: u64, count: u64| {
        let t = Instant::now();
        for j in from..from + count {
            let i = scattered(j, n);
            r.set_current_key(&key(i));
            assert!(r.value_get(id).unwrap().is_some(), "key {i} after restore");
        }
        count as f64 / t.elapsed().as_secs_f64()
    };
    let cold = gets(0, 10_000);
    let warm = gets(10_000, 200_000.min(n.saturating_sub(10_000)));
    println!(
        "{:<36} {:>9.2}   (hard links + open + timer index)",
        "restore from the last snapshot", restore_s
    );
    println!(
        "gets after the restore: first 10,000 {:.0} k/s (cold block cache), next 200,000 {:.0} k/s",
        cold / 1e3,
        warm / 1e3
    );
    println!();
    println!(
        "process peak RSS (VmHWM): {:.0} MiB, now (VmRSS): {:.0} MiB",
        rss_mib("VmHWM"),
        rss_mib("VmRSS")
    );
    drop(r);
}
