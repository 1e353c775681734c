//! The HTTP API: routes, the OpenAPI document, and helpers shared by the handlers.

pub mod jobs;
pub mod operators;
pub mod system;

use crate::Config;
use crate::engine::Engine;
use crate::error::{ApiError, ApiResult};
use crate::jobs::JobManager;
use crate::store::OperatorStore;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// What every handler shares.
pub struct AppState {
    /// The server's settings.
    pub config: Config,
    /// The engine.
    pub engine: Arc<dyn Engine>,
    /// Uploaded operators.
    pub store: Arc<OperatorStore>,
    /// Jobs.
    pub jobs: Arc<JobManager>,
    /// Becomes `true` when the server shuts down (ends event streams).
    pub shutdown: watch::Receiver<bool>,
}

/// The request's media type, lowercased, without parameters (`application/json`).
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// What a body may exceed its limit by and still be read to its end (and discarded)
/// before the answer: a client that sends a whole body before reading the answer then
/// gets the 413 instead of a broken connection.
const DRAIN: u64 = 64 << 20;

/// Reads a request body of at most `limit` bytes.
///
/// Errors: 413 `payload_too_large` naming the limit and `what` it is (a flag of `sluice
/// serve`); 400 when the body cannot be read.
pub async fn read_body(body: axum::body::Body, limit: usize, what: &str) -> ApiResult<Bytes> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("bad_request", format!("cannot read the request body: {e}"))
        })?;
        total += chunk.len() as u64;
        if total <= limit as u64 {
            buf.extend_from_slice(&chunk);
        } else {
            buf = Vec::new();
            if total > limit as u64 + DRAIN {
                break;
            }
        }
    }
    if total > limit as u64 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than this server's limit of {limit} bytes for {what}"),
        ));
    }
    Ok(Bytes::from(buf))
}

/// Turns an error answer that is not JSON (an axum rejection: an unreadable path
/// parameter, say) into the API's error shape.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let text = if text.trim().is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    let mut answer = ApiError::from_rejection(status, text).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// Runs blocking work (engine calls, job control, files) off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("internal error: {e}"))))
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The server's token (sluice serve --token, or SLUICE_TOKEN), when it has one",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "Sluice's REST API: upload WebAssembly operators, submit and control jobs, read their figures. Errors are `{\"error\": {\"code\", \"message\"}}`. Time values are ms since the Unix epoch.",
        license(name = "Apache-2.0")
    ),
    paths(
        system::healthz,
        system::prometheus,
        system::openapi,
        operators::upload,
        operators::list,
        operators::get,
        operators::delete,
        jobs::submit,
        jobs::list,
        jobs::get,
        jobs::delete,
        jobs::stop,
        jobs::cancel,
        jobs::savepoint,
        jobs::restart,
        jobs::swap_operator,
        jobs::guest_log,
        jobs::metrics,
        jobs::checkpoints,
        jobs::events,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "operators", description = "WebAssembly operator components, stored by SHA-256"),
        (name = "jobs", description = "Jobs run by the embedded cluster"),
        (name = "system", description = "Health, Prometheus figures, this document"),
    )
)]
pub struct ApiDoc;

/// The routes under `/v1`, `/healthz` and `/metrics` (without auth and the dashboard).
pub fn routes(state: Arc<AppState>) -> Router {
    let operator_limit = state.config.max_operator_bytes + 64 * 1024;
    let spec_limit = state.config.max_spec_bytes;
    Router::new()
        .route("/healthz", get(system::healthz))
        .route("/metrics", get(system::prometheus))
        .route("/v1/openapi.json", get(system::openapi))
        .route(
            "/v1/operators",
            get(operators::list)
                .post(operators::upload)
                .layer(DefaultBodyLimit::max(operator_limit)),
        )
        .route(
            "/v1/operators/{operator}",
            get(operators::get).delete(operators::delete),
        )
        .route(
            "/v1/jobs",
            get(jobs::list)
                .post(jobs::submit)
                .layer(DefaultBodyLimit::max(spec_limit)),
        )
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/v1/jobs/{id}/stop", post(jobs::stop))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/savepoints", post(jobs::savepoint))
        .route("/v1/jobs/{id}/restart", post(jobs::restart))
        .route("/v1/jobs/{id}/metrics", get(jobs::metrics))
        .route("/v1/jobs/{id}/log", get(jobs::guest_log))
        .route(
            "/v1/jobs/{id}/operators/{operator_id}",
            axum::routing::put(jobs::swap_operator),
        )
        .route("/v1/jobs/{id}/checkpoints", get(jobs::checkpoints))
        .route("/v1/jobs/{id}/events", get(jobs::events))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// 404 for a path no route has.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such path: {}", uri.path()))
}

/// 405 for a method a route does not have.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not answer {method}", uri.path()),
    )
}
