//! `sluice build`: builds an operator's folder into a WebAssembly component with its
//! language's standard toolchain.
//!
//! | language | detected by | toolchain |
//! |---|---|---|
//! | Rust | `Cargo.toml` | `cargo build --release --target wasm32-wasip2` |
//! | Python | `app.py` | componentize-py (PyPI), with the Python SDK |
//! | TypeScript / JavaScript | `app.ts` / `app.js` | esbuild and componentize-js (npm), with the JavaScript SDK |
//! | C | `app.c` | clang for wasm32-wasi (Debian), with the C SDK ([`c`]) |
//!
//! The Python, JavaScript and C SDKs and the WIT package are built into the `sluice` binary
//! and written to a temporary folder for the build, so a plugin folder anywhere builds.

mod c;

use std::path::{Path, PathBuf};
use std::process::Command;

/// An operator's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Rust, with the `sluice-guest` crate.
    Rust,
    /// Python (`app.py`).
    Python,
    /// TypeScript (`app.ts`) or JavaScript (`app.js`).
    JavaScript,
    /// C (`app.c` and any other `.c` files of the folder).
    C,
}

impl Lang {
    /// Parses `rust`, `python`, `typescript`, `ts`, `javascript` or `js`.
    pub fn parse(s: &str) -> Result<Lang, String> {
        match s {
            "rust" => Ok(Lang::Rust),
            "python" | "py" => Ok(Lang::Python),
            "typescript" | "ts" | "javascript" | "js" => Ok(Lang::JavaScript),
            "c" => Ok(Lang::C),
            other => Err(format!(
                "unknown language '{other}' (rust, python, typescript, javascript, c)"
            )),
        }
    }

    /// The language of the operator in `dir`, from its files.
    pub fn detect(dir: &Path) -> Result<Lang, String> {
        if dir.join("Cargo.toml").is_file() {
            Ok(Lang::Rust)
        } else if dir.join("app.py").is_file() {
            Ok(Lang::Python)
        } else if dir.join("app.ts").is_file() || dir.join("app.js").is_file() {
            Ok(Lang::JavaScript)
        } else if dir.join("app.c").is_file() {
            Ok(Lang::C)
        } else {
            Err(format!(
                "{}: no Cargo.toml, app.py, app.ts, app.js or app.c: which language is it? (--lang)",
                dir.display()
            ))
        }
    }
}

const WIT: &str = include_str!("../../../../wit/operator.wit");
const PYTHON_SDK: [(&str, &str); 4] = [
    (
        "__init__.py",
        include_str!("../../../../guest-sdk/python/sluice/__init__.py"),
    ),
    (
        "operator.py",
        include_str!("../../../../guest-sdk/python/sluice/operator.py"),
    ),
    (
        "packed.py",
        include_str!("../../../../guest-sdk/python/sluice/packed.py"),
    ),
    (
        "state.py",
        include_str!("../../../../guest-sdk/python/sluice/state.py"),
    ),
];
const JS_SDK: &str = include_str!("../../../../guest-sdk/js/sluice.js");

/// The cache folder of the guest toolchains (`$SLUICE_CACHE_DIR`, else `~/.cache/sluice`).
fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("SLUICE_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/sluice")))
}

/// A tool: `$<env>` if given and set, else one of `candidates` that exists, else `name`
/// on the PATH; the error says how to `install` it.
fn find_tool(
    name: &str,
    env: Option<&str>,
    candidates: &[PathBuf],
    install: &str,
) -> Result<PathBuf, String> {
    if let Some(p) = env.and_then(std::env::var_os) {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = candidates.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| format!("{name} is not installed: {install}"))
}

/// componentize-py: `$SLUICE_COMPONENTIZE_PY`, the venv `.ci/run` makes, or the PATH.
pub fn componentize_py() -> Result<PathBuf, String> {
    let venv: Vec<PathBuf> = cache_dir()
        .map(|c| c.join("venv/bin/componentize-py"))
        .into_iter()
        .collect();
    find_tool(
        "componentize-py",
        Some("SLUICE_COMPONENTIZE_PY"),
        &venv,
        "python3 -m venv ~/.cache/sluice/venv && ~/.cache/sluice/venv/bin/pip install componentize-py==0.25.0",
    )
}

/// A JavaScript tool (`esbuild`, `componentize-js`): in `$SLUICE_NODE_TOOLS`, the npm
/// folder `.ci/run` fills, or the PATH.
pub fn node_tool(name: &str) -> Result<PathBuf, String> {
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("SLUICE_NODE_TOOLS") {
        candidates.push(Path::new(&d).join(name));
    }
    if let Some(c) = cache_dir() {
        candidates.push(c.join("node/node_modules/.bin").join(name));
    }
    find_tool(
        name,
        None,
        &candidates,
        "npm install --prefix ~/.cache/sluice/node @bytecodealliance/componentize-js@0.23 esbuild@0.25",
    )
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes the WIT package and the SDKs into `dir` (a fresh temporary folder).
fn write_support(dir: &Path) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir.join("wit")).map_err(io)?;
    std::fs::write(dir.join("wit/operator.wit"), WIT).map_err(io)?;
    std::fs::create_dir_all(dir.join("python/sluice")).map_err(io)?;
    for (name, text) in PYTHON_SDK {
        std::fs::write(dir.join("python/sluice").join(name), text).map_err(io)?;
    }
    std::fs::write(dir.join("sluice.js"), JS_SDK).map_err(io)
}

/// Builds the operator in `dir` (of `lang`, detected when `None`) into the component
/// `out` (default: `<dir>/<folder name>.wasm`; Rust: where cargo puts it). Returns the
/// component's path. Errors say which tool is missing and how to install it, or show the
/// tool's output.
pub fn build(dir: &Path, lang: Option<Lang>, out: Option<&Path>) -> Result<PathBuf, String> {
    let lang = match lang {
        Some(l) => l,
        None => Lang::detect(dir)?,
    };
    let name = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "operator".into());
    let default_out = dir.join(format!("{name}.wasm"));
    let support = tempfile::tempdir().map_err(|e| format!("a temporary folder: {e}"))?;
    write_support(support.path())?;
    match lang {
        Lang::Rust => {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let stdout = run(
                Command::new(cargo)
                    .args(["build", "--release", "--target", "wasm32-wasip2"])
                    .args([
                        "--message-format",
                        "json-render-diagnostics",
                        "--manifest-path",
                    ])
                    .arg(dir.join("Cargo.toml")),
                "cargo build --target wasm32-wasip2 (rustup target add wasm32-wasip2 if the target is missing)",
            )?;
            let built = stdout
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|m| m["reason"] == "compiler-artifact")
                .flat_map(|m| {
                    m["filenames"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|f| f.as_str().map(PathBuf::from))
                })
                .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
                .ok_or("cargo built no .wasm (is the crate a cdylib?)")?;
            match out {
                Some(o) => {
                    std::fs::copy(&built, o).map_err(|e| format!("{}: {e}", o.display()))?;
                    Ok(o.to_path_buf())
                }
                None => Ok(built),
            }
        }
        Lang::Python => {
            let out = out.unwrap_or(&default_out);
            run(
                Command::new(componentize_py()?)
                    .arg("-d")
                    .arg(support.path().join("wit"))
                    .args(["-w", "operator-world", "componentize", "app", "-p"])
                    .arg(dir)
                    .arg("-p")
                    .arg(support.path().join("python"))
                    .arg("-o")
                    .arg(out),
                "componentize-py",
            )?;
            Ok(out.to_path_buf())
        }
        Lang::JavaScript => {
            let out = out.unwrap_or(&default_out);
            let source = ["app.ts", "app.js"]
                .iter()
                .map(|f| dir.join(f))
                .find(|p| p.is_file())
                .ok_or_else(|| format!("{}: no app.ts or app.js", dir.display()))?;
            let bundle = support.path().join("bundle.js");
            run(
                Command::new(node_tool("esbuild")?)
                    .arg(&source)
                    .args(["--bundle", "--format=esm", "--log-level=warning"])
                    // The WIT imports (keyed state, timers, headers) are the component's.
                    .arg("--external:sluice:*")
                    .arg(format!(
                        "--alias:sluice={}",
                        support.path().join("sluice.js").display()
                    ))
                    .arg(format!("--outfile={}", bundle.display())),
                "esbuild",
            )?;
            run(
                Command::new(node_tool("componentize-js")?)
                    .arg(&bundle)
                    .arg("-w")
                    .arg(support.path().join("wit"))
                    .args(["-n", "operator-world", "-d", "http", "fetch-event", "-o"])
                    .arg(out),
                "componentize-js",
            )?;
            Ok(out.to_path_buf())
        }
        Lang::C => {
            let out = out.unwrap_or(&default_out);
            c::build(dir, support.path(), out)?;
            Ok(out.to_path_buf())
        }
    }
}
