//! The client side of `sluice serve`'s API, for `sluice operator ...` and `sluice job
//! ...`: plain HTTP (put the server behind a TLS proxy to reach it across a network),
//! with the bearer token when one is given. Errors carry the server's message.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// A client of one server.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// The default server URL.
pub fn default_server() -> String {
    format!("http://127.0.0.1:{}", sluice_server::DEFAULT_PORT)
}

impl Client {
    /// A client of the server at `server` (`http://host:port`).
    pub fn new(server: &str, token: Option<String>) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A stop with savepoint waits for the savepoint.
            .timeout_global(Some(Duration::from_secs(15 * 60)))
            .build()
            .into();
        Client {
            base: server.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, String> {
        let response = result.map_err(|e| {
            format!(
                "cannot reach the server at {}: {e} (is `sluice serve` running there? set --server)",
                self.base
            )
        })?;
        let status = response.status();
        let text = response
            .into_body()
            .read_to_string()
            .map_err(|e| format!("reading the server's answer: {e}"))?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        match value.get("error") {
            Some(e) => Err(format!(
                "the server answered {}: {} ({})",
                status.as_u16(),
                e["message"].as_str().unwrap_or("?"),
                e["code"].as_str().unwrap_or("?")
            )),
            None => Err(format!("the server answered {status}: {value}")),
        }
    }

    fn auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => r.header("Authorization", &format!("Bearer {t}")),
            None => r,
        }
    }

    /// `GET path`, as JSON.
    pub fn get(&self, path: &str) -> Result<Value, String> {
        self.answer(self.auth(self.agent.get(&self.url(path))).call())
    }

    /// `POST path` with a body of `content_type`, answered with JSON.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Value, String> {
        self.answer(
            self.auth(self.agent.post(&self.url(path)))
                .content_type(content_type)
                .send(body),
        )
    }

    /// Uploads the component `wasm` (read from `file_name`, which the server's errors
    /// about it name), with a name and version if given. Returns the stored operator.
    pub fn upload_operator(
        &self,
        wasm: &[u8],
        file_name: &str,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<Value, String> {
        let mut query = vec![format!("filename={}", encode(file_name))];
        if let Some(n) = name {
            query.push(format!("name={}", encode(n)));
        }
        if let Some(v) = version {
            query.push(format!("version={}", encode(v)));
        }
        let path = format!("/v1/operators?{}", query.join("&"));
        self.post(&path, "application/wasm", wasm)
    }

    /// Submits a job spec (JSON). Returns the job.
    pub fn submit_job(&self, spec: &Value) -> Result<Value, String> {
        let body = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
        self.post("/v1/jobs", "application/json", &body)
    }

    /// Stops job `id`: with a savepoint, or at once.
    pub fn stop_job(&self, id: &str, savepoint: bool) -> Result<Value, String> {
        let body = serde_json::json!({ "savepoint": savepoint }).to_string();
        self.post(
            &format!("/v1/jobs/{}/stop", encode(id)),
            "application/json",
            body.as_bytes(),
        )
    }

    /// Replaces the code of operator `operator_id` of running job `id` with the uploaded
    /// operator `reference` (hot-swap); the server's answer once it is committed.
    pub fn swap_operator(
        &self,
        id: &str,
        operator_id: &str,
        reference: &str,
    ) -> Result<Value, String> {
        let body = serde_json::json!({ "operator": reference }).to_string();
        self.answer(
            self.auth(self.agent.put(&self.url(&format!(
                "/v1/jobs/{}/operators/{}",
                encode(id),
                encode(operator_id)
            ))))
            .content_type("application/json")
            .send(body.as_bytes()),
        )
    }

    /// Takes a savepoint of job `id`.
    pub fn savepoint(&self, id: &str) -> Result<Value, String> {
        self.post(
            &format!("/v1/jobs/{}/savepoints", encode(id)),
            "application/json",
            b"",
        )
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Reads the spec file at `path` (YAML or JSON) for submission: every operator given
/// by a `wasm:` path (relative to the spec) is uploaded and named by its hash instead.
/// Other relative paths are left as they are: the server resolves them against the
/// job's folder in its data directory.
pub fn prepare_spec(client: &Client, path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read job spec {}: {e}", path.display()))?;
    let mut spec: Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| format!("{}: not valid YAML or JSON: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Some(ops) = spec.get_mut("operators").and_then(Value::as_array_mut) {
        for (i, op) in ops.iter_mut().enumerate() {
            let Some(obj) = op.as_object_mut() else {
                continue;
            };
            let Some(Value::String(wasm)) = obj.get("wasm").cloned() else {
                continue;
            };
            let file = dir.join(&wasm);
            let bytes = std::fs::read(&file)
                .map_err(|e| format!("operators[{i}].wasm: cannot read {}: {e}", file.display()))?;
            let stored = client
                .upload_operator(&bytes, &file_label(&file), None, None)
                .map_err(|e| format!("operators[{i}].wasm: uploading {}: {e}", file.display()))?;
            let hash = stored["sha256"].as_str().unwrap_or_default().to_string();
            obj.remove("wasm");
            obj.insert("operator".into(), Value::String(hash));
        }
    }
    Ok(spec)
}

/// The name of `file` for the server's messages: its file name (the path if it has none).
pub fn file_label(file: &std::path::Path) -> String {
    file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
