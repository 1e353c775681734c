//! Watermarks per split of a source subtask, combined by minimum, with idleness.
//!
//! A source subtask that reads several *splits* (Kafka: topic partitions) whose event
//! times advance independently must not let a fast split push the watermark past events
//! a slow one has yet to deliver. As in Flink's Kafka source (per-partition watermarks,
//! `WatermarkOutputMultiplexer`, and `WatermarkStrategy::withIdleness`), each split has
//! its own [`BoundedOutOfOrderness`] generator; the subtask's watermark is the minimum
//! over the splits that are not idle, and never goes back. A split that has delivered no
//! data for the idleness timeout stops holding the watermark back until data returns;
//! when every split is idle, the subtask is idle. A reader with one split (a file) gets
//! exactly the single generator's watermark.

use super::watermark::BoundedOutOfOrderness;
use crate::batch::{Batch, WatermarkMark};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A split's id, chosen by its reader and stable across runs (it keys the split's
/// watermark state in checkpoints).
pub type SplitId = u32;

#[derive(Debug, Clone)]
struct Split {
    generator: BoundedOutOfOrderness,
    /// When the split last delivered data (or was assigned).
    last_data: Instant,
    idle: bool,
}

/// What [`SplitWatermarks::check_idle`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleCheck {
    /// The combined watermark grew to this (splits went idle): emit it.
    pub advanced: Option<i64>,
    /// Every split is idle (and there is at least one): the subtask is idle.
    pub all_idle: bool,
}

/// Per-split watermark generators of one source subtask; see the module docs.
#[derive(Debug, Clone)]
pub struct SplitWatermarks {
    out_of_orderness_ms: i64,
    idleness: Option<Duration>,
    splits: BTreeMap<SplitId, Split>,
    /// The combined watermark emitted so far (`i64::MIN` before any).
    emitted: i64,
}

impl SplitWatermarks {
    /// Generators with `out_of_orderness_ms` of bounded out-of-orderness, and splits idle
    /// after `idleness` without data (`None`: never).
    pub fn new(out_of_orderness_ms: i64, idleness: Option<Duration>) -> Self {
        SplitWatermarks {
            out_of_orderness_ms,
            idleness,
            splits: BTreeMap::new(),
            emitted: i64::MIN,
        }
    }

    /// The combined watermark emitted so far (`i64::MIN` before any).
    pub fn current(&self) -> i64 {
        self.emitted
    }

    /// The splits' highest event times (their generators' state, kept in checkpoints).
    pub fn max_timestamps(&self) -> BTreeMap<SplitId, i64> {
        self.splits
            .iter()
            .filter_map(|(&id, s)| s.generator.max_timestamp().map(|t| (id, t)))
            .collect()
    }

    /// Continues from checkpointed [`SplitWatermarks::max_timestamps`]: those splits are
    /// assigned with their generators' state, and the combined watermark is their minimum.
    pub fn restore(&mut self, max_timestamps: &BTreeMap<SplitId, i64>, now: Instant) {
        for (&id, &t) in max_timestamps {
            self.split(id, now).generator.restore(Some(t));
        }
        self.emitted = self.emitted.max(self.combined().unwrap_or(i64::MIN));
    }

    /// Makes the assigned splits exactly `splits`: new ones are added (holding the
    /// watermark back until they deliver data or go idle), others are dropped. Returns
    /// the combined watermark if dropping splits made it grow.
    pub fn assign(&mut self, splits: &[SplitId], now: Instant) -> Option<i64> {
        self.splits.retain(|id, _| splits.contains(id));
        for &id in splits {
            self.split(id, now);
        }
        self.advance()
    }

    fn split(&mut self, id: SplitId, now: Instant) -> &mut Split {
        let ooo = self.out_of_orderness_ms;
        self.splits.entry(id).or_insert_with(|| Split {
            generator: BoundedOutOfOrderness::new(ooo),
            last_data: now,
            idle: false,
        })
    }

    /// The minimum watermark over the active splits (`None`: no active split).
    fn combined(&self) -> Option<i64> {
        self.splits
            .values()
            .filter(|s| !s.idle)
            .map(|s| s.generator.current())
            .min()
    }

    /// Emits the combined watermark if it grew.
    fn advance(&mut self) -> Option<i64> {
        let c = self.combined()?;
        (c > self.emitted).then(|| {
            self.emitted = c;
            c
        })
    }

    /// Sets `batch`'s marks for events that all came from `split` (assigned if it was
    /// not): a mark after each event that raised the combined watermark, as
    /// [`BoundedOutOfOrderness::mark_batch`] does for one generator. The split is active
    /// again if it was idle.
    pub fn mark_batch(&mut self, batch: &mut Batch, split: SplitId, now: Instant) {
        // The other active splits' minimum is fixed during this batch.
        let others = self
            .splits
            .iter()
            .filter(|&(&id, s)| id != split && !s.idle)
            .map(|(_, s)| s.generator.current())
            .min()
            .unwrap_or(i64::MAX);
        let ooo = self.out_of_orderness_ms;
        let mut emitted = self.emitted;
        let s = self.split(split, now);
        s.last_data = now;
        s.idle = false;
        let mut max = s.generator.max_timestamp();
        let mut marks = Vec::new();
        for (i, &t) in batch.timestamps().iter().enumerate() {
            if max.is_none_or(|m| t > m) {
                max = Some(t);
                let w = t.saturating_sub(ooo).saturating_sub(1).min(others);
                if w > emitted {
                    emitted = w;
                    marks.push(WatermarkMark {
                        row: i as u32 + 1,
                        watermark: w,
                    });
                }
            }
        }
        s.generator.restore(max);
        self.emitted = emitted;
        batch
            .set_marks(marks)
            .expect("marks are generated in row order");
    }

    /// Marks the splits without data for the idleness timeout as idle (at `now`).
    pub fn check_idle(&mut self, now: Instant) -> IdleCheck {
        if let Some(timeout) = self.idleness {
            for s in self.splits.values_mut() {
                if !s.idle && now.duration_since(s.last_data) >= timeout {
                    s.idle = true;
                }
            }
        }
        IdleCheck {
            advanced: self.advance(),
            all_idle: !self.splits.is_empty() && self.splits.values().all(|s| s.idle),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::watermark::tests::{batch, met};

    #[test]
    fn one_split_gives_the_single_generators_marks() {
        let ts: Vec<i64> = (0..300).map(|i| (i * 37 % 101) + i * 3).collect();
        let mut single = BoundedOutOfOrderness::new(25);
        let mut want = batch(&ts);
        single.mark_batch(&mut want);
        let mut split = SplitWatermarks::new(25, None);
        let mut got = batch(&ts);
        split.mark_batch(&mut got, 0, Instant::now());
        assert_eq!(got.marks(), want.marks());
        assert_eq!(split.current(), single.current());
    }

    #[test]
    fn the_watermark_is_the_minimum_over_splits_and_never_goes_back() {
        let now = Instant::now();
        let mut w = SplitWatermarks::new(0, None);
        w.assign(&[1, 2], now);
        // Split 1 runs ahead; split 2 has no data yet: nothing is emitted.
        let mut b = batch(&[100, 200]);
        w.mark_batch(&mut b, 1, now);
        assert!(b.marks().is_empty());
        assert_eq!(w.current(), i64::MIN);
        // Split 2 at 50: the minimum is 49 (= 50 - 0 - 1); at 300 it is capped by split 1.
        let mut b = batch(&[50, 300]);
        w.mark_batch(&mut b, 2, now);
        assert_eq!(met(&b, i64::MIN), vec![i64::MIN, 49]);
        assert_eq!(w.current(), 199);
        // Split 1 moves to 250: the minimum of 249 and 299.
        let mut b = batch(&[250]);
        w.mark_batch(&mut b, 1, now);
        assert_eq!(w.current(), 249);
        // A new split holds the watermark back but does not move it back.
        assert_eq!(w.assign(&[1, 2, 3], now), None);
        let mut b = batch(&[10]);
        w.mark_batch(&mut b, 3, now);
        assert!(b.marks().is_empty());
        assert_eq!(w.current(), 249);
        // Dropping split 3 releases it.
        assert_eq!(w.assign(&[1, 2], now), None);
        let mut b = batch(&[400]);
        w.mark_batch(&mut b, 1, now);
        assert_eq!(w.current(), 299);
    }

    #[test]
    fn an_idle_split_stops_holding_the_watermark_back_until_data_returns() {
        let t0 = Instant::now();
        let mut w = SplitWatermarks::new(0, Some(Duration::from_secs(5)));
        w.assign(&[1, 2], t0);
        let mut b = batch(&[1_000]);
        w.mark_batch(&mut b, 1, t0 + Duration::from_secs(4));
        assert_eq!(w.current(), i64::MIN);
        // Split 2 never delivered: idle after 5 s; split 1 is not (data at 4 s).
        let c = w.check_idle(t0 + Duration::from_secs(5));
        assert_eq!(
            c,
            IdleCheck {
                advanced: Some(999),
                all_idle: false
            }
        );
        // Split 2 comes back behind: the watermark does not go back, and it holds the
        // watermark again.
        let mut b = batch(&[500, 600]);
        w.mark_batch(&mut b, 2, t0 + Duration::from_secs(6));
        assert!(b.marks().is_empty());
        let mut b = batch(&[2_000]);
        w.mark_batch(&mut b, 1, t0 + Duration::from_secs(6));
        assert!(b.marks().is_empty(), "split 2 at 599 holds it back");
        assert_eq!(w.current(), 999);
        // Both idle: the subtask is idle.
        let c = w.check_idle(t0 + Duration::from_secs(11));
        assert!(c.all_idle);
    }

    #[test]
    fn restore_continues_every_splits_generator() {
        let now = Instant::now();
        let mut w = SplitWatermarks::new(10, None);
        w.assign(&[1, 2], now);
        w.mark_batch(&mut batch(&[100]), 1, now);
        w.mark_batch(&mut batch(&[300]), 2, now);
        let saved = w.max_timestamps();
        assert_eq!(saved, BTreeMap::from([(1, 100), (2, 300)]));
        let mut r = SplitWatermarks::new(10, None);
        r.restore(&saved, now);
        assert_eq!(r.current(), 89);
        let mut b = batch(&[200, 250]);
        r.mark_batch(&mut b, 1, now);
        assert_eq!(met(&b, 89), vec![89, 189]);
        assert_eq!(r.current(), 239);
    }
}
