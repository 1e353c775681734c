//! Jobs run by the server: each is a [`Supervisor`] (the same runtime as `sluice run`)
//! with a monitor thread that samples its figures every second and records how it ended.
//! A job's record (`<data dir>/jobs/<id>/job.json`) survives a restart of the server,
//! which starts the jobs that were running again from their latest checkpoint.

use crate::engine::Engine;
use crate::store::write_atomic;
use serde::{Deserialize, Serialize};
use sluice_core::checkpoint::CheckpointStats;
use sluice_core::graph::{JobGraph, Partitioning};
use sluice_core::runtime::{JobMetrics, JobOutcome, StartFrom, Supervisor, SupervisorHandle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Running (or restarting after a failure, per its restart strategy).
    Running,
    /// Every input ended and everything was committed.
    Finished,
    /// Stopped with a savepoint.
    Stopped,
    /// Cancelled; its checkpoints are kept.
    Cancelled,
    /// Failed after its restart strategy gave up.
    Failed,
}

/// What is kept of a job on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's id.
    pub id: String,
    /// The job's name (from its spec).
    pub name: String,
    /// The spec as submitted (operators named by hash or `name@version`).
    pub spec: serde_json::Value,
    /// Hashes of the operators it uses.
    pub operators: Vec<String>,
    /// Its status.
    pub status: JobStatus,
    /// When it was submitted (RFC 3339).
    pub submitted_at: String,
    /// The last error, if it failed or restarted.
    pub last_error: Option<String>,
    /// Savepoints taken, newest last (folders in its checkpoint storage).
    pub savepoints: Vec<String>,
}

/// Rates over the last second, per vertex: `(records in/s, records out/s)`.
type Rates = BTreeMap<String, (f64, f64)>;

/// A job known to the server.
pub struct Job {
    /// Its directory: `spec.json` (operators resolved to paths), `job.json`, outputs and
    /// checkpoints of relative paths.
    pub dir: PathBuf,
    /// The graph it runs (empty for a job whose spec no longer builds).
    pub graph: GraphView,
    record: Mutex<JobRecord>,
    supervisor: Mutex<Option<Supervisor>>,
    handle: Option<SupervisorHandle>,
    metrics: Arc<JobMetrics>,
    started: Instant,
    started_at: String,
    rates: Mutex<Rates>,
    /// Checkpoints and restarts as of the end (the supervisor is gone then).
    ended: Mutex<Option<(Vec<CheckpointStats>, u32)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Job {
    /// The job's record, as of now.
    pub fn record(&self) -> JobRecord {
        lock(&self.record).clone()
    }

    /// Live figures.
    pub fn metrics(&self) -> &Arc<JobMetrics> {
        &self.metrics
    }

    /// When this run started (RFC 3339), and how long ago.
    pub fn started(&self) -> (&str, Duration) {
        (&self.started_at, self.started.elapsed())
    }

    /// Records in and out per second over the last second, per vertex.
    pub fn rates(&self) -> Rates {
        lock(&self.rates).clone()
    }

    /// Checkpoints completed and restarts so far.
    pub fn checkpoints_and_restarts(&self) -> (Vec<CheckpointStats>, u32) {
        if let Some(s) = lock(&self.supervisor).as_ref() {
            return (s.checkpoints(), s.restarts());
        }
        lock(&self.ended).clone().unwrap_or_default()
    }

    /// Takes a savepoint (and stops the job after it, with `stop`). Blocks until done.
    ///
    /// Errors: the job is not running, or the savepoint failed (the message says why).
    pub fn savepoint(&self, stop: bool) -> Result<String, String> {
        let handle = match (&self.handle, self.record().status) {
            (Some(h), JobStatus::Running) => h.clone(),
            (_, s) => return Err(format!("the job is not running (it is {s:?})").to_lowercase()),
        };
        let folder = handle.savepoint(stop).map_err(|e| e.0)?;
        lock(&self.record).savepoints.push(folder.clone());
        self.save();
        Ok(folder)
    }

    /// Cancels the job (its checkpoints are kept).
    pub fn cancel(&self) {
        if let Some(h) = &self.handle {
            h.cancel();
        }
    }

    fn save(&self) {
        let record = self.record();
        let json = serde_json::to_vec_pretty(&record).expect("a job record serializes");
        if let Err(e) = write_atomic(&self.dir.join("job.json"), &json) {
            tracing::error!("saving job {}: {e}", record.id);
        }
    }

    /// Samples rates every second until the supervisor ends, then records how.
    fn monitor(self: Arc<Self>) {
        let mut last: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut at = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let finished = lock(&self.supervisor)
                .as_ref()
                .is_none_or(|s| s.is_finished());
            if at.elapsed() >= Duration::from_secs(1) || finished {
                let dt = at.elapsed().as_secs_f64();
                at = Instant::now();
                let mut rates = Rates::new();
                for v in &self.metrics.vertices {
                    let now = (v.sum(|s| &s.records_in), v.sum(|s| &s.records_out));
                    let before = last.insert(v.id.clone(), now).unwrap_or((0, 0));
                    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
                    rates.insert(v.id.clone(), (rate(now.0, before.0), rate(now.1, before.1)));
                }
                *lock(&self.rates) = rates;
            }
            if finished {
                break;
            }
        }
        let Some(supervisor) = lock(&self.supervisor).take() else {
            return;
        };
        *lock(&self.ended) = Some((supervisor.checkpoints(), supervisor.restarts()));
        let outcome = supervisor.join();
        {
            let mut r = lock(&self.record);
            let was_cancelled = r.status == JobStatus::Cancelled;
            match outcome {
                Ok(JobOutcome::Finished) => r.status = JobStatus::Finished,
                Ok(JobOutcome::Stopped { .. }) => r.status = JobStatus::Stopped,
                Err(_) if was_cancelled => {}
                Err(e) => {
                    r.status = JobStatus::Failed;
                    r.last_error = Some(e.0);
                }
            }
        }
        *lock(&self.rates) = Rates::new();
        self.save();
    }
}

/// The jobs of a server.
pub struct Jobs {
    dir: PathBuf,
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
}

impl Jobs {
    /// The jobs under `dir` (created if missing); none started yet.
    pub fn new(dir: &Path) -> Result<Jobs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Jobs {
            dir: dir.to_path_buf(),
            jobs: Mutex::new(BTreeMap::new()),
        })
    }

    /// A fresh job id for a job called `name`.
    pub fn new_id(&self, name: &str) -> String {
        let slug: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let now = chrono::Utc::now();
        loop {
            let id = format!("{slug}-{}", now.format("%Y%m%d%H%M%S%3f"));
            let id = match lock(&self.jobs).contains_key(&id) {
                false => id,
                true => format!("{id}-{}", lock(&self.jobs).len()),
            };
            if !self.dir.join(&id).exists() {
                return id;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The folder of job `id`.
    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Starts `graph` as job `record` (whose folder holds its `spec.json`) from `from`,
    /// and keeps it. Errors: the job could not start (the runtime's message).
    pub fn start(
        &self,
        graph: JobGraph,
        record: JobRecord,
        from: StartFrom,
    ) -> Result<Arc<Job>, String> {
        let view = GraphView::of(&graph);
        let supervisor = Supervisor::start(Arc::new(graph), from).map_err(|e| e.0)?;
        let job = Arc::new(Job {
            dir: self.job_dir(&record.id),
            graph: view,
            handle: Some(supervisor.handle()),
            metrics: supervisor.metrics().clone(),
            record: Mutex::new(record),
            supervisor: Mutex::new(Some(supervisor)),
            started: Instant::now(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            rates: Mutex::new(Rates::new()),
            ended: Mutex::new(None),
        });
        job.save();
        let id = job.record().id;
        lock(&self.jobs).insert(id.clone(), job.clone());
        let j = job.clone();
        std::thread::Builder::new()
            .name(format!("monitor {id}"))
            .spawn(move || j.monitor())
            .map_err(|e| format!("cannot start the job's monitor thread: {e}"))?;
        Ok(job)
    }

    /// Keeps a job that is not running (read back after a restart of the server, or one
    /// that could not be restarted).
    fn keep_ended(&self, dir: PathBuf, graph: GraphView, record: JobRecord) {
        let id = record.id.clone();
        let job = Arc::new(Job {
            dir,
            graph,
            handle: None,
            metrics: Arc::new(JobMetrics {
                vertices: Vec::new(),
                started: Instant::now(),
            }),
            record: Mutex::new(record),
            supervisor: Mutex::new(None),
            started: Instant::now(),
            started_at: String::new(),
            rates: Mutex::new(Rates::new()),
            ended: Mutex::new(None),
        });
        lock(&self.jobs).insert(id, job);
    }

    /// Reads the jobs of an earlier run of the server and starts again those that were
    /// running, from their latest complete checkpoint (from scratch if they have none).
    /// A job that cannot be read or started again is kept as failed, with the reason.
    pub fn recover(&self, engine: &dyn Engine) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            let read = std::fs::read(dir.join("job.json"))
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<JobRecord>(&b).map_err(|e| e.to_string()));
            let mut record = match read {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("{}: cannot read the job: {e}", dir.display());
                    continue;
                }
            };
            let graph = engine.build_graph(&dir.join("spec.json"));
            match (record.status, graph) {
                (JobStatus::Running, Ok(graph)) => {
                    let id = record.id.clone();
                    if let Err(e) = self.start(graph, record.clone(), StartFrom::Latest) {
                        tracing::error!("job {id}: cannot start it again: {e}");
                        record.status = JobStatus::Failed;
                        record.last_error = Some(format!("after a restart of the server: {e}"));
                        self.keep_ended(dir, GraphView::default(), record);
                    } else {
                        tracing::info!("job {id}: started again from its latest checkpoint");
                    }
                }
                (_, Ok(graph)) => self.keep_ended(dir, GraphView::of(&graph), record),
                (_, Err(e)) => {
                    if record.status == JobStatus::Running {
                        record.status = JobStatus::Failed;
                    }
                    record.last_error = Some(format!("its spec no longer builds: {e}"));
                    self.keep_ended(dir, GraphView::default(), record);
                }
            }
        }
    }

    /// Job `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        lock(&self.jobs).get(id).cloned()
    }

    /// Every job, by id.
    pub fn list(&self) -> Vec<Arc<Job>> {
        lock(&self.jobs).values().cloned().collect()
    }

    /// Marks job `id` cancelled and cancels it.
    pub fn cancel(&self, job: &Job) {
        lock(&job.record).status = JobStatus::Cancelled;
        job.cancel();
        job.save();
    }

    /// Forgets a job that is not running and deletes its folder.
    pub fn remove(&self, id: &str) -> Result<(), String> {
        lock(&self.jobs).remove(id);
        let dir = self.job_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("{}: {e}", dir.display()))
            }
            _ => Ok(()),
        }
    }

    /// The ids of the jobs that use operator `hash`.
    pub fn using(&self, hash: &str) -> Vec<String> {
        lock(&self.jobs)
            .values()
            .map(|j| j.record())
            .filter(|r| r.operators.iter().any(|o| o == hash))
            .map(|r| r.id)
            .collect()
    }

    /// The jobs' records.
    pub fn records(&self) -> Vec<JobRecord> {
        self.list().iter().map(|j| j.record()).collect()
    }
}

/// A job graph as the API shows it: vertices (with parallelism) and edges.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct GraphView {
    /// Vertices in topological order.
    pub vertices: Vec<VertexView>,
    /// Edges between them.
    pub edges: Vec<EdgeView>,
}

/// A vertex of a [`GraphView`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VertexView {
    /// Its id (the spec's).
    pub id: String,
    /// `source`, `operator`, `window` or `sink`.
    pub kind: String,
    /// Its number of subtasks.
    pub parallelism: usize,
}

/// An edge of a [`GraphView`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EdgeView {
    /// The upstream vertex.
    pub from: String,
    /// The downstream vertex.
    pub to: String,
    /// How events are spread: `forward`, `key_by` or `rebalance`.
    pub partitioning: String,
    /// The upstream's side output this edge reads, if not the main output.
    pub side_output: Option<String>,
}

impl GraphView {
    /// The view of `graph`.
    pub fn of(graph: &JobGraph) -> GraphView {
        let vertices = graph
            .vertices
            .iter()
            .map(|v| VertexView {
                id: v.id.clone(),
                kind: v.kind.name().to_string(),
                parallelism: v.parallelism,
            })
            .collect();
        let edges = graph
            .vertices
            .iter()
            .flat_map(|v| {
                v.inputs.iter().map(|i| EdgeView {
                    from: graph.vertices[i.vertex].id.clone(),
                    to: v.id.clone(),
                    partitioning: match i.partitioning {
                        Partitioning::Forward => "forward",
                        Partitioning::KeyBy => "key_by",
                        Partitioning::Rebalance => "rebalance",
                    }
                    .to_string(),
                    side_output: i.side_output.clone(),
                })
            })
            .collect();
        GraphView { vertices, edges }
    }
}

/// Counters of a vertex summed over subtasks: `(records in, records out)`.
pub fn vertex_counts(metrics: &JobMetrics, id: &str) -> (u64, u64) {
    metrics.vertex(id).map_or((0, 0), |v| {
        (v.sum(|s| &s.records_in), v.sum(|s| &s.records_out))
    })
}

/// Nanoseconds a vertex spent backpressured, summed over subtasks.
pub fn backpressured_ns(metrics: &JobMetrics, id: &str) -> u64 {
    metrics.vertex(id).map_or(0, |v| {
        v.subtasks
            .iter()
            .map(|s| s.backpressured_ns.load(Relaxed))
            .sum()
    })
}
