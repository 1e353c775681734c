//! Exactly-once under SIGKILL: the flights job (a WASM operator, keyed event-time windows
//! in RocksDB, two-phase-commit JSON-lines sinks) with checkpoints every 500 ms runs as a
//! `sluice run` process that is killed with SIGKILL at random moments, ten times, and
//! restarted each time; it resumes from its latest complete checkpoint. The committed
//! output must equal the exact answer of a failure-free run
//! (`sluice_tests::flights::exact_answer`): every window firing once, nothing missing.
//!
//! The source replays at 30,000 events/s so that a run lasts ~13 s.
//! Rows: the first 400,000 of the flights file (`SLUICE_KILL_ROWS` to change);
//! `SLUICE_KILL_SEED` replays a run's kill moments.

use serde_yaml_ng::Value;
use sluice_tests::{flights, plugins};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The flights spec, pointed at `input`, writing under `dir`, checkpointing every 500 ms.
fn write_spec(input: &Path, dir: &Path) -> std::path::PathBuf {
    let root = plugins::repo_root();
    let text = std::fs::read_to_string(root.join(flights::SPEC)).unwrap();
    let mut spec: Value = serde_yaml_ng::from_str(&text).unwrap();
    let source = &mut spec["sources"][0];
    source["path"] = input.to_str().unwrap().into();
    source.as_mapping_mut().unwrap().remove("sha256");
    // Paced, so that a run lasts ~13 s and the kills land mid-stream.
    source["max_events_per_second"] = 30_000.into();
    spec["operators"][0]["wasm"] = plugins::wasm("flight_delays").to_str().unwrap().into();
    for sink in spec["sinks"].as_sequence_mut().unwrap() {
        let name = Path::new(sink["path"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_owned();
        sink["path"] = dir.join("out").join(name).to_str().unwrap().into();
    }
    spec["checkpoints"] = serde_yaml_ng::from_str(&format!(
        "{{interval: 500ms, retain: 2, storage: {}}}",
        dir.join("checkpoints").display()
    ))
    .unwrap();
    spec["state"] = serde_yaml_ng::from_str(&format!(
        "{{backend: rocksdb, dir: {}}}",
        dir.join("state").display()
    ))
    .unwrap();
    let path = dir.join("flights.yaml");
    std::fs::write(&path, serde_yaml_ng::to_string(&spec).unwrap()).unwrap();
    path
}

/// The newest complete checkpoint id in `storage`, if any.
fn newest_checkpoint(storage: &Path) -> Option<u64> {
    std::fs::read_dir(storage.join("flights"))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_prefix("chk-")?.parse().ok()?;
            e.path().join("_metadata").exists().then_some(id)
        })
        .max()
}

/// A small deterministic generator (xorshift) for the kill moments.
struct Rng(u64);
impl Rng {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

#[test]
fn killed_ten_times_the_job_commits_exactly_the_failure_free_answer() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let rows_limit = std::env::var("SLUICE_KILL_ROWS")
        .map(|v| v.parse().expect("SLUICE_KILL_ROWS is a number"))
        .unwrap_or(400_000);
    let slice = tmp.path().join("flights-slice.parquet");
    let rows = flights::read_rows(&flights::dataset(), Some(rows_limit), Some(&slice));
    let answer = flights::exact_answer(&rows);
    let spec = write_spec(&slice, tmp.path());
    let seed = std::env::var("SLUICE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill moments seeded with SLUICE_KILL_SEED={seed}");
    let mut rng = Rng(seed);
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", spec.to_str().unwrap(), "--quiet"])
            .env("SLUICE_CACHE_DIR", tmp.path().join("cache"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice")
    };
    let storage = tmp.path().join("checkpoints");
    let mut restored_from = Vec::new();
    let mut kills = 0;
    while kills < 10 {
        let before = newest_checkpoint(&storage);
        let mut child = run();
        let wait = Duration::from_millis(rng.next_ms(400, 1_600));
        let t = Instant::now();
        while t.elapsed() < wait && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(status) = child.try_wait().unwrap() {
            // Finished before the kill: the job is done; the checks below still apply.
            assert!(status.success(), "sluice failed: {status}");
            break;
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        kills += 1;
        restored_from.push(before);
    }
    let out = run().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the last run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{kills} kills; each attempt started from checkpoint {restored_from:?}");
    assert!(
        kills >= 10,
        "the job finished before it was killed ten times ({kills}): use more rows"
    );
    assert!(
        restored_from.iter().flatten().count() >= 5,
        "most attempts should resume from a checkpoint: {restored_from:?}"
    );
    let got = flights::read_output(&tmp.path().join("out"));
    flights::check_output(&answer, &got, "after ten kills");
    // The finished job deleted its checkpoints; no staging or pending files remain.
    assert_eq!(newest_checkpoint(&storage), None);
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Runs `sluice` with `args` to its end; returns stdout. Panics with stderr on failure.
fn sluice(args: &[&str], cache: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_CACHE_DIR", cache)
        .output()
        .expect("run sluice");
    assert!(
        out.status.success(),
        "sluice {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn stop_with_savepoint_and_resume_at_parallelism_2_then_4_then_1_gives_the_exact_answer() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let slice = tmp.path().join("flights-slice.parquet");
    let rows = flights::read_rows(&flights::dataset(), Some(150_000), Some(&slice));
    let answer = flights::exact_answer(&rows);
    let spec = write_spec(&slice, tmp.path());
    let spec = spec.to_str().unwrap();
    let cache = tmp.path().join("cache");
    let mut from: Option<String> = None;
    for p in ["2", "4"] {
        let mut args = vec!["run", spec, "--quiet", "--parallelism", p];
        if let Some(f) = &from {
            args.extend(["--from-savepoint", f.as_str()]);
        }
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(&args)
            .env("SLUICE_CACHE_DIR", &cache)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Let it commit some output, then stop it with a savepoint.
        std::thread::sleep(Duration::from_millis(1_500));
        let folder = sluice(&["stop", spec], &cache).trim().to_string();
        assert!(folder.starts_with("savepoints/flights-"), "{folder}");
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("stopped with savepoint {folder}")),
            "{stdout}"
        );
        assert!(
            tmp.path()
                .join("checkpoints")
                .join(&folder)
                .join("_metadata")
                .is_file()
        );
        let partial = flights::read_output(&tmp.path().join("out")).rows;
        assert!(partial > 0, "output committed before the stop");
        from = Some(folder);
    }
    sluice(
        &[
            "run",
            spec,
            "--quiet",
            "--parallelism",
            "1",
            "--from-savepoint",
            from.as_deref().unwrap(),
        ],
        &cache,
    );
    let got = flights::read_output(&tmp.path().join("out"));
    flights::check_output(&answer, &got, "after rescaling 2 -> 4 -> 1");
}
