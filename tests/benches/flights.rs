//! Benchmark: the flights job end to end (3,000,000 real events: Parquet source ordered
//! by actual departure, the Rust WASM operator, hourly windows per airport at parallelism
//! 2, JSON-lines sinks), as the README's command runs it.
//!
//! `cargo bench -p sluice-tests --bench flights` prints events per second and CPU-seconds
//! per million events (process CPU, all threads, from job start to end; the spec's
//! preparation — reading and ordering the file, compiling the component — is reported
//! separately). `SLUICE_BENCH_RUNS` sets the number of runs (default 3).

use sluice_cli::job::{JobResolver, build_graph};
use sluice_cli::progress::{RunSummary, process_cpu_time};
use sluice_core::spec::Overrides;
use sluice_tests::{flights, plugins};
use sluice_wasm::{RuntimeConfig, WasmRuntime};
use std::time::Instant;

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
    println!("flights job, {runs} runs (parallelism 2, batch size 1024)");
    let mut results = Vec::new();
    for run in 1..=runs {
        let resolver = JobResolver {
            wasm: &wasm,
            output_dir: Some(out.clone()),
        };
        let t = Instant::now();
        let graph = build_graph(&spec, &resolver, Overrides::default()).unwrap();
        let prepare = t.elapsed();
        let cpu0 = process_cpu_time();
        let job = sluice_core::runtime::start(graph).unwrap();
        let metrics = job.metrics().clone();
        job.join().unwrap();
        let s = RunSummary::from_metrics(&metrics, process_cpu_time() - cpu0);
        let eps = s.events_in as f64 / s.elapsed.as_secs_f64();
        let cpu_per_m = s.cpu.as_secs_f64() / (s.events_in as f64 / 1e6);
        println!(
            "run {run}: {} events in {:.2} s wall ({:.2} M events/s), {:.2} CPU-s ({:.3} CPU-s per M events = {:.2} M events per CPU-second); preparation {:.2} s",
            s.events_in,
            s.elapsed.as_secs_f64(),
            eps / 1e6,
            s.cpu.as_secs_f64(),
            cpu_per_m,
            1.0 / cpu_per_m,
            prepare.as_secs_f64()
        );
        results.push((cpu_per_m, eps));
    }
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (cpu_per_m, _) = results[results.len() / 2];
    let best_eps = results.iter().map(|r| r.1).fold(0.0, f64::max);
    println!(
        "flights: median {:.3} CPU-s per M events ({:.2} M events per CPU-second); best {:.2} M events/s wall",
        cpu_per_m,
        1.0 / cpu_per_m,
        best_eps / 1e6
    );
}
