//! The `sluice` binary as a user meets it: help that teaches, and spec errors that name
//! the field, with a non-zero exit and no panic.

use std::path::Path;
use std::process::Command;

fn sluice(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env(
            "SLUICE_CACHE_DIR",
            std::env::temp_dir().join("sluice-cli-test-cache"),
        )
        .output()
        .expect("run sluice");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_teaches_the_commands() {
    let (ok, out, _) = sluice(&["--help"]);
    assert!(ok);
    assert!(
        out.contains("run") && out.contains("check") && out.contains("flights.yaml"),
        "{out}"
    );
    let (ok, out, _) = sluice(&["run", "--help"]);
    assert!(ok);
    assert!(
        out.contains("--parallelism") && out.contains("--batch-size") && out.contains("npm:"),
        "{out}"
    );
}

fn write_spec(dir: &Path, text: &str) -> String {
    let p = dir.join("job.yaml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// Writes `events` JSON-lines events (`{"t": ms, "x": i}`, one a second) and a spec named
/// `name` that copies them to `out/events.jsonl`; returns the spec's path.
fn copy_job(dir: &Path, name: &str, events: usize) -> String {
    let lines: String = (0..events)
        .map(|i| format!("{{\"t\": {}, \"x\": {i}}}\n", i * 1000))
        .collect();
    std::fs::write(dir.join("in.jsonl"), lines).unwrap();
    let spec = r#"
name: NAME
sources:
  - id: src
    connector: jsonl
    path: in.jsonl
    event_time: {field: t, format: epoch_ms}
    watermarks: {max_out_of_orderness: 0}
sinks:
  - {id: out, input: src, connector: jsonl, path: out/events.jsonl}
"#;
    write_spec(dir, &spec.replace("NAME", name))
}

#[test]
fn spec_errors_name_the_field_and_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{\"t\": 1}\n").unwrap();
    let base = r#"
name: t
sources:
  - id: src
    connector: jsonl
    path: in.jsonl
    event_time: {field: t, format: epoch_ms}
    watermarks: {max_out_of_orderness: 1s}
sinks:
  - {id: out, input: src, connector: stdout}
"#;
    let spec = write_spec(
        dir.path(),
        &base.replace("max_out_of_orderness: 1s", "max_out_of_orderness: soon"),
    );
    let (ok, _, err) = sluice(&["run", &spec]);
    assert!(!ok);
    assert!(
        err.contains("sources[0].watermarks.max_out_of_orderness") && err.contains("soon"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let spec = write_spec(
        dir.path(),
        &base.replace("path: in.jsonl", "path: missing.jsonl"),
    );
    let (ok, _, err) = sluice(&["run", &spec]);
    assert!(!ok);
    assert!(err.contains("missing.jsonl"), "{err}");

    let spec = write_spec(dir.path(), &base.replace("input: src", "input: nowhere"));
    let (ok, _, err) = sluice(&["check", &spec]);
    assert!(!ok);
    assert!(err.contains("sinks[0].input: no vertex 'nowhere'"), "{err}");
}

#[test]
fn a_small_job_runs_and_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let spec = copy_job(dir.path(), "small", 100);
    let (ok, out, err) = sluice(&["run", "--quiet", &spec]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Job 'small' finished") && out.contains("100"),
        "{out}"
    );
    let written = std::fs::read_to_string(dir.path().join("out/events.jsonl")).unwrap();
    assert_eq!(written.lines().count(), 100);
    let first: serde_json::Value = serde_json::from_str(written.lines().next().unwrap()).unwrap();
    assert_eq!(first["value"]["x"], 0);
}

#[test]
fn output_dir_puts_every_output_under_it_and_refuses_absolute_sink_paths() {
    let dir = tempfile::tempdir().unwrap();
    let spec = copy_job(dir.path(), "escape", 10);
    // A sink path that climbs out of the spec's folder, as the flights spec's does.
    let out_dir = dir.path().join("out-x/a/b");
    // Runs the spec with its sink at `path`, under --output-dir.
    let run_with_sink = |path: &str| {
        let text = std::fs::read_to_string(&spec).unwrap();
        let sink = text
            .lines()
            .find(|l| l.contains("path: ") && l.contains("id: out"));
        let text = text.replace(
            sink.unwrap(),
            &format!("  - {{id: out, input: src, connector: jsonl, path: {path}}}"),
        );
        std::fs::write(&spec, text).unwrap();
        sluice(&[
            "run",
            "--quiet",
            &spec,
            "--output-dir",
            out_dir.to_str().unwrap(),
        ])
    };
    // A sink path that climbs out of the spec's folder, as the flights spec's does.
    let (ok, _, err) = run_with_sink("../../out/x/events.jsonl");
    assert!(ok, "{err}");
    let written = std::fs::read_to_string(out_dir.join("out/x/events.jsonl")).unwrap();
    assert_eq!(written.lines().count(), 10);
    // Nothing landed outside the folder given.
    assert!(!dir.path().join("out-x/out").exists());
    assert!(!dir.path().join("out").exists());

    let (ok, _, err) = run_with_sink(dir.path().join("abs.jsonl").to_str().unwrap());
    assert!(!ok);
    assert!(
        err.contains("sinks[0].path: '") && err.contains("is an absolute path, and --output-dir"),
        "{err}"
    );
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = copy_job(dir.path(), "plain", 10);
    // A row without its event time fails the job, which is logged (WARN).
    std::fs::write(dir.path().join("in.jsonl"), "{\"t\": 1}\n{\"x\": 2}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--quiet", &spec])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WARN"), "{err}");
    assert!(!err.contains('\x1b'), "colour codes in a pipe: {err}");
}

#[test]
fn ctrl_c_cancels_the_job_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let spec = copy_job(dir.path(), "long", 400_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--quiet", "--batch-size", "1", &spec])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the job runs, then interrupt it as a terminal's Ctrl-C would.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    assert!(first.contains("running"), "{first}");
    // SAFETY: sends a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("Job 'long' was cancelled"),
        "{stdout}\n{rest}"
    );
    assert!(rest.contains("interrupted"), "{rest}");
    // What was written is whole lines.
    let written = std::fs::read_to_string(dir.path().join("out/events.jsonl")).unwrap();
    assert!(
        written
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
}

/// A guest printing a line per event is rate-limited: at most the burst of
/// `max_log_lines_per_second` (ten seconds' worth) reaches the log, and the rest are
/// counted in a warning; the events all go through.
#[test]
fn a_chatty_guest_is_rate_limited_in_the_log() {
    sluice_tests::plugins::build();
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..5000).map(|i| format!("{{\"t\": {i}}}\n")).collect();
    std::fs::write(dir.path().join("in.jsonl"), lines).unwrap();
    let spec = format!(
        r#"
name: chatty
sources:
  - {{id: src, connector: jsonl, path: in.jsonl, event_time: {{field: t, format: epoch_ms}}, watermarks: {{max_out_of_orderness: 0}}}}
operators:
  - {{id: chatty, input: src, wasm: {}, config: {{mode: chatty}}, limits: {{max_log_lines_per_second: 10}}}}
sinks:
  - {{id: out, input: chatty, connector: jsonl, path: out/events.jsonl}}
"#,
        sluice_tests::plugins::wasm("test_hostile").display()
    );
    let path = write_spec(dir.path(), &spec);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", &path])
        .env("RUST_LOG", "sluice::guest=info")
        .output()
        .expect("run sluice");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let printed = stderr.matches("chatty guest line").count();
    assert!(
        (100..=110).contains(&printed),
        "{printed} lines logged:\n{stderr}"
    );
    assert!(
        stderr.contains("lines of guest output over the limit of 10 lines a second"),
        "{stderr}"
    );
    let written = std::fs::read_to_string(dir.path().join("out/events.jsonl")).unwrap();
    assert_eq!(written.lines().count(), 5000);
}
