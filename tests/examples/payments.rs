//! Writes a deterministic stream of card payments as JSON lines
//! (`{"time": <ms>, "card": "...", "amount": ...}`), the input of
//! `plugins/fraud-rules/fraud.yaml`:
//!
//! `cargo run --release -p sluice-tests --example payments -- PATH [COUNT] [CARDS]`

use sluice_tests::payments::{PaymentsConfig, generate, write_jsonl};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: payments PATH [COUNT (default 1000000)] [CARDS (default 10000)]");
        std::process::exit(2);
    };
    let number = |i: usize, default: usize| -> usize {
        args.get(i).map_or(default, |v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("payments: '{v}' is not a number");
                std::process::exit(2)
            })
        })
    };
    let cfg = PaymentsConfig {
        count: number(1, 1_000_000),
        cards: number(2, 10_000),
        mean_gap_ms: 1_000,
        ..Default::default()
    };
    let path = std::path::Path::new(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).expect("create the folder");
    }
    write_jsonl(&generate(&cfg), path).expect("write the payments");
    eprintln!("wrote {} payments to {}", cfg.count, path.display());
}
