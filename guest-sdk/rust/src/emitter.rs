/// Output columns of one stream (main or a side output), with each event's origin.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    pub(crate) timestamps: Vec<i64>,
    pub(crate) key_offsets: Vec<u32>,
    pub(crate) key_data: Vec<u8>,
    pub(crate) value_offsets: Vec<u32>,
    pub(crate) value_data: Vec<u8>,
    pub(crate) origins: Vec<u32>,
}

/// Capacities of the last batch's columns, to size the next one's in one allocation each.
#[derive(Debug, Default, Clone, Copy)]
struct Sizes {
    events: usize,
    key_bytes: usize,
    value_bytes: usize,
}

impl Columns {
    fn with_sizes(s: Sizes) -> Self {
        let mut key_offsets = Vec::with_capacity(s.events + 1);
        key_offsets.push(0);
        let mut value_offsets = Vec::with_capacity(s.events + 1);
        value_offsets.push(0);
        Columns {
            timestamps: Vec::with_capacity(s.events),
            key_offsets,
            key_data: Vec::with_capacity(s.key_bytes),
            value_offsets,
            value_data: Vec::with_capacity(s.value_bytes),
            origins: Vec::with_capacity(s.events),
        }
    }

    #[cfg_attr(not(target_family = "wasm"), allow(dead_code))] // used by the wasm glue
    fn sizes(&self) -> Sizes {
        Sizes {
            events: self.timestamps.len(),
            key_bytes: self.key_data.len(),
            value_bytes: self.value_data.len(),
        }
    }

    #[inline]
    fn push_key(&mut self, timestamp: i64, key: &[u8], origin: u32) {
        self.timestamps.push(timestamp);
        self.origins.push(origin);
        append(&mut self.key_data, key);
        self.key_offsets.push(offset(self.key_data.len()));
    }
}

/// Appends `src` to `dst`. Short slices (keys, small values) are copied with a few
/// fixed-size loads and stores: `extend_from_slice` compiles to a `memory.copy`, which
/// wasmtime runs as a call out of the guest, costing more than the event's other work.
#[inline(always)]
pub(crate) fn append(dst: &mut Vec<u8>, src: &[u8]) {
    let n = src.len();
    if n > 16 {
        dst.extend_from_slice(src);
        return;
    }
    dst.reserve(n);
    let len = dst.len();
    // SAFETY: `reserve` made room for `n` more bytes after `len`; every copy below reads
    // inside `src` (`n` bytes) and writes inside `dst[len..len + n]`; the two never overlap
    // (`src` is borrowed immutably while `dst` is borrowed mutably). Fixed-size copies
    // with overlapping halves cover every length from 1 to 16 without a loop.
    unsafe {
        let s = src.as_ptr();
        let d = dst.as_mut_ptr().add(len);
        if n >= 8 {
            std::ptr::copy_nonoverlapping(s, d, 8);
            std::ptr::copy_nonoverlapping(s.add(n - 8), d.add(n - 8), 8);
        } else if n >= 4 {
            std::ptr::copy_nonoverlapping(s, d, 4);
            std::ptr::copy_nonoverlapping(s.add(n - 4), d.add(n - 4), 4);
        } else if n >= 2 {
            std::ptr::copy_nonoverlapping(s, d, 2);
            std::ptr::copy_nonoverlapping(s.add(n - 2), d.add(n - 2), 2);
        } else if n == 1 {
            *d = *s;
        }
        dst.set_len(len + n);
    }
}

#[inline]
fn offset(len: usize) -> u32 {
    // A batch's buffers are far below 4 GiB (the host's batches are bounded); a guest
    // that emits more than that is broken, and the host rejects its offsets.
    len as u32
}

/// Where an operator emits events. Every event emitted is recorded with its *origin*,
/// the index of the input event being processed, so the host can give it exactly the
/// watermark its input had. Outputs must therefore be emitted in input order.
///
/// The columns are sized from the previous batch's output, so emitting does not
/// allocate per event.
#[derive(Debug, Default)]
pub struct Emitter {
    main: Columns,
    side: Vec<(String, Columns)>,
    origin: u32,
    main_sizes: Sizes,
    side_sizes: Vec<(String, Sizes)>,
}

impl Emitter {
    /// An emitter with no outputs yet.
    pub fn new() -> Self {
        let mut e = Emitter::default();
        e.begin(0);
        e
    }

    /// Starts a new batch of `input_len` events: empty columns sized like the last output.
    pub(crate) fn begin(&mut self, input_len: usize) {
        let mut sizes = self.main_sizes;
        // A first batch, or a grown one: assume one output per input of the same shape.
        if sizes.events < input_len {
            let per = |bytes: usize| bytes.checked_div(sizes.events).unwrap_or(16);
            sizes = Sizes {
                events: input_len,
                key_bytes: per(sizes.key_bytes) * input_len,
                value_bytes: per(sizes.value_bytes) * input_len,
            };
        }
        self.main = Columns::with_sizes(sizes);
        self.side.clear();
        self.origin = 0;
    }

    /// Ends the batch: moves the main and side columns out (the canonical ABI copies them
    /// to the host) and remembers their sizes for the next batch.
    #[cfg_attr(not(target_family = "wasm"), allow(dead_code))] // used by the wasm glue
    #[inline(always)]
    pub(crate) fn finish(&mut self) -> (Columns, Vec<(String, Columns)>) {
        let main = std::mem::take(&mut self.main);
        self.main_sizes = main.sizes();
        let side = std::mem::take(&mut self.side);
        for (name, cols) in &side {
            let s = cols.sizes();
            match self.side_sizes.iter_mut().find(|(n, _)| n == name) {
                Some((_, sizes)) => *sizes = s,
                None => self.side_sizes.push((name.clone(), s)),
            }
        }
        (main, side)
    }

    /// Sets the input index that following emits are recorded as coming from. The default
    /// [`Operator::process_batch`](crate::Operator::process_batch) sets it before each
    /// event; call it yourself only when overriding that. Origins must not decrease.
    #[inline]
    pub fn set_origin(&mut self, input_index: usize) {
        self.origin = input_index as u32;
    }

    /// The input index that emits are currently recorded as coming from.
    pub fn origin(&self) -> usize {
        self.origin as usize
    }

    /// Number of events emitted on the main output in this batch so far.
    pub fn len(&self) -> usize {
        self.main.timestamps.len()
    }

    /// Whether nothing was emitted on the main output in this batch so far.
    pub fn is_empty(&self) -> bool {
        self.main.timestamps.is_empty()
    }

    /// Emits an event on the main output.
    #[inline]
    pub fn emit(&mut self, timestamp: i64, key: &[u8], value: &[u8]) {
        let origin = self.origin;
        let c = &mut self.main;
        c.push_key(timestamp, key, origin);
        append(&mut c.value_data, value);
        c.value_offsets.push(offset(c.value_data.len()));
    }

    /// Emits an event on the main output whose value `write` appends in place to the
    /// given buffer (which holds earlier values: append only), for example with
    /// [`packed::Writer`](crate::packed::Writer).
    #[inline]
    pub fn emit_with(&mut self, timestamp: i64, key: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        let origin = self.origin;
        let c = &mut self.main;
        c.push_key(timestamp, key, origin);
        write(&mut c.value_data);
        c.value_offsets.push(offset(c.value_data.len()));
    }

    fn side_columns(&mut self, name: &str) -> &mut Columns {
        let i = match self.side.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                let sizes = self
                    .side_sizes
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, s)| *s)
                    .unwrap_or_default();
                self.side
                    .push((name.to_string(), Columns::with_sizes(sizes)));
                self.side.len() - 1
            }
        };
        &mut self.side[i].1
    }

    /// Emits an event on the side output `name` (for example `dead-letter`).
    pub fn emit_side(&mut self, name: &str, timestamp: i64, key: &[u8], value: &[u8]) {
        let origin = self.origin;
        let c = self.side_columns(name);
        c.push_key(timestamp, key, origin);
        append(&mut c.value_data, value);
        c.value_offsets.push(offset(c.value_data.len()));
    }

    /// Emits an event on the side output `name`, writing its value in place.
    pub fn emit_side_with(
        &mut self,
        name: &str,
        timestamp: i64,
        key: &[u8],
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let origin = self.origin;
        let c = self.side_columns(name);
        c.push_key(timestamp, key, origin);
        write(&mut c.value_data);
        c.value_offsets.push(offset(c.value_data.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, Config, Error, Event, Operator};

    /// Emits each event twice if its value is "2", drops it if "0", once otherwise; sends
    /// "x" values to a side output.
    struct Fan;
    impl Operator for Fan {
        fn init(_: &Config) -> Result<Self, Error> {
            Ok(Fan)
        }
        fn process(&mut self, e: Event<'_>, out: &mut Emitter) -> Result<(), Error> {
            match e.value {
                b"0" => {}
                b"2" => {
                    out.emit(e.timestamp, e.key, e.value);
                    out.emit_with(e.timestamp, e.key, |b| b.extend_from_slice(b"2'"));
                }
                b"x" => out.emit_side("dead-letter", e.timestamp, e.key, e.value),
                b"bad" => return Err(Error::invalid_input("bad value")),
                _ => out.emit(e.timestamp, e.key, e.value),
            }
            Ok(())
        }
    }

    type Cols = (Vec<i64>, Vec<u32>, Vec<u8>, Vec<u32>, Vec<u8>);

    fn columns(values: &[&[u8]]) -> Cols {
        let ts = (0..values.len() as i64).collect();
        let ko = vec![0; values.len() + 1];
        let mut vo = vec![0];
        let mut vd = Vec::new();
        for v in values {
            vd.extend_from_slice(v);
            vo.push(vd.len() as u32);
        }
        (ts, ko, Vec::new(), vo, vd)
    }

    #[test]
    fn origins_follow_the_input_event() {
        let (ts, ko, kd, vo, vd) = columns(&[b"1", b"0", b"2", b"x", b"1"]);
        let batch = Batch::new(&ts, &ko, &kd, &vo, &vd).unwrap();
        let mut out = Emitter::new();
        let mut op = Fan;
        for round in 0..2 {
            out.begin(batch.len());
            op.process_batch(batch, &mut out).unwrap();
            let (main, side) = out.finish();
            assert_eq!(main.origins, [0, 2, 2, 4], "round {round}");
            assert_eq!(main.timestamps, [0, 2, 2, 4]);
            assert_eq!(main.value_offsets, [0, 1, 2, 4, 5]);
            assert_eq!(main.value_data, b"122'1");
            assert_eq!(main.key_offsets, [0, 0, 0, 0, 0]);
            assert_eq!(side.len(), 1);
            assert_eq!(side[0].0, "dead-letter");
            assert_eq!(side[0].1.origins, [3]);
            assert_eq!(side[0].1.value_data, b"x");
        }
        // The second round was sized from the first.
        out.begin(batch.len());
        assert!(out.main.timestamps.capacity() >= 5);
        assert!(out.main.value_data.capacity() >= 5);
    }

    #[test]
    fn errors_name_the_event() {
        let (ts, ko, kd, vo, vd) = columns(&[b"1", b"bad"]);
        let batch = Batch::new(&ts, &ko, &kd, &vo, &vd).unwrap();
        let mut out = Emitter::new();
        let e = Fan.process_batch(batch, &mut out).unwrap_err();
        assert_eq!(e.message(), "event 1 (timestamp 1): bad value");
    }

    #[test]
    fn append_copies_every_length() {
        let src: Vec<u8> = (0..40).collect();
        for n in 0..=40 {
            let mut dst = vec![255u8; 3];
            append(&mut dst, &src[..n]);
            assert_eq!(&dst[..3], &[255, 255, 255]);
            assert_eq!(&dst[3..], &src[..n], "length {n}");
        }
    }

    #[test]
    fn broken_columns_are_rejected() {
        assert!(Batch::new(&[1], &[0], &[], &[0, 0], &[]).is_err());
        assert!(Batch::new(&[1], &[0, 2], &[0], &[0, 0], &[]).is_err());
        assert!(Batch::new(&[1, 2], &[0, 1, 0], &[0], &[0, 0, 0], &[]).is_err());
    }
}
