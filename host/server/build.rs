//! Builds the dashboard (`web-ui/`, with npm and Vite) into `$OUT_DIR/web-ui` and writes
//! `$OUT_DIR/assets.rs`, the list of its files embedded with `include_bytes!`, so that
//! the `sluice` binary serves the dashboard without Node.js at run time.
//!
//! - `npm ci` runs when `web-ui/node_modules` is missing or older than the lock file.
//! - `SLUICE_WEB_UI_DIST=<dir>` embeds an already built dashboard instead of building.
//! - `SLUICE_WEB_UI=skip` embeds a one-page placeholder (for a machine without npm);
//!   otherwise a failing npm is a build error that says what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let web_ui = manifest.join("../../web-ui");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for p in [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
    ] {
        println!("cargo:rerun-if-changed={}", web_ui.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=SLUICE_WEB_UI_DIST");
    println!("cargo:rerun-if-env-changed=SLUICE_WEB_UI");

    let dist = if let Ok(d) = std::env::var("SLUICE_WEB_UI_DIST") {
        PathBuf::from(d)
    } else if std::env::var("SLUICE_WEB_UI").as_deref() == Ok("skip") {
        println!("cargo:warning=SLUICE_WEB_UI=skip: the dashboard is not built in");
        let d = out.join("web-ui-placeholder");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("index.html"), PLACEHOLDER).unwrap();
        d
    } else {
        let d = out.join("web-ui");
        if let Err(e) = build(&web_ui, &d) {
            panic!(
                "building the dashboard (web-ui/) failed: {e}\n\
                 It needs Node.js 20+ and npm (Debian: apt-get install nodejs npm), and the npm \
                 registry. To build without it, set SLUICE_WEB_UI=skip (a placeholder page), or \
                 SLUICE_WEB_UI_DIST=<a built web-ui/dist>."
            );
        }
        d
    };
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    assert!(
        files.iter().any(|(p, _)| p == "/index.html"),
        "the dashboard in {} has no index.html",
        dist.display()
    );
    let mut code = String::from("&[\n");
    for (path, file) in &files {
        code.push_str(&format!(
            "    ({path:?}, {:?}, include_bytes!({:?})),\n",
            media_type(path),
            file.display().to_string()
        ));
    }
    code.push(']');
    std::fs::write(out.join("assets.rs"), code).unwrap();
}

/// `npm ci` when needed, then `vite build` into `dist`.
fn build(web_ui: &Path, dist: &Path) -> Result<(), String> {
    let lock = web_ui.join("package-lock.json");
    let installed = web_ui.join("node_modules/.package-lock.json");
    let stale = match (modified(&lock), modified(&installed)) {
        (Some(l), Some(i)) => l > i,
        _ => true,
    };
    if stale {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(web_ui),
            "npm ci",
        )?;
    }
    run(
        Command::new("npm")
            .args(["run", "--silent", "build"])
            .env("SLUICE_WEB_UI_OUT", dist)
            .current_dir(web_ui),
        "npm run build",
    )
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} exited with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy();
            files.push((format!("/{}", rel.replace('\\', "/")), path.clone()));
        }
    }
}

fn media_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice</title></head>
<body>
<main>
<h1>Sluice</h1>
<p>The server is running. This binary was built without its dashboard (SLUICE_WEB_UI=skip).</p>
<ul>
<li>REST API: <code>/v1</code>, described by <a href="v1/openapi.json"><code>/v1/openapi.json</code></a> (OpenAPI 3.1)</li>
<li>Prometheus figures: <code>/metrics</code></li>
<li>Health: <a href="healthz"><code>/healthz</code></a></li>
</ul>
</main>
</body>
</html>
"#;
