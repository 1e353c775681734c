use super::aggregate::{Accumulator, Aggregates};
use super::assigner::{TimeWindow, WindowAssigner, merge_session_window};
use crate::batch::Batch;
use crate::format::write_json_key;
use crate::operator::{Collector, Operator, OperatorContext, OperatorError, StateContext};
use crate::state::{
    HeapKeyedState, KeyedState, KeyedStateStore, StateDescriptor, StateId, StateKind,
};
use crate::time::{format_time, write_time};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Name of the window operator's side output for late events.
pub const LATE_OUTPUT: &str = "late";

/// What a window vertex computes.
#[derive(Debug, Clone)]
pub struct WindowConfig {
    /// Which windows each event belongs to.
    pub assigner: WindowAssigner,
    /// How long after a window's end (ms of event time) late events still update it;
    /// after that they go to the `late` side output.
    pub allowed_lateness: i64,
    /// The aggregates in each result row.
    pub aggregates: Aggregates,
    /// Number of key groups (the job's max parallelism), for the keyed state.
    pub max_parallelism: usize,
}

/// Counters a window subtask keeps for the run summary and metrics.
#[derive(Debug, Default)]
pub struct WindowCounters {
    /// Events that went into at least one window.
    pub events_assigned: AtomicU64,
    /// Events too late for all their windows, sent to the `late` side output.
    pub late_events: AtomicU64,
    /// Result rows emitted (every firing, on time or late).
    pub firings: AtomicU64,
    /// Late firings among them.
    pub late_firings: AtomicU64,
    /// Windows purged after their allowed lateness: their last firing is final.
    pub final_windows: AtomicU64,
    /// Sum of the event counts of final windows.
    pub events_in_final_windows: AtomicU64,
}

struct Pane {
    acc: Accumulator,
    firings: u32,
}

/// `(time, kind, key, window start, window end)`, ordered by time, then fire before cleanup.
type Timer = (i64, TimerKind, Box<[u8]>, i64, i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// The window's end: fire on time.
    Fire,
    /// The window's end plus allowed lateness: purge.
    Cleanup,
}

/// A keyed event-time window operator (Flink's `WindowOperator` with `EventTimeTrigger`).
///
/// Semantics, per event, with `wm` the watermark the event meets:
/// - a window `w` is *late* when `w.end - 1 + allowed_lateness <= wm`; an event whose
///   windows are all late goes to the [`LATE_OUTPUT`] side output, unchanged;
/// - a window fires *on time* when the watermark reaches `w.end - 1`;
/// - an event added to a window that already fired (`w.end - 1 <= wm`, not late) fires it
///   again at once, a *late firing*; results are cumulative;
/// - a window's state is purged when the watermark reaches `w.end - 1 + allowed_lateness`;
///   its last firing is then final.
///
/// Each firing emits one event: timestamp `w.end - 1`, the key, and a JSON object value
/// `{"key", "window_start", "window_end" (ms), "start" (RFC 3339 UTC), "timing": "on_time"|"late",
/// "firing": n, <aggregates>}`, where `firing` counts the window's earlier firings. The
/// last firing of a window (highest `firing`) is its final value.
///
/// The working state lives on the heap, keyed by `(key, window)`; timers in an ordered
/// set fire in time order as the watermark advances. At a checkpoint every pane is
/// written to the keyed state store as map state `panes` (user key: window start and end,
/// value: firings and accumulator), with the operator's watermark as its operator state;
/// a restore reads them back and rebuilds the timers (and, for sessions, the merging
/// window sets), so windows rescale by key group like any keyed state.
pub struct WindowOperator {
    config: WindowConfig,
    ctx: Option<OperatorContext>,
    watermark: i64,
    /// Window contents per (key, window).
    panes: HeapKeyedState<TimeWindow, Pane>,
    /// Per key, the live session windows (merging assigners only; Flink's `MergingWindowSet`).
    sessions: HeapKeyedState<(), Vec<TimeWindow>>,
    timers: BTreeSet<Timer>,
    windows: Vec<TimeWindow>,
    results: Batch,
    late: Batch,
    json: String,
    counters: Arc<WindowCounters>,
    /// The keyed state store that checkpoints see, and the id of `panes` in it.
    store: Option<(KeyedStateStore, StateId)>,
}

/// The window operator's state in the store.
const PANES: &str = "panes";

impl WindowOperator {
    /// A window operator that reports into `counters`.
    pub fn new(config: WindowConfig, counters: Arc<WindowCounters>) -> Self {
        WindowOperator {
            panes: HeapKeyedState::new(config.max_parallelism),
            sessions: HeapKeyedState::new(config.max_parallelism),
            config,
            ctx: None,
            watermark: i64::MIN,
            timers: BTreeSet::new(),
            windows: Vec::new(),
            results: Batch::new(),
            late: Batch::new(),
            json: String::new(),
            counters,
            store: None,
        }
    }

    fn state_error(&self, e: impl std::fmt::Display) -> OperatorError {
        OperatorError::Fault {
            context: self.context(),
            message: format!("window state: {e}"),
        }
    }

    /// Loads the panes of a restored store into the working state and rebuilds timers.
    fn load(&mut self, store: &mut KeyedStateStore, id: StateId) -> Result<(), String> {
        let mut loaded = Vec::new();
        let mut bad = false;
        let aggregates = &self.config.aggregates;
        store
            .for_each_entry(id, |key, suffix, value| {
                let window = (suffix.len() == 16).then(|| TimeWindow {
                    start: i64::from_be_bytes(suffix[..8].try_into().expect("8")),
                    end: i64::from_be_bytes(suffix[8..].try_into().expect("8")),
                });
                let pane = value
                    .get(4..)
                    .and_then(|acc| aggregates.decode_accumulator(acc));
                match (window, pane) {
                    (Some(w), Some(acc)) => {
                        let firings = u32::from_le_bytes(value[..4].try_into().expect("4"));
                        loaded.push((key.to_vec(), w, Pane { acc, firings }));
                    }
                    _ => bad = true,
                }
            })
            .map_err(|e| e.0)?;
        if bad {
            return Err(
                "a restored window does not match this window's aggregates (was the job changed?)"
                    .into(),
            );
        }
        for (key, w, pane) in loaded {
            self.panes.put(&key, w, pane);
            if self.config.assigner.is_merging() {
                self.sessions.upsert(&key, (), Vec::new, |set| set.push(w));
            }
            // The on-time timer only if the watermark has not reached it yet.
            self.register_timers(&key, w);
        }
        Ok(())
    }

    /// Writes every pane to the store (replacing what the last checkpoint wrote).
    fn save(&mut self) -> Result<(), String> {
        let Some((store, id)) = self.store.as_mut() else {
            return Ok(());
        };
        let id = *id;
        store.clear_all_keys(id).map_err(|e| e.0)?;
        let mut err = None;
        let mut value = Vec::new();
        self.panes
            .for_each_in_key_groups(store.key_groups(), |key, w, pane| {
                if err.is_some() {
                    return;
                }
                let mut window = [0u8; 16];
                window[..8].copy_from_slice(&w.start.to_be_bytes());
                window[8..].copy_from_slice(&w.end.to_be_bytes());
                value.clear();
                value.extend_from_slice(&pane.firings.to_le_bytes());
                pane.acc.encode(&mut value);
                store.set_current_key(key);
                if let Err(e) = store.map_put(id, &window, &value) {
                    err = Some(e.0);
                }
            });
        err.map_or(Ok(()), Err)
    }

    /// Live windows (panes) held in state.
    pub fn live_windows(&self) -> usize {
        self.panes.len()
    }

    fn context(&self) -> String {
        self.ctx
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "window operator".into())
    }

    #[inline]
    fn is_late(&self, w: &TimeWindow) -> bool {
        w.max_timestamp()
            .saturating_add(self.config.allowed_lateness)
            <= self.watermark
    }

    fn register_timers(&mut self, key: &[u8], w: TimeWindow) {
        if w.max_timestamp() > self.watermark {
            self.timers.insert((
                w.max_timestamp(),
                TimerKind::Fire,
                key.into(),
                w.start,
                w.end,
            ));
        }
        let cleanup = w
            .max_timestamp()
            .saturating_add(self.config.allowed_lateness);
        self.timers
            .insert((cleanup, TimerKind::Cleanup, key.into(), w.start, w.end));
    }

    fn emit(&mut self, key: &[u8], w: TimeWindow, on_time: bool) {
        let (json, aggregates) = (&mut self.json, &self.config.aggregates);
        let rendered = self.panes.update(key, w, |pane| {
            json.clear();
            json.push_str("{\"key\":");
            write_json_key(json, key);
            let _ = write!(
                json,
                ",\"window_start\":{},\"window_end\":{},\"start\":\"",
                w.start, w.end
            );
            write_time(json, w.start);
            let _ = write!(
                json,
                "\",\"timing\":\"{}\",\"firing\":{},",
                if on_time { "on_time" } else { "late" },
                pane.firings
            );
            aggregates.write_json_members(&pane.acc, json);
            json.push('}');
            pane.firings += 1;
        });
        if rendered.is_none() {
            return;
        }
        self.results
            .push(w.max_timestamp(), key, self.json.as_bytes());
        self.counters.firings.fetch_add(1, Relaxed);
        if !on_time {
            self.counters.late_firings.fetch_add(1, Relaxed);
        }
    }

    /// Advances the watermark, firing and purging windows in timer order.
    fn advance(&mut self, watermark: i64) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        while self.timers.first().is_some_and(|t| t.0 <= watermark) {
            let (_, kind, key, start, end) = self.timers.pop_first().expect("checked non-empty");
            let w = TimeWindow { start, end };
            match kind {
                TimerKind::Fire => self.emit(&key, w, true),
                TimerKind::Cleanup => {
                    if let Some(p) = self.panes.remove(&key, w) {
                        self.counters.final_windows.fetch_add(1, Relaxed);
                        self.counters
                            .events_in_final_windows
                            .fetch_add(p.acc.count, Relaxed);
                    }
                    if self.config.assigner.is_merging() {
                        let emptied = self.sessions.update(&key, (), |set| {
                            set.retain(|x| *x != w);
                            set.is_empty()
                        });
                        if emptied == Some(true) {
                            self.sessions.remove(&key, ());
                        }
                    }
                }
            }
        }
        self.results.push_watermark(watermark);
    }

    fn add_to_pane(
        &mut self,
        key: &[u8],
        w: TimeWindow,
        value: &[u8],
        timestamp: i64,
    ) -> Result<(), OperatorError> {
        let aggregates = &self.config.aggregates;
        let (added, created) = self.panes.upsert(
            key,
            w,
            || Pane {
                acc: aggregates.create(),
                firings: 0,
            },
            |pane| aggregates.add(&mut pane.acc, value),
        );
        if created {
            self.register_timers(key, w);
        }
        added.map_err(|e| OperatorError::Fault {
            context: self.context(),
            message: format!(
                "cannot aggregate the event with key {:?} at {}: {e}",
                String::from_utf8_lossy(key),
                format_time(timestamp)
            ),
        })?;
        if w.max_timestamp() <= self.watermark {
            self.emit(key, w, false);
        }
        Ok(())
    }

    fn process_event(&mut self, batch: &Batch, i: usize) -> Result<(), OperatorError> {
        let (ts, key, value) = (batch.timestamp(i), batch.key(i), batch.value(i));
        if self.config.assigner.is_merging() {
            let mut windows = std::mem::take(&mut self.windows);
            self.config.assigner.assign(ts, &mut windows);
            let w = windows[0];
            self.windows = windows;
            // Late alone, the window still counts if it touches a live session of the key
            // (it merges into it); one look-up of the key's sessions either way.
            let late_alone = self.is_late(&w);
            let (merged, created) = self.sessions.upsert(key, (), Vec::new, |set| {
                if late_alone && !set.iter().any(|x| x.intersects(&w)) {
                    None
                } else {
                    Some(merge_session_window(set, w))
                }
            });
            let Some((merged, absorbed)) = merged else {
                if created {
                    self.sessions.remove(key, ());
                }
                return self.late_event(batch, i);
            };
            let mut pane: Option<Pane> = None;
            for a in absorbed {
                if let Some(p) = self.panes.remove(key, a) {
                    match &mut pane {
                        None => pane = Some(p),
                        Some(acc) => {
                            self.config.aggregates.merge(&mut acc.acc, &p.acc);
                            acc.firings = acc.firings.max(p.firings);
                        }
                    }
                }
            }
            if let Some(p) = pane {
                self.panes.put(key, merged, p);
                self.register_timers(key, merged);
            }
            self.counters.events_assigned.fetch_add(1, Relaxed);
            return self.add_to_pane(key, merged, value, ts);
        }
        let mut windows = std::mem::take(&mut self.windows);
        self.config.assigner.assign(ts, &mut windows);
        let mut assigned = false;
        let mut result = Ok(());
        for &w in &windows {
            if self.is_late(&w) {
                continue;
            }
            assigned = true;
            result = self.add_to_pane(key, w, value, ts);
            if result.is_err() {
                break;
            }
        }
        self.windows = windows;
        result?;
        if assigned {
            self.counters.events_assigned.fetch_add(1, Relaxed);
            Ok(())
        } else {
            self.late_event(batch, i)
        }
    }

    fn late_event(&mut self, batch: &Batch, i: usize) -> Result<(), OperatorError> {
        self.late.push_from(batch, i);
        self.counters.late_events.fetch_add(1, Relaxed);
        Ok(())
    }

    fn flush(&mut self, out: &mut dyn Collector) {
        if !self.results.is_void() {
            out.collect(std::mem::take(&mut self.results));
        }
        if !self.late.is_empty() {
            out.collect_side(LATE_OUTPUT, std::mem::take(&mut self.late));
        }
    }
}

impl Operator for WindowOperator {
    fn initialize_state(&mut self, state: StateContext) -> Result<(), OperatorError> {
        let Some(mut store) = state.keyed else {
            return Ok(());
        };
        // The restored watermark: windows that fired before the snapshot do not fire on
        // time again. After a rescale, the lowest of the old subtasks' (all of them: a
        // new subtask may inherit key groups from any).
        if let Some(w) = state
            .union_operator_state
            .iter()
            .filter_map(|b| Some(i64::from_le_bytes(b.as_slice().try_into().ok()?)))
            .min()
        {
            self.watermark = w;
        }
        let id = store
            .declare(StateDescriptor {
                name: PANES.into(),
                kind: StateKind::Map,
                ttl_ms: None,
            })
            .map_err(|e| self.state_error(e))?;
        self.load(&mut store, id).map_err(|e| self.state_error(e))?;
        self.store = Some((store, id));
        Ok(())
    }

    fn snapshot_operator_state(
        &mut self,
        _checkpoint: u64,
    ) -> Result<Option<Vec<u8>>, OperatorError> {
        if self.store.is_none() {
            return Ok(None);
        }
        self.save().map_err(|e| self.state_error(e))?;
        Ok(Some(self.watermark.to_le_bytes().to_vec()))
    }

    fn keyed_state(&mut self) -> Option<&mut KeyedStateStore> {
        self.store.as_mut().map(|(s, _)| s)
    }

    fn open(&mut self, ctx: &OperatorContext) -> Result<(), OperatorError> {
        self.ctx = Some(ctx.clone());
        Ok(())
    }

    fn process_batch(
        &mut self,
        mut batch: Batch,
        out: &mut dyn Collector,
    ) -> Result<(), OperatorError> {
        let marks = batch.take_marks();
        let mut next = marks.iter().peekable();
        for i in 0..batch.len() {
            while let Some(m) = next.next_if(|m| m.row as usize <= i) {
                self.advance(m.watermark);
            }
            if let Err(e) = self.process_event(&batch, i) {
                self.flush(out);
                return Err(e);
            }
        }
        for m in next {
            self.advance(m.watermark);
        }
        self.flush(out);
        Ok(())
    }

    fn process_watermark(
        &mut self,
        watermark: i64,
        out: &mut dyn Collector,
    ) -> Result<(), OperatorError> {
        self.advance(watermark);
        self.flush(out);
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Collector) -> Result<(), OperatorError> {
        self.flush(out);
        if !self.panes.is_empty() {
            return Err(OperatorError::Fault {
                context: self.context(),
                message: format!(
                    "{} windows still in state at the end of input",
                    self.panes.len()
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::ValueFormat;
    use crate::window::{AggregateFn, AggregateSpec};

    type Out = crate::operator::VecCollector;

    /// The result rows, parsed.
    fn results(out: &Out) -> Vec<serde_json::Value> {
        out.events()
            .map(|e| serde_json::from_slice(e.value).unwrap())
            .collect()
    }

    /// The timestamps of the late events (the window operator has no other side output).
    fn late(out: &Out) -> Vec<i64> {
        assert!(out.side.iter().all(|(name, _)| name == LATE_OUTPUT));
        out.side_events(LATE_OUTPUT).map(|e| e.timestamp).collect()
    }

    fn op(assigner: WindowAssigner, lateness: i64) -> WindowOperator {
        let aggs = Aggregates::new(
            vec![AggregateSpec {
                name: "n".into(),
                function: AggregateFn::Count,
                field: None,
            }],
            &ValueFormat::Json,
        )
        .unwrap();
        WindowOperator::new(
            WindowConfig {
                assigner,
                allowed_lateness: lateness,
                aggregates: aggs,
                max_parallelism: 128,
            },
            Arc::default(),
        )
    }

    /// Feeds `(watermark before, timestamp)` pairs, one event each, key "k".
    fn feed(o: &mut WindowOperator, out: &mut Out, steps: &[(i64, i64)]) {
        let mut b = Batch::new();
        for &(wm, t) in steps {
            b.push_watermark(wm);
            b.push(t, b"k", b"{}");
        }
        o.process_batch(b, out).unwrap();
    }

    fn summary(out: &Out) -> Vec<(i64, String, i64, i64)> {
        results(out)
            .iter()
            .map(|r| {
                (
                    r["window_start"].as_i64().unwrap(),
                    r["timing"].as_str().unwrap().to_string(),
                    r["firing"].as_i64().unwrap(),
                    r["n"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn event_at_window_end_belongs_to_the_next_window() {
        let mut o = op(
            WindowAssigner::Tumbling {
                size: 10,
                offset: 0,
            },
            0,
        );
        let mut out = Out::default();
        feed(&mut o, &mut out, &[(0, 9), (0, 10)]);
        o.process_watermark(i64::MAX, &mut out).unwrap();
        assert_eq!(
            summary(&out),
            [(0, "on_time".into(), 0, 1), (10, "on_time".into(), 0, 1)]
        );
    }

    #[test]
    fn fires_exactly_when_the_watermark_reaches_end_minus_one() {
        let mut o = op(
            WindowAssigner::Tumbling {
                size: 10,
                offset: 0,
            },
            0,
        );
        let mut out = Out::default();
        feed(&mut o, &mut out, &[(0, 5)]);
        o.process_watermark(8, &mut out).unwrap();
        assert!(results(&out).is_empty());
        o.process_watermark(9, &mut out).unwrap();
        assert_eq!(summary(&out), [(0, "on_time".into(), 0, 1)]);
    }

    #[test]
    fn allowed_lateness_exactly_reached_is_late() {
        let mut o = op(
            WindowAssigner::Tumbling {
                size: 10,
                offset: 0,
            },
            5,
        );
        let mut out = Out::default();
        feed(&mut o, &mut out, &[(0, 1)]);
        // wm 13: window [0,10) fired (9 <= 13) but 9 + 5 = 14 > 13: a late firing.
        feed(&mut o, &mut out, &[(13, 2)]);
        // wm 14 = end - 1 + lateness: late, to the side output; the window is purged.
        feed(&mut o, &mut out, &[(14, 3)]);
        assert_eq!(
            summary(&out),
            [(0, "on_time".into(), 0, 1), (0, "late".into(), 1, 2)]
        );
        assert_eq!(late(&out), [3]);
        assert_eq!(o.live_windows(), 0);
    }

    #[test]
    fn sliding_event_is_late_only_when_all_its_windows_are() {
        let mut o = op(
            WindowAssigner::Sliding {
                size: 20,
                slide: 10,
                offset: 0,
            },
            0,
        );
        let mut out = Out::default();
        // t = 15 is in [0,20) and [10,30). wm 19: [0,20) is late, [10,30) is not.
        feed(&mut o, &mut out, &[(19, 15)]);
        assert!(late(&out).is_empty());
        // t = 5 is only in [-10,10) and [0,20), both late at wm 19.
        feed(&mut o, &mut out, &[(19, 5)]);
        assert_eq!(late(&out), [5]);
        o.process_watermark(i64::MAX, &mut out).unwrap();
        assert_eq!(summary(&out), [(10, "on_time".into(), 0, 1)]);
    }

    #[test]
    fn session_windows_merge_and_fire_once_merged() {
        let mut o = op(WindowAssigner::Session { gap: 10 }, 0);
        let mut out = Out::default();
        feed(&mut o, &mut out, &[(0, 0), (0, 30), (0, 15)]);
        // [0,10) and [30,40) are bridged by [15,25)? 15..25 touches neither 10 nor 30:
        // three sessions; then 8 joins [0,10)+[8,18)+[15,25) and 25 touches [30,40).
        feed(&mut o, &mut out, &[(0, 8), (0, 25)]);
        o.process_watermark(i64::MAX, &mut out).unwrap();
        let got: Vec<(i64, i64, i64)> = results(&out)
            .iter()
            .map(|r| {
                (
                    r["window_start"].as_i64().unwrap(),
                    r["window_end"].as_i64().unwrap(),
                    r["n"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, [(0, 40, 5)]);
    }

    #[test]
    fn late_session_event_that_touches_a_live_session_merges() {
        let mut o = op(WindowAssigner::Session { gap: 10 }, 5);
        let mut out = Out::default();
        feed(&mut o, &mut out, &[(0, 20)]); // [20,30)
        // wm 25: a new session [0,10) alone would be late (9 + 5 <= 25).
        feed(&mut o, &mut out, &[(25, 0)]);
        assert_eq!(late(&out), [0]);
        // [12,22) touches [20,30): merged into [12,30), not late.
        feed(&mut o, &mut out, &[(25, 12)]);
        o.process_watermark(i64::MAX, &mut out).unwrap();
        let results = results(&out);
        let last = results.last().unwrap();
        assert_eq!(
            (last["window_start"].as_i64(), last["n"].as_i64()),
            (Some(12), Some(2))
        );
    }
}
