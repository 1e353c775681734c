//! A conformance kit for state backends: public checks that any [`KvBackendFactory`]
//! must pass, run for the heap backend in this crate's tests and for RocksDB in
//! `sluice-rocksdb`'s. Each check builds its expected answer independently — a
//! `BTreeMap` model of the entries, or the state a sequence of operations must leave —
//! and compares the backend against it, first through the byte-level [`KvBackend`] and
//! then through [`KeyedStateStore`] (value, map and list state, TTL, timers, key groups).
//!
//! The checks panic (with `assert!`) on the first difference, naming the backend and what
//! differed, so they are meant for tests:
//!
//! ```ignore
//! let dir = tempfile::tempdir().unwrap();
//! sluice_core::state::conformance::check_all(&MyBackendFactory::new(), dir.path());
//! ```
//!
//! Every check works in its own subdirectory of the `dir` it is given (the backend's
//! working directories, snapshots, and "downloaded" copies of snapshot files), so they can
//! run one after another in one directory.

use super::backend::{BackendSnapshot, KvBackend, KvBackendFactory};
use super::layout::{key_groups_range, parse};
use super::store::{Clock, KeyedStateStore, StateDescriptor, StateKind, TimeDomain, Timer};
use crate::keygroup::{key_group, key_group_range};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Runs every check of this module, each in its own subdirectory of `dir`.
pub fn check_all(factory: &dyn KvBackendFactory, dir: &Path) {
    check_point_ops(factory, &dir.join("point-ops"));
    check_scan(factory, &dir.join("scan"));
    check_delete_range(factory, &dir.join("delete-range"));
    check_random_ops(factory, &dir.join("random-ops"), 0x5eed, 4_000);
    check_snapshot_round_trip(factory, &dir.join("snapshot"));
    check_immutable_files(factory, &dir.join("immutable"));
    check_restore_errors(factory, &dir.join("restore-errors"));
    check_keyed_state(factory, &dir.join("keyed-state"));
    check_ttl(factory, &dir.join("ttl"));
    check_timers(factory, &dir.join("timers"));
    check_key_group_ranges(factory, &dir.join("key-groups"));
}

/// The entries model: what a backend must hold.
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// SplitMix64: a small deterministic generator, so failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A short key over a small alphabet (so keys collide, share prefixes and include
    /// `0x00` and `0xff`).
    fn key(&mut self) -> Vec<u8> {
        const ALPHABET: [u8; 5] = [0x00, 0x01, b'a', 0x7f, 0xff];
        let len = self.below(5) as usize;
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize])
            .collect()
    }

    fn value(&mut self) -> Vec<u8> {
        let len = self.below(40) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn subdir(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    d
}

fn create(factory: &dyn KvBackendFactory, dir: &Path, name: &str) -> Box<dyn KvBackend> {
    let d = dir.join(name);
    let b = factory
        .create(&d)
        .unwrap_or_else(|e| panic!("{}: create in {}: {e}", factory.kind(), d.display()));
    assert_eq!(
        b.kind(),
        factory.kind(),
        "a backend's kind is its factory's"
    );
    b
}

/// Every entry with `start <= key < end`, in the order the backend's scan gives them.
fn scan_all(b: &mut dyn KvBackend, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    b.scan(start, end, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        true
    })
    .unwrap_or_else(|e| panic!("{}: scan: {e}", b.kind()));
    out
}

/// The whole key space: every key is below `[0xff; 64]` in these checks.
fn everything(b: &mut dyn KvBackend) -> Vec<(Vec<u8>, Vec<u8>)> {
    scan_all(b, &[], &[0xff; 64])
}

fn model_range(model: &Model, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    if start >= end {
        return Vec::new();
    }
    model
        .range::<[u8], _>((
            std::ops::Bound::Included(start),
            std::ops::Bound::Excluded(end),
        ))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn assert_matches(b: &mut dyn KvBackend, model: &Model, when: &str) {
    let kind = b.kind();
    let got = everything(b);
    let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{kind}: {when}: number of entries differs from the model"
    );
    assert_eq!(got, want, "{kind}: {when}: entries differ from the model");
    for (k, v) in model {
        assert_eq!(
            b.get(k).unwrap().as_ref(),
            Some(v),
            "{kind}: {when}: get({k:?})"
        );
    }
}

/// Snapshots `b` into `dir/<name>`, "uploads" the files (copies them to
/// `dir/<name>-download`), removes the snapshot directory as a checkpoint would, and
/// returns the snapshot and the downloaded files as `restore` takes them.
fn snapshot_and_download(
    b: &mut dyn KvBackend,
    dir: &Path,
    name: &str,
) -> (BackendSnapshot, Vec<(String, PathBuf)>) {
    let kind = b.kind();
    let snap_dir = subdir(dir, name);
    let snap = b
        .snapshot(&snap_dir)
        .unwrap_or_else(|e| panic!("{kind}: snapshot: {e}"));
    assert_eq!(snap.kind, kind, "a snapshot's kind is its backend's");
    assert!(!snap.files.is_empty(), "{kind}: a snapshot has files");
    let download = subdir(dir, &format!("{name}-download"));
    let mut names = BTreeSet::new();
    let mut files = Vec::new();
    for f in &snap.files {
        assert!(
            !f.name.is_empty() && !f.name.contains('/') && !f.name.contains('\\'),
            "{kind}: snapshot file name '{}' must be a plain name",
            f.name
        );
        assert!(
            names.insert(f.name.clone()),
            "{kind}: snapshot file name '{}' listed twice",
            f.name
        );
        let to = download.join(&f.name);
        std::fs::copy(&f.path, &to).unwrap_or_else(|e| {
            panic!(
                "{kind}: snapshot file {} ({}) cannot be read: {e}",
                f.name,
                f.path.display()
            )
        });
        files.push((f.name.clone(), to));
    }
    std::fs::remove_dir_all(&snap_dir).unwrap();
    (snap, files)
}

fn restore(
    factory: &dyn KvBackendFactory,
    dir: &Path,
    name: &str,
    files: &[(String, PathBuf)],
) -> Box<dyn KvBackend> {
    let d = dir.join(name);
    let b = factory
        .restore(&d, files)
        .unwrap_or_else(|e| panic!("{}: restore into {}: {e}", factory.kind(), d.display()));
    assert_eq!(b.kind(), factory.kind());
    b
}

/// `get`, `put` and `delete`: overwrites, empty keys and values, keys that are prefixes of
/// each other, `0x00` and `0xff` bytes, deleting what is not there.
pub fn check_point_ops(factory: &dyn KvBackendFactory, dir: &Path) {
    let mut b = create(factory, dir, "db");
    let kind = factory.kind();
    assert_eq!(b.get(b"a").unwrap(), None, "{kind}: a new backend is empty");
    assert!(
        everything(b.as_mut()).is_empty(),
        "{kind}: a new backend is empty"
    );
    let mut model = Model::new();
    let entries: [(&[u8], &[u8]); 8] = [
        (b"", b"empty key"),
        (b"a", b""),
        (b"ab", b"2"),
        (b"abc", b"3"),
        (&[0x00], b"zero"),
        (&[0xff], b"ff"),
        (&[0xff, 0x00], b"ff00"),
        (&[0x61, 0xff, 0xff], b"a-ff-ff"),
    ];
    for (k, v) in entries {
        b.put(k, v).unwrap();
        model.insert(k.to_vec(), v.to_vec());
    }
    assert_matches(b.as_mut(), &model, "after puts");
    assert_eq!(
        b.get(b"a").unwrap(),
        Some(Vec::new()),
        "{kind}: empty value"
    );
    b.put(b"ab", b"overwritten, and longer").unwrap();
    model.insert(b"ab".to_vec(), b"overwritten, and longer".to_vec());
    b.put(b"abc", b"").unwrap();
    model.insert(b"abc".to_vec(), Vec::new());
    b.delete(b"a").unwrap();
    model.remove(&b"a"[..]);
    b.delete(b"never there").unwrap();
    b.delete(b"").unwrap();
    model.remove(&b""[..]);
    assert_matches(b.as_mut(), &model, "after overwrites and deletes");
    assert_eq!(b.get(b"a").unwrap(), None, "{kind}: a deleted key is gone");
    b.put(b"a", b"back").unwrap();
    model.insert(b"a".to_vec(), b"back".to_vec());
    assert_matches(b.as_mut(), &model, "after putting a deleted key back");
    let big = vec![0xabu8; 1 << 20];
    b.put(b"big", &big).unwrap();
    assert_eq!(b.get(b"big").unwrap(), Some(big), "{kind}: a 1 MiB value");
}

/// `scan`: key order, `start` included, `end` excluded, early stop, empty and inverted
/// ranges (no entries, no error).
pub fn check_scan(factory: &dyn KvBackendFactory, dir: &Path) {
    let mut b = create(factory, dir, "db");
    let kind = factory.kind();
    let mut model = Model::new();
    // Inserted out of order.
    for i in (0..200u32).rev().step_by(3).chain((0..200u32).step_by(3)) {
        let k = (i * 7 % 200).to_be_bytes().to_vec();
        let v = format!("v{i}").into_bytes();
        b.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    assert_matches(b.as_mut(), &model, "after unordered puts");
    let bounds: Vec<Vec<u8>> = vec![
        vec![],
        0u32.to_be_bytes().to_vec(),
        7u32.to_be_bytes().to_vec(),
        vec![0, 0, 0, 7, 0],
        50u32.to_be_bytes().to_vec(),
        vec![0, 0, 0],
        vec![0, 0, 0, 199],
        vec![0, 0, 0, 200],
        vec![0xff],
    ];
    for s in &bounds {
        for e in &bounds {
            let got = scan_all(b.as_mut(), s, e);
            assert_eq!(
                got,
                model_range(&model, s, e),
                "{kind}: scan [{s:?}, {e:?})"
            );
        }
    }
    // Early stop: the callback sees exactly as many entries as it accepted, plus the one
    // it refused.
    for stop_after in [0usize, 1, 5, 66] {
        let mut seen = Vec::new();
        b.scan(&[], &[0xff], &mut |k, _| {
            seen.push(k.to_vec());
            seen.len() <= stop_after
        })
        .unwrap();
        let want: Vec<Vec<u8>> = model.keys().take(stop_after + 1).cloned().collect();
        assert_eq!(seen, want, "{kind}: scan stopping after {stop_after}");
    }
}

/// `delete_range`: exact bounds, ranges of a few and of many entries (RocksDB deletes
/// those differently), empty and inverted ranges, and writes into a deleted range.
pub fn check_delete_range(factory: &dyn KvBackendFactory, dir: &Path) {
    let mut b = create(factory, dir, "db");
    let mut model = Model::new();
    for i in 0..1_000u32 {
        let k = i.to_be_bytes().to_vec();
        b.put(&k, &k).unwrap();
        model.insert(k.clone(), k);
    }
    let delete = |b: &mut dyn KvBackend, model: &mut Model, s: u32, e: u32, what: &str| {
        let (s, e) = (s.to_be_bytes(), e.to_be_bytes());
        b.delete_range(&s, &e).unwrap();
        for k in model_range(model, &s, &e) {
            model.remove(&k.0);
        }
        assert_matches(b, model, what);
    };
    delete(b.as_mut(), &mut model, 10, 13, "after deleting 3 entries");
    delete(
        b.as_mut(),
        &mut model,
        100,
        600,
        "after deleting 500 entries",
    );
    delete(b.as_mut(), &mut model, 5, 5, "after an empty delete_range");
    delete(
        b.as_mut(),
        &mut model,
        900,
        800,
        "after an inverted delete_range",
    );
    delete(
        b.as_mut(),
        &mut model,
        95,
        105,
        "after deleting across a deleted range",
    );
    for i in [99u32, 100, 300, 599, 600] {
        let k = i.to_be_bytes().to_vec();
        b.put(&k, b"again").unwrap();
        model.insert(k, b"again".to_vec());
    }
    assert_matches(b.as_mut(), &model, "after writing into deleted ranges");
    // A range given by byte prefixes rather than whole keys.
    b.delete_range(&[0, 0, 3], &[0, 0, 3, 0x80]).unwrap();
    for k in model_range(&model, &[0, 0, 3], &[0, 0, 3, 0x80]) {
        model.remove(&k.0);
    }
    assert_matches(b.as_mut(), &model, "after a prefix-bounded delete_range");
    b.delete_range(&[], &[0xff]).unwrap();
    model.clear();
    assert_matches(b.as_mut(), &model, "after deleting everything");
}

/// Random `put`/`delete`/`delete_range` against a `BTreeMap`, checking `get` and random
/// range scans as it goes, then a snapshot round trip of the result.
pub fn check_random_ops(factory: &dyn KvBackendFactory, dir: &Path, seed: u64, ops: usize) {
    let kind = factory.kind();
    let mut b = create(factory, dir, "db");
    let mut model = Model::new();
    let mut rng = Rng(seed);
    for op in 0..ops {
        match rng.below(100) {
            0..=54 => {
                let (k, v) = (rng.key(), rng.value());
                b.put(&k, &v).unwrap();
                model.insert(k, v);
            }
            55..=79 => {
                let k = rng.key();
                b.delete(&k).unwrap();
                model.remove(&k);
            }
            80..=84 => {
                let (s, e) = (rng.key(), rng.key());
                b.delete_range(&s, &e).unwrap();
                for (k, _) in model_range(&model, &s, &e) {
                    model.remove(&k);
                }
            }
            85..=92 => {
                let k = rng.key();
                assert_eq!(
                    b.get(&k).unwrap().as_ref(),
                    model.get(&k),
                    "{kind}: seed {seed} op {op}: get({k:?})"
                );
            }
            _ => {
                let (s, e) = (rng.key(), rng.key());
                assert_eq!(
                    scan_all(b.as_mut(), &s, &e),
                    model_range(&model, &s, &e),
                    "{kind}: seed {seed} op {op}: scan [{s:?}, {e:?})"
                );
            }
        }
    }
    assert_matches(b.as_mut(), &model, &format!("seed {seed}, after {ops} ops"));
    let (_, files) = snapshot_and_download(b.as_mut(), dir, "snap");
    let mut r = restore(factory, dir, "restored", &files);
    assert_matches(r.as_mut(), &model, &format!("seed {seed}, restored"));
}

/// A snapshot holds exactly the writes made before the call: restored, it equals the
/// model at that moment, whatever the original did after (puts, overwrites, deletes,
/// range deletes); the original keeps its later writes; a restored backend is writable
/// and independent of the original; snapshots chain (restore, write, snapshot, restore);
/// an empty backend round-trips.
pub fn check_snapshot_round_trip(factory: &dyn KvBackendFactory, dir: &Path) {
    let kind = factory.kind();
    let mut empty = create(factory, dir, "empty");
    let (_, files) = snapshot_and_download(empty.as_mut(), dir, "empty-snap");
    let mut r = restore(factory, dir, "empty-restored", &files);
    assert_matches(r.as_mut(), &Model::new(), "an empty backend restored");

    let mut b = create(factory, dir, "db");
    let mut before = Model::new();
    for i in 0..3_000u32 {
        let k = format!("key-{:05}", i * 13 % 3_000).into_bytes();
        let v = format!("value-{i}-{}", "x".repeat((i % 50) as usize)).into_bytes();
        b.put(&k, &v).unwrap();
        before.insert(k, v);
    }
    for i in (0..3_000u32).step_by(7) {
        let k = format!("key-{i:05}").into_bytes();
        b.delete(&k).unwrap();
        before.remove(&k);
    }
    let (snap, files) = snapshot_and_download(b.as_mut(), dir, "snap1");
    assert_eq!(snap.kind, kind);

    // After the snapshot call: every kind of write, touching pre-snapshot keys.
    let mut after = before.clone();
    for i in 0..500u32 {
        let k = format!("key-{:05}", i * 5).into_bytes();
        b.put(&k, b"written after the snapshot").unwrap();
        after.insert(k, b"written after the snapshot".to_vec());
    }
    b.put(b"new-after", b"x").unwrap();
    after.insert(b"new-after".to_vec(), b"x".to_vec());
    b.delete(b"key-00001").unwrap();
    after.remove(&b"key-00001"[..]);
    b.delete_range(b"key-01000", b"key-02000").unwrap();
    for (k, _) in model_range(&after, b"key-01000", b"key-02000") {
        after.remove(&k);
    }
    assert_matches(b.as_mut(), &after, "the original after the snapshot");

    let mut r = restore(factory, dir, "restored1", &files);
    assert_matches(
        r.as_mut(),
        &before,
        "restored: exactly the pre-snapshot writes",
    );
    assert_matches(
        b.as_mut(),
        &after,
        "the original, unaffected by the restore",
    );

    // The restored backend is writable, and independent of the original.
    let mut r_model = before.clone();
    r.put(b"restored-only", b"1").unwrap();
    r_model.insert(b"restored-only".to_vec(), b"1".to_vec());
    r.delete_range(b"key-00000", b"key-00500").unwrap();
    for (k, _) in model_range(&r_model, b"key-00000", b"key-00500") {
        r_model.remove(&k);
    }
    assert_matches(r.as_mut(), &r_model, "restored, then written");
    assert_matches(
        b.as_mut(),
        &after,
        "the original, unaffected by the restored one",
    );

    // A chain: the restored backend's own snapshot, restored again.
    let (_, files2) = snapshot_and_download(r.as_mut(), dir, "snap2");
    r.put(b"after-snap2", b"no").unwrap();
    let mut r2 = restore(factory, dir, "restored2", &files2);
    assert_matches(
        r2.as_mut(),
        &r_model,
        "restored from a restored backend's snapshot",
    );
    // Restoring the first snapshot again still gives its state.
    let mut r3 = restore(factory, dir, "restored1-again", &files);
    assert_matches(
        r3.as_mut(),
        &before,
        "the first snapshot restored a second time",
    );
}

/// Files listed as immutable keep their contents: a name listed as immutable by two
/// snapshots of one lineage (a backend, the backends restored from its snapshots, and so
/// on) has the same bytes in both. Checked over snapshots of an original, and of a backend
/// restored from it that keeps writing, and of a second backend restored from the same
/// snapshot (a sibling lineage that must not reuse names with other contents).
pub fn check_immutable_files(factory: &dyn KvBackendFactory, dir: &Path) {
    let kind = factory.kind();
    // name -> contents, over every snapshot taken.
    let mut seen: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut record = |files: &[(String, PathBuf)], snap: &BackendSnapshot, when: &str| {
        for f in snap.files.iter().filter(|f| f.immutable) {
            let (_, path) = files
                .iter()
                .find(|(n, _)| *n == f.name)
                .expect("downloaded");
            let bytes = std::fs::read(path).unwrap();
            if let Some(old) = seen.get(&f.name) {
                assert!(
                    *old == bytes,
                    "{kind}: {when}: immutable file '{}' changed contents",
                    f.name
                );
            } else {
                seen.insert(f.name.clone(), bytes);
            }
        }
    };
    let write = |b: &mut dyn KvBackend, round: u32, tag: &str| {
        for i in 0..400u32 {
            let k = format!("k{:04}", (i * 31 + round * 17) % 1_000).into_bytes();
            b.put(&k, format!("{tag}-{round}-{i}").as_bytes()).unwrap();
        }
    };
    let mut b = create(factory, dir, "db");
    let mut snapshots = Vec::new();
    for round in 0..3 {
        write(b.as_mut(), round, "original");
        let (snap, files) = snapshot_and_download(b.as_mut(), dir, &format!("orig-{round}"));
        record(&files, &snap, &format!("original, snapshot {round}"));
        snapshots.push(files);
    }
    let last = snapshots.pop().expect("three snapshots");
    for sibling in ["a", "b"] {
        let mut r = restore(factory, dir, &format!("restored-{sibling}"), &last);
        for round in 3..6 {
            write(r.as_mut(), round, sibling);
            let name = format!("{sibling}-{round}");
            let (snap, files) = snapshot_and_download(r.as_mut(), dir, &name);
            record(
                &files,
                &snap,
                &format!("restored {sibling}, snapshot {round}"),
            );
        }
    }
    // The original keeps writing after its snapshots were restored elsewhere.
    write(b.as_mut(), 9, "original-later");
    let (snap, files) = snapshot_and_download(b.as_mut(), dir, "orig-later");
    record(&files, &snap, "original, after the restores");
}

/// Restoring what is not a whole snapshot of this kind fails with an error (no panic):
/// a listed file that is not there, a file of another name.
pub fn check_restore_errors(factory: &dyn KvBackendFactory, dir: &Path) {
    let kind = factory.kind();
    let mut b = create(factory, dir, "db");
    b.put(b"k", b"v").unwrap();
    let (_, files) = snapshot_and_download(b.as_mut(), dir, "snap");
    let mut missing = files.clone();
    missing[0].1 = dir.join("no-such-file");
    match factory.restore(&dir.join("r-missing"), &missing) {
        Ok(_) => panic!("{kind}: restore with a missing file succeeded"),
        Err(e) => assert!(!e.0.is_empty(), "{kind}: an error says what failed"),
    }
    let mut foreign = files.clone();
    foreign.push(("not-a-state-file.txt".into(), files[0].1.clone()));
    assert!(
        factory.restore(&dir.join("r-foreign"), &foreign).is_err(),
        "{kind}: restore with a foreign file name succeeded"
    );
}

/// The number of key groups of every check's keyed state.
const MAX_PARALLELISM: usize = 128;

/// A keyed state store over `backend`, owning `key_groups` of [`MAX_PARALLELISM`].
fn store(backend: Box<dyn KvBackend>, key_groups: Range<usize>, clock: &Clock) -> KeyedStateStore {
    let kind = backend.kind();
    KeyedStateStore::new(backend, MAX_PARALLELISM, key_groups, clock.clone())
        .unwrap_or_else(|e| panic!("{kind}: opening a keyed state store: {e}"))
}

/// A clock the checks move by hand.
fn test_clock(start: i64) -> (Arc<AtomicI64>, Clock) {
    let now = Arc::new(AtomicI64::new(start));
    let n = now.clone();
    (now, Arc::new(move || n.load(Ordering::SeqCst)))
}

fn desc(name: &str, kind: StateKind, ttl_ms: Option<i64>) -> StateDescriptor {
    StateDescriptor {
        name: name.into(),
        kind,
        ttl_ms,
    }
}

/// The keyed-state model: per key, a value, a map and a list.
#[derive(Default, Clone, PartialEq, Debug)]
struct KeyedModel {
    values: BTreeMap<Vec<u8>, Vec<u8>>,
    maps: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>,
    lists: BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
}

/// Value, map and list state through [`KeyedStateStore`], per key (the empty key too),
/// against a model, before and after a snapshot round trip; declaration rules.
pub fn check_keyed_state(factory: &dyn KvBackendFactory, dir: &Path) {
    let kind = factory.kind();
    let (_, clock) = test_clock(1_000);
    let mut s = store(create(factory, dir, "db"), 0..MAX_PARALLELISM, &clock);
    let value = s.declare(desc("count", StateKind::Value, None)).unwrap();
    let map = s.declare(desc("by-page", StateKind::Map, None)).unwrap();
    let list = s.declare(desc("events", StateKind::List, None)).unwrap();
    // Declaring is idempotent; a conflicting or bad declaration is an error.
    assert_eq!(
        s.declare(desc("count", StateKind::Value, None)).unwrap(),
        value
    );
    assert!(s.declare(desc("count", StateKind::Map, None)).is_err());
    assert!(s.declare(desc("", StateKind::Map, None)).is_err());
    assert!(s.declare(desc("t", StateKind::Value, Some(0))).is_err());
    // A handle used as the wrong kind is an error.
    s.set_current_key(b"k");
    assert!(s.map_get(value, b"x").is_err());
    assert!(s.value_get(list).is_err());
    assert!(s.value_get(999).is_err());

    let keys: Vec<Vec<u8>> = std::iter::once(Vec::new())
        .chain((0..60u32).map(|i| format!("user-{i}").into_bytes()))
        .chain([vec![0xff; 3], vec![0x00]])
        .collect();
    let mut model = KeyedModel::default();
    let mut rng = Rng(42);
    for _ in 0..3_000 {
        let key = keys[rng.below(keys.len() as u64) as usize].clone();
        s.set_current_key(&key);
        match rng.below(10) {
            0 | 1 => {
                let v = rng.value();
                s.value_set(value, &v).unwrap();
                model.values.insert(key, v);
            }
            2 => {
                s.clear(value).unwrap();
                model.values.remove(&key);
            }
            3 | 4 => {
                let (uk, v) = (rng.key(), rng.value());
                s.map_put(map, &uk, &v).unwrap();
                model.maps.entry(key).or_default().insert(uk, v);
            }
            5 => {
                let uk = rng.key();
                s.map_remove(map, &uk).unwrap();
                if let Some(m) = model.maps.get_mut(&key) {
                    m.remove(&uk);
                }
            }
            6 => {
                if rng.below(4) == 0 {
                    s.clear(map).unwrap();
                    model.maps.remove(&key);
                } else {
                    s.clear(list).unwrap();
                    model.lists.remove(&key);
                }
            }
            7 | 8 => {
                let v = rng.value();
                s.list_append(list, &v).unwrap();
                model.lists.entry(key).or_default().push(v);
            }
            _ => {
                let n = rng.below(3) as usize;
                let vs: Vec<Vec<u8>> = (0..n).map(|_| rng.value()).collect();
                let refs: Vec<&[u8]> = vs.iter().map(|v| v.as_slice()).collect();
                s.list_set(list, &refs).unwrap();
                model.lists.insert(key, vs);
            }
        }
    }
    let verify = |s: &mut KeyedStateStore, when: &str| {
        for key in &keys {
            s.set_current_key(key);
            assert_eq!(
                s.value_get(value).unwrap().as_ref(),
                model.values.get(key),
                "{kind}: {when}: value of key {key:?}"
            );
            let want_map: Vec<(Vec<u8>, Vec<u8>)> = model
                .maps
                .get(key)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            assert_eq!(
                s.map_entries(map).unwrap(),
                want_map,
                "{kind}: {when}: map entries of key {key:?}, in user-key order"
            );
            for (uk, v) in &want_map {
                assert_eq!(s.map_get(map, uk).unwrap().as_ref(), Some(v));
            }
            assert_eq!(
                s.map_get(map, b"never-a-user-key").unwrap(),
                None,
                "{kind}: {when}"
            );
            let want_list: Vec<Vec<u8>> = model
                .lists
                .get(key)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                // An empty list is no list.
                .collect();
            assert_eq!(
                s.list_get(list).unwrap(),
                want_list,
                "{kind}: {when}: list of key {key:?}"
            );
        }
    };
    verify(&mut s, "live");
    let (_, files) = snapshot_and_download(s.backend_mut(), dir, "snap");
    // Changes after the snapshot are not in it.
    s.set_current_key(&keys[1]);
    s.value_set(value, b"after the snapshot").unwrap();
    let mut r = store(
        restore(factory, dir, "restored", &files),
        0..MAX_PARALLELISM,
        &clock,
    );
    for d in [
        desc("count", StateKind::Value, None),
        desc("by-page", StateKind::Map, None),
        desc("events", StateKind::List, None),
    ] {
        r.declare(d).unwrap();
    }
    verify(&mut r, "restored");
}

/// Counts the backend's entries of user states (not timers).
fn raw_state_entries(b: &mut dyn KvBackend) -> usize {
    everything(b)
        .iter()
        .filter(|(k, _)| parse(k).is_some_and(|(_, id, _, _)| id < 0xfff0))
        .count()
}

/// Time-to-live: an entry is visible until its last write's time plus the TTL and never
/// after; list elements expire one by one; overwriting renews; `cleanup_expired` removes
/// expired entries from the backend (in budgeted steps) and leaves live ones and states
/// without TTL alone; expired state is not returned after a snapshot round trip either.
pub fn check_ttl(factory: &dyn KvBackendFactory, dir: &Path) {
    let kind = factory.kind();
    let (now, clock) = test_clock(10_000);
    let mut s = store(create(factory, dir, "db"), 0..MAX_PARALLELISM, &clock);
    let v = s.declare(desc("v", StateKind::Value, Some(100))).unwrap();
    let m = s.declare(desc("m", StateKind::Map, Some(100))).unwrap();
    let l = s.declare(desc("l", StateKind::List, Some(100))).unwrap();
    let forever = s.declare(desc("forever", StateKind::Value, None)).unwrap();
    let set = |t: i64| now.store(t, Ordering::SeqCst);

    // Value: written at 10_000, lives while now < 10_100.
    s.set_current_key(b"a");
    s.value_set(v, b"va").unwrap();
    s.value_set(forever, b"kept").unwrap();
    set(10_099);
    assert_eq!(
        s.value_get(v).unwrap(),
        Some(b"va".to_vec()),
        "{kind}: 1 ms before expiry"
    );
    set(10_100);
    assert_eq!(s.value_get(v).unwrap(), None, "{kind}: at expiry");
    set(10_000);
    assert_eq!(
        s.value_get(v).unwrap(),
        None,
        "{kind}: an expired value is removed when touched"
    );
    // Overwriting renews.
    s.value_set(v, b"v1").unwrap();
    set(10_050);
    s.value_set(v, b"v2").unwrap();
    set(10_140);
    assert_eq!(
        s.value_get(v).unwrap(),
        Some(b"v2".to_vec()),
        "{kind}: renewed by a write"
    );
    set(10_150);
    assert_eq!(s.value_get(v).unwrap(), None);

    // Map entries expire one by one.
    set(20_000);
    s.map_put(m, b"x", b"1").unwrap();
    set(20_050);
    s.map_put(m, b"y", b"2").unwrap();
    set(20_100);
    assert_eq!(s.map_get(m, b"x").unwrap(), None);
    assert_eq!(
        s.map_entries(m).unwrap(),
        vec![(b"y".to_vec(), b"2".to_vec())],
        "{kind}: map entry x expired, y lives"
    );
    set(20_150);
    assert!(s.map_entries(m).unwrap().is_empty());

    // List elements expire one by one, in order.
    set(30_000);
    s.list_append(l, b"e0").unwrap();
    set(30_030);
    s.list_append(l, b"e1").unwrap();
    set(30_060);
    s.list_append(l, b"e2").unwrap();
    set(30_099);
    assert_eq!(
        s.list_get(l).unwrap(),
        vec![b"e0".to_vec(), b"e1".to_vec(), b"e2".to_vec()]
    );
    set(30_100);
    assert_eq!(
        s.list_get(l).unwrap(),
        vec![b"e1".to_vec(), b"e2".to_vec()],
        "{kind}: e0 expired"
    );
    set(30_159);
    assert_eq!(
        s.list_get(l).unwrap(),
        vec![b"e2".to_vec()],
        "{kind}: e1 expired"
    );
    set(30_160);
    assert!(
        s.list_get(l).unwrap().is_empty(),
        "{kind}: every element expired"
    );
    // list_set writes every element fresh.
    s.list_set(l, &[b"s0", b"s1"]).unwrap();
    set(30_259);
    assert_eq!(s.list_get(l).unwrap().len(), 2);
    set(30_260);
    assert!(s.list_get(l).unwrap().is_empty());
    assert_eq!(
        s.value_get(forever).unwrap(),
        Some(b"kept".to_vec()),
        "{kind}: no TTL, no expiry"
    );

    // Background cleanup: many keys, half written early. Expected survivors are computed
    // from the write times, not read back.
    set(40_000);
    let mut live_keys = BTreeSet::new();
    for i in 0..300u32 {
        let key = format!("key-{i}").into_bytes();
        set(if i % 2 == 0 { 40_000 } else { 40_060 });
        s.set_current_key(&key);
        s.value_set(v, b"x").unwrap();
        s.map_put(m, b"a", b"x").unwrap();
        s.map_put(m, b"b", b"x").unwrap();
        s.list_append(l, b"old").unwrap();
        s.value_set(forever, b"x").unwrap();
        if i % 2 == 1 {
            live_keys.insert(key);
        }
    }
    // The even keys' list gets a younger element too, so its list is rewritten, not removed.
    set(40_070);
    for i in (0..300u32).step_by(2) {
        s.set_current_key(format!("key-{i}").as_bytes());
        s.list_append(l, b"young").unwrap();
    }
    set(40_120); // even keys' entries (expiry 40_100) expired, odd (40_160) live
    let before = raw_state_entries(s.backend_mut());
    let mut cleaned = 0;
    let mut calls = 0;
    loop {
        let n = s.cleanup_expired(50).unwrap();
        cleaned += n;
        calls += 1;
        if n == 0 && calls > 2_000 / 50 {
            break;
        }
    }
    // Even keys: the value and map entries a and b removed (3 entries), the list
    // rewritten without its expired element (1). Key "a" has nothing left to expire.
    assert_eq!(cleaned, 150 * 4, "{kind}: entries cleaned");
    let after = raw_state_entries(s.backend_mut());
    assert_eq!(
        after,
        before - 150 * 3,
        "{kind}: cleanup removed the expired entries from the backend"
    );
    for i in 0..300u32 {
        let key = format!("key-{i}").into_bytes();
        s.set_current_key(&key);
        let live = live_keys.contains(&key);
        assert_eq!(
            s.value_get(v).unwrap().is_some(),
            live,
            "{kind}: value of key-{i}"
        );
        assert_eq!(s.map_entries(m).unwrap().len(), if live { 2 } else { 0 });
        let want: Vec<Vec<u8>> = if live {
            vec![b"old".to_vec()]
        } else {
            vec![b"young".to_vec()]
        };
        assert_eq!(s.list_get(l).unwrap(), want, "{kind}: list of key-{i}");
        assert_eq!(s.value_get(forever).unwrap(), Some(b"x".to_vec()));
    }

    // Expired entries are not returned after a round trip either.
    let (_, files) = snapshot_and_download(s.backend_mut(), dir, "snap");
    let mut r = store(
        restore(factory, dir, "restored", &files),
        0..MAX_PARALLELISM,
        &clock,
    );
    for d in [
        desc("v", StateKind::Value, Some(100)),
        desc("m", StateKind::Map, Some(100)),
        desc("l", StateKind::List, Some(100)),
    ] {
        r.declare(d).unwrap();
    }
    set(40_159);
    for i in 0..300u32 {
        r.set_current_key(format!("key-{i}").as_bytes());
        assert_eq!(
            r.value_get(v).unwrap().is_some(),
            i % 2 == 1,
            "{kind}: restored key-{i}"
        );
    }
    set(40_160);
    for i in 0..300u32 {
        r.set_current_key(format!("key-{i}").as_bytes());
        assert_eq!(
            r.value_get(v).unwrap(),
            None,
            "{kind}: restored key-{i} after expiry"
        );
        assert!(r.map_entries(m).unwrap().is_empty());
    }
}

/// Timers: one per (key, time) however often registered; deleted ones never fire; due
/// ones fire once each, in time order then key order, at most `max` per call; both time
/// domains apart; they survive a snapshot round trip (the index is rebuilt from the
/// backend) and fire once after it, and those fired before the snapshot do not return.
pub fn check_timers(factory: &dyn KvBackendFactory, dir: &Path) {
    let kind = factory.kind();
    let (_, clock) = test_clock(0);
    let mut s = store(create(factory, dir, "db"), 0..MAX_PARALLELISM, &clock);
    let mut model: BTreeMap<TimeDomain, BTreeSet<(i64, Vec<u8>)>> = BTreeMap::new();
    let mut rng = Rng(7);
    let keys: Vec<Vec<u8>> = std::iter::once(Vec::new())
        .chain((0..40u32).map(|i| format!("k{i}").into_bytes()))
        .collect();
    for _ in 0..1_500 {
        let key = keys[rng.below(keys.len() as u64) as usize].clone();
        let domain = if rng.below(2) == 0 {
            TimeDomain::EventTime
        } else {
            TimeDomain::ProcessingTime
        };
        // Negative times too: the encoding must keep them in order.
        let time = rng.below(400) as i64 - 100;
        s.set_current_key(&key);
        if rng.below(5) == 0 {
            s.delete_timer(domain, time).unwrap();
            model.entry(domain).or_default().remove(&(time, key));
        } else {
            s.register_timer(domain, time).unwrap();
            model.entry(domain).or_default().insert((time, key));
        }
    }
    let total: usize = model.values().map(|m| m.len()).sum();
    assert_eq!(s.timer_count(), total, "{kind}: duplicates are one timer");
    let pop = |s: &mut KeyedStateStore,
               model: &mut BTreeMap<TimeDomain, BTreeSet<(i64, Vec<u8>)>>,
               domain: TimeDomain,
               time: i64,
               max: usize,
               when: &str| {
        let m = model.entry(domain).or_default();
        let want: Vec<Timer> = m
            .iter()
            .take_while(|(t, _)| *t <= time)
            .take(max)
            .map(|(t, k)| Timer {
                time: *t,
                key: k.clone(),
            })
            .collect();
        for t in &want {
            m.remove(&(t.time, t.key.clone()));
        }
        let got = s.pop_due_timers(domain, time, max).unwrap();
        assert_eq!(
            got, want,
            "{kind}: {when}: {domain:?} timers due at {time} (max {max})"
        );
        assert_eq!(
            s.next_timer(domain),
            m.first().map(|(t, _)| *t),
            "{kind}: {when}: next {domain:?} timer"
        );
    };
    pop(
        &mut s,
        &mut model,
        TimeDomain::EventTime,
        -50,
        usize::MAX,
        "first",
    );
    pop(
        &mut s,
        &mut model,
        TimeDomain::EventTime,
        100,
        7,
        "bounded by max",
    );
    pop(
        &mut s,
        &mut model,
        TimeDomain::ProcessingTime,
        0,
        usize::MAX,
        "other domain",
    );
    // Fired timers do not fire again.
    pop(
        &mut s,
        &mut model,
        TimeDomain::EventTime,
        -50,
        usize::MAX,
        "again",
    );

    let (_, files) = snapshot_and_download(s.backend_mut(), dir, "snap");
    // Timers fired after the snapshot are back in the restored store (the snapshot was
    // taken before they fired).
    let model_at_snapshot = model.clone();
    pop(
        &mut s,
        &mut model,
        TimeDomain::EventTime,
        1_000,
        usize::MAX,
        "original",
    );
    let mut model = model_at_snapshot;
    let mut r = store(
        restore(factory, dir, "restored", &files),
        0..MAX_PARALLELISM,
        &clock,
    );
    let total: usize = model.values().map(|m| m.len()).sum();
    assert_eq!(r.timer_count(), total, "{kind}: timers after restore");
    for domain in [TimeDomain::EventTime, TimeDomain::ProcessingTime] {
        assert_eq!(
            r.next_timer(domain),
            model.get(&domain).and_then(|m| m.first()).map(|(t, _)| *t),
            "{kind}: restored next {domain:?} timer"
        );
    }
    pop(
        &mut r,
        &mut model,
        TimeDomain::EventTime,
        150,
        10,
        "restored",
    );
    pop(
        &mut r,
        &mut model,
        TimeDomain::EventTime,
        i64::MAX,
        usize::MAX,
        "restored, all",
    );
    pop(
        &mut r,
        &mut model,
        TimeDomain::ProcessingTime,
        i64::MAX,
        usize::MAX,
        "restored, all",
    );
    assert_eq!(r.timer_count(), 0, "{kind}: every timer fired");
    // And none is left in the backend to come back after another restore.
    let (_, files) = snapshot_and_download(r.backend_mut(), dir, "snap-empty");
    let (_, clock) = test_clock(0);
    let r2 = store(
        restore(factory, dir, "restored2", &files),
        0..MAX_PARALLELISM,
        &clock,
    );
    assert_eq!(
        r2.timer_count(),
        0,
        "{kind}: fired timers are gone from snapshots"
    );
}

/// Key groups partition the state: every backend entry of a key lies in that key's key
/// group's key range; scanning the key ranges of the subtasks' key-group ranges (any
/// parallelism) finds each entry exactly once; a store restored for one subtask's range
/// sees its keys' state and timers.
pub fn check_key_group_ranges(factory: &dyn KvBackendFactory, dir: &Path) {
    let kind = factory.kind();
    let max_parallelism = MAX_PARALLELISM;
    let (_, clock) = test_clock(0);
    let mut s = store(create(factory, dir, "db"), 0..max_parallelism, &clock);
    let value = s.declare(desc("v", StateKind::Value, None)).unwrap();
    let map = s.declare(desc("m", StateKind::Map, None)).unwrap();
    let keys: Vec<Vec<u8>> = std::iter::once(Vec::new())
        .chain((0..500u32).map(|i| i.to_le_bytes().to_vec()))
        .collect();
    for key in &keys {
        s.set_current_key(key);
        s.value_set(value, key).unwrap();
        s.map_put(map, b"u", key).unwrap();
        s.register_timer(TimeDomain::EventTime, 5).unwrap();
    }
    // Entries per key, expected: value, map entry, timer.
    let entries = everything(s.backend_mut());
    assert_eq!(
        entries.len(),
        keys.len() * 3,
        "{kind}: three entries per key"
    );
    for (k, _) in &entries {
        let (kg, _, key, _) = parse(k).unwrap_or_else(|| panic!("{kind}: {k:?} not in layout"));
        assert_eq!(
            kg as usize,
            key_group(key, max_parallelism),
            "{kind}: entry of key {key:?} is in the key's key group"
        );
    }
    for parallelism in [1usize, 3, 7] {
        let mut found = BTreeSet::new();
        for subtask in 0..parallelism {
            let groups = key_group_range(subtask, parallelism, max_parallelism);
            let (start, end) = key_groups_range(groups.clone());
            for (k, _) in scan_all(s.backend_mut(), &start, &end) {
                let (_, _, key, _) = parse(&k).unwrap();
                assert!(
                    groups.contains(&key_group(key, max_parallelism)),
                    "{kind}: a scan of key groups {groups:?} found key {key:?}"
                );
                assert!(found.insert(k), "{kind}: an entry in two subtasks' ranges");
            }
        }
        assert_eq!(
            found.len(),
            entries.len(),
            "{kind}: p={parallelism}: every entry found"
        );
    }
    // A subtask's store over the restored state sees its keys.
    let (_, files) = snapshot_and_download(s.backend_mut(), dir, "snap");
    let groups = key_group_range(1, 3, max_parallelism);
    let mut r = store(
        restore(factory, dir, "restored", &files),
        groups.clone(),
        &clock,
    );
    let value = r.declare(desc("v", StateKind::Value, None)).unwrap();
    let owned: Vec<&Vec<u8>> = keys
        .iter()
        .filter(|k| groups.contains(&key_group(k, max_parallelism)))
        .collect();
    assert!(!owned.is_empty());
    for key in &owned {
        r.set_current_key(key);
        assert_eq!(r.value_get(value).unwrap().as_ref(), Some(*key));
    }
    let fired = r
        .pop_due_timers(TimeDomain::EventTime, 5, usize::MAX)
        .unwrap();
    let mut fired_keys: Vec<Vec<u8>> = fired.into_iter().map(|t| t.key).collect();
    fired_keys.sort();
    let mut want: Vec<Vec<u8>> = owned.into_iter().cloned().collect();
    want.sort();
    assert_eq!(
        fired_keys, want,
        "{kind}: a subtask's store fires its own key groups' timers"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::HeapKvBackendFactory;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn heap_point_ops() {
        check_point_ops(&HeapKvBackendFactory, dir().path());
    }

    #[test]
    fn heap_scan() {
        check_scan(&HeapKvBackendFactory, dir().path());
    }

    #[test]
    fn heap_delete_range() {
        check_delete_range(&HeapKvBackendFactory, dir().path());
    }

    #[test]
    fn heap_random_ops() {
        for seed in 0..4 {
            let d = dir();
            check_random_ops(&HeapKvBackendFactory, d.path(), seed, 3_000);
        }
    }

    #[test]
    fn heap_snapshot_round_trip() {
        check_snapshot_round_trip(&HeapKvBackendFactory, dir().path());
    }

    #[test]
    fn heap_immutable_files() {
        check_immutable_files(&HeapKvBackendFactory, dir().path());
    }

    #[test]
    fn heap_restore_errors() {
        check_restore_errors(&HeapKvBackendFactory, dir().path());
    }

    #[test]
    fn heap_keyed_state() {
        check_keyed_state(&HeapKvBackendFactory, dir().path());
    }

    #[test]
    fn heap_ttl() {
        check_ttl(&HeapKvBackendFactory, dir().path());
    }

    #[test]
    fn heap_timers() {
        check_timers(&HeapKvBackendFactory, dir().path());
    }

    #[test]
    fn heap_key_group_ranges() {
        check_key_group_ranges(&HeapKvBackendFactory, dir().path());
    }

    #[test]
    fn heap_check_all() {
        check_all(&HeapKvBackendFactory, dir().path());
    }
}
