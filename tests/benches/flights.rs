//! Benchmark: the flights job end to end (3,000,000 real events: Parquet source ordered
//! by actual departure, the Rust WASM operator, hourly windows per airport at parallelism
//! 2, JSON-lines sinks), as the README's command runs it.
//!
//! `cargo bench -p sluice-tests --bench flights` prints events per second and CPU-seconds
//! per million events (process CPU, all threads, from job start to end; the spec's
//! preparation — reading and ordering the file, compiling the component — is reported
//! separately), without checkpoints and with checkpoints (heap and RocksDB state, every
//! 1 s and every 200 ms, to a local folder), with the checkpoints' count and duration.
//! `SLUICE_BENCH_RUNS` sets the number of runs per mode (default 3).

use sluice_cli::job::{JobResolver, build_graph};
use sluice_cli::progress::{RunSummary, process_cpu_time};
use sluice_core::checkpoint::{CheckpointConfig, CheckpointStorage};
use sluice_core::graph::JobGraph;
use sluice_core::spec::Overrides;
use sluice_core::state::{HeapKvBackendFactory, KvBackendFactory};
use sluice_rocksdb::RocksDbBackendFactory;
use sluice_storage::ObjectStorage;
use sluice_tests::{flights, plugins};
use sluice_wasm::{RuntimeConfig, WasmRuntime};
use std::sync::Arc;
use std::time::Duration;
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
    let modes: [(&str, Option<(&str, u64)>); 4] = [
        ("no checkpoints", None),
        ("heap state, checkpoint every 1 s", Some(("heap", 1000))),
        (
            "RocksDB state, checkpoint every 1 s",
            Some(("rocksdb", 1000)),
        ),
        (
            "RocksDB state, checkpoint every 200 ms",
            Some(("rocksdb", 200)),
        ),
    ];
    println!("flights job, {runs} runs per mode (parallelism 2, batch size 1024)");
    let mut baseline = None;
    for (label, mode) in modes {
        println!("{label}:");
        let mut results = Vec::new();
        for run in 1..=runs {
            let resolver = JobResolver {
                wasm: &wasm,
                output_dir: Some(out.clone()),
            };
            let t = Instant::now();
            let mut graph = build_graph(&spec, &resolver, Overrides::default()).unwrap();
            if let Some((backend, interval)) = mode {
                checkpointing(
                    &mut graph,
                    backend,
                    interval,
                    &tmp.path().join(format!("ckpt-{run}")),
                );
            }
            let prepare = t.elapsed();
            let cpu0 = process_cpu_time();
            let job = sluice_core::runtime::start(graph).unwrap();
            let metrics = job.metrics().clone();
            while !job.is_finished() {
                std::thread::sleep(Duration::from_millis(2));
            }
            let checkpoints = job.checkpoints();
            job.join().unwrap();
            let s = RunSummary::from_metrics(&metrics, process_cpu_time() - cpu0);
            let eps = s.events_in as f64 / s.elapsed.as_secs_f64();
            let cpu_per_m = s.cpu.as_secs_f64() / (s.events_in as f64 / 1e6);
            let ckpt = if checkpoints.is_empty() {
                String::new()
            } else {
                let avg = checkpoints.iter().map(|c| c.duration).sum::<Duration>()
                    / checkpoints.len() as u32;
                format!(
                    "; {} checkpoints, {:.0} ms average, {} KiB uploaded",
                    checkpoints.len(),
                    avg.as_secs_f64() * 1e3,
                    checkpoints.iter().map(|c| c.uploaded_bytes).sum::<u64>() / 1024
                )
            };
            println!(
                "  run {run}: {} events in {:.2} s wall ({:.2} M events/s), {:.2} CPU-s ({:.3} CPU-s per M events = {:.2} M events per CPU-second); preparation {:.2} s{ckpt}",
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
        let slower = baseline.map_or(String::new(), |b: f64| {
            format!(
                ", {:+.1} % CPU per event vs no checkpoints",
                (cpu_per_m / b - 1.0) * 100.0
            )
        });
        baseline.get_or_insert(cpu_per_m);
        println!(
            "  median {:.3} CPU-s per M events ({:.2} M events per CPU-second); best {:.2} M events/s wall{slower}",
            cpu_per_m,
            1.0 / cpu_per_m,
            best_eps / 1e6
        );
    }
}

/// Turns on checkpoints every `interval_ms` to a local folder, with `backend` state.
fn checkpointing(graph: &mut JobGraph, backend: &str, interval_ms: u64, dir: &std::path::Path) {
    let storage: Arc<dyn CheckpointStorage> =
        Arc::new(ObjectStorage::open(dir.to_str().unwrap(), std::path::Path::new("/")).unwrap());
    let factory: Arc<dyn KvBackendFactory> = match backend {
        "heap" => Arc::new(HeapKvBackendFactory),
        _ => Arc::new(RocksDbBackendFactory::default()),
    };
    graph.durability.state_backend = factory;
    graph.durability.state_dir = dir.join("state");
    graph.durability.checkpoints = Some(CheckpointConfig {
        interval: Duration::from_millis(interval_ms),
        storage,
        retain: 2,
        timeout: Duration::from_secs(60),
    });
}
