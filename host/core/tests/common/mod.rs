//! In-memory sources and sinks for the core's tests.
#![allow(dead_code)]

use sluice_core::connector::*;
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
