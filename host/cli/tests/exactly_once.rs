//! Exactly-once under SIGKILL, for two jobs. The fraud job (the fraud-rules WASM operator
//! with keyed state and event-time timers per card, and hourly windows per card) must
//! commit exactly the alerts of a plain computation of the rules and exactly each
//! window. The flights job (a WASM operator, keyed event-time windows
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
use sluice_tests::{flights, kill, payments, plugins};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

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
    kill::checkpoint_every_500ms(&mut spec, dir);
    let path = dir.join("flights.yaml");
    std::fs::write(&path, serde_yaml_ng::to_string(&spec).unwrap()).unwrap();
    path
}

/// Hidden files (staging, pending) left in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn killed_ten_times_the_flights_job_commits_exactly_the_failure_free_answer() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let rows_limit = std::env::var("SLUICE_KILL_ROWS")
        .map(|v| v.parse().expect("SLUICE_KILL_ROWS is a number"))
        .unwrap_or(400_000);
    let slice = tmp.path().join("flights-slice.parquet");
    let rows = flights::read_rows(&flights::dataset(), Some(rows_limit), Some(&slice));
    let answer = flights::exact_answer(&rows);
    let spec = write_spec(&slice, tmp.path());
    kill::kill_ten_times(
        env!("CARGO_BIN_EXE_sluice").as_ref(),
        &spec,
        "flights",
        &tmp.path().join("checkpoints"),
        &tmp.path().join("cache"),
    );
    let got = flights::read_output(&tmp.path().join("out"));
    flights::check_output(&answer, &got, "after ten kills");
    let left = leftovers(&tmp.path().join("out"));
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn killed_ten_times_the_fraud_job_commits_exactly_the_failure_free_answer() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let payments = payments::generate(&payments::PaymentsConfig {
        count: 300_000,
        cards: 2_000,
        mean_gap_ms: 1_000,
        ..Default::default()
    });
    let input = tmp.path().join("payments.jsonl");
    payments::write_jsonl(&payments, &input).unwrap();
    // The repository's spec, pointed at this input and folder, paced to ~15 s a run.
    let root = plugins::repo_root();
    let text = std::fs::read_to_string(root.join("plugins/fraud-rules/fraud.yaml")).unwrap();
    let mut spec: Value = serde_yaml_ng::from_str(&text).unwrap();
    let config: Vec<(String, String)> = spec["operators"][0]["config"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                other => serde_yaml_ng::to_string(other).unwrap().trim().to_string(),
            };
            (k.as_str().unwrap().to_string(), v)
        })
        .collect();
    let mut want = payments::RULES.config();
    want.sort();
    let mut config = config;
    config.sort();
    assert_eq!(config, want, "the spec's rules are the reference's");
    spec["sources"][0]["path"] = input.to_str().unwrap().into();
    spec["sources"][0]["max_events_per_second"] = 20_000.into();
    spec["operators"][0]["wasm"] = plugins::wasm("fraud_rules").to_str().unwrap().into();
    for sink in spec["sinks"].as_sequence_mut().unwrap() {
        let name = Path::new(sink["path"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_owned();
        sink["path"] = tmp.path().join("out").join(name).to_str().unwrap().into();
    }
    spec["checkpoints"]["interval"] = "500ms".into();
    spec["checkpoints"]["storage"] = tmp.path().join("checkpoints").to_str().unwrap().into();
    spec["state"]["dir"] = tmp.path().join("state").to_str().unwrap().into();
    let spec_path = tmp.path().join("fraud.yaml");
    std::fs::write(&spec_path, serde_yaml_ng::to_string(&spec).unwrap()).unwrap();

    kill::kill_ten_times(
        env!("CARGO_BIN_EXE_sluice").as_ref(),
        &spec_path,
        "fraud",
        &tmp.path().join("checkpoints"),
        &tmp.path().join("cache"),
    );

    // Alerts: the reference over the same payments, as a multiset (cards are spread over
    // two subtasks, so only each card's own order is fixed).
    let watermarks = payments::per_event_watermarks(&payments);
    let mut want = payments::reference(&payments, &watermarks, &payments::RULES);
    let text = std::fs::read_to_string(tmp.path().join("out/alerts.jsonl")).unwrap();
    let mut got: Vec<payments::Alert> = text.lines().map(payments::parse_alert).collect();
    // Sorted by the whole alert: two alerts of one card, time and rule that differ only in
    // their numbers must not compare equal, or their order would depend on the input order.
    let order =
        |a: &payments::Alert, b: &payments::Alert| a.partial_cmp(b).expect("numbers are finite");
    want.sort_by(order);
    got.sort_by(order);
    assert!(
        want.len() > 1_000,
        "a meaningful number of alerts ({})",
        want.len()
    );
    assert_eq!(got.len(), want.len(), "number of alerts");
    assert!(got == want, "the alerts differ from the reference");
    // Hourly spend per card: every window once, with the exact count.
    let mut windows: std::collections::BTreeMap<(String, i64), (u64, f64)> = Default::default();
    for p in &payments {
        let w = windows
            .entry((p.card.clone(), p.time - p.time.rem_euclid(3_600_000)))
            .or_default();
        w.0 += 1;
        w.1 += p.amount;
    }
    let text = std::fs::read_to_string(tmp.path().join("out/spend.jsonl")).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let k = (
            v["key"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
        );
        let (n, spent) = (
            v["payments"].as_u64().unwrap(),
            v["spent"].as_f64().unwrap(),
        );
        assert!(
            seen.insert(k.clone(), (n, spent)).is_none(),
            "window {k:?} written twice"
        );
    }
    assert_eq!(seen.len(), windows.len(), "number of windows");
    for (k, (n, spent)) in &windows {
        let (gn, gs) = seen[k];
        assert_eq!(gn, *n, "payments in {k:?}");
        assert!(
            (gs - spent).abs() < 1e-6 * spent.abs().max(1.0),
            "spent in {k:?}: {gs} vs {spent}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("out/late.jsonl")).unwrap(),
        ""
    );
    let left = leftovers(&tmp.path().join("out"));
    assert!(left.is_empty(), "{left:?}");
}

/// Runs `sluice` with `args` to its end; returns stdout. Panics with stderr on failure.
fn sluice(args: &[&str], cache: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_CACHE_DIR", cache)
        // Control sockets per test: the tests run jobs of the same name at once.
        .env("XDG_RUNTIME_DIR", cache.join("run"))
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
            .env("XDG_RUNTIME_DIR", cache.join("run"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Let it commit some output, then stop it with a savepoint.
        std::thread::sleep(Duration::from_millis(1_500));
        if p == "2" {
            // A second run of the same job is refused before it starts.
            let second = Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["run", spec, "--quiet"])
                .env("SLUICE_CACHE_DIR", &cache)
                .env("XDG_RUNTIME_DIR", cache.join("run"))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&second.stderr);
            assert!(
                !second.status.success() && err.contains("job 'flights' is already running"),
                "{err}"
            );
        }
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
