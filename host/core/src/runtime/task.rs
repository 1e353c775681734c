//! The loop of a subtask thread: a source subtask polls its reader and generates
//! watermarks; any other subtask receives from its channel and combines its inputs'
//! watermarks in a valve. Both drive their operator chain and report failures.

use super::chain::{Chain, ChainError};
use super::gate::{Envelope, StreamElement};
use super::{JobError, JobState};
use crate::batch::Batch;
use crate::connector::{SourcePoll, SourceReader};
use crate::time::{BoundedOutOfOrderness, MAX_WATERMARK, WatermarkStrategy, WatermarkValve};
use crossbeam_channel::Receiver;
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

pub(super) fn run_source(
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

pub(super) fn run_inbound(
    rx: Receiver<Envelope>,
    inputs: usize,
    mut chain: Chain,
    state: &JobState,
) {
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

/// The job error for a subtask that panicked (a bug), with the panic's message.
pub(super) fn panic_error(subtask: &str, panic: &(dyn std::any::Any + Send)) -> JobError {
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    JobError(format!("internal error: subtask {subtask} panicked: {msg}"))
}
