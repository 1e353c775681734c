//! The Python guest SDK (`guest-sdk/python`, built with componentize-py):
//!
//! * the flights operator in Python (`plugins/flight-delays-py`) emits, event for event,
//!   exactly what the Rust one (`plugins/flight-delays`) emits for the same batches, and
//!   the flights job run with it gives the exact answer;
//! * a Python exception becomes a typed `internal` error carrying the exception and its
//!   traceback; `OperatorError` keeps its code; the host stays usable after both.

use sluice_cli::job::JobResolver;
use sluice_core::batch::Batch;
use sluice_core::operator::{Operator, OperatorContext, OperatorError, VecCollector};
use sluice_core::spec::{self, Overrides};
use sluice_tests::{flights, plugins};
use sluice_wasm::{Limits, WasmOperator};

/// `rows` as the file source's packed values, in batches of `batch`.
fn flight_batches(rows: &[flights::Flight], batch: usize) -> Vec<Batch> {
    rows.chunks(batch)
        .map(|chunk| {
            let mut b = Batch::new();
            for f in chunk {
                let mut value = Vec::new();
                // date, delay, distance, origin, destination (the test reads no distance
                // or destination: both operators skip them).
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

fn ctx(id: &str) -> OperatorContext {
    OperatorContext {
        operator_id: id.to_string(),
        subtask: 0,
        parallelism: 1,
    }
}

fn open(component: &sluice_wasm::LoadedComponent) -> WasmOperator {
    let mut op = WasmOperator::new(
        component,
        plugins::config(&[("delayed_threshold_minutes", "15")]),
        Limits::default(),
    );
    op.open(&ctx("flight-delays")).unwrap();
    op
}

#[test]
fn the_python_flights_operator_emits_exactly_the_rust_operators_events() {
    let rows = flights::read_rows(&flights::dataset(), Some(20_000), None);
    let rust = plugins::load("flight_delays");
    let python = plugins::runtime()
        .load_component(plugins::python_wasm("flight-delays-py"))
        .unwrap();
    let (mut r, mut p) = (open(&rust), open(&python));
    for batch in flight_batches(&rows, 1024) {
        let (mut ro, mut po) = (VecCollector::default(), VecCollector::default());
        r.process_batch(batch.clone(), &mut ro).unwrap();
        p.process_batch(batch, &mut po).unwrap();
        let rust_events: Vec<_> = ro
            .events()
            .map(|e| (e.timestamp, e.key.to_vec(), e.value.to_vec()))
            .collect();
        let python_events: Vec<_> = po
            .events()
            .map(|e| (e.timestamp, e.key.to_vec(), e.value.to_vec()))
            .collect();
        assert_eq!(python_events.len(), rust_events.len());
        assert!(
            python_events == rust_events,
            "the Python operator's events differ"
        );
    }
}

#[test]
fn the_flights_job_with_the_python_operator_gives_the_exact_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let slice = tmp.path().join("slice.parquet");
    let rows = flights::read_rows(&flights::dataset(), Some(30_000), Some(&slice));
    let answer = flights::exact_answer(&rows);
    let root = plugins::repo_root();
    let mut loaded = spec::load(&root.join(flights::SPEC)).unwrap();
    let source = &mut loaded.spec.sources[0].options;
    source.insert("path".into(), slice.to_str().unwrap().into());
    source.remove("sha256");
    loaded.spec.operators[0].options.insert(
        "wasm".into(),
        plugins::python_wasm("flight-delays-py")
            .to_str()
            .unwrap()
            .into(),
    );
    let out = tmp.path().join("a/b");
    let resolver = JobResolver {
        wasm: plugins::runtime(),
        output_dir: Some(out.clone()),
    };
    let graph = loaded
        .spec
        .to_graph(&loaded.dir, &resolver, Overrides::default())
        .unwrap();
    sluice_core::runtime::start(graph).unwrap().join().unwrap();
    let got = flights::read_output(&out.join("../../out/flights"));
    flights::check_output(&answer, &got, "Python operator");
}

fn one_event(value: &[u8]) -> Batch {
    let mut b = Batch::new();
    b.push(1, b"k", value);
    b
}

#[test]
fn python_errors_reach_the_host_typed_with_the_message_and_the_traceback() {
    let component = plugins::runtime()
        .load_component(plugins::python_wasm("test-faults-py"))
        .unwrap();
    let mut op = WasmOperator::new(&component, Vec::new(), Limits::default());
    op.open(&ctx("faults")).unwrap();

    let err = op
        .process_batch(one_event(b"raise"), &mut VecCollector::default())
        .unwrap_err();
    let (code, message) = plugins::returned(&err);
    assert_eq!(code, "internal");
    assert!(
        message.starts_with("ValueError: cannot handle b'raise'"),
        "{message}"
    );
    assert!(
        message.contains("Traceback (most recent call last)")
            && message.contains("in explode")
            && message.contains("app.py"),
        "the traceback names the function and file: {message}"
    );

    let err = op
        .process_batch(one_event(b"invalid"), &mut VecCollector::default())
        .unwrap_err();
    assert_eq!(
        plugins::returned(&err),
        ("invalid-input", "the value is 'invalid'")
    );

    let err = op
        .process_batch(one_event(b"state"), &mut VecCollector::default())
        .unwrap_err();
    let (code, message) = plugins::returned(&err);
    assert_eq!(code, "state");
    assert!(message.starts_with("not-keyed:"), "{message}");

    // The instance is still usable: main and side outputs.
    let mut out = VecCollector::default();
    op.process_batch(one_event(b"fine"), &mut out).unwrap();
    let main: Vec<_> = out.events().map(|e| e.value.to_vec()).collect();
    let side: Vec<_> = out
        .side_events("copies")
        .map(|e| e.value.to_vec())
        .collect();
    assert_eq!(main, vec![b"fine".to_vec()]);
    assert_eq!(side, vec![b"fine".to_vec()]);
    assert!(!matches!(err, OperatorError::Fault { .. }));
}
