//! Checkpoints, recovery and savepoints end to end with native operators: a keyed
//! counting operator (keyed value state) and a tumbling window feed exactly-once sinks;
//! the committed output must equal an independent batch computation over the same
//! events, whatever failures, restarts, savepoints and rescales happen in between.

use sluice_core::checkpoint::{CheckpointConfig, CheckpointStorage, MemoryStorage};
use sluice_core::graph::*;
use sluice_core::runtime::{JobOutcome, RestartStrategy, StartFrom, Supervisor};
use sluice_core::state::{KeyedStateStore, StateDescriptor, StateId, StateKind};
use sluice_core::window::AggregateFn;
use sluice_core::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::*;

/// Counts events per key in keyed value state `count`; emits `(ts, key, count)`. Fails
/// once (the first time, over all attempts) when it sees the event with value `fail_at`.
struct Counter {
    fail_at: Option<u64>,
    failed: Arc<AtomicBool>,
    /// At every `n`th event it processes, subtask 0 stalls this long: its output stops, the
    /// channels behind it fill, and a barrier behind them is stuck (backpressure).
    stall: Option<(u64, Duration)>,
}
struct CounterOp {
    fail_at: Option<u64>,
    failed: Arc<AtomicBool>,
    stall: Option<(u64, Duration)>,
    /// Events this instance processed.
    seen: u64,
    store: Option<(KeyedStateStore, StateId)>,
}
impl OperatorFactory for Counter {
    fn create(&self, subtask: usize, _: usize) -> Result<Box<dyn Operator>, OperatorError> {
        Ok(Box::new(CounterOp {
            fail_at: self.fail_at,
            failed: self.failed.clone(),
            stall: self.stall.filter(|_| subtask == 0),
            seen: 0,
            store: None,
        }))
    }
}
impl Operator for CounterOp {
    fn initialize_state(&mut self, state: operator::StateContext) -> Result<(), OperatorError> {
        let mut store = state.keyed.expect("a keyed input");
        let id = store
            .declare(StateDescriptor {
                name: "count".into(),
                kind: StateKind::Value,
                ttl_ms: None,
            })
            .unwrap();
        self.store = Some((store, id));
        Ok(())
    }
    fn keyed_state(&mut self) -> Option<&mut KeyedStateStore> {
        self.store.as_mut().map(|(s, _)| s)
    }
    fn process_batch(&mut self, b: Batch, out: &mut dyn Collector) -> Result<(), OperatorError> {
        let (store, id) = self.store.as_mut().unwrap();
        let mut o = Batch::with_capacity(b.len(), b.len() * 8);
        for e in b.iter() {
            let v: serde_json::Value = serde_json::from_slice(e.value).unwrap();
            self.seen += 1;
            if let Some((n, pause)) = self.stall
                && self.seen.is_multiple_of(n)
            {
                std::thread::sleep(pause);
            }
            if Some(v["v"].as_u64().unwrap()) == self.fail_at && !self.failed.swap(true, SeqCst) {
                return Err(OperatorError::Fault {
                    context: "counter".into(),
                    message: "injected failure".into(),
                });
            }
            store.set_current_key(e.key);
            let n = store
                .value_get(*id)
                .unwrap()
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
                + 1;
            store.value_set(*id, &n.to_le_bytes()).unwrap();
            o.push(e.timestamp, e.key, n.to_string().as_bytes());
        }
        let origins: Vec<u32> = (0..b.len() as u32).collect();
        o.remap_marks_from(b.marks(), &origins, b.len()).unwrap();
        out.collect(o);
        Ok(())
    }
}

/// `n` events over `keys` keys, event time advancing ~7 ms per event with up to 40 ms
/// of disorder; value `{"v": i}`.
fn events(n: u64, keys: u64) -> Events {
    (0..n)
        .map(|i| {
            let ts = 1_700_000_000_000 + (i * 7) as i64 - ((i * 7919) % 41) as i64;
            let key = format!("k{}", (i * 2_654_435_761) % keys);
            (ts, key.into_bytes(), format!("{{\"v\":{i}}}").into_bytes())
        })
        .collect()
}

/// Per key, the counts committed.
type Counts = BTreeSet<(Vec<u8>, u64)>;
/// Per key and window start, the event count.
type Windows = BTreeMap<(Vec<u8>, i64), u64>;

/// What a failure-free run commits: per key, the counts `1..=n` once each; per key and
/// 1 s window, the event count.
fn exact(events: &Events) -> (Counts, Windows) {
    let mut per_key: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut windows = BTreeMap::new();
    for (ts, k, _) in events {
        *per_key.entry(k.clone()).or_default() += 1;
        *windows
            .entry((k.clone(), ts - ts.rem_euclid(1000)))
            .or_default() += 1;
    }
    let counts = per_key
        .into_iter()
        .flat_map(|(k, n)| (1..=n).map(move |i| (k.clone(), i)))
        .collect();
    (counts, windows)
}

struct Sinks {
    counts: Arc<Mutex<TxLog>>,
    windows: Arc<Mutex<TxLog>>,
}

impl Sinks {
    fn new() -> Self {
        Sinks {
            counts: Default::default(),
            windows: Default::default(),
        }
    }

    /// Committed counts, with duplicates detected.
    fn counts(&self) -> Counts {
        let log = self.counts.lock().unwrap();
        let mut set = BTreeSet::new();
        for (_, k, v) in &log.committed {
            let n: u64 = std::str::from_utf8(v).unwrap().parse().unwrap();
            assert!(
                set.insert((k.clone(), n)),
                "count {n} of key {k:?} committed twice"
            );
        }
        set
    }

    fn windows(&self) -> Windows {
        let log = self.windows.lock().unwrap();
        let mut map = BTreeMap::new();
        for (_, _, v) in &log.committed {
            let v: serde_json::Value = serde_json::from_slice(v).unwrap();
            let key = v["key"].as_str().unwrap().as_bytes().to_vec();
            let start = v["window_start"].as_i64().unwrap();
            assert_eq!(v["firing"], 0, "no late data here: one firing per window");
            let old = map.insert((key, start), v["n"].as_u64().unwrap());
            assert!(old.is_none(), "window {start} committed twice");
        }
        map
    }
}

/// source -> counter (keyed, `p`) -> counts sink; source -> window (keyed, `p`) -> sink.
fn graph(
    events: &Events,
    p: usize,
    sinks: &Sinks,
    storage: &Arc<dyn CheckpointStorage>,
    dir: &std::path::Path,
    fail_at: Option<u64>,
    failed: &Arc<AtomicBool>,
) -> Arc<JobGraph> {
    let tuning = Tuning {
        stall: None,
        checkpoint_timeout: Duration::from_secs(30),
        source_pause: Duration::from_millis(2),
    };
    graph_tuned(events, p, sinks, storage, dir, (fail_at, failed), tuning)
}

/// A slow counter subtask, the checkpoints' timeout, the source's pause per batch.
struct Tuning {
    stall: Option<(u64, Duration)>,
    checkpoint_timeout: Duration,
    source_pause: Duration,
}

/// [`graph`], with `tuning`.
fn graph_tuned(
    events: &Events,
    p: usize,
    sinks: &Sinks,
    storage: &Arc<dyn CheckpointStorage>,
    dir: &std::path::Path,
    (fail_at, failed): (Option<u64>, &Arc<AtomicBool>),
    tuning: Tuning,
) -> Arc<JobGraph> {
    let src = source(
        "events",
        Arc::new(SlowSource {
            events: Arc::new(events.clone()),
            pause: tuning.source_pause,
        }),
        50,
        None,
    );
    let counter = Vertex {
        id: "counter".into(),
        parallelism: p,
        kind: VertexKind::Operator {
            factory: Arc::new(Counter {
                fail_at,
                failed: failed.clone(),
                stall: tuning.stall,
            }),
            output_format: Some(ValueFormat::Json),
        },
        inputs: vec![edge(0, None, Partitioning::KeyBy)],
    };
    let counts_sink = sink(
        "counts",
        Arc::new(TxSink(sinks.counts.clone())),
        edge(1, None, Partitioning::Rebalance),
    );
    // Allowed lateness keeps fired windows in state across snapshots: a restore must not
    // fire them on time again.
    let window = tumbling(
        "window",
        p,
        1000,
        500,
        vec![agg("n", AggregateFn::Count, None)],
        &[0],
    );
    let windows_sink = sink(
        "windows",
        Arc::new(TxSink(sinks.windows.clone())),
        edge(3, None, Partitioning::Rebalance),
    );
    let mut g = job(
        "checkpointed",
        ExecutionConfig {
            batch_size: 50,
            ..Default::default()
        },
        vec![src, counter, counts_sink, window, windows_sink],
    );
    g.durability.state_dir = dir.to_path_buf();
    g.durability.checkpoints = Some(CheckpointConfig {
        interval: Duration::from_millis(20),
        storage: storage.clone(),
        retain: 2,
        timeout: tuning.checkpoint_timeout,
    });
    g.durability.restart = RestartStrategy::FixedDelay {
        attempts: 3,
        delay: Duration::from_millis(10),
        reset_after: None,
    };
    Arc::new(g)
}

/// Waits (at most 120 s) for the end; returns the outcome, restarts and the ids of the
/// completed checkpoints.
fn finish_counting(s: Supervisor) -> (JobOutcome, u32, Vec<u64>) {
    let t = std::time::Instant::now();
    while !s.is_finished() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the job did not end within 120 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let restarts = s.restarts();
    let ids = s.checkpoints().iter().map(|c| c.id).collect();
    (s.join().expect("the job failed"), restarts, ids)
}

fn finish(s: Supervisor) -> JobOutcome {
    finish_counting(s).0
}

#[test]
fn a_failure_mid_stream_is_recovered_exactly_once() {
    let ev = events(12_000, 40);
    let (counts, windows) = exact(&ev);
    let sinks = Sinks::new();
    let storage: Arc<dyn CheckpointStorage> = Arc::new(MemoryStorage::new());
    let dir = tempfile::tempdir().unwrap();
    let failed = Arc::new(AtomicBool::new(false));
    let g = graph(&ev, 2, &sinks, &storage, dir.path(), Some(8_000), &failed);
    let s = Supervisor::start(g, StartFrom::Latest).unwrap();
    let (outcome, restarts, checkpoints) = finish_counting(s);
    assert_eq!(outcome, JobOutcome::Finished);
    assert!(failed.load(SeqCst), "the failure was injected");
    assert_eq!(restarts, 1);
    assert!(checkpoints.len() >= 2, "checkpoints {checkpoints:?}");
    assert_eq!(sinks.counts(), counts, "counts: exactly once");
    assert_eq!(sinks.windows(), windows, "windows: exactly once");
    // A finished job's checkpoints are deleted.
    assert!(storage.list("checkpointed").unwrap().is_empty());
}

#[test]
fn checkpoints_aborted_while_a_barrier_is_stuck_behind_backpressure_lose_nothing() {
    // Counter subtask 0 stalls 300 ms at every 2000th event it gets: the counts sink
    // aligns barriers from both counter subtasks, gets subtask 1's at once and subtask
    // 0's late, after the checkpoint timed out (100 ms) and was aborted. The late
    // barrier is obsolete: it must not pause its input, and later checkpoints complete.
    let ev = events(12_000, 40);
    let (counts, windows) = exact(&ev);
    let sinks = Sinks::new();
    let storage: Arc<dyn CheckpointStorage> = Arc::new(MemoryStorage::new());
    let dir = tempfile::tempdir().unwrap();
    let failed = Arc::new(AtomicBool::new(false));
    let tuning = Tuning {
        stall: Some((2000, Duration::from_millis(300))),
        checkpoint_timeout: Duration::from_millis(100),
        source_pause: Duration::from_millis(5),
    };
    let g = graph_tuned(
        &ev,
        2,
        &sinks,
        &storage,
        dir.path(),
        (None, &failed),
        tuning,
    );
    let (outcome, _, ids) = finish_counting(Supervisor::start(g, StartFrom::Latest).unwrap());
    assert_eq!(outcome, JobOutcome::Finished);
    // Ids are given at the trigger: a gap is a checkpoint that was aborted.
    let aborted = ids.windows(2).any(|w| w[1] > w[0] + 1) || ids.first().is_some_and(|&f| f > 1);
    assert!(
        aborted,
        "some checkpoint should time out: completed {ids:?}"
    );
    assert!(!ids.is_empty(), "checkpoints complete after aborted ones");
    assert_eq!(sinks.counts(), counts, "counts: exactly once");
    assert_eq!(sinks.windows(), windows, "windows: exactly once");
}

#[test]
fn savepoints_rescale_from_2_to_4_to_1_without_losing_or_repeating_anything() {
    // ~1.2 s of input: both stops land mid-stream.
    let ev = events(30_000, 64);
    let (counts, windows) = exact(&ev);
    let sinks = Sinks::new();
    let storage: Arc<dyn CheckpointStorage> = Arc::new(MemoryStorage::new());
    let dir = tempfile::tempdir().unwrap();
    let failed = Arc::new(AtomicBool::new(false));
    let mut from = StartFrom::Scratch;
    for p in [2, 4] {
        let g = graph(&ev, p, &sinks, &storage, dir.path(), None, &failed);
        let s = Supervisor::start(g, from).unwrap();
        std::thread::sleep(Duration::from_millis(120));
        let folder = s.savepoint(true).expect("stop with savepoint");
        assert_eq!(
            finish(s),
            JobOutcome::Stopped {
                savepoint: folder.clone()
            }
        );
        assert!(storage.get(&format!("{folder}/_metadata")).is_ok());
        from = StartFrom::Savepoint {
            folder,
            allow_non_restored_state: false,
        };
    }
    let partial = sinks.counts().len();
    assert!(
        partial > 0 && partial < counts.len(),
        "stopped mid-stream ({partial})"
    );
    let g = graph(&ev, 1, &sinks, &storage, dir.path(), None, &failed);
    assert_eq!(
        finish(Supervisor::start(g, from).unwrap()),
        JobOutcome::Finished
    );
    assert_eq!(
        sinks.counts(),
        counts,
        "counts: exactly once across rescales"
    );
    assert_eq!(
        sinks.windows(),
        windows,
        "windows: exactly once across rescales"
    );
}

#[test]
fn a_corrupted_checkpoint_is_reported_and_the_one_before_is_used() {
    // Long enough (~1.2 s) to be cancelled mid-stream after a few checkpoints.
    let ev = events(30_000, 16);
    let storage: Arc<dyn CheckpointStorage> = Arc::new(MemoryStorage::new());
    let dir = tempfile::tempdir().unwrap();
    let failed = Arc::new(AtomicBool::new(false));
    let first = Sinks::new();
    let g = graph(&ev, 2, &first, &storage, dir.path(), None, &failed);
    let s = Supervisor::start(g, StartFrom::Latest).unwrap();
    // Two checkpoints after the first one that committed counts, so that the one the
    // restore falls back to holds counter state (on a loaded machine the first
    // checkpoints may complete before any event was counted).
    let wait_for = |done: &dyn Fn() -> bool, what: &str| {
        while !done() {
            assert!(!s.is_finished(), "the job ended before {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(
        &|| !first.counts.lock().unwrap().committed.is_empty(),
        "a checkpoint committed counts",
    );
    let counted = s.checkpoints().len();
    wait_for(
        &|| s.checkpoints().len() >= counted + 2,
        "two more checkpoints",
    );
    s.cancel();
    assert!(s.join().is_err(), "cancelled");
    let ids = sluice_core::checkpoint::list_checkpoints(storage.as_ref(), "checkpointed").unwrap();
    assert_eq!(ids.len(), 2, "two retained: {ids:?}");
    // Corrupt one state file of the newest.
    let newest = sluice_core::checkpoint::checkpoint_folder("checkpointed", ids[0]);
    let victim = storage
        .list(&newest)
        .unwrap()
        .into_iter()
        .find(|p| p.contains("/counter/") && !p.ends_with("_metadata"))
        .expect("a state file of the counter");
    let mut bytes = storage.get(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    storage.put(&victim, bytes).unwrap();

    let second = Sinks::new();
    let g = graph(&ev, 2, &second, &storage, dir.path(), None, &failed);
    let s = Supervisor::start(g, StartFrom::Latest).unwrap();
    let events_log = s.events();
    assert!(
        events_log.iter().any(|e| e
            .message
            .contains(&format!("checkpoint {} cannot be used", ids[0]))
            && e.message.contains("corrupted")),
        "{events_log:?}"
    );
    assert_eq!(finish(s), JobOutcome::Finished);
    // The second run continued from the older checkpoint's state: per key, its counts
    // are one contiguous run ending at the key's total, starting after what that
    // checkpoint had counted (above 1 for some key).
    let totals = ev
        .iter()
        .fold(BTreeMap::<Vec<u8>, u64>::new(), |mut m, (_, k, _)| {
            *m.entry(k.clone()).or_default() += 1;
            m
        });
    let mut by_key: BTreeMap<Vec<u8>, Vec<u64>> = BTreeMap::new();
    for (k, n) in second.counts() {
        by_key.entry(k).or_default().push(n);
    }
    let mut resumed = false;
    for (k, total) in &totals {
        let got = by_key.get(k).cloned().unwrap_or_default();
        if let (Some(first), Some(last)) = (got.first(), got.last()) {
            assert_eq!(*last, *total, "key {k:?} ends at its total");
            assert_eq!(got.len() as u64, last - first + 1, "key {k:?}: contiguous");
            resumed |= *first > 1;
        }
    }
    assert!(resumed, "state was restored, not started from scratch");
}

#[test]
fn state_of_an_operator_the_job_no_longer_has_fails_the_restore_unless_allowed() {
    let ev = events(6_000, 8);
    let sinks = Sinks::new();
    let storage: Arc<dyn CheckpointStorage> = Arc::new(MemoryStorage::new());
    let dir = tempfile::tempdir().unwrap();
    let failed = Arc::new(AtomicBool::new(false));
    let g = graph(&ev, 2, &sinks, &storage, dir.path(), None, &failed);
    let s = Supervisor::start(g, StartFrom::Scratch).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let folder = s.savepoint(true).expect("stop with savepoint");
    finish(s);
    // The same job with the counter renamed: its state has no operator to go to.
    let renamed = |allow: bool| {
        let g = graph(&ev, 2, &sinks, &storage, dir.path(), None, &failed);
        let mut g = Arc::try_unwrap(g).ok().unwrap();
        g.vertices[1].id = "counter-v2".into();
        Supervisor::start(
            Arc::new(g),
            StartFrom::Savepoint {
                folder: folder.clone(),
                allow_non_restored_state: allow,
            },
        )
    };
    let e = renamed(false).err().expect("refused").0;
    assert!(
        e.contains("has state for operator 'counter'") && e.contains("allow non-restored state"),
        "{e}"
    );
    assert_eq!(finish(renamed(true).unwrap()), JobOutcome::Finished);
}

/// A job that fails for good before any checkpoint completed commits nothing: its sinks
/// neither commit what no checkpoint covers nor finish (which commits everything), even
/// when every input of a sink vanishes with the failure.
#[test]
fn a_failed_job_commits_nothing_that_no_checkpoint_covers() {
    for _ in 0..5 {
        let ev = events(3_000, 8);
        let sinks = Sinks::new();
        let storage: Arc<dyn CheckpointStorage> = Arc::new(MemoryStorage::new());
        let dir = tempfile::tempdir().unwrap();
        let failed = Arc::new(AtomicBool::new(false));
        let g = graph(&ev, 1, &sinks, &storage, dir.path(), Some(2_000), &failed);
        let mut g = Arc::try_unwrap(g).ok().unwrap();
        let checkpoints = g.durability.checkpoints.as_mut().unwrap();
        checkpoints.interval = Duration::from_secs(3600);
        g.durability.restart = RestartStrategy::None;
        let s = Supervisor::start(Arc::new(g), StartFrom::Scratch).unwrap();
        let e = s.join().expect_err("the job fails");
        assert!(e.0.contains("injected failure"), "{e}");
        assert!(failed.load(SeqCst));
        assert_eq!(sinks.counts.lock().unwrap().committed.len(), 0, "counts");
        assert_eq!(sinks.windows.lock().unwrap().committed.len(), 0, "windows");
    }
}
