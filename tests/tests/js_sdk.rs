//! The JavaScript/TypeScript guest SDK (`guest-sdk/js`, bundled by esbuild and built
//! with componentize-js):
//!
//! * the flights operator in TypeScript (`plugins/flight-delays-ts`) emits, event for
//!   event, exactly what the Rust one emits for the same batches, and the flights job
//!   run with it gives the exact answer;
//! * a thrown error becomes a typed `internal` error carrying its name, message and
//!   stack; `OperatorError` keeps its code; the host stays usable after both.

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

#[test]
fn javascript_errors_reach_the_host_typed_with_the_message_and_the_stack() {
    let component = plugins::runtime()
        .load_component(plugins::js_wasm("test-faults-ts"))
        .unwrap();
    let mut op = sdk::open(&component, &[]);

    let (code, message) = sdk::error_for(&mut op, b"raise");
    assert_eq!(code, "internal");
    assert!(
        message.starts_with("RangeError: cannot handle 'raise'"),
        "{message}"
    );
    assert!(
        message.contains("explode"),
        "the stack names the function: {message}"
    );

    assert_eq!(
        sdk::error_for(&mut op, b"invalid"),
        ("invalid-input".into(), "the value is 'invalid'".into())
    );

    sdk::check_usable_after_errors(&mut op);
}
