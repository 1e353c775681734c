//! `sluice`: run stream-processing jobs whose operators are WebAssembly components.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sluice_cli::control;
use sluice_cli::job::{JobResolver, build_graph};
use sluice_cli::progress::{RunSummary, group, process_cpu_time, progress_line};
use sluice_core::graph::VertexKind;
use sluice_core::runtime::{JobOutcome, StartFrom, Supervisor};
use sluice_core::spec::Overrides;
use sluice_wasm::{RuntimeConfig, WasmRuntime};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a stream processor with Flink's event-time semantics and WebAssembly operators",
    long_about = "Sluice runs streaming jobs: sources -> WebAssembly operators -> keyed event-time windows -> sinks.\n\
A job is a spec file (YAML or JSON; see host/core/JOB-SPEC.md). Everything runs in this process: \
no server, broker or cluster is needed.\n\n\
Examples:\n  \
sluice run plugins/flight-delays/flights.yaml                  run the flights demo\n  \
sluice run plugins/flight-delays/flights.yaml --parallelism 4  same job, 4 window subtasks\n  \
sluice check plugins/flight-delays/flights.yaml                validate a spec and print its graph\n  \
sluice serve                                                   start the server (REST API on 127.0.0.1:8081)\n  \
sluice job submit plugins/flight-delays/flights.yaml           run the flights job on the server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job spec to completion (bounded inputs) or until Ctrl-C, with progress and a summary.
    #[command(long_about = "Run a job spec in this process.\n\n\
Progress (events, rate, current watermark, window results, late events) goes to stderr \
every second; at the end a summary shows events in, window results, late events, \
throughput, CPU time per million events, and where the output files are.\n\n\
Relative paths in the spec (inputs, .wasm operators, outputs) resolve against the spec's \
folder; inputs named `npm:<package>@<version>/<path>` are fetched once with npm into the \
cache ($SLUICE_CACHE_DIR, else ~/.cache/sluice) and checked against the spec's sha256.")]
    Run {
        /// The job spec (YAML or JSON).
        spec: PathBuf,
        /// Override the spec's default parallelism (window subtasks).
        #[arg(long, short)]
        parallelism: Option<usize>,
        /// Override the spec's batch size (events per source batch).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Put every output under this folder: a relative sink path is placed under it
        /// with its leading `..` removed (`../../out/flights/windows.jsonl` writes
        /// DIR/out/flights/windows.jsonl); an absolute sink path is refused.
        #[arg(long)]
        output_dir: Option<PathBuf>,
        /// No progress lines, only the summary.
        #[arg(long, short)]
        quiet: bool,
        /// Start from this savepoint (its folder in the job's checkpoint storage, as
        /// `sluice savepoint` printed it) instead of the latest checkpoint.
        #[arg(long, value_name = "FOLDER")]
        from_savepoint: Option<String>,
        /// With --from-savepoint: drop state of operators the job no longer has.
        #[arg(long, requires = "from_savepoint")]
        allow_non_restored_state: bool,
        /// Start from scratch, ignoring the job's existing checkpoints.
        #[arg(long, conflicts_with = "from_savepoint")]
        fresh: bool,
    },
    /// Take a savepoint of a running job (started by `sluice run` on this machine).
    #[command(
        long_about = "Take a savepoint of a running job, started by `sluice run SPEC` on this machine, and print its folder in the job's checkpoint storage. A savepoint is self-contained and portable: `sluice run SPEC --from-savepoint FOLDER` restarts the job from it, with another parallelism or a new version of an operator."
    )]
    Savepoint {
        /// The job's spec (for its name).
        spec: PathBuf,
        /// Stop the job once the savepoint is complete (stop-with-savepoint).
        #[arg(long)]
        stop: bool,
    },
    /// Stop a running job with a savepoint (same as `sluice savepoint --stop`).
    Stop {
        /// The job's spec (for its name).
        spec: PathBuf,
    },
    /// Build an operator folder into a WebAssembly component (Rust, Python, TypeScript/JavaScript, C).
    #[command(
        long_about = "Build the operator in a folder into a WebAssembly component with its language's toolchain: Rust (Cargo.toml; cargo, target wasm32-wasip2), Python (app.py; componentize-py), TypeScript or JavaScript (app.ts / app.js; esbuild and componentize-js), C (app.c; clang for wasm32-wasi with wasi-libc). The language is detected from the files unless --lang says it. Prints the component's path.\n\nExample:\n  sluice build plugins/flight-delays-py"
    )]
    Build {
        /// The operator's folder.
        dir: PathBuf,
        /// rust, python, typescript, javascript or c (default: detected).
        #[arg(long)]
        lang: Option<String>,
        /// Where to write the component (default: <dir>/<folder name>.wasm; Rust: cargo's target folder).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Kafka tools.
    Kafka {
        #[command(subcommand)]
        command: KafkaCommand,
    },
    /// Validate a job spec (and load its operators) without running it; print the job graph.
    Check {
        /// The job spec (YAML or JSON).
        spec: PathBuf,
    },
    /// Start the server: the REST API (/v1), the operator store and the jobs, run in
    /// this process.
    #[command(
        long_about = "Start the server: the REST API under /v1 (OpenAPI document at /v1/openapi.json), Prometheus figures at /metrics, health at /healthz. Operators uploaded to it, job records and the jobs' folders (checkpoints, relative outputs) are kept in the data directory; when the server starts again, the jobs that were running resume from their latest checkpoint.\n\nWith a token (--token or SLUICE_TOKEN) every request but /healthz needs `Authorization: Bearer <token>`. Listening on an address other than loopback without a token is refused.\n\nExample:\n  sluice serve --data-dir ./sluice-data\n  curl http://127.0.0.1:8081/healthz"
    )]
    Serve {
        /// Where operators, job records and job folders are kept (default:
        /// $XDG_DATA_HOME/sluice, else ~/.local/share/sluice).
        #[arg(long, env = "SLUICE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8081")]
        bind: std::net::SocketAddr,
        /// The bearer token every request but /healthz must carry.
        #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The largest operator component accepted, bytes.
        #[arg(long, default_value_t = 128 << 20)]
        max_operator_size: usize,
        /// The largest job spec accepted, bytes.
        #[arg(long, default_value_t = 1 << 20)]
        max_spec_size: usize,
    },
    /// Operators on a server: upload, list, show, delete.
    Operator {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Jobs on a server: submit, list, show, stop, savepoint, restart.
    Job {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: JobCommand,
    },
}

/// Which server, and its token.
#[derive(clap::Args)]
struct ServerArgs {
    /// The server's URL.
    #[arg(long, env = "SLUICE_SERVER", default_value_t = sluice_cli::client::default_server(), global = true)]
    server: String,
    /// The server's token.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Upload a component (.wasm); prints its SHA-256.
    Upload {
        /// The component.
        file: PathBuf,
        /// Its name (with --version, jobs can name it name@version).
        #[arg(long, requires = "version")]
        name: Option<String>,
        /// Its version.
        #[arg(long, requires = "name")]
        version: Option<String>,
    },
    /// List the stored operators.
    List,
    /// Show an operator (by SHA-256 or name@version) as JSON.
    Show {
        /// SHA-256 or name@version.
        operator: String,
    },
}

#[derive(Subcommand)]
enum JobCommand {
    /// Submit a job spec (YAML or JSON); prints the job's id.
    #[command(
        long_about = "Submit a job spec (YAML or JSON) to the server, which runs it. Operators given by a `wasm:` path are uploaded first and named by their hash; operators may also be named `operator: <sha256>` or `operator: <name>@<version>` of uploaded components. Other relative paths (inputs, outputs, checkpoints) resolve on the server, against the job's folder in its data directory.\n\nExample:\n  sluice job submit plugins/flight-delays/flights.yaml"
    )]
    Submit {
        /// The job spec.
        spec: PathBuf,
    },
    /// List jobs.
    List,
    /// Show a job (status, graph, checkpoints...) as JSON.
    Show {
        /// The job id.
        id: String,
    },
    /// Stop a job: at once (cancel; checkpoints are kept), or with a savepoint.
    Stop {
        /// The job id.
        id: String,
        /// Take a savepoint and stop after it; prints its folder.
        #[arg(long)]
        savepoint: bool,
    },
    /// Take a savepoint of a running job; prints its folder.
    Savepoint {
        /// The job id.
        id: String,
    },
    /// Replace an operator's code while the job runs (hot-swap), with an uploaded
    /// operator; prints the checkpoint it happened at and the pause.
    #[command(
        long_about = "Replace the code of one operator of a running job with an uploaded operator, without stopping the job: at a checkpoint barrier, each of its subtasks moves its keyed state and timers to the new version; events before the barrier went through the old version, events after it through the new one. The swap is committed when the next checkpoint completes; if the new version fails to start or fails before then, the job goes back to the old version by itself.\n\nExample:\n  sluice operator upload target/wasm32-wasip2/release/flight_delays.wasm --name flights --version 2.0\n  sluice job swap 3f2a9c0d1e4b5a6c flight-delays flights@2.0"
    )]
    Swap {
        /// The job id.
        id: String,
        /// The operator's id in the job spec.
        operator_id: String,
        /// The new version: an uploaded operator's SHA-256 or name@version.
        operator: String,
    },
    /// Start a job that is not running again: from a savepoint (default: its latest),
    /// else from its latest checkpoint.
    Restart {
        /// The job id.
        id: String,
        /// The savepoint folder (as `sluice job savepoint` printed it).
        #[arg(long, value_name = "FOLDER")]
        from_savepoint: Option<String>,
    },
}

#[derive(Subcommand)]
enum KafkaCommand {
    /// Produce the events of one source of a job spec into a Kafka topic, in the source's order.
    #[command(
        long_about = "Produce every event of one source of a job spec into a Kafka topic, in the order the source reads them (for the flights job: in order of actual departure), with the events' keys, values and times. The topic is created if it does not exist.\n\nExample:\n  sluice kafka produce plugins/flight-delays/flights.yaml --source flights --brokers 127.0.0.1:9092 --topic flights --partitions 4"
    )]
    Produce {
        /// The job spec whose source is read.
        spec: PathBuf,
        /// The source's id in the spec.
        #[arg(long)]
        source: String,
        /// Kafka bootstrap servers.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// The topic to write.
        #[arg(long)]
        topic: String,
        /// Partitions of the topic if it is created.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// round-robin (default) or key-hash.
        #[arg(long, default_value = "round-robin")]
        partitioning: String,
    },
    /// Create a topic (kept as it is if it exists).
    CreateTopic {
        /// The topic.
        topic: String,
        /// Kafka bootstrap servers.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal, and never with NO_COLOR set (no-color.org).
        .with_ansi(
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let (spec, stop) = match &cli.command {
        Command::Savepoint { spec, stop } => (Some(spec), *stop),
        Command::Stop { spec } => (Some(spec), true),
        _ => (None, false),
    };
    if let Some(spec) = spec {
        let name = sluice_core::spec::load(spec)?.spec.name;
        let folder = control::request(&name, stop, Duration::from_secs(3600))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("{folder}");
        return Ok(());
    }
    match cli.command {
        Command::Serve {
            data_dir,
            bind,
            token,
            max_operator_size,
            max_spec_size,
        } => serve(data_dir, bind, token, max_operator_size, max_spec_size),
        Command::Operator { server, command } => {
            let client = sluice_cli::client::Client::new(&server.server, server.token);
            operator_command(&client, command).map_err(|e| anyhow::anyhow!("{e}"))
        }
        Command::Job { server, command } => {
            let client = sluice_cli::client::Client::new(&server.server, server.token);
            job_command(&client, command).map_err(|e| anyhow::anyhow!("{e}"))
        }
        command => run_local(Cli { command }),
    }
}

fn run_local(cli: Cli) -> Result<()> {
    if let Command::Build { dir, lang, out } = &cli.command {
        let lang = lang
            .as_deref()
            .map(sluice_cli::build::Lang::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--lang: {e}"))?;
        let built = sluice_cli::build::build(dir, lang, out.as_deref())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("{}", built.display());
        return Ok(());
    }
    let wasm =
        WasmRuntime::new(RuntimeConfig::default()).context("starting the WebAssembly runtime")?;
    match cli.command {
        Command::Savepoint { .. }
        | Command::Stop { .. }
        | Command::Build { .. }
        | Command::Serve { .. }
        | Command::Operator { .. }
        | Command::Job { .. } => {
            unreachable!("handled above")
        }
        Command::Kafka {
            command:
                KafkaCommand::Produce {
                    spec,
                    source,
                    brokers,
                    topic,
                    partitions,
                    partitioning,
                },
        } => {
            let resolver = JobResolver {
                wasm: &wasm,
                output_dir: None,
            };
            let graph = build_graph(&spec, &resolver, Overrides::default())?;
            sluice_cli::kafka::produce(
                &graph,
                &source,
                &brokers,
                &topic,
                partitions,
                &partitioning,
            )?;
            Ok(())
        }
        Command::Kafka {
            command:
                KafkaCommand::CreateTopic {
                    topic,
                    brokers,
                    partitions,
                },
        } => Ok(sluice_kafka::admin::create_topic(
            &brokers, &topic, partitions,
        )?),
        Command::Check { spec } => {
            let resolver = JobResolver {
                wasm: &wasm,
                output_dir: None,
            };
            let graph = build_graph(&spec, &resolver, Overrides::default())?;
            println!("job '{}': {} vertices", graph.name, graph.vertices.len());
            for v in &graph.vertices {
                let inputs: Vec<String> = v
                    .inputs
                    .iter()
                    .map(|i| {
                        let up = &graph.vertices[i.vertex].id;
                        let side = i
                            .side_output
                            .as_deref()
                            .map(|s| format!(".{s}"))
                            .unwrap_or_default();
                        format!("{up}{side} ({:?})", i.partitioning)
                    })
                    .collect();
                println!(
                    "  {:<8} {:<20} x{}  <- {}",
                    v.kind.name(),
                    v.id,
                    v.parallelism,
                    inputs.join(", ")
                );
            }
            Ok(())
        }
        Command::Run {
            spec,
            parallelism,
            batch_size,
            output_dir,
            quiet,
            from_savepoint,
            allow_non_restored_state,
            fresh,
        } => {
            let resolver = JobResolver {
                wasm: &wasm,
                output_dir,
            };
            let overrides = Overrides {
                parallelism,
                batch_size,
            };
            // Ctrl-C cancels the job: subtasks stop, sinks flush what they wrote, and
            // the summary is printed.
            let interrupted = Arc::new(AtomicBool::new(false));
            let mut cancelled = false;
            {
                let flag = interrupted.clone();
                // A second Ctrl-C (say, while the job is still being prepared) exits at once.
                let handler = move || {
                    if flag.swap(true, Ordering::SeqCst) {
                        std::process::exit(130);
                    }
                };
                if let Err(e) = ctrlc::set_handler(handler) {
                    tracing::warn!("Ctrl-C will not stop the job cleanly: {e}");
                }
            }
            let prepare = Instant::now();
            let graph = build_graph(&spec, &resolver, overrides)?;
            let name = graph.name.clone();
            let outputs: Vec<(String, String)> = graph
                .vertices
                .iter()
                .filter_map(|v| match &v.kind {
                    VertexKind::Sink { factory } => Some((v.id.clone(), factory.describe())),
                    _ => None,
                })
                .collect();
            let window_parallelism = graph
                .vertices
                .iter()
                .filter(|v| matches!(v.kind, VertexKind::Window { .. }))
                .map(|v| v.parallelism)
                .max();
            eprintln!(
                "sluice: job '{name}' ready in {:.2}s ({} vertices{}), running…",
                prepare.elapsed().as_secs_f64(),
                graph.vertices.len(),
                window_parallelism
                    .map(|p| format!(", window parallelism {p}"))
                    .unwrap_or_default()
            );
            let from = match from_savepoint {
                Some(folder) => StartFrom::Savepoint {
                    folder,
                    allow_non_restored_state,
                },
                None if fresh => StartFrom::Scratch,
                None => StartFrom::Latest,
            };
            // Claim the job's control socket before it starts: one run of a job at a time.
            let control = match graph.durability.checkpoints {
                Some(_) => Some(control::claim(&name).map_err(|e| anyhow::anyhow!("{e}"))?),
                None => None,
            };
            let cpu0 = process_cpu_time();
            let job = Supervisor::start(Arc::new(graph), from)?;
            // Say where the job resumed from, at its start and after each restart.
            let mut restore_said = None;
            let mut say_restore = |tty: bool| {
                let info = job.handle().restored();
                let attempt = info.as_ref().map(|r| r.attempt);
                if attempt != restore_said {
                    if let Some(info) = info {
                        eprintln!("{}sluice: {info}", if tty { "\r\x1b[K" } else { "" });
                    }
                    restore_said = attempt;
                }
            };
            say_restore(false);
            if let Some((listener, _)) = control {
                let handle = job.handle();
                control::serve(listener, move |stop| {
                    handle.savepoint(stop).map_err(|e| e.to_string())
                })
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let tty = std::io::stderr().is_terminal();
            let interval = Duration::from_secs(1);
            let mut last = Instant::now();
            let mut prev = 0;
            let mut reported = 0;
            while !job.is_finished() {
                std::thread::sleep(Duration::from_millis(50));
                if interrupted.load(Ordering::SeqCst) && !cancelled {
                    eprintln!(
                        "\nsluice: interrupted, stopping the job (its checkpoints are kept: run it again to resume)…"
                    );
                    job.cancel();
                    cancelled = true;
                }
                let events = job.events();
                // A failure for good is reported with the summary.
                for e in events[reported..]
                    .iter()
                    .filter(|e| e.kind != sluice_core::runtime::JobEventKind::Failed)
                {
                    eprintln!("{}sluice: {e}", if tty { "\r\x1b[K" } else { "" });
                }
                reported = events.len();
                say_restore(tty);
                if !quiet && last.elapsed() >= interval {
                    let (line, events) = progress_line(job.metrics(), prev, last.elapsed());
                    if tty {
                        eprint!("\r{line}\x1b[K");
                    } else {
                        eprintln!("{line}");
                    }
                    prev = events;
                    last = Instant::now();
                }
            }
            if tty && !quiet {
                eprintln!();
            }
            let metrics = job.metrics().clone();
            let (checkpoints, restarts) = (job.checkpoints(), job.restarts());
            let result = job.join();
            let s = RunSummary::from_metrics(&metrics, process_cpu_time().saturating_sub(cpu0));
            let status = match &result {
                Ok(JobOutcome::Finished) => "finished".to_string(),
                Ok(JobOutcome::Stopped { savepoint }) => {
                    format!("stopped with savepoint {savepoint}")
                }
                Err(_) if cancelled => "was cancelled".to_string(),
                Err(_) => "FAILED".to_string(),
            };
            print_summary(&name, &s, &outputs, &status);
            print_checkpoints(&checkpoints, restarts);
            print_vertices(&metrics);
            if let Ok(JobOutcome::Stopped { savepoint }) = &result {
                println!(
                    "  resume with: sluice run {} --from-savepoint {savepoint}",
                    spec.display()
                );
            }
            result
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("job '{name}' failed: {e}"))
        }
    }
}

fn print_summary(name: &str, s: &RunSummary, outputs: &[(String, String)], status: &str) {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let cpu = s.cpu.as_secs_f64();
    println!("\nJob '{name}' {status} in {secs:.2} s");
    println!(
        "  events in:                {:>12}   {:.2} M events/s, {:.2} M events per CPU-second ({:.3} CPU-s per M events)",
        group(s.events_in),
        s.events_in as f64 / secs / 1e6,
        s.events_in as f64 / cpu.max(1e-9) / 1e6,
        cpu / (s.events_in.max(1) as f64 / 1e6)
    );
    if s.window_input > 0 {
        println!(
            "  window results:           {:>12}   firings ({} on time, {} late) of {} windows",
            group(s.window_firings),
            group(s.window_firings - s.late_firings),
            group(s.late_firings),
            group(s.final_windows)
        );
        println!(
            "  events in final windows:  {:>12}",
            group(s.events_in_final_windows)
        );
        println!("  late events (side output):{:>12}", group(s.late_events));
        let total = s.events_windowed + s.late_events;
        let mark = if total == s.window_input {
            "nothing dropped"
        } else {
            "MISMATCH"
        };
        println!(
            "  check: windowed {} + late {} = {} = events into windows {}  ({mark})",
            group(s.events_windowed),
            group(s.late_events),
            group(total),
            group(s.window_input)
        );
    }
    if s.unrouted_side_events > 0 {
        println!(
            "  side-output events with no consumer: {}",
            group(s.unrouted_side_events)
        );
    }
    println!("  outputs:");
    for (id, path) in outputs {
        println!("    {id:<16} {}", tidy_path(path));
    }
}

/// Per vertex: subtasks, events in and out, side-output events, and the time its
/// subtasks spent waiting on full downstream channels (backpressure).
fn print_checkpoints(checkpoints: &[sluice_core::checkpoint::CheckpointStats], restarts: u32) {
    if checkpoints.is_empty() && restarts == 0 {
        return;
    }
    let n = checkpoints.len().max(1) as u32;
    let avg = checkpoints.iter().map(|c| c.duration).sum::<Duration>() / n;
    let max = checkpoints
        .iter()
        .map(|c| c.duration)
        .max()
        .unwrap_or_default();
    let uploaded: u64 = checkpoints.iter().map(|c| c.uploaded_bytes).sum();
    let last = checkpoints.last().map_or(0, |c| c.state_bytes);
    println!(
        "  checkpoints:              {:>12}   {:.0} ms average, {:.0} ms longest; {} uploaded in all; last state {}; restarts: {restarts}",
        checkpoints.len(),
        avg.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        bytes(uploaded),
        bytes(last)
    );
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn print_vertices(metrics: &sluice_core::runtime::JobMetrics) {
    println!("  vertices:");
    println!(
        "    {:<20} {:<8} {:>3} {:>12} {:>12} {:>10} {:>14}",
        "id", "kind", "p", "events in", "events out", "side out", "backpressured"
    );
    for v in &metrics.vertices {
        let bp_ms = v.sum(|s| &s.backpressured_ns) / 1_000_000;
        println!(
            "    {:<20} {:<8} {:>3} {:>12} {:>12} {:>10} {:>11} ms",
            v.id,
            v.kind,
            v.subtasks.len(),
            group(v.sum(|s| &s.records_in)),
            group(v.sum(|s| &s.records_out)),
            group(v.sum(|s| &s.side_records_out)),
            group(bp_ms)
        );
    }
}

/// `sluice serve`.
fn serve(
    data_dir: Option<PathBuf>,
    bind: std::net::SocketAddr,
    token: Option<String>,
    max_operator_size: usize,
    max_spec_size: usize,
) -> Result<()> {
    let data_dir = data_dir.unwrap_or_else(|| {
        std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .map(|d| d.join("sluice"))
            .unwrap_or_else(|| PathBuf::from("sluice-data"))
    });
    let config = sluice_server::Config {
        data_dir: data_dir.clone(),
        bind,
        token: token.filter(|t| !t.is_empty()),
        max_operator_bytes: max_operator_size,
        max_spec_bytes: max_spec_size,
    };
    // Checked before the WebAssembly runtime starts, so the refusal comes at once.
    sluice_server::auth::check_bind(config.bind, config.token.as_deref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let wasm =
        WasmRuntime::new(RuntimeConfig::default()).context("starting the WebAssembly runtime")?;
    let engine = Arc::new(sluice_cli::serve::CliEngine { wasm });
    let auth = if config.token.is_some() {
        "token required"
    } else {
        "no token"
    };
    sluice_server::serve_blocking(config, engine, |addr| {
        eprintln!(
            "sluice: serving on http://{addr} ({auth}; data in {})",
            data_dir.display()
        );
    })
    .map_err(|e| anyhow::anyhow!("{e}"))
}

fn operator_command(
    client: &sluice_cli::client::Client,
    command: OperatorCommand,
) -> Result<(), String> {
    match command {
        OperatorCommand::Upload {
            file,
            name,
            version,
        } => {
            let bytes =
                std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let o = client.upload_operator(
                &bytes,
                &sluice_cli::client::file_label(&file),
                name.as_deref(),
                version.as_deref(),
            )?;
            println!("{}", o["sha256"].as_str().unwrap_or_default());
            if let (Some(n), Some(v)) = (o["name"].as_str(), o["version"].as_str()) {
                eprintln!("stored as {n}@{v} ({} bytes)", o["size_bytes"]);
            }
        }
        OperatorCommand::List => {
            let list = client.get("/v1/operators")?;
            println!(
                "{:<64}  {:<24} {:>10}  jobs",
                "sha256", "name@version", "bytes"
            );
            for o in list.as_array().into_iter().flatten() {
                let name = match (o["name"].as_str(), o["version"].as_str()) {
                    (Some(n), Some(v)) => format!("{n}@{v}"),
                    _ => "-".into(),
                };
                println!(
                    "{:<64}  {:<24} {:>10}  {}",
                    o["sha256"].as_str().unwrap_or_default(),
                    name,
                    o["size_bytes"],
                    o["jobs"].as_array().map_or(0, Vec::len)
                );
            }
        }
        OperatorCommand::Show { operator } => {
            let o = client.get(&format!("/v1/operators/{operator}"))?;
            println!("{}", serde_json::to_string_pretty(&o).unwrap_or_default());
        }
    }
    Ok(())
}

fn job_command(client: &sluice_cli::client::Client, command: JobCommand) -> Result<(), String> {
    let status = |j: &serde_json::Value| j["status"].as_str().unwrap_or("?").to_string();
    match command {
        JobCommand::Submit { spec } => {
            let prepared = sluice_cli::client::prepare_spec(client, &spec)?;
            let job = client.submit_job(&prepared)?;
            println!("{}", job["id"].as_str().unwrap_or_default());
            eprintln!(
                "job '{}' {}: {} vertices",
                job["name"].as_str().unwrap_or_default(),
                status(&job),
                job["graph"]["vertices"].as_array().map_or(0, Vec::len)
            );
        }
        JobCommand::List => {
            let list = client.get("/v1/jobs")?;
            println!(
                "{:<16}  {:<24} {:<10} {:>8}  last error",
                "id", "name", "status", "restarts"
            );
            for j in list.as_array().into_iter().flatten() {
                println!(
                    "{:<16}  {:<24} {:<10} {:>8}  {}",
                    j["id"].as_str().unwrap_or_default(),
                    j["name"].as_str().unwrap_or_default(),
                    status(j),
                    j["restarts"],
                    j["last_error"].as_str().unwrap_or("")
                );
            }
        }
        JobCommand::Show { id } => {
            let j = client.get(&format!("/v1/jobs/{id}"))?;
            println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
        }
        JobCommand::Stop { id, savepoint } => {
            let r = client.stop_job(&id, savepoint)?;
            if let Some(folder) = r["savepoint"]["folder"].as_str() {
                println!("{folder}");
            }
            eprintln!("job {id}: {}", status(&r["job"]));
        }
        JobCommand::Swap {
            id,
            operator_id,
            operator,
        } => {
            let r = client.swap_operator(&id, &operator_id, &operator)?;
            println!(
                "{}: {} at checkpoint {} (pause {} ms)",
                operator_id,
                r["status"].as_str().unwrap_or_default(),
                r["checkpoint"],
                r["pause_ms"]
                    .as_f64()
                    .map_or("-".to_string(), |p| format!("{p:.1}"))
            );
        }
        JobCommand::Savepoint { id } => {
            let r = client.savepoint(&id)?;
            println!("{}", r["savepoint"]["folder"].as_str().unwrap_or_default());
        }
        JobCommand::Restart { id, from_savepoint } => {
            let body = serde_json::json!({ "savepoint": from_savepoint }).to_string();
            let j = client.post(
                &format!("/v1/jobs/{id}/restart"),
                "application/json",
                body.as_bytes(),
            )?;
            eprintln!(
                "job {id}: {} (restored from {})",
                status(&j),
                j["restored_from"]
                    .as_str()
                    .unwrap_or("nothing: from scratch")
            );
        }
    }
    Ok(())
}

/// `a/b/../../out/x` as `out/x`: removes `.` and `name/..` pairs, for display only.
fn tidy_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "." => {}
            ".." if parts.last().is_some_and(|p| *p != ".." && !p.is_empty()) => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}
