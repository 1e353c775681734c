//! Benchmark: the fraud job (`plugins/fraud-rules/fraud.yaml`: 1,000,000 generated card
//! payments over 10,000 cards, the fraud-rules WASM operator with keyed value and list
//! state and an event-time timer per card at parallelism 2, hourly windows per card,
//! JSON-lines sinks), without checkpoints and with checkpoints (heap and RocksDB state,
//! every 1 s and every 200 ms, to a local folder).
//!
//! `cargo bench -p sluice-tests --bench fraud`; `SLUICE_BENCH_RUNS` sets the runs per
//! mode (default 3), `SLUICE_BENCH_PAYMENTS` the number of payments.

use sluice_cli::job::{JobResolver, build_graph};
use sluice_core::spec::Overrides;
use sluice_tests::{bench, payments, plugins};
use sluice_wasm::{RuntimeConfig, WasmRuntime};

fn main() {
    plugins::build();
    let env = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (runs, count) = (
        env("SLUICE_BENCH_RUNS", 3),
        env("SLUICE_BENCH_PAYMENTS", 1_000_000),
    );
    let tmp = tempfile::tempdir().unwrap();
    // The spec reads ../../out/payments.jsonl and writes ../../out/fraud/: lay that out.
    let root = plugins::repo_root();
    let spec_dir = tmp.path().join("plugins/fraud-rules");
    std::fs::create_dir_all(&spec_dir).unwrap();
    let text = std::fs::read_to_string(root.join("plugins/fraud-rules/fraud.yaml")).unwrap();
    let wasm_path = plugins::wasm("fraud_rules");
    std::fs::write(
        spec_dir.join("fraud.yaml"),
        text.replace(
            "../target/wasm32-wasip2/release/fraud_rules.wasm",
            wasm_path.to_str().unwrap(),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(tmp.path().join("out")).unwrap();
    let cfg = payments::PaymentsConfig {
        count,
        cards: 10_000,
        mean_gap_ms: 1_000,
        ..Default::default()
    };
    payments::write_jsonl(
        &payments::generate(&cfg),
        &tmp.path().join("out/payments.jsonl"),
    )
    .unwrap();
    let wasm = WasmRuntime::new(RuntimeConfig::default()).unwrap();
    let spec = spec_dir.join("fraud.yaml");
    bench::compare(
        &format!("fraud job ({count} payments, 10,000 cards, parallelism 2)"),
        runs,
        &tmp.path().join("bench"),
        || {
            let resolver = JobResolver {
                wasm: &wasm,
                output_dir: None,
            };
            build_graph(&spec, &resolver, Overrides::default()).unwrap()
        },
    );
}
