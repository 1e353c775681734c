//! The guest SDKs compared: for Rust, Python, TypeScript and C, the component's size, the
//! cold start (compiling the component, no cache), loading it compiled from the on-disk
//! cache, instantiating and `init`, and ns per event at batch 1024 for the identity
//! operator and the flights operator. Every operator's output is checked (identity
//! returns its input; each flights operator emits exactly the Rust one's events) before
//! any figure is printed.
//!
//!     cargo bench -p sluice-tests --bench sdk

use sluice_core::batch::Batch;
use sluice_core::operator::{Operator, OperatorContext, VecCollector};
use sluice_tests::{flights, plugins, sdk};
use sluice_wasm::{Limits, LoadedComponent, RuntimeConfig, WasmOperator, WasmRuntime};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BATCH: usize = 1024;

fn open(component: &LoadedComponent, config: &[(&str, &str)]) -> WasmOperator {
    let mut op = WasmOperator::new(
        component,
        plugins::config(config),
        Limits {
            max_memory_bytes: 1 << 30,
            ..Limits::default()
        },
    );
    op.open(&OperatorContext {
        operator_id: "bench".into(),
        subtask: 0,
        parallelism: 1,
    })
    .unwrap();
    op
}

/// Flights-like events for the identity operator: key 3 bytes, value 8 bytes.
fn identity_batch() -> Batch {
    const KEYS: [&[u8; 3]; 4] = [b"ORD", b"SFO", b"JFK", b"LAX"];
    let mut b = Batch::with_capacity(BATCH, BATCH * 11);
    for i in 0..BATCH {
        b.push(
            1_700_000_000_000 + i as i64,
            KEYS[i % 4],
            &(i as u64).to_le_bytes(),
        );
    }
    b
}

fn events(c: &VecCollector) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    c.events()
        .map(|e| (e.timestamp, e.key.to_vec(), e.value.to_vec()))
        .collect()
}

/// Median ns per event of `op` over `input`, in rounds of ~200 ms (at least 5 calls).
fn ns_per_event(op: &mut WasmOperator, input: &Batch) -> f64 {
    let mut rounds = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let mut calls = 0;
        while calls < 5 || start.elapsed() < Duration::from_millis(200) {
            op.process_batch(input.clone(), &mut VecCollector::default())
                .unwrap();
            calls += 1;
        }
        rounds.push(start.elapsed().as_nanos() as f64 / (calls * input.len()) as f64);
    }
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

struct Row {
    lang: &'static str,
    size_mb: f64,
    compile_s: f64,
    cached_ms: f64,
    instantiate_ms: f64,
    identity_ns: f64,
    flights_ns: f64,
}

fn measure(
    lang: &'static str,
    identity: &Path,
    flights_wasm: &Path,
    rows: &[flights::Flight],
) -> Row {
    let cache = tempfile::tempdir().unwrap();
    // Cold: compiled from the component's bytes.
    let cold = WasmRuntime::new(RuntimeConfig::with_cache_dir(cache.path().to_path_buf())).unwrap();
    let t = Instant::now();
    let flights_c = cold.load_component(flights_wasm).unwrap();
    let compile_s = t.elapsed().as_secs_f64();
    let identity_c = cold.load_component(identity).unwrap();
    // Warm: a new runtime loads the compiled code from the on-disk cache.
    let warm = WasmRuntime::new(RuntimeConfig::with_cache_dir(cache.path().to_path_buf())).unwrap();
    let t = Instant::now();
    warm.load_component(flights_wasm).unwrap();
    let cached_ms = t.elapsed().as_secs_f64() * 1e3;

    let config = [("delayed_threshold_minutes", "15")];
    let t = Instant::now();
    let n = 20;
    for _ in 0..n {
        drop(open(&flights_c, &config));
    }
    let instantiate_ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;

    // Outputs checked before timing.
    let input = identity_batch();
    let mut id = open(&identity_c, &[]);
    let mut out = VecCollector::default();
    id.process_batch(input.clone(), &mut out).unwrap();
    let want: Vec<_> = input
        .iter()
        .map(|e| (e.timestamp, e.key.to_vec(), e.value.to_vec()))
        .collect();
    assert!(events(&out) == want, "{lang}: identity changed its input");
    let flights_in = sdk::flight_batches(&rows[..BATCH], BATCH).remove(0);
    let mut reference = open(&plugins::load("flight_delays"), &config);
    let mut want = VecCollector::default();
    reference
        .process_batch(flights_in.clone(), &mut want)
        .unwrap();
    let mut fl = open(&flights_c, &config);
    let mut got = VecCollector::default();
    fl.process_batch(flights_in.clone(), &mut got).unwrap();
    assert!(
        events(&got) == events(&want),
        "{lang}: the flights operator's events differ from Rust's"
    );

    Row {
        lang,
        size_mb: std::fs::metadata(flights_wasm).unwrap().len() as f64 / 1e6,
        compile_s,
        cached_ms,
        instantiate_ms,
        identity_ns: ns_per_event(&mut id, &input),
        flights_ns: ns_per_event(&mut fl, &flights_in),
    }
}

fn main() {
    let rows = flights::read_rows(&flights::dataset(), Some(BATCH), None);
    let langs: [(&str, PathBuf, PathBuf); 4] = [
        (
            "Rust",
            plugins::wasm("identity"),
            plugins::wasm("flight_delays"),
        ),
        (
            "Python",
            plugins::python_wasm("identity-py"),
            plugins::python_wasm("flight-delays-py"),
        ),
        (
            "TypeScript",
            plugins::js_wasm("identity-ts"),
            plugins::js_wasm("flight-delays-ts"),
        ),
        (
            "C",
            plugins::c_wasm("identity-c"),
            plugins::c_wasm("flight-delays-c"),
        ),
    ];
    let results: Vec<Row> = langs
        .iter()
        .map(|(lang, id, fl)| measure(lang, id, fl, &rows))
        .collect();
    println!(
        "{:<11} {:>10} {:>12} {:>12} {:>16} {:>14} {:>14}",
        "language",
        "size MB",
        "compile s",
        "cached ms",
        "instantiate ms",
        "identity ns",
        "flights ns"
    );
    for r in results {
        println!(
            "{:<11} {:>10.2} {:>12.2} {:>12.1} {:>16.2} {:>14.0} {:>14.0}",
            r.lang,
            r.size_mb,
            r.compile_s,
            r.cached_ms,
            r.instantiate_ms,
            r.identity_ns,
            r.flights_ns
        );
    }
}
