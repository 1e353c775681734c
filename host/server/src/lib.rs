//! Sluice's server (`sluice serve`): the REST API under `/v1` (axum, with an OpenAPI 3.1
//! document generated from the handlers at `/v1/openapi.json`), an operator store by
//! content hash, a job manager running jobs in an embedded cluster (the same runtime as
//! `sluice run`), Prometheus figures at `/metrics`, and the dashboard's files at `/`.
//!
//! Everything the server keeps lives under its data directory:
//!
//! ```text
//! operators/<sha256>.wasm, <sha256>.json   uploaded components and their metadata
//! jobs/<id>/job.json                       a job's record (spec, status, savepoints...)
//! jobs/<id>/metrics.json                   its figures at the end of its last run
//! jobs/<id>/...                            its relative paths: checkpoints, state, outputs
//! ```
//!
//! The engine (WASM runtime, connectors) comes in through [`Engine`], so that this crate
//! builds without them; the `sluice` binary gives it the real one.

#![warn(missing_docs)]

pub mod api;
pub mod assets;
pub mod auth;
pub mod engine;
pub mod error;
pub mod graph;
pub mod jobs;
pub mod metrics;
mod persist;
pub mod store;

pub use engine::{ComponentInfo, Engine, OperatorFiles, Rejection};

use axum::Router;
use axum::response::IntoResponse;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The server's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where operators, job records and job folders are kept.
    pub data_dir: PathBuf,
    /// The address to listen on (port 0: any free port).
    pub bind: SocketAddr,
    /// The bearer token every request but `/healthz` needs; `None`: no authentication
    /// (refused on a non-loopback address).
    pub token: Option<String>,
    /// The largest operator component accepted, bytes.
    pub max_operator_bytes: usize,
    /// The largest job spec accepted, bytes.
    pub max_spec_bytes: usize,
}

impl Config {
    /// Defaults: 127.0.0.1:8081, no token, operators up to 128 MiB, specs up to 1 MiB.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            token: None,
            max_operator_bytes: 128 << 20,
            max_spec_bytes: 1 << 20,
        }
    }
}

/// The default port.
pub const DEFAULT_PORT: u16 = 8081;

/// The whole application: API routes, auth, the dashboard, JSON 404/405, and a panic
/// turned into a JSON 500 (a panic is a bug; the server goes on).
pub fn app(state: Arc<api::AppState>) -> Router {
    let token = Arc::new(state.config.token.clone());
    api::routes(state)
        .route("/", axum::routing::get(assets::serve))
        .route("/index.html", axum::routing::get(assets::serve))
        .route("/assets/{*path}", axum::routing::get(assets::serve))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ))
        .layer(axum::middleware::map_response(api::json_errors))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |panic: Box<dyn std::any::Any + Send>| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                error::ApiError::internal(format!("internal error (a bug): {what}")).into_response()
            },
        ))
}

/// Runs the server until `shutdown` completes: checks the bind address against the
/// token, opens the data directory (resuming the jobs that were running), listens, calls
/// `ready` with the bound address, and serves. On shutdown it stops the running jobs
/// with their checkpoints kept and their records left running, so that the next start
/// resumes them.
///
/// Errors: a non-loopback address without a token, a data directory that cannot be
/// opened, an address that cannot be bound.
pub async fn serve(
    config: Config,
    engine: Arc<dyn Engine>,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    auth::check_bind(config.bind, config.token.as_deref())?;
    let data = config.data_dir.clone();
    let engine2 = engine.clone();
    let (store, jobs) = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let store = Arc::new(store::OperatorStore::open(&data.join("operators"))?);
        let jobs = jobs::JobManager::open(&data.join("jobs"), engine2, store.clone())?;
        Ok((store, jobs))
    })
    .await
    .map_err(|e| format!("opening the data directory: {e}"))?
    .map_err(|e| {
        format!(
            "opening the data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state = Arc::new(api::AppState {
        config,
        engine,
        store,
        jobs: jobs.clone(),
        shutdown: stop_rx,
    });
    let sampler = {
        let jobs = jobs.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let jobs = jobs.clone();
                let _ = tokio::task::spawn_blocking(move || jobs.sample()).await;
            }
        })
    };
    ready(addr);
    let result = axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await
        .map_err(|e| format!("serving on {addr}: {e}"));
    sampler.abort();
    let _ = tokio::task::spawn_blocking(move || jobs.shutdown(Duration::from_secs(30))).await;
    result
}

/// Runs [`serve`] on its own runtime until Ctrl-C or SIGTERM.
pub fn serve_blocking(
    config: Config,
    engine: Arc<dyn Engine>,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("sluice-server")
        .build()
        .map_err(|e| format!("cannot start the server's runtime: {e}"))?;
    runtime.block_on(serve(config, engine, ready, async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    }))
}
