//! `sluice serve` (the [`Engine`] the server runs jobs with: this crate's job resolver
//! and WASM runtime) and the client commands that speak its API (`sluice operator
//! upload`, `sluice job submit|list|stop|savepoint`).

use crate::job::{JobResolver, build_graph};
use sluice_core::graph::JobGraph;
use sluice_core::spec::Overrides;
use sluice_server::{ComponentInfo, Engine};
use sluice_wasm::WasmRuntime;
use std::path::Path;
use std::time::Duration;

/// The server's engine: validates components with the WASM runtime (warming its compile
/// cache) and builds graphs with the job resolver, as `sluice run` does.
pub struct CliEngine {
    /// The process's WASM runtime.
    pub wasm: WasmRuntime,
}

impl Engine for CliEngine {
    fn inspect_component(&self, name: &str, bytes: &[u8]) -> Result<ComponentInfo, String> {
        let c = self
            .wasm
            .load_component_bytes(name, bytes)
            .map_err(|e| e.to_string())?;
        let (imports, exports) = c.interfaces();
        Ok(ComponentInfo {
            world: "sluice:operator/operator-world@0.2.0".to_string(),
            imports,
            exports,
        })
    }

    fn build_graph(&self, path: &Path) -> Result<JobGraph, String> {
        let resolver = JobResolver {
            wasm: &self.wasm,
            output_dir: None,
        };
        build_graph(path, &resolver, Overrides::default()).map_err(|e| e.to_string())
    }
}

/// A client of a `sluice serve` at `url` (e.g. `http://127.0.0.1:8081`), with `token`.
pub struct Client {
    url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client; requests time out after `timeout`.
    pub fn new(url: &str, token: Option<String>, timeout: Duration) -> Client {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Client {
            url: url.trim_end_matches('/').to_string(),
            token,
            agent,
        }
    }

    /// Sends `method path` with an optional body of `content_type`; returns the status
    /// and the JSON answer (`null` for none, a string for a body that is not JSON).
    /// Errors: the server could not be reached.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(u16, serde_json::Value), String> {
        let url = format!("{}{path}", self.url);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let (content_type, bytes) = body.unwrap_or(("application/json", Vec::new()));
        let req = req
            .header("Content-Type", content_type)
            .body(bytes)
            .map_err(|e| format!("{url}: {e}"))?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| format!("cannot reach the server at {}: {e}", self.url))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(|e| format!("{url}: reading the answer: {e}"))?;
        let json = if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        Ok((status, json))
    }

    /// As [`Client::send`], with a status other than 2xx as an error carrying the
    /// server's message.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<serde_json::Value, String> {
        let (status, json) = self.send(method, path, body)?;
        if (200..300).contains(&status) {
            Ok(json)
        } else {
            let message = json["error"]["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| json.to_string());
            Err(format!("{method} {path}: {status}: {message}"))
        }
    }

    /// Uploads the component at `file` as `name@version`.
    pub fn upload(
        &self,
        file: &Path,
        name: &str,
        version: &str,
    ) -> Result<serde_json::Value, String> {
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let path = format!(
            "/v1/operators?name={}&version={}",
            encode(name),
            encode(version)
        );
        self.call("POST", &path, Some(("application/wasm", bytes)))
    }

    /// Submits the job spec at `spec` (YAML or JSON; operators named by `operator:`).
    pub fn submit(&self, spec: &Path) -> Result<serde_json::Value, String> {
        let text = std::fs::read_to_string(spec).map_err(|e| format!("{}: {e}", spec.display()))?;
        let value: serde_json::Value = serde_yaml_ng::from_str(&text)
            .map_err(|e| format!("{}: not YAML or JSON: {e}", spec.display()))?;
        let body = serde_json::to_vec(&value).expect("JSON");
        self.call("POST", "/v1/jobs", Some(("application/json", body)))
    }
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
