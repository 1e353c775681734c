//! `/healthz`, `/metrics` (Prometheus text) and `/v1/openapi.json`.

use super::{ApiDoc, AppState};
use crate::jobs::JobStatus;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;
use utoipa::OpenApi;

/// Liveness: always `ok` while the server runs (no token needed).
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "The server is up", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The OpenAPI 3.1 document of this API, generated from the code.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI document", body = serde_json::Value)))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Figures of every job in the Prometheus text format (version 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let jobs = state.jobs.list();
    let mut out = String::from("# HELP sluice_jobs Jobs by status.\n# TYPE sluice_jobs gauge\n");
    for s in [
        JobStatus::Running,
        JobStatus::Finished,
        JobStatus::Stopped,
        JobStatus::Cancelled,
        JobStatus::Failed,
    ] {
        let n = jobs.iter().filter(|j| j.record().status == s).count();
        let status = serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let _ = writeln!(out, "sluice_jobs{{status=\"{status}\"}} {n}");
    }
    let per_vertex: [(&str, &str, &str); 5] = [
        (
            "sluice_records_in_total",
            "counter",
            "Records received by a vertex.",
        ),
        (
            "sluice_records_out_total",
            "counter",
            "Records emitted by a vertex.",
        ),
        (
            "sluice_backpressured_seconds_total",
            "counter",
            "Time a vertex waited on full downstream channels.",
        ),
        (
            "sluice_watermark_milliseconds",
            "gauge",
            "A vertex's event-time watermark (ms since the epoch).",
        ),
        (
            "sluice_late_records_total",
            "counter",
            "Records that came after their window fired.",
        ),
    ];
    for (i, (name, kind, help)) in per_vertex.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for job in &jobs {
            let id = label(&job.record().id);
            for v in super::jobs::vertex_metrics(job) {
                let value = match i {
                    0 => v.records_in as f64,
                    1 => v.records_out as f64,
                    2 => v.backpressured_ms as f64 / 1e3,
                    3 => match v.watermark {
                        Some(w) => w as f64,
                        None => continue,
                    },
                    _ => v.late_records as f64,
                };
                let _ = writeln!(
                    out,
                    "{name}{{job=\"{id}\",vertex=\"{}\"}} {value}",
                    label(&v.id)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP sluice_job_restarts_total Restarts after failures in the job's current run.\n# TYPE sluice_job_restarts_total counter"
    );
    let mut checkpoints = String::from(
        "# HELP sluice_checkpoints_total Checkpoints and savepoints completed in the job's current run.\n# TYPE sluice_checkpoints_total counter\n",
    );
    for job in &jobs {
        let id = label(&job.record().id);
        let (list, restarts) = job.checkpoints_and_restarts();
        let _ = writeln!(out, "sluice_job_restarts_total{{job=\"{id}\"}} {restarts}");
        let _ = writeln!(
            checkpoints,
            "sluice_checkpoints_total{{job=\"{id}\"}} {}",
            list.len()
        );
    }
    out.push_str(&checkpoints);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
