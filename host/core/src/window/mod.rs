//! Event-time windows: assigners (tumbling, sliding, session), built-in aggregates, and
//! the keyed window operator with Flink's event-time trigger, allowed lateness and late
//! side output.

mod aggregate;
mod assigner;
mod operator;

pub use aggregate::{Accumulator, AggregateFn, AggregateSpec, Aggregates};
pub use assigner::{TimeWindow, WindowAssigner, merge_session_window, window_start};
pub use operator::{LATE_OUTPUT, WindowConfig, WindowCounters, WindowOperator};
