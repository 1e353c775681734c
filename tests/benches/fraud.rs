//! Benchmark: the fraud job (`plugins/fraud-rules/fraud.yaml`: 1,000,000 generated card
//! payments over 10,000 cards, the fraud-rules WASM operator with keyed value and list
//! state and an event-time timer per card at parallelism 2, hourly windows per card,
//! JSON-lines sinks), without checkpoints and with checkpoints (heap and RocksDB state,
//! every 1 s and every 200 ms, to a local folder).
//!
//! The alerts of each mode's last run are checked against the rules computed directly
//! (`payments::reference`) before its medians are printed.
//!
//! `cargo bench -p sluice-tests --bench fraud`; `SLUICE_BENCH_RUNS` sets the runs per
//! mode (default 3), `SLUICE_BENCH_PAYMENTS` the number of payments, `SLUICE_BENCH_MODE`
//! picks modes by a part of their label.

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
    let payments = payments::generate(&cfg);
    payments::write_jsonl(&payments, &tmp.path().join("out/payments.jsonl")).unwrap();
    // The spec's rules are the reference's (RULES); its alerts go to out/fraud/alerts.jsonl.
    let by_content = |a: &payments::Alert, b: &payments::Alert| a.partial_cmp(b).unwrap();
    let mut want = payments::reference(
        &payments,
        &payments::per_event_watermarks(&payments),
        &payments::RULES,
    );
    want.sort_by(by_content);
    drop(payments);
    let wasm = WasmRuntime::new(RuntimeConfig::default()).unwrap();
    let spec = spec_dir.join("fraud.yaml");
    bench::compare(
        &format!("fraud job ({count} payments, 10,000 cards, parallelism 2)"),
        runs,
        &tmp.path().join("bench"),
        count as u64,
        || {
            let resolver = JobResolver {
                wasm: &wasm,
                output_dir: None,
            };
            build_graph(&spec, &resolver, Overrides::default()).unwrap()
        },
        || {
            // Cards are spread over two subtasks: compare as multisets.
            let text = std::fs::read_to_string(tmp.path().join("out/fraud/alerts.jsonl")).unwrap();
            let mut got: Vec<payments::Alert> = text.lines().map(payments::parse_alert).collect();
            got.sort_by(by_content);
            assert_eq!(got.len(), want.len(), "fraud bench: number of alerts");
            assert!(
                got == want,
                "fraud bench: the alerts differ from the reference"
            );
        },
    );
}
