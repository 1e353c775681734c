//! The task runtime: turns a [`JobGraph`] into an execution graph of subtasks — operator
//! chains on their own threads, joined by bounded channels (a full channel blocks its
//! producer: backpressure) — and runs it.
//!
//! Chaining follows Flink: a vertex joins its input's chain when the edge is `Forward`,
//! the parallelism is equal, it has that one input, and it is the only consumer of the
//! input's main output. Every other edge crosses a channel through a [`gate::Gate`].

mod adapters;
mod chain;
pub mod gate;
mod metrics;
mod plan;
mod restart;
mod supervisor;
mod swap;
mod task;

pub use metrics::{FailureCounters, JobMetrics, KEPT_FAILURES, SubtaskMetrics, VertexMetrics};
pub use restart::RestartStrategy;
pub use supervisor::{
    JobEvent, JobEventKind, JobOutcome, RestoreInfo, StartFrom, Supervisor, SupervisorHandle,
};
pub use swap::{OperatorSwaps, SwapStatus};

use crate::checkpoint::coordinator::{
    CheckpointStats, Coordinator, CoordinatorSetup, CoordinatorShared, Request,
};
use crate::checkpoint::restore::RestorePoint;
use crate::graph::{JobGraph, VertexKind};
use crossbeam_channel::unbounded;
use plan::ExecutionPlan;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use task::{InboundTask, SourceTask, TaskCheckpointing};

/// Why a job could not start or did not finish; the message names the vertex and
/// subtask and says what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JobError(pub String);

/// Where a failure happened: the subtask of a vertex whose operator failed (Flink's
/// exception history names the task and subtask the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureOrigin {
    /// The vertex id from the job spec.
    pub vertex: String,
    /// The subtask index, `0..parallelism`.
    pub subtask: usize,
}

/// A recorded failure: the error, whether it is a cause (`false`: only a symptom, such
/// as a channel that closed because another subtask died, which a cause replaces), and
/// where it happened when known.
struct Recorded {
    error: JobError,
    cause: bool,
    origin: Option<FailureOrigin>,
}

/// Shared between a job's threads: the first failure, and the cancel flag.
#[derive(Default)]
struct JobState {
    error: Mutex<Option<Recorded>>,
    cancelled: AtomicBool,
}

impl JobState {
    /// Records a failure that is a cause, and stops the job.
    fn fail(&self, e: JobError) {
        self.record(e, true, None);
    }

    /// Records a failure that is a cause and where it happened, and stops the job.
    fn fail_at(&self, e: JobError, origin: Option<FailureOrigin>) {
        self.record(e, true, origin);
    }

    /// Records a symptom: kept only if no cause is ever recorded.
    fn fail_symptom(&self, e: JobError) {
        self.record(e, false, None);
    }

    fn record(&self, error: JobError, cause: bool, origin: Option<FailureOrigin>) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        let replace = match &*slot {
            None => true,
            Some(r) => cause && !r.cause,
        };
        if replace {
            *slot = Some(Recorded {
                error,
                cause,
                origin,
            });
        }
        self.cancelled.store(true, Relaxed);
    }

    fn take_error(&self) -> Option<(JobError, Option<FailureOrigin>)> {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(|r| (r.error, r.origin))
    }
}

/// A job whose subtasks are running.
pub struct RunningJob {
    metrics: Arc<JobMetrics>,
    state: Arc<JobState>,
    threads: Vec<(String, JoinHandle<()>)>,
    coordinator: Option<Coordinator>,
}

impl RunningJob {
    /// Live figures.
    pub fn metrics(&self) -> &Arc<JobMetrics> {
        &self.metrics
    }

    /// Whether every subtask has stopped.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|(_, t)| t.is_finished())
    }

    /// Asks every subtask to stop; [`RunningJob::join`] then reports "cancelled".
    pub fn cancel(&self) {
        if self.is_finished() {
            return;
        }
        self.state.fail(JobError("the job was cancelled".into()));
    }

    /// Whether the job was cancelled or failed (it is stopping or stopped).
    pub fn is_cancelled(&self) -> bool {
        self.state.cancelled.load(Relaxed)
    }

    /// Takes a savepoint and waits for it; with `stop`, the job then stops (its sinks
    /// committed everything before the savepoint, and nothing after it was emitted).
    /// Returns the savepoint's folder in the checkpoint storage.
    ///
    /// Errors: the job does not checkpoint (no storage), a source has finished, or the
    /// savepoint failed (the message says why; a stopping job then goes on).
    pub fn savepoint(&self, stop: bool) -> Result<String, JobError> {
        let Some(c) = &self.coordinator else {
            return Err(JobError(
                "savepoints need checkpoint storage: set `checkpoints` in the job spec".into(),
            ));
        };
        let (reply, rx) = crossbeam_channel::bounded(1);
        c.requests
            .send(Request::Savepoint { stop, reply })
            .map_err(|_| JobError("the job has ended".into()))?;
        rx.recv()
            .map_err(|_| JobError("the job has ended".into()))?
            .map_err(JobError)
    }

    /// How many checkpoints and savepoints have completed so far (without copying them).
    pub fn checkpoint_count(&self) -> usize {
        self.coordinator.as_ref().map_or(0, |c| {
            c.shared
                .history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len()
        })
    }

    /// The checkpoints and savepoints completed so far.
    pub fn checkpoints(&self) -> Vec<CheckpointStats> {
        self.coordinator.as_ref().map_or_else(Vec::new, |c| {
            c.shared
                .history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    /// Waits for every subtask. Returns the first failure, if any.
    pub fn join(self) -> Result<(), JobError> {
        self.join_with_origin().map_err(|(e, _)| e)
    }

    /// Waits for every subtask, as [`RunningJob::join`]; a failure comes with the
    /// subtask it happened in, when it is known (an operator's failure).
    pub fn join_with_origin(self) -> Result<(), (JobError, Option<FailureOrigin>)> {
        for (name, t) in self.threads {
            // Subtasks catch their own panics; this is for one in the catching itself.
            if let Err(panic) = t.join() {
                self.state.fail(task::panic_error(&name, panic.as_ref()));
            }
        }
        if let Some(c) = self.coordinator {
            c.shutdown();
        }
        match self.state.take_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Starts `graph` from scratch. See [`start_with`].
pub fn start(graph: JobGraph) -> Result<RunningJob, JobError> {
    let graph = Arc::new(graph);
    let metrics = Arc::new(JobMetrics::for_graph(&graph));
    start_with(graph, None, metrics)
}

/// Checks that `point` can be restored into `graph`: same number of key groups, and no
/// state of a vertex the graph no longer has (unless allowed).
fn check_restore(graph: &JobGraph, point: &RestorePoint) -> Result<(), JobError> {
    let m = &point.metadata;
    if m.max_parallelism != graph.config.max_parallelism {
        return Err(JobError(format!(
            "{} was taken with max_parallelism {}, and the job now has {}: keyed state cannot be redistributed across a different number of key groups",
            point.folder, m.max_parallelism, graph.config.max_parallelism
        )));
    }
    for (id, v) in &m.vertices {
        if v.subtasks.is_empty() {
            continue;
        }
        let Some(vertex) = graph.vertices.iter().find(|x| &x.id == id) else {
            if point.allow_non_restored_state {
                tracing::warn!(
                    "{}: dropping the state of '{id}', which the job no longer has",
                    point.folder
                );
                continue;
            }
            return Err(JobError(format!(
                "{} has state for operator '{id}', which the job no longer has; rename the operator back, or allow non-restored state to drop it",
                point.folder
            )));
        };
        if let VertexKind::Source { .. } = vertex.kind
            && v.parallelism != vertex.parallelism
        {
            return Err(JobError(format!(
                "{}: source '{id}' had {} subtasks and now has {}: a source's positions cannot be redistributed",
                point.folder, v.parallelism, vertex.parallelism
            )));
        }
    }
    Ok(())
}

/// Starts `graph`, restoring its state from `restore` if given: validates it, builds the
/// execution graph, gives every operator its state and opens it, starts one thread per
/// chain subtask and, when the graph checkpoints, the checkpoint coordinator. Figures go
/// to `metrics` (made by [`JobMetrics::for_graph`] for this graph).
///
/// Errors: an invalid graph, aggregates that do not fit the window's input format, a
/// restore point that does not fit the graph, a source reader, sink or operator that
/// cannot be created, restored or opened.
pub fn start_with(
    graph: Arc<JobGraph>,
    restore: Option<&RestorePoint>,
    metrics: Arc<JobMetrics>,
) -> Result<RunningJob, JobError> {
    if let Some(p) = restore {
        check_restore(&graph, p)?;
    }
    let mut plan = ExecutionPlan::new(&graph)?;
    let state = Arc::new(JobState::default());
    let mut threads = Vec::new();
    let checkpoints = graph.durability.checkpoints.clone();
    let n_sources: usize = graph
        .vertices
        .iter()
        .filter(|v| matches!(v.kind, VertexKind::Source { .. }))
        .map(|v| v.parallelism)
        .sum();
    let shared = Arc::new(CoordinatorShared::new(n_sources));
    let (uploads, upload_rx) = unbounded();
    let (mut source_controls, mut controls) = (Vec::new(), Vec::new());
    // Open every operator and start every subtask; if anything fails, stop what was
    // started (it sees the job cancelled, or its channels close) before returning.
    let mut start_all = || -> Result<(), JobError> {
        for head in plan.heads() {
            let vertex = &graph.vertices[head];
            let p = vertex.parallelism;
            for s in 0..p {
                let chain = plan.build_chain(head, s, &metrics, restore)?;
                let name = format!("{}-{}", vertex.id, s);
                let st = state.clone();
                let checkpointing = checkpoints.as_ref().map(|_| {
                    let (tx, rx) = unbounded();
                    controls.push(tx.clone());
                    if matches!(vertex.kind, VertexKind::Source { .. }) {
                        source_controls.push(tx);
                    }
                    TaskCheckpointing {
                        control: rx,
                        uploads: uploads.clone(),
                        shared: shared.clone(),
                    }
                });
                let handle = match &vertex.kind {
                    VertexKind::Source {
                        factory,
                        watermarks,
                        max_events_per_second,
                    } => {
                        let context = format!("source '{}' (subtask {}/{p})", vertex.id, s + 1);
                        let reader = factory
                            .create_reader(s, p)
                            .map_err(|e| JobError(format!("{context}: {e}")))?;
                        let task = SourceTask {
                            reader,
                            subtask: s,
                            strategy: *watermarks,
                            max_events_per_second: *max_events_per_second,
                            batch_size: graph.config.batch_size,
                            chain,
                            context,
                            checkpointing,
                            restored: crate::checkpoint::restore::source_positions(
                                restore, &vertex.id, s, p,
                            ),
                        };
                        task::spawn(&name, state.clone(), move || task.run(&st))
                    }
                    _ => {
                        let task = InboundTask {
                            rxs: plan.take_receivers(head, s),
                            chain,
                            checkpointing,
                        };
                        task::spawn(&name, state.clone(), move || task.run(&st))
                    }
                }
                .map_err(|e| JobError(format!("cannot start a thread for {name}: {e}")))?;
                threads.push((name, handle));
            }
        }
        Ok(())
    };
    let started = start_all();
    // Close the plan's ends of the channels: consumers see their inputs end when the
    // producers' gates are dropped.
    drop(plan);
    let coordinator = match (&started, checkpoints) {
        (Ok(()), Some(config)) => {
            let older = crate::checkpoint::list_checkpoints(config.storage.as_ref(), &graph.name)
                .unwrap_or_default()
                .into_iter()
                .filter(|&id| restore.is_none_or(|r| r.metadata.id != id))
                .collect();
            let setup = CoordinatorSetup {
                job: graph.name.clone(),
                max_parallelism: graph.config.max_parallelism,
                config,
                vertices: graph
                    .vertices
                    .iter()
                    .map(|v| (v.id.clone(), v.parallelism))
                    .collect(),
                sources: source_controls,
                subtasks: controls,
                restored: restore.map(|r| r.metadata.clone()),
                older,
                swaps: graph.swaps.clone(),
            };
            match Coordinator::start(setup, shared, uploads, upload_rx) {
                Ok(c) => Some(c),
                Err(e) => {
                    let e = JobError(format!("cannot start the checkpoint coordinator: {e}"));
                    state.fail(e.clone());
                    for (_, t) in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        _ => None,
    };
    if let Err(e) = started {
        state.fail(e.clone());
        for (_, t) in threads {
            let _ = t.join();
        }
        return Err(e);
    }
    Ok(RunningJob {
        metrics,
        state,
        threads,
        coordinator,
    })
}
