//! RocksDB snapshots: incremental (unchanged SSTs keep their names), file names never
//! reused with other contents across restores, and clear errors for broken snapshots.

use sluice_core::state::{BackendSnapshot, KvBackend, KvBackendFactory};
use sluice_rocksdb::{RocksDbBackendFactory, RocksDbOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn factory() -> RocksDbBackendFactory {
    RocksDbBackendFactory::new(RocksDbOptions {
        block_cache_bytes: 4 << 20,
        write_buffer_bytes: 256 << 10,
        ..RocksDbOptions::default()
    })
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

/// A value that LZ4 does not shrink much, so SST sizes follow the data.
fn value(i: u32, version: u32) -> Vec<u8> {
    let mut x = (i as u64) << 32 | version as u64 | 1;
    (0..64)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Snapshots into `dir/name` and returns the snapshot with its files as `restore` takes
/// them (read in place: the snapshot directory stands in for the downloaded copy).
fn snapshot(
    b: &mut dyn KvBackend,
    dir: &Path,
    name: &str,
) -> (BackendSnapshot, Vec<(String, PathBuf)>) {
    let snap = b.snapshot(&dir.join(name)).unwrap();
    let files = snap
        .files
        .iter()
        .map(|f| (f.name.clone(), f.path.clone()))
        .collect();
    (snap, files)
}

fn ssts(snap: &BackendSnapshot) -> BTreeMap<String, u64> {
    snap.files
        .iter()
        .filter(|f| f.immutable)
        .map(|f| (f.name.clone(), std::fs::metadata(&f.path).unwrap().len()))
        .collect()
}

/// The RocksDB file number of an SST's snapshot name, `<lineage>-000012.sst` -> 12.
fn file_number(name: &str) -> u64 {
    let stem = name.strip_suffix(".sst").unwrap();
    stem.rsplit_once('-').unwrap().1.parse().unwrap()
}

fn load(b: &mut dyn KvBackend, n: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    for i in 0..n {
        b.put(&key(i), &value(i, 0)).unwrap();
        model.insert(key(i), value(i, 0));
    }
    model
}

fn assert_holds(b: &mut dyn KvBackend, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let mut got = Vec::new();
    b.scan(&[], &[0xff], &mut |k, v| {
        got.push((k.to_vec(), v.to_vec()));
        true
    })
    .unwrap();
    assert_eq!(got.len(), model.len());
    assert!(
        got.iter()
            .zip(model)
            .all(|((k, v), (mk, mv))| k == mk && v == mv),
        "entries differ from the model"
    );
}

#[test]
fn snapshots_are_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let f = factory();
    let mut b = f.create_backend(&dir.path().join("db")).unwrap();
    let mut model = load(&mut b, 60_000);
    // Everything in the last level and no compaction pending, so the files stay put: the
    // 100 changes below make one new SST, below RocksDB's threshold for compacting.
    b.compact_all().unwrap();
    let (s1, _) = snapshot(&mut b, dir.path(), "snap1");
    let sst1 = ssts(&s1);
    assert!(sst1.len() >= 3, "the state spans several SSTs: {sst1:?}");
    for f in &s1.files {
        assert_eq!(f.immutable, f.name.ends_with(".sst"), "{}", f.name);
    }
    assert!(s1.files.iter().any(|f| f.name == "CURRENT" && !f.immutable));
    assert!(
        s1.files
            .iter()
            .any(|f| f.name.starts_with("MANIFEST-") && !f.immutable)
    );

    // A little more: 100 keys of 60,000 changed.
    for i in (0..60_000).step_by(600) {
        b.put(&key(i), &value(i, 1)).unwrap();
        model.insert(key(i), value(i, 1));
    }
    let (s2, files2) = snapshot(&mut b, dir.path(), "snap2");
    let sst2 = ssts(&s2);
    let reused: Vec<&String> = sst2.keys().filter(|n| sst1.contains_key(*n)).collect();
    let new_bytes: u64 = sst2
        .iter()
        .filter(|(n, _)| !sst1.contains_key(*n))
        .map(|(_, len)| len)
        .sum();
    let total_bytes: u64 = sst2.values().sum();
    println!(
        "snapshot 1: {} SSTs; snapshot 2: {} SSTs, {} of them in snapshot 1; new SST bytes {} of {}",
        sst1.len(),
        sst2.len(),
        reused.len(),
        new_bytes,
        total_bytes
    );
    assert!(
        reused.len() * 2 > sst2.len(),
        "most of snapshot 2's SSTs are snapshot 1's: {sst1:?} / {sst2:?}"
    );
    assert!(
        new_bytes * 10 < total_bytes,
        "snapshot 2 adds little: {new_bytes} of {total_bytes} bytes"
    );
    // Same name, same bytes.
    for n in reused {
        let p1 = &s1.files.iter().find(|f| f.name == *n).unwrap().path;
        let p2 = &s2.files.iter().find(|f| f.name == *n).unwrap().path;
        assert_eq!(
            std::fs::read(p1).unwrap(),
            std::fs::read(p2).unwrap(),
            "{n}"
        );
    }

    // Snapshot 1's directory removed (uploaded): snapshot 2's files still restore.
    std::fs::remove_dir_all(dir.path().join("snap1")).unwrap();
    let mut r = f.restore(&dir.path().join("restored"), &files2).unwrap();
    assert_holds(r.as_mut(), &model);
}

#[test]
fn restored_databases_never_reuse_an_sst_name_for_other_contents() {
    let dir = tempfile::tempdir().unwrap();
    let f = factory();
    let mut b = f.create_backend(&dir.path().join("db")).unwrap();
    let model = load(&mut b, 20_000);
    b.compact_all().unwrap();
    let (s1, files1) = snapshot(&mut b, dir.path(), "snap1");
    let restored_ssts = ssts(&s1);
    let restored_max = restored_ssts.keys().map(|n| file_number(n)).max().unwrap();

    // Two databases restored from one snapshot, each writing its own data, and the
    // original writing on too.
    let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut check = |snap: &BackendSnapshot, who: &str| {
        for f in snap.files.iter().filter(|f| f.immutable) {
            let bytes = std::fs::read(&f.path).unwrap();
            if let Some(old) = all.insert(f.name.clone(), bytes.clone()) {
                assert!(
                    old == bytes,
                    "{who}: {} was seen with other contents",
                    f.name
                );
            }
        }
    };
    check(&s1, "original");
    let mut lineages = BTreeSet::new();
    for (n, who) in ["a", "b"].into_iter().enumerate() {
        let mut r = f
            .restore(&dir.path().join(format!("restored-{who}")), &files1)
            .unwrap();
        let mut model = model.clone();
        for round in 0..3u32 {
            for i in 0..3_000 {
                let k = key(i * 7 + round);
                let v = value(i, 10 + round + 100 * n as u32);
                r.put(&k, &v).unwrap();
                model.insert(k, v);
            }
            let (s, files) = snapshot(r.as_mut(), dir.path(), &format!("{who}-{round}"));
            check(&s, who);
            let mine = ssts(&s);
            // Restored SSTs still in use keep their names; new ones are numbered after
            // every restored one and carry this database's lineage.
            for name in mine.keys() {
                if !restored_ssts.contains_key(name) {
                    assert!(
                        file_number(name) > restored_max,
                        "{who}: new SST {name} numbered after the restored ones ({restored_max})"
                    );
                    lineages.insert((who, name.split_once('-').unwrap().0.to_string()));
                }
            }
            if round == 0 {
                let kept = mine
                    .keys()
                    .filter(|n| restored_ssts.contains_key(*n))
                    .count();
                assert!(
                    kept * 2 > restored_ssts.len(),
                    "{who}: the first snapshot after a restore reuses the restored SSTs"
                );
            }
            // And each snapshot restores to exactly its database's state.
            let mut again = f
                .restore(&dir.path().join(format!("again-{who}-{round}")), &files)
                .unwrap();
            assert_holds(again.as_mut(), &model);
        }
    }
    for i in 0..3_000 {
        b.put(&key(i * 11), b"original, later").unwrap();
    }
    let (s, _) = snapshot(&mut b, dir.path(), "orig-later");
    check(&s, "original");
    let per_db: BTreeSet<&str> = lineages.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        per_db.len(),
        2,
        "each restored database has its own lineage: {lineages:?}"
    );
}

#[test]
fn a_snapshot_holds_unflushed_writes_and_not_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let f = RocksDbBackendFactory::default(); // 16 MiB memtable: nothing flushed on its own
    let mut b = f.create(&dir.path().join("db")).unwrap();
    b.put(b"k1", b"before").unwrap();
    let (_, files) = snapshot(b.as_mut(), dir.path(), "snap");
    b.put(b"k1", b"after").unwrap();
    b.put(b"k2", b"after").unwrap();
    let mut r = f.restore(&dir.path().join("r"), &files).unwrap();
    assert_eq!(r.get(b"k1").unwrap(), Some(b"before".to_vec()));
    assert_eq!(r.get(b"k2").unwrap(), None);
    assert_eq!(b.get(b"k1").unwrap(), Some(b"after".to_vec()));
}

#[test]
fn approximate_bytes_follows_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let f = factory();
    let mut b = f.create(&dir.path().join("db")).unwrap();
    assert!(b.approximate_bytes() < 100_000);
    load(b.as_mut(), 50_000); // ~ 50,000 * (12 + 64) bytes
    let n = b.approximate_bytes();
    assert!((2_000_000..20_000_000).contains(&n), "{n}");
}

fn restore_err(files: &[(String, PathBuf)], dir: &Path) -> String {
    match factory().restore(dir, files) {
        Ok(_) => panic!("restore into {} succeeded", dir.display()),
        Err(e) => {
            println!("restore error: {}", e.0);
            e.0
        }
    }
}

#[test]
fn broken_snapshots_fail_with_errors_naming_the_directory_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = factory();
    let mut b = f.create(&dir.path().join("db")).unwrap();
    load(b.as_mut(), 20_000);
    let (snap, files) = snapshot(b.as_mut(), dir.path(), "snap");
    let sst = snap.files.iter().find(|f| f.immutable).unwrap();
    let local = format!(
        "{}.sst",
        sst.name
            .rsplit_once('-')
            .unwrap()
            .1
            .trim_end_matches(".sst")
    );

    // An SST that the snapshot lists is not where it should be.
    let mut missing = files.clone();
    let i = missing.iter().position(|(n, _)| *n == sst.name).unwrap();
    missing[i].1 = dir.path().join("nowhere.sst");
    let target = dir.path().join("r1");
    let e = restore_err(&missing, &target);
    assert!(
        e.contains(&target.display().to_string())
            && e.contains(&sst.name)
            && e.contains("nowhere.sst"),
        "{e}"
    );

    // An SST left out of the list: RocksDB's MANIFEST still needs it.
    let left_out: Vec<_> = files
        .iter()
        .filter(|(n, _)| *n != sst.name)
        .cloned()
        .collect();
    let target = dir.path().join("r2");
    let e = restore_err(&left_out, &target);
    assert!(
        e.contains(&target.display().to_string()) && e.contains(&local),
        "{e}"
    );

    // A truncated SST.
    let bad = dir.path().join("truncated.sst");
    let bytes = std::fs::read(&sst.path).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let mut truncated = files.clone();
    truncated[i].1 = bad;
    let target = dir.path().join("r3");
    let e = restore_err(&truncated, &target);
    assert!(
        e.contains(&target.display().to_string()) && e.contains(&local) && e.contains(&sst.name),
        "{e}"
    );

    // A garbage MANIFEST.
    let (m, _) = files
        .iter()
        .find(|(n, _)| n.starts_with("MANIFEST-"))
        .unwrap()
        .clone();
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"this is not a MANIFEST").unwrap();
    let broken: Vec<_> = files
        .iter()
        .map(|(n, p)| (n.clone(), if *n == m { garbage.clone() } else { p.clone() }))
        .collect();
    let target = dir.path().join("r4");
    let e = restore_err(&broken, &target);
    assert!(e.contains(&target.display().to_string()), "{e}");

    // No CURRENT; a heap snapshot's file.
    let no_current: Vec<_> = files
        .iter()
        .filter(|(n, _)| n != "CURRENT")
        .cloned()
        .collect();
    let e = restore_err(&no_current, &dir.path().join("r5"));
    assert!(e.contains("CURRENT"), "{e}");
    let heap = vec![("heap.kv".to_string(), garbage.clone())];
    let e = restore_err(&heap, &dir.path().join("r6"));
    assert!(
        e.contains("heap.kv") && e.contains("another backend"),
        "{e}"
    );

    // The state is still all there when nothing is broken.
    let mut r = f.restore(&dir.path().join("r-ok"), &files).unwrap();
    assert_eq!(r.get(&key(19_999)).unwrap(), Some(value(19_999, 0)));
}

#[test]
fn a_backend_never_opens_a_directory_with_files_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = factory();
    let db = dir.path().join("db");
    let mut b = f.create(&db).unwrap();
    b.put(b"k", b"v").unwrap();
    drop(b);
    let e = match f.create(&db) {
        Ok(_) => panic!("created over an existing database"),
        Err(e) => e.0,
    };
    assert!(
        e.contains("not empty") && e.contains(&db.display().to_string()),
        "{e}"
    );
}

#[test]
fn a_corrupted_block_is_an_error_on_read_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = RocksDbBackendFactory::new(RocksDbOptions {
        lz4: false,
        ..RocksDbOptions::default()
    });
    let mut b = f.create(&dir.path().join("db")).unwrap();
    load(b.as_mut(), 2_000);
    let (snap, files) = snapshot(b.as_mut(), dir.path(), "snap");
    let sst = snap.files.iter().find(|f| f.immutable).unwrap();
    let mut bytes = std::fs::read(&sst.path).unwrap();
    bytes[100] ^= 0x55; // inside the first data block
    let bad = dir.path().join("flipped.sst");
    std::fs::write(&bad, &bytes).unwrap();
    let files: Vec<_> = files
        .into_iter()
        .map(|(n, p)| {
            if n == sst.name {
                (n, bad.clone())
            } else {
                (n, p)
            }
        })
        .collect();
    let target = dir.path().join("r");
    // Opening checks sizes, not block checksums; reading the block does.
    let e = match f.restore(&target, &files) {
        Err(e) => e.0,
        Ok(mut r) => {
            let mut err = None;
            if let Err(e) = r.scan(&[], &[0xff], &mut |_, _| true) {
                err = Some(e.0);
            }
            err.expect("reading a corrupted block fails")
        }
    };
    assert!(e.contains(&target.display().to_string()), "{e}");
    assert!(
        e.to_lowercase().contains("corrupt") || e.contains("checksum"),
        "{e}"
    );
}
