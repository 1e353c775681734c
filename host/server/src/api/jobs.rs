//! `/v1/jobs`: submit, list, inspect, stop, savepoint, cancel, restart and delete jobs;
//! their metrics, checkpoints and a live stream of their figures.

use super::{AppState, blocking, content_type, read_body};

/// The largest body of a small request (stop, restart).
const SMALL_BODY: usize = 64 * 1024;
use crate::error::{ApiError, ApiResult};
use crate::jobs::{CheckpointInfo, JobInfo, JobSummary, SavepointInfo};
use crate::metrics::JobMetricsView;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

/// Parses a JSON body (`application/json`); an empty body is `T::default()` when
/// `optional`.
fn json_body<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &[u8],
    optional: bool,
) -> ApiResult<T> {
    if optional && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let ct = content_type(headers);
    if ct != "application/json" && !ct.ends_with("+json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the body must be application/json, not '{ct}'"),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}")))?;
    if optional && value.is_null() {
        return Ok(T::default());
    }
    sluice_core::spec::from_value(&value, "")
        .map_err(|e| ApiError::unprocessable("invalid_body", e))
}

/// A job spec, the JSON form of a YAML spec (see `host/core/JOB-SPEC.md`), whose
/// operators are named by `operator: <sha256>` or `operator: <name>@<version>` of an
/// uploaded component instead of a `wasm:` path.
#[derive(ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)]
pub struct JobSpecBody(serde_json::Value);

/// Submit a job.
///
/// The spec is checked (errors name the field), its operators are pinned to their
/// hashes, and the job starts at once. Relative paths in the spec resolve against the
/// job's folder in the server's data directory. A job that is accepted but cannot start
/// (an input file that cannot be opened, say) is answered 422 and kept, failed.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body(content = JobSpecBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Submitted and running", body = JobInfo),
        (status = 400, description = "The body is not JSON", body = crate::error::ErrorBody),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 413, description = "Larger than the server's limit", body = crate::error::ErrorBody),
        (status = 415, description = "Not application/json", body = crate::error::ErrorBody),
        (status = 422, description = "Not a valid job (a missing operator, a cycle, an unknown field, ...), or it could not start", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn submit(
    State(app): State<Arc<AppState>>,
    request: Request,
) -> ApiResult<(StatusCode, Json<JobInfo>)> {
    let (parts, body) = request.into_parts();
    let ct = content_type(&parts.headers);
    if ct != "application/json" && !ct.ends_with("+json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("a job spec is submitted as application/json, not '{ct}'"),
        ));
    }
    let body = read_body(
        body,
        app.config.max_spec_bytes,
        "job specs (--max-spec-size)",
    )
    .await?;
    let spec: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the job spec is not JSON: {e}"))
    })?;
    let jobs = app.jobs.clone();
    let info = blocking(move || jobs.submit(spec)).await?;
    if info.status == crate::jobs::JobStatus::Failed {
        return Err(ApiError::unprocessable(
            "start_failed",
            format!(
                "job {} was accepted but could not start: {}",
                info.id,
                info.last_error.as_deref().unwrap_or("unknown error")
            ),
        ));
    }
    Ok((StatusCode::CREATED, Json(info)))
}

/// List jobs.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    responses(
        (status = 200, description = "Every job, oldest first", body = Vec<JobSummary>),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(State(app): State<Arc<AppState>>) -> Json<Vec<JobSummary>> {
    Json(app.jobs.list())
}

/// Inspect a job: status, execution graph, start time, restarts, last error,
/// savepoints and checkpoints.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The job", body = JobInfo),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobInfo>> {
    app.jobs.info(&id).map(Json)
}

/// Forget a job that is not running (its folder, with outputs and checkpoints, stays).
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
        (status = 409, description = "It is running", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let jobs = app.jobs.clone();
    blocking(move || jobs.delete(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How to stop a job.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    /// Take a savepoint and stop after it (sinks commit everything before it, nothing
    /// after it is emitted); otherwise cancel at once. Default false.
    #[serde(default)]
    pub savepoint: bool,
}

/// A stopped job, with its savepoint if it took one.
#[derive(Debug, Serialize, ToSchema)]
pub struct StopResult {
    /// The savepoint taken, if the stop asked for one.
    pub savepoint: Option<SavepointInfo>,
    /// The job, as it ended.
    pub job: JobInfo,
}

/// Stop a job: with a savepoint (`{"savepoint": true}`), or at once (a cancel; its
/// checkpoints are kept).
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/stop",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    request_body(content = Option<StopRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Stopped", body = StopResult),
        (status = 400, description = "The body is not JSON", body = crate::error::ErrorBody),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
        (status = 409, description = "Not running, or the savepoint failed (the job goes on)", body = crate::error::ErrorBody),
        (status = 415, description = "A body that is not application/json", body = crate::error::ErrorBody),
        (status = 422, description = "An unknown field", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stop(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult<Json<StopResult>> {
    let (parts, body) = request.into_parts();
    let body = read_body(body, SMALL_BODY, "this request").await?;
    let req: StopRequest = json_body(&parts.headers, &body, true)?;
    let jobs = app.jobs.clone();
    blocking(move || {
        if req.savepoint {
            let (sp, job) = jobs.savepoint(&id, true)?;
            Ok(StopResult {
                savepoint: Some(sp),
                job,
            })
        } else {
            Ok(StopResult {
                savepoint: None,
                job: jobs.cancel(&id)?,
            })
        }
    })
    .await
    .map(Json)
}

/// Cancel a job at once (its checkpoints are kept, so a restart resumes).
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "Cancelled", body = JobInfo),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
        (status = 409, description = "Not running", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobInfo>> {
    let jobs = app.jobs.clone();
    blocking(move || jobs.cancel(&id)).await.map(Json)
}

/// A savepoint taken, and the job.
#[derive(Debug, Serialize, ToSchema)]
pub struct SavepointResult {
    /// The savepoint.
    pub savepoint: SavepointInfo,
    /// The job.
    pub job: JobInfo,
}

/// Take a savepoint of a running job (it goes on running).
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/savepoints",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 201, description = "Taken", body = SavepointResult),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
        (status = 409, description = "Not running, or the savepoint failed (no checkpoint storage, a source has finished, ...)", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn savepoint(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<SavepointResult>)> {
    let jobs = app.jobs.clone();
    let (savepoint, job) = blocking(move || jobs.savepoint(&id, false)).await?;
    Ok((
        StatusCode::CREATED,
        Json(SavepointResult { savepoint, job }),
    ))
}

/// Where a restart starts from.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartRequest {
    /// A savepoint (or checkpoint) folder in the job's checkpoint storage, as
    /// `savepoints/flights-12`. Default: the job's latest savepoint taken through the
    /// API, else its latest complete checkpoint, else from scratch.
    #[serde(default)]
    pub savepoint: Option<String>,
    /// Drop state of operators the job no longer has instead of failing. Default false.
    #[serde(default)]
    pub allow_non_restored_state: bool,
}

/// Restart a job that is not running, from a savepoint.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/restart",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    request_body(content = Option<RestartRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Running again", body = JobInfo),
        (status = 400, description = "The body is not JSON", body = crate::error::ErrorBody),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
        (status = 409, description = "It is running", body = crate::error::ErrorBody),
        (status = 415, description = "A body that is not application/json", body = crate::error::ErrorBody),
        (status = 422, description = "It could not start (the savepoint does not fit, ...)", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn restart(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult<Json<JobInfo>> {
    let (parts, body) = request.into_parts();
    let body = read_body(body, SMALL_BODY, "this request").await?;
    let req: RestartRequest = json_body(&parts.headers, &body, true)?;
    let jobs = app.jobs.clone();
    blocking(move || jobs.restart(&id, req.savepoint, req.allow_non_restored_state))
        .await
        .map(Json)
}

/// How much of a job's guest log to return.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// The last this many bytes (from a line's start); default 65,536, at most the
    /// log's cap (16 MiB).
    #[param(minimum = 0, maximum = 16777216)]
    pub tail_bytes: Option<u32>,
}

/// What the job's operators printed and logged (their stdout, stderr and `log` calls),
/// each line tagged with the time, the operator and subtask, and the stream or level;
/// rate-limited per operator and capped per job.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/log",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id"), LogParams),
    responses(
        (status = 200, description = "The log's tail", content_type = "text/plain", body = String),
        (status = 400, description = "tail_bytes is not a number from 0 to 16777216", body = crate::error::ErrorBody),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn guest_log(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::extract::Query(params): axum::extract::Query<LogParams>,
) -> ApiResult<([(axum::http::header::HeaderName, &'static str); 1], String)> {
    let jobs = app.jobs.clone();
    let tail = params.tail_bytes.unwrap_or(64 << 10);
    if tail > 16 << 20 {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("tail_bytes: {tail} is more than the log's cap of 16777216 bytes"),
        ));
    }
    let tail = u64::from(tail);
    let text = blocking(move || jobs.guest_log(&id, tail)).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        text,
    ))
}

/// The new version of an operator for a hot-swap.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwapRequest {
    /// An uploaded operator: its SHA-256 or `name@version`.
    pub operator: String,
    /// Most seconds to wait for the swap to be committed (default 60, at most 600).
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

/// Replace an operator's code while the job runs (hot-swap).
///
/// The new component is compiled, checked against the world and started once on its
/// own; then, at a checkpoint barrier triggered at once, every subtask of the operator
/// moves its keyed state and timers to the new version: events before the barrier went
/// through the old version, events after it through the new one, and the rest of the
/// graph does not stop. The swap is committed when the next checkpoint completes; if the
/// new version fails to start at the barrier or the job fails before that, the job goes
/// back to the old version by itself.
#[utoipa::path(
    put,
    path = "/v1/jobs/{id}/operators/{operator_id}",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job id"),
        ("operator_id" = String, Path, description = "The operator's id in the job spec"),
    ),
    request_body(content = SwapRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Committed, or (when the wait ran out) still under way: see status", body = crate::jobs::SwapResult),
        (status = 400, description = "The body is not JSON", body = crate::error::ErrorBody),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job, or no such operator in it", body = crate::error::ErrorBody),
        (status = 409, description = "The job is not running, or a swap of the operator is under way", body = crate::error::ErrorBody),
        (status = 415, description = "Not application/json", body = crate::error::ErrorBody),
        (status = 422, description = "No such uploaded operator; the new version does not compile or start; or it was rolled back", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn swap_operator(
    State(app): State<Arc<AppState>>,
    Path((id, operator_id)): Path<(String, String)>,
    request: Request,
) -> ApiResult<Json<crate::jobs::SwapResult>> {
    let (parts, body) = request.into_parts();
    let body = read_body(body, SMALL_BODY, "this request").await?;
    let req: SwapRequest = json_body(&parts.headers, &body, false)?;
    let wait = std::time::Duration::from_secs(req.wait_seconds.unwrap_or(60).min(600));
    let jobs = app.jobs.clone();
    blocking(move || jobs.swap_operator(&id, &operator_id, &req.operator, wait))
        .await
        .map(Json)
}

/// Per-vertex figures of a job: records and bytes in and out and their rates, busy and
/// backpressured time, watermark, late records; per subtask too.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/metrics",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "Live figures (or those at the end of its last run)", body = JobMetricsView),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn metrics(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobMetricsView>> {
    app.jobs.metrics(&id).map(Json)
}

/// The completed checkpoints and savepoints of a job, oldest first.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/checkpoints",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "Checkpoint history", body = Vec<CheckpointInfo>),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn checkpoints(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<CheckpointInfo>>> {
    app.jobs.info(&id).map(|i| Json(i.checkpoints))
}

/// One server-sent event of `/v1/jobs/{id}/events`, as the OpenAPI document describes
/// each event of the stream.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StreamEvent {
    /// `metrics` or `job`.
    #[schema(pattern = "^(metrics|job)$")]
    pub event: String,
    /// JSON: a `JobMetricsView` for `metrics`, a `JobSummary` for `job`.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// A live stream (server-sent events) of a job's figures.
///
/// `event: metrics` with a [`JobMetricsView`] about every second while the job runs;
/// when the job is not (or no longer) running, a last `metrics` and an `event: job` with
/// its summary, and the stream ends.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "Server-sent events: `metrics` (JobMetricsView) and, at the end, `job` (JobSummary)", content_type = "text/event-stream", body = StreamEvent),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn events(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let job = app.jobs.get(&id)?;
    let rx = job.subscribe();
    let shutdown = app.shutdown.clone();
    enum Step {
        First,
        Wait,
        Done,
    }
    let state = (Step::First, rx, shutdown, app.clone(), id, job);
    let stream = futures_util::stream::unfold(
        state,
        |(step, mut rx, mut shutdown, app, id, job)| async move {
            let metrics_event = |app: &AppState, id: &str| {
                app.jobs
                    .metrics(id)
                    .ok()
                    .and_then(|m| Event::default().event("metrics").json_data(m).ok())
            };
            let end = |app: &AppState, id: &str| {
                let summary = app.jobs.list().into_iter().find(|s| s.id == id);
                Event::default()
                    .event("job")
                    .json_data(summary)
                    .unwrap_or_else(|_| Event::default().event("job"))
            };
            match step {
                Step::Done => None,
                Step::First => {
                    let ev = metrics_event(&app, &id)
                        .unwrap_or_else(|| Event::default().comment("no figures"));
                    let next = if job.is_running() {
                        Step::Wait
                    } else {
                        Step::Done
                    };
                    let events = if matches!(next, Step::Done) {
                        vec![ev, end(&app, &id)]
                    } else {
                        vec![ev]
                    };
                    Some((events, (next, rx, shutdown, app, id, job)))
                }
                Step::Wait => {
                    tokio::select! {
                        changed = rx.changed() => {
                            if changed.is_err() {
                                return None;
                            }
                            let latest = rx.borrow_and_update().clone();
                            let ev = latest
                                .and_then(|m| Event::default().event("metrics").json_data(&*m).ok())
                                .unwrap_or_else(|| Event::default().comment("no figures"));
                            if job.is_running() {
                                Some((vec![ev], (Step::Wait, rx, shutdown, app, id, job)))
                            } else {
                                let done = end(&app, &id);
                                Some((vec![ev, done], (Step::Done, rx, shutdown, app, id, job)))
                            }
                        }
                        _ = shutdown.changed() => None,
                    }
                }
            }
        },
    );
    let stream = futures_util::StreamExt::flat_map(stream, |events| {
        futures_util::stream::iter(events.into_iter().map(Ok))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
