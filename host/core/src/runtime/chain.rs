//! An operator chain running in one subtask thread: operators joined by forward edges
//! call each other directly; the chain's outputs leave through gates.

use super::FailureOrigin;
use super::OperatorSwaps;
use super::gate::{Disconnected, Gate, StreamElement};
use super::metrics::SubtaskMetrics;
use crate::batch::Batch;
use crate::checkpoint::Barrier;
use crate::checkpoint::metadata::{PORTABLE, SnapshotKind};
use crate::checkpoint::restore::export_portable;
use crate::checkpoint::upload::{LocalKeyed, LocalSnapshot, LocalState, Uploaded};
use crate::operator::{Collector, Operator, OperatorContext, OperatorError, StateContext};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Why a chain stopped early.
#[derive(Debug)]
pub enum ChainError {
    /// An operator failed, in this subtask when known.
    Operator(OperatorError, Option<FailureOrigin>),
    /// A downstream subtask is gone (it failed, or the job was cancelled).
    Disconnected,
    /// Every upstream subtask is gone without ending its stream (one failed).
    UpstreamGone,
}

impl From<OperatorError> for ChainError {
    fn from(e: OperatorError) -> Self {
        ChainError::Operator(e, None)
    }
}

impl From<Disconnected> for ChainError {
    fn from(_: Disconnected) -> Self {
        ChainError::Disconnected
    }
}

/// Gates per side-output name: `(name, gates of its consumers)`.
pub type SideGates = Vec<(String, Vec<Gate>)>;

/// One operator of a chain with the gates of its outputs that leave the chain.
pub struct ChainLink {
    /// The vertex id.
    pub vertex_id: String,
    /// The subtask index.
    pub subtask: usize,
    /// The vertex's parallelism.
    pub parallelism: usize,
    /// For a keyed vertex: the immutable files its checkpoints uploaded.
    pub uploaded: Option<Uploaded>,
    /// The operator.
    pub operator: Box<dyn Operator>,
    /// Whether the next link in the chain consumes this one's main output.
    pub chained: bool,
    /// Gates of main-output consumers outside the chain.
    pub main_gates: Vec<Gate>,
    /// Gates per side output name.
    pub side_gates: SideGates,
    /// This vertex subtask's figures.
    pub metrics: Arc<SubtaskMetrics>,
    /// The last watermark sent through the side gates.
    pub side_watermark: i64,
    /// For a user operator that declares `json` output: checked here, where untrusted
    /// JSON enters the engine, so that sinks can write JSON values as they are. Holds
    /// the operator's description for the error.
    pub check_json_output: Option<String>,
}

impl ChainLink {
    /// Every gate of this link: main-output gates, then side-output gates.
    fn gates(&self) -> impl Iterator<Item = &Gate> {
        self.main_gates
            .iter()
            .chain(self.side_gates.iter().flat_map(|(_, g)| g))
    }
}

/// The collector handed to link `i`: forwards to link `i + 1` and to `i`'s gates.
struct LinkOutput<'a> {
    check_json: Option<&'a str>,
    main_gates: &'a mut Vec<Gate>,
    side_gates: &'a mut SideGates,
    metrics: &'a SubtaskMetrics,
    rest: &'a mut [ChainLink],
    chained: bool,
    error: &'a mut Option<ChainError>,
    /// The link's vertex id and subtask, for failures.
    vertex_id: &'a str,
    subtask: usize,
}

impl LinkOutput<'_> {
    fn origin(&self) -> FailureOrigin {
        FailureOrigin {
            vertex: self.vertex_id.to_string(),
            subtask: self.subtask,
        }
    }

    fn fail(&mut self, e: ChainError) {
        if self.error.is_none() {
            *self.error = Some(e);
        }
    }
}

impl Collector for LinkOutput<'_> {
    fn collect(&mut self, batch: Batch) {
        if self.error.is_some() {
            return;
        }
        if let Some(who) = self.check_json
            && let Some(e) = invalid_json(&batch)
        {
            let fault = OperatorError::Fault {
                context: who.to_string(),
                message: format!(
                    "emitted a value that is not JSON, but its output format is json: {e}"
                ),
            };
            let origin = self.origin();
            self.fail(ChainError::Operator(fault, Some(origin)));
            return;
        }
        self.metrics
            .records_out
            .fetch_add(batch.len() as u64, Relaxed);
        self.metrics
            .bytes_out
            .fetch_add(batch.byte_size() as u64, Relaxed);
        if let Some(wm) = batch.last_watermark() {
            self.metrics.watermark.store(wm, Relaxed);
        }
        let batch = match fan_out(self.main_gates, batch, self.chained) {
            Ok(kept) => kept,
            Err(Disconnected) => return self.fail(ChainError::Disconnected),
        };
        if let Some(batch) = batch {
            if let Some(next) = self.rest.first() {
                next.metrics
                    .records_in
                    .fetch_add(batch.len() as u64, Relaxed);
                next.metrics
                    .bytes_in
                    .fetch_add(batch.byte_size() as u64, Relaxed);
            }
            deliver(self.rest, self.error, |op, out| {
                op.process_batch(batch, out)
            });
        }
    }

    fn collect_side(&mut self, output: &str, batch: Batch) {
        if self.error.is_some() {
            return;
        }
        let n = batch.len() as u64;
        match self.side_gates.iter_mut().find(|(name, _)| name == output) {
            Some((_, gates)) => {
                self.metrics.side_records_out.fetch_add(n, Relaxed);
                if fan_out(gates, batch, false).is_err() {
                    self.fail(ChainError::Disconnected);
                }
            }
            None => {
                self.metrics.unrouted_side_records.fetch_add(n, Relaxed);
            }
        }
    }

    fn report_failure(&mut self, failure: crate::operator::OperatorFailure) {
        self.metrics.failures.record(failure);
    }

    fn collect_watermark(&mut self, watermark: i64) {
        if self.error.is_some() {
            return;
        }
        self.metrics.watermark.store(watermark, Relaxed);
        for g in self.main_gates.iter() {
            if g.broadcast(|| StreamElement::Watermark(watermark)).is_err() {
                self.fail(ChainError::Disconnected);
                return;
            }
        }
        if self.chained {
            deliver(self.rest, self.error, |op, out| {
                op.process_watermark(watermark, out)
            });
        }
    }
}

/// Sends `batch` through every gate (a copy to each but the last, which gets the batch
/// itself, unless `keep`); returns the batch when `keep` (for the chained next link).
fn fan_out(gates: &mut [Gate], batch: Batch, keep: bool) -> Result<Option<Batch>, Disconnected> {
    let mut batch = Some(batch);
    let last = gates.len().wrapping_sub(1);
    for (i, g) in gates.iter_mut().enumerate() {
        let b = if i == last && !keep {
            batch.take().expect("last use")
        } else {
            batch.as_ref().expect("kept for later use").clone()
        };
        g.send_batch(b)?;
    }
    Ok(batch.filter(|_| keep))
}

/// The first value of `batch` that is not a JSON document, described.
fn invalid_json(batch: &Batch) -> Option<String> {
    batch.iter().find_map(|e| {
        serde_json::from_slice::<serde::de::IgnoredAny>(e.value)
            .err()
            .map(|err| {
                let shown = String::from_utf8_lossy(&e.value[..e.value.len().min(80)]).into_owned();
                format!(
                    "{err} in {shown:?} (event time {})",
                    crate::time::format_time(e.timestamp)
                )
            })
    })
}

/// Calls `f` on the first link of `links` with a collector for that link; then, once
/// the operator is done with this input (so its side-output events went first), sends
/// its output watermark's progress through its side gates: side outputs carry event time
/// like the main output.
fn deliver(
    links: &mut [ChainLink],
    error: &mut Option<ChainError>,
    f: impl FnOnce(&mut dyn Operator, &mut dyn Collector) -> Result<(), OperatorError>,
) {
    let Some((link, rest)) = links.split_first_mut() else {
        return;
    };
    let mut out = LinkOutput {
        check_json: link.check_json_output.as_deref(),
        main_gates: &mut link.main_gates,
        side_gates: &mut link.side_gates,
        metrics: &link.metrics,
        rest,
        chained: link.chained,
        error,
        vertex_id: &link.vertex_id,
        subtask: link.subtask,
    };
    if let Err(e) = f(link.operator.as_mut(), &mut out) {
        let origin = out.origin();
        out.fail(ChainError::Operator(e, Some(origin)));
        return;
    }
    let wm = link.metrics.watermark.load(Relaxed);
    if wm > link.side_watermark && !link.side_gates.is_empty() && error.is_none() {
        link.side_watermark = wm;
        for g in link.side_gates.iter().flat_map(|(_, g)| g.iter()) {
            if g.broadcast(|| StreamElement::Watermark(wm)).is_err() {
                *error = Some(ChainError::Disconnected);
                return;
            }
        }
    }
}

/// A subtask's operator chain.
pub struct Chain {
    /// The links, head first.
    pub links: Vec<ChainLink>,
    /// The job's hot-swaps, carried out at barriers.
    pub swaps: Arc<OperatorSwaps>,
    /// Where snapshots are written before upload.
    pub snapshot_dir: std::path::PathBuf,
}

impl Chain {
    /// Runs `f` on the head; the time it takes, less the time the chain's links were
    /// backpressured meanwhile, is added to every link's busy time (once per batch or
    /// watermark, never per event).
    fn run(
        &mut self,
        f: impl FnOnce(&mut dyn Operator, &mut dyn Collector) -> Result<(), OperatorError>,
    ) -> Result<(), ChainError> {
        let backpressured = |links: &[ChainLink]| -> u64 {
            links
                .iter()
                .map(|l| l.metrics.backpressured_ns.load(Relaxed))
                .sum()
        };
        let bp0 = backpressured(&self.links);
        let t = std::time::Instant::now();
        let mut error = None;
        deliver(&mut self.links, &mut error, f);
        let elapsed = t.elapsed().as_nanos() as u64;
        let busy = elapsed.saturating_sub(backpressured(&self.links).saturating_sub(bp0));
        for l in &self.links {
            l.metrics.busy_ns.fetch_add(busy, Relaxed);
        }
        error.map_or(Ok(()), Err)
    }

    /// Feeds a batch to the head (whose metrics count it in).
    pub fn process_batch(&mut self, batch: Batch) -> Result<(), ChainError> {
        let head = &self.links[0].metrics;
        head.records_in.fetch_add(batch.len() as u64, Relaxed);
        head.bytes_in.fetch_add(batch.byte_size() as u64, Relaxed);
        self.run(|op, out| op.process_batch(batch, out))
    }

    /// Feeds a watermark to the head.
    pub fn process_watermark(&mut self, watermark: i64) -> Result<(), ChainError> {
        self.run(|op, out| op.process_watermark(watermark, out))
    }

    /// Finishes every link head first (each may still emit downstream), then sends
    /// `End` through every gate.
    pub fn finish(&mut self) -> Result<(), ChainError> {
        for i in 0..self.links.len() {
            let mut error = None;
            deliver(&mut self.links[i..], &mut error, |op, out| op.finish(out));
            if let Some(e) = error {
                return Err(e);
            }
        }
        self.end()
    }

    /// Sends `End` through every gate (also on failure paths, best effort).
    pub fn end(&mut self) -> Result<(), ChainError> {
        self.broadcast_all(|| StreamElement::End)
    }

    /// Sends an element through every gate of every link.
    fn broadcast_all(&mut self, el: impl Fn() -> StreamElement) -> Result<(), ChainError> {
        for g in self.links.iter().flat_map(ChainLink::gates) {
            g.broadcast(&el)?;
        }
        Ok(())
    }

    /// Takes the chain's part of `barrier`'s snapshot (each operator's state, written to
    /// local files), then forwards the barrier through every gate. The returned snapshot
    /// still has to be uploaded.
    pub fn snapshot(&mut self, barrier: Barrier) -> Result<LocalSnapshot, ChainError> {
        let dir = self.snapshot_dir.join(format!("{}", barrier.id));
        let _ = std::fs::remove_dir_all(&dir);
        let mut states = Vec::with_capacity(self.links.len());
        for (i, link) in self.links.iter_mut().enumerate() {
            let operator_state =
                link.operator
                    .snapshot_operator_state(barrier.id)
                    .map_err(|e| {
                        let origin = FailureOrigin {
                            vertex: link.vertex_id.clone(),
                            subtask: link.subtask,
                        };
                        ChainError::Operator(e, Some(origin))
                    })?;
            let fault = |e: String| {
                ChainError::Operator(
                    OperatorError::Fault {
                        context: format!("'{}' (subtask {})", link.vertex_id, link.subtask + 1),
                        message: format!("snapshot for checkpoint {} failed: {e}", barrier.id),
                    },
                    Some(FailureOrigin {
                        vertex: link.vertex_id.clone(),
                        subtask: link.subtask,
                    }),
                )
            };
            let keyed = match (link.operator.keyed_state(), &link.uploaded) {
                (Some(store), Some(uploaded)) => {
                    let local = dir.join(format!("{i}"));
                    std::fs::create_dir_all(&local)
                        .map_err(|e| fault(format!("{}: {e}", local.display())))?;
                    let range = store.key_groups();
                    let states = store.states().to_vec();
                    let (format, files) = match barrier.kind {
                        SnapshotKind::Checkpoint => {
                            let snap = store
                                .backend_mut()
                                .snapshot(&local)
                                .map_err(|e| fault(e.0))?;
                            (snap.kind, snap.files)
                        }
                        SnapshotKind::Savepoint => (
                            PORTABLE.to_string(),
                            vec![export_portable(store, &local).map_err(fault)?],
                        ),
                    };
                    Some(LocalKeyed {
                        format,
                        key_groups: (range.start, range.end),
                        states,
                        files,
                        uploaded: uploaded.clone(),
                    })
                }
                _ => None,
            };
            states.push(LocalState {
                vertex_id: link.vertex_id.clone(),
                subtask: link.subtask,
                keyed,
                operator_state,
            });
        }
        self.swap_at(barrier.id, &states)?;
        self.broadcast_all(|| StreamElement::Barrier(barrier))?;
        Ok(LocalSnapshot {
            checkpoint: barrier.id,
            kind: barrier.kind,
            states,
            dir,
        })
    }

    /// Replaces the operators whose hot-swap is due at barrier `checkpoint` (their state
    /// at the barrier is in `states`): the keyed store moves to the new version, which
    /// gets the old one's operator state and is opened; if it fails to start, the old
    /// version gets its store back, the swap is rolled back and the job fails (so that
    /// no subtask runs the new version), to restart from its latest checkpoint.
    fn swap_at(&mut self, checkpoint: u64, states: &[LocalState]) -> Result<(), ChainError> {
        for (link, state) in self.links.iter_mut().zip(states) {
            let Some(factory) = self.swaps.due(&link.vertex_id, checkpoint) else {
                continue;
            };
            let started = std::time::Instant::now();
            let ctx = OperatorContext {
                operator_id: link.vertex_id.clone(),
                subtask: link.subtask,
                parallelism: link.parallelism,
            };
            let clock = crate::state::system_clock();
            let mut keyed = link.operator.take_keyed_state();
            let new = factory
                .create(link.subtask, link.parallelism)
                .and_then(|mut new| {
                    new.initialize_state(StateContext {
                        keyed: keyed.take(),
                        clock: clock.clone(),
                        operator_state: state.operator_state.iter().cloned().collect(),
                        union_operator_state: Vec::new(),
                    })?;
                    match new.open(&ctx) {
                        Ok(()) => Ok(new),
                        Err(e) => {
                            keyed = new.take_keyed_state();
                            Err(e)
                        }
                    }
                });
            match new {
                Ok(new) => {
                    link.operator = new;
                    self.swaps
                        .swapped(&link.vertex_id, started.elapsed().as_secs_f64() * 1e3);
                }
                Err(e) => {
                    // The old version keeps its state.
                    let back = link.operator.initialize_state(StateContext {
                        keyed,
                        clock,
                        operator_state: Vec::new(),
                        union_operator_state: Vec::new(),
                    });
                    let message = format!(
                        "hot-swap at checkpoint {checkpoint}: the new version did not start: {e}"
                    );
                    self.swaps.failed(&link.vertex_id, message.clone());
                    let origin = FailureOrigin {
                        vertex: link.vertex_id.clone(),
                        subtask: link.subtask,
                    };
                    let fault = OperatorError::Fault {
                        context: ctx.to_string(),
                        message: match back {
                            Ok(()) => message,
                            Err(b) => format!("{message}; giving the state back failed: {b}"),
                        },
                    };
                    return Err(ChainError::Operator(fault, Some(origin)));
                }
            }
        }
        Ok(())
    }

    /// Checkpoint `id` completed: every operator commits.
    pub fn notify_complete(&mut self, id: u64) -> Result<(), ChainError> {
        self.swaps.checkpoint_completed(id);
        for link in &mut self.links {
            link.operator.notify_checkpoint_complete(id)?;
        }
        Ok(())
    }

    /// Fires the processing-time timers due now in every operator that has some.
    pub fn processing_time(&mut self, now: i64) -> Result<(), ChainError> {
        for i in 0..self.links.len() {
            if self.links[i]
                .operator
                .next_processing_timer()
                .is_some_and(|t| t <= now)
            {
                let mut error = None;
                deliver(&mut self.links[i..], &mut error, |op, out| {
                    op.on_processing_time(now, out)
                });
                if let Some(e) = error {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The earliest processing-time timer of any operator in the chain.
    pub fn next_processing_timer(&self) -> Option<i64> {
        self.links
            .iter()
            .filter_map(|l| l.operator.next_processing_timer())
            .min()
    }

    /// Sends an idleness change through the head's gates and the chained links' gates.
    pub fn idle(&mut self, idle: bool) -> Result<(), ChainError> {
        for link in &self.links {
            for g in link.gates() {
                g.broadcast(|| StreamElement::Idle(idle))?;
            }
            if !link.chained {
                break;
            }
        }
        Ok(())
    }
}
