//! `/healthz`, `/metrics` (Prometheus) and `/v1/openapi.json`.

use super::AppState;
use crate::jobs::JobStatus;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use std::fmt::Write;
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};

/// The server's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
}

/// Whether the server is up. Needs no token.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    responses((status = 200, description = "Up", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "system",
    responses(
        (status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn openapi() -> impl IntoResponse {
    Json(super::ApiDoc::openapi())
}

/// Escapes a Prometheus label value.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A failure series: name, help, and its values with their `kind` label (empty: none).
type FailureSeries = (
    &'static str,
    &'static str,
    fn(&crate::metrics::FailureFigures) -> Vec<(&'static str, u64)>,
);

/// Figures of every job in the Prometheus text format (0.0.4): per job its status,
/// restarts and completed checkpoints; per subtask of every vertex records and bytes in
/// and out, busy and backpressured seconds, and the watermark; per window vertex its
/// late records; per operator vertex its failed calls by kind, and its skipped and
/// dead-lettered records.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "No or a wrong token", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn prometheus(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let jobs = app.jobs.clone();
    let text =
        tokio::task::spawn_blocking(move || render(&jobs.snapshot(), app.store.list().len()))
            .await
            .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

type Snapshot = [(crate::jobs::JobInfo, Option<crate::metrics::JobMetricsView>)];

fn render(jobs: &Snapshot, operators: usize) -> String {
    let mut out = String::new();
    let statuses = [
        JobStatus::Running,
        JobStatus::Finished,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Stopped,
    ];
    let status_name = |s: JobStatus| {
        serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    };
    let _ = writeln!(out, "# HELP sluice_operators Operator components stored.");
    let _ = writeln!(out, "# TYPE sluice_operators gauge");
    let _ = writeln!(out, "sluice_operators {operators}");
    let _ = writeln!(out, "# HELP sluice_jobs Jobs by status.");
    let _ = writeln!(out, "# TYPE sluice_jobs gauge");
    for s in statuses {
        let n = jobs.iter().filter(|(j, _)| j.status == s).count();
        let _ = writeln!(out, "sluice_jobs{{status=\"{}\"}} {n}", status_name(s));
    }
    let job_labels = |j: &crate::jobs::JobInfo| {
        format!("job_id=\"{}\",job=\"{}\"", label(&j.id), label(&j.name))
    };
    let _ = writeln!(
        out,
        "# HELP sluice_job_running Whether the job is running (1) or not (0)."
    );
    let _ = writeln!(out, "# TYPE sluice_job_running gauge");
    for (j, _) in jobs {
        let _ = writeln!(
            out,
            "sluice_job_running{{{}}} {}",
            job_labels(j),
            (j.status == JobStatus::Running) as u8
        );
    }
    let _ = writeln!(
        out,
        "# HELP sluice_job_restarts_total Restarts after failures."
    );
    let _ = writeln!(out, "# TYPE sluice_job_restarts_total counter");
    for (j, _) in jobs {
        let _ = writeln!(
            out,
            "sluice_job_restarts_total{{{}}} {}",
            job_labels(j),
            j.restarts
        );
    }
    let _ = writeln!(
        out,
        "# HELP sluice_job_checkpoints_total Completed checkpoints and savepoints."
    );
    let _ = writeln!(out, "# TYPE sluice_job_checkpoints_total counter");
    for (j, _) in jobs {
        let _ = writeln!(
            out,
            "sluice_job_checkpoints_total{{{}}} {}",
            job_labels(j),
            j.checkpoints.len()
        );
    }
    type Getter = fn(&crate::metrics::Figures) -> f64;
    let series: [(&str, &str, &str, Getter); 8] = [
        (
            "sluice_records_in_total",
            "counter",
            "Events received.",
            |f| f.records_in as f64,
        ),
        (
            "sluice_records_out_total",
            "counter",
            "Events emitted on the main output.",
            |f| f.records_out as f64,
        ),
        (
            "sluice_side_records_out_total",
            "counter",
            "Events emitted on side outputs.",
            |f| f.side_records_out as f64,
        ),
        ("sluice_bytes_in_total", "counter", "Bytes received.", |f| {
            f.bytes_in as f64
        }),
        (
            "sluice_bytes_out_total",
            "counter",
            "Bytes emitted on the main output.",
            |f| f.bytes_out as f64,
        ),
        (
            "sluice_busy_seconds_total",
            "counter",
            "Time spent working.",
            |f| f.busy_ms as f64 / 1e3,
        ),
        (
            "sluice_backpressured_seconds_total",
            "counter",
            "Time spent waiting on full downstream channels.",
            |f| f.backpressured_ms as f64 / 1e3,
        ),
        (
            "sluice_watermark_milliseconds",
            "gauge",
            "Current watermark, ms since the epoch (absent before the first).",
            |f| f.watermark.map_or(f64::NAN, |w| w as f64),
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (j, m) in jobs {
            let Some(m) = m else { continue };
            for v in &m.vertices {
                for (i, s) in v.subtasks.iter().enumerate() {
                    let x = get(s);
                    if x.is_nan() {
                        continue;
                    }
                    let _ = writeln!(
                        out,
                        "{name}{{{},vertex=\"{}\",subtask=\"{i}\"}} {x}",
                        job_labels(j),
                        label(&v.id)
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP sluice_late_records_total Events too late for their windows (sent to the late side output)."
    );
    let _ = writeln!(out, "# TYPE sluice_late_records_total counter");
    for (j, m) in jobs {
        let Some(m) = m else { continue };
        for v in m.vertices.iter().filter(|v| v.kind == "window") {
            let _ = writeln!(
                out,
                "sluice_late_records_total{{{},vertex=\"{}\"}} {}",
                job_labels(j),
                label(&v.id),
                v.late_records
            );
        }
    }
    let failures: [FailureSeries; 3] = [
        (
            "sluice_operator_failures_total",
            "Failed calls of user operators, by kind: trap, limit or error.",
            |f| {
                vec![
                    ("trap", f.traps),
                    ("limit", f.limit_hits),
                    ("error", f.errors),
                ]
            },
        ),
        (
            "sluice_skipped_records_total",
            "Events and timers dropped under the skip failure policy.",
            |f| vec![("", f.skipped_records)],
        ),
        (
            "sluice_dead_lettered_records_total",
            "Records sent to the dead-letter side output.",
            |f| vec![("", f.dead_lettered_records)],
        ),
    ];
    for (name, help, get) in failures {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (j, m) in jobs {
            let Some(m) = m else { continue };
            for v in m.vertices.iter().filter(|v| v.kind == "operator") {
                for (kind, n) in get(&v.failures) {
                    let kind = if kind.is_empty() {
                        String::new()
                    } else {
                        format!(",kind=\"{kind}\"")
                    };
                    let _ = writeln!(
                        out,
                        "{name}{{{},vertex=\"{}\"{kind}}} {n}",
                        job_labels(j),
                        label(&v.id)
                    );
                }
            }
        }
    }
    out
}
