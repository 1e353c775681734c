//! A job whose operators are in three languages, chained: the Python flights parser
//! (`plugins/flight-delays-py`), a TypeScript checker that decodes, checks and re-encodes
//! every result (`plugins/delay-check-ts`) and the Rust pass-through (`plugins/identity`),
//! then the hourly windows: `plugins/mixed/flights-mixed.yaml` gives exactly the answer of
//! the flights job, computed independently.

use sluice_tests::{plugins, sdk};

#[test]
fn python_then_typescript_then_rust_give_the_exact_answer() {
    plugins::build();
    plugins::python_wasm("flight-delays-py");
    plugins::js_wasm("delay-check-ts");
    sdk::check_flights_spec(
        &plugins::repo_root().join("plugins/mixed/flights-mixed.yaml"),
        "flights-mixed",
        |_| {},
        "Python → TypeScript → Rust",
    );
}
