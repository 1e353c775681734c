//! The job manager: submitted jobs, each run by a [`Supervisor`] of the embedded
//! cluster, with its record kept under `<data dir>/jobs/<id>/job.json`. Relative paths in
//! a job's spec (inputs, outputs, checkpoint storage, state) resolve against its folder
//! `<data dir>/jobs/<id>/`. When the server starts, the jobs that were running resume
//! from their latest complete checkpoint.

use crate::engine::Engine;
use crate::error::{ApiError, ApiResult};
use crate::graph::GraphView;
use crate::metrics::{JobMetricsView, Sample, view};
use crate::persist::write_atomically;
use crate::store::{OperatorStore, as_hash};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::checkpoint::SnapshotKind;
use sluice_core::operator::FailureHandling;
use sluice_core::runtime::{
    JobEvent, JobEventKind, JobMetrics, JobOutcome, StartFrom, Supervisor, SupervisorHandle,
    SwapStatus,
};
use sluice_core::spec::{self, JobSpec};
use sluice_core::time::now_ms;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use utoipa::ToSchema;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Running (or restarting after a failure, as its restart strategy allows).
    Running,
    /// Every input ended and everything was committed.
    Finished,
    /// Failed for good (after the restarts its strategy allows), or could not start.
    Failed,
    /// Cancelled; its checkpoints are kept, so a restart resumes.
    Cancelled,
    /// Stopped with a savepoint.
    Stopped,
}

/// A completed checkpoint or savepoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckpointInfo {
    /// Its id (checkpoints and savepoints of a job share one sequence).
    pub id: u64,
    /// `checkpoint` or `savepoint`.
    pub kind: String,
    /// Always `completed`: only completed ones are listed.
    pub status: String,
    /// From trigger to completion, ms.
    pub duration_ms: u64,
    /// Bytes uploaded for it (files reused from earlier checkpoints not counted).
    pub uploaded_bytes: u64,
    /// Bytes of state it references in all.
    pub state_bytes: u64,
    /// When it completed, ms since the epoch.
    pub completed_at: i64,
}

/// A savepoint taken through the API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SavepointInfo {
    /// Its folder in the job's checkpoint storage, as `savepoints/flights-12`; a
    /// restart from a savepoint names it.
    pub folder: String,
    /// When it completed, ms since the epoch.
    pub taken_at: i64,
    /// Whether the job stopped after it (stop with savepoint).
    pub stopped: bool,
}

/// One failure of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExceptionInfo {
    /// When it happened, ms since the epoch.
    pub time: i64,
    /// The error: names the operator and subtask, and says what went wrong (a trap's
    /// message with the guest's backtrace, where the guest has one).
    pub message: String,
    /// The vertex whose operator failed, when known.
    pub vertex: Option<String>,
    /// Its subtask, `0..parallelism`, when known.
    pub subtask: Option<usize>,
    /// The key groups that subtask owns, `[first, last]`, for a keyed vertex.
    pub key_groups: Option<[usize; 2]>,
    /// What followed.
    pub outcome: ExceptionOutcome,
}

/// What followed a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionOutcome {
    /// The job restarted from its latest checkpoint (its restart strategy allowed it).
    Restarted,
    /// The job failed for good.
    Failed,
    /// The input of the failed call was dropped (the operator's `skip` policy).
    Skipped,
    /// The failing record went to the `dead-letter` side output (its `dead-letter`
    /// policy); `key_groups` is its key's key group.
    DeadLettered,
}

/// Reads `exceptions` of a job record: this server's shape, or messages alone (the
/// records of earlier servers).
fn exceptions_compat<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<ExceptionInfo>, D::Error> {
    let values = Vec::<Value>::deserialize(d)?;
    values
        .into_iter()
        .map(|v| match v {
            Value::String(message) => Ok(ExceptionInfo {
                time: 0,
                outcome: if message.starts_with("the job failed") {
                    ExceptionOutcome::Restarted
                } else {
                    ExceptionOutcome::Failed
                },
                message,
                vertex: None,
                subtask: None,
                key_groups: None,
            }),
            other => serde_json::from_value(other).map_err(serde::de::Error::custom),
        })
        .collect()
}

/// The exception of a supervisor's failure event, with the key groups of its subtask
/// when the vertex is keyed (Flink's key-group ranges per subtask).
fn exception(graph: &GraphView, e: &JobEvent) -> ExceptionInfo {
    let origin = e.origin.as_ref();
    let key_groups = origin.and_then(|o| {
        let v = graph.vertices.iter().find(|v| v.id == o.vertex)?;
        let keyed = v.kind == "window"
            || graph
                .edges
                .iter()
                .any(|x| x.target == v.id && x.partitioning == "key_by");
        let r =
            sluice_core::keygroup::key_group_range(o.subtask, v.parallelism, graph.max_parallelism);
        (keyed && !r.is_empty()).then(|| [r.start, r.end - 1])
    });
    ExceptionInfo {
        time: e.time,
        message: e.message.clone(),
        vertex: origin.map(|o| o.vertex.clone()),
        subtask: origin.map(|o| o.subtask),
        key_groups,
        outcome: if e.kind == JobEventKind::Restarted {
            ExceptionOutcome::Restarted
        } else {
            ExceptionOutcome::Failed
        },
    }
}

/// The failures the operators of a run handled under their policies, with the key
/// group of the failing record's key where it has one.
fn handled_failures(graph: &GraphView, metrics: &JobMetrics) -> Vec<ExceptionInfo> {
    let mut out = Vec::new();
    for v in &metrics.vertices {
        for (subtask, s) in v.subtasks.iter().enumerate() {
            for f in s.failures.handled() {
                let key_groups = f.key.as_ref().map(|k| {
                    let kg = sluice_core::keygroup::key_group(k, graph.max_parallelism);
                    [kg, kg]
                });
                out.push(ExceptionInfo {
                    time: f.time,
                    message: f.message,
                    vertex: Some(v.id.clone()),
                    subtask: Some(subtask),
                    key_groups,
                    outcome: match f.handling {
                        FailureHandling::DeadLettered => ExceptionOutcome::DeadLettered,
                        _ => ExceptionOutcome::Skipped,
                    },
                });
            }
        }
    }
    out
}

/// The file in a job's folder that what its operators print and log goes to (the engine
/// writes it; `GET /v1/jobs/{id}/log` reads it).
pub const GUEST_LOG: &str = "guest.log";

/// How a hot-swap went (`PUT /v1/jobs/{id}/operators/{operator_id}`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SwapResult {
    /// `committed` (the new version runs for good), or, when the wait ran out, `trial`
    /// (it runs, until the next checkpoint completes), `armed` (its barrier is on the
    /// way) or `requested`.
    pub status: String,
    /// The SHA-256 of the new version.
    pub operator: String,
    /// The checkpoint at whose barrier the swap happened.
    pub checkpoint: Option<u64>,
    /// The longest time a subtask stopped to start the new version, ms.
    pub pause_ms: Option<f64>,
    /// The job.
    pub job: JobInfo,
}

/// Starts one instance of a new operator version on its own, with a scratch keyed store
/// when the vertex is keyed, and closes it: its `init` must succeed before it goes into
/// a running job.
fn trial_start(
    factory: &dyn sluice_core::graph::OperatorFactory,
    vertex: &str,
    parallelism: usize,
    keyed: bool,
    max_parallelism: usize,
) -> Result<(), String> {
    use sluice_core::operator::{OperatorContext, StateContext};
    let clock = sluice_core::state::system_clock();
    let mut op = factory.create(0, parallelism).map_err(|e| e.to_string())?;
    let keyed = if keyed {
        Some(
            sluice_core::state::KeyedStateStore::new(
                Box::new(sluice_core::state::HeapKvBackend::new()),
                max_parallelism,
                0..max_parallelism,
                clock.clone(),
            )
            .map_err(|e| e.0)?,
        )
    } else {
        None
    };
    op.initialize_state(StateContext {
        keyed,
        clock,
        operator_state: Vec::new(),
        union_operator_state: Vec::new(),
    })
    .map_err(|e| e.to_string())?;
    op.open(&OperatorContext {
        operator_id: vertex.to_string(),
        subtask: 0,
        parallelism,
    })
    .map_err(|e| e.to_string())
}

/// A job as the API shows it, and as its record is kept.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobInfo {
    /// The job id (16 hex digits).
    pub id: String,
    /// The job's name (from its spec).
    pub name: String,
    /// Where it is in its life.
    pub status: JobStatus,
    /// The spec as submitted, with every operator pinned to its hash
    /// (`operator: <sha256>`).
    #[schema(value_type = Object)]
    pub spec: Value,
    /// Hashes of the operators it uses.
    pub operators: Vec<String>,
    /// The execution graph.
    pub graph: GraphView,
    /// When it was submitted, ms since the epoch.
    pub submitted_at: i64,
    /// When its current (or last) run started, ms since the epoch.
    pub started_at: Option<i64>,
    /// When its last run ended, ms since the epoch; none while it runs.
    pub ended_at: Option<i64>,
    /// Runs so far: the first, resumes after a server restart, restarts through the API.
    pub runs: u32,
    /// Restarts after failures, over all runs.
    pub restarts: u32,
    /// The checkpoint or savepoint folder the current (or last) run restored from.
    pub restored_from: Option<String>,
    /// The error that ended the job, or the latest failure it restarted after.
    pub last_error: Option<String>,
    /// Its failures (Flink's exception history), oldest first: those it restarted after
    /// and the one that ended it, over all runs.
    #[serde(deserialize_with = "exceptions_compat")]
    pub exceptions: Vec<ExceptionInfo>,
    /// Savepoints taken through the API, oldest first.
    pub savepoints: Vec<SavepointInfo>,
    /// Completed checkpoints and savepoints, oldest first.
    pub checkpoints: Vec<CheckpointInfo>,
}

/// A job in a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    /// The job id.
    pub id: String,
    /// The job's name.
    pub name: String,
    /// Where it is in its life.
    pub status: JobStatus,
    /// When it was submitted, ms since the epoch.
    pub submitted_at: i64,
    /// When its current (or last) run started, ms since the epoch.
    pub started_at: Option<i64>,
    /// When its last run ended, ms since the epoch.
    pub ended_at: Option<i64>,
    /// Restarts after failures, over all runs.
    pub restarts: u32,
    /// The error that ended the job, or the latest failure it restarted after.
    pub last_error: Option<String>,
}

/// One run of a job.
struct Run {
    handle: SupervisorHandle,
    metrics: Arc<JobMetrics>,
    /// The last two samples, for rates.
    samples: VecDeque<Sample>,
    /// Checkpoints and exceptions of this run in the record on disk: the record is
    /// written again when they change, so that a server killed mid-run keeps them.
    persisted: (usize, usize),
    cancel_requested: bool,
    /// Set by the watcher when the run has ended and its figures are folded into the
    /// record.
    ended: bool,
    watcher: Option<std::thread::JoinHandle<()>>,
}

struct JobState {
    record: JobInfo,
    run: Option<Run>,
    /// The figures at the end of the last run (also after a server restart).
    final_metrics: Option<JobMetricsView>,
}

/// A job known to the manager.
pub struct Job {
    id: String,
    dir: PathBuf,
    state: Mutex<JobState>,
    live: watch::Sender<Option<Arc<JobMetricsView>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Job {
    fn persist(&self, st: &JobState) -> Result<(), String> {
        self.persist_record(&st.record)
    }

    fn persist_record(&self, record: &JobInfo) -> Result<(), String> {
        let json = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        write_atomically(&self.dir.join("job.json"), &json)
    }

    /// A receiver of the job's figures, sent about every second while it runs and once
    /// more when a run ends.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<JobMetricsView>>> {
        self.live.subscribe()
    }

    /// Whether a run is under way.
    pub fn is_running(&self) -> bool {
        lock(&self.state).record.status == JobStatus::Running
    }
}

fn checkpoint_info(c: &sluice_core::checkpoint::CheckpointStats) -> CheckpointInfo {
    CheckpointInfo {
        id: c.id,
        kind: match c.kind {
            SnapshotKind::Checkpoint => "checkpoint",
            SnapshotKind::Savepoint => "savepoint",
        }
        .to_string(),
        status: "completed".to_string(),
        duration_ms: c.duration.as_millis() as u64,
        uploaded_bytes: c.uploaded_bytes,
        state_bytes: c.state_bytes,
        completed_at: c.completed_at,
    }
}

/// The record with the live figures of the current run merged in.
fn live_info(st: &JobState) -> JobInfo {
    let mut info = st.record.clone();
    if let Some(run) = st.run.as_ref().filter(|r| !r.ended) {
        info.restarts += run.handle.restarts();
        info.checkpoints
            .extend(run.handle.checkpoints().iter().map(checkpoint_info));
        let failures: Vec<ExceptionInfo> = run
            .handle
            .events()
            .iter()
            .filter(|e| e.kind != JobEventKind::CheckpointFallback)
            .map(|e| exception(&info.graph, e))
            .collect();
        if let Some(last) = failures.last() {
            info.last_error = Some(last.message.clone());
        }
        info.exceptions.extend(failures);
        info.exceptions
            .extend(handled_failures(&info.graph, &run.metrics));
        info.exceptions.sort_by_key(|e| e.time);
    }
    info
}

fn summary(info: &JobInfo) -> JobSummary {
    JobSummary {
        id: info.id.clone(),
        name: info.name.clone(),
        status: info.status,
        submitted_at: info.submitted_at,
        started_at: info.started_at,
        ended_at: info.ended_at,
        restarts: info.restarts,
        last_error: info.last_error.clone(),
    }
}

/// All jobs.
pub struct JobManager {
    dir: PathBuf,
    engine: Arc<dyn Engine>,
    store: Arc<OperatorStore>,
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
    shutting_down: AtomicBool,
}

/// A new job id: 16 hex digits from the time, the process and a counter.
fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!(
        "{nanos}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Relaxed)
    );
    crate::store::sha256_hex(seed.as_bytes())[..16].to_string()
}

/// Pins every operator of `spec` to its hash in `store` (`operator: <sha256>`) and
/// returns the hashes. Errors (422) name the field: a `wasm:` path (a server runs only
/// uploaded operators), a missing or unknown `operator`.
fn pin_operators(spec: &mut Value, store: &OperatorStore) -> ApiResult<Vec<String>> {
    let mut hashes = Vec::new();
    let Some(ops) = spec.get_mut("operators").and_then(Value::as_array_mut) else {
        return Ok(hashes);
    };
    for (i, op) in ops.iter_mut().enumerate() {
        let field = format!("operators[{i}]");
        let Some(obj) = op.as_object_mut() else {
            continue; // the spec's own check reports it
        };
        if obj.contains_key("wasm") {
            return Err(ApiError::unprocessable(
                "invalid_spec",
                format!(
                    "{field}.wasm: a job submitted to the server runs uploaded operators: upload the component (POST /v1/operators) and name it with `operator: <sha256>` or `operator: <name>@<version>`"
                ),
            ));
        }
        let reference = match obj.get("operator") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(ApiError::unprocessable(
                    "invalid_spec",
                    format!("{field}.operator: must be a string: a SHA-256 or name@version"),
                ));
            }
            None => {
                return Err(ApiError::unprocessable(
                    "invalid_spec",
                    format!(
                        "{field}: names no operator: add `operator: <sha256>` or `operator: <name>@<version>` of an uploaded component"
                    ),
                ));
            }
        };
        let info = store.get(&reference).ok_or_else(|| {
            ApiError::unprocessable(
                "unknown_operator",
                format!(
                    "{field}.operator: no operator '{reference}' is stored (upload it with POST /v1/operators; list them with GET /v1/operators)"
                ),
            )
        })?;
        obj.insert("operator".into(), Value::String(info.sha256.clone()));
        if !hashes.contains(&info.sha256) {
            hashes.push(info.sha256);
        }
    }
    Ok(hashes)
}

/// Parses `spec` (checked by the spec's own rules: errors name the field), with local
/// state under the job's folder unless the spec says where.
fn parse_spec(spec: &Value) -> ApiResult<JobSpec> {
    let mut spec = spec.clone();
    if let Some(obj) = spec.as_object_mut() {
        let state = obj
            .entry("state")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(state) = state.as_object_mut() {
            state
                .entry("dir")
                .or_insert_with(|| Value::String("state".into()));
        }
    }
    spec::from_value::<JobSpec>(&spec, "").map_err(|e| ApiError::unprocessable("invalid_spec", e))
}

impl JobManager {
    /// Opens the jobs under `dir` (creating it) and resumes those that were running,
    /// each from its latest complete checkpoint. A record that does not parse is skipped
    /// with a warning; a job that cannot resume is marked failed with the reason.
    pub fn open(
        dir: &Path,
        engine: Arc<dyn Engine>,
        store: Arc<OperatorStore>,
    ) -> Result<Arc<JobManager>, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let manager = Arc::new(JobManager {
            dir: dir.to_path_buf(),
            engine,
            store,
            jobs: Mutex::new(BTreeMap::new()),
            shutting_down: AtomicBool::new(false),
        });
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut resume = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path().join("job.json");
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let record: JobInfo = match serde_json::from_slice(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("{}: {e}; skipped", path.display());
                    continue;
                }
            };
            let final_metrics = std::fs::read(entry.path().join("metrics.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let running = record.status == JobStatus::Running;
            let job = Arc::new(Job {
                id: record.id.clone(),
                dir: entry.path(),
                state: Mutex::new(JobState {
                    record,
                    run: None,
                    final_metrics,
                }),
                live: watch::Sender::new(None),
            });
            lock(&manager.jobs).insert(job.id.clone(), job.clone());
            if running {
                resume.push(job);
            }
        }
        for job in resume {
            tracing::info!("resuming job {} from its latest checkpoint", job.id);
            let mut st = lock(&job.state);
            if let Err(e) = manager.start_run(&job, &mut st, StartFrom::Latest) {
                tracing::warn!("job {} could not resume: {}", job.id, e.message);
            }
        }
        Ok(manager)
    }

    /// The job `id`. Errors: 404.
    pub fn get(&self, id: &str) -> ApiResult<Arc<Job>> {
        lock(&self.jobs)
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no job '{id}'")))
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<JobSummary> {
        let jobs: Vec<Arc<Job>> = lock(&self.jobs).values().cloned().collect();
        let mut list: Vec<JobSummary> = jobs
            .iter()
            .map(|j| summary(&live_info(&lock(&j.state))))
            .collect();
        list.sort_by(|a, b| (a.submitted_at, &a.id).cmp(&(b.submitted_at, &b.id)));
        list
    }

    /// The job `id` with its live figures. Errors: 404.
    pub fn info(&self, id: &str) -> ApiResult<JobInfo> {
        Ok(live_info(&lock(&self.get(id)?.state)))
    }

    /// Ids of the jobs that use operator `sha256`.
    pub fn jobs_using(&self, sha256: &str) -> Vec<String> {
        let jobs: Vec<Arc<Job>> = lock(&self.jobs).values().cloned().collect();
        jobs.iter()
            .filter(|j| lock(&j.state).record.operators.iter().any(|o| o == sha256))
            .map(|j| j.id.clone())
            .collect()
    }

    /// Submits `spec` (JSON): checks it, pins its operators, builds its graph and
    /// starts it. A job that is accepted but fails to start is kept, failed, with the
    /// reason in `last_error`. Blocking: call it off the async runtime.
    ///
    /// Errors: 422 `invalid_spec` (the message names the field: an unknown field, a
    /// cycle, a missing input...), 422 `unknown_operator`.
    pub fn submit(self: &Arc<Self>, mut spec: Value) -> ApiResult<JobInfo> {
        if !spec.is_object() {
            return Err(ApiError::unprocessable(
                "invalid_spec",
                "a job spec is a JSON object (see host/core/JOB-SPEC.md)",
            ));
        }
        let operators = pin_operators(&mut spec, &self.store)?;
        let parsed = parse_spec(&spec)?;
        let id = new_id();
        let dir = self.dir.join(&id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
        let graph = match self.build(&parsed, &dir) {
            Ok(g) => g,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let view = graph_view(&graph, &spec);
        let now = now_ms();
        let job = Arc::new(Job {
            id: id.clone(),
            dir,
            state: Mutex::new(JobState {
                record: JobInfo {
                    id: id.clone(),
                    name: parsed.name.clone(),
                    status: JobStatus::Running,
                    spec,
                    operators,
                    graph: view,
                    submitted_at: now,
                    started_at: None,
                    ended_at: None,
                    runs: 0,
                    restarts: 0,
                    restored_from: None,
                    last_error: None,
                    exceptions: Vec::new(),
                    savepoints: Vec::new(),
                    checkpoints: Vec::new(),
                },
                run: None,
                final_metrics: None,
            }),
            live: watch::Sender::new(None),
        });
        let mut st = lock(&job.state);
        lock(&self.jobs).insert(id.clone(), job.clone());
        // A start failure is recorded in the job (failed, with the reason).
        let _ = self.start_graph(&job, &mut st, graph, StartFrom::Latest);
        Ok(live_info(&st))
    }

    fn build(&self, spec: &JobSpec, dir: &Path) -> ApiResult<sluice_core::graph::JobGraph> {
        let store = self.store.clone();
        let files = move |reference: &str| -> Result<PathBuf, String> {
            let hash = as_hash(reference)
                .ok_or_else(|| format!("'{reference}' is not an operator's SHA-256"))?;
            let path = store.file(&hash);
            if store.get(&hash).is_some() && path.is_file() {
                Ok(path)
            } else {
                Err(format!("operator {hash} is not stored (it was deleted?)"))
            }
        };
        self.engine
            .build_graph(spec, dir, &files)
            .map_err(|e| ApiError::unprocessable("invalid_spec", e.0))
    }

    /// Builds the graph of the job's spec again and starts a run from `from`.
    fn start_run(
        self: &Arc<Self>,
        job: &Arc<Job>,
        st: &mut JobState,
        from: StartFrom,
    ) -> ApiResult<()> {
        let built = parse_spec(&st.record.spec).and_then(|s| self.build(&s, &job.dir));
        match built {
            Ok(graph) => self.start_graph(job, st, graph, from),
            Err(e) => {
                self.record_start_failure(job, st, e.message.clone());
                Err(e)
            }
        }
    }

    fn record_start_failure(&self, job: &Job, st: &mut JobState, message: String) {
        st.record.status = JobStatus::Failed;
        st.record.ended_at = Some(now_ms());
        st.record.last_error = Some(message);
        if let Err(e) = job.persist(st) {
            tracing::error!("job {}: {e}", job.id);
        }
    }

    fn start_graph(
        self: &Arc<Self>,
        job: &Arc<Job>,
        st: &mut JobState,
        graph: sluice_core::graph::JobGraph,
        from: StartFrom,
    ) -> ApiResult<()> {
        st.record.runs += 1;
        st.record.started_at = Some(now_ms());
        st.record.ended_at = None;
        let supervisor = match Supervisor::start(Arc::new(graph), from) {
            Ok(s) => s,
            Err(e) => {
                let message = format!("the job could not start: {e}");
                self.record_start_failure(job, st, message.clone());
                return Err(ApiError::unprocessable("start_failed", message));
            }
        };
        let handle = supervisor.handle();
        let metrics = supervisor.metrics().clone();
        st.record.status = JobStatus::Running;
        st.record.restored_from = handle.restored_from();
        st.record.last_error = None;
        let manager = self.clone();
        let watched = job.clone();
        let watcher = std::thread::Builder::new()
            .name(format!("job-{}", job.id))
            .spawn(move || {
                let result = supervisor.join();
                manager.run_ended(&watched, result);
            });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                handle.cancel();
                let message = format!("cannot start a thread to watch the job: {e}");
                self.record_start_failure(job, st, message.clone());
                return Err(ApiError::internal(message));
            }
        };
        st.run = Some(Run {
            metrics,
            handle,
            samples: VecDeque::new(),
            persisted: (0, 0),
            cancel_requested: false,
            ended: false,
            watcher,
        });
        if let Err(e) = job.persist(st) {
            tracing::error!("job {}: {e}", job.id);
        }
        Ok(())
    }

    /// Folds an ended run into the job's record.
    fn run_ended(&self, job: &Job, result: Result<JobOutcome, sluice_core::runtime::JobError>) {
        let mut st = lock(&job.state);
        let info = live_info(&st);
        let Some(run) = st.run.as_mut() else {
            return;
        };
        let cancel_requested = run.cancel_requested;
        run.ended = true;
        let metrics = run.metrics.clone();
        let before = run.samples.back().cloned();
        st.record.restarts = info.restarts;
        st.record.checkpoints = info.checkpoints;
        st.record.exceptions = info.exceptions;
        st.record.last_error = info.last_error;
        let now = Sample::take(&metrics);
        let final_view = view(&job.id, &metrics, &now, before.as_ref());
        if let Ok(json) = serde_json::to_vec(&final_view) {
            let _ = write_atomically(&job.dir.join("metrics.json"), &json);
        }
        st.final_metrics = Some(final_view.clone());
        if self.shutting_down.load(Relaxed) && !cancel_requested {
            // The server is stopping: the job stays `running`, to resume on the next start.
            let _ = job.persist(&st);
            job.live.send_replace(Some(Arc::new(final_view)));
            return;
        }
        st.record.ended_at = Some(now_ms());
        st.record.status = match result {
            Ok(JobOutcome::Finished) => JobStatus::Finished,
            Ok(JobOutcome::Stopped { .. }) => JobStatus::Stopped,
            Err(_) if cancel_requested => JobStatus::Cancelled,
            Err(e) => {
                st.record.last_error = Some(e.0);
                JobStatus::Failed
            }
        };
        if let Err(e) = job.persist(&st) {
            tracing::error!("job {}: {e}", job.id);
        }
        job.live.send_replace(Some(Arc::new(final_view)));
    }

    /// Waits up to `timeout` for the job's run to end.
    fn wait_ended(job: &Job, timeout: Duration) {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if lock(&job.state).run.as_ref().is_none_or(|r| r.ended) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn running_handle(job: &Job, st: &JobState) -> ApiResult<SupervisorHandle> {
        match st.run.as_ref().filter(|r| !r.ended) {
            Some(run) if st.record.status == JobStatus::Running => Ok(run.handle.clone()),
            _ => Err(ApiError::conflict(
                "not_running",
                format!(
                    "job '{}' is not running (it is {})",
                    job.id,
                    serde_json::to_value(st.record.status)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                ),
            )),
        }
    }

    /// Takes a savepoint of job `id`; with `stop` the job then stops. Blocking.
    ///
    /// Errors: 404; 409 `not_running`; 409 `savepoint_failed` (the job has no
    /// checkpoint storage, a source has finished, ...: the message says why).
    pub fn savepoint(&self, id: &str, stop: bool) -> ApiResult<(SavepointInfo, JobInfo)> {
        let job = self.get(id)?;
        let handle = Self::running_handle(&job, &lock(&job.state))?;
        let folder = handle
            .savepoint(stop)
            .map_err(|e| ApiError::conflict("savepoint_failed", format!("job '{id}': {e}")))?;
        let sp = SavepointInfo {
            folder,
            taken_at: now_ms(),
            stopped: stop,
        };
        {
            let mut st = lock(&job.state);
            st.record.savepoints.push(sp.clone());
            if let Err(e) = job.persist(&st) {
                tracing::error!("job {id}: {e}");
            }
        }
        if stop {
            Self::wait_ended(&job, Duration::from_secs(60));
        }
        Ok((sp, live_info(&lock(&job.state))))
    }

    /// Replaces the code of operator `vertex` of running job `id` with the uploaded
    /// operator `reference` (a SHA-256 or name@version), while the job runs (hot-swap,
    /// see [`sluice_core::runtime::OperatorSwaps`]): the new component is compiled and
    /// checked, and started once on its own (its `init` must succeed with the spec's
    /// config); then the swap happens at a checkpoint barrier triggered at once, and is
    /// committed when the next checkpoint completes. Waits up to `timeout` for that; when
    /// committed, the job's spec names the new operator (so a restart of the server runs
    /// it). Blocking.
    ///
    /// Errors: 404 (no job, no such operator in the job); 409 `not_running`,
    /// `swap_in_progress`; 422 `unknown_operator`, `invalid_operator` (does not compile,
    /// or its init fails), `swap_rolled_back` (it failed at the barrier or in its trial:
    /// the job runs the old version again).
    pub fn swap_operator(
        &self,
        id: &str,
        vertex: &str,
        reference: &str,
        timeout: Duration,
    ) -> ApiResult<SwapResult> {
        let job = self.get(id)?;
        let (handle, mut spec) = {
            let st = lock(&job.state);
            (Self::running_handle(&job, &st)?, st.record.spec.clone())
        };
        let index = spec["operators"]
            .as_array()
            .and_then(|ops| ops.iter().position(|o| o["id"] == vertex))
            .ok_or_else(|| ApiError::not_found(format!("job '{id}' has no operator '{vertex}'")))?;
        let info = self.store.get(reference).ok_or_else(|| {
            ApiError::unprocessable(
                "unknown_operator",
                format!("no operator '{reference}' is stored (upload it with POST /v1/operators)"),
            )
        })?;
        spec["operators"][index]["operator"] = Value::String(info.sha256.clone());
        let graph = self.build(&parse_spec(&spec)?, &job.dir).map_err(|e| {
            ApiError::unprocessable(
                "invalid_operator",
                format!("the new version: {}", e.message),
            )
        })?;
        let (vi, v) = graph
            .vertices
            .iter()
            .enumerate()
            .find(|(_, v)| v.id == vertex)
            .ok_or_else(|| ApiError::not_found(format!("job '{id}' has no operator '{vertex}'")))?;
        let sluice_core::graph::VertexKind::Operator { factory, .. } = &v.kind else {
            return Err(ApiError::not_found(format!(
                "'{vertex}' is not an operator of job '{id}'"
            )));
        };
        trial_start(
            factory.as_ref(),
            vertex,
            v.parallelism,
            graph.is_keyed(vi),
            graph.config.max_parallelism,
        )
        .map_err(|e| {
            ApiError::unprocessable(
                "invalid_operator",
                format!("the new version of '{vertex}' does not start: {e}"),
            )
        })?;
        handle
            .swap_operator(vertex, factory.clone())
            .map_err(|e| ApiError::conflict("swap_in_progress", format!("job '{id}': {e}")))?;
        let status = handle.swaps().wait(vertex, timeout);
        let result = |status: &str, checkpoint: Option<u64>, pause_ms: Option<f64>| SwapResult {
            status: status.to_string(),
            operator: info.sha256.clone(),
            checkpoint,
            pause_ms,
            job: live_info(&lock(&job.state)),
        };
        match status {
            Some(SwapStatus::Committed {
                checkpoint,
                pause_ms,
            }) => {
                {
                    let mut st = lock(&job.state);
                    st.record.operators = pin_operators(&mut spec, &self.store)?;
                    st.record.spec = spec;
                    if let Some(v) = st.record.graph.vertices.iter_mut().find(|v| v.id == vertex) {
                        v.operator = Some(info.sha256.clone());
                    }
                    if let Err(e) = job.persist(&st) {
                        tracing::error!("job {id}: {e}");
                    }
                }
                Ok(result("committed", Some(checkpoint), Some(pause_ms)))
            }
            Some(SwapStatus::RolledBack { error }) => Err(ApiError::unprocessable(
                "swap_rolled_back",
                format!("job '{id}' runs the old version of '{vertex}' again: {error}"),
            )),
            Some(SwapStatus::Trial {
                checkpoint,
                pause_ms,
            }) => Ok(result("trial", Some(checkpoint), Some(pause_ms))),
            Some(SwapStatus::Armed { checkpoint }) => Ok(result("armed", Some(checkpoint), None)),
            _ => Ok(result("requested", None, None)),
        }
    }

    /// The last `tail` bytes (from a line's start) of job `id`'s guest log: what its
    /// operators printed and logged, tagged with operator and subtask; empty when they
    /// said nothing. Blocking. Errors: 404.
    pub fn guest_log(&self, id: &str, tail: u64) -> ApiResult<String> {
        let job = self.get(id)?;
        let path = job.dir.join(GUEST_LOG);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(ApiError::internal(format!("{}: {e}", path.display()))),
        };
        let start = bytes.len().saturating_sub(tail as usize);
        let start = match start {
            0 => 0,
            s => bytes[s..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |i| s + i + 1),
        };
        Ok(String::from_utf8_lossy(&bytes[start..]).into_owned())
    }

    /// Cancels job `id` (its checkpoints are kept) and waits up to a minute for it to
    /// end. Blocking. Errors: 404; 409 `not_running`.
    pub fn cancel(&self, id: &str) -> ApiResult<JobInfo> {
        let job = self.get(id)?;
        {
            let mut st = lock(&job.state);
            let handle = Self::running_handle(&job, &st)?;
            if let Some(run) = st.run.as_mut() {
                run.cancel_requested = true;
            }
            handle.cancel();
        }
        Self::wait_ended(&job, Duration::from_secs(60));
        Ok(live_info(&lock(&job.state)))
    }

    /// Starts job `id` again, which is not running: from `savepoint` (a folder in its
    /// checkpoint storage), else from its latest savepoint taken through the API, else
    /// from its latest complete checkpoint (or from scratch). Blocking.
    ///
    /// Errors: 404; 409 `running`; 422 `start_failed` (the savepoint does not fit the
    /// job, an operator is gone...).
    pub fn restart(
        self: &Arc<Self>,
        id: &str,
        savepoint: Option<String>,
        allow_non_restored_state: bool,
    ) -> ApiResult<JobInfo> {
        let job = self.get(id)?;
        let mut st = lock(&job.state);
        if st.record.status == JobStatus::Running {
            return Err(ApiError::conflict(
                "running",
                format!("job '{id}' is running: stop or cancel it first"),
            ));
        }
        let savepoint = savepoint.or_else(|| st.record.savepoints.last().map(|s| s.folder.clone()));
        let from = match savepoint {
            Some(folder) => StartFrom::Savepoint {
                folder,
                allow_non_restored_state,
            },
            None => StartFrom::Latest,
        };
        if let Some(old) = st.run.take()
            && let Some(w) = old.watcher
        {
            // The run has ended (the status says so); its watcher is done or finishing.
            drop(st);
            let _ = w.join();
            st = lock(&job.state);
        }
        self.start_run(&job, &mut st, from)?;
        Ok(live_info(&st))
    }

    /// Forgets job `id`, which is not running: its record goes; its folder (outputs,
    /// checkpoints, savepoints) stays. Errors: 404; 409 `running`.
    pub fn delete(&self, id: &str) -> ApiResult<()> {
        let job = self.get(id)?;
        let st = lock(&job.state);
        if st.record.status == JobStatus::Running {
            return Err(ApiError::conflict(
                "running",
                format!("job '{id}' is running: stop or cancel it first"),
            ));
        }
        for name in ["job.json", "metrics.json"] {
            let p = job.dir.join(name);
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(ApiError::internal(format!("{}: {e}", p.display())));
            }
        }
        drop(st);
        lock(&self.jobs).remove(id);
        Ok(())
    }

    /// The figures of job `id` now: live while it runs, else those at the end of its
    /// last run. Errors: 404.
    pub fn metrics(&self, id: &str) -> ApiResult<JobMetricsView> {
        let job = self.get(id)?;
        let st = lock(&job.state);
        match st.run.as_ref() {
            Some(run) if !run.ended => {
                let now = Sample::take(&run.metrics);
                Ok(view(id, &run.metrics, &now, run.samples.front()))
            }
            _ => Ok(st.final_metrics.clone().unwrap_or_else(|| JobMetricsView {
                job: id.to_string(),
                time: now_ms(),
                vertices: Vec::new(),
            })),
        }
    }

    /// Samples the figures of every running job (called about every second), and sends
    /// them to the jobs' subscribers.
    pub fn sample(&self) {
        let jobs: Vec<Arc<Job>> = lock(&self.jobs).values().cloned().collect();
        for job in jobs {
            let mut st = lock(&job.state);
            let Some(run) = st.run.as_mut().filter(|r| !r.ended) else {
                continue;
            };
            let now = Sample::take(&run.metrics);
            let v = view(&job.id, &run.metrics, &now, run.samples.back());
            run.samples.push_back(now);
            while run.samples.len() > 2 {
                run.samples.pop_front();
            }
            let history = run.handle.history_counts();
            if history != run.persisted {
                run.persisted = history;
                // The record on disk with this run's checkpoints and exceptions; the
                // one in memory gets them when the run ends.
                if let Err(e) = job.persist_record(&live_info(&st)) {
                    tracing::error!("job {}: {e}", job.id);
                }
            }
            drop(st);
            job.live.send_replace(Some(Arc::new(v)));
        }
    }

    /// Every job with its live record and figures, for `/metrics`.
    pub fn snapshot(&self) -> Vec<(JobInfo, Option<JobMetricsView>)> {
        let jobs: Vec<Arc<Job>> = lock(&self.jobs).values().cloned().collect();
        jobs.iter()
            .map(|j| {
                let info = live_info(&lock(&j.state));
                let m = self.metrics(&j.id).ok();
                (info, m)
            })
            .collect()
    }

    /// Stops every running job for a server shutdown: cancelled, with their checkpoints
    /// kept and their records left `running`, so that the next start resumes them.
    /// Waits up to `timeout` for them to end.
    pub fn shutdown(&self, timeout: Duration) {
        self.shutting_down.store(true, Relaxed);
        let jobs: Vec<Arc<Job>> = lock(&self.jobs).values().cloned().collect();
        for job in &jobs {
            if let Some(run) = lock(&job.state).run.as_ref().filter(|r| !r.ended) {
                run.handle.cancel();
            }
        }
        for job in &jobs {
            Self::wait_ended(job, timeout);
        }
    }
}

/// The graph view of a job, with each operator vertex's hash from the pinned `spec`.
fn graph_view(graph: &sluice_core::graph::JobGraph, spec: &Value) -> GraphView {
    GraphView::of(graph, |id| {
        spec.get("operators")?
            .as_array()?
            .iter()
            .find(|o| o.get("id").and_then(Value::as_str) == Some(id))?
            .get("operator")?
            .as_str()
            .map(String::from)
    })
}
