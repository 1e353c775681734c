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
use std::time::{Duration, Instant};

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
        b.push(1_700_000_000_000 + i as i64, KEYS[i % 4], &(i as u64).to_le_bytes());
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
    let cache = plugins.parent().unwrap().parent().unwrap().join("host-cache");
    let runtime = WasmRuntime::new(RuntimeConfig::with_cache_dir(cache)).unwrap();
    let component = runtime.load_component(plugins.join("identity.wasm")).unwrap();

    // Instantiate + init.
    let rounds = 200;
    let mut ops = Vec::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let mut op = WasmOperator::new(&component, vec![], Limits::default());
        op.open(&ctx()).unwrap();
        ops.push(op);
    }
    let per = start.elapsed() / rounds as u32;
    drop(ops);
    println!("instantiate + init: {:.1} µs", per.as_secs_f64() * 1e6);

    let mut op = WasmOperator::new(&component, vec![], Limits::default());
    op.open(&ctx()).unwrap();
    println!("{:>10} {:>14} {:>12}", "batch", "ns/event", "µs/batch");
    for &n in &[1usize, 64, 1024, 8192] {
        let input = batch(n);
        let mut sink = Sink { events: 0, last: None };
        // Warm up, then run for about a second. Cloning the input is the caller's cost
        // (a batch arrives owned), so it is timed separately and subtracted.
        for _ in 0..50 {
            op.process_batch(input.clone(), &mut sink).unwrap();
        }
        assert_eq!(sink.last.as_ref(), Some(&input), "identity must return the batch");
        let iters = (2_000_000 / n).clamp(200, 200_000);
        let mut inputs: Vec<Batch> = Vec::with_capacity(64);
        let mut total = Duration::ZERO;
        let mut done = 0;
        while done < iters {
            let chunk = 64.min(iters - done);
            inputs.extend((0..chunk).map(|_| input.clone()));
            let start = Instant::now();
            for b in inputs.drain(..) {
                op.process_batch(b, &mut sink).unwrap();
            }
            total += start.elapsed();
            done += chunk;
        }
        black_box(&sink.last);
        let ns = total.as_nanos() as f64 / (iters * n) as f64;
        println!(
            "{:>10} {:>14.1} {:>12.2}",
            n,
            ns,
            total.as_secs_f64() * 1e6 / iters as f64
        );
    }
}
