//! How keyed state is laid out as backend keys, so that one key group — or a range of
//! them — is one contiguous key range, as in Flink's RocksDB backend
//! (`RocksDBKeySerializationUtils`: key-group prefix, then key, then namespace):
//!
//! ```text
//! key group (u16, big-endian) | state id (u16, big-endian) | key length (LEB128) | key | suffix
//! ```
//!
//! The suffix is the namespace (a window, a timer's time) or a map entry's user key. The
//! state id is an index into the operator's state table; snapshots store that table by
//! name, so a restore can renumber ids (an upgraded operator declaring its states in
//! another order).

use std::ops::Range;

/// The largest `max_parallelism` the layout supports (key groups fit in a `u16`).
pub const MAX_KEY_GROUPS: usize = 1 << 15;

/// Appends the prefix shared by every entry of `key` in state `state` to `buf`.
pub fn write_prefix(buf: &mut Vec<u8>, key_group: u16, state: u16, key: &[u8]) {
    buf.extend_from_slice(&key_group.to_be_bytes());
    buf.extend_from_slice(&state.to_be_bytes());
    let mut n = key.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf.push(byte);
            break;
        }
        buf.push(byte | 0x80);
    }
    buf.extend_from_slice(key);
}

/// The parts of a backend key: `(key group, state id, key, suffix)`, or `None` when the
/// bytes are not a key of this layout.
pub fn parse(composite: &[u8]) -> Option<(u16, u16, &[u8], &[u8])> {
    let kg = u16::from_be_bytes(composite.get(0..2)?.try_into().ok()?);
    let state = u16::from_be_bytes(composite.get(2..4)?.try_into().ok()?);
    let (mut len, mut shift, mut at) = (0usize, 0u32, 4usize);
    loop {
        let b = *composite.get(at)?;
        at += 1;
        if shift > 28 {
            return None;
        }
        len |= ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    let key = composite.get(at..at.checked_add(len)?)?;
    Some((kg, state, key, &composite[at + len..]))
}

/// The backend key range `[start, end)` holding every entry of key groups `groups`.
pub fn key_groups_range(groups: Range<usize>) -> (Vec<u8>, Vec<u8>) {
    let bound = |g: usize| -> Vec<u8> {
        if g >= 1 << 16 {
            vec![0xff; 3]
        } else {
            (g as u16).to_be_bytes().to_vec()
        }
    };
    (bound(groups.start), bound(groups.end))
}

/// The smallest byte string greater than every string that starts with `prefix` (the
/// exclusive end of a prefix scan); `prefix` must not be all `0xff`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_round_trips_and_orders_by_key_group_first() {
        let long = vec![7u8; 300];
        for key in [&b""[..], b"card-1", &long] {
            let mut buf = Vec::new();
            write_prefix(&mut buf, 513, 3, key);
            buf.extend_from_slice(b"suffix");
            assert_eq!(parse(&buf), Some((513, 3, key, &b"suffix"[..])));
        }
        let mut a = Vec::new();
        write_prefix(&mut a, 1, 9, b"zzz");
        let mut b = Vec::new();
        write_prefix(&mut b, 2, 0, b"a");
        assert!(a < b);
        let (start, end) = key_groups_range(1..2);
        assert!(start.as_slice() <= a.as_slice() && a.as_slice() < end.as_slice());
        assert!(b.as_slice() >= end.as_slice());
        assert_eq!(parse(&[0, 1, 0]), None);
        assert_eq!(parse(&[0, 1, 0, 0, 5, 1]), None);
    }

    #[test]
    fn prefix_end_bounds_every_extension() {
        assert_eq!(prefix_end(&[1, 2]), vec![1, 3]);
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
        let p = [4u8, 0xff, 0xff];
        let end = prefix_end(&p);
        assert!([4u8, 0xff, 0xff, 0xff, 0xff].as_slice() < end.as_slice());
        assert!(p.as_slice() < end.as_slice());
    }
}
