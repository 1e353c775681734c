//! A property-based run of schemathesis (PyPI) against the OpenAPI document that `sluice
//! serve` serves: thousands of generated requests, valid and invalid, to every operation,
//! with a stored operator and a running job to aim at. It must find no 5xx, and every
//! answer must match the document (status codes, content types, schemas), and invalid
//! input must be refused. (Schema-valid input may still be refused: no schema says
//! what a valid WebAssembly component or job spec is, so that check is left out.)
//!
//! schemathesis is looked for in `$SLUICE_CACHE_DIR/schemathesis` (default
//! `~/.cache/sluice/schemathesis`), a venv that `.ci/run` installs it into; without it
//! the test fails, naming the command that installs it.

use serde_json::json;
use sluice_tests::server::{TestServer, flights_spec};
use sluice_tests::{flights, plugins};
use std::path::PathBuf;
use std::process::Command;

const VERSION: &str = "4.32.5";

fn schemathesis() -> Option<PathBuf> {
    let cache = std::env::var_os("SLUICE_CACHE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sluice")))?;
    let st = cache.join("schemathesis/bin/st");
    st.is_file().then_some(st)
}

#[test]
fn schemathesis_finds_no_server_errors_and_no_answer_off_the_document() {
    let Some(st) = schemathesis() else {
        panic!(
            "schemathesis is not installed (looked for ~/.cache/sluice/schemathesis/bin/st, or under $SLUICE_CACHE_DIR): \
             python3 -m venv ~/.cache/sluice/schemathesis && ~/.cache/sluice/schemathesis/bin/pip install schemathesis=={VERSION} (.ci/run does it)"
        );
    };
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let token = "schemathesis-token";
    let server = TestServer::start(
        env!("CARGO_BIN_EXE_sluice").as_ref(),
        &tmp.path().join("data"),
        Some(token),
        &["--max-operator-size", "1000000"],
    );
    // Something to aim at: a stored operator and a running job (slow, checkpointing).
    let wasm = std::fs::read(plugins::wasm("flight_delays")).unwrap();
    let a = server.call(
        "POST",
        "/v1/operators?name=flights&version=1.0",
        Some("application/wasm"),
        &wasm,
    );
    assert_eq!(a.status, 201, "{a:?}");
    let input = tmp.path().join("flights.parquet");
    flights::read_rows(&flights::dataset(), Some(20_000), Some(&input));
    let mut spec = flights_spec(&input, "flights@1.0", &tmp.path().join("out"), Some(1_000));
    spec["checkpoints"] = json!({"interval": "1s"});
    let a = server.post_json("/v1/jobs", &spec);
    assert_eq!(a.status, 201, "{a:?}");
    let id = a.body["id"].as_str().unwrap();
    std::fs::write(
        tmp.path().join("schemathesis.toml"),
        format!("[parameters]\nid = \"{id}\"\noperator = \"flights@1.0\"\n"),
    )
    .unwrap();

    let out = Command::new(&st)
        .current_dir(tmp.path())
        .args(["--config-file", "schemathesis.toml", "run"])
        .arg(format!("{}/v1/openapi.json", server.url))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args([
            "--max-examples",
            "40",
            "--generation-database",
            "none",
            "--no-color",
        ])
        .args(["--request-timeout", "120"])
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    let summary: Vec<&str> = stdout.lines().rev().take(14).collect();
    eprintln!(
        "{}",
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(stdout.contains(" passed"), "{stdout}");
    // Still serving after all that.
    assert_eq!(
        server.call_as(None, "GET", "/healthz", None, b"").status,
        200
    );
}
