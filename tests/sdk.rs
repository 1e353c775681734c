//! Checks shared by the guest SDK tests (Python, TypeScript): an SDK's flights operator
//! against the Rust one, and the flights job run with it against the exact answer.

use crate::{flights, plugins};
use sluice_cli::job::JobResolver;
use sluice_core::batch::Batch;
use sluice_core::operator::{Operator, OperatorContext, VecCollector};
use sluice_core::spec::{self, Overrides};
use sluice_wasm::{Limits, LoadedComponent, WasmOperator};
use std::path::Path;

/// An opened operator of `component` with `config`, as subtask 0 of 1.
pub fn open(component: &LoadedComponent, config: &[(&str, &str)]) -> WasmOperator {
    let mut op = WasmOperator::new(component, plugins::config(config), Limits::default());
    op.open(&OperatorContext {
        operator_id: "operator".to_string(),
        subtask: 0,
        parallelism: 1,
    })
    .unwrap();
    op
}

/// `rows` as the file source's packed values (date, delay, distance, origin,
/// destination; no flights operator reads the distance or the destination, so they are
/// 0 and empty), in batches of `batch`.
pub fn flight_batches(rows: &[flights::Flight], batch: usize) -> Vec<Batch> {
    rows.chunks(batch)
        .map(|chunk| {
            let mut b = Batch::new();
            for f in chunk {
                let mut value = Vec::new();
                sluice_packed::Writer::new(&mut value)
                    .i64(f.date_ms)
                    .i64(f.delay)
                    .i64(0)
                    .str(&f.origin)
                    .str("");
                b.push(f.date_ms, b"", &value);
            }
            b
        })
        .collect()
}

/// Asserts that the flights operator `component` emits, batch by batch and event for
/// event, exactly what the Rust flights operator emits for the first 20,000 flights.
pub fn check_flights_operator_matches_rust(component: &LoadedComponent, label: &str) {
    let rows = flights::read_rows(&flights::dataset(), Some(20_000), None);
    let config = [("delayed_threshold_minutes", "15")];
    let mut rust = open(&plugins::load("flight_delays"), &config);
    let mut other = open(component, &config);
    for batch in flight_batches(&rows, 1024) {
        let (mut want, mut got) = (VecCollector::default(), VecCollector::default());
        rust.process_batch(batch.clone(), &mut want).unwrap();
        other.process_batch(batch, &mut got).unwrap();
        let events = |c: &VecCollector| -> Vec<(i64, Vec<u8>, Vec<u8>)> {
            c.events()
                .map(|e| (e.timestamp, e.key.to_vec(), e.value.to_vec()))
                .collect()
        };
        let (want, got) = (events(&want), events(&got));
        assert_eq!(got.len(), want.len(), "{label}: number of events");
        assert!(
            got == want,
            "{label}: the events differ from the Rust operator's"
        );
    }
}

/// Runs the repository's flights job over the first 30,000 flights with the operator at
/// `wasm` (memory cap `max_memory`, as the spec writes it) and asserts the exact answer,
/// every firing checked.
pub fn check_flights_job(wasm: &Path, max_memory: &str, label: &str) {
    check_flights_spec(
        &plugins::repo_root().join(flights::SPEC),
        "flights",
        |spec| {
            let op = &mut spec.operators[0].options;
            op.insert("wasm".into(), wasm.to_str().unwrap().into());
            op.insert(
                "limits".into(),
                serde_json::json!({"max_memory": max_memory, "time_per_call": "10s"}),
            );
        },
        label,
    );
}

/// Runs the flights job spec at `spec_path` (its first source replaced by the first
/// 30,000 flights; then `edit`ed), whose sinks write `../../out/<out>/*.jsonl`, and
/// asserts the exact answer, every firing checked.
pub fn check_flights_spec(
    spec_path: &Path,
    out: &str,
    edit: impl FnOnce(&mut spec::JobSpec),
    label: &str,
) {
    let tmp = tempfile::tempdir().unwrap();
    let slice = tmp.path().join("slice.parquet");
    let rows = flights::read_rows(&flights::dataset(), Some(30_000), Some(&slice));
    let answer = flights::exact_answer(&rows);
    let mut loaded = spec::load(spec_path).unwrap();
    let source = &mut loaded.spec.sources[0].options;
    source.insert("path".into(), slice.to_str().unwrap().into());
    source.remove("sha256");
    edit(&mut loaded.spec);
    // The spec writes ../../out/<out>/*.jsonl: out/<out>/ under `dir`.
    let dir = tmp.path().join("a/b");
    let resolver = JobResolver {
        wasm: plugins::runtime(),
        output_dir: Some(dir.clone()),
    };
    let graph = loaded
        .spec
        .to_graph(&loaded.dir, &resolver, Overrides::default())
        .unwrap();
    sluice_core::runtime::start(graph).unwrap().join().unwrap();
    let got = flights::read_output(&dir.join("out").join(out));
    flights::check_output(&answer, &got, label);
}

/// The typed error (code, message) an SDK's faults plugin returns for a one-event batch
/// whose value is `value` (time 1, key `k`). Panics if the call succeeds or faults.
pub fn error_for(op: &mut WasmOperator, value: &[u8]) -> (String, String) {
    let mut b = Batch::new();
    b.push(1, b"k", value);
    let err = op
        .process_batch(b, &mut VecCollector::default())
        .unwrap_err();
    let (code, message) = plugins::returned(&err);
    (code.to_string(), message.to_string())
}

/// Asserts that an SDK's faults plugin, after errors, still emits an event `fine` on the
/// main output and on side output `copies`.
pub fn check_usable_after_errors(op: &mut WasmOperator) {
    let mut b = Batch::new();
    b.push(1, b"k", b"fine");
    let mut out = VecCollector::default();
    op.process_batch(b, &mut out).unwrap();
    let main: Vec<_> = out.events().map(|e| e.value.to_vec()).collect();
    let side: Vec<_> = out
        .side_events("copies")
        .map(|e| e.value.to_vec())
        .collect();
    assert_eq!(main, vec![b"fine".to_vec()]);
    assert_eq!(side, vec![b"fine".to_vec()]);
}
