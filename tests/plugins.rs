//! Builds the guest plugins workspace (`plugins/`) to WebAssembly components, once per
//! test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Builds every plugin (`cargo build --release --target wasm32-wasip2` on
/// `plugins/Cargo.toml`, target dir `plugins/target`) and returns the directory holding
/// the `.wasm` files. Runs cargo once per process; cargo's own lock serializes test
/// processes that build at the same time, and an up-to-date build takes a fraction of a
/// second. Panics with the build's output if it fails.
pub fn build() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = repo_root();
        let target_dir = root.join("plugins").join("target");
        let mut cmd = cargo_command();
        cmd.arg("build")
            .arg("--release")
            .arg("--target")
            .arg("wasm32-wasip2")
            .arg("--manifest-path")
            .arg(root.join("plugins").join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir);
        let output = cmd.output().unwrap_or_else(|e| panic!("cannot run cargo to build the plugins: {e}"));
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if stderr.contains("wasm32-wasip2")
                && (stderr.contains("may not be installed") || stderr.contains("can't find crate for `std`"))
            {
                panic!("the wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2`\n\n{stderr}");
            }
            panic!("building the plugins failed:\n{stderr}");
        }
        target_dir.join("wasm32-wasip2").join("release")
    })
    .clone()
}

/// The path of the built component of plugin crate `name` (`flight_delays`,
/// `fraud_rules`, `identity`, `test_faults`, `test_state`, `test_other_world`,
/// `test_extra_import`; dashes are accepted too), building the plugins first if needed.
/// Panics when the build made no such component.
pub fn wasm(name: &str) -> PathBuf {
    let path = build().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "no plugin component at {}", path.display());
    path
}

/// A `cargo` command for a nested build (the guest workspace, the guest SDK's tests) with
/// the outer cargo's settings removed.
pub fn cargo_command() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // The outer cargo's settings (target dir, build profile, flags, the crate being
    // tested) must not leak into the guest build; keep CARGO_HOME and
    // CARGO_REGISTRIES_*/CARGO_NET_* (where and how to fetch) and the toolchain.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaks = (key.starts_with("CARGO_")
            && key != "CARGO_HOME"
            && !key.starts_with("CARGO_REGISTRIES_")
            && !key.starts_with("CARGO_NET_")
            && !key.starts_with("CARGO_HTTP_"))
            || matches!(
                key,
                "RUSTFLAGS" | "RUSTDOCFLAGS" | "RUSTC_WRAPPER" | "RUSTC_WORKSPACE_WRAPPER"
            );
        if leaks {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// One WASM runtime per test process, with its compile cache next to the built plugins
/// (so every test binary reuses the compiled components) and room for 32 instances.
/// Panics when the runtime cannot be created.
pub fn runtime() -> &'static sluice_wasm::WasmRuntime {
    static RT: std::sync::OnceLock<sluice_wasm::WasmRuntime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        let dir = build()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("host-cache");
        sluice_wasm::WasmRuntime::new(sluice_wasm::RuntimeConfig {
            max_instances: 32,
            ..sluice_wasm::RuntimeConfig::with_cache_dir(dir)
        })
        .unwrap()
    })
}

/// The built plugin `name` (as [`wasm`] names it), loaded (compiled or from the cache)
/// by [`runtime`]. Panics when it does not load.
pub fn load(name: &str) -> sluice_wasm::LoadedComponent {
    runtime().load_component(wasm(name)).unwrap()
}

/// An operator config from `(key, value)` pairs.
pub fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The `(code, message)` of an operator's typed error
/// ([`OperatorError::Returned`](sluice_core::operator::OperatorError::Returned)). Panics,
/// showing the error, when it is a fault instead.
pub fn returned(err: &sluice_core::operator::OperatorError) -> (&str, &str) {
    match err {
        sluice_core::operator::OperatorError::Returned { code, message, .. } => (code, message),
        other => panic!("expected a typed error returned by the operator, got {other:?}"),
    }
}

/// Builds the guest plugin in `plugins/<name>` (Python `app.py` or TypeScript `app.ts`)
/// with `sluice build` (componentize-py, or esbuild and componentize-js), once per test
/// process, into `plugins/target/<kind>/<name>.wasm`, and returns its path. Panics with
/// the toolchain's message (a missing tool and how to install it, or its output).
fn guest_wasm(name: &str, kind: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let root = repo_root();
    let out = root
        .join("plugins/target")
        .join(kind)
        .join(format!("{name}.wasm"));
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|n| n == name) {
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        if let Err(e) = sluice_cli::build::build(&root.join("plugins").join(name), None, Some(&out))
        {
            panic!("building the plugin {name}: {e}");
        }
        built.push(name.to_string());
    }
    out
}

/// The Python plugin `plugins/<name>`, built (see [`guest_wasm`]).
pub fn python_wasm(name: &str) -> PathBuf {
    guest_wasm(name, "python")
}

/// The TypeScript plugin `plugins/<name>`, built (see [`guest_wasm`]).
pub fn js_wasm(name: &str) -> PathBuf {
    guest_wasm(name, "js")
}

/// The C plugin `plugins/<name>`, built (see [`guest_wasm`]).
pub fn c_wasm(name: &str) -> PathBuf {
    guest_wasm(name, "c")
}

/// Runs the job spec `text` (YAML or JSON; relative paths against `dir`, the WASM cache
/// in `dir/cache`) to its end in this process; its figures, or the error that failed or
/// refused it.
pub fn run_spec(
    dir: &Path,
    text: &str,
) -> Result<std::sync::Arc<sluice_core::runtime::JobMetrics>, String> {
    use sluice_core::spec::{self, Overrides};
    let wasm = sluice_wasm::WasmRuntime::new(sluice_wasm::RuntimeConfig::with_cache_dir(
        dir.join("cache"),
    ))
    .unwrap();
    let resolver = sluice_cli::job::JobResolver {
        wasm: &wasm,
        output_dir: None,
    };
    let graph = spec::parse(text)
        .and_then(|s| s.to_graph(dir, &resolver, Overrides::default()))
        .map_err(|e| e.0)?;
    let job = sluice_core::runtime::start(graph).map_err(|e| e.0)?;
    let metrics = job.metrics().clone();
    job.join().map_err(|e| e.0)?;
    Ok(metrics)
}
