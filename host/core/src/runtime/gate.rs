//! Output gates: how a subtask's output reaches the subtasks of a consumer vertex over
//! bounded channels (forward, key-by hash shuffle over key groups, rebalance).

use super::metrics::SubtaskMetrics;
use crate::batch::Batch;
use crate::graph::Partitioning;
use crate::keygroup::{key_group, subtask_for_key_group};
use crossbeam_channel::{Sender, TrySendError};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// What travels between subtasks.
#[derive(Debug)]
pub enum StreamElement {
    /// Events, with the watermark's progress inside the batch.
    Batch(Batch),
    /// The watermark advanced between batches.
    Watermark(i64),
    /// The producer became idle (`true`) or active again (`false`).
    Idle(bool),
    /// A checkpoint barrier: everything before it is in checkpoint `id`, nothing after.
    Barrier(crate::checkpoint::Barrier),
    /// The producer finished; nothing follows.
    End,
}

/// One message on a channel: the consumer's input index and the element. Each input of
/// a consumer subtask has its own channel (so that barrier alignment can stop reading
/// one input while the others go on, and backpressure stays per input).
pub type Envelope = (u32, StreamElement);

/// The consumer is gone (it failed or was cancelled).
#[derive(Debug)]
pub struct Disconnected;

/// The sending side of one edge for one producer subtask.
pub struct Gate {
    partitioning: Partitioning,
    senders: Vec<Sender<Envelope>>,
    /// This producer's input index at each consumer.
    input_index: u32,
    /// For `Forward`: the one consumer.
    forward_to: usize,
    max_parallelism: usize,
    next_rebalance: usize,
    metrics: Arc<SubtaskMetrics>,
}

impl Gate {
    /// A gate sending to `senders` (one per consumer subtask) as input `input_index`.
    pub fn new(
        partitioning: Partitioning,
        senders: Vec<Sender<Envelope>>,
        input_index: u32,
        producer_subtask: usize,
        max_parallelism: usize,
        metrics: Arc<SubtaskMetrics>,
    ) -> Gate {
        Gate {
            partitioning,
            input_index,
            forward_to: producer_subtask,
            max_parallelism,
            next_rebalance: producer_subtask % senders.len().max(1),
            senders,
            metrics,
        }
    }

    fn send(&self, to: usize, el: StreamElement) -> Result<(), Disconnected> {
        let env = (self.input_index, el);
        match self.senders[to].try_send(env) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(Disconnected),
            Err(TrySendError::Full(env)) => {
                let t = Instant::now();
                let r = self.senders[to].send(env).map_err(|_| Disconnected);
                self.metrics
                    .backpressured_ns
                    .fetch_add(t.elapsed().as_nanos() as u64, Relaxed);
                r
            }
        }
    }

    /// Sends `el` to every consumer this producer feeds (blocking while a channel is full).
    /// Errors: a consumer is gone.
    pub fn broadcast(&self, el: impl Fn() -> StreamElement) -> Result<(), Disconnected> {
        match self.partitioning {
            Partitioning::Forward => self.send(self.forward_to, el()),
            _ => (0..self.senders.len()).try_for_each(|to| self.send(to, el())),
        }
    }

    /// Sends a batch: whole to the forward consumer or the next round-robin one (the
    /// others get its last watermark), or split by key group, each part keeping every
    /// watermark mark at the right place. Blocks while a channel is full (backpressure,
    /// counted in the producer's metrics). Errors: a consumer is gone.
    pub fn send_batch(&mut self, batch: Batch) -> Result<(), Disconnected> {
        match self.partitioning {
            Partitioning::Forward => self.send(self.forward_to, StreamElement::Batch(batch)),
            Partitioning::Rebalance => {
                let to = self.next_rebalance;
                self.next_rebalance = (to + 1) % self.senders.len();
                let wm = batch.last_watermark();
                self.send(to, StreamElement::Batch(batch))?;
                if let Some(wm) = wm {
                    for other in (0..self.senders.len()).filter(|&o| o != to) {
                        self.send(other, StreamElement::Watermark(wm))?;
                    }
                }
                Ok(())
            }
            Partitioning::KeyBy => {
                let n = self.senders.len();
                if n == 1 {
                    return self.send(0, StreamElement::Batch(batch));
                }
                let per_target = batch.len() / n + 16;
                let bytes = batch.value_data().len() / n + 64;
                // The parts move downstream, so each batch needs new ones.
                let mut parts: Vec<Batch> = (0..n)
                    .map(|_| Batch::with_capacity(per_target, bytes))
                    .collect();
                let marks = batch.marks();
                let mut next_mark = 0;
                for i in 0..batch.len() {
                    while next_mark < marks.len() && marks[next_mark].row as usize <= i {
                        parts
                            .iter_mut()
                            .for_each(|p| p.push_watermark(marks[next_mark].watermark));
                        next_mark += 1;
                    }
                    let kg = key_group(batch.key(i), self.max_parallelism);
                    let to = subtask_for_key_group(kg, n, self.max_parallelism);
                    parts[to].push_from(&batch, i);
                }
                for m in &marks[next_mark..] {
                    parts.iter_mut().for_each(|p| p.push_watermark(m.watermark));
                }
                for (to, part) in parts.into_iter().enumerate() {
                    if !part.is_void() {
                        self.send(to, StreamElement::Batch(part))?;
                    }
                }
                Ok(())
            }
        }
    }
}
