//! The control socket of a running `sluice run`: a Unix socket through which `sluice
//! savepoint` and `sluice stop` ask the running job for a savepoint. One request per
//! connection, one line each way:
//!
//! ```text
//! -> savepoint            (or: stop)
//! <- ok <savepoint folder in the checkpoint storage>
//! <- error <message>
//! ```
//!
//! The socket is `$XDG_RUNTIME_DIR/sluice/<job>.sock`, or `/tmp/sluice-<uid>/<job>.sock`,
//! named after the job, so that one spec finds its running job.

use sluice_core::checkpoint::job_folder;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

/// The socket path of job `name`.
pub fn socket_path(name: &str) -> PathBuf {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("sluice"),
        None => std::env::temp_dir().join(format!("sluice-{}", unsafe { libc::getuid() })),
    };
    dir.join(format!("{}.sock", job_folder(name)))
}

/// The control socket of job `name`, bound: only one `sluice run` of a job at a time on
/// this machine (two would share its checkpoints and output files). Claim it before
/// starting the job.
///
/// Errors: another `sluice run` of the same job is running (its socket answers).
pub fn claim(name: &str) -> Result<(UnixListener, PathBuf), String> {
    let path = socket_path(name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    if UnixStream::connect(&path).is_ok() {
        return Err(format!(
            "job '{name}' is already running on this machine (its control socket {} answers); stop it first (sluice stop SPEC)",
            path.display()
        ));
    }
    // A socket file nobody answers is left by a process that was killed.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((listener, path))
}

/// Serves savepoint requests on `listener` (from [`claim`]) on a thread, calling
/// `savepoint(stop)` for each.
pub fn serve(
    listener: UnixListener,
    savepoint: impl Fn(bool) -> Result<String, String> + Send + 'static,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut line = String::new();
                let mut reader = BufReader::new(&conn);
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let reply = match line.trim() {
                    "savepoint" => savepoint(false),
                    "stop" => savepoint(true),
                    other => Err(format!("unknown request '{other}'")),
                };
                let text = match reply {
                    Ok(folder) => format!("ok {folder}\n"),
                    Err(e) => format!("error {}\n", e.replace('\n', " ")),
                };
                let _ = (&conn).write_all(text.as_bytes());
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the control thread: {e}"))
}

/// Asks the running job `name` for a savepoint (and to stop after it, with `stop`).
/// Returns the savepoint's folder.
pub fn request(name: &str, stop: bool, timeout: Duration) -> Result<String, String> {
    let path = socket_path(name);
    let conn = UnixStream::connect(&path).map_err(|e| {
        format!(
            "job '{name}' does not seem to be running here (no control socket at {}: {e})",
            path.display()
        )
    })?;
    conn.set_read_timeout(Some(timeout)).ok();
    (&conn)
        .write_all(if stop { b"stop\n" } else { b"savepoint\n" })
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut line = String::new();
    BufReader::new(&conn)
        .read_line(&mut line)
        .map_err(|e| format!("waiting for the savepoint: {e}"))?;
    match line.trim_end().split_once(' ') {
        Some(("ok", folder)) => Ok(folder.to_string()),
        Some(("error", msg)) => Err(msg.to_string()),
        _ => Err(format!("unexpected reply from the job: {line:?}")),
    }
}
