//! Sluice's engine core: the data model, job graph, time and watermarks, windows,
//! state, and the task runtime with its shuffle. It knows nothing of wasmtime, Kafka
//! or HTTP: those plug in through the [`operator::Operator`] and
//! [`connector::SourceFactory`] / [`connector::SinkFactory`] traits.

#![warn(missing_docs)]

pub mod batch;
pub mod checkpoint;
pub mod connector;
pub mod format;
pub mod operator;

pub use batch::{Batch, EventRef, WatermarkMark};
pub use connector::{ConnectorError, Sink, SinkFactory, SourceFactory, SourcePoll, SourceReader};
pub use format::{FieldAccessor, PackedField, PackedSchema, ValueFormat};
pub use operator::{Collector, Operator, OperatorContext, OperatorError};
pub mod graph;
pub mod keygroup;
pub mod runtime;
pub mod spec;
pub mod state;
pub mod time;
pub mod window;
