//! Benchmark: the flights job end to end (3,000,000 real events: Parquet source ordered
//! by actual departure, the Rust WASM operator, hourly windows per airport at parallelism
//! 2, JSON-lines sinks), as the README's command runs it, without checkpoints and with
//! checkpoints (heap and RocksDB state, every 1 s and every 200 ms, to a local folder).
//!
//! `cargo bench -p sluice-tests --bench flights` prints events per second and CPU-seconds
//! per million events (process CPU, all threads, from job start to end; the spec's
//! preparation — reading and ordering the file, compiling the component — is reported
//! separately), and the checkpoints' count, duration and size; the output of each mode's
//! last run is checked against the exact answer (`flights::exact_answer`) before its
//! medians are printed. `SLUICE_BENCH_RUNS` sets the number of runs per mode (default 3),
//! `SLUICE_BENCH_MODE` picks modes by a part of their label.

use sluice_cli::job::{JobResolver, build_graph};
use sluice_core::spec::Overrides;
use sluice_tests::{bench, flights, plugins};
use sluice_wasm::{RuntimeConfig, WasmRuntime};

fn main() {
    plugins::build();
    flights::dataset();
    let runs: usize = std::env::var("SLUICE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a/b");
    std::fs::create_dir_all(&out).unwrap();
    let wasm = WasmRuntime::new(RuntimeConfig::default()).unwrap();
    let spec = plugins::repo_root().join(flights::SPEC);
    // The spec writes ../../out/flights/*.jsonl: out/flights/ under the output folder.
    let written = out.join("out/flights");
    let mut answer = None;
    bench::compare(
        "flights job (parallelism 2, batch size 1024)",
        runs,
        tmp.path(),
        3_000_000,
        || {
            let resolver = JobResolver {
                wasm: &wasm,
                output_dir: Some(out.clone()),
            };
            build_graph(&spec, &resolver, Overrides::default()).unwrap()
        },
        || {
            let answer = answer.get_or_insert_with(|| {
                flights::exact_answer(&flights::read_rows(&flights::dataset(), None, None))
            });
            flights::check_output(answer, &flights::read_output(&written), "flights bench");
        },
    );
}
