//! The flights job end to end — the spec in the repository, the real data, the Rust WASM
//! operator, the windows and the JSON-lines sinks — against the exact answer computed
//! independently (`sluice_tests::flights::exact_answer`), at batch sizes 1, 7, 1024 and
//! 65536 and parallelism 1, 2 and 4.
//!
//! CI runs a slice of the file (the first 150,000 rows, about 9 days); set
//! `SLUICE_FLIGHTS_ROWS=3000000` (or `all`) for the whole file.

use sluice_cli::job::JobResolver;
use sluice_cli::progress::RunSummary;
use sluice_core::spec::{self, Overrides};
use sluice_tests::flights::{self, Answer};
use sluice_tests::plugins;
use sluice_wasm::{RuntimeConfig, WasmRuntime};
use std::path::Path;
use std::time::Duration;

fn rows_limit() -> Option<usize> {
    match std::env::var("SLUICE_FLIGHTS_ROWS").ok().as_deref() {
        Some("all") => None,
        Some(n) => Some(n.parse().expect("SLUICE_FLIGHTS_ROWS is a number or 'all'")),
        None => Some(150_000),
    }
}

struct Output {
    output: flights::Output,
    summary: RunSummary,
}

fn run_job(
    wasm: &WasmRuntime,
    input: &Path,
    out_dir: &Path,
    parallelism: usize,
    batch_size: usize,
) -> Output {
    let root = plugins::repo_root();
    let spec_path = root.join(flights::SPEC);
    let mut loaded = spec::load(&spec_path).expect("the flights spec loads");
    let source = &mut loaded.spec.sources[0].options;
    source.insert("path".into(), input.to_str().unwrap().into());
    source.remove("sha256");
    let resolver = JobResolver {
        wasm,
        output_dir: Some(out_dir.to_path_buf()),
    };
    let graph = loaded
        .spec
        .to_graph(
            &loaded.dir,
            &resolver,
            Overrides {
                parallelism: Some(parallelism),
                batch_size: Some(batch_size),
            },
        )
        .expect("the flights spec builds");
    let job = sluice_core::runtime::start(graph).expect("the job starts");
    let metrics = job.metrics().clone();
    job.join().expect("the job succeeds");
    let summary = RunSummary::from_metrics(&metrics, Duration::ZERO);

    // The spec writes ../../out/flights/*.jsonl: out/flights/ under out_dir.
    Output {
        output: flights::read_output(&out_dir.join("out/flights")),
        summary,
    }
}

fn check(answer: &Answer, got: &Output, label: &str) {
    flights::check_output(answer, &got.output, label);
    // Nothing dropped silently: input = events in final windows + late side output.
    let n = got.summary.events_in;
    assert_eq!(
        got.summary.events_in_final_windows + got.summary.late_events,
        n,
        "{label}: accounting"
    );
    assert_eq!(
        got.summary.late_events as usize,
        answer.late.len(),
        "{label}: late counter"
    );
    assert_eq!(
        got.summary.window_firings as usize, got.output.rows,
        "{label}: firings counted = rows written"
    );
}

#[test]
fn flights_job_equals_the_exact_answer_for_every_batch_size_and_parallelism() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let slice = tmp.path().join("flights-slice.parquet");
    let rows = flights::read_rows(&flights::dataset(), rows_limit(), Some(&slice));
    let answer = flights::exact_answer(&rows);
    assert!(
        answer.late.len() > 100,
        "the slice should have late events ({})",
        answer.late.len()
    );
    assert!(
        answer
            .windows
            .values()
            .any(|f| f.len() > 1 && f[0].timing == "on_time" && f[1].timing == "late"),
        "the slice should have windows fired on time and again late"
    );

    let wasm = WasmRuntime::new(RuntimeConfig::with_cache_dir(tmp.path().join("cache"))).unwrap();
    for parallelism in [1, 2, 4] {
        for batch_size in [1, 7, 1024, 65536] {
            let label = format!("parallelism {parallelism}, batch size {batch_size}");
            let out_dir = tmp.path().join(format!("p{parallelism}-b{batch_size}/a/b"));
            std::fs::create_dir_all(&out_dir).unwrap();
            let got = run_job(&wasm, &slice, &out_dir, parallelism, batch_size);
            assert_eq!(
                got.summary.events_in as usize,
                rows.len(),
                "{label}: events in"
            );
            check(&answer, &got, &label);
        }
    }
}
