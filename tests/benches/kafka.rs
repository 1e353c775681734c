//! Kafka → a pass-through WASM operator (`plugins/identity`) → Kafka, against Apache
//! Kafka 4.1 on loopback (started here; or `$SLUICE_KAFKA_BROKERS`), in both delivery
//! modes:
//!
//! * throughput: events per second from a topic of 4 partitions through the job
//!   (parallelism 2, bounded source) to a topic, wall time from job start to its end;
//! * latency at a fixed rate: a producer writes events stamped with their send time (µs)
//!   at `$SLUICE_BENCH_KAFKA_RATE` events/s (default 10,000) for 10 s into the running
//!   job (unbounded source); a `read_committed` consumer of the output topic measures
//!   the time from send to receipt; p50, p99 and the maximum.
//!
//! At-least-once runs with checkpoints every 1 s; exactly-once every 1 s and every
//! 200 ms, since its records become visible only when their checkpoint completes (its
//! latency is bounded below by the checkpoint interval). Each run's output is checked
//! before its figures print: every event once, nothing else.
//! `$SLUICE_BENCH_KAFKA_EVENTS` sets the throughput run's events (default 300,000);
//! `$SLUICE_BENCH_KAFKA_SOURCE_PROPERTIES` and `$SLUICE_BENCH_KAFKA_SINK_PROPERTIES` add
//! librdkafka properties (a YAML map, `{linger.ms: '0'}`) to try settings. First, the
//! latency of the broker alone (producer, topic, consumer) at the same rate: a job's
//! path has two such hops.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sluice_cli::job::{JobResolver, build_graph};
use sluice_core::spec::Overrides;
use sluice_tests::kafka::{Broker, read_committed};
use sluice_tests::plugins;
use sluice_wasm::{RuntimeConfig, WasmRuntime};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Microseconds since the epoch.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// How a run is set up: the sink's delivery guarantee (`at-least-once` or
/// `exactly-once`) and the checkpoint interval (`1s`, `200ms`).
#[derive(Clone, Copy)]
struct Mode {
    delivery: &'static str,
    interval: &'static str,
}

/// A job: topic `input` → identity → topic `output`, delivery and checkpoint interval
/// of `mode`, checkpoints under `dir`.
fn spec(
    broker: &Broker,
    dir: &Path,
    (input, output): (&str, &str),
    mode: Mode,
    bounded: bool,
) -> std::path::PathBuf {
    let text = format!(
        "name: kafka-bench
parallelism: 2
sources:
  - id: in
    connector: kafka
    brokers: {brokers}
    topic: {input}
    bounded: {bounded}
    parallelism: 2
    properties: {source_props}
    watermarks: {{max_out_of_orderness: 0ms}}
operators:
  - id: pass
    input: in
    wasm: {wasm}
sinks:
  - id: out
    input: pass
    connector: kafka
    brokers: {brokers}
    topic: {output}
    partitioning: round-robin
    delivery: {delivery}
    transactional_id: {output}
    properties: {sink_props}
    pending_dir: {pending}
checkpoints: {{interval: {interval}, storage: {checkpoints}}}
",
        delivery = mode.delivery,
        interval = mode.interval,
        source_props = std::env::var("SLUICE_BENCH_KAFKA_SOURCE_PROPERTIES").unwrap_or("{}".into()),
        sink_props = std::env::var("SLUICE_BENCH_KAFKA_SINK_PROPERTIES").unwrap_or("{}".into()),
        brokers = broker.bootstrap(),
        wasm = plugins::wasm("identity").display(),
        pending = dir.join("pending").display(),
        checkpoints = dir.join("checkpoints").display(),
    );
    let path = dir.join(format!("{output}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The input's producer: idempotent, so that a retried request cannot write an event
/// twice (which the output check would count against the job).
fn producer(broker: &Broker) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .create()
        .unwrap()
}

fn send(p: &BaseProducer, topic: &str, partition: i32, value: &[u8]) {
    let mut r = BaseRecord::to(topic)
        .partition(partition)
        .key("k")
        .payload(value);
    while let Err((e, back)) = p.send(r) {
        assert!(e.to_string().contains("Queue full"), "{e}");
        p.poll(Duration::from_millis(5));
        r = back;
    }
}

fn throughput(broker: &Broker, wasm: &WasmRuntime, dir: &Path, mode: Mode, events: u64) {
    let delivery = mode.delivery;
    let (input, output) = (
        broker.unique(&format!("tin-{delivery}")),
        broker.unique(&format!("tout-{delivery}")),
    );
    broker.create_topic(&input, 4);
    broker.create_topic(&output, 4);
    let p = producer(broker);
    let value = |i: u64| format!("{i:012}{}", "x".repeat(88));
    for i in 0..events {
        send(&p, &input, (i % 4) as i32, value(i).as_bytes());
    }
    p.flush(Duration::from_secs(60)).unwrap();
    let path = spec(broker, dir, (&input, &output), mode, true);
    let resolver = JobResolver {
        wasm,
        output_dir: None,
    };
    let graph = build_graph(&path, &resolver, Overrides::default()).unwrap();
    let t = Instant::now();
    let job = sluice_core::runtime::start(graph).unwrap();
    while !job.is_finished() {
        std::thread::sleep(Duration::from_millis(2));
    }
    job.join().unwrap();
    let secs = t.elapsed().as_secs_f64();
    // Every event once, nothing else.
    let mut got: Vec<Vec<u8>> = read_committed(&broker.bootstrap(), &output)
        .into_iter()
        .map(|r| r.value)
        .collect();
    got.sort();
    let want: Vec<Vec<u8>> = (0..events).map(|i| value(i).into_bytes()).collect();
    assert!(
        got == want,
        "{delivery}: the output is not every input event once ({} events read)",
        got.len()
    );
    println!(
        "  throughput: {events} events of 100 B in {secs:.2} s: {:.0} events/s",
        events as f64 / secs
    );
}

/// Latency at `rate` events/s from topic `input` to topic `output` (`read_committed`):
/// a producer writes 13 s of events stamped with their send time (µs), a consumer of
/// `output` takes each one's time from send to receipt; the first 3 s warm up the
/// broker's and the job's code paths and are not counted. Checks that every event
/// arrives once; returns the latencies of the last 10 s in µs, sorted.
fn measure_latency(
    broker: &Broker,
    (input, output): (&str, &str),
    rate: u64,
    what: &str,
) -> Vec<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "bench-latency")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition_offset(output, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    // The job and the consumer settle before the measured events.
    std::thread::sleep(Duration::from_secs(3));
    let warm_up = rate * 3;
    let total = warm_up + rate * 10;
    let brokers = broker.bootstrap();
    let input2 = input.to_string();
    let sender = std::thread::spawn(move || {
        // librdkafka's default linger (5 ms): with none, at 10,000 events/s nearly every
        // record is a request of its own, and the broker on 2 cores falls seconds behind.
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set(
                "linger.ms",
                std::env::var("SLUICE_BENCH_KAFKA_PRODUCER_LINGER_MS").unwrap_or("5".into()),
            )
            .create()
            .unwrap();
        let start = Instant::now();
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            send(
                &p,
                &input2,
                (i % 4) as i32,
                format!("{i} {}", now_us()).as_bytes(),
            );
            p.poll(Duration::ZERO);
        }
        p.flush(Duration::from_secs(60)).unwrap();
    });
    let mut seen = vec![false; total as usize];
    let mut latencies = Vec::with_capacity(total as usize);
    let mut received = 0u64;
    let t = Instant::now();
    while received < total && t.elapsed() < Duration::from_secs(120) {
        if let Some(m) = consumer.poll(Duration::from_millis(50)) {
            let m = m.unwrap();
            let text = std::str::from_utf8(m.payload().unwrap()).unwrap();
            let (i, sent) = text.split_once(' ').unwrap();
            let i: usize = i.parse().unwrap();
            let sent: u64 = sent.parse().unwrap();
            assert!(!seen[i], "{what}: event {i} arrived twice");
            seen[i] = true;
            received += 1;
            if i as u64 >= warm_up {
                latencies.push(now_us().saturating_sub(sent));
            }
        }
    }
    sender.join().unwrap();
    assert_eq!(received, total, "{what}: every event arrives");
    latencies.sort_unstable();
    latencies
}

fn print_latency(latencies: &[u64], rate: u64) {
    let pct = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1e3;
    println!(
        "  latency at {rate} events/s ({} events): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}

fn latency(broker: &Broker, wasm: &WasmRuntime, dir: &Path, mode: Mode, rate: u64) {
    let delivery = mode.delivery;
    let (input, output) = (
        broker.unique(&format!("lin-{delivery}")),
        broker.unique(&format!("lout-{delivery}")),
    );
    broker.create_topic(&input, 4);
    broker.create_topic(&output, 4);
    let path = spec(broker, dir, (&input, &output), mode, false);
    let resolver = JobResolver {
        wasm,
        output_dir: None,
    };
    let graph = build_graph(&path, &resolver, Overrides::default()).unwrap();
    let job = sluice_core::runtime::start(graph).unwrap();
    let latencies = measure_latency(broker, (&input, &output), rate, delivery);
    job.cancel();
    let _ = job.join();
    print_latency(&latencies, rate);
}

/// The broker alone: producer to consumer through one topic, no job (a Kafka hop's
/// latency; a job's path has two).
fn broker_latency(broker: &Broker, rate: u64) {
    let topic = broker.unique("hop");
    broker.create_topic(&topic, 4);
    println!("The broker alone (producer -> topic -> read_committed consumer):");
    print_latency(
        &measure_latency(broker, (&topic, &topic), rate, "broker"),
        rate,
    );
}

fn main() {
    plugins::build();
    // The broker's JVM as the tests run it (C1 only, serial GC): with C2 and G1 its
    // compiler threads took the 2 cores from the job and the latencies doubled.
    let broker = Broker::start();
    let wasm = WasmRuntime::new(RuntimeConfig::default()).unwrap();
    let events = env_or("SLUICE_BENCH_KAFKA_EVENTS", 300_000);
    let rate = env_or("SLUICE_BENCH_KAFKA_RATE", 10_000);
    let modes = [
        Mode {
            delivery: "at-least-once",
            interval: "1s",
        },
        Mode {
            delivery: "exactly-once",
            interval: "1s",
        },
        Mode {
            delivery: "exactly-once",
            interval: "200ms",
        },
    ];
    // `$SLUICE_BENCH_KAFKA_MODES`: only the modes named (`at-least-once`,
    // `exactly-once`), comma-separated.
    let only = std::env::var("SLUICE_BENCH_KAFKA_MODES").ok();
    broker_latency(&broker, rate);
    for mode in modes {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|m| m == mode.delivery))
        {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        println!(
            "Kafka -> identity WASM operator -> Kafka, {}, parallelism 2, checkpoints every {}:",
            mode.delivery, mode.interval
        );
        throughput(&broker, &wasm, tmp.path(), mode, events);
        latency(&broker, &wasm, tmp.path(), mode, rate);
    }
}
