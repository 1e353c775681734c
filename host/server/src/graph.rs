//! A job's execution graph as the API shows it: vertices with their kind, parallelism,
//! operator and chain, and the edges between them.

use serde::{Deserialize, Serialize};
use sluice_core::graph::{JobGraph, Partitioning};
use utoipa::ToSchema;

/// The execution graph of a job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct GraphView {
    /// Number of key groups (max parallelism).
    pub max_parallelism: usize,
    /// Vertices, every input before its consumers.
    pub vertices: Vec<VertexView>,
    /// Edges.
    pub edges: Vec<EdgeView>,
}

/// One vertex.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VertexView {
    /// Its id in the spec.
    pub id: String,
    /// `source`, `operator`, `window` or `sink`.
    pub kind: String,
    /// Number of subtasks.
    pub parallelism: usize,
    /// For an operator: the SHA-256 of its component.
    pub operator: Option<String>,
    /// The id of the first vertex of the operator chain it runs in (itself when it
    /// heads a chain): chained vertices share a thread per subtask.
    pub chain: String,
}

/// One edge: events from `source` (its main output, or a side output) to `target`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EdgeView {
    /// The producing vertex.
    pub source: String,
    /// The consuming vertex.
    pub target: String,
    /// The producer's side output (`late` for a window), or none for its main output.
    pub side_output: Option<String>,
    /// `forward` (subtask to subtask), `key_by` (hash shuffle by key group) or
    /// `rebalance` (round-robin).
    pub partitioning: String,
}

impl GraphView {
    /// The view of `graph`; `operator_of(vertex id)` gives an operator vertex's hash.
    pub fn of(graph: &JobGraph, operator_of: impl Fn(&str) -> Option<String>) -> GraphView {
        let vs = &graph.vertices;
        // Flink's chaining, as the runtime does it: a vertex joins its input's chain when
        // it has that one input, by a forward edge, with equal parallelism, and is the
        // only consumer of the input's main output.
        let mut chain: Vec<usize> = (0..vs.len()).collect();
        for (i, v) in vs.iter().enumerate() {
            if let [input] = v.inputs.as_slice()
                && input.partitioning == Partitioning::Forward
                && input.side_output.is_none()
                && vs[input.vertex].parallelism == v.parallelism
            {
                let consumers = vs
                    .iter()
                    .flat_map(|w| &w.inputs)
                    .filter(|x| x.vertex == input.vertex && x.side_output.is_none())
                    .count();
                if consumers == 1 {
                    chain[i] = chain[input.vertex];
                }
            }
        }
        GraphView {
            max_parallelism: graph.config.max_parallelism,
            vertices: vs
                .iter()
                .enumerate()
                .map(|(i, v)| VertexView {
                    id: v.id.clone(),
                    kind: v.kind.name().to_string(),
                    parallelism: v.parallelism,
                    operator: operator_of(&v.id),
                    chain: vs[chain[i]].id.clone(),
                })
                .collect(),
            edges: vs
                .iter()
                .flat_map(|v| {
                    v.inputs.iter().map(|input| EdgeView {
                        source: vs[input.vertex].id.clone(),
                        target: v.id.clone(),
                        side_output: input.side_output.clone(),
                        partitioning: match input.partitioning {
                            Partitioning::Forward => "forward",
                            Partitioning::KeyBy => "key_by",
                            Partitioning::Rebalance => "rebalance",
                        }
                        .to_string(),
                    })
                })
                .collect(),
        }
    }
}
