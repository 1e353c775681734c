//! Failure policies of WASM operators (`on_failure`): `dead-letter` bisects a failing
//! batch down to exactly its poison records and sends those to the `dead-letter` side
//! output while the rest go on; a keyed operator's state written by a failed call is
//! rolled back; `skip` drops the failing batch; both count what they handled, and the
//! host lives through traps and limit hits. Answers are computed here from the input.

use serde_json::Value;
use sluice_core::runtime::JobMetrics;
use sluice_tests::plugins;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// The value of event `i`: `{"t":<i * 1000>,"k":"k<i % 7>"}`.
fn value(i: usize) -> String {
    format!("{{\"t\":{},\"k\":\"k{}\"}}", i * 1000, i % 7)
}

/// [`value`] as JSON.
fn json(i: usize) -> Value {
    serde_json::from_str(&value(i)).unwrap()
}

/// Writes `n` events into `in.jsonl` and a spec running them, in batches of
/// `batch_size`, through test-faults with `config` and `on_failure` (keyed by `k` when
/// `keyed`), into `out.jsonl`, and its dead-letter side output into `dlq.jsonl`.
fn spec(
    dir: &Path,
    n: usize,
    batch_size: usize,
    config: &str,
    on_failure: &str,
    keyed: bool,
) -> String {
    let lines: String = (0..n).map(|i| value(i) + "\n").collect();
    std::fs::write(dir.join("in.jsonl"), lines).unwrap();
    format!(
        r#"
name: policy
parallelism: {parallelism}
batch_size: {batch_size}
sources:
  - id: src
    connector: jsonl
    parallelism: 1
    path: in.jsonl
    event_time: {{field: t, format: epoch_ms}}
    watermarks: {{max_out_of_orderness: 0}}
    key: k
operators:
  - id: faulty
    input: src
    wasm: {wasm}
    config: {config}
    on_failure: {on_failure}
    {key_by}
sinks:
  - {{id: out, input: faulty, connector: jsonl, path: out.jsonl, parallelism: 1}}
  - {{id: dlq, input: faulty.dead-letter, connector: jsonl, path: dlq.jsonl, write: value, parallelism: 1}}
"#,
        parallelism = if keyed { 2 } else { 1 },
        wasm = plugins::wasm("test_faults").display(),
        key_by = if keyed { "key_by: key" } else { "" },
    )
}

/// Runs the spec; its figures, or the error that failed it.
fn run(dir: &Path, text: &str) -> Result<Arc<JobMetrics>, String> {
    plugins::run_spec(dir, text)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `(traps, limit hits, skipped, dead-lettered)` of the operator, over its subtasks.
fn counted(m: &JobMetrics) -> (u64, u64, u64, u64) {
    let v = m.vertex("faulty").unwrap();
    let sum = |f: fn(&sluice_core::runtime::FailureCounters) -> u64| {
        v.subtasks.iter().map(|s| f(&s.failures)).sum()
    };
    (
        sum(|c| c.traps.load(Relaxed)),
        sum(|c| c.limit_hits.load(Relaxed)),
        sum(|c| c.skipped_records.load(Relaxed)),
        sum(|c| c.dead_lettered_records.load(Relaxed)),
    )
}

/// Bisection in one batch of 8,192 events with the `poison` rows bad: the dead-letter
/// output holds exactly those, with the error; the main output every other event, in
/// order.
fn bisects_exactly(poison: &[usize]) {
    let dir = tempfile::tempdir().unwrap();
    let n = 8192;
    let bad: Vec<String> = poison.iter().map(|&i| value(i)).collect();
    let config = format!("{{mode: trap-on, poison: '{}'}}", bad.join("|"));
    let metrics = run(
        dir.path(),
        &spec(dir.path(), n, n, &config, "dead-letter", false),
    )
    .unwrap();

    let dlq = lines(&dir.path().join("dlq.jsonl"));
    let got: Vec<&Value> = dlq.iter().map(|d| &d["value"]).collect();
    let want: Vec<Value> = poison.iter().map(|&i| json(i)).collect();
    assert_eq!(
        got,
        want.iter().collect::<Vec<_>>(),
        "exactly the poison records, in order"
    );
    for (d, &i) in dlq.iter().zip(poison) {
        assert_eq!(d["operator"], "faulty");
        assert_eq!(d["timestamp"], (i * 1000) as u64);
        assert_eq!(d["key"], format!("k{}", i % 7));
        let error = d["error"].as_str().unwrap();
        assert!(
            error.contains("poison record") && error.contains("operator 'faulty'"),
            "{error}"
        );
    }
    let out: Vec<Value> = lines(&dir.path().join("out.jsonl"))
        .into_iter()
        .map(|mut o| o["value"].take())
        .collect();
    let expected: Vec<Value> = (0..n).filter(|i| !poison.contains(i)).map(json).collect();
    assert_eq!(out.len(), expected.len());
    assert!(out == expected, "every other event, once, in order");
    let (traps, _, skipped, dead) = counted(&metrics);
    assert_eq!((skipped, dead), (0, poison.len() as u64));
    assert!(traps >= poison.len() as u64, "{traps} traps");
}

#[test]
fn dead_letter_bisection_finds_the_one_bad_record_in_a_batch_of_8192() {
    plugins::build();
    bisects_exactly(&[5000]);
}

#[test]
fn dead_letter_bisection_finds_three_bad_records_in_a_batch_of_8192() {
    plugins::build();
    bisects_exactly(&[0, 4097, 8191]);
}

/// A keyed operator counts each key's events in state, counting a poison event before
/// it traps: the counts it emits are exactly 1, 2, ... per key over the good events,
/// so no write of a failed call survived its rollback.
#[test]
fn a_keyed_operators_state_written_by_a_failed_call_is_rolled_back() {
    plugins::build();
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000;
    let poison = [3, 777, 12_345, 19_999];
    let bad: Vec<String> = poison.iter().map(|&i| value(i)).collect();
    let config = format!("{{mode: count-trap-on, poison: '{}'}}", bad.join("|"));
    let metrics = run(
        dir.path(),
        &spec(dir.path(), n, 4096, &config, "dead-letter", true),
    )
    .unwrap();

    let mut dlq: Vec<i64> = lines(&dir.path().join("dlq.jsonl"))
        .iter()
        .map(|d| d["value"]["t"].as_i64().unwrap())
        .collect();
    dlq.sort();
    let want: Vec<i64> = poison.iter().map(|&i| i as i64 * 1000).collect();
    assert_eq!(dlq, want);
    // Per key: the counts emitted, in event-time order, are 1..=good events of the key.
    let mut counts: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    for o in lines(&dir.path().join("out.jsonl")) {
        let count: u64 = o["value"]
            .as_str()
            .map_or_else(|| o["value"].as_u64().unwrap(), |s| s.parse().unwrap());
        counts
            .entry(o["key"].as_str().unwrap().to_string())
            .or_default()
            .push((o["timestamp"].as_i64().unwrap(), count));
    }
    for k in 0..7 {
        let key = format!("k{k}");
        let good = (0..n).filter(|i| i % 7 == k && !poison.contains(i)).count() as u64;
        let mut c = counts.remove(&key).unwrap_or_default();
        c.sort();
        let got: Vec<u64> = c.iter().map(|(_, n)| *n).collect();
        assert_eq!(got, (1..=good).collect::<Vec<_>>(), "key {key}");
    }
    assert_eq!(counted(&metrics).3, poison.len() as u64);
}

/// `skip`: the batch holding the poison record is dropped whole (and counted), the
/// others go through.
#[test]
fn skip_drops_the_failing_batch_and_counts_it() {
    plugins::build();
    let dir = tempfile::tempdir().unwrap();
    let (n, batch) = (10_000, 1000);
    let config = format!("{{mode: trap-on, poison: '{}'}}", value(4321));
    let metrics = run(
        dir.path(),
        &spec(dir.path(), n, batch, &config, "skip", false),
    )
    .unwrap();
    let out: Vec<Value> = lines(&dir.path().join("out.jsonl"))
        .into_iter()
        .map(|mut o| o["value"].take())
        .collect();
    let expected: Vec<Value> = (0..n).filter(|i| i / batch != 4).map(json).collect();
    assert!(
        out == expected,
        "all but the batch of rows 4000..5000: {} events",
        out.len()
    );
    assert_eq!(counted(&metrics), (1, 0, batch as u64, 0));
    assert!(lines(&dir.path().join("dlq.jsonl")).is_empty());
}

/// A memory bomb on every call under `skip`: each batch hits the memory limit and is
/// dropped; the job finishes (the host lives) with every event counted as skipped.
#[test]
fn a_memory_bomb_under_skip_hits_the_limit_every_batch_and_the_job_finishes() {
    plugins::build();
    let dir = tempfile::tempdir().unwrap();
    let text = spec(dir.path(), 3000, 1000, "{mode: memory-bomb}", "skip", false).replace(
        "on_failure: skip",
        "on_failure: skip\n    limits: {max_memory: 16MiB}",
    );
    let metrics = run(dir.path(), &text).unwrap();
    assert!(lines(&dir.path().join("out.jsonl")).is_empty());
    assert_eq!(counted(&metrics), (0, 3, 3000, 0));
}

#[test]
fn an_unknown_failure_policy_is_refused_naming_the_field() {
    plugins::build();
    let dir = tempfile::tempdir().unwrap();
    let err = run(
        dir.path(),
        &spec(dir.path(), 10, 10, "{mode: side}", "retry", false),
    )
    .unwrap_err();
    assert!(
        err.contains("operators[0].on_failure") && err.contains("unknown failure policy 'retry'"),
        "{err}"
    );
}

/// An output flood (1,000 events out per event in) over `max_output_events`: a limit
/// fault that fails the job with a message naming the limit under `fail`, and drops
/// each batch under `skip`.
#[test]
fn an_output_flood_hits_the_output_limit() {
    plugins::build();
    let dir = tempfile::tempdir().unwrap();
    let with_limit = |policy: &str| {
        spec(dir.path(), 500, 100, "{mode: flood}", policy, false).replace(
            &format!("on_failure: {policy}"),
            &format!("on_failure: {policy}\n    limits: {{max_output_events: 10000}}"),
        )
    };
    let err = run(dir.path(), &with_limit("fail")).unwrap_err();
    assert!(
        err.contains("operator 'faulty'")
            && err.contains("process emitted 100000 events, more than its limit of 10000 per call (limits.max_output_events)"),
        "{err}"
    );
    let metrics = run(dir.path(), &with_limit("skip")).unwrap();
    assert_eq!(counted(&metrics), (0, 5, 500, 0));
    assert!(lines(&dir.path().join("out.jsonl")).is_empty());
}

/// A trap on one record in a million, under `dead-letter`: the job finishes with that
/// record dead-lettered and the 999,999 others through, in order.
#[test]
fn one_poison_record_in_a_million_is_dead_lettered_and_the_rest_go_through() {
    plugins::build();
    let dir = tempfile::tempdir().unwrap();
    let n = 1_000_000;
    let config = format!("{{mode: trap-on, poison: '{}'}}", value(654_321));
    let metrics = run(
        dir.path(),
        &spec(dir.path(), n, 8192, &config, "dead-letter", false),
    )
    .unwrap();
    let dlq = lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["value"], json(654_321));
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let mut count = 0;
    for (line, i) in out.lines().zip((0..n).filter(|&i| i != 654_321)) {
        let o: Value = serde_json::from_str(line).unwrap();
        assert_eq!(o["value"], json(i));
        count += 1;
    }
    assert_eq!(count, n - 1);
    assert_eq!(out.lines().count(), n - 1);
    assert_eq!(counted(&metrics).3, 1);
}
