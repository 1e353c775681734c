//! The state backend conformance kit (`sluice_core::state::conformance`) over RocksDB.

use sluice_core::state::conformance;
use sluice_rocksdb::{RocksDbBackendFactory, RocksDbOptions};

/// Small memtables, so that the checks' few thousand entries make several SST files and
/// compactions, and small caches.
fn factory() -> RocksDbBackendFactory {
    RocksDbBackendFactory::new(RocksDbOptions {
        block_cache_bytes: 1 << 20,
        write_buffer_bytes: 64 << 10,
        ..RocksDbOptions::default()
    })
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn point_ops() {
    conformance::check_point_ops(&factory(), dir().path());
}

#[test]
fn scan() {
    conformance::check_scan(&factory(), dir().path());
}

#[test]
fn delete_range() {
    conformance::check_delete_range(&factory(), dir().path());
}

#[test]
fn random_ops() {
    for seed in 0..4 {
        conformance::check_random_ops(&factory(), dir().path(), seed, 3_000);
    }
}

#[test]
fn snapshot_round_trip() {
    conformance::check_snapshot_round_trip(&factory(), dir().path());
}

#[test]
fn immutable_files() {
    conformance::check_immutable_files(&factory(), dir().path());
}

#[test]
fn restore_errors() {
    conformance::check_restore_errors(&factory(), dir().path());
}

#[test]
fn keyed_state() {
    conformance::check_keyed_state(&factory(), dir().path());
}

#[test]
fn ttl() {
    conformance::check_ttl(&factory(), dir().path());
}

#[test]
fn timers() {
    conformance::check_timers(&factory(), dir().path());
}

#[test]
fn key_group_ranges() {
    conformance::check_key_group_ranges(&factory(), dir().path());
}

#[test]
fn default_options_pass_everything() {
    conformance::check_all(&RocksDbBackendFactory::default(), dir().path());
}
