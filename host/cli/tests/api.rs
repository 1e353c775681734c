//! The REST API of `sluice serve` over real HTTP, against a server process started by
//! each test on a free port of 127.0.0.1: every endpoint, bad input of every kind
//! (wrong content type, truncated components, a component of another world, a spec
//! naming a missing operator or with a cycle, bodies over the limits, unknown ids,
//! missing and wrong tokens), the flights job deployed through the API to the exact
//! answer (`sluice_tests::flights::exact_answer`), savepoints, stop, cancel and restart,
//! and a server killed while a job runs, whose job comes back from its latest
//! checkpoint.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_tests::server::{POISON_KEY, TestServer, flights_spec, poison_spec};
use sluice_tests::{flights, kill, plugins};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOKEN: &str = "t0ken-for-tests";

fn sluice() -> &'static Path {
    env!("CARGO_BIN_EXE_sluice").as_ref()
}

fn start(dir: &Path, args: &[&str]) -> TestServer {
    TestServer::start(sluice(), &dir.join("data"), Some(TOKEN), args)
}

fn upload(server: &TestServer, wasm: &Path, name: &str, version: &str) -> Value {
    server.upload(wasm, name, version)
}

/// The first `rows` rows of the flights file as a Parquet file in `dir`, and the exact
/// answer of the flights job over them.
fn flights_slice(dir: &Path, rows: usize) -> (PathBuf, flights::Answer) {
    let slice = dir.join("flights-slice.parquet");
    let rows = flights::read_rows(&flights::dataset(), Some(rows), Some(&slice));
    (slice, flights::exact_answer(&rows))
}

fn submit(server: &TestServer, spec: &Value) -> String {
    server.submit(spec)
}

#[test]
fn tokens_are_required_and_checked_everywhere_but_health() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), &[]);
    let health = server.call_as(None, "GET", "/healthz", None, b"");
    assert_eq!(
        (health.status, &health.body),
        (200, &json!({"status": "ok"}))
    );
    let paths = [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/operators"),
        ("POST", "/v1/operators"),
        ("GET", "/v1/jobs/0123456789abcdef"),
        ("POST", "/v1/jobs/0123456789abcdef/stop"),
        ("DELETE", "/v1/operators/x@1"),
        ("GET", "/v1/openapi.json"),
        ("GET", "/metrics"),
        ("GET", "/no/such/path"),
    ];
    let wrong = [
        None,
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_string()),
        Some("Bearer".to_string()),
    ];
    for (method, path) in paths {
        for auth in &wrong {
            let a = server.call_as(auth.as_deref(), method, path, None, b"");
            assert_eq!(a.status, 401, "{method} {path} with {auth:?}: {a:?}");
            assert_eq!(a.error_code(), "unauthorized");
            assert_eq!(a.www_authenticate.as_deref(), Some("Bearer"));
        }
    }
    let ok = server.get("/v1/jobs");
    assert_eq!((ok.status, &ok.body), (200, &json!([])));
    let lower = server.call_as(
        Some(&format!("bearer {TOKEN}")),
        "GET",
        "/v1/operators",
        None,
        b"",
    );
    assert_eq!(lower.status, 200, "the scheme is case-insensitive");
    // The page at / holds no data: served without a token.
    let page = server.call_as(None, "GET", "/", None, b"");
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"), "{page:?}");
}

#[test]
fn a_server_without_a_token_answers_everyone_on_loopback_and_refuses_other_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(sluice(), &tmp.path().join("data"), None, &[]);
    assert_eq!(
        server.call_as(None, "GET", "/v1/jobs", None, b"").status,
        200
    );
    let out = std::process::Command::new(sluice())
        .args(["serve", "--bind", "0.0.0.0:0", "--data-dir"])
        .arg(tmp.path().join("other"))
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without a token"),
        "{err}"
    );
    assert!(!tmp.path().join("other").exists(), "nothing was created");
}

#[test]
fn unknown_paths_methods_and_ids_are_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), &[]);
    let a = server.get("/v1/nothing");
    assert_eq!((a.status, a.error_code()), (404, "not_found"));
    let a = server.call("PUT", "/v1/jobs", None, b"");
    assert_eq!((a.status, a.error_code()), (405, "method_not_allowed"));
    let id = "0123456789abcdef";
    for (method, path) in [
        ("GET", format!("/v1/jobs/{id}")),
        ("DELETE", format!("/v1/jobs/{id}")),
        ("POST", format!("/v1/jobs/{id}/stop")),
        ("POST", format!("/v1/jobs/{id}/cancel")),
        ("POST", format!("/v1/jobs/{id}/savepoints")),
        ("POST", format!("/v1/jobs/{id}/restart")),
        ("GET", format!("/v1/jobs/{id}/metrics")),
        ("GET", format!("/v1/jobs/{id}/checkpoints")),
        ("GET", format!("/v1/jobs/{id}/events")),
        ("GET", "/v1/operators/nope@1".to_string()),
        ("DELETE", format!("/v1/operators/{}", "ab".repeat(32))),
        ("GET", "/v1/operators/%E2%82%AC".to_string()),
    ] {
        let a = server.call(method, &path, None, b"");
        assert_eq!(
            (a.status, a.error_code()),
            (404, "not_found"),
            "{method} {path}"
        );
        assert!(!a.message().is_empty());
    }
}

#[test]
fn the_openapi_document_is_served_and_describes_every_route() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), &[]);
    let a = server.get("/v1/openapi.json");
    assert_eq!(a.status, 200);
    let doc = &a.body;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/healthz", &["get"][..]),
        ("/metrics", &["get"]),
        ("/v1/openapi.json", &["get"]),
        ("/v1/operators", &["get", "post"]),
        ("/v1/operators/{operator}", &["get", "delete"]),
        ("/v1/jobs", &["get", "post"]),
        ("/v1/jobs/{id}", &["get", "delete"]),
        ("/v1/jobs/{id}/stop", &["post"]),
        ("/v1/jobs/{id}/cancel", &["post"]),
        ("/v1/jobs/{id}/savepoints", &["post"]),
        ("/v1/jobs/{id}/restart", &["post"]),
        ("/v1/jobs/{id}/metrics", &["get"]),
        ("/v1/jobs/{id}/checkpoints", &["get"]),
        ("/v1/jobs/{id}/events", &["get"]),
        ("/v1/jobs/{id}/operators/{operator_id}", &["put"]),
        ("/v1/jobs/{id}/log", &["get"]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{m} {path} is not documented");
        }
    }
    assert_eq!(paths.len(), 16, "{:?}", paths.keys().collect::<Vec<_>>());
    let upload = &paths["/v1/operators"]["post"]["requestBody"]["content"];
    assert!(upload["application/wasm"].is_object() && upload["multipart/form-data"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for schema in [
        "ErrorBody",
        "OperatorInfo",
        "JobInfo",
        "JobMetricsView",
        "GraphView",
        "SwapResult",
        "ExceptionInfo",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
}

#[test]
fn operators_are_checked_stored_by_hash_listed_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), &["--max-operator-size", "200000"]);
    let flights_wasm = std::fs::read(plugins::wasm("flight_delays")).unwrap();
    assert!(flights_wasm.len() < 200_000);
    let hash: String = Sha256::digest(&flights_wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    // Raw upload with a name and version.
    let a = server.call(
        "POST",
        "/v1/operators?name=flights&version=1.0",
        Some("application/wasm"),
        &flights_wasm,
    );
    assert_eq!(a.status, 201, "{a:?}");
    let o = &a.body;
    assert_eq!(o["sha256"], hash.as_str());
    assert_eq!(
        (&o["name"], &o["version"]),
        (&json!("flights"), &json!("1.0"))
    );
    assert_eq!(o["size_bytes"], flights_wasm.len());
    assert_eq!(o["world"], "sluice:operator/operator-world@0.2.0");
    assert_eq!(o["exports"], json!(["sluice:operator/operator@0.2.0"]));
    assert!(
        o["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "sluice:operator/types@0.2.0")
    );
    assert_eq!(o["jobs"], json!([]));
    // The same again: what is stored.
    let again = server.call(
        "POST",
        "/v1/operators?name=flights&version=1.0",
        Some("application/wasm"),
        &flights_wasm,
    );
    assert_eq!(
        (again.status, &again.body["uploaded_at"]),
        (200, &o["uploaded_at"])
    );
    let stored = std::fs::read(server.data_dir.join(format!("operators/{hash}.wasm"))).unwrap();
    assert!(stored == flights_wasm, "stored by its hash, byte for byte");

    // Multipart upload.
    let identity = std::fs::read(plugins::wasm("identity")).unwrap();
    let boundary = "XyZsluiceBoundary";
    let mut form = Vec::new();
    for (name, value) in [("name", "identity"), ("version", "2")] {
        form.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    form.extend(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"identity.wasm\"\r\nContent-Type: application/wasm\r\n\r\n")
            .as_bytes(),
    );
    form.extend(&identity);
    form.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    let multipart = format!("multipart/form-data; boundary={boundary}");
    let a = server.call("POST", "/v1/operators", Some(&multipart), &form);
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["name"], "identity");
    assert_eq!(a.body["size_bytes"], identity.len());
    let identity_hash = a.body["sha256"].as_str().unwrap().to_string();

    // Bad uploads.
    let post = |ct: Option<&str>, body: &[u8]| server.call("POST", "/v1/operators", ct, body);
    let a = post(Some("text/plain"), &flights_wasm);
    assert_eq!((a.status, a.error_code()), (415, "unsupported_media_type"));
    assert!(a.message().contains("application/wasm"), "{a:?}");
    let a = post(None, &flights_wasm);
    assert_eq!((a.status, a.error_code()), (415, "unsupported_media_type"));
    let a = post(
        Some("application/wasm"),
        &flights_wasm[..flights_wasm.len() / 2],
    );
    assert_eq!(
        (a.status, a.error_code()),
        (422, "invalid_component"),
        "{a:?}"
    );
    assert!(
        a.message().contains("not a valid WebAssembly component"),
        "{a:?}"
    );
    let a = post(Some("application/wasm"), b"this is not wasm at all");
    assert_eq!((a.status, a.error_code()), (422, "not_wasm"));
    // Errors name the file as the client gave it: `?filename=` for a raw body, the
    // `file` part's file name for a form.
    let a = server.call(
        "POST",
        "/v1/operators?filename=my-op.wasm",
        Some("application/wasm"),
        b"this is not wasm at all",
    );
    assert_eq!((a.status, a.error_code()), (422, "not_wasm"));
    assert!(a.message().contains("my-op.wasm"), "{a:?}");
    let mut bad_form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"broken.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
    )
    .into_bytes();
    bad_form.extend(&identity[..identity.len() / 2]);
    bad_form.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    let a = server.call("POST", "/v1/operators", Some(&multipart), &bad_form);
    assert_eq!(a.status, 422, "{a:?}");
    assert!(a.message().contains("broken.wasm"), "{a:?}");
    let a = post(Some("application/wasm"), b"\0asm\x01\0\0\0");
    assert_eq!((a.status, a.error_code()), (422, "core_module"));
    assert!(a.message().contains("core WebAssembly module"), "{a:?}");
    let other = std::fs::read(plugins::wasm("test_other_world")).unwrap();
    let a = post(Some("application/wasm"), &other);
    assert_eq!((a.status, a.error_code()), (422, "wrong_world"), "{a:?}");
    assert!(
        a.message().contains("sluice:operator/operator@0.2.0"),
        "{a:?}"
    );
    let huge = vec![0u8; 300_000];
    let a = post(Some("application/wasm"), &huge);
    assert_eq!(
        (a.status, a.error_code()),
        (413, "payload_too_large"),
        "{a:?}"
    );
    assert!(a.message().contains("200000"), "{a:?}");
    let mut huge_form = form.clone();
    huge_form.splice(form.len() - 40..form.len() - 40, vec![7u8; 300_000]);
    let a = server.call("POST", "/v1/operators", Some(&multipart), &huge_form);
    assert_eq!(
        (a.status, a.error_code()),
        (413, "payload_too_large"),
        "{a:?}"
    );
    let a = server.call(
        "POST",
        "/v1/operators",
        Some(&multipart),
        b"--XyZsluiceBoundary--\r\n",
    );
    assert_eq!(
        (a.status, a.error_code()),
        (400, "bad_request"),
        "no file part: {a:?}"
    );
    let a = server.call("POST", "/v1/operators", Some("multipart/form-data"), &form);
    assert_eq!(a.status, 400, "no boundary: {a:?}");
    a.error_code();
    let a = server.call(
        "POST",
        "/v1/operators?name=flights&version=1.0",
        Some("application/wasm"),
        &identity,
    );
    assert_eq!((a.status, a.error_code()), (409, "conflict"), "{a:?}");
    let a = server.call(
        "POST",
        "/v1/operators?name=bad%20name&version=1",
        Some("application/wasm"),
        &flights_wasm,
    );
    assert_eq!((a.status, a.error_code()), (422, "invalid_name"), "{a:?}");
    let a = server.call(
        "POST",
        "/v1/operators?name=only",
        Some("application/wasm"),
        &flights_wasm,
    );
    assert_eq!((a.status, a.error_code()), (422, "invalid_name"), "{a:?}");

    // List, inspect, delete.
    let list = server.get("/v1/operators");
    let mut hashes: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["sha256"].as_str().unwrap())
        .collect();
    hashes.sort();
    let mut want = vec![hash.as_str(), identity_hash.as_str()];
    want.sort();
    assert_eq!(hashes, want);
    for reference in [
        hash.clone(),
        format!("sha256:{hash}"),
        "flights@1.0".to_string(),
    ] {
        let a = server.get(&format!("/v1/operators/{reference}"));
        assert_eq!(
            (a.status, &a.body["sha256"]),
            (200, &json!(hash)),
            "{reference}"
        );
    }
    let a = server.call("DELETE", "/v1/operators/identity@2", None, b"");
    assert_eq!(a.status, 204, "{a:?}");
    assert_eq!(server.get("/v1/operators/identity@2").status, 404);
    assert!(
        !server
            .data_dir
            .join(format!("operators/{identity_hash}.wasm"))
            .exists()
    );
    assert_eq!(
        server.get("/v1/operators").body.as_array().unwrap().len(),
        1
    );
}

#[test]
fn bad_job_specs_are_refused_with_the_field_and_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), &["--max-spec-size", "100000"]);
    upload(&server, &plugins::wasm("flight_delays"), "flights", "1.0");
    let out = tmp.path().join("out");
    let input = tmp.path().join("none.parquet");
    let good = flights_spec(&input, "flights@1.0", &out, None);

    let refuse = |spec: &Value, status: u16, code: &str, needle: &str| {
        let a = server.post_json("/v1/jobs", spec);
        assert_eq!((a.status, a.error_code()), (status, code), "{a:?}");
        assert!(a.message().contains(needle), "{needle:?} not in {a:?}");
    };
    let mut missing = good.clone();
    missing["operators"][0]["operator"] = "flights@9.9".into();
    refuse(
        &missing,
        422,
        "unknown_operator",
        "operators[0].operator: no operator 'flights@9.9'",
    );
    let mut by_hash = good.clone();
    by_hash["operators"][0]["operator"] = "ab".repeat(32).into();
    refuse(&by_hash, 422, "unknown_operator", "operators[0].operator");
    let mut path = good.clone();
    path["operators"][0]["wasm"] = "x.wasm".into();
    refuse(&path, 422, "invalid_spec", "operators[0].wasm");
    let mut none = good.clone();
    none["operators"][0]
        .as_object_mut()
        .unwrap()
        .remove("operator");
    refuse(
        &none,
        422,
        "invalid_spec",
        "operators[0]: names no operator",
    );
    // A cycle: the operator reads the window, which reads the operator.
    let mut cycle = good.clone();
    cycle["operators"][0]["input"] = json!(["flights", "hourly-delays"]);
    refuse(&cycle, 422, "invalid_spec", "cycle");
    let mut unknown = good.clone();
    unknown["windows"][0]["allowed_latenes"] = "1h".into();
    refuse(&unknown, 422, "invalid_spec", "windows[0]");
    let mut no_input = good.clone();
    no_input["sinks"][0]["input"] = "nowhere".into();
    refuse(&no_input, 422, "invalid_spec", "sinks[0].input");
    refuse(&json!([1, 2]), 422, "invalid_spec", "JSON object");
    refuse(&json!({}), 422, "invalid_spec", "name");
    // The input file does not exist: accepted, but it cannot start.
    let a = server.post_json("/v1/jobs", &good);
    assert_eq!((a.status, a.error_code()), (422, "invalid_spec"), "{a:?}");
    assert!(a.message().contains("none.parquet"), "{a:?}");

    let a = server.call("POST", "/v1/jobs", Some("application/json"), b"{\"name\": ");
    assert_eq!((a.status, a.error_code()), (400, "invalid_json"), "{a:?}");
    let a = server.call("POST", "/v1/jobs", Some("application/yaml"), b"name: x");
    assert_eq!(
        (a.status, a.error_code()),
        (415, "unsupported_media_type"),
        "{a:?}"
    );
    let mut big = good.clone();
    big["padding"] = "x".repeat(200_000).into();
    let a = server.post_json("/v1/jobs", &big);
    assert_eq!(
        (a.status, a.error_code()),
        (413, "payload_too_large"),
        "{a:?}"
    );
    assert_eq!(server.get("/v1/jobs").body, json!([]), "nothing was kept");
}

#[test]
fn the_flights_job_deployed_through_the_api_gives_the_exact_answer() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let (input, answer) = flights_slice(tmp.path(), 100_000);
    let server = start(tmp.path(), &[]);
    let op = upload(&server, &plugins::wasm("flight_delays"), "flights", "1.0");
    let hash = op["sha256"].as_str().unwrap();
    let out = tmp.path().join("out");
    let id = submit(&server, &flights_spec(&input, "flights@1.0", &out, None));
    let job = server.wait_for_end(&id, Duration::from_secs(120));
    assert_eq!(job["status"], "finished", "{job}");
    let got = flights::read_output(&out);
    flights::check_output(&answer, &got, "through the API");

    // The record: the spec pinned to the hash, the graph, the times.
    assert_eq!(job["spec"]["operators"][0]["operator"], hash);
    assert_eq!(job["operators"], json!([hash]));
    assert!(job["started_at"].as_i64().unwrap() <= job["ended_at"].as_i64().unwrap());
    let vertices: Vec<(&str, &str, u64)> = job["graph"]["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap(),
                v["kind"].as_str().unwrap(),
                v["parallelism"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        vertices,
        [
            ("flights", "source", 1),
            ("flight-delays", "operator", 1),
            ("hourly-delays", "window", 2),
            ("window-results", "sink", 1),
            ("late-events", "sink", 1)
        ]
    );
    assert_eq!(job["graph"]["vertices"][1]["operator"], hash);
    assert_eq!(job["graph"]["vertices"][1]["chain"], "flights");
    assert_eq!(job["graph"]["edges"].as_array().unwrap().len(), 4);
    assert_eq!(job["graph"]["edges"][1]["partitioning"], "key_by");
    assert_eq!(job["graph"]["edges"][3]["side_output"], "late");

    // Metrics: what went through each vertex.
    let m = server.get(&format!("/v1/jobs/{id}/metrics")).body;
    let vertex = |id: &str| {
        m["vertices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .unwrap()
            .clone()
    };
    let firings: usize = answer.windows.values().map(Vec::len).sum();
    assert_eq!(vertex("flights")["records_out"], 100_000);
    assert_eq!(vertex("flight-delays")["records_in"], 100_000);
    assert_eq!(vertex("hourly-delays")["records_in"], 100_000);
    assert_eq!(vertex("hourly-delays")["late_records"], answer.late.len());
    assert_eq!(vertex("hourly-delays")["window_firings"], firings);
    assert_eq!(
        vertex("hourly-delays")["subtasks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(vertex("window-results")["records_in"], firings);
    assert_eq!(vertex("late-events")["records_in"], answer.late.len());
    let w = vertex("hourly-delays");
    assert!(w["bytes_in"].as_u64().unwrap() > 100_000 * 8, "{w}");
    assert!(w["busy_ms"].as_u64().unwrap() > 0, "{w}");
    assert_eq!(w["watermark"], i64::MAX, "the end of input");

    // Prometheus text, the checkpoint history (none), the event stream of an ended job.
    let p = server.get("/metrics");
    assert!(p.content_type.starts_with("text/plain"), "{p:?}");
    let text = p.body.as_str().unwrap();
    let line = format!(
        "sluice_records_in_total{{job_id=\"{id}\",job=\"flights\",vertex=\"flight-delays\",subtask=\"0\"}} 100000"
    );
    assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    assert!(text.contains(&format!(
        "sluice_late_records_total{{job_id=\"{id}\",job=\"flights\",vertex=\"hourly-delays\"}} {}",
        answer.late.len()
    )));
    assert!(text.contains("sluice_jobs{status=\"finished\"} 1"));
    assert_eq!(
        server.get(&format!("/v1/jobs/{id}/checkpoints")).body,
        json!([])
    );
    let events = server.get(&format!("/v1/jobs/{id}/events"));
    assert!(
        events.content_type.starts_with("text/event-stream"),
        "{events:?}"
    );
    let text = events.body.as_str().unwrap();
    assert!(
        text.contains("event: metrics") && text.contains("event: job"),
        "{text}"
    );

    // The operator is in use until the job is deleted.
    let a = server.call("DELETE", "/v1/operators/flights@1.0", None, b"");
    assert_eq!((a.status, a.error_code()), (409, "in_use"), "{a:?}");
    assert!(a.message().contains(&id));
    assert_eq!(
        server.get("/v1/operators/flights@1.0").body["jobs"],
        json!([id])
    );
    assert_eq!(
        server
            .call("DELETE", &format!("/v1/jobs/{id}"), None, b"")
            .status,
        204
    );
    assert_eq!(server.get(&format!("/v1/jobs/{id}")).status, 404);
    assert_eq!(
        server
            .call("DELETE", "/v1/operators/flights@1.0", None, b"")
            .status,
        204
    );
}

/// The newest complete checkpoint of the flights job of `server`'s job `id`.
fn newest_checkpoint(server: &TestServer, id: &str) -> Option<u64> {
    kill::newest_checkpoint(
        &server.data_dir.join("jobs").join(id).join("checkpoints"),
        "flights",
    )
}

/// A paced flights job that checkpoints every 500 ms (into its folder on the server).
fn paced_job(server: &TestServer, input: &Path, out: &Path, pace: u64) -> String {
    let mut spec = flights_spec(input, "flights@1.0", out, Some(pace));
    spec["checkpoints"] = json!({"interval": "500ms", "retain": 2});
    spec["state"] = json!({"backend": "rocksdb"});
    submit(server, &spec)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn savepoint_stop_restart_and_cancel() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let (input, answer) = flights_slice(tmp.path(), 100_000);
    let server = start(tmp.path(), &[]);
    upload(&server, &plugins::wasm("flight_delays"), "flights", "1.0");
    let out = tmp.path().join("out");
    let id = paced_job(&server, &input, &out, 20_000);
    let job_path = format!("/v1/jobs/{id}");

    // Live figures move; a checkpoint completes.
    wait_until("a checkpoint", Duration::from_secs(60), || {
        !server
            .get(&format!("{job_path}/checkpoints"))
            .body
            .as_array()
            .unwrap()
            .is_empty()
    });
    let c = &server.get(&format!("{job_path}/checkpoints")).body[0];
    assert_eq!(
        (&c["kind"], &c["status"]),
        (&json!("checkpoint"), &json!("completed"))
    );
    assert!(
        c["completed_at"].as_i64().unwrap() > 0 && c["state_bytes"].as_u64().unwrap() > 0,
        "{c}"
    );
    let m1 = server.get(&format!("{job_path}/metrics")).body;
    std::thread::sleep(Duration::from_millis(1200));
    let m2 = server.get(&format!("{job_path}/metrics")).body;
    let n = |m: &Value| m["vertices"][0]["records_out"].as_u64().unwrap();
    assert!(n(&m2) > n(&m1), "records move: {} then {}", n(&m1), n(&m2));
    let rate = m2["vertices"][0]["records_out_per_second"]
        .as_f64()
        .unwrap();
    assert!(
        rate > 1000.0 && rate < 40_000.0,
        "paced at 20,000/s: {rate}"
    );
    assert!(m2["vertices"][2]["watermark"].as_i64().is_some(), "{m2}");

    // A savepoint; the job goes on.
    let a = server.call("POST", &format!("{job_path}/savepoints"), None, b"");
    assert_eq!(a.status, 201, "{a:?}");
    let first = a.body["savepoint"]["folder"].as_str().unwrap().to_string();
    assert!(first.starts_with("savepoints/flights-"), "{first}");
    assert_eq!(a.body["job"]["status"], "running");

    // Stop with a savepoint: stopped, and nothing after it was committed.
    let a = server.post_json(&format!("{job_path}/stop"), &json!({"savepoint": true}));
    assert_eq!(a.status, 200, "{a:?}");
    let stopped_at = a.body["savepoint"]["folder"].as_str().unwrap().to_string();
    assert_eq!(a.body["job"]["status"], "stopped");
    assert_eq!(a.body["job"]["savepoints"].as_array().unwrap().len(), 2);
    let a = server.post_json(&format!("{job_path}/stop"), &json!({"savepoint": true}));
    assert_eq!((a.status, a.error_code()), (409, "not_running"));
    let a = server.call("POST", &format!("{job_path}/savepoints"), None, b"");
    assert_eq!((a.status, a.error_code()), (409, "not_running"));
    let a = server.post_json(&format!("{job_path}/stop"), &json!({"savepoint": "yes"}));
    assert_eq!((a.status, a.error_code()), (422, "invalid_body"), "{a:?}");
    let a = server.call(
        "POST",
        &format!("{job_path}/restart"),
        Some("text/plain"),
        b"{}",
    );
    assert_eq!(
        (a.status, a.error_code()),
        (415, "unsupported_media_type"),
        "{a:?}"
    );

    // Restart from the stop's savepoint (the latest, by default): it runs to the end,
    // and the output is the exact answer.
    let a = server.call("POST", &format!("{job_path}/restart"), None, b"");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["status"], "running");
    assert_eq!(a.body["restored_from"], stopped_at.as_str());
    assert_eq!(a.body["runs"], 2);
    let a = server.call("POST", &format!("{job_path}/restart"), None, b"");
    assert_eq!((a.status, a.error_code()), (409, "running"));
    assert_eq!(server.call("DELETE", &job_path, None, b"").status, 409);
    let job = server.wait_for_end(&id, Duration::from_secs(120));
    assert_eq!(job["status"], "finished", "{job}");
    flights::check_output(
        &answer,
        &flights::read_output(&out),
        "stopped with a savepoint and restarted",
    );

    // Restart from the first savepoint, then cancel it.
    let a = server.post_json(&format!("{job_path}/restart"), &json!({"savepoint": first}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["restored_from"], first.as_str());
    let a = server.call("POST", &format!("{job_path}/cancel"), None, b"");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["status"], "cancelled");
    let a = server.post_json(
        &format!("{job_path}/restart"),
        &json!({"savepoint": "savepoints/none-1"}),
    );
    assert_eq!((a.status, a.error_code()), (422, "start_failed"), "{a:?}");
    assert_eq!(server.get(&job_path).body["status"], "failed");

    // A job without checkpoint storage cannot take a savepoint; stop without one cancels.
    let id2 = submit(
        &server,
        &flights_spec(&input, "flights@1.0", &tmp.path().join("out3"), Some(5_000)),
    );
    let a = server.call("POST", &format!("/v1/jobs/{id2}/savepoints"), None, b"");
    assert_eq!(
        (a.status, a.error_code()),
        (409, "savepoint_failed"),
        "{a:?}"
    );
    assert!(a.message().contains("checkpoint storage"), "{a:?}");
    let a = server.call("POST", &format!("/v1/jobs/{id2}/stop"), None, b"");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        (&a.body["job"]["status"], &a.body["savepoint"]),
        (&json!("cancelled"), &Value::Null)
    );
}

/// The ids of the checkpoints in a job record.
fn checkpoint_ids(job: &Value) -> Vec<u64> {
    job["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_killed_server_resumes_its_running_job_from_the_latest_checkpoint() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let (input, answer) = flights_slice(tmp.path(), 150_000);
    let mut server = start(tmp.path(), &[]);
    upload(&server, &plugins::wasm("flight_delays"), "flights", "1.0");
    let out = tmp.path().join("out");
    let id = paced_job(&server, &input, &out, 25_000);
    wait_until("two checkpoints", Duration::from_secs(60), || {
        newest_checkpoint(&server, &id).is_some_and(|c| c >= 2)
    });
    server.kill();
    let newest = newest_checkpoint(&server, &id).expect("a checkpoint");
    let record: Value = serde_json::from_slice(
        &std::fs::read(server.data_dir.join("jobs").join(&id).join("job.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["status"], "running", "the record still says running");
    // The checkpoint history was kept while the job ran (at most a second behind).
    let kept = checkpoint_ids(&record);
    assert!(
        kept.contains(&(newest - 1)) || kept.contains(&newest),
        "{kept:?} (newest {newest})"
    );

    let server = start(tmp.path(), &[]);
    let job = server.get(&format!("/v1/jobs/{id}")).body;
    assert_eq!(job["status"], "running", "{job}");
    assert_eq!(job["runs"], 2);
    assert_eq!(
        job["restored_from"],
        format!("flights/chk-{newest}"),
        "{job}"
    );
    let job = server.wait_for_end(&id, Duration::from_secs(120));
    assert_eq!(job["status"], "finished", "{job}");
    let ids = checkpoint_ids(&job);
    assert!(
        ids.starts_with(&kept),
        "the killed run's checkpoints first: {ids:?}"
    );
    flights::check_output(
        &answer,
        &flights::read_output(&out),
        "after the server was killed",
    );
}

#[test]
fn a_stopped_server_resumes_its_running_job_when_it_starts_again() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let (input, answer) = flights_slice(tmp.path(), 100_000);
    let mut server = start(tmp.path(), &[]);
    upload(&server, &plugins::wasm("flight_delays"), "flights", "1.0");
    let out = tmp.path().join("out");
    let id = paced_job(&server, &input, &out, 25_000);
    wait_until("a checkpoint", Duration::from_secs(60), || {
        newest_checkpoint(&server, &id).is_some()
    });
    assert!(server.terminate(), "SIGTERM: a clean exit");
    let server = start(tmp.path(), &[]);
    let job = server.get(&format!("/v1/jobs/{id}")).body;
    assert_eq!(job["status"], "running", "{job}");
    assert!(
        job["restored_from"]
            .as_str()
            .unwrap()
            .starts_with("flights/chk-"),
        "{job}"
    );
    let job = server.wait_for_end(&id, Duration::from_secs(120));
    assert_eq!(job["status"], "finished", "{job}");
    flights::check_output(
        &answer,
        &flights::read_output(&out),
        "after the server was stopped",
    );
}

/// `sluice ...` with `args`, speaking to `server`; returns (success, stdout, stderr).
fn cli(server: &TestServer, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(sluice())
        .args(args)
        .args(["--server", &server.url, "--token", token])
        .env_remove("SLUICE_TOKEN")
        .env_remove("SLUICE_SERVER")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_uploads_submits_lists_savepoints_and_stops_through_the_api() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let (input, _) = flights_slice(tmp.path(), 50_000);
    let server = start(tmp.path(), &[]);
    let wasm = plugins::wasm("flight_delays");
    let (ok, out, err) = cli(
        &server,
        TOKEN,
        &[
            "operator",
            "upload",
            wasm.to_str().unwrap(),
            "--name",
            "flights",
            "--version",
            "1.0",
        ],
    );
    assert!(ok, "{err}");
    let hash = out.trim().to_string();
    assert_eq!(
        server.get("/v1/operators/flights@1.0").body["sha256"],
        hash.as_str()
    );
    let (ok, out, _) = cli(&server, TOKEN, &["operator", "list"]);
    assert!(
        ok && out.contains(&hash) && out.contains("flights@1.0"),
        "{out}"
    );

    // A spec file whose operator is a `wasm:` path relative to it: the CLI uploads it.
    let mut spec = flights_spec(&input, "unused", &tmp.path().join("out"), Some(10_000));
    spec["checkpoints"] = json!({"interval": "500ms"});
    let op = spec["operators"][0].as_object_mut().unwrap();
    op.remove("operator");
    std::fs::copy(&wasm, tmp.path().join("op.wasm")).unwrap();
    op.insert("wasm".into(), "op.wasm".into());
    let spec_path = tmp.path().join("flights.yaml");
    std::fs::write(&spec_path, serde_yaml_ng::to_string(&spec).unwrap()).unwrap();
    let (ok, out, err) = cli(
        &server,
        TOKEN,
        &["job", "submit", spec_path.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let job = server.get(&format!("/v1/jobs/{id}")).body;
    assert_eq!(job["status"], "running", "{job}");
    assert_eq!(
        job["spec"]["operators"][0]["operator"],
        hash.as_str(),
        "the same component"
    );

    let (ok, out, _) = cli(&server, TOKEN, &["job", "list"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("running")),
        "{out}"
    );
    let (ok, out, err) = cli(&server, TOKEN, &["job", "savepoint", &id]);
    assert!(ok, "{err}");
    assert!(out.trim().starts_with("savepoints/flights-"), "{out}");
    let (ok, out, err) = cli(&server, TOKEN, &["job", "stop", &id, "--savepoint"]);
    assert!(ok, "{err}");
    let folder = out.trim();
    assert!(folder.starts_with("savepoints/flights-"), "{out}");
    let job = server.get(&format!("/v1/jobs/{id}")).body;
    assert_eq!(job["status"], "stopped");
    assert_eq!(job["savepoints"][1]["folder"], folder);

    // Errors carry the server's message, and the exit status says so.
    let (ok, _, err) = cli(&server, TOKEN, &["job", "stop", &id]);
    assert!(
        !ok && err.contains("409") && err.contains("not running"),
        "{err}"
    );
    let (ok, _, err) = cli(&server, "wrong", &["job", "list"]);
    assert!(
        !ok && err.contains("401") && err.contains("token is wrong"),
        "{err}"
    );
    let (ok, _, err) = cli(&server, TOKEN, &["job", "submit", "/nonexistent.yaml"]);
    assert!(!ok && err.contains("/nonexistent.yaml"), "{err}");
}

#[test]
fn a_failed_jobs_exceptions_name_the_operator_subtask_and_key_groups() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), &[]);
    upload(&server, &plugins::wasm("test_faults"), "faults", "1.0");
    let id = submit(&server, &poison_spec(tmp.path(), "faults@1.0"));
    let job = server.wait_for_end(&id, Duration::from_secs(60));
    assert_eq!(job["status"], "failed", "{job}");
    let exceptions = job["exceptions"].as_array().unwrap();
    // One restart (the strategy allows one), then the failure that ended the job.
    assert_eq!(exceptions.len(), 2, "{job}");
    assert_eq!(
        (&exceptions[0]["outcome"], &exceptions[1]["outcome"]),
        (&json!("restarted"), &json!("failed"))
    );
    // Where: the poison key's key group, on the subtask that owns it (computed here
    // from the key-group assignment, Flink's).
    let max = job["graph"]["max_parallelism"].as_u64().unwrap() as usize;
    let group = sluice_core::keygroup::key_group(POISON_KEY.as_bytes(), max);
    let subtask = sluice_core::keygroup::subtask_for_key_group(group, 2, max);
    for e in exceptions {
        assert_eq!(e["vertex"], "faulty", "{e}");
        assert_eq!(e["subtask"], subtask, "{e}");
        let [first, last] =
            [&e["key_groups"][0], &e["key_groups"][1]].map(|v| v.as_u64().unwrap() as usize);
        assert!(first <= group && group <= last, "{group} in {e}");
        assert!(
            e["message"].as_str().unwrap().contains("poison record"),
            "{e}"
        );
        assert!(
            e["time"].as_i64().unwrap() >= job["submitted_at"].as_i64().unwrap(),
            "{e}"
        );
    }
    assert_eq!(job["last_error"], exceptions[1]["message"], "{job}");
    assert_eq!(job["restarts"], 1);
}

/// Hostile operators on a server that runs the flights job at the same time: an
/// infinite loop, a memory bomb, deep recursion, an output flood and a panicking init
/// each fail their own job with the operator named in its exceptions, while the server
/// keeps answering and the flights job finishes with the exact answer.
#[test]
fn hostile_jobs_fail_alone_while_the_server_serves_the_others() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let (input, answer) = flights_slice(tmp.path(), 100_000);
    let server = start(tmp.path(), &[]);
    upload(&server, &plugins::wasm("flight_delays"), "flights", "1.0");
    upload(&server, &plugins::wasm("test_faults"), "faults", "1.0");
    upload(&server, &plugins::wasm("test_hostile"), "hostile", "1.0");
    let out = tmp.path().join("out");
    let good = submit(
        &server,
        &flights_spec(&input, "flights@1.0", &out, Some(25_000)),
    );

    let events = tmp.path().join("hostile-in.jsonl");
    let lines: String = (0..2000).map(|i| format!("{{\"t\":{i}}}\n")).collect();
    std::fs::write(&events, lines).unwrap();
    let hostile = |name: &str, operator: &str, mode: &str, limits: Value| {
        json!({
            "name": name,
            "sources": [{"id": "src", "connector": "jsonl", "path": events.to_str().unwrap(),
                         "event_time": {"field": "t", "format": "epoch_ms"},
                         "watermarks": {"max_out_of_orderness": 0}}],
            "operators": [{"id": "hostile", "input": "src", "operator": operator,
                           "config": {"mode": mode}, "limits": limits}],
            "sinks": [{"id": "out", "input": "hostile", "connector": "jsonl",
                       "path": tmp.path().join(format!("{name}.jsonl")).to_str().unwrap()}]
        })
    };
    let cases = [
        (
            "loop",
            hostile(
                "loop",
                "faults@1.0",
                "infinite-loop",
                json!({"time_per_call": "200ms"}),
            ),
            "time limit of 200 ms",
        ),
        (
            "bomb",
            hostile(
                "bomb",
                "faults@1.0",
                "memory-bomb",
                json!({"max_memory": "16MiB"}),
            ),
            "memory limit of 16 MiB",
        ),
        (
            "recursion",
            hostile("recursion", "hostile@1.0", "recursion", json!({})),
            "call stack exhausted",
        ),
        (
            "flood",
            hostile(
                "flood",
                "faults@1.0",
                "flood",
                json!({"max_output_events": 10_000}),
            ),
            "limits.max_output_events",
        ),
    ];
    let mut ids = Vec::new();
    for (name, spec, expect) in &cases {
        let a = server.post_json("/v1/jobs", spec);
        assert!(a.status == 201 || a.status == 422, "{name}: {a:?}");
        ids.push((name, a.body["id"].as_str().map(String::from), *expect, a));
    }
    // A panicking init fails the start: answered 422 with the guest's message.
    let a = server.post_json(
        "/v1/jobs",
        &hostile("init-panic", "hostile@1.0", "init-panic", json!({})),
    );
    assert_eq!((a.status, a.error_code()), (422, "start_failed"), "{a:?}");
    assert!(
        a.message().contains("test-hostile refuses to start"),
        "{a:?}"
    );

    for (name, id, expect, answer) in ids {
        let job = match id {
            Some(id) if answer.status == 201 => server.wait_for_end(&id, Duration::from_secs(60)),
            _ => panic!("{name}: {answer:?}"),
        };
        assert_eq!(job["status"], "failed", "{name}: {job}");
        let e = job["exceptions"]
            .as_array()
            .unwrap()
            .last()
            .cloned()
            .unwrap();
        assert_eq!(e["vertex"], "hostile", "{name}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(expect),
            "{name}: {e}"
        );
        assert_eq!(server.get("/healthz").status, 200);
    }
    let job = server.wait_for_end(&good, Duration::from_secs(120));
    assert_eq!(job["status"], "finished", "{job}");
    flights::check_output(&answer, &flights::read_output(&out), "beside hostile jobs");
    // The failures are counted.
    let metrics = server.get("/metrics").body;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("sluice_operator_failures_total{") && text.contains("kind=\"limit\"} 1"),
        "{text}"
    );
}

/// What a job's operator prints goes to the job's log, tagged with the operator and
/// subtask, at most its rate limit of lines a second (the rest counted in a note).
#[test]
fn a_jobs_log_has_what_its_operators_print_tagged_and_rate_limited() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path(), &[]);
    upload(&server, &plugins::wasm("test_hostile"), "hostile", "1.0");
    let events = tmp.path().join("in.jsonl");
    let lines: String = (0..3000).map(|i| format!("{{\"t\":{i}}}\n")).collect();
    std::fs::write(&events, lines).unwrap();
    let id = submit(
        &server,
        &json!({
            "name": "chatty",
            "sources": [{"id": "src", "connector": "jsonl", "path": events.to_str().unwrap(),
                         "event_time": {"field": "t", "format": "epoch_ms"},
                         "watermarks": {"max_out_of_orderness": 0}}],
            "operators": [{"id": "chatty", "input": "src", "operator": "hostile@1.0",
                           "config": {"mode": "chatty"}, "limits": {"max_log_lines_per_second": 20}}],
            "sinks": [{"id": "out", "input": "chatty", "connector": "jsonl", "path": "out.jsonl"}]
        }),
    );
    assert_eq!(
        server.wait_for_end(&id, Duration::from_secs(60))["status"],
        "finished"
    );
    let log = server.get(&format!("/v1/jobs/{id}/log")).body;
    let log = log.as_str().unwrap();
    let printed = log
        .lines()
        .filter(|l| l.contains("operator 'chatty' (subtask 1/1) stdout: chatty guest line"))
        .count();
    assert!((200..=210).contains(&printed), "{printed} lines:\n{log}");
    assert!(
        log.contains("lines of guest output over the limit of 20 lines a second"),
        "{log}"
    );
    let tail = server
        .get(&format!("/v1/jobs/{id}/log?tail_bytes=200"))
        .body;
    let tail = tail.as_str().unwrap();
    assert!(tail.len() <= 200 && log.ends_with(tail), "{tail}");
    assert_eq!(server.get("/v1/jobs/nope/log").status, 404);
}
