//! The job graph: vertices (sources, operators, windows, sinks) and the edges between
//! them, as written in a job spec or built in Rust. [`crate::runtime`] turns it into an
//! execution graph of subtasks.

use crate::checkpoint::CheckpointConfig;
use crate::connector::{SinkFactory, SourceFactory};
use crate::format::ValueFormat;
use crate::operator::{Operator, OperatorError};
use crate::runtime::RestartStrategy;
use crate::state::{HeapKvBackendFactory, KvBackendFactory};
use crate::time::WatermarkStrategy;
use crate::window::{AggregateSpec, WindowAssigner};
use std::path::PathBuf;
use std::sync::Arc;

/// Creates the instances of a user operator vertex, one per subtask.
pub trait OperatorFactory: Send + Sync {
    /// The operator for `subtask` of `parallelism`.
    fn create(
        &self,
        subtask: usize,
        parallelism: usize,
    ) -> Result<Box<dyn Operator>, OperatorError>;
}

/// How events move along an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// Subtask `i` to subtask `i` (same parallelism); chained into one thread when possible.
    Forward,
    /// By the event key's key group (a hash shuffle).
    KeyBy,
    /// Batches round-robin over the consumer's subtasks.
    Rebalance,
}

/// An edge into a vertex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Index of the producing vertex in [`JobGraph::vertices`].
    pub vertex: usize,
    /// The producer's side output, or `None` for its main output.
    pub side_output: Option<String>,
    /// How events are distributed.
    pub partitioning: Partitioning,
}

/// What a vertex does.
pub enum VertexKind {
    /// Reads events and generates watermarks.
    Source {
        /// Creates the readers.
        factory: Arc<dyn SourceFactory>,
        /// How watermarks follow event time.
        watermarks: WatermarkStrategy,
        /// At most this many events per second (replaying recorded data at a set pace);
        /// `None`: as fast as it reads.
        max_events_per_second: Option<u64>,
    },
    /// A user operator (a WASM component, or native code in tests).
    Operator {
        /// Creates the instances.
        factory: Arc<dyn OperatorFactory>,
        /// The format of the values it emits; `None`: same as its input's.
        output_format: Option<ValueFormat>,
    },
    /// A keyed event-time window with built-in aggregates; its input edge is `KeyBy`.
    Window {
        /// Which windows events belong to.
        assigner: WindowAssigner,
        /// Allowed lateness, ms.
        allowed_lateness: i64,
        /// Result columns.
        aggregates: Vec<AggregateSpec>,
    },
    /// Writes events out.
    Sink {
        /// Creates the writers.
        factory: Arc<dyn SinkFactory>,
    },
}

impl VertexKind {
    /// `source`, `operator`, `window` or `sink`.
    pub fn name(&self) -> &'static str {
        match self {
            VertexKind::Source { .. } => "source",
            VertexKind::Operator { .. } => "operator",
            VertexKind::Window { .. } => "window",
            VertexKind::Sink { .. } => "sink",
        }
    }
}

/// A vertex of the job graph.
pub struct Vertex {
    /// Unique id (from the spec).
    pub id: String,
    /// Number of subtasks, `>= 1`.
    pub parallelism: usize,
    /// What it does.
    pub kind: VertexKind,
    /// Incoming edges (none for sources).
    pub inputs: Vec<Input>,
}

/// Execution settings of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionConfig {
    /// Number of key groups (Flink's max parallelism), `>= ` every vertex's parallelism.
    pub max_parallelism: usize,
    /// Most events a source puts in one batch, `>= 1`.
    pub batch_size: usize,
    /// Batches a channel between subtasks holds before its producer waits (the credit of
    /// credit-based backpressure), `>= 1`.
    pub channel_capacity: usize,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            max_parallelism: crate::keygroup::DEFAULT_MAX_PARALLELISM,
            batch_size: 1024,
            channel_capacity: 8,
        }
    }
}

/// How a job keeps state and survives failures: its state backend, checkpoints and
/// restart strategy.
#[derive(Clone)]
pub struct Durability {
    /// Creates the keyed state backends of stateful subtasks.
    pub state_backend: Arc<dyn KvBackendFactory>,
    /// Every backend kind this build has, to restore a checkpoint written by another
    /// kind (a job moved from heap to RocksDB, say); includes `state_backend`'s.
    pub backends: Vec<Arc<dyn KvBackendFactory>>,
    /// Local working folder for state (RocksDB files, snapshots before upload).
    pub state_dir: PathBuf,
    /// Periodic checkpoints; `None`: none (savepoints then need a storage too).
    pub checkpoints: Option<CheckpointConfig>,
    /// What to do when the job fails.
    pub restart: RestartStrategy,
}

impl Default for Durability {
    /// Heap state in a per-process temporary folder, no checkpoints, no restarts.
    fn default() -> Self {
        let heap: Arc<dyn KvBackendFactory> = Arc::new(HeapKvBackendFactory);
        Durability {
            state_backend: heap.clone(),
            backends: vec![heap],
            state_dir: std::env::temp_dir().join(format!("sluice-state-{}", std::process::id())),
            checkpoints: None,
            restart: RestartStrategy::None,
        }
    }
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durability")
            .field("state_backend", &self.state_backend.kind())
            .field("state_dir", &self.state_dir)
            .field("checkpoints", &self.checkpoints)
            .field("restart", &self.restart)
            .finish()
    }
}

/// A job: named vertices in topological order (every input precedes its consumer).
pub struct JobGraph {
    /// The job's name.
    pub name: String,
    /// Vertices, inputs before consumers.
    pub vertices: Vec<Vertex>,
    /// Execution settings.
    pub config: ExecutionConfig,
    /// State backend, checkpoints, restarts.
    pub durability: Durability,
    /// Replacements of its user operators' code while it runs (hot-swap), over attempts.
    pub swaps: Arc<crate::runtime::OperatorSwaps>,
}

/// A graph that cannot run; the message names the vertex and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GraphError(pub String);

impl JobGraph {
    /// Whether vertex `v` keeps keyed state: a window, or an operator whose input is
    /// keyed (`KeyBy`).
    pub fn is_keyed(&self, v: usize) -> bool {
        let vertex = &self.vertices[v];
        match vertex.kind {
            VertexKind::Window { .. } => true,
            VertexKind::Operator { .. } => {
                !vertex.inputs.is_empty()
                    && vertex
                        .inputs
                        .iter()
                        .all(|i| i.partitioning == Partitioning::KeyBy)
            }
            _ => false,
        }
    }

    /// Checks the structure: inputs precede consumers, sources have no inputs and others
    /// have some, window inputs are `KeyBy`, parallelism within `1..=max_parallelism`,
    /// `Forward` edges join equal parallelism. Errors name the vertex and what is wrong.
    pub fn validate(&self) -> Result<(), GraphError> {
        let c = &self.config;
        if c.max_parallelism == 0 || c.batch_size == 0 || c.channel_capacity == 0 {
            return Err(GraphError(
                "max_parallelism, batch_size and channel_capacity must be at least 1".into(),
            ));
        }
        for (i, v) in self.vertices.iter().enumerate() {
            if v.parallelism == 0 || v.parallelism > c.max_parallelism {
                return Err(GraphError(format!(
                    "vertex '{}': parallelism {} is not within 1..={} (max_parallelism)",
                    v.id, v.parallelism, c.max_parallelism
                )));
            }
            let is_source = matches!(v.kind, VertexKind::Source { .. });
            if is_source != v.inputs.is_empty() {
                return Err(GraphError(format!(
                    "vertex '{}': {}",
                    v.id,
                    if is_source {
                        "a source has no inputs"
                    } else {
                        "needs at least one input"
                    }
                )));
            }
            for input in &v.inputs {
                if input.vertex >= i {
                    return Err(GraphError(format!(
                        "vertex '{}': input {} does not precede it (graphs must be acyclic)",
                        v.id, input.vertex
                    )));
                }
                let up = &self.vertices[input.vertex];
                if matches!(up.kind, VertexKind::Sink { .. }) {
                    return Err(GraphError(format!(
                        "vertex '{}': reads from sink '{}'",
                        v.id, up.id
                    )));
                }
                if input.partitioning == Partitioning::Forward && up.parallelism != v.parallelism {
                    return Err(GraphError(format!(
                        "vertex '{}': forward edge from '{}' needs equal parallelism ({} vs {})",
                        v.id, up.id, up.parallelism, v.parallelism
                    )));
                }
                if matches!(v.kind, VertexKind::Window { .. })
                    && input.partitioning != Partitioning::KeyBy
                {
                    return Err(GraphError(format!(
                        "window '{}': its input must be keyed (KeyBy)",
                        v.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// The value format of each vertex's main output and, for windows, of the `late`
    /// side output (the window's input format); `None` for sinks.
    pub fn output_formats(&self) -> Vec<Option<ValueFormat>> {
        let mut formats: Vec<Option<ValueFormat>> = Vec::with_capacity(self.vertices.len());
        for v in &self.vertices {
            let input_format = v.inputs.first().and_then(|i| formats[i.vertex].clone());
            formats.push(match &v.kind {
                VertexKind::Source { factory, .. } => Some(factory.value_format()),
                VertexKind::Operator { output_format, .. } => {
                    output_format.clone().or(input_format)
                }
                VertexKind::Window { .. } => Some(ValueFormat::Json),
                VertexKind::Sink { .. } => None,
            });
        }
        formats
    }

    /// The format of what arrives on `input`.
    pub fn input_format(&self, formats: &[Option<ValueFormat>], input: &Input) -> ValueFormat {
        let up = &self.vertices[input.vertex];
        match (&up.kind, &input.side_output) {
            (VertexKind::Window { .. }, Some(_)) => up
                .inputs
                .first()
                .and_then(|i| formats[i.vertex].clone())
                .unwrap_or(ValueFormat::Bytes),
            // Dead-letter records are JSON (see `OperatorFailure`); other side outputs of
            // operators are whatever the operator wrote.
            (VertexKind::Operator { .. }, Some(side))
                if side == crate::operator::DEAD_LETTER_OUTPUT =>
            {
                ValueFormat::Json
            }
            (_, Some(_)) => ValueFormat::Bytes,
            _ => formats[input.vertex].clone().unwrap_or(ValueFormat::Bytes),
        }
    }
}
