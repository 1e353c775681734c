//! Isolation of WASM operators: what an operator gets without grants (no files,
//! environment, network; frozen clocks and fixed randomness), what the spec's `grants`
//! give it one by one (a directory read-only, environment variables, real randomness,
//! the clocks), that a granted directory must lie under the spec's folder (so that a job
//! on a server sees only its own files), and that deep recursion and a panicking `init`
//! fail the job with a clear error while the host lives.

use sluice_tests::plugins;
use std::path::Path;

/// Runs the probe commands `cmds` through test-hostile with `grants` in `dir`; the
/// outcome of each, in order, or the job's error.
fn probe(dir: &Path, cmds: &[&str], grants: &str) -> Result<Vec<String>, String> {
    let lines: String = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{{\"t\":{i},\"cmd\":\"{c}\"}}\n"))
        .collect();
    std::fs::write(dir.join("in.jsonl"), lines).unwrap();
    let text = format!(
        r#"
name: isolation
sources:
  - id: src
    connector: jsonl
    path: in.jsonl
    event_time: {{field: t, format: epoch_ms}}
    watermarks: {{max_out_of_orderness: 0}}
operators:
  - id: hostile
    input: src
    wasm: {wasm}
    config: {{mode: probe}}
    output: {{format: text}}
    grants: {grants}
sinks:
  - {{id: out, input: hostile, connector: jsonl, path: out.jsonl, write: value}}
"#,
        wasm = plugins::wasm("test_hostile").display()
    );
    let _ = std::fs::remove_file(dir.join("out.jsonl"));
    plugins::run_spec(dir, &text)?;
    Ok(std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<String>(l).unwrap())
        .collect())
}

#[test]
fn without_grants_an_operator_gets_no_files_environment_network_clock_or_randomness() {
    plugins::build();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let secret = dir.path().join("secret.txt");
    let connect = format!("connect {addr}");
    let read = format!("read {}", secret.display());
    let cmds = [
        read.as_str(),
        "read /etc/hostname",
        "list /",
        "write /x",
        "env HOME",
        "env PATH",
        connect.as_str(),
        "clock",
    ];
    let got = probe(dir.path(), &cmds, "{}").unwrap();
    for (cmd, outcome) in cmds.iter().zip(&got) {
        if *cmd == "clock" {
            assert_eq!(outcome, "ok 0", "the clock is frozen at the epoch");
        } else {
            assert!(outcome.starts_with("err "), "{cmd}: {outcome}");
        }
    }
    assert!(
        listener.accept().is_err(),
        "no connection reached the listener"
    );
    // Randomness is a fixed sequence: the same in two runs.
    let a = probe(dir.path(), &["random"], "{}").unwrap();
    let b = probe(dir.path(), &["random"], "{}").unwrap();
    assert!(a[0].starts_with("ok ") && a == b, "{a:?} {b:?}");
}

#[test]
fn grants_give_one_capability_at_a_time_and_directories_only_to_read() {
    plugins::build();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/rates.txt"), "EUR 1.1").unwrap();
    std::fs::write(dir.path().join("outside.txt"), "not granted").unwrap();
    let grants =
        "{dirs: [{path: data, guest: /data}], env: {REGION: eu}, random: true, clocks: true}";
    let got = probe(
        dir.path(),
        &[
            "read /data/rates.txt",
            "list /data",
            "write /data/new.txt",
            "read /data/../outside.txt",
            "env REGION",
            "env HOME",
            "clock",
        ],
        grants,
    )
    .unwrap();
    assert_eq!(got[0], "ok EUR 1.1");
    assert_eq!(got[1], "ok rates.txt");
    assert!(got[2].starts_with("err "), "read-only: {}", got[2]);
    assert!(!dir.path().join("data/new.txt").exists());
    assert!(
        got[3].starts_with("err "),
        "no escape from the granted directory: {}",
        got[3]
    );
    assert_eq!(got[4], "ok eu");
    assert!(
        got[5].starts_with("err "),
        "only the granted variables: {}",
        got[5]
    );
    let clock: u128 = got[6].strip_prefix("ok ").unwrap().parse().unwrap();
    assert!(clock > 1_700_000_000_000, "the real clock: {clock}");
    let a = probe(dir.path(), &["random"], grants).unwrap();
    let b = probe(dir.path(), &["random"], grants).unwrap();
    assert_ne!(a, b, "real randomness differs between runs");
}

#[test]
fn a_network_grant_lets_an_operator_connect_to_the_granted_address_only() {
    plugins::build();
    let dir = tempfile::tempdir().unwrap();
    let granted = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let (g, o) = (granted.local_addr().unwrap(), other.local_addr().unwrap());
    let got = probe(
        dir.path(),
        &[
            &format!("connect {g}"),
            &format!("connect {o}"),
            "connect localhost:80",
        ],
        &format!("{{network: ['{g}']}}"),
    )
    .unwrap();
    assert_eq!(got[0], "ok connected");
    assert!(granted.accept().is_ok());
    assert!(
        got[1].starts_with("err ") && got[2].starts_with("err "),
        "{got:?}"
    );
    assert!(
        other.accept().is_err(),
        "the other listener saw no connection"
    );
    let err = probe(dir.path(), &["clock"], "{network: ['example.com:80']}").unwrap_err();
    assert!(
        err.contains("grants.network[0]") && err.contains("no names"),
        "{err}"
    );
}

#[test]
fn a_granted_directory_must_lie_under_the_specs_folder() {
    plugins::build();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("job");
    std::fs::create_dir_all(root.path().join("other-job")).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    for path in ["../other-job", "/etc"] {
        let err = probe(
            &dir,
            &["list /d"],
            &format!("{{dirs: [{{path: '{path}', guest: /d}}]}}"),
        )
        .unwrap_err();
        assert!(
            err.contains("operators[0].grants.dirs[0].path")
                && err.contains("outside the spec's folder"),
            "{path}: {err}"
        );
    }
    let err = probe(&dir, &["list /d"], "{dirs: [{path: ., guest: d}]}").unwrap_err();
    assert!(
        err.contains("grants.dirs[0].guest") && err.contains("absolute"),
        "{err}"
    );
    let err = probe(&dir, &["list /d"], "{network: true}").unwrap_err();
    assert!(err.contains("grants") && err.contains("network"), "{err}");
}

fn run_mode(dir: &Path, mode: &str) -> Result<(), String> {
    run_plugin(dir, "test_hostile", &format!("{{mode: {mode}}}"), "{}")
}

/// Runs one event through `plugin` with `config` and `limits`.
fn run_plugin(dir: &Path, plugin: &str, config: &str, limits: &str) -> Result<(), String> {
    std::fs::write(dir.join("in.jsonl"), "{\"t\":1}\n").unwrap();
    let text = format!(
        r#"
name: hostile
sources:
  - {{id: src, connector: jsonl, path: in.jsonl, event_time: {{field: t, format: epoch_ms}}, watermarks: {{max_out_of_orderness: 0}}}}
operators:
  - {{id: hostile, input: src, wasm: {wasm}, config: {config}, limits: {limits}}}
sinks:
  - {{id: out, input: hostile, connector: jsonl, path: out.jsonl}}
"#,
        wasm = plugins::wasm(plugin).display()
    );
    plugins::run_spec(dir, &text).map(|_| ())
}

#[test]
fn deep_recursion_overflows_the_guest_stack_and_fails_the_job_not_the_host() {
    plugins::build();
    let dir = tempfile::tempdir().unwrap();
    let err = run_mode(dir.path(), "recursion").unwrap_err();
    assert!(
        err.contains("operator 'hostile'") && err.contains("call stack exhausted"),
        "{err}"
    );
}

#[test]
fn a_panic_in_init_fails_the_start_with_the_guests_message() {
    plugins::build();
    let dir = tempfile::tempdir().unwrap();
    let err = run_mode(dir.path(), "init-panic").unwrap_err();
    assert!(
        err.contains("operator 'hostile'")
            && err.contains("init")
            && err.contains("test-hostile refuses to start"),
        "{err}"
    );
}

/// Fuel meters a call by the instructions it runs, whatever the machine's speed: an
/// infinite loop runs out of it (long before its time limit), and an operator within it
/// runs as usual.
#[test]
fn fuel_stops_a_call_after_the_instructions_it_allows() {
    plugins::build();
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let err = run_plugin(
        dir.path(),
        "test_faults",
        "{mode: infinite-loop}",
        "{fuel: 50000000, time_per_call: 600s}",
    )
    .unwrap_err();
    assert!(
        err.contains("operator 'hostile'")
            && err.contains("ran out of its fuel of 50000000 per call (limits.fuel)"),
        "{err}"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(60));
    run_plugin(
        dir.path(),
        "test_faults",
        "{mode: side}",
        "{fuel: 50000000}",
    )
    .unwrap();
}

/// The wasm stack's size is the operator's own: a recursion 5,000 calls deep fits the
/// default (512 KiB) and not 32 KiB.
#[test]
fn the_stack_size_is_a_limit_of_the_operator() {
    plugins::build();
    let dir = tempfile::tempdir().unwrap();
    let deep = "{mode: recursion, depth: 5000}";
    run_plugin(dir.path(), "test_hostile", deep, "{}").unwrap();
    let err = run_plugin(dir.path(), "test_hostile", deep, "{max_stack: 32KiB}").unwrap_err();
    assert!(err.contains("call stack exhausted"), "{err}");
}
