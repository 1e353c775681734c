//! The loop of a subtask thread: a source subtask polls its reader and generates
//! watermarks; any other subtask receives from its input channels and combines their
//! watermarks in a valve. Both drive their operator chain, take part in checkpoints
//! (sources inject barriers; others align them across inputs), fire processing-time
//! timers, and report failures.

use super::chain::{Chain, ChainError};
use super::gate::{Envelope, StreamElement};
use super::{JobError, JobState};
use crate::batch::Batch;
use crate::checkpoint::Barrier;
use crate::checkpoint::coordinator::{Control, CoordinatorShared};
use crate::checkpoint::upload::LocalSnapshot;
use crate::connector::{SourcePoll, SourceReader};
use crate::time::{
    MAX_WATERMARK, SplitId, SplitWatermarks, WatermarkStrategy, WatermarkValve, now_ms,
};
use crossbeam_channel::{Receiver, Select, Sender};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Starts a subtask thread; a panic in it (a bug) fails the job with the panic's message
/// and the subtask's name, and the other subtasks stop.
pub(super) fn spawn(
    name: &str,
    state: Arc<JobState>,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let subtask = name.to_string();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                state.fail(panic_error(&subtask, panic.as_ref()));
            }
        })
}

fn report(state: &JobState, e: ChainError) {
    match e {
        ChainError::Operator(e, origin) => state.fail_at(JobError(e.to_string()), origin),
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

/// A subtask's link to the checkpoint coordinator.
pub(super) struct TaskCheckpointing {
    pub control: Receiver<Control>,
    pub uploads: Sender<LocalSnapshot>,
    pub shared: Arc<CoordinatorShared>,
}

/// How a subtask loop ended without error.
enum Exit {
    /// Its input ended: finish the chain, unless the job failed or was cancelled
    /// meanwhile (finishing commits a sink's output, which a restart from the latest
    /// checkpoint would emit again).
    Ended,
    /// Stopped with a savepoint, or cancelled: no finishing.
    Stopped,
}

/// A source subtask's checkpointed position.
#[derive(serde::Serialize, serde::Deserialize)]
struct SourcePosition {
    /// Events the reader returned.
    events: u64,
    /// The highest event time of each split (the watermark generators' state).
    #[serde(default)]
    splits: BTreeMap<SplitId, i64>,
    /// The reader's own position, if it has one.
    reader: Option<Vec<u8>>,
}

/// The events a source subtask had read at a checkpoint, from its checkpointed
/// position; `None` when the bytes are not a source's position.
pub(super) fn source_events(position: &[u8]) -> Option<u64> {
    serde_json::from_slice::<SourcePosition>(position)
        .ok()
        .map(|p| p.events)
}

/// The split of a reader that has no splits of its own.
const ONLY_SPLIT: SplitId = 0;

/// How often a source subtask looks for splits gone idle.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// Everything a source subtask runs with.
pub(super) struct SourceTask {
    pub reader: Box<dyn SourceReader>,
    /// This subtask's index.
    pub subtask: usize,
    pub strategy: WatermarkStrategy,
    pub max_events_per_second: Option<u64>,
    pub batch_size: usize,
    pub chain: Chain,
    pub context: String,
    pub checkpointing: Option<TaskCheckpointing>,
    /// The positions this subtask restores from: its own, or, when the parallelism
    /// changed, every old subtask's (the reader takes its splits from each).
    pub restored: Vec<Vec<u8>>,
}

impl SourceTask {
    /// Continues from the checkpointed positions: seeks the reader (or skips the events
    /// it already returned) and restores the watermark generators.
    fn restore(
        &mut self,
        watermarks: &mut SplitWatermarks,
        events: &mut u64,
    ) -> Result<(), String> {
        let positions = std::mem::take(&mut self.restored)
            .iter()
            .map(|bytes| serde_json::from_slice::<SourcePosition>(bytes))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the checkpointed source position is corrupted: {e}"))?;
        let mut splits = BTreeMap::new();
        // The events read before the snapshot: a count across restores. When the
        // parallelism changed, subtask 0 carries the old subtasks' total.
        if positions.len() == 1 || self.subtask == 0 {
            *events = positions.iter().map(|p| p.events).sum();
        }
        for pos in &positions {
            match &pos.reader {
                Some(p) => self.reader.seek(p).map_err(|e| e.0)?,
                None if positions.len() > 1 => {
                    return Err(
                        "this source cannot be restored with another parallelism: it \
                                has no position of its own to seek to"
                            .into(),
                    );
                }
                None => self.skip(pos.events)?,
            }
            splits.extend(pos.splits.iter().map(|(&k, &v)| (k, v)));
        }
        watermarks.restore(&splits, Instant::now());
        Ok(())
    }

    /// Reads and drops `count` events: the position of a reader that returns the same
    /// events in the same order each time.
    fn skip(&mut self, count: u64) -> Result<(), String> {
        let mut left = count;
        let mut scratch = Batch::with_capacity(self.batch_size, self.batch_size * 32);
        while left > 0 {
            scratch.clear();
            let want = (left as usize).min(self.batch_size.max(1));
            match self
                .reader
                .poll_batch(&mut scratch, want)
                .map_err(|e| e.0)?
            {
                SourcePoll::End => {
                    return Err(format!(
                        "the input ended {left} events before the checkpointed position ({count} events): did the input change?"
                    ));
                }
                SourcePoll::Pending => std::thread::sleep(Duration::from_millis(1)),
                SourcePoll::Data => left -= scratch.len() as u64,
            }
        }
        Ok(())
    }

    fn position(&mut self, checkpoint: u64, watermarks: &SplitWatermarks, events: u64) -> Vec<u8> {
        serde_json::to_vec(&SourcePosition {
            events,
            splits: watermarks.max_timestamps(),
            reader: self.reader.position(checkpoint),
        })
        .expect("a position serializes")
    }

    pub(super) fn run(mut self, state: &JobState) {
        let mut watermarks = SplitWatermarks::new(
            self.strategy.max_out_of_orderness_ms,
            self.strategy.idleness,
        );
        let mut events = 0u64;
        let mut next: Option<Batch> = None;
        let mut idle = false;
        let mut last_idle_check = Instant::now();
        let mut stopping: Option<u64> = None;
        if let Err(e) = self.restore(&mut watermarks, &mut events) {
            state.fail(JobError(format!("{}: restoring: {e}", self.context)));
            return;
        }
        let first_splits = self.reader.splits_changed().unwrap_or(vec![ONLY_SPLIT]);
        watermarks.assign(&first_splits, Instant::now());
        let batch_size = self.batch_size;
        let checkpointing = self.checkpointing.take();
        let (paced_since, paced_from) = (Instant::now(), events);
        let result = (|| -> Result<Exit, ChainError> {
            if watermarks.current() > i64::MIN {
                self.chain.process_watermark(watermarks.current())?;
            }
            loop {
                if state.cancelled.load(Relaxed) {
                    return Ok(Exit::Stopped);
                }
                if let Some(cp) = &checkpointing {
                    while let Ok(msg) = cp.control.try_recv() {
                        match msg {
                            Control::Trigger(b) => {
                                let position = self.position(b.id, &watermarks, events);
                                let mut snap = self.chain.snapshot(b)?;
                                snap.states[0].operator_state = Some(position);
                                let _ = cp.uploads.send(snap);
                                if b.stop {
                                    stopping = Some(b.id);
                                }
                            }
                            Control::Complete(id) => {
                                if let Err(e) = self.reader.notify_checkpoint_complete(id) {
                                    tracing::warn!("{}: after checkpoint {id}: {e}", self.context);
                                }
                                self.chain.notify_complete(id)?;
                                if stopping == Some(id) {
                                    return Ok(Exit::Stopped);
                                }
                            }
                            Control::Abort(id) => {
                                if stopping == Some(id) {
                                    stopping = None;
                                }
                            }
                        }
                    }
                }
                if stopping.is_some() {
                    // Stopping with a savepoint: nothing more after its barrier.
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                if self.chain.next_processing_timer().is_some() {
                    self.chain.processing_time(now_ms())?;
                }
                // A fresh batch only after the last one went downstream.
                let batch =
                    next.get_or_insert_with(|| Batch::with_capacity(batch_size, batch_size * 32));
                let poll = self.reader.poll_batch(batch, batch_size);
                if let Some(splits) = self.reader.splits_changed()
                    && let Some(w) = watermarks.assign(&splits, Instant::now())
                {
                    self.chain.process_watermark(w)?;
                }
                match poll {
                    Err(e) => {
                        state.fail(JobError(format!("{}: {e}", self.context)));
                        return Ok(Exit::Stopped);
                    }
                    Ok(SourcePoll::End) => return Ok(Exit::Ended),
                    Ok(SourcePoll::Pending) => std::thread::sleep(Duration::from_millis(1)),
                    Ok(SourcePoll::Data) => {
                        if let Some(rate) = self.max_events_per_second {
                            // Pace: the events so far may not be ahead of `rate` per second.
                            let due =
                                Duration::from_secs_f64((events - paced_from) as f64 / rate as f64);
                            if let Some(ahead) = due.checked_sub(paced_since.elapsed()) {
                                std::thread::sleep(ahead);
                            }
                        }
                        if !batch.is_empty() {
                            if idle {
                                idle = false;
                                self.chain.idle(false)?;
                            }
                            let mut batch = next.take().expect("filled above");
                            events += batch.len() as u64;
                            let split = self.reader.batch_split().unwrap_or(ONLY_SPLIT);
                            watermarks.mark_batch(&mut batch, split, Instant::now());
                            self.chain.process_batch(batch)?;
                        }
                    }
                }
                if self.strategy.idleness.is_some()
                    && last_idle_check.elapsed() >= IDLE_CHECK_INTERVAL
                {
                    last_idle_check = Instant::now();
                    let check = watermarks.check_idle(last_idle_check);
                    if let Some(w) = check.advanced {
                        self.chain.process_watermark(w)?;
                    }
                    if check.all_idle && !idle {
                        idle = true;
                        self.chain.idle(true)?;
                    }
                }
            }
        })();
        if let Some(cp) = &checkpointing {
            // From now on no checkpoint can complete (this source takes no barrier).
            cp.shared.running_sources.fetch_sub(1, Relaxed);
        }
        let result = result.and_then(|exit| match exit {
            Exit::Stopped => Ok(()),
            Exit::Ended if state.cancelled.load(Relaxed) => Ok(()),
            Exit::Ended => {
                // The end of a bounded input brings the watermark to the maximum.
                self.chain.process_watermark(MAX_WATERMARK)?;
                self.chain.finish()
            }
        });
        if state.cancelled.load(Relaxed) {
            // Dropping the chain closes its channels; consumers see their inputs vanish.
            return;
        }
        if let Err(e) = result {
            report(state, e);
        }
    }
}

/// Alignment of one barrier across a subtask's inputs.
struct Alignment {
    barrier: Barrier,
    /// Inputs that delivered it (and are not read until it completes).
    blocked: Vec<bool>,
}

/// The inputs of a non-source subtask, read through one `Select`; an input can be
/// paused (barrier alignment) and resumed.
struct Inputs<'a> {
    rxs: &'a [Receiver<Envelope>],
    select: Select<'a>,
    /// Input index -> its operation index in `select`, while it is being read.
    index_of: Vec<Option<usize>>,
    control: Option<usize>,
}

impl<'a> Inputs<'a> {
    fn new(rxs: &'a [Receiver<Envelope>], control: Option<&'a Receiver<Control>>) -> Self {
        let mut select = Select::new();
        let index_of = rxs.iter().map(|r| Some(select.recv(r))).collect();
        let control = control.map(|c| select.recv(c));
        Inputs {
            rxs,
            select,
            index_of,
            control,
        }
    }

    /// The input whose operation index in `select` is `idx`. A subtask has a few inputs,
    /// so a scan is cheaper than a map kept in step with `index_of`.
    fn input_of(&self, idx: usize) -> usize {
        self.index_of
            .iter()
            .position(|&i| i == Some(idx))
            .expect("a selected input is being read")
    }

    fn pause(&mut self, input: usize) {
        if let Some(idx) = self.index_of[input].take() {
            self.select.remove(idx);
        }
    }

    /// Reads every input that has not ended again (an alignment is over).
    fn resume_all(&mut self, ended: &[bool]) {
        for (input, _) in ended.iter().enumerate().filter(|(_, e)| !**e) {
            if self.index_of[input].is_none() {
                self.index_of[input] = Some(self.select.recv(&self.rxs[input]));
            }
        }
    }
}

/// What the next `select` delivered.
enum Next {
    Element(usize, Result<Envelope, crossbeam_channel::RecvError>),
    Control(Option<Control>),
    Timeout,
}

/// Everything a non-source subtask runs with.
pub(super) struct InboundTask {
    pub rxs: Vec<Receiver<Envelope>>,
    pub chain: Chain,
    pub checkpointing: Option<TaskCheckpointing>,
}

impl InboundTask {
    pub(super) fn run(mut self, state: &JobState) {
        let n = self.rxs.len();
        let mut valve = WatermarkValve::new(n);
        let mut ended = vec![false; n];
        let mut n_ended = 0;
        let head_metrics = self.chain.links[0].metrics.clone();
        let rxs = std::mem::take(&mut self.rxs);
        let cp = self.checkpointing.take();
        let chain = &mut self.chain;
        let mut inputs = Inputs::new(&rxs, cp.as_ref().map(|c| &c.control));
        let mut aligning: Option<Alignment> = None;
        // The newest checkpoint this subtask is done with: aligned and snapshotted,
        // aborted, or abandoned for a newer one. Its barriers, and older ones, are
        // obsolete: ignored without pausing their input (Flink's
        // `SingleCheckpointBarrierHandler` keeps the same).
        let mut finished_id = 0u64;
        let mut stopping: Option<u64> = None;
        let result = (|| -> Result<Exit, ChainError> {
            while n_ended < n {
                let next = {
                    let op = match chain.next_processing_timer() {
                        Some(t) => {
                            let wait = Duration::from_millis((t - now_ms()).clamp(0, 100) as u64);
                            inputs.select.select_timeout(wait).ok()
                        }
                        None => Some(inputs.select.select()),
                    };
                    match op {
                        None => Next::Timeout,
                        Some(op) if Some(op.index()) == inputs.control => Next::Control(
                            op.recv(&cp.as_ref().expect("control channel").control).ok(),
                        ),
                        Some(op) => {
                            let i = inputs.input_of(op.index());
                            Next::Element(i, op.recv(&rxs[i]))
                        }
                    }
                };
                match next {
                    Next::Timeout => {}
                    Next::Control(None) => {
                        // The coordinator is gone (the job is ending).
                        if let Some(idx) = inputs.control.take() {
                            inputs.select.remove(idx);
                        }
                    }
                    Next::Control(Some(Control::Complete(id))) => {
                        chain.notify_complete(id)?;
                        if stopping == Some(id) {
                            return Ok(Exit::Stopped);
                        }
                    }
                    Next::Control(Some(Control::Abort(id))) => {
                        if stopping == Some(id) {
                            stopping = None;
                        }
                        finished_id = finished_id.max(id);
                        if aligning.as_ref().is_some_and(|a| a.barrier.id == id) {
                            aligning = None;
                            inputs.resume_all(&ended);
                        }
                    }
                    Next::Control(Some(Control::Trigger(_))) => {}
                    Next::Element(i, Err(_)) => {
                        if stopping.is_some() || state.cancelled.load(Relaxed) {
                            // Stopping: an upstream subtask that committed has exited.
                            inputs.pause(i);
                            ended[i] = true;
                            n_ended += 1;
                            continue;
                        }
                        // A producer is gone without sending End: one failed (and said why).
                        return Err(ChainError::UpstreamGone);
                    }
                    Next::Element(input, Ok((_, el))) => {
                        let advanced = match el {
                            StreamElement::Batch(mut batch) => {
                                // The input's marks become the valve's, in place: a mark
                                // that does not advance the combined watermark goes.
                                let mut marks = batch.take_marks();
                                marks.retain_mut(|m| {
                                    match valve.input_watermark(input, m.watermark) {
                                        Some(w) => {
                                            m.watermark = w;
                                            true
                                        }
                                        None => false,
                                    }
                                });
                                if let Some(last) = marks.last() {
                                    head_metrics.watermark.store(last.watermark, Relaxed);
                                }
                                batch.set_marks(marks).expect("valve output is monotonic");
                                chain.process_batch(batch)?;
                                None
                            }
                            StreamElement::Watermark(w) => valve.input_watermark(input, w),
                            StreamElement::Idle(idle) => valve.input_idle(input, idle),
                            StreamElement::Barrier(b) => {
                                match &mut aligning {
                                    // Obsolete (done with, or older than the one
                                    // aligning): its input goes on.
                                    Some(a) if a.barrier.id > b.id => {}
                                    _ if b.id <= finished_id => {}
                                    Some(a) if a.barrier.id == b.id => {
                                        a.blocked[input] = true;
                                        inputs.pause(input);
                                    }
                                    _ => {
                                        // A newer barrier: an older alignment is abandoned.
                                        if let Some(old) = &aligning {
                                            finished_id = finished_id.max(old.barrier.id);
                                        }
                                        inputs.resume_all(&ended);
                                        let mut blocked = vec![false; n];
                                        blocked[input] = true;
                                        aligning = Some(Alignment {
                                            barrier: b,
                                            blocked,
                                        });
                                        inputs.pause(input);
                                    }
                                }
                                None
                            }
                            StreamElement::End => {
                                ended[input] = true;
                                n_ended += 1;
                                inputs.pause(input);
                                valve.input_ended(input)
                            }
                        };
                        if let Some(w) = advanced {
                            head_metrics.watermark.store(w, Relaxed);
                            chain.process_watermark(w)?;
                        }
                        // Aligned: every input delivered the barrier or ended.
                        if let Some(a) = &aligning
                            && (0..n).all(|i| a.blocked[i] || ended[i])
                        {
                            let b = a.barrier;
                            aligning = None;
                            finished_id = b.id;
                            let snap = chain.snapshot(b)?;
                            if let Some(cp) = &cp {
                                let _ = cp.uploads.send(snap);
                            }
                            if b.stop {
                                stopping = Some(b.id);
                            }
                            inputs.resume_all(&ended);
                        }
                    }
                }
                if chain.next_processing_timer().is_some() {
                    chain.processing_time(now_ms())?;
                }
                if state.cancelled.load(Relaxed) {
                    return Err(ChainError::Disconnected);
                }
            }
            Ok(if stopping.is_some() {
                Exit::Stopped
            } else {
                Exit::Ended
            })
        })();
        let result = result.and_then(|exit| match exit {
            Exit::Stopped => Ok(()),
            // Inputs that vanished because the job failed or was cancelled did not end.
            Exit::Ended if state.cancelled.load(Relaxed) => Ok(()),
            Exit::Ended => {
                // Every input ended: event time is over, whatever watermarks the inputs
                // sent (an input fed by a side output may have sent none).
                if valve.current() < MAX_WATERMARK {
                    head_metrics.watermark.store(MAX_WATERMARK, Relaxed);
                    chain.process_watermark(MAX_WATERMARK)?;
                }
                chain.finish()
            }
        });
        if let Err(e) = result {
            report(state, e);
        }
    }
}

/// The job error for a subtask that panicked (a bug), with the panic's message.
pub(super) fn panic_error(subtask: &str, panic: &(dyn std::any::Any + Send)) -> JobError {
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    JobError(format!("internal error: subtask {subtask} panicked: {msg}"))
}
