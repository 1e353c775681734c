//! The interfaces between the runtime and connectors (sources and sinks), implemented in
//! `sluice-connectors`.

use crate::batch::Batch;
use crate::format::ValueFormat;

/// A source or sink failure; the message names the file (or topic), the position, and
/// what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConnectorError(pub String);

/// What [`SourceReader::poll_batch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePoll {
    /// Events were appended (possibly fewer than asked for).
    Data,
    /// Nothing available right now; poll again later (unbounded sources).
    Pending,
    /// The input has ended; nothing was appended.
    End,
}

/// Reads one source subtask's share of a source.
pub trait SourceReader: Send {
    /// Appends up to `max_events` events to `batch`, each with its event time.
    /// Errors name the input and the position (file and row, say) and what was wrong.
    fn poll_batch(
        &mut self,
        batch: &mut Batch,
        max_events: usize,
    ) -> Result<SourcePoll, ConnectorError>;

    /// The reader's position after the last event it returned, for checkpoint
    /// `checkpoint` (Kafka: offsets per partition). `None` (the default) lets the runtime
    /// record how many events the reader returned and, on restore, skip as many: right
    /// for any reader that returns the same events in the same order each time (files).
    fn position(&mut self, _checkpoint: u64) -> Option<Vec<u8>> {
        None
    }

    /// Continues after `position` (returned by [`SourceReader::position`] of the same
    /// subtask of an earlier run), before the first poll. When the source's parallelism
    /// changed, it is called once with each old subtask's position: take the splits this
    /// reader now owns from each.
    fn seek(&mut self, _position: &[u8]) -> Result<(), ConnectorError> {
        Err(ConnectorError(
            "this source cannot seek to a checkpointed position".into(),
        ))
    }

    /// For a reader of several splits (Kafka: topic partitions) whose event times
    /// advance independently: the split every event of the last batch came from. The
    /// runtime then keeps a watermark generator per split and combines them by minimum,
    /// with idleness per split (see [`crate::time::SplitWatermarks`]). `None` (the
    /// default): the reader is one split.
    fn batch_split(&self) -> Option<crate::time::SplitId> {
        None
    }

    /// The splits assigned to this reader, when they changed since the last call (and
    /// on the first call, after any [`SourceReader::seek`]); `None` when unchanged.
    /// A split without data holds the watermark back until it goes idle. The default:
    /// never any (one split).
    fn splits_changed(&mut self) -> Option<Vec<crate::time::SplitId>> {
        None
    }

    /// Called when checkpoint `checkpoint`, whose position this reader gave, has
    /// completed (Kafka: commit the offsets to the consumer group for monitoring).
    fn notify_checkpoint_complete(&mut self, _checkpoint: u64) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Creates the readers of a source vertex, one per subtask.
pub trait SourceFactory: Send + Sync {
    /// The format of the values this source emits.
    fn value_format(&self) -> ValueFormat;
    /// The most subtasks that can share the input (1 for a single ordered file).
    fn max_parallelism(&self) -> usize;
    /// The reader for `subtask` of `parallelism`.
    fn create_reader(
        &self,
        subtask: usize,
        parallelism: usize,
    ) -> Result<Box<dyn SourceReader>, ConnectorError>;
}

/// Writes one sink subtask's events.
pub trait Sink: Send {
    /// Writes every event of `batch`.
    fn write_batch(&mut self, batch: &Batch) -> Result<(), ConnectorError>;
    /// Flushes and closes at the end of the input (and, for an exactly-once sink, commits
    /// everything written).
    fn finish(&mut self) -> Result<(), ConnectorError>;

    /// Called once, before any write, when the job checkpoints: from now on output
    /// becomes visible only when the checkpoint covering it completes (two-phase commit).
    /// `restored` holds what [`Sink::pre_commit`] returned in the checkpoint the job is
    /// restored from (empty on a fresh start): commit what it pre-committed, and discard
    /// output of the failed attempt that no checkpoint covers. Returns whether the sink is
    /// exactly-once; the default (at-least-once sinks, such as stdout) returns `false`.
    fn begin_transactions(&mut self, _restored: &[Vec<u8>]) -> Result<bool, ConnectorError> {
        Ok(false)
    }

    /// Pre-commits everything written since the last call, at checkpoint `checkpoint`'s
    /// barrier; returns the state that lets a restore commit it (or discard it).
    fn pre_commit(&mut self, _checkpoint: u64) -> Result<Vec<u8>, ConnectorError> {
        Ok(Vec::new())
    }

    /// Makes what was pre-committed up to checkpoint `checkpoint` visible. Must be
    /// idempotent: a restore may commit it again.
    fn commit(&mut self, _checkpoint: u64) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Creates the writers of a sink vertex, one per subtask.
pub trait SinkFactory: Send + Sync {
    /// The writer for `subtask` of `parallelism`, for values of `format`.
    fn create_sink(
        &self,
        subtask: usize,
        parallelism: usize,
        format: &ValueFormat,
    ) -> Result<Box<dyn Sink>, ConnectorError>;
    /// Where the output goes, for the run summary (a path, `stdout`).
    fn describe(&self) -> String;
}
