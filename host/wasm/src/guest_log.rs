//! A job's log of what its operators' guests print and log: a file, appended to by every
//! subtask of every operator of the job, each line tagged with the time, the operator
//! and subtask, and the stream (`stdout`, `stderr`) or log level. Capped: past
//! `max_bytes` one line says so and later lines are dropped (the rate limit per
//! operator, [`Limits::max_log_lines_per_second`](crate::Limits::max_log_lines_per_second),
//! applies before).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A job's guest log.
pub struct GuestLog {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<(std::fs::File, u64)>,
}

impl std::fmt::Debug for GuestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestLog")
            .field("path", &self.path)
            .finish()
    }
}

impl GuestLog {
    /// Opens (creating, or appending to) the log at `path`, capped at `max_bytes`.
    ///
    /// Errors: the file cannot be opened.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<GuestLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok(GuestLog {
            path: path.to_path_buf(),
            max_bytes,
            file: Mutex::new((file, len)),
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `text` from `operator` (its identity, as `operator 'x' (subtask 1/2)`)
    /// on `stream` (or log level).
    pub fn line(&self, operator: &str, stream: &str, text: &str) {
        let mut g = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let (file, len) = &mut *g;
        if *len >= self.max_bytes {
            return;
        }
        let now = sluice_core::time::format_time(sluice_core::time::now_ms());
        let mut line = format!("{now} {operator} {stream}: {text}\n");
        if *len + line.len() as u64 > self.max_bytes {
            line = format!(
                "{now} the log reached its cap of {} bytes: later lines are dropped\n",
                self.max_bytes
            );
        }
        if file.write_all(line.as_bytes()).is_ok() {
            *len += line.len() as u64;
            if line.contains("reached its cap") {
                *len = self.max_bytes;
            }
        }
    }
}
