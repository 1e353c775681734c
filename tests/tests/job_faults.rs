//! A faulty WASM operator inside a running job: the job fails with a clear error that
//! names the operator, the host does not panic or hang, and the other subtasks stop.
//! Also: a side output of a WASM operator reaches its sink.

use sluice_tests::plugins;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes 20,000 JSON-lines events (value `{"t":..}`, one every second) and a spec that
/// runs them through the test-faults operator with `mode` and extra config, into a
/// window at parallelism 2, and the operator's `copy` side output into a sink and into
/// a second window.
fn job(dir: &Path, config: &str, limits: &str) -> String {
    let lines: String = (0..20_000)
        .map(|i| format!("{{\"t\":{}}}\n", i * 1000))
        .collect();
    std::fs::write(dir.join("in.jsonl"), lines).unwrap();
    let wasm = plugins::wasm("test_faults");
    format!(
        r#"
name: faults
parallelism: 2
batch_size: 256
sources:
  - id: src
    connector: jsonl
    path: in.jsonl
    event_time: {{field: t, format: epoch_ms}}
    watermarks: {{max_out_of_orderness: 0}}
operators:
  - id: faulty
    input: src
    wasm: {wasm}
    config: {config}
    limits: {limits}
windows:
  - id: counts
    input: faulty
    window: {{type: tumbling, size: 1m}}
    aggregates: [{{name: n, fn: count}}]
  - id: copy-counts
    input: faulty.copy
    window: {{type: tumbling, size: 1h}}
    aggregates: [{{name: n, fn: count}}]
sinks:
  - {{id: out, input: counts, connector: jsonl, path: out/counts.jsonl}}
  - {{id: copies, input: faulty.copy, connector: jsonl, path: out/copies.jsonl}}
  - {{id: copy-counts-out, input: copy-counts, connector: jsonl, path: out/copy-counts.jsonl, write: value}}
"#,
        wasm = wasm.display()
    )
}

fn run(dir: &Path, spec_text: &str) -> Result<(), String> {
    plugins::run_spec(dir, spec_text).map(|_| ())
}

fn fails_with(config: &str, limits: &str, expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let err = run(dir.path(), &job(dir.path(), config, limits)).expect_err("the job must fail");
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t.elapsed()
    );
    for e in expect {
        assert!(err.contains(e), "error {err:?} should contain {e:?}");
    }
}

#[test]
fn a_trap_on_one_record_fails_the_job_naming_the_operator() {
    fails_with(
        r#"{mode: trap-on, poison: '{"t":12345000}'}"#,
        "{}",
        &[
            "operator 'faulty'",
            "poison record: {\"t\":12345000}",
            // The guest's call stack, demangled.
            "wasm backtrace",
            "::panicking::panic_with_hook",
        ],
    );
}

#[test]
fn a_memory_bomb_hits_the_cap_and_the_host_lives() {
    fails_with(
        "{mode: memory-bomb}",
        "{max_memory: 16MiB}",
        &["operator 'faulty'", "memory limit of 16 MiB"],
    );
}

#[test]
fn an_infinite_loop_is_stopped_by_the_time_limit() {
    fails_with(
        "{mode: infinite-loop}",
        "{time_per_call: 200ms}",
        &["operator 'faulty'", "time limit of 200 ms"],
    );
}

#[test]
fn a_typed_error_fails_the_job_with_the_guests_message() {
    fails_with(
        "{mode: error}",
        "{}",
        &["operator 'faulty'", "invalid-input"],
    );
}

#[test]
fn a_component_of_another_world_is_refused_before_the_job_starts() {
    let dir = tempfile::tempdir().unwrap();
    let text = job(dir.path(), "{mode: side}", "{}").replace(
        plugins::wasm("test_faults").to_str().unwrap(),
        plugins::wasm("test_other_world").to_str().unwrap(),
    );
    let err = run(dir.path(), &text).unwrap_err();
    assert!(
        err.contains("operators[0].wasm") && err.contains("does not implement"),
        "{err}"
    );
}

#[test]
fn side_outputs_of_an_operator_reach_their_sink() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &job(dir.path(), "{mode: side}", "{}")).unwrap();
    // Every input event copied once, event time and value intact (the operator declares
    // no output format: the sink writes the value as its bytes).
    let copies = std::fs::read_to_string(dir.path().join("out/copies.jsonl")).unwrap();
    let mut copied: Vec<(i64, String)> = copies
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let bytes: Vec<u8> =
                serde_json::from_value(v["value"].clone()).unwrap_or_else(|e| panic!("{e}: {l}"));
            (
                v["timestamp"].as_i64().unwrap(),
                String::from_utf8(bytes).unwrap(),
            )
        })
        .collect();
    copied.sort();
    let want: Vec<(i64, String)> = (0..20_000)
        .map(|i| (i * 1000, format!("{{\"t\":{}}}", i * 1000)))
        .collect();
    assert!(copied == want, "the copies are not the input");
    assert_eq!(
        sum(&dir.path().join("out/counts.jsonl"), "/value/n"),
        20_000
    );
    // A window fed by the side output gets its watermarks too, and fires every window.
    assert_eq!(sum(&dir.path().join("out/copy-counts.jsonl"), "/n"), 20_000);
}

/// The sum of the number at JSON `pointer` over the lines of the JSON-lines file `path`.
fn sum(path: &Path, pointer: &str) -> i64 {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.pointer(pointer)
                .and_then(|n| n.as_i64())
                .unwrap_or_else(|| panic!("no number at {pointer} in {l}"))
        })
        .sum()
}

#[test]
fn a_sink_that_cannot_be_created_fails_the_start_and_stops_what_started() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocker"), "a file, not a folder").unwrap();
    let text = job(dir.path(), "{mode: side}", "{}")
        .replace("path: out/copies.jsonl", "path: blocker/copies.jsonl");
    let t = Instant::now();
    let err = run(dir.path(), &text).unwrap_err();
    assert!(err.contains("copies") && err.contains("blocker"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn an_operator_declaring_json_output_that_emits_other_bytes_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    // `clock` replaces each value by 8 bytes of time: not JSON.
    let text = job(dir.path(), "{mode: clock}", "{}").replace(
        "    limits: {}\n",
        "    limits: {}\n    output: {format: json}\n",
    );
    assert!(text.contains("output: {format: json}"));
    let err = run(dir.path(), &text).unwrap_err();
    assert!(
        err.contains("operator 'faulty'") && err.contains("not JSON"),
        "{err}"
    );
}
