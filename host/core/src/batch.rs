//! Columnar batches of events, the unit in which events travel everywhere: through
//! channels, into and out of WASM, to sinks.
//!
//! A batch holds `n` events as a timestamp column (`i64` ms) and key and value columns,
//! each stored as an offsets array of `n + 1` `u32` plus one data buffer (the Arrow binary
//! layout). It also carries the watermark's progress *inside* the batch, as a short list
//! of [`WatermarkMark`]s, so that every event meets exactly the watermark the source had
//! emitted just before it, whatever the batch size: the Dataflow model's per-element
//! semantics at the cost of a batch.
//!
//! Events from a source that has them (Kafka) also carry *headers*, `(name, value)`
//! pairs, in an optional [`Headers`] column: absent (and free) for every other batch.

/// "Before row `row`, the watermark is `watermark`": the watermark advanced between row
/// `row - 1` and row `row`. `row == len` means after the last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkMark {
    /// Row index in the batch, `0..=len`.
    pub row: u32,
    /// Event time in ms since the Unix epoch.
    pub watermark: i64,
}

/// One event, borrowed from a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Event time, ms since the Unix epoch.
    pub timestamp: i64,
    /// The key (empty for unkeyed events).
    pub key: &'a [u8],
    /// The payload, in the stream's value format.
    pub value: &'a [u8],
}

/// A columnar batch of events with in-batch watermark marks.
///
/// Invariants (kept by every method): `key_offsets.len() == value_offsets.len() ==
/// timestamps.len() + 1`, offsets start at 0 and never decrease, the last offset is the
/// data buffer's length, and marks have strictly increasing rows `<= len` and
/// non-decreasing watermarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    timestamps: Vec<i64>,
    key_offsets: Vec<u32>,
    key_data: Vec<u8>,
    value_offsets: Vec<u32>,
    value_data: Vec<u8>,
    marks: Vec<WatermarkMark>,
    /// Per-event headers, when some event of the batch has any.
    headers: Option<Box<Headers>>,
}

/// The headers column of a [`Batch`]: for each event, a list of `(name, value)` pairs
/// (Kafka record headers: a name is a string, a value is bytes or null), stored as one
/// encoded item per event in the Arrow binary layout (`offsets` has `len + 1` entries).
///
/// An item is a sequence of headers, each `name length (u32 LE), name, value length
/// (u32 LE, `u32::MAX` for a null value), value`; [`Headers::get`] decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    offsets: Vec<u32>,
    data: Vec<u8>,
}

/// One header of an event: its name and its value (`None`: a null value).
pub type Header<'a> = (&'a str, Option<&'a [u8]>);

impl Headers {
    /// A column of `n` events without headers.
    fn empty(n: usize) -> Headers {
        Headers {
            offsets: vec![0; n + 1],
            data: Vec::new(),
        }
    }

    /// Number of events in the column.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether the column has no events.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_item<'a>(&mut self, headers: impl IntoIterator<Item = Header<'a>>) {
        for (name, value) in headers {
            self.data
                .extend_from_slice(&(name.len() as u32).to_le_bytes());
            self.data.extend_from_slice(name.as_bytes());
            match value {
                Some(v) => {
                    self.data.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    self.data.extend_from_slice(v);
                }
                None => self.data.extend_from_slice(&u32::MAX.to_le_bytes()),
            }
        }
        self.offsets.push(self.data.len() as u32);
    }

    /// The headers of event `i`, in their order on the record (empty when `i` is out of
    /// range).
    pub fn get(&self, i: usize) -> HeaderIter<'_> {
        let item = match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.data[a as usize..b as usize],
            _ => &[],
        };
        HeaderIter { rest: item }
    }
}

/// The headers of one event, decoded from a [`Headers`] item.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        // Items are written by `push_item` only, so they always decode; a short item
        // would end the iteration rather than panic.
        let mut take = |n: usize| -> Option<&'a [u8]> {
            let (head, tail) = self.rest.split_at_checked(n)?;
            self.rest = tail;
            Some(head)
        };
        let len = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or([0; 4]));
        let name_len = len(take(4)?) as usize;
        let name = std::str::from_utf8(take(name_len)?).unwrap_or_default();
        let value = match len(take(4)?) {
            u32::MAX => None,
            n => Some(take(n as usize)?),
        };
        Some((name, value))
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

/// Columns given to [`Batch::from_columns`] that break the batch invariants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid batch columns: {0}")]
pub struct BatchError(pub String);

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// An empty batch with room for `events` events and `bytes` bytes of keys plus values.
    pub fn with_capacity(events: usize, bytes: usize) -> Self {
        let mut key_offsets = Vec::with_capacity(events + 1);
        key_offsets.push(0);
        let mut value_offsets = Vec::with_capacity(events + 1);
        value_offsets.push(0);
        Batch {
            timestamps: Vec::with_capacity(events),
            key_offsets,
            key_data: Vec::new(),
            value_offsets,
            value_data: Vec::with_capacity(bytes),
            marks: Vec::new(),
            headers: None,
        }
    }

    /// Builds a batch from raw columns (as they come back from a WASM operator), checking
    /// every invariant; marks start empty.
    ///
    /// Errors: offsets of the wrong length, not starting at 0, decreasing, or not ending
    /// at their buffer's length.
    pub fn from_columns(
        timestamps: Vec<i64>,
        key_offsets: Vec<u32>,
        key_data: Vec<u8>,
        value_offsets: Vec<u32>,
        value_data: Vec<u8>,
    ) -> Result<Batch, BatchError> {
        let n = timestamps.len();
        check_offsets("key", &key_offsets, n, key_data.len())?;
        check_offsets("value", &value_offsets, n, value_data.len())?;
        Ok(Batch {
            timestamps,
            key_offsets,
            key_data,
            value_offsets,
            value_data,
            marks: Vec::new(),
            headers: None,
        })
    }

    /// Number of events.
    #[inline]
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the batch has no events (it may still carry watermark marks).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Whether the batch carries neither events nor marks.
    pub fn is_void(&self) -> bool {
        self.timestamps.is_empty() && self.marks.is_empty()
    }

    /// Appends an event.
    #[inline]
    pub fn push(&mut self, timestamp: i64, key: &[u8], value: &[u8]) {
        self.timestamps.push(timestamp);
        self.key_data.extend_from_slice(key);
        self.key_offsets.push(self.key_data.len() as u32);
        self.value_data.extend_from_slice(value);
        self.value_offsets.push(self.value_data.len() as u32);
        if let Some(h) = &mut self.headers {
            h.offsets.push(h.data.len() as u32);
        }
    }

    /// Appends an event with `headers` (a Kafka record's, say).
    pub fn push_with_headers<'a>(
        &mut self,
        timestamp: i64,
        key: &[u8],
        value: &[u8],
        headers: impl IntoIterator<Item = Header<'a>>,
    ) {
        let mut headers = headers.into_iter().peekable();
        if headers.peek().is_none() {
            return self.push(timestamp, key, value);
        }
        let n = self.len();
        self.headers
            .get_or_insert_with(|| Box::new(Headers::empty(n)))
            .push_item(headers);
        self.timestamps.push(timestamp);
        self.key_data.extend_from_slice(key);
        self.key_offsets.push(self.key_data.len() as u32);
        self.value_data.extend_from_slice(value);
        self.value_offsets.push(self.value_data.len() as u32);
    }

    /// Appends an event whose value is written in place by `write` (no temporary buffer).
    #[inline]
    pub fn push_with(&mut self, timestamp: i64, key: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        self.timestamps.push(timestamp);
        self.key_data.extend_from_slice(key);
        self.key_offsets.push(self.key_data.len() as u32);
        write(&mut self.value_data);
        self.value_offsets.push(self.value_data.len() as u32);
        if let Some(h) = &mut self.headers {
            h.offsets.push(h.data.len() as u32);
        }
    }

    /// Appends event `i` of `other`, with its headers.
    #[inline]
    pub fn push_from(&mut self, other: &Batch, i: usize) {
        match &other.headers {
            None => self.push(other.timestamps[i], other.key(i), other.value(i)),
            Some(h) => {
                self.push_with_headers(other.timestamps[i], other.key(i), other.value(i), h.get(i))
            }
        }
    }

    /// The headers column, if any event of the batch has headers.
    pub fn headers(&self) -> Option<&Headers> {
        self.headers.as_deref()
    }

    /// Moves the headers column out (leaving none), e.g. before
    /// [`Batch::into_columns`], which drops it.
    pub fn take_headers(&mut self) -> Option<Headers> {
        self.headers.take().map(|h| *h)
    }

    /// Records that the watermark is `watermark` before the next event pushed (or at the
    /// end, if none is). A mark at the same row as the previous one replaces it; a mark
    /// that does not advance the watermark is ignored.
    #[inline]
    pub fn push_watermark(&mut self, watermark: i64) {
        let row = self.timestamps.len() as u32;
        match self.marks.last_mut() {
            Some(last) if watermark <= last.watermark => {}
            Some(last) if last.row == row => last.watermark = watermark,
            _ => self.marks.push(WatermarkMark { row, watermark }),
        }
    }

    /// The watermark marks, in row order.
    pub fn marks(&self) -> &[WatermarkMark] {
        &self.marks
    }

    /// The highest watermark this batch carries, if any.
    pub fn last_watermark(&self) -> Option<i64> {
        self.marks.last().map(|m| m.watermark)
    }

    /// Replaces the marks; used by operators that map rows 1:1 and keep marks as they are.
    /// Errors if rows are not strictly increasing or beyond `len`, or watermarks decrease.
    pub fn set_marks(&mut self, marks: Vec<WatermarkMark>) -> Result<(), BatchError> {
        for w in marks.windows(2) {
            if w[1].row <= w[0].row || w[1].watermark < w[0].watermark {
                return Err(BatchError(format!("watermark marks out of order: {w:?}")));
            }
        }
        if marks.last().is_some_and(|m| m.row as usize > self.len()) {
            return Err(BatchError("watermark mark beyond the last row".into()));
        }
        self.marks = marks;
        Ok(())
    }

    /// Takes the batch apart into `(timestamps, key_offsets, key_data, value_offsets,
    /// value_data, marks)`, without copying; the headers column, if any, is dropped
    /// (take it first with [`Batch::take_headers`]).
    #[allow(clippy::type_complexity)]
    pub fn into_columns(
        self,
    ) -> (
        Vec<i64>,
        Vec<u32>,
        Vec<u8>,
        Vec<u32>,
        Vec<u8>,
        Vec<WatermarkMark>,
    ) {
        (
            self.timestamps,
            self.key_offsets,
            self.key_data,
            self.value_offsets,
            self.value_data,
            self.marks,
        )
    }

    /// Moves the marks out, leaving none.
    pub fn take_marks(&mut self) -> Vec<WatermarkMark> {
        std::mem::take(&mut self.marks)
    }

    /// Event time of event `i`.
    #[inline]
    pub fn timestamp(&self, i: usize) -> i64 {
        self.timestamps[i]
    }

    /// Key of event `i`.
    #[inline]
    pub fn key(&self, i: usize) -> &[u8] {
        &self.key_data[self.key_offsets[i] as usize..self.key_offsets[i + 1] as usize]
    }

    /// Value of event `i`.
    #[inline]
    pub fn value(&self, i: usize) -> &[u8] {
        &self.value_data[self.value_offsets[i] as usize..self.value_offsets[i + 1] as usize]
    }

    /// Event `i`.
    #[inline]
    pub fn get(&self, i: usize) -> EventRef<'_> {
        EventRef {
            timestamp: self.timestamps[i],
            key: self.key(i),
            value: self.value(i),
        }
    }

    /// The events in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EventRef<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The timestamp column.
    pub fn timestamps(&self) -> &[i64] {
        &self.timestamps
    }
    /// The key offsets (`len + 1` entries).
    pub fn key_offsets(&self) -> &[u32] {
        &self.key_offsets
    }
    /// The key data buffer.
    pub fn key_data(&self) -> &[u8] {
        &self.key_data
    }
    /// The value offsets (`len + 1` entries).
    pub fn value_offsets(&self) -> &[u32] {
        &self.value_offsets
    }
    /// The value data buffer.
    pub fn value_data(&self) -> &[u8] {
        &self.value_data
    }

    /// Bytes held in the columns (timestamps, offsets, data), for metrics.
    pub fn byte_size(&self) -> usize {
        self.timestamps.len() * 8
            + (self.key_offsets.len() + self.value_offsets.len()) * 4
            + self.key_data.len()
            + self.value_data.len()
            + self
                .headers
                .as_ref()
                .map_or(0, |h| h.offsets.len() * 4 + h.data.len())
    }

    /// Removes all events and marks, keeping the allocations.
    pub fn clear(&mut self) {
        self.timestamps.clear();
        self.key_offsets.truncate(1);
        self.key_data.clear();
        self.value_offsets.truncate(1);
        self.value_data.clear();
        self.marks.clear();
        self.headers = None;
    }

    /// Carries `input_marks` (marks of the batch this one was computed from) over to this
    /// batch, given for each row of this batch the input row it came from (`origins`,
    /// non-decreasing): a mark before input row `r` lands before the first output row
    /// whose origin is `>= r`. This is how a map, filter or flat-map keeps every event's
    /// watermark exact.
    ///
    /// Errors if `origins` is not as long as the batch, decreases, or names a row
    /// `>= input_len`.
    pub fn remap_marks_from(
        &mut self,
        input_marks: &[WatermarkMark],
        origins: &[u32],
        input_len: usize,
    ) -> Result<(), BatchError> {
        if origins.len() != self.len() {
            return Err(BatchError(format!(
                "{} origins for {} output events",
                origins.len(),
                self.len()
            )));
        }
        if let Some(w) = origins.windows(2).find(|w| w[1] < w[0]) {
            return Err(BatchError(format!(
                "origins decrease ({} then {}): outputs must follow input order",
                w[0], w[1]
            )));
        }
        if let Some(&last) = origins.last()
            && last as usize >= input_len
        {
            return Err(BatchError(format!(
                "origin {last} is not an input row (the input had {input_len})"
            )));
        }
        self.marks.clear();
        for m in input_marks {
            let row = origins.partition_point(|&o| o < m.row) as u32;
            match self.marks.last_mut() {
                Some(last) if last.row == row => last.watermark = last.watermark.max(m.watermark),
                _ => self.marks.push(WatermarkMark {
                    row,
                    watermark: m.watermark,
                }),
            }
        }
        Ok(())
    }
}

fn check_offsets(name: &str, offsets: &[u32], n: usize, data_len: usize) -> Result<(), BatchError> {
    if offsets.len() != n + 1 {
        return Err(BatchError(format!(
            "{name} offsets have {} entries for {n} events (need {})",
            offsets.len(),
            n + 1
        )));
    }
    if offsets[0] != 0 {
        return Err(BatchError(format!(
            "{name} offsets start at {}, not 0",
            offsets[0]
        )));
    }
    if let Some(i) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(BatchError(format!("{name} offsets decrease at event {i}")));
    }
    if offsets[n] as usize != data_len {
        return Err(BatchError(format!(
            "{name} offsets end at {} but the data has {data_len} bytes",
            offsets[n]
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_read_back() {
        let mut b = Batch::new();
        b.push(5, b"k1", b"v1");
        b.push(7, b"", b"value2");
        assert_eq!(b.len(), 2);
        assert_eq!(
            b.get(0),
            EventRef {
                timestamp: 5,
                key: b"k1",
                value: b"v1"
            }
        );
        assert_eq!(b.key(1), b"");
        assert_eq!(b.value(1), b"value2");
        let c = Batch::from_columns(
            b.timestamps().to_vec(),
            b.key_offsets().to_vec(),
            b.key_data().to_vec(),
            b.value_offsets().to_vec(),
            b.value_data().to_vec(),
        )
        .unwrap();
        assert_eq!(b, c);
    }

    #[test]
    fn headers_follow_their_events() {
        let mut b = Batch::new();
        b.push(1, b"a", b"1");
        assert!(b.headers().is_none());
        b.push_with_headers(2, b"b", b"2", [("trace", Some(&b"x"[..])), ("gone", None)]);
        b.push(3, b"c", b"3");
        b.push_with_headers(4, b"d", b"4", [("", Some(&b""[..]))]);
        let h = b.headers().unwrap();
        assert_eq!(h.len(), 4);
        let all: Vec<Vec<Header>> = (0..4).map(|i| h.get(i).collect()).collect();
        assert_eq!(
            all,
            vec![
                vec![],
                vec![("trace", Some(&b"x"[..])), ("gone", None)],
                vec![],
                vec![("", Some(&b""[..]))],
            ]
        );
        // Copying rows keeps their headers; rows without any add no column.
        let mut c = Batch::new();
        c.push_from(&b, 0);
        assert!(c.headers().is_none());
        c.push_from(&b, 1);
        c.push_from(&b, 2);
        let h = c.headers().unwrap();
        assert_eq!(h.get(0).count(), 0);
        assert_eq!(h.get(1).collect::<Vec<_>>(), all[1]);
        assert_eq!(h.get(2).count(), 0);
        assert_eq!(h.get(9).count(), 0);
        assert_eq!(c.take_headers().map(|h| h.len()), Some(3));
        assert!(c.headers().is_none());
    }

    #[test]
    fn from_columns_rejects_broken_offsets() {
        assert!(Batch::from_columns(vec![1], vec![0], vec![], vec![0, 0], vec![]).is_err());
        assert!(Batch::from_columns(vec![1], vec![1, 1], vec![0], vec![0, 0], vec![]).is_err());
        assert!(
            Batch::from_columns(vec![1, 2], vec![0, 2, 1], vec![0, 0], vec![0, 0, 0], vec![])
                .is_err()
        );
        assert!(Batch::from_columns(vec![1], vec![0, 3], vec![0], vec![0, 0], vec![]).is_err());
    }

    #[test]
    fn marks_collapse_and_ignore_regressions() {
        let mut b = Batch::new();
        b.push_watermark(10);
        b.push_watermark(12); // same row: replaces
        b.push(1, b"", b"");
        b.push_watermark(11); // no advance: ignored
        b.push_watermark(20);
        assert_eq!(
            b.marks(),
            &[
                WatermarkMark {
                    row: 0,
                    watermark: 12
                },
                WatermarkMark {
                    row: 1,
                    watermark: 20
                }
            ]
        );
    }

    #[test]
    fn remap_marks_through_a_filter_and_a_flat_map() {
        // Input rows 0..5 with marks before rows 1, 3 and after the end (5).
        let input = [
            WatermarkMark {
                row: 1,
                watermark: 100,
            },
            WatermarkMark {
                row: 3,
                watermark: 300,
            },
            WatermarkMark {
                row: 5,
                watermark: 500,
            },
        ];
        // Output: row 0 twice, row 3, row 4 (rows 1 and 2 filtered out).
        let mut out = Batch::new();
        for _ in 0..4 {
            out.push(0, b"", b"");
        }
        out.remap_marks_from(&input, &[0, 0, 3, 4], 5).unwrap();
        // Mark before input row 1 and before row 3 both land before output row 2; the
        // higher wins. The end mark stays at the end.
        assert_eq!(
            out.marks(),
            &[
                WatermarkMark {
                    row: 2,
                    watermark: 300
                },
                WatermarkMark {
                    row: 4,
                    watermark: 500
                }
            ]
        );
        assert!(out.remap_marks_from(&input, &[0, 1, 0, 2], 5).is_err());
        assert!(out.remap_marks_from(&input, &[0, 1, 2, 5], 5).is_err());
        assert!(out.remap_marks_from(&input, &[0, 1], 5).is_err());
    }
}
