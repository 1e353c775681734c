//! The JavaScript/TypeScript guest SDK (`guest-sdk/js`, bundled by esbuild and built
//! with componentize-js):
//!
//! * the flights operator in TypeScript (`plugins/flight-delays-ts`) emits, event for
//!   event, exactly what the Rust one emits for the same batches, and the flights job
//!   run with it gives the exact answer;
//! * a thrown error becomes a typed `internal` error carrying its name, message and
//!   stack; `OperatorError` keeps its code; the host stays usable after both.

use sluice_core::batch::Batch;
use sluice_core::operator::{Operator, VecCollector};
use sluice_tests::{plugins, sdk};

#[test]
fn the_typescript_flights_operator_emits_exactly_the_rust_operators_events() {
    let ts = plugins::runtime()
        .load_component(plugins::js_wasm("flight-delays-ts"))
        .unwrap();
    sdk::check_flights_operator_matches_rust(&ts, "TypeScript");
}

#[test]
fn the_flights_job_with_the_typescript_operator_gives_the_exact_answer() {
    // The JavaScript engine's heap needs more than the Rust operator's 64 MiB.
    sdk::check_flights_job(
        &plugins::js_wasm("flight-delays-ts"),
        "512MiB",
        "TypeScript",
    );
}

fn one_event(value: &[u8]) -> Batch {
    let mut b = Batch::new();
    b.push(1, b"k", value);
    b
}

#[test]
fn javascript_errors_reach_the_host_typed_with_the_message_and_the_stack() {
    let component = plugins::runtime()
        .load_component(plugins::js_wasm("test-faults-ts"))
        .unwrap();
    let mut op = sdk::open(&component, &[]);

    let err = op
        .process_batch(one_event(b"raise"), &mut VecCollector::default())
        .unwrap_err();
    let (code, message) = plugins::returned(&err);
    assert_eq!(code, "internal");
    assert!(
        message.starts_with("RangeError: cannot handle 'raise'"),
        "{message}"
    );
    assert!(
        message.contains("explode"),
        "the stack names the function: {message}"
    );

    let err = op
        .process_batch(one_event(b"invalid"), &mut VecCollector::default())
        .unwrap_err();
    assert_eq!(
        plugins::returned(&err),
        ("invalid-input", "the value is 'invalid'")
    );

    let mut out = VecCollector::default();
    op.process_batch(one_event(b"fine"), &mut out).unwrap();
    let main: Vec<_> = out.events().map(|e| e.value.to_vec()).collect();
    let side: Vec<_> = out
        .side_events("copies")
        .map(|e| e.value.to_vec())
        .collect();
    assert_eq!(main, vec![b"fine".to_vec()]);
    assert_eq!(side, vec![b"fine".to_vec()]);
}
