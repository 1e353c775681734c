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
mod task;

pub use metrics::{JobMetrics, SubtaskMetrics, VertexMetrics};

use crate::graph::{JobGraph, VertexKind};
use plan::ExecutionPlan;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Why a job could not start or did not finish; the message names the vertex and
/// subtask and says what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JobError(pub String);

/// Shared between a job's threads: the first failure, and the cancel flag.
#[derive(Default)]
struct JobState {
    /// The first failure; `true` when it is a cause, `false` when it is only a symptom
    /// (a channel that closed because another subtask died), which a cause replaces.
    error: Mutex<Option<(JobError, bool)>>,
    cancelled: AtomicBool,
}

impl JobState {
    /// Records a failure that is a cause, and stops the job.
    fn fail(&self, e: JobError) {
        self.record(e, true);
    }

    /// Records a symptom: kept only if no cause is ever recorded.
    fn fail_symptom(&self, e: JobError) {
        self.record(e, false);
    }

    fn record(&self, e: JobError, cause: bool) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            None => *slot = Some((e, cause)),
            Some((_, false)) if cause => *slot = Some((e, cause)),
            Some(_) => {}
        }
        self.cancelled.store(true, Relaxed);
    }

    fn take_error(&self) -> Option<JobError> {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(|(e, _)| e)
    }
}

/// A job whose subtasks are running.
pub struct RunningJob {
    metrics: Arc<JobMetrics>,
    state: Arc<JobState>,
    threads: Vec<(String, JoinHandle<()>)>,
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

    /// Waits for every subtask. Returns the first failure, if any.
    pub fn join(self) -> Result<(), JobError> {
        for (name, t) in self.threads {
            // Subtasks catch their own panics; this is for one in the catching itself.
            if let Err(panic) = t.join() {
                self.state.fail(task::panic_error(&name, panic.as_ref()));
            }
        }
        match self.state.take_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Starts `graph`: validates it, builds the execution graph, opens every operator and
/// starts one thread per chain subtask.
///
/// Errors: an invalid graph, aggregates that do not fit the window's input format, a
/// source reader, sink or operator that cannot be created or opened.
pub fn start(graph: JobGraph) -> Result<RunningJob, JobError> {
    let mut plan = ExecutionPlan::new(&graph)?;
    let metrics = Arc::new(JobMetrics::for_graph(&graph));
    let state = Arc::new(JobState::default());
    let mut threads = Vec::new();
    // Open every operator and start every subtask; if anything fails, stop what was
    // started (it sees the job cancelled, or its channels close) before returning.
    let mut start_all = || -> Result<(), JobError> {
        for head in plan.heads() {
            let vertex = &graph.vertices[head];
            let p = vertex.parallelism;
            for s in 0..p {
                let chain = plan.build_chain(head, s, &metrics)?;
                let name = format!("{}-{}", vertex.id, s);
                let st = state.clone();
                let handle = match &vertex.kind {
                    VertexKind::Source {
                        factory,
                        watermarks,
                    } => {
                        let context = format!("source '{}' (subtask {}/{p})", vertex.id, s + 1);
                        let reader = factory
                            .create_reader(s, p)
                            .map_err(|e| JobError(format!("{context}: {e}")))?;
                        let (strategy, batch_size) = (*watermarks, graph.config.batch_size);
                        task::spawn(&name, state.clone(), move || {
                            task::run_source(reader, strategy, batch_size, chain, &st, &context)
                        })
                    }
                    _ => {
                        let rx = plan.take_receiver(head, s);
                        let inputs = plan.input_count(head);
                        task::spawn(&name, state.clone(), move || {
                            task::run_inbound(rx, inputs, chain, &st)
                        })
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
    })
}
