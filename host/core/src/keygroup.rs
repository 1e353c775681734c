//! Key groups: the unit of keyed state and of its redistribution on rescale, as in Flink.
//! A key hashes to one of `max_parallelism` key groups; key groups are assigned to
//! subtasks in contiguous ranges.

/// Default number of key groups (Flink's default lower bound is 128).
pub const DEFAULT_MAX_PARALLELISM: usize = 128;

/// The key group of `key`: `xxh3_64(key) % max_parallelism`. The hash is fixed (it
/// decides where state lives in checkpoints), so it must never change.
#[inline]
pub fn key_group(key: &[u8], max_parallelism: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64(key) % max_parallelism as u64) as usize
}

/// The subtask that owns `key_group` at `parallelism`: `key_group * parallelism /
/// max_parallelism` (Flink's `computeOperatorIndexForKeyGroup`), so each subtask gets a
/// contiguous range.
#[inline]
pub fn subtask_for_key_group(
    key_group: usize,
    parallelism: usize,
    max_parallelism: usize,
) -> usize {
    key_group * parallelism / max_parallelism
}

/// The key groups owned by `subtask`: `start..end`.
pub fn key_group_range(
    subtask: usize,
    parallelism: usize,
    max_parallelism: usize,
) -> std::ops::Range<usize> {
    let start = (subtask * max_parallelism).div_ceil(parallelism);
    let end = ((subtask + 1) * max_parallelism).div_ceil(parallelism);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_the_key_groups_and_match_assignment() {
        for max in [1, 7, 128, 1000] {
            for p in 1..=max.min(9) {
                let mut next = 0;
                for s in 0..p {
                    let r = key_group_range(s, p, max);
                    assert_eq!(r.start, next);
                    for kg in r.clone() {
                        assert_eq!(
                            subtask_for_key_group(kg, p, max),
                            s,
                            "max {max} p {p} kg {kg}"
                        );
                    }
                    next = r.end;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn key_groups_spread() {
        let mut counts = [0usize; 128];
        for i in 0..12_800u32 {
            counts[key_group(&i.to_le_bytes(), 128)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50 && c < 150), "{counts:?}");
    }
}
