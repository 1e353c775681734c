//! Per-vertex figures of a job, from the runtime's live counters: totals since the job
//! started, and rates over the last sampling interval (about a second).

use serde::{Deserialize, Serialize};
use sluice_core::runtime::{FailureCounters, JobMetrics, SubtaskMetrics, VertexMetrics};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;
use utoipa::ToSchema;

/// The counters of one subtask at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    records_in: u64,
    records_out: u64,
    side_records_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    busy_ns: u64,
    backpressured_ns: u64,
}

impl Counters {
    fn of(s: &SubtaskMetrics) -> Counters {
        Counters {
            records_in: s.records_in.load(Relaxed),
            records_out: s.records_out.load(Relaxed),
            side_records_out: s.side_records_out.load(Relaxed),
            bytes_in: s.bytes_in.load(Relaxed),
            bytes_out: s.bytes_out.load(Relaxed),
            busy_ns: s.busy_ns.load(Relaxed),
            backpressured_ns: s.backpressured_ns.load(Relaxed),
        }
    }
}

/// Every subtask's counters at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    at: Instant,
    /// Per vertex, per subtask.
    counters: Vec<Vec<Counters>>,
}

impl Sample {
    /// The counters of `metrics` now.
    pub fn take(metrics: &JobMetrics) -> Sample {
        Sample {
            at: Instant::now(),
            counters: metrics
                .vertices
                .iter()
                .map(|v| v.subtasks.iter().map(|s| Counters::of(s)).collect())
                .collect(),
        }
    }
}

/// Figures of one subtask (or, summed, of a vertex). Totals count from the job's start
/// (over restarts: a restored job counts again what it replays); rates are per second
/// over the last sampling interval, 0 before the first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Figures {
    /// Events received.
    pub records_in: u64,
    /// Events emitted on the main output.
    pub records_out: u64,
    /// Events emitted on side outputs.
    pub side_records_out: u64,
    /// Bytes received (batches' in-memory size: timestamps, offsets, keys, values).
    pub bytes_in: u64,
    /// Bytes emitted on the main output, counted as `bytes_in`.
    pub bytes_out: u64,
    /// Events received per second.
    pub records_in_per_second: f64,
    /// Events emitted per second (main output).
    pub records_out_per_second: f64,
    /// Bytes received per second.
    pub bytes_in_per_second: f64,
    /// Bytes emitted per second (main output).
    pub bytes_out_per_second: f64,
    /// Time spent working, ms (summed over subtasks for a vertex).
    pub busy_ms: u64,
    /// Time spent waiting on full downstream channels (backpressure), ms.
    pub backpressured_ms: u64,
    /// Busy ms per second of wall time, 0 to 1000 per subtask (a vertex: the highest
    /// of its subtasks, as Flink shows it).
    pub busy_ms_per_second: f64,
    /// Backpressured ms per second of wall time, 0 to 1000 per subtask (a vertex: the
    /// highest of its subtasks).
    pub backpressured_ms_per_second: f64,
    /// The current watermark, ms since the epoch (a vertex: the lowest of its
    /// subtasks); none before the first.
    pub watermark: Option<i64>,
}

/// Failed calls of a vertex's user operator, summed over its subtasks, since the job
/// started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct FailureFigures {
    /// Calls that trapped.
    pub traps: u64,
    /// Calls that hit a limit (memory, time, output).
    pub limit_hits: u64,
    /// Calls that returned an error or an invalid output.
    pub errors: u64,
    /// Events and timers dropped under the `skip` policy.
    pub skipped_records: u64,
    /// Records sent to the `dead-letter` side output.
    pub dead_lettered_records: u64,
}

impl FailureFigures {
    fn of(v: &VertexMetrics) -> FailureFigures {
        let sum = |f: fn(&FailureCounters) -> &AtomicU64| {
            v.subtasks
                .iter()
                .map(|s| f(&s.failures).load(Relaxed))
                .sum()
        };
        FailureFigures {
            traps: sum(|c| &c.traps),
            limit_hits: sum(|c| &c.limit_hits),
            errors: sum(|c| &c.errors),
            skipped_records: sum(|c| &c.skipped_records),
            dead_lettered_records: sum(|c| &c.dead_lettered_records),
        }
    }
}

/// Figures of one vertex.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VertexMetricsView {
    /// The vertex id.
    pub id: String,
    /// `source`, `operator`, `window` or `sink`.
    pub kind: String,
    /// Number of subtasks.
    pub parallelism: usize,
    /// The vertex's figures: sums over its subtasks (rates too), except where a field
    /// says otherwise.
    #[serde(flatten)]
    pub figures: Figures,
    /// Events too late for all their windows, sent to the `late` side output (windows;
    /// 0 for other vertices).
    pub late_records: u64,
    /// Window results emitted, every firing (windows; 0 for other vertices).
    pub window_firings: u64,
    /// Failed calls of its user operator (operators; 0 for other vertices).
    pub failures: FailureFigures,
    /// Per subtask, in subtask order.
    pub subtasks: Vec<Figures>,
}

/// Figures of a job at one moment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobMetricsView {
    /// The job id.
    pub job: String,
    /// When the figures were read, ms since the epoch.
    pub time: i64,
    /// Per vertex, in graph order.
    pub vertices: Vec<VertexMetricsView>,
}

fn watermark(wm: i64) -> Option<i64> {
    // i64::MIN: none yet; i64::MAX: the end of a bounded input.
    (wm != i64::MIN).then_some(wm)
}

fn figures(now: &Counters, before: Option<&Counters>, secs: f64, wm: i64) -> Figures {
    let rate = |f: fn(&Counters) -> u64| match before {
        Some(b) if secs > 0.0 => f(now).saturating_sub(f(b)) as f64 / secs,
        _ => 0.0,
    };
    Figures {
        records_in: now.records_in,
        records_out: now.records_out,
        side_records_out: now.side_records_out,
        bytes_in: now.bytes_in,
        bytes_out: now.bytes_out,
        records_in_per_second: rate(|c| c.records_in),
        records_out_per_second: rate(|c| c.records_out),
        bytes_in_per_second: rate(|c| c.bytes_in),
        bytes_out_per_second: rate(|c| c.bytes_out),
        busy_ms: now.busy_ns / 1_000_000,
        backpressured_ms: now.backpressured_ns / 1_000_000,
        busy_ms_per_second: (rate(|c| c.busy_ns) / 1e6).min(1000.0),
        backpressured_ms_per_second: (rate(|c| c.backpressured_ns) / 1e6).min(1000.0),
        watermark: watermark(wm),
    }
}

fn vertex_view(
    v: &VertexMetrics,
    now: &[Counters],
    before: Option<&[Counters]>,
    secs: f64,
) -> VertexMetricsView {
    let subtasks: Vec<Figures> = now
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let wm = v.subtasks[i].watermark.load(Relaxed);
            figures(c, before.and_then(|b| b.get(i)), secs, wm)
        })
        .collect();
    let mut total = Figures {
        watermark: watermark(v.watermark()),
        ..Figures::default()
    };
    for s in &subtasks {
        total.records_in += s.records_in;
        total.records_out += s.records_out;
        total.side_records_out += s.side_records_out;
        total.bytes_in += s.bytes_in;
        total.bytes_out += s.bytes_out;
        total.records_in_per_second += s.records_in_per_second;
        total.records_out_per_second += s.records_out_per_second;
        total.bytes_in_per_second += s.bytes_in_per_second;
        total.bytes_out_per_second += s.bytes_out_per_second;
        total.busy_ms += s.busy_ms;
        total.backpressured_ms += s.backpressured_ms;
        total.busy_ms_per_second = total.busy_ms_per_second.max(s.busy_ms_per_second);
        total.backpressured_ms_per_second = total
            .backpressured_ms_per_second
            .max(s.backpressured_ms_per_second);
    }
    VertexMetricsView {
        id: v.id.clone(),
        kind: v.kind.to_string(),
        parallelism: v.subtasks.len(),
        figures: total,
        late_records: v.late_records(),
        window_firings: v.window_sum(|w| &w.firings),
        failures: FailureFigures::of(v),
        subtasks,
    }
}

/// The figures of job `job` now (`now`, taken from `metrics`), with rates since
/// `before`.
pub fn view(
    job: &str,
    metrics: &JobMetrics,
    now: &Sample,
    before: Option<&Sample>,
) -> JobMetricsView {
    let secs = before.map_or(0.0, |b| now.at.duration_since(b.at).as_secs_f64());
    JobMetricsView {
        job: job.to_string(),
        time: sluice_core::time::now_ms(),
        vertices: metrics
            .vertices
            .iter()
            .enumerate()
            .map(|(i, v)| {
                vertex_view(
                    v,
                    &now.counters[i],
                    before.map(|b| b.counters[i].as_slice()),
                    secs,
                )
            })
            .collect(),
    }
}
