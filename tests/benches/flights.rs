//! Benchmark: the flights job end to end (3,000,000 real events: Parquet source ordered
//! by actual departure, the Rust WASM operator, hourly windows per airport at parallelism
//! 2, JSON-lines sinks), as the README's command runs it, without checkpoints and with
//! checkpoints (heap and RocksDB state, every 1 s and every 200 ms, to a local folder).
//!
//! `cargo bench -p sluice-tests --bench flights` prints events per second and CPU-seconds
//! per million events (process CPU, all threads, from job start to end; the spec's
//! preparation — reading and ordering the file, compiling the component — is reported
//! separately), and the checkpoints' count, duration and size. `SLUICE_BENCH_RUNS` sets
//! the number of runs per mode (default 3).

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
    bench::compare(
        "flights job (parallelism 2, batch size 1024)",
        runs,
        tmp.path(),
        || {
            let resolver = JobResolver {
                wasm: &wasm,
                output_dir: Some(out.clone()),
            };
            build_graph(&spec, &resolver, Overrides::default()).unwrap()
        },
    );
}
