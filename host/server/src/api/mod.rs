//! The REST API under `/v1`, `/healthz` and `/metrics`, and its OpenAPI document.

pub mod jobs;
pub mod operators;
pub mod system;

use crate::engine::Engine;
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::jobs::Jobs;
use crate::store::OperatorStore;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use utoipa::OpenApi;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Validates components and builds graphs.
    pub engine: Arc<dyn Engine>,
    /// The operator store.
    pub operators: Arc<OperatorStore>,
    /// The jobs.
    pub jobs: Arc<Jobs>,
    /// The bearer token every request but `/healthz` needs, if set.
    pub token: Option<String>,
    /// Largest upload or job spec accepted, bytes.
    pub max_upload: usize,
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice", description = "Upload WebAssembly operators, run and watch stream-processing jobs."),
    paths(
        operators::upload, operators::list, operators::get, operators::delete,
        jobs::submit, jobs::list, jobs::get, jobs::stop, jobs::cancel, jobs::savepoint,
        jobs::restart, jobs::delete, jobs::metrics, jobs::checkpoints, jobs::events,
        system::healthz, system::metrics, system::openapi,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Refuses requests without the server's bearer token (when one is set), except
/// `/healthz`.
async fn auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is wrong",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this server needs a token: send Authorization: Bearer <token>",
        )
        .into_response(),
    }
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint (see /v1/openapi.json)")
}

/// The router of the whole API.
pub fn router(state: AppState) -> Router {
    let limit = state.max_upload;
    Router::new()
        .route(
            "/v1/operators",
            post(operators::upload).get(operators::list),
        )
        .route(
            "/v1/operators/{reference}",
            get(operators::get).delete(operators::delete),
        )
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/v1/jobs/{id}/stop", post(jobs::stop))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/savepoints", post(jobs::savepoint))
        .route("/v1/jobs/{id}/restart", post(jobs::restart))
        .route("/v1/jobs/{id}/metrics", get(jobs::metrics))
        .route("/v1/jobs/{id}/checkpoints", get(jobs::checkpoints))
        .route("/v1/jobs/{id}/events", get(jobs::events))
        .route("/v1/openapi.json", get(system::openapi))
        .route("/healthz", get(system::healthz))
        .route("/metrics", get(system::metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}
