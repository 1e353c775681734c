use super::aggregate::{Accumulator, Aggregates};
use super::assigner::{TimeWindow, WindowAssigner, merge_session_window};
use crate::batch::Batch;
use crate::format::write_json_str;
use crate::operator::{Collector, Operator, OperatorContext, OperatorError};
use crate::time::format_time;
use hashbrown::{Equivalent, HashMap};
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

type PaneKey = (Box<[u8]>, i64, i64);

/// Borrowed form of a [`PaneKey`] for look-ups without allocating; hashes exactly like
/// the owned tuple.
#[derive(Hash)]
struct PaneRef<'a>(&'a [u8], i64, i64);

impl Equivalent<PaneKey> for PaneRef<'_> {
    fn equivalent(&self, k: &PaneKey) -> bool {
        *k.0 == *self.0 && k.1 == self.1 && k.2 == self.2
    }
}

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
/// `{"key", "window_start", "window_end", "start", "end", "timing": "on_time"|"late",
/// "firing": n, <aggregates>}`, where `firing` counts the window's earlier firings. The
/// last firing of a window (highest `firing`) is its final value.
///
/// State lives on the heap, keyed by `(key, window)`; timers in an ordered set fire in
/// time order as the watermark advances.
pub struct WindowOperator {
    config: WindowConfig,
    ctx: Option<OperatorContext>,
    watermark: i64,
    panes: HashMap<PaneKey, Pane>,
    sessions: HashMap<Box<[u8]>, Vec<TimeWindow>>,
    timers: BTreeSet<(i64, TimerKind, Box<[u8]>, i64, i64)>,
    windows: Vec<TimeWindow>,
    results: Batch,
    late: Batch,
    json: String,
    counters: Arc<WindowCounters>,
}

impl WindowOperator {
    /// A window operator that reports into `counters`.
    pub fn new(config: WindowConfig, counters: Arc<WindowCounters>) -> Self {
        WindowOperator {
            config,
            ctx: None,
            watermark: i64::MIN,
            panes: HashMap::new(),
            sessions: HashMap::new(),
            timers: BTreeSet::new(),
            windows: Vec::new(),
            results: Batch::new(),
            late: Batch::new(),
            json: String::new(),
            counters,
        }
    }

    /// Live windows (panes) held in state.
    pub fn live_windows(&self) -> usize {
        self.panes.len()
    }

    fn context(&self) -> String {
        self.ctx.as_ref().map(|c| c.to_string()).unwrap_or_else(|| "window operator".into())
    }

    #[inline]
    fn is_late(&self, w: &TimeWindow) -> bool {
        w.max_timestamp().saturating_add(self.config.allowed_lateness) <= self.watermark
    }

    fn register_timers(&mut self, key: &[u8], w: TimeWindow) {
        if w.max_timestamp() > self.watermark {
            self.timers.insert((w.max_timestamp(), TimerKind::Fire, key.into(), w.start, w.end));
        }
        let cleanup = w.max_timestamp().saturating_add(self.config.allowed_lateness);
        self.timers.insert((cleanup, TimerKind::Cleanup, key.into(), w.start, w.end));
    }

    fn emit(&mut self, key: &[u8], w: TimeWindow, on_time: bool) {
        let Some(pane) = self.panes.get_mut(&PaneRef(key, w.start, w.end)) else {
            return;
        };
        let json = &mut self.json;
        json.clear();
        json.push_str("{\"key\":");
        match std::str::from_utf8(key) {
            Ok(s) => write_json_str(json, s),
            Err(_) => json.push_str(&serde_json::to_string(key).expect("bytes serialize")),
        }
        let _ = write!(
            json,
            ",\"window_start\":{},\"window_end\":{},\"start\":\"{}\",\"end\":\"{}\",\"timing\":\"{}\",\"firing\":{},",
            w.start,
            w.end,
            format_time(w.start),
            format_time(w.end),
            if on_time { "on_time" } else { "late" },
            pane.firings
        );
        self.config.aggregates.write_json_members(&pane.acc, json);
        json.push('}');
        pane.firings += 1;
        self.results.push(w.max_timestamp(), key, json.as_bytes());
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
                    if let Some(p) = self.panes.remove(&PaneRef(&key, start, end)) {
                        self.counters.final_windows.fetch_add(1, Relaxed);
                        self.counters.events_in_final_windows.fetch_add(p.acc.count, Relaxed);
                    }
                    if let Some(set) = self.sessions.get_mut(&*key) {
                        set.retain(|x| *x != w);
                        if set.is_empty() {
                            self.sessions.remove(&*key);
                        }
                    }
                }
            }
        }
        self.results.push_watermark(watermark);
    }

    fn add_to_pane(&mut self, key: &[u8], w: TimeWindow, value: &[u8], timestamp: i64) -> Result<(), OperatorError> {
        let pane = match self.panes.get_mut(&PaneRef(key, w.start, w.end)) {
            Some(p) => p,
            None => {
                self.register_timers(key, w);
                self.panes
                    .entry((key.into(), w.start, w.end))
                    .or_insert(Pane { acc: self.config.aggregates.create(), firings: 0 })
            }
        };
        self.config.aggregates.add(&mut pane.acc, value).map_err(|e| OperatorError::Fault {
            context: self.ctx.as_ref().map(|c| c.to_string()).unwrap_or_default(),
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
            if !self.sessions.contains_key(key) {
                self.sessions.insert(key.into(), Vec::new());
            }
            let set = self.sessions.get_mut(key).expect("inserted above");
            let touches = set.iter().any(|x| x.intersects(&w));
            if !touches && w.max_timestamp().saturating_add(self.config.allowed_lateness) <= self.watermark {
                if set.is_empty() {
                    self.sessions.remove(key);
                }
                return self.late_event(batch, i);
            }
            let (merged, absorbed) = merge_session_window(set, w);
            let mut pane: Option<Pane> = None;
            for a in absorbed {
                if let Some(p) = self.panes.remove(&PaneRef(key, a.start, a.end)) {
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
                self.panes.insert((key.into(), merged.start, merged.end), p);
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
    fn open(&mut self, ctx: &OperatorContext) -> Result<(), OperatorError> {
        self.ctx = Some(ctx.clone());
        Ok(())
    }

    fn process_batch(&mut self, mut batch: Batch, out: &mut dyn Collector) -> Result<(), OperatorError> {
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

    fn process_watermark(&mut self, watermark: i64, out: &mut dyn Collector) -> Result<(), OperatorError> {
        self.advance(watermark);
        self.flush(out);
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Collector) -> Result<(), OperatorError> {
        self.flush(out);
        if !self.panes.is_empty() && self.watermark == i64::MAX {
            return Err(OperatorError::Fault {
                context: self.context(),
                message: format!("{} windows still in state at the end of input", self.panes.len()),
            });
        }
        Ok(())
    }
}
