//! The Kafka sink: at-least-once (flushed at every checkpoint) or exactly-once (Kafka
//! transactions bound to checkpoints).
//!
//! # Exactly-once
//!
//! librdkafka cannot resume a transaction another producer opened (Flink's `KafkaSink`
//! does that by reflection into the Java client), and a new producer with the same
//! `transactional.id` aborts it. So a transaction that holds a checkpoint's records must
//! not be open across the checkpoint's completion, or a crash there would lose them.
//! Instead the sink writes ahead:
//!
//! 1. Records are appended to a local *staging* file of the sink subtask.
//! 2. At checkpoint `n`'s barrier (pre-commit) the staging file is synced and renamed
//!    `pending-<n>`; the checkpoint records which pending files exist.
//! 3. When checkpoint `n` completes, each pending file up to `n` is produced in one Kafka
//!    transaction of the subtask's transactional id `<prefix>-<subtask>`, which also
//!    commits offset `n` for the consumer group `<prefix>-<subtask>` on partition 0 of
//!    the topic (`sendOffsetsToTransaction`): a *commit marker* that becomes visible
//!    atomically with the records. Then the file is deleted.
//! 4. On recovery from checkpoint `n`, `initTransactions` aborts whatever transaction a
//!    crash left open, the marker tells which checkpoints were committed, and the pending
//!    files after the marker and up to `n` are committed again, in order; files the
//!    checkpoint does not cover (the failed attempt's) are deleted.
//!
//! A `read_committed` consumer thus sees every record exactly once, at the completion of
//! the checkpoint that covers it. A transaction is open only while a commit runs, so the
//! producer's `transaction.timeout.ms` (default 60 s here; at most the brokers'
//! `transaction.max.timeout.ms`, 15 minutes by default) needs to cover one commit, not a
//! checkpoint interval. At the end of a bounded input the sink commits what is left and
//! records the marker "finished", so that a restart from an earlier checkpoint (a crash
//! between the end and the job's completion) commits nothing twice: the replayed output
//! is dropped. A fresh start (no checkpoint restored) first commits marker 0, so that a
//! marker left by an earlier run of the same transactional id is never taken for this
//! run's.

use crate::config::{DEFAULT_LINGER_MS, Delivery, Partitioning, SinkOptions, kafka_err};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_core::batch::Batch;
use sluice_core::connector::{ConnectorError, Sink, SinkFactory};
use sluice_core::format::ValueFormat;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Timeout of transactional calls and flushes.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The commit marker of a sink subtask that committed everything at the end of its input.
const FINISHED: i64 = i64::MAX;

/// Creates [`KafkaSink`]s.
pub struct KafkaSinkFactory {
    options: SinkOptions,
    pending_dir: Option<PathBuf>,
    field: String,
}

impl KafkaSinkFactory {
    /// Checks `options` (the sink's section at `field`; `dir` is where a relative
    /// `pending_dir` resolves).
    pub fn new(options: SinkOptions, dir: &Path, field: &str) -> Result<Self, ConnectorError> {
        if options.topic.is_empty() {
            return Err(ConnectorError(format!("{field}.topic: empty")));
        }
        match (options.partitioning, options.partition) {
            (Partitioning::Fixed, None) => {
                return Err(ConnectorError(format!(
                    "{field}.partition: `partitioning: fixed` needs the partition"
                )));
            }
            (Partitioning::Fixed, Some(p)) if p < 0 => {
                return Err(ConnectorError(format!(
                    "{field}.partition: {p} is negative"
                )));
            }
            (p, Some(_)) if p != Partitioning::Fixed => {
                return Err(ConnectorError(format!(
                    "{field}.partition: only with `partitioning: fixed`"
                )));
            }
            _ => {}
        }
        let pending_dir = match options.delivery {
            Delivery::AtLeastOnce => None,
            Delivery::ExactlyOnce => {
                let Some(prefix) = options
                    .transactional_id
                    .as_deref()
                    .filter(|p| !p.is_empty())
                else {
                    return Err(ConnectorError(format!(
                        "{field}.transactional_id: exactly-once delivery needs a transactional id \
                         prefix, unique to this sink among the brokers' producers"
                    )));
                };
                Some(
                    dir.join(
                        options
                            .pending_dir
                            .clone()
                            .unwrap_or_else(|| PathBuf::from(".sluice-kafka").join(prefix)),
                    ),
                )
            }
        };
        Ok(KafkaSinkFactory {
            options,
            pending_dir,
            field: field.to_string(),
        })
    }
}

impl SinkFactory for KafkaSinkFactory {
    fn create_sink(
        &self,
        subtask: usize,
        _parallelism: usize,
        _format: &ValueFormat,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        let context = format!(
            "{} (kafka topic '{}' at {})",
            self.field, self.options.topic, self.options.client.brokers
        );
        Ok(Box::new(KafkaSink {
            options: self.options.clone(),
            subtask,
            context,
            producer: None,
            marker_group: None,
            partitions: 0,
            written: 0,
            mode: match &self.pending_dir {
                None => Mode::AtLeastOnce,
                Some(dir) => Mode::ExactlyOnce(WriteAhead {
                    dir: dir.join(subtask.to_string()),
                    staging: None,
                    pending: Vec::new(),
                    checkpointing: false,
                    finished: false,
                }),
            },
        }))
    }

    fn describe(&self) -> String {
        format!(
            "kafka://{}/{}",
            self.options.client.brokers, self.options.topic
        )
    }
}

/// Keeps the first delivery error of a producer.
#[derive(Default, Clone)]
struct Deliveries(Arc<Mutex<Option<String>>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut first = self.0.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

type Producer_ = BaseProducer<Deliveries>;

enum Mode {
    AtLeastOnce,
    ExactlyOnce(WriteAhead),
}

/// The exactly-once sink's local files.
struct WriteAhead {
    /// `<pending_dir>/<subtask>`.
    dir: PathBuf,
    staging: Option<BufWriter<File>>,
    /// Pre-committed checkpoints whose records are not committed yet, ascending.
    pending: Vec<u64>,
    /// The job checkpoints (else everything is committed at the end of the input).
    checkpointing: bool,
    /// The restored checkpoint precedes the end of the input, which this subtask had
    /// already committed entirely: its replayed records are dropped.
    finished: bool,
}

/// What a pre-commit leaves in the checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct PreCommitted {
    /// The sink subtask (its transactional id and files).
    subtask: usize,
    /// The checkpoints whose pending files exist, ascending.
    pending: Vec<u64>,
}

/// Writes one sink subtask's events to a Kafka topic.
pub struct KafkaSink {
    options: SinkOptions,
    subtask: usize,
    context: String,
    producer: Option<Producer_>,
    /// A consumer of the commit-marker group of the subtask in `.0`.
    marker_group: Option<(usize, BaseConsumer)>,
    /// Partitions of the topic (round-robin partitioning).
    partitions: i32,
    /// Records sent by this subtask (round-robin partitioning).
    written: u64,
    mode: Mode,
}

impl KafkaSink {
    fn err(&self, what: impl std::fmt::Display) -> ConnectorError {
        ConnectorError(format!("{}: {what}", self.context))
    }

    fn transactional_id(&self, subtask: usize) -> String {
        format!(
            "{}-{subtask}",
            self.options.transactional_id.as_deref().unwrap_or_default()
        )
    }

    /// A producer; transactional (with `initTransactions` done, which aborts what the
    /// id's previous producer left open) for `transactional_id`.
    fn new_producer(&self, transactional_id: Option<&str>) -> Result<Producer_, ConnectorError> {
        let mut config = self.options.client.client_config();
        config
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random");
        let props = &self.options.client.properties;
        if !props.contains_key("linger.ms") && !props.contains_key("queue.buffering.max.ms") {
            let linger = self.options.linger.map_or(DEFAULT_LINGER_MS, |d| d.0);
            config.set("linger.ms", linger.to_string());
        }
        if let Some(id) = transactional_id {
            let timeout = self
                .options
                .transaction_timeout
                .map_or(60_000, |d| d.0.max(1));
            config
                .set("transactional.id", id)
                .set("transaction.timeout.ms", timeout.to_string());
        }
        let producer: Producer_ = config
            .create_with_context(Deliveries::default())
            .map_err(|e| kafka_err(&self.context, e))?;
        if transactional_id.is_some() {
            producer
                .init_transactions(TIMEOUT)
                .map_err(|e| self.err(format!("initializing transactions: {e}")))?;
        }
        Ok(producer)
    }

    fn producer(&mut self) -> Result<&Producer_, ConnectorError> {
        if self.producer.is_none() {
            let id = matches!(self.mode, Mode::ExactlyOnce(_))
                .then(|| self.transactional_id(self.subtask));
            self.producer = Some(self.new_producer(id.as_deref())?);
        }
        Ok(self.producer.as_ref().expect("set above"))
    }

    /// The topic's partition count (for round-robin partitioning), read once.
    fn partition_count(&mut self) -> Result<i32, ConnectorError> {
        if self.partitions == 0 {
            let topic = self.options.topic.clone();
            let producer = self.producer()?;
            let md = producer
                .client()
                .fetch_metadata(Some(&topic), TIMEOUT)
                .map_err(|e| self.err(format!("reading the topic's metadata: {e}")))?;
            let n = md
                .topics()
                .first()
                .filter(|t| t.error().is_none())
                .map_or(0, |t| t.partitions().len() as i32);
            if n == 0 {
                return Err(self.err("the topic does not exist"));
            }
            self.partitions = n;
        }
        Ok(self.partitions)
    }

    fn delivery_error(&self, producer: &Producer_) -> Result<(), ConnectorError> {
        match producer
            .context()
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            Some(e) => Err(self.err(format!("a record was not delivered: {e}"))),
            None => Ok(()),
        }
    }

    /// Sends one record, waiting while librdkafka's queue is full.
    fn send(&mut self, time: i64, key: &[u8], value: &[u8]) -> Result<(), ConnectorError> {
        let partition = match self.options.partitioning {
            Partitioning::KeyHash => None,
            Partitioning::Fixed => self.options.partition,
            Partitioning::RoundRobin => {
                let n = self.partition_count()? as u64;
                Some(((self.written + self.subtask as u64) % n) as i32)
            }
        };
        self.written += 1;
        let topic = self.options.topic.clone();
        let producer = self.producer.as_ref().expect("created before sending");
        let mut record = BaseRecord::to(&topic).payload(value).timestamp(time);
        if !key.is_empty() {
            record = record.key(key);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(self.err(format!("sending a record: {e}"))),
            }
        }
    }

    fn flush(&self) -> Result<(), ConnectorError> {
        let Some(producer) = &self.producer else {
            return Ok(());
        };
        producer
            .flush(TIMEOUT)
            .map_err(|e| self.err(format!("flushing: {e}")))?;
        self.delivery_error(producer)
    }

    /// Produces the records of `file` in one transaction with commit marker `marker`.
    fn commit_file(&mut self, file: &Path, marker: i64) -> Result<(), ConnectorError> {
        self.producer()?;
        let producer = self.producer.as_ref().expect("created above");
        producer
            .begin_transaction()
            .map_err(|e| self.err(format!("beginning a transaction: {e}")))?;
        let mut reader = BufReader::new(
            File::open(file).map_err(|e| self.err(format!("{}: {e}", file.display())))?,
        );
        let (mut key, mut value) = (Vec::new(), Vec::new());
        while let Some(time) = read_record(&mut reader, &mut key, &mut value)
            .map_err(|e| self.err(format!("{}: {e}", file.display())))?
        {
            self.send(time, &key, &value)?;
        }
        self.commit_with_marker(marker)
    }

    /// Commits the open transaction together with commit marker `marker`.
    fn commit_with_marker(&mut self, marker: i64) -> Result<(), ConnectorError> {
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&self.options.topic, 0, Offset::Offset(marker))
            .map_err(|e| kafka_err(&self.context, e))?;
        let metadata = self
            .marker_group(self.subtask)?
            .group_metadata()
            .ok_or_else(|| self.err("no consumer group metadata for the commit marker"))?;
        let producer = self.producer.as_ref().expect("in a transaction");
        producer
            .send_offsets_to_transaction(&offsets, &metadata, TIMEOUT)
            .map_err(|e| self.err(format!("adding the commit marker to the transaction: {e}")))?;
        producer
            .commit_transaction(TIMEOUT)
            .map_err(|e| self.err(format!("committing a transaction: {e}")))?;
        self.delivery_error(producer)
    }

    /// A consumer of the commit-marker group of `subtask`'s transactional id (the group
    /// only stores the marker; nothing consumes with it), made once per subtask.
    fn marker_group(&mut self, subtask: usize) -> Result<&BaseConsumer, ConnectorError> {
        if self
            .marker_group
            .as_ref()
            .is_none_or(|(s, _)| *s != subtask)
        {
            let mut config = self.options.client.client_config();
            config.set("group.id", self.transactional_id(subtask));
            let consumer = config.create().map_err(|e| kafka_err(&self.context, e))?;
            self.marker_group = Some((subtask, consumer));
        }
        Ok(&self.marker_group.as_ref().expect("set above").1)
    }

    /// The commit marker of `subtask`'s transactional id: the last checkpoint whose
    /// records it committed (`None`: none).
    fn read_marker(&mut self, subtask: usize) -> Result<Option<i64>, ConnectorError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.options.topic, 0);
        let committed = self
            .marker_group(subtask)?
            .committed_offsets(tpl, TIMEOUT)
            .map_err(|e| self.err(format!("reading the commit marker: {e}")))?;
        Ok(
            match committed
                .find_partition(&self.options.topic, 0)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
    }

    fn write_ahead(&mut self) -> &mut WriteAhead {
        match &mut self.mode {
            Mode::ExactlyOnce(w) => w,
            Mode::AtLeastOnce => unreachable!("only exactly-once sinks write ahead"),
        }
    }

    /// Commits the pending files up to `checkpoint`, in order.
    fn commit_pending(&mut self, checkpoint: u64) -> Result<(), ConnectorError> {
        let due: Vec<u64> = self
            .write_ahead()
            .pending
            .iter()
            .copied()
            .filter(|&c| c <= checkpoint)
            .collect();
        for c in due {
            let file = pending_file(&self.write_ahead().dir, c);
            self.commit_file(&file, c as i64)?;
            fs::remove_file(&file).map_err(|e| self.err(format!("{}: {e}", file.display())))?;
            self.write_ahead().pending.retain(|&p| p != c);
        }
        Ok(())
    }

    /// Recovers the transactions of old subtask `state.subtask` from what the restored
    /// checkpoint recorded: commits the pending files after its commit marker, in order,
    /// and deletes every other file (the failed attempt's).
    fn recover(&mut self, state: &PreCommitted) -> Result<(), ConnectorError> {
        let dir = self
            .write_ahead()
            .dir
            .with_file_name(state.subtask.to_string());
        // A producer of the old id fences its zombies and aborts their open transaction.
        let id = self.transactional_id(state.subtask);
        let producer = self.new_producer(Some(&id))?;
        let marker = self.read_marker(state.subtask)?;
        let finished = marker == Some(FINISHED);
        let mut due = Vec::new();
        for &c in &state.pending {
            let file = pending_file(&dir, c);
            if !finished && marker.is_none_or(|m| (c as i64) > m) {
                if !file.is_file() {
                    return Err(self.err(format!(
                        "{}: the records of checkpoint {c}, not yet committed to Kafka, are \
                         missing",
                        file.display()
                    )));
                }
                due.push((c, file));
            }
        }
        if state.subtask == self.subtask {
            self.producer = Some(producer);
            self.write_ahead().finished = finished;
        } else {
            // Commit under the old id, with this subtask's files and marker group.
            let own = self.producer.replace(producer);
            let own_subtask = std::mem::replace(&mut self.subtask, state.subtask);
            let r = due
                .iter()
                .try_for_each(|(c, file)| self.commit_file(file, *c as i64));
            self.subtask = own_subtask;
            self.producer = own;
            r?;
            due.clear();
        }
        for (c, file) in due {
            self.commit_file(&file, c as i64)?;
        }
        clear_dir(&dir).map_err(|e| self.err(format!("{}: {e}", dir.display())))
    }
}

fn pending_file(dir: &Path, checkpoint: u64) -> PathBuf {
    dir.join(format!("pending-{checkpoint}"))
}

/// Removes every file of `dir` (and creates it if missing).
fn clear_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    for entry in fs::read_dir(dir)? {
        fs::remove_file(entry?.path())?;
    }
    Ok(())
}

/// Appends a record: time (i64 LE), key length (u32 LE), key, value length, value.
fn write_record(w: &mut impl Write, time: i64, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    w.write_all(&time.to_le_bytes())?;
    w.write_all(&(key.len() as u32).to_le_bytes())?;
    w.write_all(key)?;
    w.write_all(&(value.len() as u32).to_le_bytes())?;
    w.write_all(value)
}

/// Reads the next record into `key` and `value`; `None` at the end of the file.
fn read_record(
    r: &mut impl Read,
    key: &mut Vec<u8>,
    value: &mut Vec<u8>,
) -> std::io::Result<Option<i64>> {
    let mut t = [0u8; 8];
    match r.read_exact(&mut t) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    for buf in [key, value] {
        let mut n = [0u8; 4];
        r.read_exact(&mut n)?;
        buf.resize(u32::from_le_bytes(n) as usize, 0);
        r.read_exact(buf)?;
    }
    Ok(Some(i64::from_le_bytes(t)))
}

impl Sink for KafkaSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), ConnectorError> {
        if let Mode::ExactlyOnce(w) = &mut self.mode {
            if w.finished {
                return Ok(());
            }
            if w.staging.is_none() {
                fs::create_dir_all(&w.dir)
                    .map_err(|e| ConnectorError(format!("{}: {e}", w.dir.display())))?;
                let path = w.dir.join("staging");
                let f = File::create(&path)
                    .map_err(|e| ConnectorError(format!("{}: {e}", path.display())))?;
                w.staging = Some(BufWriter::with_capacity(1 << 20, f));
            }
            let staging = w.staging.as_mut().expect("opened above");
            for e in batch.iter() {
                write_record(staging, e.timestamp, e.key, e.value)
                    .map_err(|e| ConnectorError(format!("{}: staging: {e}", w.dir.display())))?;
            }
            return Ok(());
        }
        self.producer()?;
        for e in batch.iter() {
            self.send(e.timestamp, e.key, e.value)?;
        }
        let producer = self.producer.as_ref().expect("created above");
        producer.poll(Duration::ZERO);
        self.delivery_error(producer)
    }

    fn finish(&mut self) -> Result<(), ConnectorError> {
        if let Mode::AtLeastOnce = self.mode {
            return self.flush();
        }
        if self.write_ahead().finished {
            return Ok(());
        }
        // Everything pre-committed, then what is staged, then the marker "finished".
        self.commit_pending(u64::MAX)?;
        let staging = self.write_ahead().staging.take();
        let dir = self.write_ahead().dir.clone();
        let path = dir.join("staging");
        match staging {
            Some(mut w) => {
                w.flush()
                    .map_err(|e| self.err(format!("{}: {e}", path.display())))?;
                drop(w);
                self.commit_file(&path, FINISHED)?;
            }
            None => {
                self.producer()?;
                let producer = self.producer.as_ref().expect("created above");
                producer
                    .begin_transaction()
                    .map_err(|e| self.err(format!("beginning a transaction: {e}")))?;
                self.commit_with_marker(FINISHED)?;
            }
        }
        clear_dir(&dir).map_err(|e| self.err(format!("{}: {e}", dir.display())))
    }

    fn begin_transactions(&mut self, restored: &[Vec<u8>]) -> Result<bool, ConnectorError> {
        if let Mode::AtLeastOnce = self.mode {
            return Ok(false);
        }
        self.write_ahead().checkpointing = true;
        let states = restored
            .iter()
            .map(|b| serde_json::from_slice::<PreCommitted>(b))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(format!("the checkpointed transactions are corrupted: {e}")))?;
        // Each state lists exactly the pending files the restored checkpoint covers.
        let mut own = false;
        for s in &states {
            own |= s.subtask == self.subtask;
            self.recover(s)?;
        }
        if !own {
            // A fresh start (or a subtask the old run did not have): nothing of this
            // subtask's files is covered by a checkpoint, and a marker of an earlier run
            // of this id must not count for this one.
            let dir = self.write_ahead().dir.clone();
            clear_dir(&dir).map_err(|e| self.err(format!("{}: {e}", dir.display())))?;
            self.producer()?
                .begin_transaction()
                .map_err(|e| self.err(format!("beginning a transaction: {e}")))?;
            self.commit_with_marker(0)?;
        }
        Ok(true)
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Vec<u8>, ConnectorError> {
        if let Mode::AtLeastOnce = self.mode {
            self.flush()?;
            return Ok(Vec::new());
        }
        let subtask = self.subtask;
        let w = self.write_ahead();
        if let Some(staging) = w.staging.take() {
            let path = w.dir.join("staging");
            let file = staging
                .into_inner()
                .map_err(|e| ConnectorError(format!("{}: {e}", path.display())))?;
            file.sync_all()
                .map_err(|e| ConnectorError(format!("{}: {e}", path.display())))?;
            fs::rename(&path, pending_file(&w.dir, checkpoint))
                .map_err(|e| ConnectorError(format!("{}: {e}", path.display())))?;
            w.pending.push(checkpoint);
        }
        let state = PreCommitted {
            subtask,
            pending: w.pending.clone(),
        };
        Ok(serde_json::to_vec(&state).expect("serializes"))
    }

    fn commit(&mut self, checkpoint: u64) -> Result<(), ConnectorError> {
        match self.mode {
            Mode::AtLeastOnce => Ok(()),
            Mode::ExactlyOnce(_) => self.commit_pending(checkpoint),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_records_read_back_as_written() {
        let records: [(i64, &[u8], &[u8]); 3] = [
            (1, b"k", b"value"),
            (-5, b"", b""),
            (i64::MAX, b"key two", &[0, 255, 7]),
        ];
        let mut file = Vec::new();
        for (t, k, v) in records {
            write_record(&mut file, t, k, v).unwrap();
        }
        let mut r = std::io::Cursor::new(file);
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for (t, k, v) in records {
            assert_eq!(read_record(&mut r, &mut key, &mut value).unwrap(), Some(t));
            assert_eq!((key.as_slice(), value.as_slice()), (k, v));
        }
        assert_eq!(read_record(&mut r, &mut key, &mut value).unwrap(), None);
    }

    #[test]
    fn a_truncated_staged_record_is_an_error_not_the_end() {
        let mut file = Vec::new();
        write_record(&mut file, 1, b"key", b"value").unwrap();
        file.truncate(file.len() - 2);
        let (mut key, mut value) = (Vec::new(), Vec::new());
        assert!(read_record(&mut std::io::Cursor::new(file), &mut key, &mut value).is_err());
    }
}
