//! The Kafka source: partitions spread over subtasks, offsets in checkpoints, a split per
//! partition for per-partition watermarks, partition discovery, bounded reading.

use crate::config::{EventTimeSpec, Isolation, SourceOptions, StartSpec, kafka_err};
use rdkafka::consumer::DefaultConsumerContext;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _, Timestamp};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sluice_core::batch::Batch;
use sluice_core::connector::{ConnectorError, SourceFactory, SourcePoll, SourceReader};
use sluice_core::format::{FieldAccessor, ValueFormat};
use sluice_core::time::SplitId;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Partitions per topic a split id can tell apart (split = topic index × this + partition).
const PARTITIONS_PER_TOPIC: u32 = 1 << 16;
/// Timeout of metadata, offset and watermark requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the first discovery is retried while no broker answers.
const DISCOVERY_RETRY: Duration = Duration::from_millis(500);

/// Creates [`KafkaReader`]s.
pub struct KafkaSourceFactory {
    options: SourceOptions,
    topics: Vec<String>,
    format: ValueFormat,
    event_time: Option<FieldAccessor>,
    field: String,
}

impl KafkaSourceFactory {
    /// Checks `options` (the source's section, at `field` of the spec).
    pub fn new(options: SourceOptions, field: &str) -> Result<Self, ConnectorError> {
        let topics = options.topic_list(field)?;
        let format = match &options.value_format {
            Some(f) => f
                .to_format()
                .map_err(|e| ConnectorError(format!("{field}.value_format.{e}")))?,
            None => ValueFormat::Bytes,
        };
        let event_time = match &options.event_time {
            Some(EventTimeSpec::Field { field: name }) => Some(
                FieldAccessor::new(&format, name)
                    .map_err(|e| ConnectorError(format!("{field}.event_time.field: {e}")))?,
            ),
            _ => None,
        };
        if options.start == Some(StartSpec::Group) && options.client_group().is_none() {
            return Err(ConnectorError(format!(
                "{field}.start: `group` needs a `group_id`"
            )));
        }
        Ok(KafkaSourceFactory {
            options,
            topics,
            format,
            event_time,
            field: field.to_string(),
        })
    }
}

impl SourceOptions {
    fn client_group(&self) -> Option<&str> {
        self.group_id.as_deref()
    }
}

impl SourceFactory for KafkaSourceFactory {
    fn value_format(&self) -> ValueFormat {
        self.format.clone()
    }

    fn max_parallelism(&self) -> usize {
        usize::MAX
    }

    fn create_reader(
        &self,
        subtask: usize,
        parallelism: usize,
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        let mut config = self.options.client.client_config();
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "isolation.level",
                match self.options.isolation {
                    Isolation::ReadCommitted => "read_committed",
                    Isolation::ReadUncommitted => "read_uncommitted",
                },
            );
        // librdkafka wants a group id for a consumer even when partitions are assigned
        // by hand; without a configured group, nothing is ever committed to this one.
        let group = self
            .options
            .group_id
            .clone()
            .unwrap_or_else(|| format!("sluice-{}", self.topics.join("-")));
        config.set("group.id", &group);
        Ok(Box::new(KafkaReader {
            config,
            consumer: None,
            topics: self.topics.clone(),
            subtask,
            parallelism,
            start: self.options.start.unwrap_or(StartSpec::Earliest),
            bounded: self.options.bounded,
            commit_to_group: self.options.group_id.is_some(),
            event_time: self.event_time.clone(),
            discovery: self
                .options
                .discovery_interval
                .map_or(Duration::from_secs(10), |d| d.duration()),
            broker_timeout: self
                .options
                .broker_timeout
                .map_or(Duration::from_secs(60), |d| d.duration()),
            context: format!("{} (kafka {})", self.field, self.options.client.brokers),
            partitions: Vec::new(),
            restored: BTreeMap::new(),
            was_restored: false,
            next: 0,
            last_split: None,
            splits_changed: true,
            last_discovery: None,
            discovered: false,
            unreachable_since: None,
            last_error: None,
            positions_at: BTreeMap::new(),
        }))
    }
}

/// One assigned partition.
struct Partition {
    topic: String,
    partition: i32,
    split: SplitId,
    queue: Option<PartitionQueue<DefaultConsumerContext>>,
    /// The offset of the next record to read.
    next_offset: Option<i64>,
    /// Bounded: the offset to stop at (exclusive).
    stop: Option<i64>,
}

impl Partition {
    fn done(&self) -> bool {
        matches!((self.stop, self.next_offset), (Some(s), Some(n)) if n >= s)
            || self.stop == Some(0)
    }
}

/// Reads the partitions of one source subtask.
///
/// Partition `p` of topic `t` belongs to subtask `(start(t) + p) % parallelism`, where
/// `start(t)` is Flink's `((hashCode(t) * 31) & 0x7fffffff) % parallelism`
/// (`KafkaTopicPartitionAssigner`), so partitions of a topic are spread evenly and a
/// partition added later has an owner known to every subtask without talking.
pub struct KafkaReader {
    config: ClientConfig,
    consumer: Option<Arc<BaseConsumer>>,
    topics: Vec<String>,
    subtask: usize,
    parallelism: usize,
    start: StartSpec,
    bounded: bool,
    commit_to_group: bool,
    event_time: Option<FieldAccessor>,
    discovery: Duration,
    broker_timeout: Duration,
    context: String,
    partitions: Vec<Partition>,
    /// Offsets from checkpoints, by (topic, partition): the next record to read.
    restored: BTreeMap<(String, i32), i64>,
    was_restored: bool,
    /// The partition polled next (round robin).
    next: usize,
    last_split: Option<SplitId>,
    splits_changed: bool,
    last_discovery: Option<Instant>,
    /// The topics' metadata has been read once (until then the source has no
    /// partitions, which must not read as a bounded source's end).
    discovered: bool,
    /// Since when no broker answered.
    unreachable_since: Option<Instant>,
    last_error: Option<String>,
    /// The positions given for checkpoints not yet complete.
    positions_at: BTreeMap<u64, BTreeMap<(String, i32), i64>>,
}

/// Flink's start index of a topic's partitions among `parallelism` subtasks.
fn start_index(topic: &str, parallelism: usize) -> usize {
    let h = topic
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
    (h.wrapping_mul(31) & 0x7fff_ffff) as usize % parallelism
}

/// The subtask of `parallelism` that reads partition `partition` of `topic`.
pub fn owner(topic: &str, partition: i32, parallelism: usize) -> usize {
    (start_index(topic, parallelism) + partition as usize) % parallelism
}

/// A checkpointed position: the next offset of each partition the subtask read.
#[derive(serde::Serialize, serde::Deserialize)]
struct Position {
    offsets: Vec<(String, i32, i64)>,
}

impl KafkaReader {
    fn err(&self, what: impl std::fmt::Display) -> ConnectorError {
        ConnectorError(format!("{}: {what}", self.context))
    }

    /// Connects and assigns the partitions this subtask owns (on the first poll, so that
    /// an unreachable broker is a failure of the running job, which its restart
    /// strategy handles).
    fn connect(&mut self) -> Result<(), ConnectorError> {
        let consumer: BaseConsumer = self
            .config
            .create()
            .map_err(|e| kafka_err(&self.context, e))?;
        self.consumer = Some(Arc::new(consumer));
        self.discover(true)
    }

    fn consumer(&self) -> &Arc<BaseConsumer> {
        self.consumer.as_ref().expect("connected before use")
    }

    /// Looks for partitions this subtask owns and does not read yet, and assigns them.
    /// Unreachable brokers are retried until `broker_timeout`, then an error; at the
    /// first discovery (`initial`), a missing topic is an error.
    fn discover(&mut self, initial: bool) -> Result<(), ConnectorError> {
        self.last_discovery = Some(Instant::now());
        let mut found = Vec::new();
        let timeout = REQUEST_TIMEOUT.min(self.broker_timeout);
        for (ti, topic) in self.topics.iter().enumerate() {
            let md = match self.consumer().fetch_metadata(Some(topic), timeout) {
                Ok(md) => md,
                Err(e) => {
                    self.note_unreachable(format!("reading the metadata of topic '{topic}': {e}"));
                    return self.check_reachable();
                }
            };
            let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
                continue;
            };
            if let Some(e) = t.error() {
                let code = RDKafkaErrorCode::from(e);
                if initial && code == RDKafkaErrorCode::UnknownTopicOrPartition {
                    return Err(self.err(format!("topic '{topic}' does not exist")));
                }
                self.note_unreachable(format!("topic '{topic}': {code}"));
                return self.check_reachable();
            }
            for p in t.partitions() {
                let id = p.id();
                if owner(topic, id, self.parallelism) == self.subtask
                    && !self
                        .partitions
                        .iter()
                        .any(|q| q.topic == *topic && q.partition == id)
                {
                    found.push((ti, topic.clone(), id));
                }
            }
        }
        self.unreachable_since = None;
        self.discovered = true;
        if found.is_empty() {
            return Ok(());
        }
        let consumer = self.consumer().clone();
        let mut assignment = TopicPartitionList::new();
        for (ti, topic, p) in found {
            let key = (topic.clone(), p);
            let offset = match self.restored.get(&key) {
                Some(&o) => Offset::Offset(o),
                // Partitions that appear while the job runs, or that no checkpoint of a
                // restored job knew, are read from their start (as Flink does).
                None if !initial || self.was_restored => Offset::Beginning,
                None => self.start_offset(&topic, p)?,
            };
            // Symbolic offsets are resolved now, so that a checkpoint taken before the
            // partition's first record holds where it starts (a restore must not
            // re-read it from its beginning), and a bounded partition knows its end.
            let (low, high) = if self.bounded || !matches!(offset, Offset::Offset(_)) {
                consumer
                    .fetch_watermarks(&topic, p, REQUEST_TIMEOUT)
                    .map_err(|e| self.err(format!("reading the offsets of {topic}/{p}: {e}")))?
            } else {
                (0, 0)
            };
            let offset = match offset {
                Offset::Beginning => Offset::Offset(low),
                Offset::End => Offset::Offset(high),
                o => o,
            };
            let stop = self.bounded.then_some(if high <= low { 0 } else { high });
            assignment
                .add_partition_offset(&topic, p, offset)
                .map_err(|e| kafka_err(&self.context, e))?;
            self.partitions.push(Partition {
                split: ti as u32 * PARTITIONS_PER_TOPIC + p as u32,
                topic,
                partition: p,
                queue: None,
                next_offset: match offset {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                },
                stop,
            });
        }
        consumer
            .incremental_assign(&assignment)
            .map_err(|e| self.err(format!("assigning partitions: {e}")))?;
        // Assigning deactivates partition queues: split every partition's again.
        for p in &mut self.partitions {
            p.queue = consumer.split_partition_queue(&p.topic, p.partition);
        }
        self.splits_changed = true;
        Ok(())
    }

    fn start_offset(&self, topic: &str, p: i32) -> Result<Offset, ConnectorError> {
        Ok(match self.start {
            StartSpec::Earliest => Offset::Beginning,
            StartSpec::Latest => Offset::End,
            StartSpec::Group => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(topic, p);
                let committed = self
                    .consumer()
                    .committed_offsets(tpl, REQUEST_TIMEOUT)
                    .map_err(|e| self.err(format!("reading the group's offsets: {e}")))?;
                match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Offset::Offset(o),
                    _ => Offset::Beginning,
                }
            }
            StartSpec::Timestamp { timestamp } => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, p, Offset::Offset(timestamp))
                    .map_err(|e| kafka_err(&self.context, e))?;
                let found = self
                    .consumer()
                    .offsets_for_times(tpl, REQUEST_TIMEOUT)
                    .map_err(|e| self.err(format!("finding offsets for time {timestamp}: {e}")))?;
                match found.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Offset::Offset(o),
                    _ => Offset::End,
                }
            }
        })
    }

    fn note_unreachable(&mut self, error: String) {
        self.unreachable_since.get_or_insert_with(Instant::now);
        self.last_error = Some(error);
    }

    /// Fails when the brokers have been unreachable for longer than `broker_timeout`.
    fn check_reachable(&mut self) -> Result<(), ConnectorError> {
        match self.unreachable_since {
            Some(since) if since.elapsed() >= self.broker_timeout => Err(self.err(format!(
                "no broker reachable for {:?}: {}",
                self.broker_timeout,
                self.last_error.as_deref().unwrap_or("unknown error")
            ))),
            Some(_) => {
                tracing::warn!(
                    "{}: {} (retrying)",
                    self.context,
                    self.last_error.as_deref().unwrap_or("")
                );
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Serves the consumer's events: errors that are not about one message.
    fn serve_events(&mut self) -> Result<(), ConnectorError> {
        while let Some(r) = self.consumer().poll(Duration::ZERO) {
            match r {
                Ok(m) => {
                    return Err(self.err(format!(
                        "a record of {}/{} arrived outside its partition's queue",
                        m.topic(),
                        m.partition()
                    )));
                }
                Err(e) => self.on_error(e)?,
            }
        }
        Ok(())
    }

    fn on_error(&mut self, e: KafkaError) -> Result<(), ConnectorError> {
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown)
            | Some(RDKafkaErrorCode::BrokerTransportFailure)
            | Some(RDKafkaErrorCode::Resolve)
            | Some(RDKafkaErrorCode::OperationTimedOut) => {
                self.note_unreachable(e.to_string());
                self.check_reachable()
            }
            Some(RDKafkaErrorCode::PartitionEOF) => Ok(()),
            _ => Err(self.err(e)),
        }
    }

    /// Appends a record to `batch`.
    fn append(&self, m: &BorrowedMessage<'_>, batch: &mut Batch) -> Result<(), ConnectorError> {
        let value = m.payload().unwrap_or_default();
        let time = match &self.event_time {
            Some(f) => {
                let n = f.read(value).map_err(|e| {
                    self.err(format!(
                        "{}/{} offset {}: event time: {e}",
                        m.topic(),
                        m.partition(),
                        m.offset()
                    ))
                })?;
                match n {
                    sluice_packed::Number::Int(t) => t,
                    sluice_packed::Number::Float(t) => t as i64,
                }
            }
            None => match m.timestamp() {
                Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
                Timestamp::NotAvailable => {
                    return Err(self.err(format!(
                        "{}/{} offset {}: the record has no timestamp",
                        m.topic(),
                        m.partition(),
                        m.offset()
                    )));
                }
            },
        };
        let key = m.key().unwrap_or_default();
        match m.headers() {
            Some(h) => {
                batch.push_with_headers(time, key, value, h.iter().map(|h| (h.key, h.value)))
            }
            None => batch.push(time, key, value),
        }
        Ok(())
    }

    /// The offsets read so far.
    fn offsets(&self) -> BTreeMap<(String, i32), i64> {
        let mut out = self.restored.clone();
        for p in &self.partitions {
            if let Some(o) = p.next_offset {
                out.insert((p.topic.clone(), p.partition), o);
            }
        }
        out
    }
}

impl SourceReader for KafkaReader {
    fn poll_batch(
        &mut self,
        batch: &mut Batch,
        max_events: usize,
    ) -> Result<SourcePoll, ConnectorError> {
        if self.consumer.is_none() {
            self.connect()?;
        }
        self.serve_events()?;
        let every = if !self.discovered {
            Some(DISCOVERY_RETRY)
        } else {
            (!self.bounded && !self.discovery.is_zero()).then_some(self.discovery)
        };
        if let Some(every) = every
            && self.last_discovery.is_none_or(|t| t.elapsed() >= every)
        {
            self.discover(!self.discovered)?;
        }
        if !self.discovered {
            return Ok(SourcePoll::Pending);
        }
        let n = self.partitions.len();
        for step in 0..n {
            let i = (self.next + step) % n;
            let p = &self.partitions[i];
            if p.done() {
                continue;
            }
            let Some(queue) = &p.queue else { continue };
            let mut got = 0;
            let mut last = None;
            let mut error = None;
            while got < max_events {
                match queue.poll(Duration::ZERO) {
                    None => break,
                    Some(Ok(m)) => {
                        if let Err(e) = self.append(&m, batch) {
                            error = Some(e);
                            break;
                        }
                        last = Some(m.offset());
                        got += 1;
                        if p.stop.is_some_and(|s| m.offset() + 1 >= s) {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        error = Some(self.err(format!("{}/{}: {e}", p.topic, p.partition)));
                        break;
                    }
                }
            }
            if let Some(e) = error {
                return Err(e);
            }
            let p = &mut self.partitions[i];
            if let Some(o) = last {
                p.next_offset = Some(o + 1);
            }
            if got > 0 {
                self.last_split = Some(p.split);
                self.next = (i + 1) % n;
                self.unreachable_since = None;
                return Ok(SourcePoll::Data);
            }
            if p.stop.is_some() {
                // A bounded partition whose last records are transaction markers never
                // returns them: its position tells that it has read past them.
                let consumer = self.consumer.as_ref().expect("connected");
                if let Ok(pos) = consumer.position()
                    && let Some(Offset::Offset(o)) = pos
                        .find_partition(&p.topic, p.partition)
                        .map(|e| e.offset())
                {
                    let p = &mut self.partitions[i];
                    if p.next_offset.is_none_or(|n| o > n) {
                        p.next_offset = Some(o);
                    }
                }
            }
        }
        if self.bounded && self.partitions.iter().all(Partition::done) {
            return Ok(SourcePoll::End);
        }
        Ok(SourcePoll::Pending)
    }

    fn position(&mut self, checkpoint: u64) -> Option<Vec<u8>> {
        let offsets = self.offsets();
        if self.commit_to_group {
            self.positions_at.insert(checkpoint, offsets.clone());
        }
        let pos = Position {
            offsets: offsets
                .iter()
                .map(|((t, p), o)| (t.clone(), *p, *o))
                .collect(),
        };
        Some(serde_json::to_vec(&pos).expect("a position serializes"))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), ConnectorError> {
        let pos: Position = serde_json::from_slice(position)
            .map_err(|e| self.err(format!("the checkpointed position is corrupted: {e}")))?;
        self.was_restored = true;
        for (t, p, o) in pos.offsets {
            // Rescaled: every old subtask's position comes here; keep this subtask's.
            if self.topics.contains(&t) && owner(&t, p, self.parallelism) == self.subtask {
                self.restored.insert((t, p), o);
            }
        }
        Ok(())
    }

    fn batch_split(&self) -> Option<SplitId> {
        self.last_split
    }

    fn splits_changed(&mut self) -> Option<Vec<SplitId>> {
        if !self.splits_changed || self.consumer.is_none() {
            return None;
        }
        self.splits_changed = false;
        Some(
            self.partitions
                .iter()
                .filter(|p| !p.done())
                .map(|p| p.split)
                .collect(),
        )
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> Result<(), ConnectorError> {
        let Some(offsets) = self.positions_at.remove(&checkpoint) else {
            return Ok(());
        };
        self.positions_at.retain(|&c, _| c > checkpoint);
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in offsets {
            tpl.add_partition_offset(&t, p, Offset::Offset(o))
                .map_err(|e| kafka_err(&self.context, e))?;
        }
        self.consumer()
            .commit(&tpl, rdkafka::consumer::CommitMode::Async)
            .map_err(|e| self.err(format!("committing offsets to the group: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_assigned_as_flinks_kafka_topic_partition_assigner_does() {
        // Start indexes computed with Java's String.hashCode by hand (in Python):
        // ((hashCode * 31) & 0x7fffffff) % parallelism.
        assert_eq!(start_index("test", 4), 2);
        assert_eq!(start_index("flights", 3), 2);
        assert_eq!(start_index("events-ü", 5), 4);
        // Partition p goes to (start + p) % parallelism: consecutive subtasks.
        let owners: Vec<usize> = (0..6).map(|p| owner("test", p, 4)).collect();
        assert_eq!(owners, [2, 3, 0, 1, 2, 3]);
    }
}
