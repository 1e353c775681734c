//! The WASM boundary's cost per event: the identity operator, one `process` call per
//! batch, including moving the batch in, the guest's per-event loop, and rebuilding the
//! output `Batch` (with its marks) on the host. Flights-like events: key 3 bytes, value
//! 8 bytes. Also the time to instantiate and `init` an operator.
//!
//!     cargo bench -p sluice-tests --bench boundary

use sluice_core::batch::Batch;
use sluice_core::operator::{Collector, Operator, OperatorContext};
use sluice_wasm::{Limits, RuntimeConfig, WasmOperator, WasmRuntime};
use std::hint::black_box;
use std::time::Instant;

struct Sink {
    events: usize,
    last: Option<Batch>,
}

impl Collector for Sink {
    fn collect(&mut self, batch: Batch) {
        self.events += batch.len();
        self.last = Some(batch);
    }
    fn collect_side(&mut self, _output: &str, _batch: Batch) {}
    fn collect_watermark(&mut self, _watermark: i64) {}
}

fn batch(n: usize) -> Batch {
    const KEYS: [&[u8; 3]; 4] = [b"ORD", b"SFO", b"JFK", b"LAX"];
    let mut b = Batch::with_capacity(n, n * 11);
    for i in 0..n {
        b.push(
            1_700_000_000_000 + i as i64,
            KEYS[i % 4],
            &(i as u64).to_le_bytes(),
        );
    }
    b.push_watermark(1_700_000_000_000 + n as i64);
    b
}

fn ctx() -> OperatorContext {
    OperatorContext {
        operator_id: "identity".into(),
        subtask: 0,
        parallelism: 1,
    }
}

fn main() {
    let plugins = sluice_tests::plugins::build();
    let cache = plugins
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("host-cache");
    let runtime = WasmRuntime::new(RuntimeConfig::with_cache_dir(cache)).unwrap();
    let component = runtime
        .load_component(plugins.join("identity.wasm"))
        .unwrap();

    // Instantiate + init.
    let rounds = std::env::var("BOUNDARY_INSTANTIATE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut ops = Vec::with_capacity(100);
    let start = Instant::now();
    for _ in 0..rounds {
        let mut op = WasmOperator::new(&component, vec![], Limits::default());
        op.open(&ctx()).unwrap();
        ops.push(op);
        if ops.len() == 100 {
            ops.clear(); // stay within the instance pool
        }
    }
    let per = start.elapsed() / rounds as u32;
    drop(ops);
    println!("instantiate + init: {:.1} µs", per.as_secs_f64() * 1e6);

    let mut op = WasmOperator::new(&component, vec![], Limits::default());
    op.open(&ctx()).unwrap();
    // The machine is shared: each size runs in rounds of ~100 ms, and the best and the
    // median round are reported (the best is the boundary's cost, the median what a busy
    // machine gives).
    println!(
        "{:>8} {:>16} {:>18} {:>14}",
        "batch", "best ns/event", "median ns/event", "best µs/batch"
    );
    for &n in &[1usize, 64, 1024, 8192] {
        let input = batch(n);
        let mut sink = Sink {
            events: 0,
            last: None,
        };
        for _ in 0..50 {
            op.process_batch(input.clone(), &mut sink).unwrap();
        }
        assert_eq!(
            sink.last.as_ref(),
            Some(&input),
            "identity must return the batch"
        );
        // Cloning the input is the caller's cost (a batch arrives owned): clones are made
        // outside the timed loop.
        let per_round = (200_000 / n).clamp(20, 50_000);
        let mut rounds = Vec::new();
        let mut inputs: Vec<Batch> = Vec::with_capacity(per_round);
        for _ in 0..15 {
            inputs.extend((0..per_round).map(|_| input.clone()));
            let start = Instant::now();
            for b in inputs.drain(..) {
                op.process_batch(b, &mut sink).unwrap();
            }
            rounds.push(start.elapsed().as_nanos() as f64 / (per_round * n) as f64);
        }
        black_box(&sink.last);
        rounds.sort_by(f64::total_cmp);
        println!(
            "{:>8} {:>16.1} {:>18.1} {:>14.2}",
            n,
            rounds[0],
            rounds[rounds.len() / 2],
            rounds[0] * n as f64 / 1000.0
        );
    }
}
