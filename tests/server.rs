//! A `sluice serve` process for the API tests: started on a free port of 127.0.0.1 with
//! its own data directory, spoken to over real HTTP, killed with SIGKILL (or stopped
//! with SIGTERM) at will.

use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its token, if it has one.
    pub token: Option<String>,
    /// Its data directory.
    pub data_dir: PathBuf,
    child: Child,
    agent: ureq::Agent,
}

/// An answer: the status, the body as JSON (a string when it is not JSON, null when
/// empty), and the content type.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The `WWW-Authenticate` header.
    pub www_authenticate: Option<String>,
}

impl Answer {
    /// The error code of an error answer (`body.error.code`), checking the error shape:
    /// exactly `{"error": {"code": string, "message": non-empty string}}`.
    pub fn error_code(&self) -> &str {
        let e = self.body["error"]
            .as_object()
            .unwrap_or_else(|| panic!("not the error shape ({}): {}", self.status, self.body));
        assert_eq!(self.body.as_object().unwrap().len(), 1, "{}", self.body);
        assert_eq!(e.len(), 2, "{}", self.body);
        assert!(
            !e["message"].as_str().unwrap().is_empty(),
            "an empty message: {}",
            self.body
        );
        assert!(
            self.content_type.starts_with("application/json"),
            "{self:?}"
        );
        e["code"].as_str().unwrap()
    }

    /// The error message of an error answer.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

impl TestServer {
    /// Starts `sluice serve` (`sluice`: the binary) on a free port with `data_dir`, the
    /// token if given, and `args`. Panics when it does not report that it serves within
    /// 60 s.
    pub fn start(sluice: &Path, data_dir: &Path, token: Option<&str>, args: &[&str]) -> TestServer {
        let mut cmd = Command::new(sluice);
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env_remove("SLUICE_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let mut child = cmd.spawn().expect("start sluice serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("serving on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(url);
                }
                eprintln!("[server] {line}");
            }
        });
        let t = Instant::now();
        let url = loop {
            if let Ok(url) = rx.recv_timeout(Duration::from_millis(50)) {
                break url;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("sluice serve exited: {status}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "sluice serve did not start"
            );
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        TestServer {
            url,
            token: token.map(String::from),
            data_dir: data_dir.to_path_buf(),
            child,
            agent,
        }
    }

    /// A request with the server's token.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Answer {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        self.call_as(auth.as_deref(), method, path, content_type, body)
    }

    /// `GET path` with the server's token.
    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, b"")
    }

    /// `POST path` with a JSON body, with the server's token.
    pub fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.call(
            "POST",
            path,
            Some("application/json"),
            body.to_string().as_bytes(),
        )
    }

    /// A request with `authorization` as the `Authorization` header (none: without).
    pub fn call_as(
        &self,
        authorization: Option<&str>,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Answer {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url));
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        let response = self
            .agent
            .run(req.body(body.to_vec()).unwrap())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let header = |n: &str| {
            response
                .headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let content_type = header("content-type").unwrap_or_default();
        let www_authenticate = header("www-authenticate");
        let text = response
            .into_body()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"));
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            body,
            content_type,
            www_authenticate,
        }
    }

    /// Polls job `id` until it is no longer running; returns it. Panics after `timeout`.
    pub fn wait_for_end(&self, id: &str, timeout: Duration) -> Value {
        let t = Instant::now();
        loop {
            let a = self.get(&format!("/v1/jobs/{id}"));
            assert_eq!(a.status, 200, "{a:?}");
            if a.body["status"] != "running" {
                return a.body;
            }
            assert!(
                t.elapsed() < timeout,
                "job {id} still running after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Uploads the component at `wasm` as `name@version`; its stored description.
    pub fn upload(&self, wasm: &Path, name: &str, version: &str) -> Value {
        let bytes = std::fs::read(wasm).unwrap();
        let a = self.call(
            "POST",
            &format!("/v1/operators?name={name}&version={version}"),
            Some("application/wasm"),
            &bytes,
        );
        assert!(a.status == 201 || a.status == 200, "{a:?}");
        a.body
    }

    /// Submits `spec`, which must start; the job's id.
    pub fn submit(&self, spec: &Value) -> String {
        let a = self.post_json("/v1/jobs", spec);
        assert_eq!(a.status, 201, "{a:?}");
        assert_eq!(a.body["status"], "running");
        a.body["id"].as_str().unwrap().to_string()
    }

    /// Kills the server with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server with SIGTERM and waits for it to exit; returns whether it
    /// exited successfully.
    pub fn terminate(&mut self) -> bool {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The flights spec of the repository as JSON for the API: its source reading `input`
/// (no SHA-256 check), at `pace` events per second if given; its operator named
/// `operator` (a hash or name@version); its sinks writing under `out`.
pub fn flights_spec(input: &Path, operator: &str, out: &Path, pace: Option<u64>) -> Value {
    let root = crate::plugins::repo_root();
    let text = std::fs::read_to_string(root.join(crate::flights::SPEC)).unwrap();
    let mut spec: Value = serde_yaml_ng::from_str(&text).unwrap();
    let source = spec["sources"][0].as_object_mut().unwrap();
    source.insert("path".into(), input.to_str().unwrap().into());
    source.remove("sha256");
    if let Some(p) = pace {
        source.insert("max_events_per_second".into(), p.into());
    }
    let op = spec["operators"][0].as_object_mut().unwrap();
    op.remove("wasm");
    op.insert("operator".into(), operator.into());
    for sink in spec["sinks"].as_array_mut().unwrap() {
        let name = Path::new(sink["path"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_owned();
        sink["path"] = out.join(name).to_str().unwrap().into();
    }
    spec
}

/// The key of the poison record of [`poison_spec`].
pub const POISON_KEY: &str = "k7";

/// A job that fails on a poison record: `in.jsonl` (written into `dir`: 2,000 events of
/// keys `k0`..`k9`) read by a keyed `test-faults` operator (named `operator`, on 2
/// subtasks) that traps on the event `{"t":1007000,"k":"k7"}`; one restart after 100 ms,
/// then the job fails with the trap.
pub fn poison_spec(dir: &Path, operator: &str) -> Value {
    let poison = format!("{{\"t\":1007000,\"k\":\"{POISON_KEY}\"}}");
    let lines: String = (0..2000)
        .map(|i| format!("{{\"t\":{},\"k\":\"k{}\"}}\n", i * 1000, i % 10))
        .collect();
    assert!(lines.contains(&poison));
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines).unwrap();
    serde_json::json!({
        "name": "faulty-job",
        "parallelism": 2,
        "sources": [{
            "id": "src", "connector": "jsonl", "path": input.to_str().unwrap(),
            "event_time": {"field": "t", "format": "epoch_ms"}, "key": "k",
            "watermarks": {"max_out_of_orderness": 0}
        }],
        "operators": [{
            "id": "faulty", "input": "src", "key_by": "key", "operator": operator,
            "config": {"mode": "trap-on", "poison": poison}
        }],
        "sinks": [{"id": "out", "input": "faulty", "connector": "jsonl", "path": dir.join("out.jsonl").to_str().unwrap()}],
        "restart": {"strategy": "fixed-delay", "attempts": 1, "delay": "100ms"}
    })
}

/// A job for hot-swap tests: `events` events (`{"t": i, "k": "k<i % 10>"}`, paced at
/// `pace` a second; written into `dir/in.jsonl`) through the keyed operator `versioned`,
/// uploaded as `swap@a` (plugins test-swap-*), on 2 subtasks, into the exactly-once file
/// `dir/out.jsonl`, with a checkpoint a second and up to 2 restarts.
pub fn swap_spec(dir: &Path, events: usize, pace: u64) -> Value {
    let input = dir.join("in.jsonl");
    let lines: String = (0..events)
        .map(|i| format!("{{\"t\":{i},\"k\":\"k{}\"}}\n", i % 10))
        .collect();
    std::fs::write(&input, lines).unwrap();
    serde_json::json!({
        "name": "swap",
        "parallelism": 2,
        "sources": [{"id": "src", "connector": "jsonl", "path": input.to_str().unwrap(), "parallelism": 1,
                     "event_time": {"field": "t", "format": "epoch_ms"}, "key": "k",
                     "watermarks": {"max_out_of_orderness": 0}, "max_events_per_second": pace}],
        "operators": [{"id": "versioned", "input": "src", "key_by": "key", "operator": "swap@a",
                       "output": {"format": "json"}}],
        "sinks": [{"id": "out", "input": "versioned", "connector": "jsonl", "parallelism": 1,
                   "path": dir.join("out.jsonl").to_str().unwrap()}],
        "checkpoints": {"interval": "1s"},
        "restart": {"strategy": "fixed-delay", "attempts": 2, "delay": "100ms"}
    })
}
