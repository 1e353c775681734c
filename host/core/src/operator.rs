//! The operator interface that the task runtime drives and that `sluice-wasm` implements
//! for WASM components, so the engine can be tested with native operators and the
//! sandbox without the engine.

use crate::batch::Batch;
use crate::state::{Clock, KeyedStateStore};
use std::fmt;

/// Where an operator sends what it produces.
pub trait Collector {
    /// Emits a batch on the main output. Its watermark marks must be carried from the
    /// input (see [`Batch::remap_marks_from`]).
    fn collect(&mut self, batch: Batch);
    /// Emits a batch on the named side output (for example `late` or `dead-letter`).
    fn collect_side(&mut self, output: &str, batch: Batch);
    /// Advances the watermark on the main output (ms since the epoch).
    fn collect_watermark(&mut self, watermark: i64);
    /// Reports a failed call of a user operator: one it handled under its failure
    /// policy (input skipped or dead-lettered, the job goes on), or one it is about to
    /// return (counted; the job fails). The runtime counts it in the subtask's figures
    /// and keeps the handled ones for the job's exception history. Default: ignored.
    fn report_failure(&mut self, _failure: OperatorFailure) {}
}

/// The side output of a user operator that its `dead-letter` failure policy sends the
/// records that fail to: JSON values describing the failure and the record.
pub const DEAD_LETTER_OUTPUT: &str = "dead-letter";

/// What kind of failure a user operator's call had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A WASM trap: `unreachable`, a guest panic, an out-of-bounds access, a stack
    /// overflow.
    Trap,
    /// A limit of the sandbox was hit: memory, time per call, output per call.
    Limit,
    /// The guest returned a typed error.
    Error,
}

/// What became of a failed call's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureHandling {
    /// Nothing: the operator returns the error, and the job fails.
    Failed,
    /// The input of the call (`records` events, or timers) was dropped.
    Skipped {
        /// Events or timers dropped.
        records: u64,
    },
    /// The record that made the call fail was found by bisecting the call's input and
    /// sent to the `dead-letter` side output; the rest went on.
    DeadLettered,
}

/// A failed call of a user operator, as [`Collector::report_failure`] gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorFailure {
    /// When, ms since the epoch.
    pub time: i64,
    /// Trap, limit or error.
    pub kind: FailureKind,
    /// What became of the input.
    pub handling: FailureHandling,
    /// The error, naming the operator and subtask (with the guest's message and
    /// backtrace where it gave them).
    pub message: String,
    /// The key of the dead-lettered record or the failing timer, for a keyed operator.
    pub key: Option<Vec<u8>>,
}

/// A [`Collector`] that keeps everything an operator emits, in order: for testing an
/// operator without the runtime.
#[derive(Debug, Default)]
pub struct VecCollector {
    /// Batches emitted on the main output (watermarks inside them are in their marks).
    pub main: Vec<Batch>,
    /// Batches emitted on side outputs, with the side output's name.
    pub side: Vec<(String, Batch)>,
    /// Watermarks emitted between batches, ms since the epoch.
    pub watermarks: Vec<i64>,
}

impl VecCollector {
    /// The main output's events, in order.
    pub fn events(&self) -> impl Iterator<Item = crate::batch::EventRef<'_>> {
        self.main.iter().flat_map(Batch::iter)
    }

    /// The events of side output `name`, in order.
    pub fn side_events<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = crate::batch::EventRef<'a>> + 'a {
        self.side
            .iter()
            .filter(move |(n, _)| n == name)
            .flat_map(|(_, b)| b.iter())
    }
}

impl Collector for VecCollector {
    fn collect(&mut self, batch: Batch) {
        self.main.push(batch);
    }
    fn collect_side(&mut self, output: &str, batch: Batch) {
        self.side.push((output.to_string(), batch));
    }
    fn collect_watermark(&mut self, watermark: i64) {
        self.watermarks.push(watermark);
    }
}

/// Identity of a running operator instance, for error messages and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorContext {
    /// The vertex id from the job spec.
    pub operator_id: String,
    /// This subtask's index, `0..parallelism`.
    pub subtask: usize,
    /// The vertex's parallelism.
    pub parallelism: usize,
}

impl fmt::Display for OperatorContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "operator '{}' (subtask {}/{})",
            self.operator_id,
            self.subtask + 1,
            self.parallelism
        )
    }
}

/// Why an operator failed. The message names the operator (the runtime adds the
/// [`OperatorContext`]) and says what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// The operator returned a typed error (expected failure: bad config, bad input).
    #[error("{context}: operator error ({code}): {message}")]
    Returned {
        /// Operator, subtask.
        context: String,
        /// The error's code, e.g. `invalid-config`, `invalid-input`.
        code: String,
        /// The operator's message.
        message: String,
    },
    /// The operator faulted: a WASM trap, a limit hit (memory, time), or a broken output.
    #[error("{context}: {message}")]
    Fault {
        /// Operator, subtask.
        context: String,
        /// What happened, with the guest's own message where it gave one.
        message: String,
    },
}

/// The state the runtime hands an operator before [`Operator::open`] (Flink's
/// `initializeState`): fresh, or restored from a checkpoint or savepoint.
pub struct StateContext {
    /// The subtask's keyed state and timers, when the operator's input is keyed (a
    /// `key_by` edge); `None` otherwise.
    pub keyed: Option<KeyedStateStore>,
    /// Processing time (ms since the epoch), for processing-time timers and TTL.
    pub clock: Clock,
    /// Operator (non-keyed) state restored for this subtask: what
    /// [`Operator::snapshot_operator_state`] returned, one entry per old subtask whose
    /// state this one inherits (one when the parallelism is unchanged; empty on a fresh
    /// start).
    pub operator_state: Vec<Vec<u8>>,
    /// Every old subtask's operator state (Flink's union redistribution), for state that
    /// every subtask needs after a rescale, such as the watermark an operator reached.
    pub union_operator_state: Vec<Vec<u8>>,
}

/// A stream operator that processes batches of events.
///
/// The runtime calls [`Operator::initialize_state`] and [`Operator::open`] once, then [`Operator::process_batch`] and
/// [`Operator::process_watermark`] in stream order, then [`Operator::finish`] at the end
/// of a bounded input. An operator that keeps no time of its own forwards watermarks
/// unchanged (the default).
pub trait Operator: Send {
    /// Receives the operator's state before [`Operator::open`]. An operator that keeps
    /// keyed state takes `state.keyed` and hands it back through
    /// [`Operator::keyed_state`]; the default keeps nothing.
    fn initialize_state(&mut self, _state: StateContext) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The keyed state the operator took in [`Operator::initialize_state`], which the
    /// runtime snapshots at checkpoints (between two calls, never during one).
    fn keyed_state(&mut self) -> Option<&mut KeyedStateStore> {
        None
    }

    /// Gives up the keyed state (with its timers), for a new version of the operator
    /// that replaces this one at a barrier (hot-swap); [`Operator::initialize_state`]
    /// hands it back if the new version fails to start. Default: none.
    fn take_keyed_state(&mut self) -> Option<KeyedStateStore> {
        None
    }

    /// Snapshots the operator's non-keyed state at checkpoint `checkpoint`'s barrier
    /// (a sink pre-commits here). Called before the runtime snapshots
    /// [`Operator::keyed_state`], so an operator with a working copy writes it back here.
    fn snapshot_operator_state(
        &mut self,
        _checkpoint: u64,
    ) -> Result<Option<Vec<u8>>, OperatorError> {
        Ok(None)
    }

    /// Checkpoint `checkpoint` is complete: commit what was pre-committed for it.
    fn notify_checkpoint_complete(&mut self, _checkpoint: u64) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The earliest processing-time timer the operator has, if any (ms since the epoch):
    /// the runtime calls [`Operator::on_processing_time`] once the clock reaches it.
    fn next_processing_timer(&self) -> Option<i64> {
        None
    }

    /// Fires the processing-time timers due at `now` (ms since the epoch).
    fn on_processing_time(
        &mut self,
        _now: i64,
        _out: &mut dyn Collector,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Prepares the operator (for a WASM operator: instantiate and call its `init`); the
    /// default does nothing.
    fn open(&mut self, _ctx: &OperatorContext) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Processes one batch, emitting results to `out`.
    fn process_batch(&mut self, batch: Batch, out: &mut dyn Collector)
    -> Result<(), OperatorError>;

    /// Handles a watermark that arrives between batches.
    fn process_watermark(
        &mut self,
        watermark: i64,
        out: &mut dyn Collector,
    ) -> Result<(), OperatorError> {
        out.collect_watermark(watermark);
        Ok(())
    }

    /// Called once after the last element of a bounded input, after the final watermark.
    fn finish(&mut self, _out: &mut dyn Collector) -> Result<(), OperatorError> {
        Ok(())
    }
}
