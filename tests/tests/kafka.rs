//! The Kafka source and sink against Apache Kafka (one broker for the test process,
//! `sluice_tests::kafka`): the source's partition assignment, bounded reading, restore
//! from checkpointed offsets, start positions, event time from a field, record headers,
//! and a partition added with `CreatePartitions` while it runs; the sink's key-hash and
//! fixed partitioning; the exactly-once sink across crashes at each point of its
//! two-phase commit, and aborted transactions hidden from `read_committed` readers.
//! Expected records are computed independently (the records the test wrote), and read
//! back with a plain librdkafka consumer.

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sluice_core::batch::Batch;
use sluice_core::connector::{Sink, SourcePoll};
use sluice_core::format::ValueFormat;
use sluice_tests::kafka::{self, Broker};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Records `(value, key, time)` `from..to`: value `v<i>`, key `k<i % 7>`, time `(i + 1) * 1000` (Kafka has no record time 0: librdkafka reads it as "now").
fn records(from: u32, to: u32) -> Vec<(String, String, i64)> {
    (from..to)
        .map(|i| {
            (
                format!("v{i}"),
                format!("k{}", i % 7),
                (i as i64 + 1) * 1000,
            )
        })
        .collect()
}

fn batch(records: &[(String, String, i64)]) -> Batch {
    let mut b = Batch::with_capacity(records.len(), 64);
    for (v, k, t) in records {
        b.push(*t, k.as_bytes(), v.as_bytes());
    }
    b
}

/// Every record of `topic` a `read_committed` consumer sees, as `(value, key, time)`,
/// sorted.
fn read_committed(brokers: &str, topic: &str) -> Vec<(String, String, i64)> {
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    let mut out: Vec<_> = kafka::read_committed(brokers, topic)
        .into_iter()
        .map(|r| (text(r.value), text(r.key), r.timestamp))
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<(String, String, i64)>) -> Vec<(String, String, i64)> {
    v.sort();
    v
}

fn exactly_once_sink(broker: &Broker, topic: &str, dir: &std::path::Path) -> Box<dyn Sink> {
    let factory = sluice_kafka::sink_factory(
        &serde_json::json!({
            "brokers": broker.bootstrap(),
            "topic": topic,
            "delivery": "exactly-once",
            "transactional_id": format!("{topic}-tx"),
            "pending_dir": dir,
        }),
        dir,
        "sinks[0]",
    )
    .unwrap();
    factory.create_sink(0, 1, &ValueFormat::Bytes).unwrap()
}

#[test]
fn a_crash_after_a_checkpoint_completes_and_before_its_commit_loses_nothing() {
    let broker = Broker::shared();
    let tmp = tempfile::tempdir().unwrap();
    let out = &broker.unique("out");
    broker.create_topic(out, 2);
    let mut a = exactly_once_sink(broker, out, tmp.path());
    assert!(a.begin_transactions(&[]).unwrap());
    a.write_batch(&batch(&records(0, 100))).unwrap();
    let _s1 = a.pre_commit(1).unwrap();
    a.write_batch(&batch(&records(100, 200))).unwrap();
    let s2 = a.pre_commit(2).unwrap();
    a.commit(1).unwrap();
    // Written after checkpoint 2: no checkpoint covers it.
    a.write_batch(&batch(&records(200, 300))).unwrap();
    // Checkpoint 2 completes, and the process dies before the sink commits it.
    drop(a);
    assert_eq!(
        read_committed(&broker.bootstrap(), out),
        sorted(records(0, 100))
    );

    let mut b = exactly_once_sink(broker, out, tmp.path());
    assert!(b.begin_transactions(std::slice::from_ref(&s2)).unwrap());
    // The replay after checkpoint 2 writes its records again.
    b.write_batch(&batch(&records(200, 300))).unwrap();
    b.pre_commit(3).unwrap();
    b.commit(3).unwrap();
    b.write_batch(&batch(&records(300, 350))).unwrap();
    b.finish().unwrap();
    assert_eq!(
        read_committed(&broker.bootstrap(), out),
        sorted(records(0, 350))
    );

    // A crash between the end of the input and the job's completion: the restart from
    // checkpoint 2 commits nothing twice.
    let mut c = exactly_once_sink(broker, out, tmp.path());
    assert!(c.begin_transactions(&[s2]).unwrap());
    c.write_batch(&batch(&records(200, 350))).unwrap();
    c.pre_commit(3).unwrap();
    c.commit(3).unwrap();
    c.finish().unwrap();
    assert_eq!(
        read_committed(&broker.bootstrap(), out),
        sorted(records(0, 350))
    );
}

#[test]
fn a_crash_before_a_checkpoint_completes_discards_its_records_and_aborted_ones_stay_hidden() {
    let broker = Broker::shared();
    let tmp = tempfile::tempdir().unwrap();
    let out = &broker.unique("out");
    broker.create_topic(out, 3);
    let mut a = exactly_once_sink(broker, out, tmp.path());
    a.begin_transactions(&[]).unwrap();
    a.write_batch(&batch(&records(0, 100))).unwrap();
    let s1 = a.pre_commit(1).unwrap();
    a.commit(1).unwrap();
    a.write_batch(&batch(&records(100, 200))).unwrap();
    a.pre_commit(2).unwrap();
    // Checkpoint 2 never completes.
    drop(a);

    // Another producer's aborted transaction on the same topic.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("transactional.id", "someone-else")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    producer
        .send(BaseRecord::to(out).key("k").payload("aborted").timestamp(1))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    producer.abort_transaction(Duration::from_secs(30)).unwrap();

    let mut b = exactly_once_sink(broker, out, tmp.path());
    b.begin_transactions(&[s1]).unwrap();
    b.write_batch(&batch(&records(100, 200))).unwrap();
    b.finish().unwrap();
    assert_eq!(
        read_committed(&broker.bootstrap(), out),
        sorted(records(0, 200))
    );
    // The aborted records are in the topic: a read_uncommitted reader sees the other
    // producer's, and checkpoint 2's first attempt if it reached the broker.
    let all: Vec<Vec<u8>> = kafka::read_uncommitted(&broker.bootstrap(), out)
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert!(
        all.iter().any(|v| v == b"aborted"),
        "the aborted record was written"
    );
    assert!(all.len() > 200, "{} records", all.len());
}

/// Everything `reader` returns until its end, as `(value, key, time)`.
fn drain(
    reader: &mut dyn sluice_core::connector::SourceReader,
    limit: Option<usize>,
) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    let mut b = Batch::with_capacity(64, 1024);
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the source did not end"
        );
        if limit.is_some_and(|l| out.len() >= l) {
            return out;
        }
        b.clear();
        match reader.poll_batch(&mut b, 10).unwrap() {
            SourcePoll::End => return out,
            SourcePoll::Pending => std::thread::sleep(Duration::from_millis(5)),
            SourcePoll::Data => {
                for e in b.iter() {
                    out.push((
                        String::from_utf8(e.value.to_vec()).unwrap(),
                        String::from_utf8(e.key.to_vec()).unwrap(),
                        e.timestamp,
                    ));
                }
            }
        }
    }
}

#[test]
fn the_source_spreads_partitions_over_subtasks_ends_when_bounded_and_resumes_from_offsets() {
    let broker = Broker::shared();
    let tmp = tempfile::tempdir().unwrap();
    let topic = &broker.unique("in");
    broker.create_topic(topic, 4);
    // Written with the sink, round robin over the 4 partitions.
    let sink = sluice_kafka::sink_factory(
        &serde_json::json!({"brokers": broker.bootstrap(), "topic": topic, "partitioning": "round-robin"}),
        tmp.path(),
        "sinks[0]",
    )
    .unwrap();
    let mut sink = sink.create_sink(0, 1, &ValueFormat::Bytes).unwrap();
    let all = records(0, 400);
    sink.write_batch(&batch(&all)).unwrap();
    sink.finish().unwrap();

    let source = sluice_kafka::source_factory(
        &serde_json::json!({"brokers": broker.bootstrap(), "topic": topic, "bounded": true}),
        "sources[0]",
    )
    .unwrap();
    // Two subtasks; subtask 0 stops after 50 records and is restored from its position.
    let mut r0 = source.create_reader(0, 2).unwrap();
    let mut got = drain(r0.as_mut(), Some(50));
    let position = r0.position(1).expect("the Kafka reader has a position");
    drop(r0);
    let mut r0 = source.create_reader(0, 2).unwrap();
    r0.seek(&position).unwrap();
    got.extend(drain(r0.as_mut(), None));
    let mut r1 = source.create_reader(1, 2).unwrap();
    let from_1 = drain(r1.as_mut(), None);
    assert!(
        !from_1.is_empty() && from_1.len() < all.len(),
        "both subtasks read"
    );
    got.extend(from_1);
    assert_eq!(sorted(got), sorted(all.clone()));

    // Each partition is read by exactly one subtask.
    let mut owners: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
    for p in 0..4 {
        owners
            .entry(sluice_kafka::source::owner(topic, p, 2))
            .or_default()
            .push(p);
    }
    assert_eq!(owners.values().map(Vec::len).sum::<usize>(), 4);
    assert_eq!(
        owners.len(),
        2,
        "4 partitions spread over 2 subtasks: {owners:?}"
    );
}

#[test]
fn the_source_starts_at_earliest_latest_a_timestamp_or_the_groups_committed_offsets() {
    let broker = Broker::shared();
    let tmp = tempfile::tempdir().unwrap();
    let topic = &broker.unique("starts");
    broker.create_topic(topic, 1);
    let sink = sluice_kafka::sink_factory(
        &serde_json::json!({"brokers": broker.bootstrap(), "topic": topic}),
        tmp.path(),
        "sinks[0]",
    )
    .unwrap();
    let mut sink = sink.create_sink(0, 1, &ValueFormat::Bytes).unwrap();
    let all = records(0, 100);
    sink.write_batch(&batch(&all)).unwrap();
    sink.finish().unwrap();
    let read = |start: serde_json::Value, group: Option<&str>, limit: Option<usize>| {
        let mut options = serde_json::json!({
            "brokers": broker.bootstrap(), "topic": topic, "bounded": true, "start": start,
        });
        if let Some(g) = group {
            options["group_id"] = g.into();
        }
        let source = sluice_kafka::source_factory(&options, "sources[0]").unwrap();
        let mut reader = source.create_reader(0, 1).unwrap();
        let got = drain(reader.as_mut(), limit);
        (got, reader)
    };
    assert_eq!(
        sorted(read("earliest".into(), None, None).0),
        sorted(all.clone())
    );
    assert_eq!(read("latest".into(), None, None).0, vec![]);
    // Records 50.. have times 51,000 ms and later.
    let (from_time, _) = read(serde_json::json!({"timestamp": 50_500}), None, None);
    assert_eq!(sorted(from_time), sorted(records(50, 100)));
    // A reader of group g commits its offsets when a checkpoint completes; a reader
    // starting from the group's offsets continues there.
    let (first, mut reader) = read("earliest".into(), Some("g"), Some(30));
    reader.position(1).unwrap();
    reader.notify_checkpoint_complete(1).unwrap();
    // The commit is asynchronous: wait until the group has it.
    let started = Instant::now();
    let rest = loop {
        let (rest, _) = read("group".into(), Some("g"), None);
        if rest.len() + first.len() == all.len() || started.elapsed() > Duration::from_secs(30) {
            break rest;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut both = first;
    both.extend(rest);
    assert_eq!(sorted(both), sorted(all));
}

#[test]
fn the_sink_partitions_as_kafkas_java_clients_or_a_fixed_partition_and_the_source_reads_time_from_a_field()
 {
    let broker = Broker::shared();
    let tmp = tempfile::tempdir().unwrap();
    let (hashed, fixed) = (&broker.unique("hashed"), &broker.unique("fixed"));
    broker.create_topic(hashed, 4);
    broker.create_topic(fixed, 4);
    // JSON values whose field `t` is the event time; the record timestamps differ.
    let events: Vec<(String, String, i64)> = (0..200)
        .map(|i| {
            (
                format!("{{\"t\":{}}}", 5_000 + i * 10),
                format!("k{}", i % 9),
                i + 1,
            )
        })
        .collect();
    for (topic, options) in [
        (hashed, serde_json::json!({})),
        (
            fixed,
            serde_json::json!({"partitioning": "fixed", "partition": 2}),
        ),
    ] {
        let mut o = options;
        o["brokers"] = broker.bootstrap().into();
        o["topic"] = topic.as_str().into();
        let mut sink = sluice_kafka::sink_factory(&o, tmp.path(), "sinks[0]")
            .unwrap()
            .create_sink(0, 1, &ValueFormat::Json)
            .unwrap();
        sink.write_batch(&batch(&events)).unwrap();
        sink.finish().unwrap();
    }
    // Key hash: every record of a key in the partition that Kafka's Java clients pick.
    let mut partition_of: BTreeMap<Vec<u8>, std::collections::BTreeSet<i32>> = BTreeMap::new();
    for r in kafka::read_committed(&broker.bootstrap(), hashed) {
        partition_of.entry(r.key).or_default().insert(r.partition);
    }
    // Kafka's Java partitioner: (murmur2(key) & 0x7fffffff) % 4, computed independently
    // (in Python) for k0..k8.
    let java = [1, 1, 1, 0, 0, 0, 1, 0, 2];
    assert_eq!(partition_of.len(), 9);
    for (i, p) in java.into_iter().enumerate() {
        let key = format!("k{i}").into_bytes();
        assert_eq!(partition_of[&key], [p].into(), "key k{i}");
    }
    // Fixed: every record in partition 2, with its key, value and timestamp.
    let got = kafka::read_committed(&broker.bootstrap(), fixed);
    assert!(got.iter().all(|r| r.partition == 2));
    assert_eq!(
        read_committed(&broker.bootstrap(), fixed),
        sorted(events.clone())
    );
    // Event time from the value's field `t`, not the record timestamp.
    let source = sluice_kafka::source_factory(
        &serde_json::json!({
            "brokers": broker.bootstrap(), "topic": fixed, "bounded": true,
            "value_format": {"format": "json"}, "event_time": {"field": "t"},
        }),
        "sources[0]",
    )
    .unwrap();
    let mut reader = source.create_reader(0, 1).unwrap();
    let want: Vec<_> = events
        .iter()
        .map(|(v, k, _)| {
            let t: serde_json::Value = serde_json::from_str(v).unwrap();
            (v.clone(), k.clone(), t["t"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(sorted(drain(reader.as_mut(), None)), sorted(want));
}

#[test]
fn a_source_whose_broker_is_unreachable_fails_after_broker_timeout_naming_it() {
    // A loopback port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let brokers = format!("127.0.0.1:{port}");
    for bounded in [true, false] {
        let source = sluice_kafka::source_factory(
            &serde_json::json!({
                "brokers": brokers, "topic": "t", "bounded": bounded, "broker_timeout": "1s",
            }),
            "sources[0]",
        )
        .unwrap();
        let mut reader = source.create_reader(0, 1).unwrap();
        let mut b = Batch::with_capacity(8, 64);
        let started = Instant::now();
        let e = loop {
            match reader.poll_batch(&mut b, 8) {
                Ok(SourcePoll::Pending) => std::thread::sleep(Duration::from_millis(10)),
                Ok(other) => panic!("bounded {bounded}: {other:?} from an unreachable broker"),
                Err(e) => break e.0,
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no failure");
        };
        assert!(
            e.starts_with(&format!(
                "sources[0] (kafka {brokers}): no broker reachable for 1s"
            )),
            "{e}"
        );
    }
}

#[test]
fn the_source_passes_record_headers_with_their_events() {
    use rdkafka::message::{Header, OwnedHeaders};
    let broker = Broker::shared();
    let topic = &broker.unique("headers");
    broker.create_topic(topic, 1);
    // Record i has i % 3 headers: `h<j>` = `<i>-<j>`, and a null-valued `gone` when i
    // is odd.
    type Headers = Vec<(String, Option<Vec<u8>>)>;
    let want = |i: usize| -> Headers {
        let mut h: Vec<_> = (0..i % 3)
            .map(|j| (format!("h{j}"), Some(format!("{i}-{j}").into_bytes())))
            .collect();
        if i % 2 == 1 {
            h.push(("gone".to_string(), None));
        }
        h
    };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    for i in 0..30usize {
        let mut headers = OwnedHeaders::new();
        for (name, value) in want(i) {
            headers = headers.insert(Header {
                key: &name,
                value: value.as_deref(),
            });
        }
        let value = format!("v{i}");
        let mut record = BaseRecord::<(), _>::to(topic)
            .payload(&value)
            .timestamp(1000 + i as i64);
        if !want(i).is_empty() {
            record = record.headers(headers);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let source = sluice_kafka::source_factory(
        &serde_json::json!({"brokers": broker.bootstrap(), "topic": topic, "bounded": true}),
        "sources[0]",
    )
    .unwrap();
    let mut reader = source.create_reader(0, 1).unwrap();
    let mut got: Vec<(String, Headers)> = Vec::new();
    let started = Instant::now();
    let mut b = Batch::new();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the source did not end"
        );
        b.clear();
        match reader.poll_batch(&mut b, 7).unwrap() {
            SourcePoll::End => break,
            SourcePoll::Pending => std::thread::sleep(Duration::from_millis(5)),
            SourcePoll::Data => {
                for i in 0..b.len() {
                    let headers = b.headers().map_or_else(Vec::new, |h| {
                        h.get(i)
                            .map(|(n, v)| (n.to_string(), v.map(<[u8]>::to_vec)))
                            .collect()
                    });
                    got.push((String::from_utf8(b.value(i).to_vec()).unwrap(), headers));
                }
            }
        }
    }
    let expected: Vec<_> = (0..30).map(|i| (format!("v{i}"), want(i))).collect();
    assert_eq!(got, expected);
}

#[test]
fn a_partition_added_while_the_source_runs_is_picked_up() {
    let broker = Broker::shared();
    let topic = &broker.unique("grow");
    broker.create_topic(topic, 1);
    // A producer per call: a new one knows the partitions added since.
    let produce = |partition: i32, from: u32, to: u32| {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .create()
            .unwrap();
        for (v, k, t) in records(from, to) {
            let record = BaseRecord::to(topic)
                .partition(partition)
                .key(&k)
                .payload(&v)
                .timestamp(t);
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    };
    produce(0, 0, 20);
    let source = sluice_kafka::source_factory(
        &serde_json::json!({"brokers": broker.bootstrap(), "topic": topic, "discovery_interval": "200ms"}),
        "sources[0]",
    )
    .unwrap();
    let mut reader = source.create_reader(0, 1).unwrap();
    let mut got = drain(reader.as_mut(), Some(20));
    assert_eq!(sorted(got.clone()), sorted(records(0, 20)));
    broker.add_partitions(topic, 2);
    produce(1, 20, 40);
    got.extend(drain(reader.as_mut(), Some(20)));
    assert_eq!(sorted(got), sorted(records(0, 40)));
    assert_eq!(
        reader.splits_changed().map(|s| s.len()),
        Some(2),
        "the new partition is a split of its own (its own watermark)"
    );
}
