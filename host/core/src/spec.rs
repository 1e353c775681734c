//! Job specs: a job graph written as YAML or JSON (see `host/core/JOB-SPEC.md`), parsed with
//! errors that name the field and what is wrong, and turned into a [`JobGraph`].
//!
//! Connector and operator options are passed through as JSON to a [`Resolver`] (the
//! CLI's uses `sluice-connectors` and `sluice-wasm`), which reports its own errors with
//! the field path it is given.

use crate::checkpoint::{CheckpointConfig, CheckpointStorage};
use crate::connector::{ConnectorError, SinkFactory, SourceFactory};
use crate::format::{PackedField, PackedSchema, ValueFormat};
use crate::graph::{
    Durability, ExecutionConfig, Input, JobGraph, OperatorFactory, Partitioning, Vertex, VertexKind,
};
use crate::runtime::RestartStrategy;
use crate::state::{HeapKvBackendFactory, KvBackendFactory};
use crate::time::WatermarkStrategy;
use crate::window::{AggregateFn, AggregateSpec, WindowAssigner};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A spec that cannot be read or does not describe a valid job. The message starts with
/// the field path (`windows[0].window.size`) where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// A duration in a spec: a string with a unit (`30m`, `1h 30m`, `500ms`, as `humantime`
/// reads them) or a whole number of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationMs(pub i64);

impl DurationMs {
    /// As a [`Duration`] (a spec's durations are never negative).
    pub fn duration(self) -> Duration {
        Duration::from_millis(self.0 as u64)
    }
}

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(i64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a duration such as \"30m\", \"2h\", \"500ms\" or a number of milliseconds")
        })? {
            Raw::Ms(ms) if ms >= 0 => Ok(DurationMs(ms)),
            Raw::Ms(ms) => Err(serde::de::Error::custom(format!("duration {ms} is negative"))),
            Raw::Text(s) => humantime::parse_duration(&s)
                .map_err(|e| e.to_string())
                .and_then(|d| i64::try_from(d.as_millis()).map_err(|_| "too long".to_string()))
                .map(DurationMs)
                .map_err(|e| serde::de::Error::custom(format!("invalid duration \"{s}\": {e}"))),
        }
    }
}

/// One input or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Inputs {
    /// `input: a`
    One(String),
    /// `input: [a, b]`
    Many(Vec<String>),
}

impl Inputs {
    fn list(&self) -> Vec<&str> {
        match self {
            Inputs::One(s) => vec![s.as_str()],
            Inputs::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Top level of a job spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job's name.
    pub name: String,
    /// Default parallelism of windows (and of operators and sinks that set none and
    /// cannot chain to their input). Default 1.
    #[serde(default = "one")]
    pub parallelism: usize,
    /// Number of key groups. Default 128.
    #[serde(default = "default_max_parallelism")]
    pub max_parallelism: usize,
    /// Most events per source batch. Default 1024.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Batches buffered per channel input before backpressure. Default 8.
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
    /// Sources.
    pub sources: Vec<SourceSpec>,
    /// User operators (WASM components).
    #[serde(default)]
    pub operators: Vec<OperatorSpec>,
    /// Windows.
    #[serde(default)]
    pub windows: Vec<WindowSpec>,
    /// Sinks.
    pub sinks: Vec<SinkSpec>,
    /// State backend.
    #[serde(default)]
    pub state: Option<StateSpec>,
    /// Periodic checkpoints.
    #[serde(default)]
    pub checkpoints: Option<CheckpointSpec>,
    /// Restart strategy.
    #[serde(default)]
    pub restart: Option<RestartSpec>,
}

/// `state:` — where keyed state lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// `heap` or `rocksdb`; default `rocksdb` when the job checkpoints, else `heap`.
    #[serde(default)]
    pub backend: Option<String>,
    /// Local working folder (RocksDB files, snapshots before upload); default a folder
    /// under the system's temporary folder named after the job.
    #[serde(default)]
    pub dir: Option<String>,
}

/// `checkpoints:` — asynchronous barrier snapshots.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Time between checkpoints.
    pub interval: DurationMs,
    /// Where they go: a folder path (relative to the spec's folder), `file:///…`, or
    /// `s3://bucket/prefix`. Default `checkpoints` next to the spec.
    #[serde(default)]
    pub storage: Option<String>,
    /// Complete checkpoints kept. Default 3.
    #[serde(default = "default_retain")]
    pub retain: usize,
    /// A checkpoint not complete after this long is abandoned. Default 10 minutes.
    #[serde(default)]
    pub timeout: Option<DurationMs>,
}

fn default_retain() -> usize {
    3
}

/// `restart:` — what to do when the job fails.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "strategy", rename_all = "kebab-case")]
pub enum RestartSpec {
    /// Fail at once.
    None,
    /// Restart after a fixed delay.
    FixedDelay {
        /// Restarts allowed in a row.
        attempts: u32,
        /// Wait before each.
        delay: DurationMs,
        /// An attempt that runs this long without failing starts the count over;
        /// default: never (the count is for the job's life).
        #[serde(default)]
        reset_after: Option<DurationMs>,
    },
    /// Restart after a growing delay.
    ExponentialBackoff {
        /// Restarts allowed in a row.
        attempts: u32,
        /// The first wait.
        initial_delay: DurationMs,
        /// The longest wait.
        max_delay: DurationMs,
        /// Growth per restart; default 2.
        #[serde(default = "two")]
        multiplier: f64,
        /// An attempt that runs this long without failing starts the count and the
        /// backoff over (Flink's `reset-backoff-threshold`); default 1 h.
        #[serde(default)]
        reset_after: Option<DurationMs>,
    },
    /// Restart after `delay` unless more than `max_failures` failures happened within
    /// the last `interval` (Flink's `failure-rate`).
    FailureRate {
        /// Failures allowed within `interval`.
        max_failures: u32,
        /// The sliding window failures are counted in.
        interval: DurationMs,
        /// Wait before each restart.
        delay: DurationMs,
    },
}

/// Flink's default `reset-backoff-threshold` of the exponential-delay strategy.
const RESET_AFTER: Duration = Duration::from_secs(3600);

fn two() -> f64 {
    2.0
}

fn one() -> usize {
    1
}
fn default_max_parallelism() -> usize {
    crate::keygroup::DEFAULT_MAX_PARALLELISM
}
fn default_batch_size() -> usize {
    1024
}
fn default_channel_capacity() -> usize {
    8
}

/// Watermark strategy of a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkSpec {
    /// Bounded out-of-orderness.
    pub max_out_of_orderness: DurationMs,
    /// Idleness timeout (processing time); absent: never idle.
    #[serde(default)]
    pub idleness: Option<DurationMs>,
}

/// A source: `id`, `connector`, `parallelism`, `watermarks`, and the connector's options.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceSpec {
    /// Unique vertex id.
    pub id: String,
    /// `parquet`, `csv`, `jsonl`.
    pub connector: String,
    /// Subtasks (default 1).
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Watermark strategy.
    pub watermarks: WatermarkSpec,
    /// At most this many events per second (default: unlimited).
    #[serde(default)]
    pub max_events_per_second: Option<u64>,
    /// Everything else: the connector's options.
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// A user operator: a WASM component.
#[derive(Debug, Clone, Deserialize)]
pub struct OperatorSpec {
    /// Unique vertex id.
    pub id: String,
    /// Input vertex (or `vertex.side_output`).
    pub input: Inputs,
    /// Subtasks; default: the input's, so that it chains.
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Format of the values it emits; default: same as its input.
    #[serde(default)]
    pub output: Option<ValueFormatSpec>,
    /// `key`: the input is keyed by the event key (a hash shuffle over key groups), so
    /// the operator may keep keyed state and timers; default: not keyed (forward).
    #[serde(default)]
    pub key_by: Option<String>,
    /// Everything else (`wasm`, `config`, `limits`): for the resolver.
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// A value format: `{format: packed, fields: [{name, type}]}`, `{format: json}`,
/// `{format: text}` or `{format: bytes}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "format", rename_all = "lowercase")]
pub enum ValueFormatSpec {
    /// Packed record.
    Packed {
        /// Fields in order.
        fields: Vec<FieldSpec>,
    },
    /// JSON.
    Json,
    /// UTF-8 text.
    Text,
    /// Opaque bytes.
    Bytes,
}

/// A packed field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Name.
    pub name: String,
    /// `bool`, `i32`, `i64`, `f64`, `str`, `bytes`.
    #[serde(rename = "type")]
    pub ty: String,
}

impl ValueFormatSpec {
    /// The format; errors name the bad field type.
    pub fn to_format(&self) -> Result<ValueFormat, String> {
        Ok(match self {
            ValueFormatSpec::Packed { fields } => {
                let mut out = Vec::new();
                for (i, f) in fields.iter().enumerate() {
                    let ty = sluice_packed::FieldType::parse(&f.ty).ok_or_else(|| {
                        format!(
                            "fields[{i}].type: unknown type '{}' (bool, i32, i64, f64, str, bytes)",
                            f.ty
                        )
                    })?;
                    if out.iter().any(|o: &PackedField| o.name == f.name) {
                        return Err(format!("fields[{i}].name: '{}' appears twice", f.name));
                    }
                    out.push(PackedField {
                        name: f.name.clone(),
                        ty,
                    });
                }
                ValueFormat::Packed(PackedSchema { fields: out })
            }
            ValueFormatSpec::Json => ValueFormat::Json,
            ValueFormatSpec::Text => ValueFormat::Text,
            ValueFormatSpec::Bytes => ValueFormat::Bytes,
        })
    }
}

/// The window assigner: `{type: tumbling, size, offset}`, `{type: sliding, size, slide,
/// offset}` or `{type: session, gap}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowKindSpec {
    /// `tumbling`, `sliding` or `session`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Window length (tumbling, sliding).
    #[serde(default)]
    pub size: Option<DurationMs>,
    /// Distance between window starts (sliding).
    #[serde(default)]
    pub slide: Option<DurationMs>,
    /// Alignment offset (tumbling, sliding); default 0.
    #[serde(default)]
    pub offset: Option<DurationMs>,
    /// Inactivity gap (session).
    #[serde(default)]
    pub gap: Option<DurationMs>,
}

impl WindowKindSpec {
    /// The assigner; errors name the field (`<field>.size`) and what is wrong.
    pub fn to_assigner(&self, field: &str) -> Result<WindowAssigner, SpecError> {
        let need = |name: &str, v: Option<DurationMs>| -> Result<i64, SpecError> {
            match v {
                None => Err(SpecError(format!(
                    "{field}.{name}: missing (a {} window needs it)",
                    self.kind
                ))),
                Some(d) if d.0 <= 0 => {
                    Err(SpecError(format!("{field}.{name}: must be longer than 0")))
                }
                Some(d) => Ok(d.0),
            }
        };
        let unused = |name: &str, v: Option<DurationMs>| -> Result<(), SpecError> {
            match v {
                Some(_) => Err(SpecError(format!(
                    "{field}.{name}: a {} window has no {name}",
                    self.kind
                ))),
                None => Ok(()),
            }
        };
        let offset = self.offset.map_or(0, |o| o.0);
        Ok(match self.kind.as_str() {
            "tumbling" => {
                unused("slide", self.slide)?;
                unused("gap", self.gap)?;
                WindowAssigner::Tumbling {
                    size: need("size", self.size)?,
                    offset,
                }
            }
            "sliding" => {
                unused("gap", self.gap)?;
                let (size, slide) = (need("size", self.size)?, need("slide", self.slide)?);
                if slide > size {
                    return Err(SpecError(format!(
                        "{field}.slide: larger than the size (events would fall between windows)"
                    )));
                }
                WindowAssigner::Sliding {
                    size,
                    slide,
                    offset,
                }
            }
            "session" => {
                unused("size", self.size)?;
                unused("slide", self.slide)?;
                unused("offset", self.offset)?;
                WindowAssigner::Session {
                    gap: need("gap", self.gap)?,
                }
            }
            other => {
                return Err(SpecError(format!(
                    "{field}.type: unknown window type '{other}' (tumbling, sliding, session)"
                )));
            }
        })
    }
}

/// A built-in aggregate: `{name, fn, field}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpecRaw {
    /// Output name.
    pub name: String,
    /// `count`, `sum`, `min`, `max`, `avg`.
    #[serde(rename = "fn")]
    pub function: String,
    /// Input field (not for count).
    #[serde(default)]
    pub field: Option<String>,
}

/// A keyed window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Unique vertex id.
    pub id: String,
    /// Input vertex (or `vertex.side_output`), or several.
    pub input: Inputs,
    /// What to key by: only `key` (the event key, set by an upstream operator) for now.
    #[serde(default = "key_by_key")]
    pub key_by: String,
    /// The window assigner.
    pub window: WindowKindSpec,
    /// How long late events still update a fired window. Default 0.
    #[serde(default)]
    pub allowed_lateness: Option<DurationMs>,
    /// Result columns.
    pub aggregates: Vec<AggregateSpecRaw>,
    /// Subtasks; default: the job's `parallelism`.
    #[serde(default)]
    pub parallelism: Option<usize>,
}

fn key_by_key() -> String {
    "key".into()
}

/// A sink: `id`, `input`, `connector`, `parallelism`, and the connector's options.
#[derive(Debug, Clone, Deserialize)]
pub struct SinkSpec {
    /// Unique vertex id.
    pub id: String,
    /// Input vertex (or `vertex.side_output`), or several.
    pub input: Inputs,
    /// `jsonl`, `stdout`.
    pub connector: String,
    /// Subtasks (default 1).
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Everything else: the connector's options.
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// Makes the factories a spec names; implemented by the CLI (and the server later).
pub trait Resolver {
    /// A source factory for `connector` with `options`; `field` is the spec path for errors.
    fn source(
        &self,
        connector: &str,
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Arc<dyn SourceFactory>, ConnectorError>;
    /// A sink factory.
    fn sink(
        &self,
        connector: &str,
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Arc<dyn SinkFactory>, ConnectorError>;
    /// A user operator factory from the operator's options (`wasm`, `config`, `limits`).
    fn operator(
        &self,
        id: &str,
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Arc<dyn OperatorFactory>, SpecError>;

    /// The state backend of kind `kind` (`heap`, `rocksdb`). The default knows `heap`.
    fn state_backend(
        &self,
        kind: &str,
        field: &str,
    ) -> Result<Arc<dyn KvBackendFactory>, SpecError> {
        match kind {
            "heap" => Ok(Arc::new(HeapKvBackendFactory)),
            other => Err(SpecError(format!(
                "{field}: unknown state backend '{other}' (this build has: heap)"
            ))),
        }
    }

    /// Every state backend this build has (to restore checkpoints of any kind).
    fn state_backends(&self) -> Vec<Arc<dyn KvBackendFactory>> {
        vec![Arc::new(HeapKvBackendFactory)]
    }

    /// The checkpoint storage at `location` (a path relative to `spec_dir`, or a URL).
    /// The default has none.
    fn checkpoint_storage(
        &self,
        location: &str,
        _spec_dir: &Path,
        field: &str,
    ) -> Result<Arc<dyn CheckpointStorage>, SpecError> {
        Err(SpecError(format!(
            "{field}: this build has no checkpoint storage for '{location}'"
        )))
    }
}

/// Overrides given on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Replaces `parallelism` (and every window's).
    pub parallelism: Option<usize>,
    /// Replaces `batch_size`.
    pub batch_size: Option<usize>,
}

/// A parsed spec and the directory relative paths resolve against.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    /// The spec.
    pub spec: JobSpec,
    /// Directory of the spec file.
    pub dir: PathBuf,
}

/// Reads a spec file (`.json` as JSON, anything else as YAML, which includes JSON).
/// Errors name the file, and the field for a spec that does not parse.
pub fn load(path: &Path) -> Result<LoadedSpec, SpecError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SpecError(format!("cannot read job spec {}: {e}", path.display())))?;
    let spec = parse(&text).map_err(|e| SpecError(format!("{}: {e}", path.display())))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    Ok(LoadedSpec { spec, dir })
}

/// Parses spec text (YAML or JSON). Errors name the field path.
pub fn parse(text: &str) -> Result<JobSpec, SpecError> {
    let value: serde_json::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| SpecError(format!("not valid YAML or JSON: {e}")))?;
    from_value(&value, "").map_err(SpecError)
}

/// Deserializes one section of a spec (`value`, found at `field`, e.g. `sources[0]`;
/// empty for the whole spec). The error message starts with the full field path of what
/// is wrong: `sources[0].event_time.format: unknown variant ...`. Connectors and
/// resolvers use it for their own options.
pub fn from_value<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    field: &str,
) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = match (field.is_empty(), path == "." || path.is_empty()) {
            (_, true) => field.to_string(),
            (true, false) => path,
            (false, false) => format!("{field}.{path}"),
        };
        if at.is_empty() {
            e.inner().to_string()
        } else {
            format!("{at}: {}", e.inner())
        }
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl JobSpec {
    /// The job's state backend, checkpoints and restart strategy.
    fn durability(&self, dir: &Path, resolver: &dyn Resolver) -> Result<Durability, SpecError> {
        let checkpoints = match &self.checkpoints {
            None => None,
            Some(c) => {
                if c.interval.0 <= 0 {
                    return Err(SpecError(
                        "checkpoints.interval: must be longer than 0".into(),
                    ));
                }
                if c.retain == 0 {
                    return Err(SpecError("checkpoints.retain: must be at least 1".into()));
                }
                let location = c.storage.as_deref().unwrap_or("checkpoints");
                Some(CheckpointConfig {
                    interval: c.interval.duration(),
                    storage: resolver.checkpoint_storage(location, dir, "checkpoints.storage")?,
                    retain: c.retain,
                    timeout: c
                        .timeout
                        .map_or(Duration::from_secs(600), DurationMs::duration),
                })
            }
        };
        let backend = self
            .state
            .as_ref()
            .and_then(|s| s.backend.as_deref())
            .unwrap_or(if checkpoints.is_some() {
                "rocksdb"
            } else {
                "heap"
            });
        let state_backend = resolver.state_backend(backend, "state.backend")?;
        let state_dir = match self.state.as_ref().and_then(|s| s.dir.as_deref()) {
            Some(p) => dir.join(p),
            None => std::env::temp_dir().join(format!(
                "sluice-{}-{}",
                crate::checkpoint::job_folder(&self.name),
                std::process::id()
            )),
        };
        let restart = match &self.restart {
            None if checkpoints.is_some() => RestartStrategy::ExponentialBackoff {
                attempts: 10,
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
                multiplier: 2.0,
                reset_after: Some(RESET_AFTER),
            },
            None | Some(RestartSpec::None) => RestartStrategy::None,
            Some(RestartSpec::FixedDelay {
                attempts,
                delay,
                reset_after,
            }) => RestartStrategy::FixedDelay {
                attempts: *attempts,
                delay: delay.duration(),
                reset_after: reset_after.map(|d| d.duration()),
            },
            Some(RestartSpec::FailureRate {
                max_failures,
                interval,
                delay,
            }) => {
                if interval.duration().is_zero() {
                    return Err(SpecError(
                        "restart.interval: must be longer than 0".to_string(),
                    ));
                }
                RestartStrategy::FailureRate {
                    max_failures: *max_failures,
                    interval: interval.duration(),
                    delay: delay.duration(),
                }
            }
            Some(RestartSpec::ExponentialBackoff {
                attempts,
                initial_delay,
                max_delay,
                multiplier,
                reset_after,
            }) => {
                if !(*multiplier >= 1.0 && multiplier.is_finite()) {
                    return Err(SpecError(format!(
                        "restart.multiplier: must be at least 1, got {multiplier}"
                    )));
                }
                RestartStrategy::ExponentialBackoff {
                    attempts: *attempts,
                    initial: initial_delay.duration(),
                    max: max_delay.duration(),
                    multiplier: *multiplier,
                    reset_after: Some(reset_after.map_or(RESET_AFTER, |d| d.duration())),
                }
            }
        };
        Ok(Durability {
            state_backend,
            backends: resolver.state_backends(),
            state_dir,
            checkpoints,
            restart,
        })
    }

    /// Builds the job graph: checks ids, inputs (existing, acyclic, side outputs that
    /// exist), windows and aggregates, and asks `resolver` for the factories. Errors start
    /// with the field path (`windows[0].window.size: must be longer than 0`).
    pub fn to_graph(
        &self,
        dir: &Path,
        resolver: &dyn Resolver,
        overrides: Overrides,
    ) -> Result<JobGraph, SpecError> {
        let parallelism = overrides.parallelism.unwrap_or(self.parallelism);
        let config = ExecutionConfig {
            max_parallelism: self.max_parallelism,
            batch_size: overrides.batch_size.unwrap_or(self.batch_size),
            channel_capacity: self.channel_capacity,
        };
        for (name, v) in [
            ("parallelism", parallelism),
            ("max_parallelism", config.max_parallelism),
            ("batch_size", config.batch_size),
            ("channel_capacity", config.channel_capacity),
        ] {
            if v == 0 {
                return Err(SpecError(format!("{name}: must be at least 1")));
            }
        }
        if parallelism > config.max_parallelism {
            return Err(SpecError(format!(
                "parallelism: {parallelism} is more than max_parallelism ({})",
                config.max_parallelism
            )));
        }
        if self.sources.is_empty() {
            return Err(SpecError("sources: a job needs at least one source".into()));
        }
        if self.sinks.is_empty() {
            return Err(SpecError("sinks: a job needs at least one sink".into()));
        }

        // Every vertex with its field path and its input names.
        struct Decl<'a> {
            id: &'a str,
            field: String,
            inputs: Vec<&'a str>,
        }
        let mut decls: Vec<Decl> = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            decls.push(Decl {
                id: &s.id,
                field: format!("sources[{i}]"),
                inputs: vec![],
            });
        }
        for (i, o) in self.operators.iter().enumerate() {
            decls.push(Decl {
                id: &o.id,
                field: format!("operators[{i}]"),
                inputs: o.input.list(),
            });
        }
        for (i, w) in self.windows.iter().enumerate() {
            decls.push(Decl {
                id: &w.id,
                field: format!("windows[{i}]"),
                inputs: w.input.list(),
            });
        }
        for (i, s) in self.sinks.iter().enumerate() {
            decls.push(Decl {
                id: &s.id,
                field: format!("sinks[{i}]"),
                inputs: s.input.list(),
            });
        }
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        for (i, d) in decls.iter().enumerate() {
            if !valid_id(d.id) {
                return Err(SpecError(format!(
                    "{}.id: '{}' is not a valid id (letters, digits, '-' and '_')",
                    d.field, d.id
                )));
            }
            if let Some(&j) = by_id.get(d.id) {
                return Err(SpecError(format!(
                    "{}.id: '{}' is already the id of {}",
                    d.field, d.id, decls[j].field
                )));
            }
            by_id.insert(d.id, i);
        }
        // Resolve inputs to (decl index, side output).
        let n_sinks = self.sinks.len();
        let first_sink = decls.len() - n_sinks;
        let mut edges: Vec<Vec<(usize, Option<String>)>> = Vec::new();
        for d in &decls {
            let mut list = Vec::new();
            if d.inputs.is_empty() && !d.field.starts_with("sources") {
                return Err(SpecError(format!(
                    "{}.input: needs at least one input",
                    d.field
                )));
            }
            for name in &d.inputs {
                let (vertex, side) = match name.split_once('.') {
                    Some((v, s)) => (v, Some(s.to_string())),
                    None => (*name, None),
                };
                let Some(&up) = by_id.get(vertex) else {
                    return Err(SpecError(format!(
                        "{}.input: no vertex '{vertex}' (ids: {})",
                        d.field,
                        decls.iter().map(|d| d.id).collect::<Vec<_>>().join(", ")
                    )));
                };
                if up >= first_sink {
                    return Err(SpecError(format!(
                        "{}.input: '{vertex}' is a sink; sinks have no output",
                        d.field
                    )));
                }
                if let Some(side) = &side {
                    let is_window = up >= self.sources.len() + self.operators.len();
                    let is_operator = up >= self.sources.len() && !is_window;
                    if !(is_operator || is_window && side == crate::window::LATE_OUTPUT) {
                        return Err(SpecError(format!(
                            "{}.input: '{vertex}' has no side output '{side}' (windows have 'late'; operators name their own)",
                            d.field
                        )));
                    }
                }
                list.push((up, side));
            }
            edges.push(list);
        }
        // Topological order (Kahn); a cycle is an error naming its vertices.
        let n = decls.len();
        let mut indegree: Vec<usize> = edges.iter().map(Vec::len).collect();
        let mut order = Vec::with_capacity(n);
        // Always take the earliest-declared ready vertex, so the order follows the spec.
        let mut ready: std::collections::BTreeSet<usize> =
            (0..n).filter(|&i| indegree[i] == 0).collect();
        while let Some(u) = ready.pop_first() {
            order.push(u);
            for (v, ins) in edges.iter().enumerate() {
                for (up, _) in ins {
                    if *up == u {
                        indegree[v] -= 1;
                        if indegree[v] == 0 {
                            ready.insert(v);
                        }
                    }
                }
            }
        }
        if order.len() < n {
            let cyc: Vec<&str> = (0..n)
                .filter(|&i| indegree[i] > 0)
                .map(|i| decls[i].id)
                .collect();
            return Err(SpecError(format!(
                "the graph has a cycle through: {}",
                cyc.join(", ")
            )));
        }
        let mut position = vec![0; n];
        for (pos, &d) in order.iter().enumerate() {
            position[d] = pos;
        }

        // Build vertices in topological order.
        let mut vertices: Vec<Vertex> = Vec::with_capacity(n);
        for &d in &order {
            let decl = &decls[d];
            let field = &decl.field;
            let inputs_of =
                |partitioning: Partitioning, p: usize, vertices: &[Vertex]| -> Vec<Input> {
                    edges[d]
                        .iter()
                        .map(|(up, side)| {
                            let upv = &vertices[position[*up]];
                            let part = if partitioning == Partitioning::Forward
                                && (upv.parallelism != p || edges[d].len() > 1)
                            {
                                Partitioning::Rebalance
                            } else {
                                partitioning
                            };
                            Input {
                                vertex: position[*up],
                                side_output: side.clone(),
                                partitioning: part,
                            }
                        })
                        .collect()
                };
            let first_input_parallelism = |vertices: &[Vertex]| {
                edges[d]
                    .first()
                    .map(|(up, _)| vertices[position[*up]].parallelism)
                    .unwrap_or(1)
            };
            let vertex = if d < self.sources.len() {
                let s = &self.sources[d];
                let factory = resolver
                    .source(
                        &s.connector,
                        &serde_json::Value::Object(s.options.clone()),
                        dir,
                        field,
                    )
                    .map_err(|e| SpecError(e.0))?;
                let p = s.parallelism.unwrap_or(1);
                if p > factory.max_parallelism() {
                    return Err(SpecError(format!(
                        "{field}.parallelism: {p} is more than this source can split into ({})",
                        factory.max_parallelism()
                    )));
                }
                Vertex {
                    id: s.id.clone(),
                    parallelism: p,
                    kind: VertexKind::Source {
                        factory,
                        max_events_per_second: s.max_events_per_second.filter(|&r| r > 0),
                        watermarks: WatermarkStrategy {
                            max_out_of_orderness_ms: s.watermarks.max_out_of_orderness.0,
                            idleness: s.watermarks.idleness.map(DurationMs::duration),
                        },
                    },
                    inputs: vec![],
                }
            } else if d < self.sources.len() + self.operators.len() {
                let o = &self.operators[d - self.sources.len()];
                let factory = resolver.operator(
                    &o.id,
                    &serde_json::Value::Object(o.options.clone()),
                    dir,
                    field,
                )?;
                let keyed = match o.key_by.as_deref() {
                    None => false,
                    Some("key") => true,
                    Some(other) => {
                        return Err(SpecError(format!(
                            "{field}.key_by: only 'key' (the event key) is supported, not '{other}'; set the key in a source or an operator upstream"
                        )));
                    }
                };
                let p = o.parallelism.unwrap_or_else(|| {
                    if keyed {
                        parallelism
                    } else {
                        first_input_parallelism(&vertices)
                    }
                });
                let output_format = o
                    .output
                    .as_ref()
                    .map(|f| {
                        f.to_format()
                            .map_err(|e| SpecError(format!("{field}.output.{e}")))
                    })
                    .transpose()?;
                Vertex {
                    id: o.id.clone(),
                    parallelism: p,
                    kind: VertexKind::Operator {
                        factory,
                        output_format,
                    },
                    inputs: inputs_of(
                        if keyed {
                            Partitioning::KeyBy
                        } else {
                            Partitioning::Forward
                        },
                        p,
                        &vertices,
                    ),
                }
            } else if d < first_sink {
                let w = &self.windows[d - self.sources.len() - self.operators.len()];
                if w.key_by != "key" {
                    return Err(SpecError(format!(
                        "{field}.key_by: only 'key' (the event key) is supported; set the key in an operator"
                    )));
                }
                let assigner = w.window.to_assigner(&format!("{field}.window"))?;
                let mut aggregates = Vec::new();
                for (i, a) in w.aggregates.iter().enumerate() {
                    let function = AggregateFn::parse(&a.function).ok_or_else(|| {
                        SpecError(format!(
                            "{field}.aggregates[{i}].fn: unknown function '{}' (count, sum, min, max, avg)",
                            a.function
                        ))
                    })?;
                    aggregates.push(AggregateSpec {
                        name: a.name.clone(),
                        function,
                        field: a.field.clone(),
                    });
                }
                if aggregates.is_empty() {
                    return Err(SpecError(format!(
                        "{field}.aggregates: give at least one aggregate"
                    )));
                }
                let p = w.parallelism.unwrap_or(parallelism);
                Vertex {
                    id: w.id.clone(),
                    parallelism: p,
                    kind: VertexKind::Window {
                        assigner,
                        allowed_lateness: w.allowed_lateness.map_or(0, |l| l.0),
                        aggregates,
                    },
                    inputs: inputs_of(Partitioning::KeyBy, p, &vertices),
                }
            } else {
                let s = &self.sinks[d - first_sink];
                let factory = resolver
                    .sink(
                        &s.connector,
                        &serde_json::Value::Object(s.options.clone()),
                        dir,
                        field,
                    )
                    .map_err(|e| SpecError(e.0))?;
                let p = s.parallelism.unwrap_or(1);
                Vertex {
                    id: s.id.clone(),
                    parallelism: p,
                    kind: VertexKind::Sink { factory },
                    inputs: inputs_of(Partitioning::Forward, p, &vertices),
                }
            };
            if vertex.parallelism == 0 || vertex.parallelism > config.max_parallelism {
                return Err(SpecError(format!(
                    "{field}.parallelism: {} is not within 1..={} (max_parallelism)",
                    vertex.parallelism, config.max_parallelism
                )));
            }
            vertices.push(vertex);
        }
        let graph = JobGraph {
            durability: self.durability(dir, resolver)?,
            name: self.name.clone(),
            vertices,
            config,
            swaps: Default::default(),
        };
        graph.validate().map_err(|e| SpecError(e.0))?;
        // Check input formats and aggregates now, to name the field.
        let formats = graph.output_formats();
        for v in &graph.vertices {
            let different = v.inputs.split_first().and_then(|(first, rest)| {
                let format = graph.input_format(&formats, first);
                rest.iter()
                    .find(|i| graph.input_format(&formats, i) != format)
            });
            if let Some(other) = different {
                let i = decls.iter().position(|d| d.id == v.id).expect("declared");
                return Err(SpecError(format!(
                    "{}.input: '{}' emits values in another format than '{}'; a union needs one value format",
                    decls[i].field,
                    graph.vertices[other.vertex].id,
                    graph.vertices[v.inputs[0].vertex].id
                )));
            }
            if let VertexKind::Window { aggregates, .. } = &v.kind {
                let format = graph.input_format(&formats, &v.inputs[0]);
                crate::window::Aggregates::new(aggregates.clone(), &format).map_err(|e| {
                    let i = decls.iter().position(|d| d.id == v.id).expect("declared");
                    SpecError(format!("{}.aggregates: {e}", decls[i].field))
                })?;
            }
        }
        Ok(graph)
    }
}
