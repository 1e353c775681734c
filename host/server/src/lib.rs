//! `sluice serve`: an HTTP server (axum) over an embedded Sluice cluster — the same
//! runtime as `sluice run` — with a REST API under `/v1` to upload WebAssembly operators,
//! submit job specs that name them, and stop, savepoint, restart and watch jobs; an
//! OpenAPI document generated from the code (`/v1/openapi.json`); Prometheus figures
//! (`/metrics`); and a liveness probe (`/healthz`).
//!
//! Everything lives under a data directory: `operators/` (components by SHA-256, with
//! metadata) and `jobs/<id>/` (the job's spec, record, and the outputs and checkpoints
//! its spec puts under relative paths). A restart of the server finds its jobs and starts
//! the ones that were running again from their latest complete checkpoint.
//!
//! Security: bound to 127.0.0.1 by default; with a token, every request but `/healthz`
//! needs `Authorization: Bearer <token>`; a bind address other than loopback without a
//! token is refused at start.

pub mod api;
pub mod engine;
pub mod error;
pub mod jobs;
pub mod store;

pub use engine::{ComponentInfo, Engine};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1:8081`).
    pub bind: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The bearer token, if any.
    pub token: Option<String>,
    /// Largest upload or job spec accepted, bytes (default 64 MiB).
    pub max_upload: usize,
}

/// Checks `config` (a non-loopback bind needs a token), opens the data directory and
/// starts again the jobs that were running.
///
/// Errors: a message saying what is wrong (the bind rule, an unusable data directory).
pub fn prepare(config: &ServerConfig, engine: Arc<dyn Engine>) -> Result<api::AppState, String> {
    if !config.bind.ip().is_loopback() && config.token.as_deref().is_none_or(str::is_empty) {
        return Err(format!(
            "refusing to listen on {} without a token: anyone who can reach it could run code; set --token (or SLUICE_TOKEN), or bind 127.0.0.1",
            config.bind
        ));
    }
    let operators = Arc::new(store::OperatorStore::open(
        &config.data_dir.join("operators"),
    )?);
    let jobs = Arc::new(jobs::Jobs::new(&config.data_dir.join("jobs"))?);
    jobs.recover(engine.as_ref());
    Ok(api::AppState {
        engine,
        operators,
        jobs,
        token: config.token.clone().filter(|t| !t.is_empty()),
        max_upload: config.max_upload,
    })
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: api::AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
