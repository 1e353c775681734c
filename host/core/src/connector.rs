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
    /// Flushes and closes at the end of the input.
    fn finish(&mut self) -> Result<(), ConnectorError>;
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
