//! What the server needs from the engine it embeds: checking operator components and
//! building job graphs. The `sluice` binary implements it with the WebAssembly runtime
//! and the connectors, so that this crate compiles without wasmtime, RocksDB or
//! librdkafka, and its tests can use a stand-in.

use sluice_core::graph::JobGraph;
use sluice_core::spec::{JobSpec, SpecError};
use std::path::{Path, PathBuf};

/// Where the stored component of an operator lives: given the reference a pinned spec
/// holds (`operator: <sha256>`), its `.wasm` file, or why there is none.
pub type OperatorFiles<'a> = &'a (dyn Fn(&str) -> Result<PathBuf, String> + Send + Sync);

/// The engine behind the server.
pub trait Engine: Send + Sync + 'static {
    /// Checks that `wasm` (an upload called `name`, for messages) is a component of the
    /// operator world this host runs, and describes it.
    ///
    /// Errors: why it is not one (not WebAssembly, a core module, truncated or
    /// corrupt, another world, an import the host lacks), with a stable code.
    fn inspect_operator(&self, name: &str, wasm: &[u8]) -> Result<ComponentInfo, Rejection>;

    /// Builds the job graph of `spec`, whose relative paths resolve against `dir`, and
    /// whose operators (`operator: <sha256>`) are the files `operators` names. Errors
    /// start with the spec's field path, as [`JobSpec::to_graph`]'s do.
    fn build_graph(
        &self,
        spec: &JobSpec,
        dir: &Path,
        operators: OperatorFiles<'_>,
    ) -> Result<JobGraph, SpecError>;
}

/// What the engine found in an operator component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// The world it implements, as `sluice:operator/operator-world@0.2.0`.
    pub world: String,
    /// Its exports, as `sluice:operator/operator@0.2.0`.
    pub exports: Vec<String>,
    /// Its imports (all provided by the host), as `wasi:io/streams@0.2.6`.
    pub imports: Vec<String>,
}

/// Why an upload is not an operator this host can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable and machine-readable: `not_wasm`, `core_module`, `invalid_component`,
    /// `wrong_world`, `unsupported_import`.
    pub code: &'static str,
    /// What is wrong, naming the upload.
    pub message: String,
}
