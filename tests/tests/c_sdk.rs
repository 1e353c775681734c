//! The C guest SDK (`guest-sdk/c`, built with Debian's clang for wasm32-wasi and the
//! WASI preview-1 adapter by `sluice build`):
//!
//! * the flights operator in C (`plugins/flight-delays-c`) emits, event for event,
//!   exactly what the Rust one (`plugins/flight-delays`) emits for the same batches, and
//!   the flights job run with it gives the exact answer;
//! * errors a C operator returns reach the host typed (code and message), the SDK's
//!   packed reader refuses a short value, and a trap is a fault after which the instance
//!   is not reused; the host stays up.
//!
//! Keyed state, timers and headers of the C SDK are tested in `wasm_state.rs`.

use sluice_core::batch::Batch;
use sluice_core::operator::{Operator, OperatorError, VecCollector};
use sluice_tests::{plugins, sdk};

#[test]
fn the_c_flights_operator_emits_exactly_the_rust_operators_events() {
    let c = plugins::runtime()
        .load_component(plugins::c_wasm("flight-delays-c"))
        .unwrap();
    sdk::check_flights_operator_matches_rust(&c, "C");
}

#[test]
fn the_flights_job_with_the_c_operator_gives_the_exact_answer() {
    sdk::check_flights_job(&plugins::c_wasm("flight-delays-c"), "64MiB", "C");
}

#[test]
fn c_errors_reach_the_host_typed_and_a_trap_is_a_fault() {
    let component = plugins::runtime()
        .load_component(plugins::c_wasm("test-faults-c"))
        .unwrap();
    let mut op = sdk::open(&component, &[]);
    assert_eq!(
        sdk::error_for(&mut op, b"invalid"),
        ("invalid-input".into(), "the value is 'invalid'".into())
    );
    let (code, message) = sdk::error_for(&mut op, b"state");
    assert_eq!(code, "state");
    assert!(message.starts_with("not-keyed:"), "{message}");
    assert_eq!(
        sdk::error_for(&mut op, b"short"),
        (
            "invalid-input".into(),
            "packed value too short: i64 at byte 0 of 5".into()
        )
    );
    // The instance is still usable: main and side outputs.
    sdk::check_usable_after_errors(&mut op);

    let mut b = Batch::new();
    b.push(1, b"k", b"trap");
    match op.process_batch(b, &mut VecCollector::default()) {
        Err(OperatorError::Fault { message, .. }) => {
            assert!(message.contains("trapped"), "{message}")
        }
        other => panic!("a trap must be a fault, got {other:?}"),
    }
    let mut b = Batch::new();
    b.push(1, b"k", b"fine");
    assert!(
        op.process_batch(b, &mut VecCollector::default()).is_err(),
        "a trapped instance is not reused"
    );
}
