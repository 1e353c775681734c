//! The dashboard in a real browser: `sluice serve` (with a token) serves the dashboard
//! built into the binary, and `web-ui/tests/dashboard.mjs` drives Debian's headless
//! Chromium with playwright-core through it: the token prompt, uploading the flights
//! operator, the submit form's inline validation, submitting the flights job, its graph
//! with 3+ vertices and moving rates, a vertex's detail, stopping with a savepoint, a
//! failed job's exceptions, a hot-swap from an operator's page, a narrow window and
//! keyboard basics. The screenshots are kept
//! in `target/tmp/dashboard/` (`CARGO_TARGET_TMPDIR`).
//!
//! Needs `chromium` (Debian's package; `CHROMIUM=<path>` for another) and Node.js with
//! the dashboard's npm packages, which building the server installs.

use serde_json::Value;
use sluice_tests::server::{TestServer, flights_spec, poison_spec, swap_spec};
use sluice_tests::{flights, plugins};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "dashboard-token";

fn web_ui() -> PathBuf {
    plugins::repo_root().join("web-ui")
}

#[test]
fn the_dashboard_deploys_watches_and_stops_the_flights_job_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "no Chromium at {chromium}: install Debian's `chromium` (.ci/run does), or set CHROMIUM"
    );
    assert!(
        web_ui().join("node_modules/playwright-core").is_dir(),
        "web-ui/node_modules has no playwright-core: building the server runs `npm ci` there"
    );
    // The dashboard's TypeScript type-checks (Vite only strips the types).
    let check = Command::new("npm")
        .args(["run", "--silent", "check"])
        .current_dir(web_ui())
        .status()
        .expect("run npm");
    assert!(
        check.success(),
        "`npm run check` in web-ui/ found type errors"
    );
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        env!("CARGO_BIN_EXE_sluice").as_ref(),
        &tmp.path().join("data"),
        Some(TOKEN),
        &[],
    );

    // The page is the dashboard (not the placeholder), served without a token.
    let index = server.call_as(None, "GET", "/", None, b"");
    assert_eq!(index.status, 200);
    let html = index.body.as_str().unwrap_or_default();
    assert!(
        html.contains("<div id=\"app\">") && html.contains("/assets/"),
        "{html}"
    );

    // A job that failed on a poison record, for the exceptions page.
    server.upload(&plugins::wasm("test_faults"), "faults", "1.0");
    let failed = server.submit(&poison_spec(tmp.path(), "faults@1.0"));
    assert_eq!(
        server.wait_for_end(&failed, Duration::from_secs(60))["status"],
        "failed"
    );

    // A job whose operator the browser swaps to another version.
    server.upload(&plugins::wasm("test_swap_a"), "swap", "a");
    server.upload(&plugins::wasm("test_swap_b"), "swap", "b");
    let swap_dir = tmp.path().join("swap");
    std::fs::create_dir_all(&swap_dir).unwrap();
    let swap_job = server.submit(&swap_spec(&swap_dir, 600_000, 20_000));

    // The flights job the browser submits: 400,000 flights paced at 25,000 events/s
    // (16 s), checkpointing every 500 ms.
    let input = tmp.path().join("flights.parquet");
    flights::read_rows(&flights::dataset(), Some(400_000), Some(&input));
    let mut spec = flights_spec(&input, "flights@1.0", &tmp.path().join("out"), Some(25_000));
    spec["checkpoints"] = serde_json::json!({"interval": "500ms", "retain": 2});
    let spec_file = tmp.path().join("spec.json");
    std::fs::write(&spec_file, serde_json::to_string_pretty(&spec).unwrap()).unwrap();

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let status = Command::new("node")
        .arg("tests/dashboard.mjs")
        .current_dir(web_ui())
        .env("SLUICE_URL", &server.url)
        .env("SLUICE_TOKEN", TOKEN)
        .env("SLUICE_WASM", plugins::wasm("flight_delays"))
        .env("SLUICE_SPEC", &spec_file)
        .env("SLUICE_FAILED_JOB", &failed)
        .env("SLUICE_SWAP_JOB", &swap_job)
        .env("SLUICE_ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .status()
        .expect("run node (Node.js 20+)");
    assert!(
        status.success(),
        "the browser test failed (screenshots in {})",
        artifacts.display()
    );

    // What the browser did, seen through the API: the operator stored under its name,
    // and the flights job stopped with the savepoint it took.
    let ops = server.get("/v1/operators").body;
    assert!(
        ops.as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "flights" && o["version"] == "1.0"),
        "{ops}"
    );
    let jobs = server.get("/v1/jobs").body;
    let flights_job: &Value = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "flights")
        .expect("the flights job");
    let job = server.get(&format!("/v1/jobs/{}", flights_job["id"].as_str().unwrap()));
    assert_eq!(job.body["status"], "stopped", "{}", job.body);
    let sp = &job.body["savepoints"][0];
    assert_eq!(sp["stopped"], true, "{}", job.body);
    // The swap the browser made, seen through the API; then the job is cancelled.
    let swapped = server.get(&format!("/v1/jobs/{swap_job}")).body;
    let b = server.get("/v1/operators/swap@b").body;
    assert_eq!(
        swapped["spec"]["operators"][0]["operator"], b["sha256"],
        "{swapped}"
    );
    server.call("POST", &format!("/v1/jobs/{swap_job}/cancel"), None, b"");
    for name in [
        "hot-swap",
        "operators",
        "job-graph",
        "vertex-detail",
        "checkpoints",
        "exceptions",
        "narrow",
    ] {
        assert!(
            artifacts.join(format!("{name}.png")).is_file(),
            "{name}.png"
        );
    }
}
