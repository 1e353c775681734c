//! The Python guest SDK (`guest-sdk/python`, built with componentize-py):
//!
//! * the flights operator in Python (`plugins/flight-delays-py`) emits, event for event,
//!   exactly what the Rust one (`plugins/flight-delays`) emits for the same batches, and
//!   the flights job run with it gives the exact answer;
//! * a Python exception becomes a typed `internal` error carrying the exception and its
//!   traceback; `OperatorError` keeps its code; the host stays usable after both.
//!
//! Keyed state and timers of the Python SDK are tested in `wasm_state.rs`.

use sluice_tests::{plugins, sdk};

#[test]
fn the_python_flights_operator_emits_exactly_the_rust_operators_events() {
    let python = plugins::runtime()
        .load_component(plugins::python_wasm("flight-delays-py"))
        .unwrap();
    sdk::check_flights_operator_matches_rust(&python, "Python");
}

#[test]
fn the_flights_job_with_the_python_operator_gives_the_exact_answer() {
    sdk::check_flights_job(&plugins::python_wasm("flight-delays-py"), "64MiB", "Python");
}

#[test]
fn python_errors_reach_the_host_typed_with_the_message_and_the_traceback() {
    let component = plugins::runtime()
        .load_component(plugins::python_wasm("test-faults-py"))
        .unwrap();
    let mut op = sdk::open(&component, &[]);

    let (code, message) = sdk::error_for(&mut op, b"raise");
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

    assert_eq!(
        sdk::error_for(&mut op, b"invalid"),
        ("invalid-input".into(), "the value is 'invalid'".into())
    );

    let (code, message) = sdk::error_for(&mut op, b"state");
    assert_eq!(code, "state");
    assert!(message.starts_with("not-keyed:"), "{message}");

    // The instance is still usable: main and side outputs.
    sdk::check_usable_after_errors(&mut op);
}
