//! The task runtime: turns a [`JobGraph`] into an execution graph of subtasks — operator
//! chains on their own threads, joined by bounded channels (a full channel blocks its
//! producer: backpressure) — and runs it.
//!
//! Chaining follows Flink: a vertex joins its input's chain when the edge is `Forward`,
//! the parallelism is equal, it has that one input, and it is the only consumer of the
//! input's main output. Every other edge crosses a channel through a [`gate::Gate`].

mod chain;
pub mod gate;
mod metrics;

pub use metrics::{JobMetrics, SubtaskMetrics, VertexMetrics};

use crate::batch::Batch;
use crate::connector::{ConnectorError, Sink, SourcePoll, SourceReader};
use crate::format::ValueFormat;
use crate::graph::{JobGraph, Partitioning, VertexKind};
use crate::operator::{Collector, Operator, OperatorContext, OperatorError};
use crate::time::{BoundedOutOfOrderness, MAX_WATERMARK, WatermarkStrategy, WatermarkValve};
use crate::window::{Aggregates, WindowConfig, WindowCounters, WindowOperator};
use chain::{Chain, ChainError, ChainLink};
use crossbeam_channel::{Receiver, Sender, bounded};
use gate::{Envelope, Gate, StreamElement};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why a job could not start or did not finish; the message names the vertex and
/// subtask and says what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JobError(pub String);

/// Shared between a job's threads: the first failure, and the cancel flag.
#[derive(Default)]
struct JobState {
    /// The first failure; `true` when it is a cause, `false` when it is only a symptom
    /// (a channel that closed because another subtask died), which a cause replaces.
    error: Mutex<Option<(JobError, bool)>>,
    cancelled: AtomicBool,
}

impl JobState {
    /// Records a failure that is a cause, and stops the job.
    fn fail(&self, e: JobError) {
        self.record(e, true);
    }

    /// Records a symptom: kept only if no cause is ever recorded.
    fn fail_symptom(&self, e: JobError) {
        self.record(e, false);
    }

    fn record(&self, e: JobError, cause: bool) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            None => *slot = Some((e, cause)),
            Some((_, false)) if cause => *slot = Some((e, cause)),
            Some(_) => {}
        }
        self.cancelled.store(true, Relaxed);
    }

    fn take_error(&self) -> Option<JobError> {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(|(e, _)| e)
    }
}

/// A job whose subtasks are running.
pub struct RunningJob {
    metrics: Arc<JobMetrics>,
    state: Arc<JobState>,
    threads: Vec<(String, JoinHandle<()>)>,
}

impl RunningJob {
    /// Live figures.
    pub fn metrics(&self) -> &Arc<JobMetrics> {
        &self.metrics
    }

    /// Whether every subtask has stopped.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|(_, t)| t.is_finished())
    }

    /// Asks every subtask to stop; [`RunningJob::join`] then reports "cancelled".
    pub fn cancel(&self) {
        if self.is_finished() {
            return;
        }
        self.state.fail(JobError("the job was cancelled".into()));
    }

    /// Waits for every subtask. Returns the first failure, if any.
    pub fn join(self) -> Result<(), JobError> {
        for (name, t) in self.threads {
            if let Err(panic) = t.join() {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.state.fail(JobError(format!(
                    "internal error: subtask {name} panicked: {msg}"
                )));
            }
        }
        match self.state.take_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Passes a source's batches into its chain.
struct SourceHead;

impl Operator for SourceHead {
    fn open(&mut self, _: &OperatorContext) -> Result<(), OperatorError> {
        Ok(())
    }
    fn process_batch(
        &mut self,
        batch: Batch,
        out: &mut dyn Collector,
    ) -> Result<(), OperatorError> {
        out.collect(batch);
        Ok(())
    }
}

/// Writes a chain's events to a sink.
struct SinkOperator {
    sink: Box<dyn Sink>,
    context: String,
}

impl SinkOperator {
    fn error(&self, e: ConnectorError) -> OperatorError {
        OperatorError::Fault {
            context: self.context.clone(),
            message: e.0,
        }
    }
}

impl Operator for SinkOperator {
    fn open(&mut self, ctx: &OperatorContext) -> Result<(), OperatorError> {
        self.context = ctx.to_string().replacen("operator", "sink", 1);
        Ok(())
    }
    fn process_batch(&mut self, batch: Batch, _: &mut dyn Collector) -> Result<(), OperatorError> {
        self.sink.write_batch(&batch).map_err(|e| self.error(e))
    }
    fn process_watermark(&mut self, _: i64, _: &mut dyn Collector) -> Result<(), OperatorError> {
        Ok(())
    }
    fn finish(&mut self, _: &mut dyn Collector) -> Result<(), OperatorError> {
        self.sink.finish().map_err(|e| self.error(e))
    }
}

/// Starts `graph`: validates it, builds the execution graph, opens every operator and
/// starts one thread per chain subtask.
///
/// Errors: an invalid graph, aggregates that do not fit the window's input format, a
/// source reader, sink or operator that cannot be created or opened.
pub fn start(graph: JobGraph) -> Result<RunningJob, JobError> {
    graph.validate().map_err(|e| JobError(e.0))?;
    let formats = graph.output_formats();
    let cfg = graph.config;
    let n = graph.vertices.len();

    // Chains: chain_next[u] = Some(v) when v runs in u's thread after it.
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

    // Inbound channels of chain heads with inputs, and each edge's input-index offset.
    let mut receivers: Vec<Vec<Option<Receiver<Envelope>>>> = Vec::with_capacity(n);
    let mut senders: Vec<Vec<Sender<Envelope>>> = Vec::with_capacity(n);
    let mut input_offsets: Vec<Vec<u32>> = Vec::with_capacity(n);
    let mut input_counts = vec![0u32; n];
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
        input_counts[vi] = count;
        input_offsets.push(offsets);
        if is_head[vi] && !v.inputs.is_empty() {
            let cap = cfg.channel_capacity * count as usize;
            let (s, r): (Vec<_>, Vec<_>) = (0..v.parallelism).map(|_| bounded(cap)).unzip();
            senders.push(s);
            receivers.push(r.into_iter().map(Some).collect());
        } else {
            senders.push(Vec::new());
            receivers.push(Vec::new());
        }
    }

    // Metrics.
    let mut window_counters: Vec<Vec<Arc<WindowCounters>>> = Vec::with_capacity(n);
    let vertices = graph
        .vertices
        .iter()
        .map(|v| {
            let windows: Vec<Arc<WindowCounters>> = if matches!(v.kind, VertexKind::Window { .. }) {
                (0..v.parallelism).map(|_| Arc::default()).collect()
            } else {
                Vec::new()
            };
            window_counters.push(windows.clone());
            VertexMetrics {
                id: v.id.clone(),
                kind: v.kind.name(),
                subtasks: (0..v.parallelism).map(|_| Arc::default()).collect(),
                windows,
            }
        })
        .collect();
    let metrics = Arc::new(JobMetrics {
        vertices,
        started: Instant::now(),
    });

    // Aggregates per window, resolved against the input format.
    let mut aggregates: Vec<Option<Aggregates>> = Vec::with_capacity(n);
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

    let state = Arc::new(JobState::default());
    let mut threads = Vec::new();
    // Open every operator and start every subtask; if anything fails, stop what was
    // started (it sees the job cancelled, or its channels close) before returning.
    let mut start_all = || -> Result<(), JobError> {
        for head in (0..n).filter(|&v| is_head[v]) {
            let mut members = vec![head];
            while let Some(next) = chain_next[*members.last().expect("non-empty")] {
                members.push(next);
            }
            let p = graph.vertices[head].parallelism;
            for s in 0..p {
                let mut links = Vec::new();
                let mut contexts = Vec::new();
                for &vi in &members {
                    let v = &graph.vertices[vi];
                    let ctx = OperatorContext {
                        operator_id: v.id.clone(),
                        subtask: s,
                        parallelism: p,
                    };
                    let subtask_metrics = metrics.vertices[vi].subtasks[s].clone();
                    let operator: Box<dyn Operator> = match &v.kind {
                        VertexKind::Source { .. } => Box::new(SourceHead),
                        VertexKind::Operator { factory, .. } => {
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
                                aggregates: aggregates[vi]
                                    .clone()
                                    .expect("windows have aggregates"),
                                max_parallelism: cfg.max_parallelism,
                            },
                            window_counters[vi][s].clone(),
                        )),
                        VertexKind::Sink { factory } => {
                            let format = graph.input_format(&formats, &v.inputs[0]);
                            Box::new(SinkOperator {
                                sink: factory.create_sink(s, p, &format).map_err(|e| {
                                    JobError(format!(
                                        "sink '{}' (subtask {}/{p}): {e}",
                                        v.id,
                                        s + 1
                                    ))
                                })?,
                                context: String::new(),
                            })
                        }
                    };
                    // Gates for consumers outside the chain.
                    let mut main_gates = Vec::new();
                    let mut side_gates: Vec<(String, Vec<Gate>)> = Vec::new();
                    for (wi, w) in graph.vertices.iter().enumerate() {
                        for (ei, input) in w.inputs.iter().enumerate() {
                            if input.vertex != vi
                                || chain_next[vi] == Some(wi) && input.side_output.is_none()
                            {
                                continue;
                            }
                            let index = input_offsets[wi][ei]
                                + if input.partitioning == Partitioning::Forward {
                                    0
                                } else {
                                    s as u32
                                };
                            let gate = Gate::new(
                                input.partitioning,
                                senders[wi].clone(),
                                index,
                                s,
                                cfg.max_parallelism,
                                subtask_metrics.clone(),
                            );
                            match &input.side_output {
                                None => main_gates.push(gate),
                                Some(name) => {
                                    match side_gates.iter_mut().find(|(n, _)| n == name) {
                                        Some((_, g)) => g.push(gate),
                                        None => side_gates.push((name.clone(), vec![gate])),
                                    }
                                }
                            }
                        }
                    }
                    links.push(ChainLink {
                        operator,
                        chained: chain_next[vi].is_some(),
                        main_gates,
                        side_gates,
                        metrics: subtask_metrics,
                        side_watermark: i64::MIN,
                        check_json_output: match (&v.kind, &formats[vi]) {
                            (VertexKind::Operator { .. }, Some(ValueFormat::Json)) => {
                                Some(ctx.to_string())
                            }
                            _ => None,
                        },
                    });
                    contexts.push(ctx);
                }
                for (link, ctx) in links.iter_mut().zip(&contexts) {
                    link.operator
                        .open(ctx)
                        .map_err(|e| JobError(e.to_string()))?;
                }
                let chain = Chain { links };
                let name = format!("{}-{}", graph.vertices[head].id, s);
                let st = state.clone();
                let handle = match &graph.vertices[head].kind {
                    VertexKind::Source {
                        factory,
                        watermarks,
                    } => {
                        let reader = factory.create_reader(s, p).map_err(|e| {
                            JobError(format!(
                                "source '{}' (subtask {}/{p}): {e}",
                                graph.vertices[head].id,
                                s + 1
                            ))
                        })?;
                        let ctx = format!(
                            "source '{}' (subtask {}/{p})",
                            graph.vertices[head].id,
                            s + 1
                        );
                        let strategy = *watermarks;
                        let batch_size = cfg.batch_size;
                        spawn(&name, state.clone(), move || {
                            run_source(reader, strategy, batch_size, chain, &st, &ctx)
                        })
                    }
                    _ => {
                        let rx = receivers[head][s].take().expect("one receiver per subtask");
                        let inputs = input_counts[head] as usize;
                        spawn(&name, state.clone(), move || {
                            run_inbound(rx, inputs, chain, &st)
                        })
                    }
                }
                .map_err(|e| JobError(format!("cannot start a thread for {name}: {e}")))?;
                threads.push((name, handle));
            }
        }
        Ok(())
    };
    let started = start_all();
    drop(senders);
    drop(receivers);
    if let Err(e) = started {
        state.fail(e.clone());
        for (_, t) in threads {
            let _ = t.join();
        }
        return Err(e);
    }
    Ok(RunningJob {
        metrics,
        state,
        threads,
    })
}

/// Starts a subtask thread; a panic in it (a bug) fails the job with the panic's message
/// and the subtask's name, and the other subtasks stop.
fn spawn(
    name: &str,
    state: Arc<JobState>,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let subtask = name.to_string();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                state.fail(JobError(format!(
                    "internal error: subtask {subtask} panicked: {msg}"
                )));
            }
        })
}

fn report(state: &JobState, e: ChainError) {
    match e {
        ChainError::Operator(e) => state.fail(JobError(e.to_string())),
        // A consumer is gone: the one that failed reported why, or the job was cancelled.
        ChainError::Disconnected | ChainError::UpstreamGone => {
            if !state.cancelled.load(Relaxed) {
                let which = if matches!(e, ChainError::UpstreamGone) {
                    "an upstream"
                } else {
                    "a downstream"
                };
                state.fail_symptom(JobError(format!(
                    "internal error: {which} subtask stopped unexpectedly"
                )));
            }
        }
    }
}

fn run_source(
    mut reader: Box<dyn SourceReader>,
    strategy: WatermarkStrategy,
    batch_size: usize,
    mut chain: Chain,
    state: &JobState,
    context: &str,
) {
    let mut generator = BoundedOutOfOrderness::new(strategy.max_out_of_orderness_ms);
    let mut next: Option<Batch> = None;
    let mut last_data = Instant::now();
    let mut idle = false;
    let result = (|| -> Result<(), ChainError> {
        loop {
            if state.cancelled.load(Relaxed) {
                // Cancelled or failed elsewhere: stop without finishing (no final watermark).
                return Ok(());
            }
            // A fresh batch only after the last one went downstream (not on every poll).
            let batch =
                next.get_or_insert_with(|| Batch::with_capacity(batch_size, batch_size * 32));
            match reader.poll_batch(batch, batch_size) {
                Err(e) => {
                    state.fail(JobError(format!("{context}: {e}")));
                    return Ok(());
                }
                Ok(SourcePoll::End) => break,
                Ok(SourcePoll::Pending) => {
                    if let Some(timeout) = strategy.idleness
                        && !idle
                        && last_data.elapsed() >= timeout
                    {
                        idle = true;
                        chain.idle(true)?;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(SourcePoll::Data) => {
                    last_data = Instant::now();
                    if idle {
                        idle = false;
                        chain.idle(false)?;
                    }
                    if !batch.is_empty() {
                        let mut batch = next.take().expect("filled above");
                        generator.mark_batch(&mut batch);
                        chain.process_batch(batch)?;
                    }
                }
            }
        }
        // The end of a bounded input brings the watermark to the maximum.
        chain.process_watermark(MAX_WATERMARK)?;
        chain.finish()
    })();
    if state.cancelled.load(Relaxed) {
        // Dropping the chain closes its channels; consumers see their inputs vanish.
        return;
    }
    if let Err(e) = result {
        report(state, e);
    }
}

fn run_inbound(rx: Receiver<Envelope>, inputs: usize, mut chain: Chain, state: &JobState) {
    let mut valve = WatermarkValve::new(inputs);
    let mut ended = 0;
    let head_metrics = chain.links[0].metrics.clone();
    let result = (|| -> Result<(), ChainError> {
        while ended < inputs {
            let Ok((input, el)) = rx.recv() else {
                // Every producer is gone without sending End: one failed (and said why).
                return Err(ChainError::UpstreamGone);
            };
            let input = input as usize;
            let advanced = match el {
                StreamElement::Batch(mut batch) => {
                    let marks = batch.take_marks();
                    let combined: Vec<_> = marks
                        .into_iter()
                        .filter_map(|m| {
                            valve.input_watermark(input, m.watermark).map(|w| {
                                crate::WatermarkMark {
                                    row: m.row,
                                    watermark: w,
                                }
                            })
                        })
                        .collect();
                    if let Some(last) = combined.last() {
                        head_metrics.watermark.store(last.watermark, Relaxed);
                    }
                    batch
                        .set_marks(combined)
                        .expect("valve output is monotonic");
                    chain.process_batch(batch)?;
                    None
                }
                StreamElement::Watermark(w) => valve.input_watermark(input, w),
                StreamElement::Idle(idle) => valve.input_idle(input, idle),
                StreamElement::End => {
                    ended += 1;
                    valve.input_ended(input)
                }
            };
            if let Some(w) = advanced {
                head_metrics.watermark.store(w, Relaxed);
                chain.process_watermark(w)?;
            }
            if state.cancelled.load(Relaxed) {
                return Err(ChainError::Disconnected);
            }
        }
        // Every input ended: event time is over, whatever watermarks the inputs sent
        // (an input fed by a side output may have sent none).
        if valve.current() < MAX_WATERMARK {
            head_metrics.watermark.store(MAX_WATERMARK, Relaxed);
            chain.process_watermark(MAX_WATERMARK)?;
        }
        chain.finish()
    })();
    if let Err(e) = result {
        report(state, e);
    }
}
