//! The runtime end to end with native operators and in-memory sources and sinks: window
//! results must equal an independent replay of the event-time rules, whatever the batch
//! size and parallelism.

use sluice_core::graph::*;
use sluice_core::window::AggregateFn;
use sluice_core::*;
use std::collections::BTreeMap;
use std::sync::Arc;

mod common;
use common::*;

/// A native operator that keys each JSON event by its "k" member; fails on "boom".
struct KeyByField;
struct KeyByFieldOp;
impl OperatorFactory for KeyByField {
    fn create(&self, _: usize, _: usize) -> Result<Box<dyn Operator>, OperatorError> {
        Ok(Box::new(KeyByFieldOp))
    }
}
impl Operator for KeyByFieldOp {
    fn process_batch(
        &mut self,
        batch: Batch,
        out: &mut dyn Collector,
    ) -> Result<(), OperatorError> {
        let mut o = Batch::with_capacity(batch.len(), batch.value_data().len());
        let mut origins = Vec::new();
        for (i, e) in batch.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_slice(e.value).unwrap();
            let k = v["k"].as_str().unwrap();
            if k == "boom" {
                return Err(OperatorError::Returned {
                    context: "keyer".into(),
                    code: "invalid-input".into(),
                    message: "boom".into(),
                });
            }
            if k == "panic" {
                panic!("a bug in a native operator");
            }
            if k == "skip" {
                continue; // filtered: marks must still land right
            }
            o.push(e.timestamp, k.as_bytes(), e.value);
            origins.push(i as u32);
        }
        o.remap_marks_from(batch.marks(), &origins, batch.len())
            .unwrap();
        out.collect(o);
        Ok(())
    }
}

/// A [`KeyByField`] operator vertex.
fn keyer(id: &str, parallelism: usize, input: Input) -> Vertex {
    Vertex {
        id: id.into(),
        parallelism,
        kind: VertexKind::Operator {
            factory: Arc::new(KeyByField),
            output_format: None,
        },
        inputs: vec![input],
    }
}

/// Joins `job`, failing the test (instead of hanging it) after 60 s.
fn join_within(job: runtime::RunningJob) -> Result<(), runtime::JobError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(job.join()));
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the job hangs")
}

fn events(n: usize, seed: u64) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    let mut x = seed;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let base = i as i64 * 10;
            // Mostly small disorder, sometimes very late.
            let r = rnd();
            let jitter = if r % 20 == 0 {
                (r % 900) as i64
            } else {
                (r % 40) as i64
            };
            let key = match rnd() % 6 {
                0 => "skip".to_string(),
                k => format!("key{k}"),
            };
            let x = (rnd() % 100) as i64 - 30;
            (
                base - jitter,
                vec![],
                format!(r#"{{"k":"{key}","x":{x}}}"#).into_bytes(),
            )
        })
        .collect()
}

/// Final window values by `(key, window start)`, and late events `(timestamp, key)`.
type Results = (BTreeMap<(String, i64), Final>, Vec<(i64, String)>);

#[derive(Debug, Clone, PartialEq)]
struct Final {
    count: i64,
    sum: i64,
    max: i64,
    firing: i64,
    timing: String,
}

/// Independent replay of the rules for tumbling windows.
fn reference(evs: &[(i64, Vec<u8>, Vec<u8>)], ooo: i64, size: i64, lateness: i64) -> Results {
    let mut max_seen: Option<i64> = None;
    let mut finals: BTreeMap<(String, i64), Final> = BTreeMap::new();
    let mut late = Vec::new();
    for (t, _, v) in evs {
        let wm = max_seen.map_or(i64::MIN, |m| m - ooo - 1);
        max_seen = Some(max_seen.map_or(*t, |m| m.max(*t)));
        let v: serde_json::Value = serde_json::from_slice(v).unwrap();
        let key = v["k"].as_str().unwrap().to_string();
        if key == "skip" {
            continue;
        }
        let x = v["x"].as_i64().unwrap();
        let start = t.div_euclid(size) * size;
        let end = start + size;
        if wm != i64::MIN && end - 1 + lateness <= wm {
            late.push((*t, key));
            continue;
        }
        let late_firing = wm != i64::MIN && end - 1 <= wm;
        let f = finals.entry((key, start)).or_insert(Final {
            count: 0,
            sum: 0,
            max: i64::MIN,
            firing: -1,
            timing: String::new(),
        });
        f.count += 1;
        f.sum += x;
        f.max = f.max.max(x);
        if late_firing {
            // If the window had fired on time before this event, that counted one firing.
            if f.firing == -1 && f.count > 1 {
                f.firing = 0;
            }
            f.firing += 1;
            f.timing = "late".into();
        }
    }
    for f in finals.values_mut() {
        if f.timing.is_empty() {
            f.firing = 0;
            f.timing = "on_time".into();
        }
    }
    (finals, late)
}

fn run(evs: &[(i64, Vec<u8>, Vec<u8>)], p: usize, batch: usize) -> Results {
    let results: Rows = Arc::default();
    let late: Rows = Arc::default();
    let graph = job(
        "t",
        ExecutionConfig {
            batch_size: batch,
            ..Default::default()
        },
        vec![
            memory_source("src", evs, 50),
            keyer("keyer", 1, edge(0, None, Partitioning::Forward)),
            tumbling(
                "win",
                p,
                100,
                200,
                vec![
                    agg("n", AggregateFn::Count, None),
                    agg("sum", AggregateFn::Sum, Some("x")),
                    agg("max", AggregateFn::Max, Some("x")),
                ],
                &[1],
            ),
            sink(
                "out",
                Arc::new(CollectSink(results.clone())),
                edge(2, None, Partitioning::Rebalance),
            ),
            sink(
                "late",
                Arc::new(CollectSink(late.clone())),
                edge(2, Some("late"), Partitioning::Rebalance),
            ),
        ],
    );
    let job = runtime::start(graph).unwrap();
    join_within(job).unwrap();
    let mut finals: BTreeMap<(String, i64), Final> = BTreeMap::new();
    for (_, _, v) in results.lock().unwrap().iter() {
        let v: serde_json::Value = serde_json::from_slice(v).unwrap();
        let key = (
            v["key"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
        );
        let f = Final {
            count: v["n"].as_i64().unwrap(),
            sum: v["sum"].as_i64().unwrap(),
            max: v["max"].as_i64().unwrap(),
            firing: v["firing"].as_i64().unwrap(),
            timing: v["timing"].as_str().unwrap().to_string(),
        };
        match finals.get(&key) {
            Some(old) if old.firing >= f.firing => {}
            _ => {
                finals.insert(key, f);
            }
        }
    }
    let mut late: Vec<(i64, String)> = late
        .lock()
        .unwrap()
        .iter()
        .map(|(t, k, _)| (*t, String::from_utf8(k.clone()).unwrap()))
        .collect();
    late.sort();
    (finals, late)
}

#[test]
fn window_results_match_an_independent_replay_for_every_batch_size_and_parallelism() {
    let evs = events(5000, 7);
    let (expect, mut expect_late) = reference(&evs, 50, 100, 200);
    expect_late.sort();
    assert!(!expect_late.is_empty(), "the data should have late events");
    assert!(
        expect.values().any(|f| f.timing == "late"),
        "the data should have late firings"
    );
    for p in [1, 2, 4] {
        for batch in [1, 7, 1024, 65536] {
            let (got, late) = run(&evs, p, batch);
            assert_eq!(late, expect_late, "late events, p={p} batch={batch}");
            assert_eq!(got.len(), expect.len(), "windows, p={p} batch={batch}");
            for (k, f) in &expect {
                assert_eq!(got.get(k), Some(f), "window {k:?}, p={p} batch={batch}");
            }
        }
    }
}

/// Runs `src -> keyer (parallelism 2, rebalanced) -> sink` over `events(n, seed)` with
/// event `bad` replaced by one keyed `poison` (`boom` makes the keyer return an error,
/// `panic` makes it panic), and returns the job's error.
fn run_keyer_job_with_poison(n: usize, seed: u64, bad: usize, poison: &str) -> runtime::JobError {
    let mut evs = events(n, seed);
    evs[bad].2 = format!(r#"{{"k":"{poison}","x":1}}"#).into_bytes();
    let results: Rows = Arc::default();
    let graph = job(
        "t",
        ExecutionConfig {
            batch_size: 64,
            channel_capacity: 1,
            ..Default::default()
        },
        vec![
            memory_source("src", &evs, 0),
            keyer("keyer", 2, edge(0, None, Partitioning::Rebalance)),
            sink(
                "out",
                Arc::new(CollectSink(results)),
                edge(1, None, Partitioning::Rebalance),
            ),
        ],
    );
    join_within(runtime::start(graph).unwrap()).unwrap_err()
}

#[test]
fn a_failing_operator_fails_the_job_with_its_error_and_nothing_hangs() {
    let err = run_keyer_job_with_poison(3000, 9, 2500, "boom");
    assert!(err.0.contains("keyer") && err.0.contains("boom"), "{err}");
}

/// Two sources whose event times advance at different speeds feed one window: the
/// window's watermark is the minimum of the two, so no event of the slow source is late
/// and every window fires once, on time, with the plain group-by answer.
#[test]
fn watermark_is_the_minimum_over_two_inputs() {
    let fast: Vec<_> = (0..4000i64)
        .map(|i| {
            (
                i * 50,
                vec![],
                format!(r#"{{"k":"a","x":{}}}"#, i % 7).into_bytes(),
            )
        })
        .collect();
    let slow: Vec<_> = (0..4000i64)
        .map(|i| {
            (
                i * 5,
                vec![],
                format!(r#"{{"k":"b","x":{}}}"#, i % 5).into_bytes(),
            )
        })
        .collect();
    // Plain group-by: count and sum per key and 1-second window.
    let mut expect: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for (evs, key) in [(&fast, "a"), (&slow, "b")] {
        for (t, _, v) in evs.iter() {
            let x = serde_json::from_slice::<serde_json::Value>(v).unwrap()["x"]
                .as_i64()
                .unwrap();
            let e = expect
                .entry((key.to_string(), t / 1000 * 1000))
                .or_default();
            e.0 += 1;
            e.1 += x;
        }
    }
    for batch in [1, 16, 1024] {
        let results: Rows = Arc::default();
        let late: Rows = Arc::default();
        let graph = job(
            "two-inputs",
            ExecutionConfig {
                batch_size: batch,
                channel_capacity: 2,
                ..Default::default()
            },
            vec![
                memory_source("fast", &fast, 0),
                memory_source("slow", &slow, 0),
                keyer("key-fast", 1, edge(0, None, Partitioning::Forward)),
                keyer("key-slow", 1, edge(1, None, Partitioning::Forward)),
                tumbling(
                    "win",
                    2,
                    1000,
                    0,
                    vec![
                        agg("n", AggregateFn::Count, None),
                        agg("sum", AggregateFn::Sum, Some("x")),
                    ],
                    &[2, 3],
                ),
                sink(
                    "out",
                    Arc::new(CollectSink(results.clone())),
                    edge(4, None, Partitioning::Rebalance),
                ),
                sink(
                    "late",
                    Arc::new(CollectSink(late.clone())),
                    edge(4, Some("late"), Partitioning::Rebalance),
                ),
            ],
        );
        join_within(runtime::start(graph).unwrap()).unwrap();
        assert!(
            late.lock().unwrap().is_empty(),
            "batch {batch}: no event may be late"
        );
        let mut got: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
        for (_, _, v) in results.lock().unwrap().iter() {
            let v: serde_json::Value = serde_json::from_slice(v).unwrap();
            assert_eq!(v["timing"], "on_time", "batch {batch}: {v}");
            let key = (
                v["key"].as_str().unwrap().to_string(),
                v["window_start"].as_i64().unwrap(),
            );
            let prev = got.insert(key, (v["n"].as_i64().unwrap(), v["sum"].as_i64().unwrap()));
            assert!(prev.is_none(), "batch {batch}: a window fired twice: {v}");
        }
        assert_eq!(got, expect, "batch {batch}");
    }
}

#[test]
fn a_panicking_subtask_fails_the_job_with_its_message() {
    let err = run_keyer_job_with_poison(2000, 11, 1500, "panic");
    assert!(
        err.0.contains("keyer") && err.0.contains("panicked: a bug in a native operator"),
        "{err}"
    );
}

/// A source that emits its events, then has nothing (Pending) until a row reaches
/// `release` (the rows of a sink) or 4 s pass, then ends. Records whether it was
/// released (true) or timed out.
struct StallingSource {
    events: Arc<Events>,
    release: Rows,
    released: Arc<std::sync::atomic::AtomicBool>,
}
struct StallingReader {
    inner: VecReader,
    release: Rows,
    released: Arc<std::sync::atomic::AtomicBool>,
    stalled_at: Option<std::time::Instant>,
}
impl SourceFactory for StallingSource {
    fn value_format(&self) -> ValueFormat {
        ValueFormat::Json
    }
    fn max_parallelism(&self) -> usize {
        1
    }
    fn create_reader(&self, _: usize, _: usize) -> Result<Box<dyn SourceReader>, ConnectorError> {
        Ok(Box::new(StallingReader {
            inner: VecReader {
                events: self.events.clone(),
                pos: 0,
            },
            release: self.release.clone(),
            released: self.released.clone(),
            stalled_at: None,
        }))
    }
}
impl SourceReader for StallingReader {
    fn poll_batch(&mut self, batch: &mut Batch, max: usize) -> Result<SourcePoll, ConnectorError> {
        use std::sync::atomic::Ordering::SeqCst;
        match self.inner.poll_batch(batch, max)? {
            SourcePoll::End => {
                let since = *self.stalled_at.get_or_insert_with(std::time::Instant::now);
                if !self.release.lock().unwrap().is_empty() {
                    self.released.store(true, SeqCst);
                    Ok(SourcePoll::End)
                } else if since.elapsed() > std::time::Duration::from_secs(4) {
                    Ok(SourcePoll::End)
                } else {
                    Ok(SourcePoll::Pending)
                }
            }
            other => Ok(other),
        }
    }
}

/// One of two sources goes quiet: with an idleness timeout it stops holding the
/// watermark back and the other source's windows fire while it is still quiet; without
/// one, nothing fires until it ends.
#[test]
fn an_idle_source_stops_holding_back_the_watermark() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let quiet: Events = (0..10i64)
        .map(|i| (i * 1000, vec![], br#"{"k":"q","x":1}"#.to_vec()))
        .collect();
    let busy: Events = (0..5000i64)
        .map(|i| (i * 1000, vec![], br#"{"k":"b","x":1}"#.to_vec()))
        .collect();
    for idleness in [Some(std::time::Duration::from_millis(200)), None] {
        // The quiet source is released as soon as a window result reaches the sink.
        let release: Rows = Arc::default();
        let released = Arc::new(AtomicBool::new(false));
        let stalling = StallingSource {
            events: Arc::new(quiet.clone()),
            release: release.clone(),
            released: released.clone(),
        };
        let graph = job(
            "idle",
            ExecutionConfig {
                batch_size: 100,
                ..Default::default()
            },
            vec![
                source("quiet", Arc::new(stalling), 0, idleness),
                source(
                    "busy",
                    Arc::new(VecSource {
                        events: Arc::new(busy.clone()),
                    }),
                    0,
                    idleness,
                ),
                keyer("key-quiet", 1, edge(0, None, Partitioning::Forward)),
                keyer("key-busy", 1, edge(1, None, Partitioning::Forward)),
                tumbling(
                    "win",
                    1,
                    60_000,
                    0,
                    vec![agg("n", AggregateFn::Count, None)],
                    &[2, 3],
                ),
                sink(
                    "out",
                    Arc::new(CollectSink(release.clone())),
                    edge(4, None, Partitioning::Forward),
                ),
            ],
        );
        join_within(runtime::start(graph).unwrap()).unwrap();
        assert_eq!(
            released.load(SeqCst),
            idleness.is_some(),
            "idleness {idleness:?}: windows fired while the quiet source was quiet?"
        );
    }
}
