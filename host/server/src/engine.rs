//! What the server needs from the rest of Sluice, behind a trait so that this crate does
//! not build wasmtime, RocksDB or librdkafka itself: the `sluice` binary implements it
//! with its job resolver (`sluice_cli::server_engine`).

use sluice_core::graph::JobGraph;
use std::path::Path;

/// What a valid operator component declares.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ComponentInfo {
    /// The world it implements, e.g. `sluice:operator/operator-world@0.2.0`.
    pub world: String,
    /// Interfaces it imports.
    pub imports: Vec<String>,
    /// Interfaces it exports.
    pub exports: Vec<String>,
}

/// Validates components and builds job graphs.
pub trait Engine: Send + Sync + 'static {
    /// Checks that `bytes` is a component of the operator world whose imports the host
    /// provides (compiling it, which warms the compile cache). `name` names it in errors.
    ///
    /// Errors: a message saying what is wrong (not WebAssembly, a core module, another
    /// world, an import the host does not provide).
    fn inspect_component(&self, name: &str, bytes: &[u8]) -> Result<ComponentInfo, String>;

    /// Builds the job graph of the spec file at `path` (YAML or JSON; its operators name
    /// their `.wasm` by path, relative paths against the spec's folder).
    ///
    /// Errors: the spec's message (which field, what was wrong).
    fn build_graph(&self, path: &Path) -> Result<JobGraph, String>;
}
