//! `/v1/jobs`: submit a job spec, list and inspect jobs, stop, savepoint, cancel,
//! restart; per-vertex metrics, checkpoint history and a live event stream.

use super::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::jobs::{GraphView, Job, JobRecord, JobStatus, backpressured_ns, vertex_counts};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::{Deserialize, Serialize};
use sluice_core::runtime::StartFrom;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::StreamExt;
use utoipa::ToSchema;

/// A job as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// Its id.
    pub id: String,
    /// Its name (from the spec).
    pub name: String,
    /// Its status.
    pub status: JobStatus,
    /// When it was submitted (RFC 3339).
    pub submitted_at: String,
    /// When its current run started (RFC 3339; empty when not started since the server
    /// started).
    pub started_at: String,
    /// Restarts after failures in its current run.
    pub restarts: u32,
    /// The last error.
    pub last_error: Option<String>,
    /// Hashes of the operators it uses.
    pub operators: Vec<String>,
    /// Savepoints taken (folders in its checkpoint storage), newest last.
    pub savepoints: Vec<String>,
    /// The execution graph.
    pub graph: GraphView,
}

/// Live figures of one vertex, summed over its subtasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct VertexMetricsView {
    /// The vertex id.
    pub id: String,
    /// `source`, `operator`, `window` or `sink`.
    pub kind: String,
    /// Its subtasks.
    pub parallelism: usize,
    /// Records received.
    pub records_in: u64,
    /// Records emitted (main output).
    pub records_out: u64,
    /// Records received per second, over the last second.
    pub records_in_per_second: f64,
    /// Records emitted per second, over the last second.
    pub records_out_per_second: f64,
    /// Milliseconds spent waiting on full downstream channels (backpressure), all
    /// subtasks together.
    pub backpressured_ms: u64,
    /// The vertex's watermark (ms since the epoch; null before the first).
    pub watermark: Option<i64>,
    /// Windows: events that came after their window had fired (late, dropped or sent to
    /// the late side output).
    pub late_records: u64,
    /// Per subtask: `[records in, records out, watermark or null]`.
    pub subtasks: Vec<SubtaskMetricsView>,
}

/// Live figures of one subtask.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubtaskMetricsView {
    /// Records received.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Its watermark (null before the first).
    pub watermark: Option<i64>,
}

/// A completed checkpoint or savepoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    /// Its id.
    pub id: u64,
    /// `checkpoint` or `savepoint`.
    pub kind: String,
    /// From trigger to completion, ms.
    pub duration_ms: f64,
    /// Bytes uploaded for it.
    pub uploaded_bytes: u64,
    /// Bytes of state it references.
    pub state_bytes: u64,
}

/// Body of `POST /v1/jobs/{id}/stop`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    /// Take a savepoint first (stop-with-savepoint); otherwise the job is cancelled.
    #[serde(default)]
    pub savepoint: bool,
}

/// Body of `POST /v1/jobs/{id}/restart`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartRequest {
    /// Start from this savepoint (a folder the job's savepoints list); default: the
    /// latest complete checkpoint.
    #[serde(default)]
    pub savepoint: Option<String>,
    /// With `savepoint`: drop state of operators the job no longer has.
    #[serde(default)]
    pub allow_non_restored_state: bool,
}

/// A savepoint taken.
#[derive(Debug, Serialize, ToSchema)]
pub struct SavepointView {
    /// Its folder in the job's checkpoint storage.
    pub savepoint: String,
}

fn view(job: &Job) -> JobView {
    let r = job.record();
    let (_, restarts) = job.checkpoints_and_restarts();
    JobView {
        id: r.id,
        name: r.name,
        status: r.status,
        submitted_at: r.submitted_at,
        started_at: job.started().0.to_string(),
        restarts,
        last_error: r.last_error,
        operators: r.operators,
        savepoints: r.savepoints,
        graph: job.graph.clone(),
    }
}

fn job(state: &AppState, id: &str) -> Result<Arc<Job>, ApiError> {
    state
        .jobs
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no job '{id}'")))
}

fn invalid_spec(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec", message)
}

/// Replaces each operator's `operator` reference (sha256 or name@version) with the
/// stored component's path. Returns the hashes used.
fn resolve_operators(
    state: &AppState,
    spec: &mut serde_json::Value,
) -> Result<Vec<String>, ApiError> {
    let mut used = Vec::new();
    let Some(ops) = spec.get_mut("operators") else {
        return Ok(used);
    };
    let ops = ops
        .as_array_mut()
        .ok_or_else(|| invalid_spec("operators: expected a list"))?;
    for (i, op) in ops.iter_mut().enumerate() {
        let field = format!("operators[{i}]");
        let obj = op
            .as_object_mut()
            .ok_or_else(|| invalid_spec(format!("{field}: expected an object")))?;
        if obj.contains_key("wasm") {
            return Err(invalid_spec(format!(
                "{field}.wasm: a job on the server names its operator by `operator: <name>@<version>` or its sha256; upload the .wasm first (POST /v1/operators)"
            )));
        }
        let reference = obj
            .remove("operator")
            .ok_or_else(|| {
                invalid_spec(format!(
                    "{field}: missing `operator` (<name>@<version> or the sha256 of an uploaded operator)"
                ))
            })?;
        let reference = reference
            .as_str()
            .ok_or_else(|| invalid_spec(format!("{field}.operator: expected a string")))?;
        let meta = state.operators.find(reference).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_operator",
                format!("{field}.operator: no operator '{reference}' is uploaded"),
            )
        })?;
        let path = state.operators.wasm_path(&meta.hash);
        obj.insert("wasm".into(), path.to_string_lossy().into_owned().into());
        used.push(meta.hash);
    }
    Ok(used)
}

/// Submits a job spec (JSON, the format of `host/core/JOB-SPEC.md`, with each operator
/// named by `operator: <name>@<version>` or its sha256 instead of `wasm`) and starts it.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body(content = serde_json::Value, content_type = "application/json", description = "The job spec"),
    responses(
        (status = 201, description = "Started", body = JobView),
        (status = 400, description = "Not a JSON object", body = ErrorBody),
        (status = 413, description = "Larger than the limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "The spec is invalid or names an operator that is not uploaded", body = ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.split(';').next().unwrap_or("").trim() != "application/json" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type '{content_type}' is not accepted: send the job spec as application/json"
            ),
        ));
    }
    let original: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if !original.is_object() {
        return Err(ApiError::bad_request("the job spec must be a JSON object"));
    }
    let name = original
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| invalid_spec("name: missing (a string)"))?
        .to_string();
    let mut spec = original.clone();
    let operators = resolve_operators(&state, &mut spec)?;
    // Local state in the job's folder unless the spec says where: two jobs of one name
    // must not share it.
    if spec.get("state").and_then(|s| s.get("dir")).is_none() {
        let state_spec = spec
            .as_object_mut()
            .expect("an object")
            .entry("state")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(obj) = state_spec.as_object_mut() {
            obj.insert("dir".into(), "state".into());
        }
    }
    let id = state.jobs.new_id(&name);
    let dir = state.jobs.job_dir(&id);
    let record = JobRecord {
        id,
        name,
        spec: original,
        operators,
        status: JobStatus::Running,
        submitted_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        last_error: None,
        savepoints: Vec::new(),
    };
    let s = state.clone();
    let started = tokio::task::spawn_blocking(move || -> Result<Arc<Job>, ApiError> {
        let fail = |e: ApiError| {
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
        let path = dir.join("spec.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).expect("JSON"))
            .map_err(|e| fail(ApiError::internal(format!("{}: {e}", path.display()))))?;
        let graph = s
            .engine
            .build_graph(&path)
            .map_err(|e| fail(invalid_spec(e)))?;
        s.jobs
            .start(graph, record, StartFrom::Scratch)
            .map_err(|e| fail(invalid_spec(format!("the job cannot start: {e}"))))
    })
    .await
    .map_err(|e| ApiError::internal(format!("starting the job: {e}")))??;
    Ok((StatusCode::CREATED, Json(view(&started))))
}

/// Lists the jobs.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    responses((status = 200, body = Vec<JobView>)))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<JobView>> {
    Json(state.jobs.list().iter().map(|j| view(j)).collect())
}

/// One job: status, graph, start time, restarts, last error.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = job(&state, &id)?;
    Ok(Json(view(&job)))
}

fn not_running(e: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "job_not_running", e)
}

async fn take_savepoint(job: Arc<Job>, stop: bool) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || job.savepoint(stop))
        .await
        .map_err(|e| ApiError::internal(format!("taking the savepoint: {e}")))?
        .map_err(not_running)
}

/// Stops a job: with `savepoint: true` after a savepoint (its sinks commit everything
/// before it), otherwise by cancelling it (its checkpoints are kept).
#[utoipa::path(post, path = "/v1/jobs/{id}/stop", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    request_body(content = StopRequest, content_type = "application/json"),
    responses(
        (status = 200, body = JobView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not running, or the savepoint failed", body = ErrorBody)))]
pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<JobView>, ApiError> {
    let request: StopRequest = if body.is_empty() {
        StopRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body: {e}")))?
    };
    let job = job(&state, &id)?;
    if job.record().status != JobStatus::Running {
        return Err(not_running(format!("job '{id}' is not running")));
    }
    if request.savepoint {
        take_savepoint(job.clone(), true).await?;
        // The job ends right after its savepoint; wait (briefly) to report it stopped.
        for _ in 0..100 {
            if job.record().status != JobStatus::Running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        state.jobs.cancel(&job);
    }
    Ok(Json(view(&job)))
}

/// Cancels a job (its checkpoints are kept; `restart` resumes from the latest).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = job(&state, &id)?;
    if job.record().status != JobStatus::Running {
        return Err(not_running(format!("job '{id}' is not running")));
    }
    state.jobs.cancel(&job);
    Ok(Json(view(&job)))
}

/// Takes a savepoint of a running job; it goes on running.
#[utoipa::path(post, path = "/v1/jobs/{id}/savepoints", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 201, body = SavepointView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn savepoint(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<SavepointView>), ApiError> {
    let job = job(&state, &id)?;
    let savepoint = take_savepoint(job, false).await?;
    Ok((StatusCode::CREATED, Json(SavepointView { savepoint })))
}

/// Starts a job that is not running again: from a savepoint, or from its latest complete
/// checkpoint.
#[utoipa::path(post, path = "/v1/jobs/{id}/restart", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    request_body(content = RestartRequest, content_type = "application/json"),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody),
        (status = 409, description = "It is running", body = ErrorBody),
        (status = 422, description = "It cannot start (an unusable savepoint, say)", body = ErrorBody)))]
pub async fn restart(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<JobView>, ApiError> {
    let request: RestartRequest = if body.is_empty() {
        RestartRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body: {e}")))?
    };
    let old = job(&state, &id)?;
    let mut record = old.record();
    if record.status == JobStatus::Running {
        return Err(ApiError::conflict(format!(
            "job '{id}' is running: stop it first"
        )));
    }
    let from = match request.savepoint {
        Some(folder) => StartFrom::Savepoint {
            folder,
            allow_non_restored_state: request.allow_non_restored_state,
        },
        None => StartFrom::Latest,
    };
    record.status = JobStatus::Running;
    record.last_error = None;
    let s = state.clone();
    let dir = old.dir.clone();
    let job = tokio::task::spawn_blocking(move || -> Result<Arc<Job>, ApiError> {
        let graph = s
            .engine
            .build_graph(&dir.join("spec.json"))
            .map_err(invalid_spec)?;
        s.jobs
            .start(graph, record, from)
            .map_err(|e| invalid_spec(format!("the job cannot start: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal(format!("restarting the job: {e}")))??;
    Ok(Json(view(&job)))
}

/// Deletes a job that is not running (its folder, outputs and checkpoints included).
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let job = job(&state, &id)?;
    if job.record().status == JobStatus::Running {
        return Err(ApiError::conflict(format!(
            "job '{id}' is running: stop it first"
        )));
    }
    state.jobs.remove(&id).map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn vertex_metrics(job: &Job) -> Vec<VertexMetricsView> {
    let m = job.metrics();
    let rates = job.rates();
    let wm = |w: i64| (w != i64::MIN).then_some(w);
    m.vertices
        .iter()
        .map(|v| {
            let (records_in, records_out) = vertex_counts(m, &v.id);
            let (rin, rout) = rates.get(&v.id).copied().unwrap_or((0.0, 0.0));
            VertexMetricsView {
                id: v.id.clone(),
                kind: v.kind.to_string(),
                parallelism: v.subtasks.len(),
                records_in,
                records_out,
                records_in_per_second: rin,
                records_out_per_second: rout,
                backpressured_ms: backpressured_ns(m, &v.id) / 1_000_000,
                watermark: wm(v.watermark()),
                late_records: v.window_sum(|w| &w.late_events),
                subtasks: v
                    .subtasks
                    .iter()
                    .map(|s| SubtaskMetricsView {
                        records_in: s.records_in.load(std::sync::atomic::Ordering::Relaxed),
                        records_out: s.records_out.load(std::sync::atomic::Ordering::Relaxed),
                        watermark: wm(s.watermark.load(std::sync::atomic::Ordering::Relaxed)),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Live figures per vertex.
#[utoipa::path(get, path = "/v1/jobs/{id}/metrics", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, body = Vec<VertexMetricsView>), (status = 404, body = ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<VertexMetricsView>>, ApiError> {
    let job = job(&state, &id)?;
    Ok(Json(vertex_metrics(&job)))
}

/// Completed checkpoints and savepoints of the job's current run.
#[utoipa::path(get, path = "/v1/jobs/{id}/checkpoints", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, body = Vec<CheckpointView>), (status = 404, body = ErrorBody)))]
pub async fn checkpoints(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<CheckpointView>>, ApiError> {
    let (list, _) = job(&state, &id)?.checkpoints_and_restarts();
    Ok(Json(
        list.into_iter()
            .map(|c| CheckpointView {
                id: c.id,
                kind: format!("{:?}", c.kind).to_lowercase(),
                duration_ms: c.duration.as_secs_f64() * 1e3,
                uploaded_bytes: c.uploaded_bytes,
                state_bytes: c.state_bytes,
            })
            .collect(),
    ))
}

/// A server-sent-event stream of the job: every second an event `update` whose data is
/// `{"job": <the job>, "metrics": <per-vertex figures>}`, until the client goes away.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream", body = String),
        (status = 404, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl tokio_stream::Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError>
{
    let job = job(&state, &id)?;
    let ticks =
        tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(Duration::from_secs(1)));
    let stream = ticks.map(move |_| {
        let update = serde_json::json!({"job": view(&job), "metrics": vertex_metrics(&job)});
        Ok(Event::default()
            .event("update")
            .json_data(update)
            .unwrap_or_default())
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
