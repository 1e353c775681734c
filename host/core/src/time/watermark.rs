use crate::batch::Batch;
use std::time::Duration;

/// How a source derives watermarks from event times (Flink's `WatermarkStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkStrategy {
    /// Bounded out-of-orderness in ms: the watermark trails the highest event time seen
    /// by this much (plus 1 ms, so that an event exactly this late is not yet late).
    pub max_out_of_orderness_ms: i64,
    /// After this long without data (processing time), the source declares itself idle
    /// so that it stops holding back the watermark downstream; `None`: never idle.
    pub idleness: Option<Duration>,
}

/// Watermark generator for bounded out-of-orderness, evaluated per event.
///
/// The watermark an event meets is `max(event times before it) - out_of_orderness - 1`,
/// exactly as Flink's `BoundedOutOfOrdernessWatermarks` emitting after every event. The
/// generator records the progress *inside* each batch as [`crate::WatermarkMark`]s, so
/// results do not depend on how events are cut into batches.
#[derive(Debug, Clone)]
pub struct BoundedOutOfOrderness {
    out_of_orderness_ms: i64,
    max_timestamp: Option<i64>,
}

impl BoundedOutOfOrderness {
    /// A generator for `out_of_orderness_ms` (must be `>= 0`).
    pub fn new(out_of_orderness_ms: i64) -> Self {
        BoundedOutOfOrderness {
            out_of_orderness_ms: out_of_orderness_ms.max(0),
            max_timestamp: None,
        }
    }

    /// The highest event time seen (the generator's state, kept in checkpoints).
    pub fn max_timestamp(&self) -> Option<i64> {
        self.max_timestamp
    }

    /// Continues from a checkpointed [`BoundedOutOfOrderness::max_timestamp`].
    pub fn restore(&mut self, max_timestamp: Option<i64>) {
        self.max_timestamp = max_timestamp;
    }

    /// The current watermark (`i64::MIN` before the first event).
    pub fn current(&self) -> i64 {
        match self.max_timestamp {
            None => i64::MIN,
            Some(m) => m.saturating_sub(self.out_of_orderness_ms).saturating_sub(1),
        }
    }

    /// Replaces `batch`'s marks by the watermark each event meets: a mark before row `i`
    /// whenever the highest event time grew with row `i - 1`, and one after the last row
    /// if it grew there. The mark before row 0 was already carried at the end of the
    /// previous batch.
    pub fn mark_batch(&mut self, batch: &mut Batch) {
        let ts = batch.timestamps();
        let mut marks = Vec::new();
        let mut max = self.max_timestamp;
        for (i, &t) in ts.iter().enumerate() {
            if max.is_none_or(|m| t > m) {
                max = Some(t);
                marks.push(i as u32 + 1);
            }
        }
        let mut result = Vec::with_capacity(marks.len());
        let mut prev_max = self.max_timestamp;
        for row in marks {
            let m = ts[row as usize - 1];
            debug_assert!(prev_max.is_none_or(|p| m > p));
            prev_max = Some(m);
            result.push(crate::WatermarkMark {
                row,
                watermark: m.saturating_sub(self.out_of_orderness_ms).saturating_sub(1),
            });
        }
        self.max_timestamp = max;
        batch
            .set_marks(result)
            .expect("marks are generated in row order");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::WatermarkMark;

    /// A batch of events at times `ts` (empty keys and values).
    pub(crate) fn batch(ts: &[i64]) -> Batch {
        let mut b = Batch::new();
        for &t in ts {
            b.push(t, b"", b"");
        }
        b
    }

    /// The watermark each event meets, from the marks, given the watermark before the batch.
    pub(crate) fn met(b: &Batch, mut wm: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let mut marks = b.marks().iter().peekable();
        for i in 0..b.len() {
            while let Some(m) = marks.next_if(|m| m.row as usize <= i) {
                wm = m.watermark;
            }
            out.push(wm);
        }
        out
    }

    #[test]
    fn every_event_meets_max_before_it_minus_bound_minus_one() {
        let ts = [100, 90, 130, 120, 130, 200];
        let mut g = BoundedOutOfOrderness::new(10);
        let mut b = batch(&ts);
        g.mark_batch(&mut b);
        // Independent answer: running max of the events before each one.
        let mut expect = Vec::new();
        let mut max = i64::MIN;
        for &t in &ts {
            expect.push(if max == i64::MIN { i64::MIN } else { max - 11 });
            max = max.max(t);
        }
        assert_eq!(met(&b, i64::MIN), expect);
        assert_eq!(
            b.marks().last(),
            Some(&WatermarkMark {
                row: 6,
                watermark: 189
            })
        );
        assert_eq!(g.current(), 189);
    }

    #[test]
    fn same_marks_whatever_the_batch_size() {
        let ts: Vec<i64> = (0..500).map(|i| (i * 37 % 101) + i * 3).collect();
        let reference = {
            let mut g = BoundedOutOfOrderness::new(25);
            let mut b = batch(&ts);
            g.mark_batch(&mut b);
            met(&b, i64::MIN)
        };
        for size in [1, 2, 7, 64, 499] {
            let mut g = BoundedOutOfOrderness::new(25);
            let mut got = Vec::new();
            let mut wm = i64::MIN;
            for chunk in ts.chunks(size) {
                let mut b = batch(chunk);
                g.mark_batch(&mut b);
                got.extend(met(&b, wm));
                wm = b.last_watermark().unwrap_or(wm);
            }
            assert_eq!(got, reference, "batch size {size}");
        }
    }
}
