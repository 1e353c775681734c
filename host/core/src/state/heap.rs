use super::KeyedState;
use crate::keygroup::key_group;
use hashbrown::{Equivalent, HashMap};
use std::hash::Hash;
use std::ops::Range;

/// Keyed state in a hash map on the heap (Flink's `HashMapStateBackend`): fast, for
/// state that fits in memory. Each entry remembers its key group, computed once when
/// the entry is created.
pub struct HeapKeyedState<N, V> {
    /// `(key, namespace) -> (key group, value)`.
    map: HashMap<Entry<N>, (u32, V)>,
    max_parallelism: usize,
}

type Entry<N> = (Box<[u8]>, N);

/// Borrowed form of the map's key, hashing exactly as `(Box<[u8]>, N)` does, so that
/// look-ups do not allocate.
#[derive(Hash)]
struct Lookup<'a, N>(&'a [u8], N);

impl<N: Eq> Equivalent<(Box<[u8]>, N)> for Lookup<'_, N> {
    fn equivalent(&self, k: &(Box<[u8]>, N)) -> bool {
        *k.0 == *self.0 && k.1 == self.1
    }
}

impl<N, V> HeapKeyedState<N, V> {
    /// Empty state for keys hashed into `max_parallelism` key groups.
    pub fn new(max_parallelism: usize) -> Self {
        HeapKeyedState {
            map: HashMap::new(),
            max_parallelism,
        }
    }
}

impl<N: Copy + Hash + Eq, V> KeyedState<N, V> for HeapKeyedState<N, V> {
    #[inline]
    fn upsert<R>(
        &mut self,
        key: &[u8],
        ns: N,
        init: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> (R, bool) {
        if let Some((_, v)) = self.map.get_mut(&Lookup(key, ns)) {
            return (f(v), false);
        }
        let kg = key_group(key, self.max_parallelism) as u32;
        let (_, v) = self.map.entry((key.into(), ns)).or_insert((kg, init()));
        (f(v), true)
    }

    #[inline]
    fn update<R>(&mut self, key: &[u8], ns: N, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        self.map.get_mut(&Lookup(key, ns)).map(|(_, v)| f(v))
    }

    fn put(&mut self, key: &[u8], ns: N, value: V) {
        match self.map.get_mut(&Lookup(key, ns)) {
            Some((_, v)) => *v = value,
            None => {
                let kg = key_group(key, self.max_parallelism) as u32;
                self.map.insert((key.into(), ns), (kg, value));
            }
        }
    }

    #[inline]
    fn remove(&mut self, key: &[u8], ns: N) -> Option<V> {
        self.map.remove(&Lookup(key, ns)).map(|(_, v)| v)
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn for_each_in_key_groups(&self, key_groups: Range<usize>, mut f: impl FnMut(&[u8], N, &V)) {
        for ((key, ns), (kg, v)) in &self.map {
            if key_groups.contains(&(*kg as usize)) {
                f(key, *ns, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygroup::key_group_range;
    use std::collections::BTreeMap;

    #[test]
    fn values_per_key_and_namespace() {
        let mut s: HeapKeyedState<i64, u64> = HeapKeyedState::new(128);
        assert_eq!(
            s.upsert(
                b"a",
                1,
                || 10,
                |v| {
                    *v += 1;
                    *v
                }
            ),
            (11, true)
        );
        assert_eq!(
            s.upsert(
                b"a",
                1,
                || 10,
                |v| {
                    *v += 1;
                    *v
                }
            ),
            (12, false)
        );
        assert_eq!(s.upsert(b"a", 2, || 0, |v| *v), (0, true));
        assert_eq!(s.upsert(b"b", 1, || 5, |v| *v), (5, true));
        assert_eq!(s.update(b"a", 1, |v: &mut u64| *v), Some(12));
        assert_eq!(s.update(b"c", 1, |v: &mut u64| *v), None);
        s.put(b"c", 1, 7);
        s.put(b"c", 1, 8);
        assert_eq!(s.len(), 4);
        assert_eq!(s.remove(b"a", 1), Some(12));
        assert_eq!(s.remove(b"a", 1), None);
        assert_eq!(s.update(b"c", 1, |v| *v), Some(8));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn key_group_ranges_partition_the_state() {
        let mut s: HeapKeyedState<(), u32> = HeapKeyedState::new(16);
        let mut expect = BTreeMap::new();
        for i in 0..500u32 {
            let key = format!("key-{i}");
            s.put(key.as_bytes(), (), i);
            expect.insert(key.into_bytes(), i);
        }
        for p in [1, 3, 16] {
            let mut seen = BTreeMap::new();
            for subtask in 0..p {
                s.for_each_in_key_groups(key_group_range(subtask, p, 16), |k, (), v| {
                    assert!(seen.insert(k.to_vec(), *v).is_none(), "a key in two ranges");
                });
            }
            assert_eq!(seen, expect, "parallelism {p}");
        }
    }
}
