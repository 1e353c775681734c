//! Sluice's Kafka connectors, over librdkafka (`rdkafka`, bundled).
//!
//! **Source** (`connector: kafka`): reads one or more topics; the partitions are spread
//! over the source's subtasks as Flink's `KafkaSource` spreads them, and each partition
//! is a *split* with its own watermark generator (per-partition watermarks, combined by
//! minimum, with idleness per partition: [`sluice_core::time::SplitWatermarks`]). Offsets
//! are kept in Sluice's checkpoints, which are the truth; with a `group_id` they are also
//! committed to the group after each checkpoint, for monitoring. Options:
//! * `brokers` (required): `host:port[,…]`; `properties`: further librdkafka settings.
//! * `topic: <name>` or `topics: [<name>, …]`.
//! * `start`: `earliest` (default), `latest`, `group` (the group's committed offsets,
//!   earliest where none; needs `group_id`) or `{timestamp: <ms>}`: where a partition
//!   starts when no checkpoint has its offset. Partitions added while the job runs, and
//!   partitions a restored checkpoint did not know, start at their earliest offset.
//! * `bounded: true`: stop at the offsets that are the latest when the job starts, so the
//!   job ends (and the watermark reaches +∞).
//! * `event_time`: `record` (default: the record's timestamp) or `{field: <name>}`, a
//!   numeric field of the value (ms).
//! * `value_format`: as an operator's `output` (`{format: packed, fields: […]}`, `json`,
//!   `text`, `bytes`; default `bytes`): what the values are. The key and the value pass
//!   through as bytes; the record's headers go with the event (the batch's headers
//!   column), and operators read them with `event.headers()` (the `event-headers`
//!   import of `wit/operator.wit`).
//! * `discovery_interval`: how often new partitions are looked for (default `10s`; `0`:
//!   never). `broker_timeout`: how long no broker may answer before the source fails
//!   (default `60s`; then the job's restart strategy applies).
//! * `isolation`: `read_committed` (default) or `read_uncommitted`.
//!
//! **Sink** (`connector: kafka`): each event becomes a record with the event's key (none
//! if empty), value (its bytes as they are: a packed value stays packed) and timestamp
//! (Kafka has no record time 0: librdkafka reads a timestamp of 0 as "now", so an event
//! at time 0 gets the producer's clock). The topic must exist (`sluice kafka
//! create-topic`). Records are written without headers (an operator's output events
//! carry none).
//! * `brokers`, `properties`, `topic` (required).
//! * `delivery`: `at-least-once` (default) or `exactly-once` (transactions bound to
//!   checkpoints; see [`sink`]), which needs `transactional_id` (a prefix) and keeps
//!   records until their checkpoint in `pending_dir` (default
//!   `.sluice-kafka/<transactional_id>` next to the spec).
//! * `partitioning`: `key-hash` (default; murmur2 as Kafka's Java clients),
//!   `fixed` with `partition: <n>`, or `round-robin`.
//! * `transaction_timeout`: the producer's `transaction.timeout.ms` (default `60s`).
//! * `linger`: how long the producer gathers records before a request (`linger.ms`,
//!   default `5ms`): at-least-once output is visible about that much sooner with less,
//!   and the brokers get more, smaller requests.

#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod sink;
pub mod source;

use sluice_core::connector::{ConnectorError, SinkFactory, SourceFactory};
use std::path::Path;
use std::sync::Arc;

/// The connector name in job specs.
pub const CONNECTOR: &str = "kafka";

/// The factory of a Kafka source from its spec section `options` at `field`.
pub fn source_factory(
    options: &serde_json::Value,
    field: &str,
) -> Result<Arc<dyn SourceFactory>, ConnectorError> {
    let o = sluice_core::spec::from_value(options, field).map_err(ConnectorError)?;
    Ok(Arc::new(source::KafkaSourceFactory::new(o, field)?))
}

/// The factory of a Kafka sink from its spec section `options` at `field`; a relative
/// `pending_dir` resolves against `dir`.
pub fn sink_factory(
    options: &serde_json::Value,
    dir: &Path,
    field: &str,
) -> Result<Arc<dyn SinkFactory>, ConnectorError> {
    let o = sluice_core::spec::from_value(options, field).map_err(ConnectorError)?;
    Ok(Arc::new(sink::KafkaSinkFactory::new(o, dir, field)?))
}
