use crate::operator::{FailureHandling, FailureKind, OperatorFailure};
use crate::window::WindowCounters;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How many handled failures a subtask keeps for the exception history (the oldest go
/// first; the counters count them all).
pub const KEPT_FAILURES: usize = 100;

/// Failed calls of a subtask's user operator, counted by kind and handling.
#[derive(Debug, Default)]
pub struct FailureCounters {
    /// Calls that trapped.
    pub traps: AtomicU64,
    /// Calls that hit a limit (memory, time, output).
    pub limit_hits: AtomicU64,
    /// Calls that returned an error.
    pub errors: AtomicU64,
    /// Events and timers dropped by the `skip` policy.
    pub skipped_records: AtomicU64,
    /// Records sent to the `dead-letter` side output.
    pub dead_lettered_records: AtomicU64,
    /// The latest handled failures (skipped or dead-lettered), at most
    /// [`KEPT_FAILURES`], oldest first.
    handled: Mutex<VecDeque<OperatorFailure>>,
}

impl FailureCounters {
    /// Counts `f`, and keeps it if it was handled.
    pub fn record(&self, f: OperatorFailure) {
        match f.kind {
            FailureKind::Trap => &self.traps,
            FailureKind::Limit => &self.limit_hits,
            FailureKind::Error => &self.errors,
        }
        .fetch_add(1, Relaxed);
        match f.handling {
            FailureHandling::Failed => return,
            FailureHandling::Skipped { records } => {
                self.skipped_records.fetch_add(records, Relaxed);
            }
            FailureHandling::DeadLettered => {
                self.dead_lettered_records.fetch_add(1, Relaxed);
            }
        }
        let mut kept = self.handled.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == KEPT_FAILURES {
            kept.pop_front();
        }
        kept.push_back(f);
    }

    /// The handled failures kept, oldest first.
    pub fn handled(&self) -> Vec<OperatorFailure> {
        self.handled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// Live figures of one subtask of one vertex. All counters only grow.
#[derive(Debug)]
pub struct SubtaskMetrics {
    /// Events received.
    pub records_in: AtomicU64,
    /// Events emitted on the main output.
    pub records_out: AtomicU64,
    /// Events emitted on side outputs.
    pub side_records_out: AtomicU64,
    /// Side-output events with no consumer in the graph (counted, never silently lost).
    pub unrouted_side_records: AtomicU64,
    /// The subtask's current watermark, ms (`i64::MIN` before the first).
    pub watermark: AtomicI64,
    /// Nanoseconds spent waiting for a full downstream channel (backpressure).
    pub backpressured_ns: AtomicU64,
    /// Bytes of the events received: the batches' in-memory size (timestamps, offsets,
    /// keys and values, as [`Batch::byte_size`] counts them).
    ///
    /// [`Batch::byte_size`]: crate::batch::Batch::byte_size
    pub bytes_in: AtomicU64,
    /// Bytes of the events emitted on the main output, counted as `bytes_in`.
    pub bytes_out: AtomicU64,
    /// Nanoseconds the subtask's thread spent working on input (a batch or a watermark)
    /// through its whole operator chain, less the time it was backpressured: Flink's
    /// busy time. Chained vertices run in one thread and report the same figure.
    pub busy_ns: AtomicU64,
    /// Failed calls of its user operator.
    pub failures: FailureCounters,
}

impl Default for SubtaskMetrics {
    fn default() -> Self {
        SubtaskMetrics {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            side_records_out: AtomicU64::new(0),
            unrouted_side_records: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            backpressured_ns: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            failures: FailureCounters::default(),
        }
    }
}

/// Live figures of one vertex.
#[derive(Debug)]
pub struct VertexMetrics {
    /// The vertex id.
    pub id: String,
    /// `source`, `operator`, `window` or `sink`.
    pub kind: &'static str,
    /// One entry per subtask.
    pub subtasks: Vec<Arc<SubtaskMetrics>>,
    /// For windows: one entry per subtask.
    pub windows: Vec<Arc<WindowCounters>>,
}

impl VertexMetrics {
    /// Sum of `f` over the subtasks.
    pub fn sum(&self, f: impl Fn(&SubtaskMetrics) -> &AtomicU64) -> u64 {
        self.subtasks.iter().map(|s| f(s).load(Relaxed)).sum()
    }

    /// Events too late for their windows (sent to the `late` side output), for a
    /// window; 0 for other vertices.
    pub fn late_records(&self) -> u64 {
        self.window_sum(|w| &w.late_events)
    }

    /// Sum of `f` over the window counters.
    pub fn window_sum(&self, f: impl Fn(&WindowCounters) -> &AtomicU64) -> u64 {
        self.windows.iter().map(|s| f(s).load(Relaxed)).sum()
    }

    /// The lowest watermark over the subtasks (the vertex's event-time progress).
    pub fn watermark(&self) -> i64 {
        self.subtasks
            .iter()
            .map(|s| s.watermark.load(Relaxed))
            .min()
            .unwrap_or(i64::MIN)
    }
}

/// Live figures of a running job, shared with whoever watches it (the CLI's progress
/// line, later the REST API).
#[derive(Debug)]
pub struct JobMetrics {
    /// One entry per vertex, in job-graph order.
    pub vertices: Vec<VertexMetrics>,
    /// When the job started.
    pub started: Instant,
}

impl JobMetrics {
    /// The vertex called `id`.
    pub fn vertex(&self, id: &str) -> Option<&VertexMetrics> {
        self.vertices.iter().find(|v| v.id == id)
    }
}

impl JobMetrics {
    /// Zeroed figures for every subtask of every vertex of `graph` (and window counters
    /// for windows), starting the clock now.
    pub fn for_graph(graph: &crate::graph::JobGraph) -> JobMetrics {
        let vertices = graph
            .vertices
            .iter()
            .map(|v| VertexMetrics {
                id: v.id.clone(),
                kind: v.kind.name(),
                subtasks: (0..v.parallelism).map(|_| Arc::default()).collect(),
                windows: match v.kind {
                    crate::graph::VertexKind::Window { .. } => {
                        (0..v.parallelism).map(|_| Arc::default()).collect()
                    }
                    _ => Vec::new(),
                },
            })
            .collect();
        JobMetrics {
            vertices,
            started: Instant::now(),
        }
    }
}
