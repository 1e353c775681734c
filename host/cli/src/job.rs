//! From a job spec to a running job: a [`Resolver`] that creates sources and sinks with
//! `sluice-connectors` and user operators with `sluice-wasm`.

use serde::Deserialize;
use sluice_core::checkpoint::CheckpointStorage;
use sluice_core::connector::{ConnectorError, SinkFactory, SourceFactory};
use sluice_core::graph::{JobGraph, OperatorFactory};
use sluice_core::operator::{Operator, OperatorError};
use sluice_core::spec::{self, Overrides, Resolver, SpecError};
use sluice_core::state::{HeapKvBackendFactory, KvBackendFactory};
use sluice_rocksdb::RocksDbBackendFactory;
use sluice_server::OperatorFiles;
use sluice_storage::ObjectStorage;
use sluice_wasm::{
    DirGrant, FailurePolicy, Grants, GuestLog, Limits, LoadedComponent, WasmOperator, WasmRuntime,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Creates the parts of a job from its spec.
pub struct JobResolver<'a> {
    /// The process's WASM runtime (engine, compile cache).
    pub wasm: &'a WasmRuntime,
    /// When set, every output goes under this directory (`sluice run --output-dir`): a
    /// relative sink `path` is placed under it with its leading `..` parts removed
    /// (`../../out/flights/windows.jsonl` becomes `<dir>/out/flights/windows.jsonl`),
    /// and an absolute one is refused; a Kafka sink's `pending_dir` default is under it
    /// too. See [`under_output_dir`].
    pub output_dir: Option<PathBuf>,
}

/// A user operator's options in the spec: `wasm` (or `operator`), `config`, `limits`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorOptions {
    /// Path of the component (`.wasm`), relative to the spec.
    #[serde(default)]
    wasm: Option<PathBuf>,
    /// An operator uploaded to `sluice serve`: its SHA-256 (or `name@version`, which the
    /// server pins to the SHA-256 when the job is submitted).
    #[serde(default)]
    operator: Option<String>,
    /// Handed to the guest's `init` as `(key, value)` strings.
    #[serde(default)]
    config: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    limits: LimitsSpec,
    /// What a failed call leads to: `fail` (default), `skip` or `dead-letter`.
    #[serde(default)]
    on_failure: Option<String>,
    /// Capabilities beyond computing, one by one (default: none).
    #[serde(default)]
    grants: GrantsSpec,
}

/// `grants:` of an operator.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsSpec {
    /// The host's clocks (default: frozen at 0).
    #[serde(default)]
    clocks: bool,
    /// Real randomness (default: a fixed sequence).
    #[serde(default)]
    random: bool,
    /// Environment variables, name to value.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Directories to read: `{path, guest}`, `path` under the spec's folder.
    #[serde(default)]
    dirs: Vec<DirSpec>,
    /// TCP addresses it may connect to, `host:port` with an IP address.
    #[serde(default)]
    network: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirSpec {
    /// A directory under the spec's folder (a server: the job's folder).
    path: PathBuf,
    /// Where the operator sees it: an absolute guest path such as `/data`.
    guest: String,
}

impl GrantsSpec {
    /// The grants, with each directory resolved against `spec_dir` and checked to be
    /// inside it (so that a job on a server can grant only its own files). Errors name
    /// the field.
    fn resolve(self, spec_dir: &Path, field: &str) -> Result<Grants, SpecError> {
        let root = spec_dir.canonicalize().map_err(|e| {
            SpecError(format!(
                "{field}.grants: the spec's folder {}: {e}",
                spec_dir.display()
            ))
        })?;
        let mut dirs = Vec::with_capacity(self.dirs.len());
        for (i, d) in self.dirs.into_iter().enumerate() {
            let f = format!("{field}.grants.dirs[{i}]");
            let host = root
                .join(&d.path)
                .canonicalize()
                .map_err(|e| SpecError(format!("{f}.path: '{}': {e}", d.path.display())))?;
            if !host.starts_with(&root) {
                return Err(SpecError(format!(
                    "{f}.path: '{}' is outside the spec's folder; only directories under it can be granted",
                    d.path.display()
                )));
            }
            if !host.is_dir() {
                return Err(SpecError(format!(
                    "{f}.path: '{}' is not a directory",
                    d.path.display()
                )));
            }
            if !d.guest.starts_with('/') {
                return Err(SpecError(format!(
                    "{f}.guest: '{}' must be an absolute guest path, such as /data",
                    d.guest
                )));
            }
            dirs.push(DirGrant {
                host,
                guest: d.guest,
            });
        }
        let network = self
            .network
            .iter()
            .enumerate()
            .map(|(i, a)| {
                a.parse().map_err(|_| {
                    SpecError(format!(
                        "{field}.grants.network[{i}]: '{a}' is not an address such as 127.0.0.1:9000 (an IP address and a port: no names)"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Grants {
            clocks: self.clocks,
            random: self.random,
            env: self.env.into_iter().collect(),
            dirs,
            network,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSpec {
    /// `64MiB`, `1GiB`, or bytes.
    max_memory: Option<ByteSize>,
    /// `10s`, `500ms`, or ms.
    time_per_call: Option<spec::DurationMs>,
    /// Events one call may emit.
    max_output_events: Option<usize>,
    /// Bytes of keys and values one call may emit: `64MiB`, or bytes.
    max_output_bytes: Option<ByteSize>,
    /// Elements any table may have.
    max_table_elements: Option<usize>,
    /// Core and component instances the component may create.
    max_instances: Option<usize>,
    /// Tables.
    max_tables: Option<usize>,
    /// Linear memories.
    max_memories: Option<usize>,
    /// Lines the guest may log a second.
    max_log_lines_per_second: Option<u32>,
    /// Fuel per call (instructions, metered deterministically).
    fuel: Option<u64>,
    /// The wasm stack's size: `64KiB`, or bytes (default 512 KiB).
    max_stack: Option<ByteSize>,
}

/// A size in bytes: a number, or a string with a unit (`KiB`, `MiB`, `GiB`, `KB`,
/// `MB`, `GB`, `B`).
#[derive(Debug, Clone, Copy)]
struct ByteSize(usize);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(usize),
            S(String),
        }
        let err = |s: &str| {
            serde::de::Error::custom(format!(
                "invalid size \"{s}\": use bytes or a unit, as in \"64MiB\""
            ))
        };
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => {
                let t = s.trim();
                let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
                let (num, unit) = t.split_at(split);
                let n: usize = num.parse().map_err(|_| err(&s))?;
                let mult: usize = match unit.trim() {
                    "" | "B" => 1,
                    "KiB" => 1 << 10,
                    "MiB" => 1 << 20,
                    "GiB" => 1 << 30,
                    "KB" => 1_000,
                    "MB" => 1_000_000,
                    "GB" => 1_000_000_000,
                    _ => return Err(err(&s)),
                };
                n.checked_mul(mult).map(ByteSize).ok_or_else(|| err(&s))
            }
        }
    }
}

/// Creates [`WasmOperator`]s of one component, one per subtask.
pub struct WasmOperatorFactory {
    component: LoadedComponent,
    config: Vec<(String, String)>,
    limits: Limits,
    policy: FailurePolicy,
    grants: Grants,
    /// The job's guest log (a server's job), else `tracing`.
    guest_log: Option<Arc<GuestLog>>,
}

impl OperatorFactory for WasmOperatorFactory {
    fn create(
        &self,
        _subtask: usize,
        _parallelism: usize,
    ) -> Result<Box<dyn Operator>, OperatorError> {
        let op = WasmOperator::new(&self.component, self.config.clone(), self.limits.clone())
            .with_failure_policy(self.policy)
            .with_grants(self.grants.clone());
        Ok(Box::new(match &self.guest_log {
            Some(log) => op.with_guest_log(log.clone()),
            None => op,
        }))
    }
}

impl Resolver for JobResolver<'_> {
    fn source(
        &self,
        connector: &str,
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Arc<dyn SourceFactory>, ConnectorError> {
        match connector {
            sluice_kafka::CONNECTOR => sluice_kafka::source_factory(options, field),
            _ => sluice_connectors::source_factory(connector, options, spec_dir, field),
        }
    }

    fn sink(
        &self,
        connector: &str,
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Arc<dyn SinkFactory>, ConnectorError> {
        let (options, dir) = match self.output_dir.as_deref() {
            None => (std::borrow::Cow::Borrowed(options), spec_dir),
            Some(dir) => {
                let mut inside = options.clone();
                for key in ["path", "pending_dir"] {
                    if let Some(p) = inside.get(key).and_then(|v| v.as_str()) {
                        let p = under_output_dir(Path::new(p), &format!("{field}.{key}"))?;
                        inside[key] = serde_json::Value::String(p.to_string_lossy().into_owned());
                    }
                }
                (std::borrow::Cow::Owned(inside), dir)
            }
        };
        match connector {
            sluice_kafka::CONNECTOR => sluice_kafka::sink_factory(&options, dir, field),
            _ => sluice_connectors::sink_factory(connector, &options, dir, field),
        }
    }

    fn operator(
        &self,
        _id: &str,
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Arc<dyn OperatorFactory>, SpecError> {
        self.operator_with(options, spec_dir, field, None, None)
    }

    fn state_backend(
        &self,
        kind: &str,
        field: &str,
    ) -> Result<Arc<dyn KvBackendFactory>, SpecError> {
        self.state_backends()
            .into_iter()
            .find(|b| b.kind() == kind)
            .ok_or_else(|| {
                SpecError(format!(
                    "{field}: unknown state backend '{kind}' (use heap or rocksdb)"
                ))
            })
    }

    fn state_backends(&self) -> Vec<Arc<dyn KvBackendFactory>> {
        vec![
            Arc::new(HeapKvBackendFactory),
            Arc::new(RocksDbBackendFactory::default()),
        ]
    }

    fn checkpoint_storage(
        &self,
        location: &str,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Arc<dyn CheckpointStorage>, SpecError> {
        ObjectStorage::open(location, spec_dir)
            .map(|s| Arc::new(s) as Arc<dyn CheckpointStorage>)
            .map_err(|e| SpecError(format!("{field}: {e}")))
    }
}

/// Where a sink's relative `path` goes under `--output-dir`: the path with `.` parts
/// and leading `..` parts removed, and inner `..` parts applied, so that it cannot leave
/// the directory (`../../out/flights/windows.jsonl` is `out/flights/windows.jsonl`).
///
/// Errors: an absolute path, which `--output-dir` cannot honour (named by `field`), and
/// a path with nothing left (`..`).
pub fn under_output_dir(path: &Path, field: &str) -> Result<PathBuf, ConnectorError> {
    use std::path::Component;
    let mut inside = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => inside.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                inside.pop();
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ConnectorError(format!(
                    "{field}: '{}' is an absolute path, and --output-dir puts every output \
                     under its folder: make the path relative, or run without --output-dir",
                    path.display()
                )));
            }
        }
    }
    if inside.as_os_str().is_empty() {
        return Err(ConnectorError(format!(
            "{field}: '{}' names no file under --output-dir",
            path.display()
        )));
    }
    Ok(inside)
}

impl JobResolver<'_> {
    /// The factory of a user operator from its options: the component at `wasm` (a
    /// path relative to `spec_dir`), or the one `operators` gives for `operator` (a
    /// SHA-256, as `sluice serve` pins them). Errors name the field.
    pub fn operator_with(
        &self,
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
        operators: Option<OperatorFiles<'_>>,
        guest_log: Option<Arc<GuestLog>>,
    ) -> Result<Arc<dyn OperatorFactory>, SpecError> {
        let o: OperatorOptions = spec::from_value(options, field).map_err(SpecError)?;
        // Fuel metering and the stack's size are settings of the engine that compiles.
        let wasm = self
            .wasm
            .variant(o.limits.fuel.is_some(), o.limits.max_stack.map(|b| b.0))
            .map_err(|e| SpecError(format!("{field}.limits: {e}")))?;
        let component = match (&o.wasm, &o.operator, operators) {
            (Some(_), Some(_), _) => {
                return Err(SpecError(format!(
                    "{field}: give either `wasm` (a path) or `operator` (an uploaded operator), not both"
                )));
            }
            (Some(path), None, _) => wasm
                .load_component(spec_dir.join(path))
                .map_err(|e| SpecError(format!("{field}.wasm: {e}")))?,
            (None, Some(reference), Some(files)) => {
                let path =
                    files(reference).map_err(|e| SpecError(format!("{field}.operator: {e}")))?;
                wasm.load_component(&path)
                    .map_err(|e| SpecError(format!("{field}.operator: {e}")))?
            }
            (None, Some(_), None) => {
                return Err(SpecError(format!(
                    "{field}.operator: operators uploaded to a server run there (sluice job submit); to run here, give the component's path as `wasm`"
                )));
            }
            (None, None, _) => {
                return Err(SpecError(format!(
                    "{field}: missing `wasm` (the component's path, relative to the spec)"
                )));
            }
        };
        let mut limits = Limits::default();
        if let Some(m) = o.limits.max_memory {
            limits.max_memory_bytes = m.0;
        }
        if let Some(t) = o.limits.time_per_call {
            limits.time_per_call = t.duration();
        }
        if let Some(n) = o.limits.max_output_events {
            limits.max_output_events = n;
        }
        if let Some(b) = o.limits.max_output_bytes {
            limits.max_output_bytes = b.0;
        }
        let l = &o.limits;
        if let Some(n) = l.max_log_lines_per_second {
            limits.max_log_lines_per_second = n;
        }
        limits.fuel_per_call = l.fuel;
        for (set, to) in [
            (&mut limits.max_table_elements, l.max_table_elements),
            (&mut limits.max_instances, l.max_instances),
            (&mut limits.max_tables, l.max_tables),
            (&mut limits.max_memories, l.max_memories),
        ] {
            if let Some(n) = to {
                *set = n;
            }
        }
        let config = o
            .config
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();
        let grants = o.grants.resolve(spec_dir, field)?;
        let policy = match o.on_failure.as_deref() {
            None => FailurePolicy::Fail,
            Some(p) => p
                .parse()
                .map_err(|e| SpecError(format!("{field}.on_failure: {e}")))?,
        };
        Ok(Arc::new(WasmOperatorFactory {
            component,
            config,
            limits,
            policy,
            grants,
            guest_log,
        }))
    }
}

/// Reads the spec at `path` and builds its job graph with `overrides`.
pub fn build_graph(
    path: &Path,
    resolver: &JobResolver<'_>,
    overrides: Overrides,
) -> Result<JobGraph, SpecError> {
    let loaded = spec::load(path)?;
    loaded.spec.to_graph(&loaded.dir, resolver, overrides)
}
