//! Shared by the job benchmarks: runs a job graph with and without checkpoints and prints
//! throughput, CPU per event and checkpoint figures per mode.

use sluice_cli::progress::{RunSummary, process_cpu_time};
use sluice_core::checkpoint::{CheckpointConfig, CheckpointStorage};
use sluice_core::graph::JobGraph;
use sluice_core::state::{HeapKvBackendFactory, KvBackendFactory};
use sluice_rocksdb::RocksDbBackendFactory;
use sluice_storage::ObjectStorage;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a benchmark run keeps its state.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// What the mode is, printed above its runs (and matched by `$SLUICE_BENCH_MODE`).
    pub label: &'static str,
    /// `heap` or `rocksdb`.
    pub backend: &'static str,
    /// Checkpoint interval, ms; `None`: no checkpoints.
    pub interval_ms: Option<u64>,
}

/// Each backend without checkpoints, then with checkpoints every 1 s; RocksDB also every
/// 200 ms.
pub const MODES: [Mode; 5] = [
    Mode {
        label: "heap state, no checkpoints",
        backend: "heap",
        interval_ms: None,
    },
    Mode {
        label: "heap state, checkpoint every 1 s",
        backend: "heap",
        interval_ms: Some(1000),
    },
    Mode {
        label: "RocksDB state, no checkpoints",
        backend: "rocksdb",
        interval_ms: None,
    },
    Mode {
        label: "RocksDB state, checkpoint every 1 s",
        backend: "rocksdb",
        interval_ms: Some(1000),
    },
    Mode {
        label: "RocksDB state, checkpoint every 200 ms",
        backend: "rocksdb",
        interval_ms: Some(200),
    },
];

/// Sets `graph`'s state backend and checkpoints for `mode`, with the state under
/// `dir/state` and the checkpoint storage (a local folder, 2 retained) under
/// `dir/checkpoints`. Panics when the storage cannot be opened.
pub fn apply(graph: &mut JobGraph, mode: Mode, dir: &Path) {
    let factory: Arc<dyn KvBackendFactory> = match mode.backend {
        "heap" => Arc::new(HeapKvBackendFactory),
        _ => Arc::new(RocksDbBackendFactory::default()),
    };
    graph.durability.state_backend = factory;
    graph.durability.state_dir = dir.join("state");
    graph.durability.checkpoints = mode.interval_ms.map(|ms| CheckpointConfig {
        interval: Duration::from_millis(ms),
        storage: Arc::new(
            ObjectStorage::open(dir.join("checkpoints").to_str().unwrap(), Path::new("/")).unwrap(),
        ) as Arc<dyn CheckpointStorage>,
        retain: 2,
        timeout: Duration::from_secs(60),
    });
}

/// Runs every mode (or those whose label contains `$SLUICE_BENCH_MODE`) `runs` times
/// over graphs from `build`, with state and checkpoints under `dir`, and prints a line per
/// run and a median per mode, with the CPU per event and events per second relative to
/// the same backend without checkpoints.
///
/// The figures are only printed for correct runs: each run must read `events` events
/// (panics otherwise), and after each mode's last run `check` must accept the job's
/// output (it panics on a wrong one; it runs outside the timing).
pub fn compare(
    name: &str,
    runs: usize,
    dir: &Path,
    events: u64,
    mut build: impl FnMut() -> JobGraph,
    mut check: impl FnMut(),
) {
    println!("{name}, {runs} runs per mode");
    // Per backend: the run without checkpoints.
    let mut baselines: Vec<(&str, (f64, f64))> = Vec::new();
    // `SLUICE_BENCH_MODE=<part of a label>` runs only the matching modes.
    let only = std::env::var("SLUICE_BENCH_MODE").ok();
    for mode in MODES {
        if only.as_deref().is_some_and(|o| !mode.label.contains(o)) {
            continue;
        }
        println!("{}:", mode.label);
        // CPU-s per M events and events/s of each run.
        let (mut cpu, mut rate) = (Vec::new(), Vec::new());
        for run in 1..=runs {
            let t = Instant::now();
            let mut graph = build();
            let prepare = t.elapsed();
            let run_dir = dir.join(format!("run-{run}"));
            let _ = std::fs::remove_dir_all(&run_dir);
            apply(&mut graph, mode, &run_dir);
            let cpu0 = process_cpu_time();
            let job = sluice_core::runtime::start(graph).unwrap();
            let metrics = job.metrics().clone();
            while !job.is_finished() {
                std::thread::sleep(Duration::from_millis(2));
            }
            let checkpoints = job.checkpoints();
            job.join().unwrap();
            let s = RunSummary::from_metrics(&metrics, process_cpu_time() - cpu0);
            assert_eq!(
                s.events_in, events,
                "{}, run {run}: events read",
                mode.label
            );
            let eps = s.events_in as f64 / s.elapsed.as_secs_f64();
            let cpu_per_m = s.cpu.as_secs_f64() / (s.events_in as f64 / 1e6);
            let ckpt = if checkpoints.is_empty() {
                String::new()
            } else {
                let n = checkpoints.len() as u32;
                let avg = checkpoints.iter().map(|c| c.duration).sum::<Duration>() / n;
                format!(
                    "; {n} checkpoints, {:.0} ms average, {} KiB uploaded, last state {} KiB",
                    avg.as_secs_f64() * 1e3,
                    checkpoints.iter().map(|c| c.uploaded_bytes).sum::<u64>() / 1024,
                    checkpoints.last().map_or(0, |c| c.state_bytes) / 1024
                )
            };
            println!(
                "  run {run}: {} events in {:.2} s wall ({:.2} M events/s), {:.3} CPU-s per M events ({:.2} M events per CPU-second); preparation {:.2} s{ckpt}",
                s.events_in,
                s.elapsed.as_secs_f64(),
                eps / 1e6,
                cpu_per_m,
                1.0 / cpu_per_m,
                prepare.as_secs_f64()
            );
            cpu.push(cpu_per_m);
            rate.push(eps);
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        // Figures of a wrong run mean nothing: check the output before the medians.
        check();
        let (cpu_per_m, median_eps) = (median(cpu), median(rate));
        let vs = match baselines.iter().find(|(b, _)| *b == mode.backend) {
            Some((_, b)) if mode.interval_ms.is_some() => format!(
                "; vs no checkpoints: {:+.1} % CPU per event, {:+.1} % events/s wall",
                (cpu_per_m / b.0 - 1.0) * 100.0,
                (median_eps / b.1 - 1.0) * 100.0
            ),
            _ => String::new(),
        };
        if mode.interval_ms.is_none() {
            baselines.push((mode.backend, (cpu_per_m, median_eps)));
        }
        println!(
            "  median: {:.3} CPU-s per M events ({:.2} M events per CPU-second), {:.2} M events/s wall{vs}; output checked",
            cpu_per_m,
            1.0 / cpu_per_m,
            median_eps / 1e6
        );
    }
}

/// The median of `values` (the upper one of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
