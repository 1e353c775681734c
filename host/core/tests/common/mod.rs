//! In-memory sources and sinks for the core's tests.
#![allow(dead_code)]

use sluice_core::connector::*;
use sluice_core::graph::*;
use sluice_core::time::WatermarkStrategy;
use sluice_core::window::{AggregateFn, AggregateSpec, WindowAssigner};
use sluice_core::*;
use std::sync::{Arc, Mutex};

/// Events as `(timestamp, key, value)`.
pub type Events = Vec<(i64, Vec<u8>, Vec<u8>)>;
pub type Rows = Arc<Mutex<Vec<(i64, Vec<u8>, Vec<u8>)>>>;

pub struct VecSource {
    pub events: Arc<Events>,
}
pub struct VecReader {
    pub events: Arc<Events>,
    pub pos: usize,
}
impl SourceFactory for VecSource {
    fn value_format(&self) -> ValueFormat {
        ValueFormat::Json
    }
    fn max_parallelism(&self) -> usize {
        1
    }
    fn create_reader(&self, _: usize, _: usize) -> Result<Box<dyn SourceReader>, ConnectorError> {
        Ok(Box::new(VecReader {
            events: self.events.clone(),
            pos: 0,
        }))
    }
}
impl SourceReader for VecReader {
    fn poll_batch(&mut self, batch: &mut Batch, max: usize) -> Result<SourcePoll, ConnectorError> {
        if self.pos == self.events.len() {
            return Ok(SourcePoll::End);
        }
        let end = (self.pos + max).min(self.events.len());
        for (t, k, v) in &self.events[self.pos..end] {
            batch.push(*t, k, v);
        }
        self.pos = end;
        Ok(SourcePoll::Data)
    }
}

pub struct CollectSink(pub Rows);
struct CollectWriter(Rows);
impl SinkFactory for CollectSink {
    fn create_sink(
        &self,
        _: usize,
        _: usize,
        _: &ValueFormat,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        Ok(Box::new(CollectWriter(self.0.clone())))
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}
impl Sink for CollectWriter {
    fn write_batch(&mut self, b: &Batch) -> Result<(), ConnectorError> {
        let mut rows = self.0.lock().unwrap();
        for e in b.iter() {
            rows.push((e.timestamp, e.key.to_vec(), e.value.to_vec()));
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// An edge from `vertex` (its main output, or side output `side`).
pub fn edge(vertex: usize, side: Option<&str>, partitioning: Partitioning) -> Input {
    Input {
        vertex,
        side_output: side.map(String::from),
        partitioning,
    }
}

/// A source vertex (parallelism 1) over `factory`.
pub fn source(
    id: &str,
    factory: Arc<dyn SourceFactory>,
    max_out_of_orderness_ms: i64,
    idleness: Option<std::time::Duration>,
) -> Vertex {
    Vertex {
        id: id.into(),
        parallelism: 1,
        kind: VertexKind::Source {
            factory,
            max_events_per_second: None,
            watermarks: WatermarkStrategy {
                max_out_of_orderness_ms,
                idleness,
            },
        },
        inputs: vec![],
    }
}

/// A source vertex over events in memory.
pub fn memory_source(
    id: &str,
    events: &[(i64, Vec<u8>, Vec<u8>)],
    max_out_of_orderness_ms: i64,
) -> Vertex {
    source(
        id,
        Arc::new(VecSource {
            events: Arc::new(events.to_vec()),
        }),
        max_out_of_orderness_ms,
        None,
    )
}

/// An aggregate `name = function(field)`.
pub fn agg(name: &str, function: AggregateFn, field: Option<&str>) -> AggregateSpec {
    AggregateSpec {
        name: name.into(),
        function,
        field: field.map(String::from),
    }
}

/// A tumbling window vertex over keyed inputs from `inputs`.
pub fn tumbling(
    id: &str,
    parallelism: usize,
    size: i64,
    allowed_lateness: i64,
    aggregates: Vec<AggregateSpec>,
    inputs: &[usize],
) -> Vertex {
    Vertex {
        id: id.into(),
        parallelism,
        kind: VertexKind::Window {
            assigner: WindowAssigner::Tumbling { size, offset: 0 },
            allowed_lateness,
            aggregates,
        },
        inputs: inputs
            .iter()
            .map(|&v| edge(v, None, Partitioning::KeyBy))
            .collect(),
    }
}

/// A sink vertex (parallelism 1).
pub fn sink(id: &str, factory: Arc<dyn SinkFactory>, input: Input) -> Vertex {
    Vertex {
        id: id.into(),
        parallelism: 1,
        kind: VertexKind::Sink { factory },
        inputs: vec![input],
    }
}

pub fn job(name: &str, config: ExecutionConfig, vertices: Vec<Vertex>) -> JobGraph {
    JobGraph {
        name: name.into(),
        config,
        vertices,
        durability: Default::default(),
        swaps: Default::default(),
    }
}

/// A source over events in memory that sleeps `pause` after each batch, so that a
/// job lasts long enough for checkpoints and failures to happen mid-stream.
pub struct SlowSource {
    pub events: Arc<Events>,
    pub pause: std::time::Duration,
}
struct SlowReader {
    inner: VecReader,
    pause: std::time::Duration,
}
impl SourceFactory for SlowSource {
    fn value_format(&self) -> ValueFormat {
        ValueFormat::Json
    }
    fn max_parallelism(&self) -> usize {
        1
    }
    fn create_reader(&self, _: usize, _: usize) -> Result<Box<dyn SourceReader>, ConnectorError> {
        Ok(Box::new(SlowReader {
            inner: VecReader {
                events: self.events.clone(),
                pos: 0,
            },
            pause: self.pause,
        }))
    }
}
impl SourceReader for SlowReader {
    fn poll_batch(&mut self, batch: &mut Batch, max: usize) -> Result<SourcePoll, ConnectorError> {
        let r = self.inner.poll_batch(batch, max);
        std::thread::sleep(self.pause);
        r
    }
}

/// Rows pre-committed per checkpoint.
type Pending = Vec<(u64, Vec<(i64, Vec<u8>, Vec<u8>)>)>;

/// Output of a [`TxSink`]: committed rows, and which `(subtask, checkpoint)`
/// transactions were committed (so a commit repeated by a restore is a no-op).
#[derive(Default)]
pub struct TxLog {
    pub committed: Vec<(i64, Vec<u8>, Vec<u8>)>,
    pub done: std::collections::HashSet<(usize, u64)>,
}

/// An exactly-once sink into memory: rows become visible in [`TxLog::committed`] only
/// when the checkpoint that covers them completes (or at the end of the input).
pub struct TxSink(pub Arc<Mutex<TxLog>>);
struct TxWriter {
    log: Arc<Mutex<TxLog>>,
    subtask: usize,
    open: Vec<(i64, Vec<u8>, Vec<u8>)>,
    /// Pre-committed, by checkpoint.
    pending: Pending,
}
impl SinkFactory for TxSink {
    fn create_sink(
        &self,
        subtask: usize,
        _: usize,
        _: &ValueFormat,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        Ok(Box::new(TxWriter {
            log: self.0.clone(),
            subtask,
            open: Vec::new(),
            pending: Vec::new(),
        }))
    }
    fn describe(&self) -> String {
        "memory (transactional)".into()
    }
}
impl TxWriter {
    fn commit_upto(&mut self, id: u64) {
        let mut log = self.log.lock().unwrap();
        for (cid, rows) in self.pending.iter().filter(|(c, _)| *c <= id) {
            if log.done.insert((self.subtask, *cid)) {
                log.committed.extend(rows.iter().cloned());
            }
        }
        self.pending.retain(|(c, _)| *c > id);
    }
}
impl Sink for TxWriter {
    fn write_batch(&mut self, b: &Batch) -> Result<(), ConnectorError> {
        for e in b.iter() {
            self.open
                .push((e.timestamp, e.key.to_vec(), e.value.to_vec()));
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<(), ConnectorError> {
        self.pending
            .push((u64::MAX, std::mem::take(&mut self.open)));
        self.commit_upto(u64::MAX);
        Ok(())
    }
    fn begin_transactions(&mut self, restored: &[Vec<u8>]) -> Result<bool, ConnectorError> {
        for state in restored {
            let pending: Pending =
                serde_json::from_slice(state).map_err(|e| ConnectorError(e.to_string()))?;
            self.pending = pending;
            self.commit_upto(u64::MAX - 1);
        }
        Ok(true)
    }
    fn pre_commit(&mut self, checkpoint: u64) -> Result<Vec<u8>, ConnectorError> {
        self.pending
            .push((checkpoint, std::mem::take(&mut self.open)));
        Ok(serde_json::to_vec(&self.pending).unwrap())
    }
    fn commit(&mut self, checkpoint: u64) -> Result<(), ConnectorError> {
        self.commit_upto(checkpoint);
        Ok(())
    }
}
