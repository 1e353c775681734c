//! The REST API of `sluice serve` over real HTTP, against the `sluice` binary started by
//! each test on a free loopback port with its own data directory:
//!
//! * operators: raw and multipart uploads validated against the operator world, stored
//!   by content hash, listed, inspected and deleted; every bad upload is a 4xx naming
//!   what is wrong (wrong content type, truncated `.wasm`, a component of another world,
//!   a body over the limit, a name taken by other content, a used operator);
//! * jobs: the flights job submitted through the API, naming its operator by
//!   `name@version`, gives the exact answer (`sluice_tests::flights`); bad specs (a
//!   missing operator, a cycle, not JSON, another content type, unknown ids) are 4xx;
//!   stop with a savepoint, and a restart from it; metrics, checkpoints, Prometheus text;
//! * the server killed (SIGKILL) while a job runs and started again: the job comes back
//!   from its latest checkpoint and still gives the exact answer;
//! * tokens: with one, every request but `/healthz` needs it; a non-loopback bind
//!   without one is refused at start.

use serde_json::{Value, json};
use sluice_cli::server::Client;
use sluice_tests::{flights, plugins};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `sluice serve` on a free port; killed when dropped.
struct Server {
    child: Child,
    url: String,
    data: PathBuf,
}

impl Server {
    fn start(data: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("sluice serve starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(url);
                }
                eprintln!("[serve] {line}");
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server says where it listens");
        Server {
            child,
            url,
            data: data.to_path_buf(),
        }
    }

    fn client(&self, token: Option<&str>) -> Client {
        Client::new(&self.url, token.map(String::from), Duration::from_secs(120))
    }

    fn kill(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.data.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `head` (a request's line and headers) and `body_len` zero bytes over a plain
/// TCP connection to the server at `url`, ignoring a connection the server closes while
/// the body is sent, and returns what it answers.
fn raw_request(url: &str, head: &str, body_len: usize) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(head.as_bytes()).unwrap();
    let _ = conn.write_all(&vec![0u8; body_len]);
    // Read until the server closes or goes quiet (it may keep the connection open for
    // the body it refused).
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn wasm(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn upload(c: &Client, bytes: Vec<u8>, name: &str, version: &str) -> (u16, Value) {
    c.send(
        "POST",
        &format!("/v1/operators?name={name}&version={version}"),
        Some(("application/wasm", bytes)),
    )
    .unwrap()
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn error_message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

/// The flights job as JSON for the server: its source a Parquet slice of `rows` flights,
/// its operator named `flight-delays@1`, its outputs under the job's folder, and
/// checkpoints every `interval` when given.
fn flights_job(slice: &Path, checkpoint_interval: Option<&str>) -> Value {
    let text = std::fs::read_to_string(plugins::repo_root().join(flights::SPEC)).unwrap();
    let mut spec: Value = serde_yaml_ng::from_str(&text).unwrap();
    let source = spec["sources"][0].as_object_mut().unwrap();
    source.insert("path".into(), slice.to_str().unwrap().into());
    source.remove("sha256");
    let op = spec["operators"][0].as_object_mut().unwrap();
    op.remove("wasm");
    op.insert("operator".into(), "flight-delays@1".into());
    spec["sinks"][0]["path"] = "out/windows.jsonl".into();
    spec["sinks"][1]["path"] = "out/late.jsonl".into();
    if let Some(interval) = checkpoint_interval {
        spec["checkpoints"] = json!({"interval": interval, "storage": "checkpoints"});
    }
    spec
}

fn submit(c: &Client, spec: &Value) -> (u16, Value) {
    c.send(
        "POST",
        "/v1/jobs",
        Some(("application/json", serde_json::to_vec(spec).unwrap())),
    )
    .unwrap()
}

/// Waits until job `id` has status `want`; returns the job.
fn wait_status(c: &Client, id: &str, want: &str, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let job = c.call("GET", &format!("/v1/jobs/{id}"), None).unwrap();
        if job["status"] == want {
            return job;
        }
        assert!(
            start.elapsed() < timeout,
            "job {id} is {} after {timeout:?}, not {want}: {job}",
            job["status"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn slice(dir: &Path, rows: usize) -> (PathBuf, flights::Answer) {
    let path = dir.join("slice.parquet");
    let rows = flights::read_rows(&flights::dataset(), Some(rows), Some(&path));
    (path, flights::exact_answer(&rows))
}

#[test]
fn operators_are_uploaded_validated_listed_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &["--max-upload", "1000000"]);
    let c = server.client(None);
    let flights_wasm = wasm(&plugins::wasm("flight_delays"));

    let (status, op) = upload(&c, flights_wasm.clone(), "flight-delays", "1");
    assert_eq!(status, 201, "{op}");
    assert_eq!(op["name"], "flight-delays");
    assert_eq!(op["size"], flights_wasm.len());
    assert_eq!(op["world"], "sluice:operator/operator-world@0.2.0");
    assert!(
        op["exports"]
            .as_array()
            .unwrap()
            .contains(&json!("sluice:operator/operator@0.2.0")),
        "{op}"
    );
    let hash = op["hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64);
    // The same again: accepted, unchanged.
    assert_eq!(
        upload(&c, flights_wasm.clone(), "flight-delays", "1").0,
        200
    );
    // The name and version with other content: a conflict.
    let identity = wasm(&plugins::wasm("identity"));
    let (status, e) = upload(&c, identity.clone(), "flight-delays", "1");
    assert_eq!((status, error_code(&e)), (409, "conflict"), "{e}");

    // Multipart.
    let boundary = "XbOuNdArYx";
    let mut body = Vec::new();
    for (name, value) in [("name", &b"identity"[..]), ("version", b"2")] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"identity.wasm\"\r\nContent-Type: application/wasm\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(&identity);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (status, op2) = c.send("POST", "/v1/operators", Some((&ct, body))).unwrap();
    assert_eq!(status, 201, "{op2}");
    assert_eq!(
        (op2["name"].as_str(), op2["version"].as_str()),
        (Some("identity"), Some("2"))
    );

    // Bad uploads.
    let (status, e) = c
        .send(
            "POST",
            "/v1/operators?name=x",
            Some(("text/plain", b"hello".to_vec())),
        )
        .unwrap();
    assert_eq!(
        (status, error_code(&e)),
        (415, "unsupported_media_type"),
        "{e}"
    );
    let (status, e) = upload(
        &c,
        flights_wasm[..flights_wasm.len() / 2].to_vec(),
        "half",
        "1",
    );
    assert_eq!((status, error_code(&e)), (422, "invalid_component"), "{e}");
    assert!(error_message(&e).contains("half@1"), "{e}");
    let (status, e) = upload(&c, b"not wasm at all".to_vec(), "text", "1");
    assert_eq!(status, 422, "{e}");
    assert!(error_message(&e).contains("not a WebAssembly file"), "{e}");
    let (status, e) = upload(&c, wasm(&plugins::wasm("test_other_world")), "other", "1");
    assert_eq!((status, error_code(&e)), (422, "invalid_component"), "{e}");
    assert!(error_message(&e).contains("operator-world"), "{e}");
    // Over the limit: refused once the limit is read, without reading the rest (a client
    // that goes on sending may see the connection close, as with any server that refuses
    // a body; this one sends a little over the limit).
    let answer = raw_request(
        &server.url,
        "POST /v1/operators?name=huge HTTP/1.1\r\nHost: x\r\nContent-Type: application/wasm\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n",
        1_100_000,
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"code\":\"payload_too_large\""),
        "{answer}"
    );
    let (status, e) = upload(&c, identity.clone(), "bad%20name", "1");
    assert_eq!((status, error_code(&e)), (400, "bad_request"), "{e}");
    let (status, e) = c
        .send(
            "POST",
            "/v1/operators",
            Some(("application/wasm", identity)),
        )
        .unwrap();
    assert_eq!(status, 400, "a name is needed: {e}");

    // Listed, inspected by name@version and by hash, deleted.
    let list = c.call("GET", "/v1/operators", None).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let by_name = c
        .call("GET", "/v1/operators/flight-delays@1", None)
        .unwrap();
    assert_eq!(by_name["hash"], hash.as_str());
    assert_eq!(by_name["used_by"], json!([]));
    let by_hash = c
        .call("GET", &format!("/v1/operators/{hash}"), None)
        .unwrap();
    assert_eq!(by_hash["name"], "flight-delays");
    let (status, e) = c.send("GET", "/v1/operators/nope@1", None).unwrap();
    assert_eq!((status, error_code(&e)), (404, "not_found"), "{e}");
    assert_eq!(
        c.send("DELETE", "/v1/operators/identity@2", None)
            .unwrap()
            .0,
        204
    );
    assert_eq!(
        c.send("GET", "/v1/operators/identity@2", None).unwrap().0,
        404
    );
    let (status, e) = c.send("GET", "/v1/nothing-here", None).unwrap();
    assert_eq!((status, error_code(&e)), (404, "not_found"), "{e}");
}

#[test]
fn the_flights_job_submitted_through_the_api_gives_the_exact_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let (slice, answer) = slice(tmp.path(), 30_000);
    let server = Server::start(&tmp.path().join("data"), &[]);
    let c = server.client(None);
    assert_eq!(
        upload(
            &c,
            wasm(&plugins::wasm("flight_delays")),
            "flight-delays",
            "1"
        )
        .0,
        201
    );

    // Bad specs first.
    let mut missing = flights_job(&slice, None);
    missing["operators"][0]["operator"] = "flight-delays@9".into();
    let (status, e) = submit(&c, &missing);
    assert_eq!((status, error_code(&e)), (422, "unknown_operator"), "{e}");
    assert!(error_message(&e).contains("operators[0].operator"), "{e}");
    let mut cycle = flights_job(&slice, None);
    cycle["operators"][0]["input"] = "hourly-delays".into();
    let (status, e) = submit(&c, &cycle);
    assert_eq!((status, error_code(&e)), (422, "invalid_spec"), "{e}");
    let (status, e) = c
        .send(
            "POST",
            "/v1/jobs",
            Some(("application/json", b"{not json".to_vec())),
        )
        .unwrap();
    assert_eq!((status, error_code(&e)), (400, "bad_request"), "{e}");
    let (status, _) = c
        .send("POST", "/v1/jobs", Some(("text/yaml", b"name: x".to_vec())))
        .unwrap();
    assert_eq!(status, 415);
    let (status, e) = c.send("GET", "/v1/jobs/no-such-job", None).unwrap();
    assert_eq!((status, error_code(&e)), (404, "not_found"), "{e}");
    assert_eq!(
        c.call("GET", "/v1/jobs", None).unwrap(),
        json!([]),
        "nothing was started"
    );

    let (status, job) = submit(&c, &flights_job(&slice, None));
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let vertices: Vec<&str> = job["graph"]["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        vertices,
        [
            "flights",
            "flight-delays",
            "hourly-delays",
            "window-results",
            "late-events"
        ]
    );
    assert_eq!(job["graph"]["edges"].as_array().unwrap().len(), 4);
    // Used: not deletable.
    let (status, e) = c
        .send("DELETE", "/v1/operators/flight-delays@1", None)
        .unwrap();
    assert_eq!((status, error_code(&e)), (409, "conflict"), "{e}");

    wait_status(&c, &id, "finished", Duration::from_secs(120));
    let got = flights::read_output(&server.data.join("jobs").join(&id).join("out"));
    flights::check_output(&answer, &got, "through the API");
    let metrics = c
        .call("GET", &format!("/v1/jobs/{id}/metrics"), None)
        .unwrap();
    let source = &metrics[0];
    assert_eq!(source["id"], "flights");
    assert_eq!(source["records_out"], 30_000, "{source}");
    let prometheus = c.send("GET", "/metrics", None).unwrap().1;
    let text = prometheus.as_str().unwrap();
    assert!(
        text.contains(&format!(
            "sluice_records_out_total{{job=\"{id}\",vertex=\"flights\"}} 30000"
        )),
        "{text}"
    );
    assert!(
        text.contains("sluice_jobs{status=\"finished\"} 1"),
        "{text}"
    );
    // A finished job can be deleted, and then its operator.
    assert_eq!(
        c.send("DELETE", &format!("/v1/jobs/{id}"), None).unwrap().0,
        204
    );
    assert_eq!(
        c.send("DELETE", "/v1/operators/flight-delays@1", None)
            .unwrap()
            .0,
        204
    );
}

#[test]
fn stop_with_a_savepoint_and_restart_from_it_and_the_server_restarted_mid_job() {
    let tmp = tempfile::tempdir().unwrap();
    let (slice, answer) = slice(tmp.path(), 300_000);
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[]);
    let c = server.client(None);
    assert_eq!(
        upload(
            &c,
            wasm(&plugins::wasm("flight_delays")),
            "flight-delays",
            "1"
        )
        .0,
        201
    );
    let mut spec = flights_job(&slice, Some("200ms"));
    // Paced (300,000 events take 3 s or more), so that the kills land mid-job.
    spec["sources"][0]["max_events_per_second"] = 100_000.into();
    let (status, job) = submit(&c, &spec);
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();

    // Stop with a savepoint once it has read some events.
    let start = Instant::now();
    loop {
        let m = c
            .call("GET", &format!("/v1/jobs/{id}/metrics"), None)
            .unwrap();
        if m[0]["records_out"].as_u64().unwrap() > 20_000 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the job did not start reading"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let body = br#"{"savepoint": true}"#.to_vec();
    let (status, stopped) = c
        .send(
            "POST",
            &format!("/v1/jobs/{id}/stop"),
            Some(("application/json", body)),
        )
        .unwrap();
    assert_eq!(status, 200, "{stopped}");
    let stopped = wait_status(&c, &id, "stopped", Duration::from_secs(30));
    let savepoint = stopped["savepoints"][0].as_str().unwrap().to_string();
    let (status, e) = c
        .send("POST", &format!("/v1/jobs/{id}/savepoints"), None)
        .unwrap();
    assert_eq!((status, error_code(&e)), (409, "job_not_running"), "{e}");

    // Restart from the savepoint; kill the server after a checkpoint or two.
    let body = serde_json::to_vec(&json!({ "savepoint": savepoint })).unwrap();
    let (status, restarted) = c
        .send(
            "POST",
            &format!("/v1/jobs/{id}/restart"),
            Some(("application/json", body)),
        )
        .unwrap();
    assert_eq!(status, 200, "{restarted}");
    let start = Instant::now();
    loop {
        let cps = c
            .call("GET", &format!("/v1/jobs/{id}/checkpoints"), None)
            .unwrap();
        if cps.as_array().unwrap().len() >= 2 {
            break;
        }
        let job = c.call("GET", &format!("/v1/jobs/{id}"), None).unwrap();
        assert_eq!(job["status"], "running", "{job}");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no checkpoint completed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let data = server.kill();

    // The server comes back, and with it the job, from its latest checkpoint.
    let server = Server::start(&data, &[]);
    let c = server.client(None);
    let job = c.call("GET", &format!("/v1/jobs/{id}"), None).unwrap();
    assert_eq!(
        job["status"], "running",
        "the job was killed mid-way: {job}"
    );
    wait_status(&c, &id, "finished", Duration::from_secs(180));
    let got = flights::read_output(&data.join("jobs").join(&id).join("out"));
    flights::check_output(&answer, &got, "stopped, restarted, server killed");
}

#[test]
fn a_token_guards_everything_but_health_and_a_public_bind_needs_one() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &["--token", "s3cret"]);
    let anonymous = server.client(None);
    let (status, health) = anonymous.send("GET", "/healthz", None).unwrap();
    assert_eq!((status, health), (200, json!("ok")));
    for path in ["/v1/jobs", "/v1/operators", "/metrics", "/v1/openapi.json"] {
        let (status, e) = anonymous.send("GET", path, None).unwrap();
        assert_eq!(
            (status, error_code(&e)),
            (401, "unauthorized"),
            "{path}: {e}"
        );
    }
    let (status, e) = server
        .client(Some("wrong"))
        .send("GET", "/v1/jobs", None)
        .unwrap();
    assert_eq!(
        (status, error_message(&e)),
        (401, "the bearer token is wrong")
    );
    let c = server.client(Some("s3cret"));
    assert_eq!(c.call("GET", "/v1/jobs", None).unwrap(), json!([]));
    let doc = c.call("GET", "/v1/openapi.json", None).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for path in [
        "/v1/operators",
        "/v1/jobs",
        "/v1/jobs/{id}/stop",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "the document has {path}");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--bind", "0.0.0.0:0", "--data-dir"])
        .arg(tmp.path().join("other"))
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without a token"),
        "{stderr}"
    );
}

#[test]
fn the_cli_uploads_submits_lists_and_stops_through_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let (slice, _) = slice(tmp.path(), 300_000);
    let server = Server::start(&tmp.path().join("data"), &["--token", "t0k"]);
    let cli = |args: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .args(["--server", &server.url])
            .env("SLUICE_TOKEN", "t0k")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sluice {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let wasm_path = plugins::wasm("flight_delays");
    let op = cli(&[
        "operator",
        "upload",
        wasm_path.to_str().unwrap(),
        "--name",
        "flight-delays",
        "--version",
        "1",
    ]);
    assert_eq!(op["name"], "flight-delays");
    // A YAML spec, as users write them.
    let mut spec = flights_job(&slice, Some("200ms"));
    spec["sources"][0]["max_events_per_second"] = 50_000.into();
    let spec_path = tmp.path().join("flights.yaml");
    std::fs::write(&spec_path, serde_yaml_ng::to_string(&spec).unwrap()).unwrap();
    let job = cli(&["job", "submit", spec_path.to_str().unwrap()]);
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["status"], "running");
    let list = cli(&["job", "list"]);
    assert_eq!(list[0]["id"], id.as_str());
    let stopped = cli(&["job", "stop", &id, "--savepoint"]);
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    assert_eq!(stopped["savepoints"].as_array().unwrap().len(), 1);

    // A failing command says what the server said.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "job",
            "savepoint",
            &id,
            "--server",
            &server.url,
            "--token",
            "t0k",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("409") && stderr.contains("not running"),
        "{stderr}"
    );
}
