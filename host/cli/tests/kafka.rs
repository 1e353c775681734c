//! The Kafka connectors end to end over the `sluice` binary, against Apache Kafka (one
//! broker for the test process, and one of its own for the test that stops it;
//! `sluice_tests::kafka`):
//!
//! * Kafka → the flights job (its WASM operator, hourly event-time windows in RocksDB)
//!   → sink, killed with SIGKILL ten times at random moments and restarted: the committed
//!   output is exactly the failure-free answer (`sluice_tests::flights::exact_answer`),
//!   every window firing once, nothing missing. `sluice kafka produce` loads a slice of
//!   the flights file into a topic in departure order; the job reads it bounded (up to
//!   the offsets that were the latest at its start; offsets in its checkpoints, every
//!   500 ms). Two variants: window results to the two-phase-commit JSON-lines sink, and
//!   to a Kafka topic with transactions bound to checkpoints, read by a `read_committed`
//!   consumer.
//! * per-partition watermarks: four partitions whose event times advance at different
//!   speeds give exactly the batch answer, nothing late;
//! * an idle partition does not stall windows after the idleness timeout;
//! * the broker down when the job starts, and restarted mid-job: the job reports it,
//!   restarts per its strategy, and loses nothing.
//!
//! Rows of the kill test: the first 300,000 of the flights file
//! (`SLUICE_KAFKA_KILL_ROWS` to change); `SLUICE_KILL_SEED` replays a run's kill moments.

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_yaml_ng::Value;
use sluice_tests::kafka::{Broker, read_committed};
use sluice_tests::{flights, kill, plugins};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The Kafka variant of the flights job (the demo).
const FLIGHTS_KAFKA_SPEC: &str = "plugins/flight-delays/flights-kafka.yaml";

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}
/// The repository's flights spec with its operator built here and its source at `input`.
fn flights_spec(input: &Path) -> Value {
    let text = std::fs::read_to_string(plugins::repo_root().join(flights::SPEC)).unwrap();
    let mut spec: Value = serde_yaml_ng::from_str(&text).unwrap();
    let source = &mut spec["sources"][0];
    source["path"] = input.to_str().unwrap().into();
    source.as_mapping_mut().unwrap().remove("sha256");
    spec["operators"][0]["wasm"] = plugins::wasm("flight_delays").to_str().unwrap().into();
    spec
}

fn write(spec: &Value, path: PathBuf) -> PathBuf {
    std::fs::write(&path, serde_yaml_ng::to_string(spec).unwrap()).unwrap();
    path
}

#[test]
fn killed_ten_times_a_job_reading_kafka_commits_exactly_the_failure_free_answer() {
    killed_ten_times(false);
}

#[test]
fn killed_ten_times_kafka_to_kafka_commits_exactly_the_failure_free_answer() {
    killed_ten_times(true);
}

/// Loads the first `rows` flights into topic `topic` (one partition, so that the Kafka
/// source reads them in the file source's order, departure order, and the exact answer
/// of the file job applies) with `sluice kafka produce`. Returns the rows and the
/// `value_format` that `produce` prints for reading them.
fn load_flights(
    broker: &Broker,
    dir: &Path,
    rows: usize,
    topic: &str,
) -> (Vec<flights::Flight>, String) {
    let slice = dir.join("flights-slice.parquet");
    let got = flights::read_rows(&flights::dataset(), Some(rows), Some(&slice));
    let spec = write(&flights_spec(&slice), dir.join("flights-file.yaml"));
    let out = sluice()
        .args(["kafka", "produce", spec.to_str().unwrap()])
        .args(["--source", "flights", "--brokers", &broker.bootstrap()])
        .args(["--topic", topic, "--partitions", "1"])
        .env("SLUICE_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "sluice kafka produce failed: {stderr}"
    );
    assert!(
        stderr.contains(&format!("produced {} events", got.len())),
        "{stderr}"
    );
    let value_format = stderr
        .lines()
        .find_map(|l| l.strip_prefix("a Kafka source reads them with: value_format: "))
        .expect("produce prints the value format")
        .to_string();
    (got, value_format)
}

/// The demo spec `plugins/flight-delays/flights-kafka.yaml` at `broker`, reading topic
/// `input` (paced to `rate` events/s), checkpointing every 500 ms, writing window
/// results to topic `kafka_output` (exactly-once) or, when `None`, to
/// `<dir>/out/windows.jsonl`, and late events to `<dir>/out/late.jsonl`; `extra` (YAML)
/// adds top-level sections. Checks that the spec reads the values as `sluice kafka
/// produce` said (`value_format`). Returns the spec's path.
fn kafka_flights_spec(
    broker: &Broker,
    dir: &Path,
    (input, value_format): (&str, &str),
    kafka_output: Option<&str>,
    rate: u64,
    extra: &str,
) -> PathBuf {
    let brokers = broker.bootstrap();
    let text = std::fs::read_to_string(plugins::repo_root().join(FLIGHTS_KAFKA_SPEC))
        .unwrap()
        .replace("127.0.0.1:9092", &brokers);
    let mut spec: Value = serde_yaml_ng::from_str(&text).unwrap();
    let source = &mut spec["sources"][0];
    let declared: serde_json::Value =
        serde_yaml_ng::from_value(source["value_format"].clone()).unwrap();
    let printed: serde_json::Value = serde_json::from_str(value_format).unwrap();
    assert_eq!(declared, printed, "the demo spec reads what produce wrote");
    source["topic"] = input.into();
    source["max_events_per_second"] = rate.into();
    spec["operators"][0]["wasm"] = plugins::wasm("flight_delays").to_str().unwrap().into();
    let out_dir = dir.join("out");
    let jsonl = |id: &str, input: &str, file: &str, write: &str| -> Value {
        serde_yaml_ng::from_str(&format!(
            "{{id: {id}, input: {input}, connector: jsonl, path: {}{write}}}",
            out_dir.join(file).display()
        ))
        .unwrap()
    };
    spec["sinks"][0] = match kafka_output {
        Some(output) => serde_yaml_ng::from_str(&format!(
            "{{id: window-results, input: hourly-delays, connector: kafka, \
             brokers: '{brokers}', topic: '{output}', delivery: exactly-once, \
             transactional_id: '{output}', pending_dir: {}}}",
            dir.join("pending").display()
        ))
        .unwrap(),
        None => jsonl(
            "window-results",
            "hourly-delays",
            "windows.jsonl",
            ", write: value",
        ),
    };
    spec["sinks"][1] = jsonl("late-events", "hourly-delays.late", "late.jsonl", "");
    kill::checkpoint_every_500ms(&mut spec, dir);
    if let Value::Mapping(m) = serde_yaml_ng::from_str::<Value>(extra).unwrap() {
        for (k, v) in m {
            spec[k.as_str().unwrap()] = v;
        }
    }
    write(&spec, dir.join("flights-kafka.yaml"))
}

/// The job's committed output: `<dir>/out`, with the window results read from topic
/// `kafka_output` by a `read_committed` consumer when there is one.
fn flights_output(broker: &Broker, dir: &Path, kafka_output: Option<&str>) -> flights::Output {
    let out_dir = dir.join("out");
    if let Some(output) = kafka_output {
        let mut lines = Vec::new();
        for r in read_committed(&broker.bootstrap(), output) {
            lines.extend(r.value);
            lines.push(b'\n');
        }
        std::fs::write(out_dir.join("windows.jsonl"), lines).unwrap();
    }
    flights::read_output(&out_dir)
}

/// The test, with window results to a Kafka topic (`kafka_sink`) or to a file.
fn killed_ten_times(kafka_sink: bool) {
    plugins::build();
    let broker = Broker::shared();
    let (input, output) = (broker.unique("flights"), broker.unique("windows"));
    let tmp = tempfile::tempdir().unwrap();
    let rows = std::env::var("SLUICE_KAFKA_KILL_ROWS")
        .map(|v| v.parse().expect("SLUICE_KAFKA_KILL_ROWS is a number"))
        .unwrap_or(300_000);
    let (rows, value_format) = load_flights(broker, tmp.path(), rows, &input);
    let answer = flights::exact_answer(&rows);
    let output = kafka_sink.then_some(output.as_str());
    if let Some(output) = output {
        broker.create_topic(output, 1);
    }
    let spec = kafka_flights_spec(
        broker,
        tmp.path(),
        (&input, &value_format),
        output,
        10_000,
        "{}",
    );
    kill::kill_ten_times(
        env!("CARGO_BIN_EXE_sluice").as_ref(),
        &spec,
        "flights-kafka",
        &tmp.path().join("checkpoints"),
        &tmp.path().join("cache"),
    );
    let got = flights_output(broker, tmp.path(), output);
    flights::check_output(&answer, &got, "Kafka, after ten kills");
}

#[test]
fn the_broker_down_at_start_and_restarted_mid_job_loses_nothing() {
    plugins::build();
    let mut broker = Broker::start();
    let input = broker.unique("flights");
    let tmp = tempfile::tempdir().unwrap();
    let (rows, value_format) = load_flights(&broker, tmp.path(), 120_000, &input);
    let answer = flights::exact_answer(&rows);
    let spec = kafka_flights_spec(
        &broker,
        tmp.path(),
        (&input, &value_format),
        None,
        20_000,
        "{restart: {strategy: fixed-delay, attempts: 30, delay: 1s}}",
    );
    // The source gives up on an unreachable broker after 2 s (then the job restarts).
    let mut yaml: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&spec).unwrap()).unwrap();
    yaml["sources"][0]["broker_timeout"] = "2s".into();
    write(&yaml, spec.clone());
    broker.kill();
    let cache = tmp.path().join("cache");
    let job = sluice()
        .args(["run", spec.to_str().unwrap()])
        .env("SLUICE_CACHE_DIR", &cache)
        .env("XDG_RUNTIME_DIR", cache.join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    broker.restart();
    // Mid-job (120,000 events at 20,000/s: ~6 s a run): down for 3 s, then back.
    std::thread::sleep(Duration::from_secs(3));
    broker.kill();
    std::thread::sleep(Duration::from_secs(3));
    broker.restart();
    let out = job.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the job failed: {stderr}");
    assert!(
        stderr.contains("no broker reachable") && stderr.contains(&broker.bootstrap()),
        "the unreachable broker is reported, naming it: {stderr}"
    );
    let got = flights_output(&broker, tmp.path(), None);
    flights::check_output(&answer, &got, "after the broker was down twice");
}

/// A window job over topic `topic`: count per key in tumbling 10 s windows, no
/// out-of-orderness, no allowed lateness; `idleness` on the source (`, idleness: 1s`);
/// results to `sink` (YAML of the sink's connector options, indented).
fn count_spec(
    broker: &Broker,
    dir: &Path,
    topic: &str,
    bounded: bool,
    idleness: &str,
    sink: &str,
) -> PathBuf {
    let spec = format!(
        "name: counts
parallelism: 2
sources:
  - id: events
    connector: kafka
    brokers: {brokers}
    topic: {topic}
    bounded: {bounded}
    discovery_interval: 1s
    parallelism: 2
    watermarks: {{max_out_of_orderness: 0ms{idleness}}}
windows:
  - id: counts
    input: events
    key_by: key
    window: {{type: tumbling, size: 10s}}
    aggregates:
      - {{name: n, fn: count}}
sinks:
  - id: results
    input: counts
{sink}
  - id: late
    input: counts.late
    connector: jsonl
    path: {late}
",
        brokers = broker.bootstrap(),
        late = dir.join("late.jsonl").display(),
    );
    let path = dir.join("counts.yaml");
    std::fs::write(&path, spec).unwrap();
    path
}

/// Produces `events` (partition, time ms, key) to `topic`.
fn produce(broker: &Broker, topic: &str, events: &[(i32, i64, String)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    for (partition, time, key) in events {
        let mut r = BaseRecord::to(topic)
            .partition(*partition)
            .timestamp(*time)
            .key(key.as_bytes())
            .payload("x");
        while let Err((e, back)) = p.send(r) {
            assert!(e.to_string().contains("Queue full"), "{e}");
            p.poll(Duration::from_millis(10));
            r = back;
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Window counts `(key, window start) -> n` of `events`: the batch answer.
fn batch_counts(events: &[(i32, i64, String)]) -> BTreeMap<(String, i64), i64> {
    let mut out = BTreeMap::new();
    for (_, t, k) in events {
        *out.entry((k.clone(), t - t.rem_euclid(10_000)))
            .or_insert(0) += 1;
    }
    out
}

/// `(key, window start) -> (n, firing)` of window-result JSON values; panics on a
/// window that fired twice.
fn counts_of(values: impl Iterator<Item = String>) -> BTreeMap<(String, i64), (i64, i64)> {
    let mut out = BTreeMap::new();
    for line in values {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let k = (
            v["key"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
        );
        let n = (v["n"].as_i64().unwrap(), v["firing"].as_i64().unwrap());
        assert!(out.insert(k, n).is_none(), "a window fired twice: {line}");
    }
    out
}

/// Runs `sluice run spec` to its end and returns its output.
fn run(spec: &Path, cache: &Path) -> Output {
    sluice()
        .args(["run", spec.to_str().unwrap(), "--quiet"])
        .env("SLUICE_CACHE_DIR", cache)
        .env("XDG_RUNTIME_DIR", cache.join("run"))
        .output()
        .unwrap()
}

/// The lines of the files in `dir` whose names start with `prefix` (a sink of
/// parallelism 2 writes `<name>-<subtask>.jsonl`).
fn lines(dir: &Path, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let f = f.unwrap().path();
        if f.file_name().unwrap().to_str().unwrap().starts_with(prefix) {
            out.extend(
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(String::from),
            );
        }
    }
    out
}

#[test]
fn per_partition_watermarks_give_the_batch_answer_when_partitions_advance_at_different_speeds() {
    let broker = Broker::shared();
    let topic = broker.unique("events");
    broker.create_topic(&topic, 4);
    let tmp = tempfile::tempdir().unwrap();
    // Partition p advances p + 1 seconds per event: after the first events of the fast
    // partitions, every event of a slow one is far behind them. One watermark for the
    // whole source would make most of the slow partitions' events late.
    let t0 = 1_700_000_000_000i64;
    let mut events = Vec::new();
    for p in 0..4 {
        for i in 0..2_000i64 {
            events.push((p, t0 + i * (p as i64 + 1) * 1_000, format!("k{}", i % 7)));
        }
    }
    produce(broker, &topic, &events);
    let sink = format!(
        "    connector: jsonl\n    path: {}\n    write: value",
        tmp.path().join("windows.jsonl").display()
    );
    let spec = count_spec(broker, tmp.path(), &topic, true, "", &sink);
    let out = run(&spec, &tmp.path().join("cache"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines(tmp.path(), "late").len(), 0, "no event is late");
    let got = counts_of(lines(tmp.path(), "windows").into_iter());
    let want = batch_counts(&events);
    assert_eq!(got.len(), want.len(), "number of windows");
    for (k, n) in &want {
        assert_eq!(
            got.get(k),
            Some(&(*n, 0)),
            "window {k:?}: one on-time firing"
        );
    }
}

#[test]
fn an_idle_partition_does_not_stall_windows_after_the_idleness_timeout() {
    let broker = Broker::shared();
    let (topic, results) = (broker.unique("events"), broker.unique("results"));
    broker.create_topic(&topic, 2);
    broker.create_topic(&results, 1);
    let tmp = tempfile::tempdir().unwrap();
    // Data in partition 0 only: partition 1 holds the watermark back until it is idle.
    let t0 = 1_700_000_000_000i64;
    let events: Vec<(i32, i64, String)> = (0..500)
        .map(|i| (0, t0 + i * 100, format!("k{}", i % 3)))
        .collect();
    produce(broker, &topic, &events);
    let sink = format!(
        "    connector: kafka\n    brokers: {}\n    topic: {results}",
        broker.bootstrap()
    );
    let spec = count_spec(broker, tmp.path(), &topic, false, ", idleness: 1s", &sink);
    let cache = tmp.path().join("cache");
    let mut job = sluice()
        .args(["run", spec.to_str().unwrap(), "--quiet"])
        .env("SLUICE_CACHE_DIR", &cache)
        .env("XDG_RUNTIME_DIR", cache.join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Every window that ends at or before the last event's time fires (the watermark is
    // the last time − 1 ms); the last window stays open.
    let last = events.last().unwrap().1;
    let want: BTreeMap<_, _> = batch_counts(&events)
        .into_iter()
        .filter(|((_, start), _)| start + 10_000 <= last)
        .map(|(k, n)| (k, (n, 0)))
        .collect();
    let t = Instant::now();
    let got = loop {
        let got = counts_of(
            read_committed(&broker.bootstrap(), &results)
                .into_iter()
                .map(|r| String::from_utf8(r.value).unwrap()),
        );
        if got.len() >= want.len() || t.elapsed() > Duration::from_secs(60) {
            break got;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    job.kill().unwrap();
    job.wait().unwrap();
    assert_eq!(
        got, want,
        "the windows the data closed, each once with its count"
    );
}
