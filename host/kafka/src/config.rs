//! The Kafka connectors' options in a job spec, and the librdkafka client settings built
//! from them.

use rdkafka::ClientConfig;
use serde::Deserialize;
use sluice_core::connector::ConnectorError;
use sluice_core::spec::{DurationMs, ValueFormatSpec};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Options both connectors take.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientOptions {
    /// `bootstrap.servers`: `host:port[,host:port…]`.
    pub brokers: String,
    /// Further librdkafka properties, passed as they are (`security.protocol`, say).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl ClientOptions {
    /// A librdkafka configuration with the brokers and the properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// Where a source starts reading a partition that no checkpoint has a position for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum StartSpec {
    /// The partition's first record.
    Earliest,
    /// Records produced after the job started.
    Latest,
    /// The consumer group's committed offset (earliest where it has none).
    Group,
    /// The first record whose timestamp is at or after `timestamp` ms.
    #[serde(untagged)]
    Timestamp {
        /// Ms since the epoch.
        timestamp: i64,
    },
}

/// Where a source's event times come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum EventTimeSpec {
    /// `record`: the Kafka record's timestamp.
    Record(RecordTime),
    /// `{field: <name>}`: a numeric field of the value (ms since the epoch).
    Field {
        /// The field (a packed field or a top-level JSON member).
        field: String,
    },
}

/// The literal `record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordTime {
    /// The record's timestamp.
    Record,
}

/// `isolation` of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Only committed transactional records (and every non-transactional one).
    #[default]
    ReadCommitted,
    /// Every record, aborted transactions' too.
    ReadUncommitted,
}

/// A Kafka source's options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceOptions {
    /// Brokers and properties.
    #[serde(flatten)]
    pub client: ClientOptions,
    /// One topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// Several topics.
    #[serde(default)]
    pub topics: Vec<String>,
    /// The consumer group: `start: group` reads its offsets, and offsets are committed to
    /// it after each checkpoint (for monitoring: Sluice's checkpoints are the truth).
    #[serde(default)]
    pub group_id: Option<String>,
    /// Default: `earliest`.
    #[serde(default)]
    pub start: Option<StartSpec>,
    /// Stop at the offsets that are the latest when the job starts (a bounded input).
    #[serde(default)]
    pub bounded: bool,
    /// Default: `record`.
    #[serde(default)]
    pub event_time: Option<EventTimeSpec>,
    /// The values' format; default `{format: bytes}`.
    #[serde(default)]
    pub value_format: Option<ValueFormatSpec>,
    /// How often partitions added to the topics are looked for (default 10 s; `0`: never).
    #[serde(default)]
    pub discovery_interval: Option<DurationMs>,
    /// How long the brokers may be unreachable before the source fails (default 60 s).
    #[serde(default)]
    pub broker_timeout: Option<DurationMs>,
    /// Default: `read_committed`.
    #[serde(default)]
    pub isolation: Isolation,
}

impl SourceOptions {
    /// The topics, checked.
    pub fn topic_list(&self, field: &str) -> Result<Vec<String>, ConnectorError> {
        let mut topics = self.topics.clone();
        topics.extend(self.topic.clone());
        if topics.is_empty() {
            return Err(ConnectorError(format!(
                "{field}: name the topic to read (`topic: <name>` or `topics: [<name>, …]`)"
            )));
        }
        if let Some(t) = topics.iter().find(|t| t.is_empty()) {
            return Err(ConnectorError(format!(
                "{field}.topics: an empty topic name ({t:?})"
            )));
        }
        Ok(topics)
    }
}

/// A sink's delivery guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Every event at least once: written as it comes, flushed at each checkpoint.
    #[default]
    AtLeastOnce,
    /// Every event exactly once for `read_committed` consumers: Kafka transactions
    /// bound to checkpoints.
    ExactlyOnce,
}

/// How a sink picks a record's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Partitioning {
    /// murmur2 of the key, as Kafka's Java clients (an empty key: any partition).
    #[default]
    KeyHash,
    /// Partition `partition`.
    Fixed,
    /// Record `i` of a subtask to partition `(i + subtask) % partitions`.
    RoundRobin,
}

/// A Kafka sink's options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkOptions {
    /// Brokers and properties.
    #[serde(flatten)]
    pub client: ClientOptions,
    /// The topic written.
    pub topic: String,
    /// Default: `at-least-once`.
    #[serde(default)]
    pub delivery: Delivery,
    /// Exactly-once: the prefix of the sink subtasks' transactional ids
    /// (`<prefix>-<subtask>`), unique to this sink among everything writing to the
    /// brokers. Required for exactly-once.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// Default: `key-hash`.
    #[serde(default)]
    pub partitioning: Partitioning,
    /// With `partitioning: fixed`.
    #[serde(default)]
    pub partition: Option<i32>,
    /// Exactly-once: where records wait for their checkpoint (default
    /// `.sluice-kafka/<transactional_id>` under the spec's directory).
    #[serde(default)]
    pub pending_dir: Option<PathBuf>,
    /// Exactly-once: the producer's `transaction.timeout.ms` (default 60 s): must not
    /// exceed the brokers' `transaction.max.timeout.ms`.
    #[serde(default)]
    pub transaction_timeout: Option<DurationMs>,
    /// How long the producer waits for more records before it sends a request
    /// (`linger.ms`; default 5 ms, librdkafka's and Kafka 4's Java clients'). At-least-once
    /// output is visible about this much sooner with less; fewer, larger requests cost
    /// the brokers less with more. A `linger.ms` in `properties` wins.
    #[serde(default)]
    pub linger: Option<DurationMs>,
}

/// The sink's default `linger`, ms.
pub const DEFAULT_LINGER_MS: i64 = 5;

/// Renders a librdkafka error with what was being done.
pub fn kafka_err(what: impl std::fmt::Display, e: rdkafka::error::KafkaError) -> ConnectorError {
    ConnectorError(format!("{what}: {e}"))
}

/// The spec form (`{format: packed, fields: [{name, type}, …]}`, `{format: json}`, …) of
/// `format`: what a Kafka source's `value_format` says to read values another job or
/// `sluice kafka produce` wrote in that format.
pub fn value_format_spec(format: &sluice_core::format::ValueFormat) -> serde_json::Value {
    use sluice_core::format::ValueFormat;
    match format {
        ValueFormat::Packed(schema) => serde_json::json!({
            "format": "packed",
            "fields": schema
                .fields
                .iter()
                .map(|f| serde_json::json!({"name": f.name, "type": f.ty.name()}))
                .collect::<Vec<_>>(),
        }),
        ValueFormat::Json => serde_json::json!({"format": "json"}),
        ValueFormat::Text => serde_json::json!({"format": "text"}),
        ValueFormat::Bytes => serde_json::json!({"format": "bytes"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::format::{PackedField, PackedSchema, ValueFormat};
    use sluice_packed::FieldType;

    #[test]
    fn a_value_format_spec_reads_back_as_the_format() {
        let packed = ValueFormat::Packed(PackedSchema {
            fields: [
                ("date", FieldType::I64),
                ("origin", FieldType::Str),
                ("ok", FieldType::Bool),
            ]
            .into_iter()
            .map(|(name, ty)| PackedField {
                name: name.into(),
                ty,
            })
            .collect(),
        });
        for f in [
            packed,
            ValueFormat::Json,
            ValueFormat::Text,
            ValueFormat::Bytes,
        ] {
            let spec: ValueFormatSpec = serde_json::from_value(value_format_spec(&f)).unwrap();
            assert_eq!(spec.to_format().unwrap(), f);
        }
    }

    #[test]
    fn sink_and_source_options_name_what_is_wrong() {
        let e = serde_json::from_value::<SinkOptions>(serde_json::json!({
            "brokers": "b:9092", "topic": "t", "delivery": "twice"
        }))
        .unwrap_err()
        .to_string();
        assert!(e.contains("twice") && e.contains("exactly-once"), "{e}");
        let o: SourceOptions =
            serde_json::from_value(serde_json::json!({"brokers": "b:9092"})).unwrap();
        let e = o.topic_list("sources[0]").unwrap_err().0;
        assert!(e.starts_with("sources[0]: name the topic"), "{e}");
    }
}
