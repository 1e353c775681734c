//! `sluice serve`: the server of `sluice-server` with this binary's engine — the
//! WebAssembly runtime checks uploaded components, and the connectors and state backends
//! of `sluice run` build the jobs' graphs.

use crate::job::JobResolver;
use sluice_core::checkpoint::CheckpointStorage;
use sluice_core::connector::{ConnectorError, SinkFactory, SourceFactory};
use sluice_core::graph::{JobGraph, OperatorFactory};
use sluice_core::spec::{JobSpec, Overrides, Resolver, SpecError};
use sluice_core::state::KvBackendFactory;
use sluice_server::jobs::GUEST_LOG;
use sluice_server::{ComponentInfo, Engine, OperatorFiles, Rejection};
use sluice_wasm::{GuestLog, LoadError, WasmRuntime};
use std::path::Path;
use std::sync::Arc;

/// The engine of `sluice serve`.
pub struct CliEngine {
    /// The process's WASM runtime.
    pub wasm: WasmRuntime,
}

impl Engine for CliEngine {
    fn inspect_operator(&self, name: &str, wasm: &[u8]) -> Result<ComponentInfo, Rejection> {
        let component = self.wasm.load_component_bytes(name, wasm).map_err(|e| {
            let code = match &e {
                LoadError::Read { .. } | LoadError::NotWasm { .. } => "not_wasm",
                LoadError::CoreModule { .. } => "core_module",
                LoadError::Invalid { .. } => "invalid_component",
                LoadError::WrongWorld { .. } => "wrong_world",
                LoadError::UnsupportedImport { .. } => "unsupported_import",
            };
            Rejection {
                code,
                message: e.to_string(),
            }
        })?;
        Ok(ComponentInfo {
            world: sluice_wasm::WORLD.to_string(),
            exports: component.exports().to_vec(),
            imports: component.imports().to_vec(),
        })
    }

    fn build_graph(
        &self,
        spec: &JobSpec,
        dir: &Path,
        operators: OperatorFiles<'_>,
    ) -> Result<JobGraph, SpecError> {
        // What the job's operators print goes to its folder (GET /v1/jobs/{id}/log).
        let guest_log = match GuestLog::open(&dir.join(GUEST_LOG), GUEST_LOG_MAX_BYTES) {
            Ok(log) => Some(Arc::new(log)),
            Err(e) => {
                tracing::warn!(
                    "cannot open {}: {e}; guest output goes to the server's log",
                    dir.join(GUEST_LOG).display()
                );
                None
            }
        };
        let resolver = ServerResolver {
            inner: JobResolver {
                wasm: &self.wasm,
                output_dir: None,
            },
            operators,
            guest_log,
        };
        spec.to_graph(dir, &resolver, Overrides::default())
    }
}

/// [`JobResolver`], with operators named by `operator: <sha256>` taken from the
/// server's store.
struct ServerResolver<'a> {
    inner: JobResolver<'a>,
    operators: OperatorFiles<'a>,
    guest_log: Option<Arc<GuestLog>>,
}

/// The largest a job's guest log grows (16 MiB); later lines are dropped.
const GUEST_LOG_MAX_BYTES: u64 = 16 << 20;

impl Resolver for ServerResolver<'_> {
    fn source(
        &self,
        connector: &str,
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Arc<dyn SourceFactory>, ConnectorError> {
        self.inner.source(connector, options, spec_dir, field)
    }

    fn sink(
        &self,
        connector: &str,
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Arc<dyn SinkFactory>, ConnectorError> {
        self.inner.sink(connector, options, spec_dir, field)
    }

    fn operator(
        &self,
        _id: &str,
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Arc<dyn OperatorFactory>, SpecError> {
        self.inner.operator_with(
            options,
            spec_dir,
            field,
            Some(self.operators),
            self.guest_log.clone(),
        )
    }

    fn state_backend(
        &self,
        kind: &str,
        field: &str,
    ) -> Result<Arc<dyn KvBackendFactory>, SpecError> {
        self.inner.state_backend(kind, field)
    }

    fn state_backends(&self) -> Vec<Arc<dyn KvBackendFactory>> {
        self.inner.state_backends()
    }

    fn checkpoint_storage(
        &self,
        location: &str,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Arc<dyn CheckpointStorage>, SpecError> {
        self.inner.checkpoint_storage(location, spec_dir, field)
    }
}
