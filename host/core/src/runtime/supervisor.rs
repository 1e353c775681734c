//! Runs a job to its end through failures: starts it from a savepoint, the latest
//! complete checkpoint or scratch, and when it fails restarts it from the latest complete
//! checkpoint as its restart strategy allows — Flink's JobMaster failover, for a job in
//! one process. A checkpoint whose files are missing or corrupted is reported and the
//! one before it is used.

use super::restart::RestartTracker;
use super::{FailureOrigin, JobError, JobMetrics, OperatorSwaps, RunningJob, start_with};
use crate::checkpoint::{CheckpointStats, RestorePoint, checkpoint_folder, list_checkpoints};
use crate::graph::JobGraph;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where a supervised job starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// The latest complete checkpoint of the job in its storage, if there is one (a
    /// job restarted after its process died resumes); otherwise from scratch.
    Latest,
    /// From scratch, ignoring existing checkpoints.
    Scratch,
    /// From the savepoint (or checkpoint) in this storage folder.
    Savepoint {
        /// The folder, e.g. `savepoints/flights-12`.
        folder: String,
        /// Drop state of operators the job no longer has instead of failing.
        allow_non_restored_state: bool,
    },
}

/// How a supervised job ended without failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Every input ended and everything was committed.
    Finished,
    /// Stopped with a savepoint, in this folder.
    Stopped {
        /// The savepoint's folder in the checkpoint storage.
        savepoint: String,
    },
}

/// What an event of a supervised job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEventKind {
    /// The job failed, and restarts (as its restart strategy allows).
    Restarted,
    /// The job failed for good: its restart strategy allows no more restarts.
    Failed,
    /// A checkpoint could not be used, and an older one was.
    CheckpointFallback,
}

/// Something that happened to a supervised job: its failures (Flink's exception
/// history) and checkpoint fallbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    /// When, ms since the epoch.
    pub time: i64,
    /// What.
    pub kind: JobEventKind,
    /// The message: for a failure, the error, which names the operator and subtask.
    pub message: String,
    /// For a failure: the vertex and subtask it happened in, when known.
    pub origin: Option<FailureOrigin>,
}

impl std::fmt::Display for JobEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

struct Shared {
    cancelled: AtomicBool,
    restarts: AtomicU32,
    stopped_with: Mutex<Option<String>>,
    /// A stop-with-savepoint is under way.
    stopping: Mutex<bool>,
    history: Mutex<Vec<CheckpointStats>>,
    /// What happened, for the owner's log: failures, fallbacks.
    events: Mutex<Vec<JobEvent>>,
    /// What the running attempt restored from (`None`: from scratch).
    restored: Mutex<Option<RestoreInfo>>,
}

/// What an attempt of a job restored from: the checkpoint or savepoint, and how much of
/// the input its sources skip (they resume after the events the snapshot covers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreInfo {
    /// The attempt: 0 for the job's start, `n` for its `n`th restart.
    pub attempt: u32,
    /// The snapshot's folder in the job's checkpoint storage.
    pub folder: String,
    /// The checkpoint (or savepoint) id.
    pub id: u64,
    /// Checkpoint or savepoint.
    pub kind: crate::checkpoint::metadata::SnapshotKind,
    /// When it completed, ms since the epoch.
    pub completed_ms: i64,
    /// Per source vertex (spec order): the events its subtasks had read when the
    /// snapshot was taken, which the restored job does not read again.
    pub sources: Vec<(String, u64)>,
}

impl RestoreInfo {
    /// What attempt `attempt` of `graph` restores from `point`: the events each source
    /// vertex had read, summed over its subtasks' checkpointed positions.
    fn new(point: &RestorePoint, graph: &JobGraph, attempt: u32) -> Self {
        let sources = graph
            .vertices
            .iter()
            .filter(|v| matches!(v.kind, crate::graph::VertexKind::Source { .. }))
            .map(|v| {
                let events = point.metadata.vertices.get(&v.id).map_or(0, |s| {
                    s.subtasks
                        .iter()
                        .filter_map(|t| t.operator_state.as_deref())
                        .filter_map(super::task::source_events)
                        .sum()
                });
                (v.id.clone(), events)
            })
            .collect();
        RestoreInfo {
            attempt,
            folder: point.folder.clone(),
            id: point.metadata.id,
            kind: point.metadata.kind,
            completed_ms: point.metadata.completed_ms,
            sources,
        }
    }
}

impl std::fmt::Display for RestoreInfo {
    /// `restored from checkpoint 7 (folder, completed 2026-12-08T01:02:03Z): the
    /// sources resume after 1234 events (flights 1234)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let when = chrono::DateTime::from_timestamp_millis(self.completed_ms).map_or_else(
            || self.completed_ms.to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        write!(
            f,
            "restored from {} {} ({}, completed {when})",
            self.kind.name(),
            self.id,
            self.folder
        )?;
        let total: u64 = self.sources.iter().map(|(_, n)| n).sum();
        let each: Vec<String> = self
            .sources
            .iter()
            .map(|(id, n)| format!("{id} {n}"))
            .collect();
        write!(
            f,
            ": the sources resume after the {total} events it covers ({})",
            each.join(", ")
        )
    }
}

/// A job run by the supervisor thread.
pub struct Supervisor {
    metrics: Arc<JobMetrics>,
    thread: JoinHandle<Result<JobOutcome, JobError>>,
    handle: SupervisorHandle,
}

/// What other threads may do with a supervised job (a control socket, an HTTP API):
/// cancel it and take savepoints.
#[derive(Clone)]
pub struct SupervisorHandle {
    shared: Arc<Shared>,
    running: Arc<Mutex<Option<RunningJobRef>>>,
    graph: Arc<JobGraph>,
}

impl SupervisorHandle {
    /// Requests a hot-swap of user operator `vertex` to the code `factory` creates (see
    /// [`OperatorSwaps`]): it happens at the next checkpoint barrier, triggered at once;
    /// [`SupervisorHandle::swaps`] tells how it went.
    ///
    /// Errors: no such vertex, or not a user operator; the job does not checkpoint; it
    /// is not running; a swap of the vertex is under way.
    pub fn swap_operator(
        &self,
        vertex: &str,
        factory: Arc<dyn crate::graph::OperatorFactory>,
    ) -> Result<(), JobError> {
        let v = self
            .graph
            .vertices
            .iter()
            .find(|v| v.id == vertex)
            .ok_or_else(|| JobError(format!("the job has no vertex '{vertex}'")))?;
        if !matches!(v.kind, crate::graph::VertexKind::Operator { .. }) {
            return Err(JobError(format!(
                "'{vertex}' is not a user operator: only operators' code can be swapped"
            )));
        }
        if self.graph.durability.checkpoints.is_none() {
            return Err(JobError(
                "a hot-swap happens at a checkpoint barrier: set `checkpoints` in the job spec"
                    .into(),
            ));
        }
        if lock(&self.running).is_none() || self.shared.cancelled.load(Relaxed) {
            return Err(JobError("the job is not running".into()));
        }
        self.graph
            .swaps
            .request(vertex, v.parallelism, factory)
            .map_err(JobError)
    }

    /// The job's hot-swaps.
    pub fn swaps(&self) -> &Arc<OperatorSwaps> {
        &self.graph.swaps
    }

    /// Cancels the job; its checkpoints are kept, so running it again resumes.
    pub fn cancel(&self) {
        self.shared.cancelled.store(true, Relaxed);
        if let Some(j) = lock(&self.running).as_ref() {
            j.cancel();
        }
    }

    /// Takes a savepoint (see [`RunningJob::savepoint`]); with `stop` the job then ends
    /// with [`JobOutcome::Stopped`].
    pub fn savepoint(&self, stop: bool) -> Result<String, JobError> {
        let job = lock(&self.running)
            .clone()
            .ok_or_else(|| JobError("the job is not running (restarting?)".into()))?;
        if stop {
            // Before the request: the attempt may end as soon as the savepoint completes.
            *lock(&self.shared.stopping) = true;
        }
        let result = job.savepoint(stop);
        match &result {
            Ok(folder) if stop => *lock(&self.shared.stopped_with) = Some(folder.clone()),
            _ => *lock(&self.shared.stopping) = false,
        }
        result
    }

    /// How many checkpoints and savepoints completed, over all attempts, and how many
    /// events ([`SupervisorHandle::events`]) happened: cheap, for noticing a change
    /// without copying either history.
    pub fn history_counts(&self) -> (usize, usize) {
        let running = lock(&self.running)
            .as_ref()
            .map_or(0, |j| j.checkpoint_count());
        (
            lock(&self.shared.history).len() + running,
            lock(&self.shared.events).len(),
        )
    }

    /// Completed checkpoints and savepoints, over all attempts.
    pub fn checkpoints(&self) -> Vec<CheckpointStats> {
        let mut h = lock(&self.shared.history).clone();
        if let Some(j) = lock(&self.running).as_ref() {
            h.extend(j.checkpoints());
        }
        h
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u32 {
        self.shared.restarts.load(Relaxed)
    }

    /// Failures and checkpoint fallbacks so far, oldest first (each failure's message
    /// says why the job failed).
    pub fn events(&self) -> Vec<JobEvent> {
        lock(&self.shared.events).clone()
    }

    /// The checkpoint or savepoint folder (in the job's checkpoint storage) the current
    /// attempt restored its state from; `None` when it started from scratch.
    pub fn restored_from(&self) -> Option<String> {
        lock(&self.shared.restored)
            .as_ref()
            .map(|r| r.folder.clone())
    }

    /// What the current attempt restored from, and how much input it skips; `None`
    /// when it started from scratch.
    pub fn restored(&self) -> Option<RestoreInfo> {
        lock(&self.shared.restored).clone()
    }
}

impl Supervisor {
    /// Starts supervising `graph` from `from`. The first attempt starts before this
    /// returns, so an error that no restart can cure (an invalid graph, an operator that
    /// cannot be created, an unusable savepoint) is returned here.
    pub fn start(graph: Arc<JobGraph>, from: StartFrom) -> Result<Supervisor, JobError> {
        let metrics = Arc::new(JobMetrics::for_graph(&graph));
        let shared = Arc::new(Shared {
            cancelled: AtomicBool::new(false),
            restarts: AtomicU32::new(0),
            stopped_with: Mutex::new(None),
            stopping: Mutex::new(false),
            history: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            restored: Mutex::new(None),
        });
        let running: Arc<Mutex<Option<RunningJobRef>>> = Arc::new(Mutex::new(None));
        let first = Attempt::new(&graph, &metrics, &shared).start(from)?;
        *lock(&running) = Some(first);
        let graph_for_handle = graph.clone();
        let (g, m, sh, r) = (graph, metrics.clone(), shared.clone(), running.clone());
        let thread = std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || {
                let dir = g.durability.state_dir.clone();
                let result = supervise(g, m, sh, r);
                // The job is over: its local working state (RocksDB files, snapshots not
                // yet uploaded) is of no more use; a restart restores from checkpoints.
                // Only the folders the runtime made: `dir` itself is the user's.
                for sub in ["keyed", "snapshots", "verify"] {
                    let _ = std::fs::remove_dir_all(dir.join(sub));
                }
                let _ = std::fs::remove_dir(&dir);
                result
            })
            .map_err(|e| JobError(format!("cannot start the supervisor thread: {e}")))?;
        Ok(Supervisor {
            metrics,
            thread,
            handle: SupervisorHandle {
                shared,
                running,
                graph: graph_for_handle,
            },
        })
    }

    /// Live figures (accumulated over attempts).
    pub fn metrics(&self) -> &Arc<JobMetrics> {
        &self.metrics
    }

    /// Whether the job has ended (finished, stopped, failed for good or cancelled).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Cancels the job; its checkpoints are kept, so running it again resumes.
    pub fn cancel(&self) {
        self.handle.cancel()
    }

    /// A handle for other threads.
    pub fn handle(&self) -> SupervisorHandle {
        self.handle.clone()
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u32 {
        self.handle.restarts()
    }

    /// Failures and checkpoint fallbacks so far (see [`SupervisorHandle::events`]).
    pub fn events(&self) -> Vec<JobEvent> {
        self.handle.events()
    }

    /// Completed checkpoints and savepoints, over all attempts.
    pub fn checkpoints(&self) -> Vec<CheckpointStats> {
        self.handle.checkpoints()
    }

    /// Takes a savepoint (see [`SupervisorHandle::savepoint`]).
    pub fn savepoint(&self, stop: bool) -> Result<String, JobError> {
        self.handle.savepoint(stop)
    }

    /// Waits for the end: how the job ended, or the error that ended it for good (after
    /// the restarts its strategy allows, or a cancel).
    pub fn join(self) -> Result<JobOutcome, JobError> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(JobError("internal error: the supervisor panicked".into())))
    }
}

/// The attempt running now: the job's control surface.
type RunningJobRef = Arc<RunningJob>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Attempt<'a> {
    graph: &'a Arc<JobGraph>,
    metrics: &'a Arc<JobMetrics>,
    shared: &'a Shared,
}

impl<'a> Attempt<'a> {
    fn new(graph: &'a Arc<JobGraph>, metrics: &'a Arc<JobMetrics>, shared: &'a Shared) -> Self {
        Attempt {
            graph,
            metrics,
            shared,
        }
    }

    fn event(&self, kind: JobEventKind, message: String, origin: Option<FailureOrigin>) {
        tracing::warn!("{message}");
        lock(&self.shared.events).push(JobEvent {
            time: crate::time::now_ms(),
            kind,
            message,
            origin,
        });
    }

    /// The restore point for `from`.
    fn restore_point(&self, from: StartFrom) -> Result<Option<RestorePoint>, JobError> {
        let Some(config) = &self.graph.durability.checkpoints else {
            return match from {
                StartFrom::Savepoint { folder, .. } => Err(JobError(format!(
                    "cannot restore from {folder}: the job has no checkpoint storage (set `checkpoints`)"
                ))),
                _ => Ok(None),
            };
        };
        let storage = config.storage.clone();
        let scratch = self.graph.durability.state_dir.join("verify");
        match from {
            StartFrom::Scratch => Ok(None),
            StartFrom::Savepoint {
                folder,
                allow_non_restored_state,
            } => {
                let mut p = RestorePoint::load(storage, &folder).map_err(JobError)?;
                p.verify(&scratch).map_err(JobError)?;
                p.allow_non_restored_state = allow_non_restored_state;
                Ok(Some(p))
            }
            StartFrom::Latest => {
                let ids = list_checkpoints(storage.as_ref(), &self.graph.name).map_err(|e| {
                    JobError(format!(
                        "listing checkpoints in {}: {e}",
                        storage.describe()
                    ))
                })?;
                for id in ids {
                    let folder = checkpoint_folder(&self.graph.name, id);
                    match RestorePoint::load(storage.clone(), &folder)
                        .and_then(|p| p.verify(&scratch).map(|_| p))
                    {
                        Ok(p) => return Ok(Some(p)),
                        Err(e) => self.event(
                            JobEventKind::CheckpointFallback,
                            format!(
                                "checkpoint {id} cannot be used ({e}); falling back to the one before"
                            ),
                            None,
                        ),
                    }
                }
                Ok(None)
            }
        }
    }

    fn start(&self, from: StartFrom) -> Result<RunningJobRef, JobError> {
        let point = self.restore_point(from)?;
        if let Some(p) = &point {
            tracing::info!("restoring from {}", p.folder);
        }
        *lock(&self.shared.restored) = point
            .as_ref()
            .map(|p| RestoreInfo::new(p, self.graph, self.shared.restarts.load(Relaxed)));
        start_with(self.graph.clone(), point.as_ref(), self.metrics.clone()).map(Arc::new)
    }
}

fn supervise(
    graph: Arc<JobGraph>,
    metrics: Arc<JobMetrics>,
    shared: Arc<Shared>,
    running: Arc<Mutex<Option<RunningJobRef>>>,
) -> Result<JobOutcome, JobError> {
    let attempt = Attempt::new(&graph, &metrics, &shared);
    let mut tracker = RestartTracker::new(graph.durability.restart);
    let mut attempt_started = Instant::now();
    loop {
        let job = lock(&running).clone().expect("an attempt is running");
        // Wait for the attempt to end, then take it out to join it.
        while !job.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut finished = lock(&running).take().expect("the attempt");
        drop(job);
        let history = finished.checkpoints();
        let result = loop {
            match Arc::try_unwrap(finished) {
                Ok(j) => break j.join_with_origin(),
                Err(held) => {
                    // A savepoint request still holds it: wait for the holder to let go.
                    finished = held;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        lock(&shared.history).extend(history);
        // A stop-with-savepoint ends the attempt before its requester records the folder.
        while *lock(&shared.stopping) && lock(&shared.stopped_with).is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(sp) = lock(&shared.stopped_with).clone() {
            return Ok(JobOutcome::Stopped { savepoint: sp });
        }
        let err = match result {
            Ok(()) => {
                // Finished: its checkpoints are of no more use (as Flink deletes a
                // finished job's checkpoints); running it again starts from scratch.
                if let Some(c) = &graph.durability.checkpoints {
                    let folder = crate::checkpoint::job_folder(&graph.name);
                    let ids = list_checkpoints(c.storage.as_ref(), &graph.name).unwrap_or_default();
                    // The metadata files first: a crash midway leaves no half checkpoint.
                    for id in ids {
                        let _ = c
                            .storage
                            .delete(&format!("{}/_metadata", checkpoint_folder(&graph.name, id)));
                    }
                    for p in c.storage.list(&folder).unwrap_or_default() {
                        let _ = c.storage.delete(&p);
                    }
                }
                graph.swaps.job_finished();
                return Ok(JobOutcome::Finished);
            }
            Err(e) => e,
        };
        let (mut err, mut origin) = err;
        // A swap on trial is rolled back: the restart runs the old version.
        graph.swaps.job_failed(&err.0);
        loop {
            if shared.cancelled.load(Relaxed) {
                return Err(err);
            }
            let Some((nth, delay)) = tracker.failed(Instant::now(), attempt_started) else {
                let n = shared.restarts.load(Relaxed);
                let err = if n == 0 {
                    err
                } else {
                    JobError(format!(
                        "{err} (after {n} restart{})",
                        if n == 1 { "" } else { "s" }
                    ))
                };
                attempt.event(JobEventKind::Failed, err.0.clone(), origin);
                return Err(err);
            };
            attempt.event(
                JobEventKind::Restarted,
                format!(
                    "the job failed: {err}; {}",
                    graph.durability.restart.describe(nth, delay)
                ),
                origin.take(),
            );
            let until = Instant::now() + delay;
            while Instant::now() < until {
                if shared.cancelled.load(Relaxed) {
                    return Err(err);
                }
                std::thread::sleep(Duration::from_millis(5).min(until - Instant::now()));
            }
            shared.restarts.fetch_add(1, Relaxed);
            // A restart resumes from the latest usable checkpoint.
            attempt_started = Instant::now();
            match attempt.start(StartFrom::Latest) {
                Ok(j) => {
                    *lock(&running) = Some(j);
                    break;
                }
                // Could not even start (the broker is down, a restore failed): a failure.
                Err(e) => err = e,
            }
        }
    }
}
