//! Keyed state: values scoped to a key and a namespace (a window, say), owned by the key's
//! key group, as in Flink's keyed state backends. Operators use it through
//! [`KeyedState`], so that a backend that keeps state off the heap (RocksDB, with keys
//! prefixed by key group) can replace [`HeapKeyedState`] without touching them, and so
//! that a snapshot or a rescale can take out a range of key groups on its own.

mod backend;
pub mod conformance;
mod heap;
mod heap_kv;
mod journal;
pub mod kvfile;
pub mod layout;
mod store;

pub use backend::{BackendSnapshot, KvBackend, KvBackendFactory, ScanFn, SnapshotFile, StateError};
pub use heap::HeapKeyedState;
pub(crate) use heap_kv::HEAP;
pub use heap_kv::{HeapKvBackend, HeapKvBackendFactory};
pub use store::{
    Clock, KeyedStateStore, MapEntries, StateDescriptor, StateId, StateKind, TimeDomain, Timer,
    system_clock,
};

use std::ops::Range;

/// Namespaced keyed state of one operator subtask: at most one value of type `V` per
/// `(key, namespace)`.
///
/// The access methods take closures rather than handing out references, so that a
/// backend which stores serialized values can read, modify and write back.
pub trait KeyedState<N: Copy, V> {
    /// Applies `f` to the value under `(key, ns)`, first inserting `init()` if there is
    /// none. Returns `f`'s result and whether the value was inserted.
    fn upsert<R>(
        &mut self,
        key: &[u8],
        ns: N,
        init: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> (R, bool);

    /// Applies `f` to the value under `(key, ns)`, if there is one.
    fn update<R>(&mut self, key: &[u8], ns: N, f: impl FnOnce(&mut V) -> R) -> Option<R>;

    /// Stores `value` under `(key, ns)`, replacing any value there.
    fn put(&mut self, key: &[u8], ns: N, value: V);

    /// Removes and returns the value under `(key, ns)`.
    fn remove(&mut self, key: &[u8], ns: N) -> Option<V>;

    /// Number of values held.
    fn len(&self) -> usize;

    /// Whether no value is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` for every value whose key is in one of `key_groups` (any order): what a
    /// snapshot of those key groups, or their hand-over on rescale, reads.
    fn for_each_in_key_groups(&self, key_groups: Range<usize>, f: impl FnMut(&[u8], N, &V));
}
