//! The execution plan of a job graph: which vertices chain into one thread (as in
//! Flink: a forward edge, equal parallelism, a single input, the only consumer of its
//! input's main output), the bounded channels into chain heads, each edge's input index
//! at its consumer, and how each subtask's chain is built.

use super::adapters::{SinkOperator, SourceHead};
use super::chain::{Chain, ChainLink, SideGates};
use super::gate::{Envelope, Gate};
use super::{JobError, JobMetrics};
use crate::checkpoint::restore::{
    KeyedRestore, RestorePoint, operator_states, union_operator_states,
};
use crate::checkpoint::upload::Uploaded;
use crate::format::ValueFormat;
use crate::graph::{JobGraph, Partitioning, VertexKind};
use crate::operator::{Operator, OperatorContext, StateContext};
use crate::state::system_clock;
use crate::window::{Aggregates, WindowConfig, WindowOperator};
use crossbeam_channel::{Receiver, Sender, bounded};

/// Everything about a graph's execution that does not depend on the subtask.
pub(super) struct ExecutionPlan<'g> {
    graph: &'g JobGraph,
    /// The value format of each vertex's main output.
    formats: Vec<Option<ValueFormat>>,
    /// `chain_next[u] == Some(v)`: `v` runs in `u`'s thread, after it.
    chain_next: Vec<Option<usize>>,
    /// Whether a vertex starts a chain (and so has its own threads).
    is_head: Vec<bool>,
    /// Per chain head with inputs, per subtask, one channel per input.
    senders: Vec<Vec<Vec<Sender<Envelope>>>>,
    receivers: Vec<Vec<Option<Vec<Receiver<Envelope>>>>>,
    /// Per vertex and input edge, the first input index of that edge at the consumer.
    input_offsets: Vec<Vec<u32>>,
    /// Per window vertex, its aggregates resolved against its input's format.
    aggregates: Vec<Option<Aggregates>>,
}

impl<'g> ExecutionPlan<'g> {
    /// Plans `graph`. Errors: an invalid graph, or aggregates that do not fit a window's
    /// input format.
    pub(super) fn new(graph: &'g JobGraph) -> Result<Self, JobError> {
        graph.validate().map_err(|e| JobError(e.0))?;
        let formats = graph.output_formats();
        let n = graph.vertices.len();

        let mut main_consumers = vec![0usize; n];
        for v in &graph.vertices {
            for i in &v.inputs {
                if i.side_output.is_none() {
                    main_consumers[i.vertex] += 1;
                }
            }
        }
        let mut chain_next: Vec<Option<usize>> = vec![None; n];
        let mut is_head = vec![true; n];
        for (vi, v) in graph.vertices.iter().enumerate() {
            if let [input] = v.inputs.as_slice() {
                let u = input.vertex;
                if input.partitioning == Partitioning::Forward
                    && input.side_output.is_none()
                    && main_consumers[u] == 1
                    && graph.vertices[u].parallelism == v.parallelism
                {
                    chain_next[u] = Some(vi);
                    is_head[vi] = false;
                }
            }
        }

        let mut receivers = Vec::with_capacity(n);
        let mut senders = Vec::with_capacity(n);
        let mut input_offsets = Vec::with_capacity(n);
        for (vi, v) in graph.vertices.iter().enumerate() {
            let mut offsets = Vec::new();
            let mut count = 0u32;
            for i in &v.inputs {
                offsets.push(count);
                count += match i.partitioning {
                    Partitioning::Forward => 1,
                    _ => graph.vertices[i.vertex].parallelism as u32,
                };
            }
            input_offsets.push(offsets);
            if is_head[vi] && !v.inputs.is_empty() {
                // Each input gets `channel_capacity` batches of credit.
                let cap = graph.config.channel_capacity;
                let (s, r): (Vec<Vec<_>>, Vec<Vec<_>>) = (0..v.parallelism)
                    .map(|_| (0..count).map(|_| bounded(cap)).unzip())
                    .unzip();
                senders.push(s);
                receivers.push(r.into_iter().map(Some).collect());
            } else {
                senders.push(Vec::new());
                receivers.push(Vec::new());
            }
        }

        let mut aggregates = Vec::with_capacity(n);
        for v in &graph.vertices {
            aggregates.push(match &v.kind {
                VertexKind::Window { aggregates, .. } => {
                    let format = graph.input_format(&formats, &v.inputs[0]);
                    Some(
                        Aggregates::new(aggregates.clone(), &format)
                            .map_err(|e| JobError(format!("window '{}': {e}", v.id)))?,
                    )
                }
                _ => None,
            });
        }

        Ok(ExecutionPlan {
            graph,
            formats,
            chain_next,
            is_head,
            senders,
            receivers,
            input_offsets,
            aggregates,
        })
    }

    /// The vertices that start a chain, in graph order.
    pub(super) fn heads(&self) -> Vec<usize> {
        (0..self.graph.vertices.len())
            .filter(|&v| self.is_head[v])
            .collect()
    }

    /// The inbound channels of subtask `s` of chain head `head`, one per input (taken
    /// once).
    pub(super) fn take_receivers(&mut self, head: usize, s: usize) -> Vec<Receiver<Envelope>> {
        self.receivers[head][s]
            .take()
            .expect("one receiver per subtask")
    }

    /// Builds and opens subtask `s` of the chain that starts at `head`: its operators,
    /// and the gates of every output that leaves the chain. Errors name the vertex.
    pub(super) fn build_chain(
        &self,
        head: usize,
        s: usize,
        metrics: &JobMetrics,
        restore: Option<&RestorePoint>,
    ) -> Result<Chain, JobError> {
        let mut members = vec![head];
        while let Some(next) = self.chain_next[*members.last().expect("non-empty")] {
            members.push(next);
        }
        let p = self.graph.vertices[head].parallelism;
        let mut links = Vec::with_capacity(members.len());
        for &vi in &members {
            let v = &self.graph.vertices[vi];
            let ctx = OperatorContext {
                operator_id: v.id.clone(),
                subtask: s,
                parallelism: p,
            };
            let mut operator = self.operator(vi, s, p, metrics)?;
            let (state, uploaded) = self.state_context(vi, s, restore)?;
            operator
                .initialize_state(state)
                .map_err(|e| JobError(e.to_string()))?;
            operator.open(&ctx).map_err(|e| JobError(e.to_string()))?;
            let subtask_metrics = metrics.vertices[vi].subtasks[s].clone();
            let (main_gates, side_gates) = self.gates(vi, s, &subtask_metrics);
            links.push(ChainLink {
                vertex_id: v.id.clone(),
                subtask: s,
                parallelism: p,
                uploaded,
                operator,
                chained: self.chain_next[vi].is_some(),
                main_gates,
                side_gates,
                metrics: subtask_metrics,
                side_watermark: i64::MIN,
                check_json_output: match (&v.kind, &self.formats[vi]) {
                    (VertexKind::Operator { .. }, Some(ValueFormat::Json)) => Some(ctx.to_string()),
                    _ => None,
                },
            });
        }
        Ok(Chain {
            links,
            swaps: self.graph.swaps.clone(),
            snapshot_dir: self
                .graph
                .durability
                .state_dir
                .join("snapshots")
                .join(format!("{}-{s}", self.graph.vertices[head].id)),
        })
    }

    /// The state of subtask `s` of vertex `vi`: keyed state for keyed vertices (restored
    /// from `restore` if it has some), and restored operator state.
    fn state_context(
        &self,
        vi: usize,
        s: usize,
        restore: Option<&RestorePoint>,
    ) -> Result<(StateContext, Option<Uploaded>), JobError> {
        let v = &self.graph.vertices[vi];
        let d = &self.graph.durability;
        let clock = system_clock();
        let (keyed, uploaded) = if self.graph.is_keyed(vi) {
            let (store, uploaded) = KeyedRestore {
                point: restore,
                vertex_id: &v.id,
                subtask: s,
                parallelism: v.parallelism,
                max_parallelism: self.graph.config.max_parallelism,
                backend: d.state_backend.as_ref(),
                backends: &d.backends,
                dir: d.state_dir.join("keyed").join(format!("{}-{s}", v.id)),
                clock: clock.clone(),
            }
            .open()
            .map_err(JobError)?;
            (Some(store), Some(uploaded))
        } else {
            (None, None)
        };
        Ok((
            StateContext {
                keyed,
                clock,
                operator_state: operator_states(restore, &v.id, s, v.parallelism),
                union_operator_state: union_operator_states(restore, &v.id),
            },
            uploaded,
        ))
    }

    /// The operator of subtask `s` of vertex `vi`, not yet opened.
    fn operator(
        &self,
        vi: usize,
        s: usize,
        p: usize,
        metrics: &JobMetrics,
    ) -> Result<Box<dyn Operator>, JobError> {
        let v = &self.graph.vertices[vi];
        Ok(match &v.kind {
            VertexKind::Source { .. } => Box::new(SourceHead),
            VertexKind::Operator { factory, .. } => {
                // A committed hot-swap replaces the spec's code.
                let factory = self.graph.swaps.committed(&v.id).unwrap_or(factory.clone());
                factory.create(s, p).map_err(|e| JobError(e.to_string()))?
            }
            VertexKind::Window {
                assigner,
                allowed_lateness,
                ..
            } => Box::new(WindowOperator::new(
                WindowConfig {
                    assigner: *assigner,
                    allowed_lateness: *allowed_lateness,
                    aggregates: self.aggregates[vi]
                        .clone()
                        .expect("windows have aggregates"),
                    max_parallelism: self.graph.config.max_parallelism,
                },
                metrics.vertices[vi].windows[s].clone(),
            )),
            VertexKind::Sink { factory } => {
                let format = self.graph.input_format(&self.formats, &v.inputs[0]);
                let context = format!("sink '{}' (subtask {}/{p})", v.id, s + 1);
                Box::new(SinkOperator {
                    sink: factory
                        .create_sink(s, p, &format)
                        .map_err(|e| JobError(format!("{context}: {e}")))?,
                    context,
                    checkpointing: self.graph.durability.checkpoints.is_some(),
                })
            }
        })
    }

    /// The gates of subtask `s` of vertex `vi` for every consumer outside its chain:
    /// main-output gates, and side-output gates by name.
    fn gates(
        &self,
        vi: usize,
        s: usize,
        metrics: &std::sync::Arc<super::SubtaskMetrics>,
    ) -> (Vec<Gate>, SideGates) {
        let mut main_gates = Vec::new();
        let mut side_gates: SideGates = Vec::new();
        for (wi, w) in self.graph.vertices.iter().enumerate() {
            for (ei, input) in w.inputs.iter().enumerate() {
                let chained = self.chain_next[vi] == Some(wi) && input.side_output.is_none();
                if input.vertex != vi || chained {
                    continue;
                }
                let own = if input.partitioning == Partitioning::Forward {
                    0
                } else {
                    s as u32
                };
                let index = self.input_offsets[wi][ei] + own;
                let gate = Gate::new(
                    input.partitioning,
                    self.senders[wi]
                        .iter()
                        .map(|inputs| inputs[index as usize].clone())
                        .collect(),
                    index,
                    s,
                    self.graph.config.max_parallelism,
                    metrics.clone(),
                );
                match &input.side_output {
                    None => main_gates.push(gate),
                    Some(name) => match side_gates.iter_mut().find(|(n, _)| n == name) {
                        Some((_, g)) => g.push(gate),
                        None => side_gates.push((name.clone(), vec![gate])),
                    },
                }
            }
        }
        (main_gates, side_gates)
    }
}
