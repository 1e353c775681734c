//! Two-phase commit for a file that only grows (Flink's `FileSink` in-progress → pending
//! → finished, adapted to one growing file per subtask, so that readers can tail it):
//!
//! - events are written to a hidden staging file `.<name>.inprogress` next to the file;
//! - at a checkpoint barrier (pre-commit) the staging file is synced and renamed to
//!   `.<name>.pending-<checkpoint>`;
//! - when the checkpoint completes (commit), pending files are appended to the file in
//!   checkpoint order, synced, and deleted.
//!
//! So the file holds only output of completed checkpoints: a reader never sees output
//! that a recovery will produce again. The checkpointed state is the file's committed
//! length and the pending files; a restore re-applies pending files that were not yet
//! appended (a crash between a checkpoint's completion and its commit), truncates the
//! file to the restored length (dropping anything a later, unrestored checkpoint
//! committed, when a corrupted checkpoint forced a fallback), and deletes the staging
//! and pending files of the failed attempt.

use sluice_core::ConnectorError;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The checkpointed state of one transactional file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TxState {
    /// The file (as the sink was configured: absolute, or relative to the spec).
    pub path: PathBuf,
    /// Its length once everything committed before the snapshot is in.
    pub committed_len: u64,
    /// Pre-committed, not yet known to be committed: `(checkpoint, bytes)`, in order.
    pub pending: Vec<(u64, u64)>,
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError(format!("{}: {what}: {e}", path.display()))
}

fn hidden(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}"))
}

fn pending_path(path: &Path, checkpoint: u64) -> PathBuf {
    hidden(path, &format!("pending-{checkpoint}"))
}

/// Deletes the staging and pending files of `path` not listed in `keep`.
fn delete_strays(path: &Path, keep: &[u64]) -> Result<(), ConnectorError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(dir, "cannot list", e)),
    };
    for e in entries.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = f.strip_prefix(&prefix) else {
            continue;
        };
        let stray = match rest.strip_prefix("pending-") {
            Some(id) => id.parse::<u64>().map_or(true, |id| !keep.contains(&id)),
            None => rest == "inprogress",
        };
        if stray {
            std::fs::remove_file(e.path()).map_err(|x| err(&e.path(), "cannot delete", x))?;
        }
    }
    Ok(())
}

/// Appends the files `from` to `to` in order, syncs `to` once, then deletes them.
fn append(from: &[PathBuf], to: &Path) -> Result<(), ConnectorError> {
    let mut dst = OpenOptions::new()
        .append(true)
        .create(true)
        .open(to)
        .map_err(|e| err(to, "cannot open", e))?;
    for f in from {
        let mut src = File::open(f).map_err(|e| err(f, "cannot open", e))?;
        std::io::copy(&mut src, &mut dst)
            .map_err(|e| err(to, &format!("appending {} failed", f.display()), e))?;
    }
    dst.sync_all().map_err(|e| err(to, "sync failed", e))?;
    for f in from {
        std::fs::remove_file(f).map_err(|e| err(f, "cannot delete", e))?;
    }
    Ok(())
}

fn truncate(path: &Path, len: u64) -> Result<(), ConnectorError> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| err(path, "cannot open", e))?;
    f.set_len(len)
        .map_err(|e| err(path, "cannot truncate", e))?;
    f.sync_all().map_err(|e| err(path, "sync failed", e))
}

/// Brings the file of `state` to what its checkpoint committed (see the module docs).
pub(crate) fn recover(state: &TxState) -> Result<u64, ConnectorError> {
    let path = &state.path;
    let mut len = state.committed_len;
    for &(checkpoint, size) in &state.pending {
        let p = pending_path(path, checkpoint);
        if p.exists() {
            truncate(path, len)?;
            append(&[p], path)?;
        } else {
            let have = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if have < len + size {
                return Err(ConnectorError(format!(
                    "{}: the output of checkpoint {checkpoint} is neither pending ({} is missing) nor in the file ({have} bytes, expected at least {}): was the file changed?",
                    path.display(),
                    p.display(),
                    len + size
                )));
            }
        }
        len += size;
    }
    truncate(path, len)?;
    delete_strays(path, &[])?;
    Ok(len)
}

/// One subtask's transactional file.
pub(crate) struct TxFile {
    path: PathBuf,
    staging_path: PathBuf,
    staging: BufWriter<File>,
    staged: u64,
    committed_len: u64,
    pending: Vec<(u64, u64)>,
}

impl TxFile {
    /// Starts writing `path` transactionally, its committed length being `committed_len`
    /// (after [`recover`], or 0 for a fresh file, which this truncates).
    pub fn open(path: &Path, committed_len: u64) -> Result<TxFile, ConnectorError> {
        if committed_len == 0 {
            truncate(path, 0)?;
        }
        delete_strays(path, &[])?;
        let staging_path = hidden(path, "inprogress");
        let staging =
            File::create(&staging_path).map_err(|e| err(&staging_path, "cannot create", e))?;
        Ok(TxFile {
            path: path.to_path_buf(),
            staging_path,
            staging: BufWriter::with_capacity(1 << 20, staging),
            staged: 0,
            committed_len,
            pending: Vec::new(),
        })
    }

    /// Writes to the staging file.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ConnectorError> {
        self.staged += bytes.len() as u64;
        self.staging
            .write_all(bytes)
            .map_err(|e| err(&self.staging_path, "write failed", e))
    }

    /// Seals what was written since the last pre-commit as checkpoint `checkpoint`'s
    /// (nothing to sync or rename when nothing was written).
    pub fn pre_commit(&mut self, checkpoint: u64) -> Result<TxState, ConnectorError> {
        if self.staged > 0 {
            self.staging
                .flush()
                .and_then(|_| self.staging.get_ref().sync_all())
                .map_err(|e| err(&self.staging_path, "sync failed", e))?;
            let p = pending_path(&self.path, checkpoint);
            std::fs::rename(&self.staging_path, &p).map_err(|e| err(&p, "cannot rename", e))?;
            self.pending.push((checkpoint, self.staged));
            let f = File::create(&self.staging_path)
                .map_err(|e| err(&self.staging_path, "cannot create", e))?;
            self.staging = BufWriter::with_capacity(1 << 20, f);
            self.staged = 0;
        }
        Ok(TxState {
            path: self.path.clone(),
            committed_len: self.committed_len,
            pending: self.pending.clone(),
        })
    }

    /// Appends the pending output of checkpoints up to `checkpoint` to the file (one
    /// sync for all of them).
    pub fn commit(&mut self, checkpoint: u64) -> Result<(), ConnectorError> {
        let due = self.pending.partition_point(|&(c, _)| c <= checkpoint);
        if due > 0 {
            append(&self.pending_files(due), &self.path)?;
            self.committed_len += self.pending.drain(..due).map(|(_, size)| size).sum::<u64>();
        }
        Ok(())
    }

    /// Commits everything (the end of the input) and removes the staging file. The staged
    /// tail goes straight into the file after the pending output, synced once with it: no
    /// checkpoint claims it, so a crash before this returns is recovered from the last
    /// checkpoint like any other.
    pub fn finish(&mut self) -> Result<(), ConnectorError> {
        self.staging
            .flush()
            .map_err(|e| err(&self.staging_path, "flush failed", e))?;
        let mut files = self.pending_files(self.pending.len());
        files.push(self.staging_path.clone());
        append(&files, &self.path)?;
        self.committed_len += self.pending.drain(..).map(|(_, size)| size).sum::<u64>();
        self.committed_len += self.staged;
        self.staged = 0;
        Ok(())
    }

    /// The files of the first `n` pending checkpoints.
    fn pending_files(&self, n: usize) -> Vec<PathBuf> {
        self.pending[..n]
            .iter()
            .map(|&(c, _)| pending_path(&self.path, c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn only_committed_output_is_visible_and_recovery_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        let mut f = TxFile::open(&out, 0).unwrap();
        f.write(b"a\n").unwrap();
        let s1 = f.pre_commit(1).unwrap();
        f.write(b"b\n").unwrap();
        assert_eq!(read(&out), "", "nothing visible before a commit");
        f.commit(1).unwrap();
        assert_eq!(read(&out), "a\n");
        let s2 = f.pre_commit(2).unwrap();
        f.write(b"c\n").unwrap();
        let s3 = f.pre_commit(3).unwrap();
        f.commit(2).unwrap();
        f.write(b"lost\n").unwrap();
        assert_eq!(read(&out), "a\nb\n");
        // Crash now. Restoring checkpoint 3 (complete, not committed) commits "c".
        drop(f);
        assert_eq!(recover(&s3).unwrap(), 6);
        assert_eq!(read(&out), "a\nb\nc\n");
        assert!(
            !hidden(&out, "inprogress").exists(),
            "the staging file is gone"
        );
        // Recovery is idempotent.
        assert_eq!(recover(&s3).unwrap(), 6);
        assert_eq!(read(&out), "a\nb\nc\n");
        // Falling back to checkpoint 2 (say 3 was corrupted) drops what 3 committed.
        assert_eq!(recover(&s2).unwrap(), 4);
        assert_eq!(read(&out), "a\nb\n");
        assert_eq!(s1.pending, vec![(1, 2)]);
        let mut f = TxFile::open(&out, 4).unwrap();
        f.write(b"d\n").unwrap();
        f.pre_commit(4).unwrap();
        f.write(b"e\n").unwrap();
        let s5 = f.pre_commit(5).unwrap();
        assert_eq!(s5.pending, vec![(4, 2), (5, 2)]);
        // Nothing written since: nothing to seal.
        assert_eq!(f.pre_commit(6).unwrap(), s5);
        assert!(!pending_path(&out, 6).exists());
        f.write(b"f\n").unwrap();
        // One commit appends both pending checkpoints, in order.
        f.commit(6).unwrap();
        assert_eq!(read(&out), "a\nb\nd\ne\n");
        f.write(b"g\n").unwrap();
        assert_eq!(f.pre_commit(7).unwrap().pending, vec![(7, 4)]);
        f.write(b"h\n").unwrap();
        // The end: the pending checkpoint, then the staged tail.
        f.finish().unwrap();
        assert_eq!(read(&out), "a\nb\nd\ne\nf\ng\nh\n");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(leftovers, ["out.jsonl"]);
    }

    #[test]
    fn a_changed_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.jsonl");
        let mut f = TxFile::open(&out, 0).unwrap();
        f.write(b"xyz\n").unwrap();
        let s = f.pre_commit(7).unwrap();
        f.commit(7).unwrap();
        std::fs::write(&out, "").unwrap();
        let e = recover(&s).unwrap_err();
        assert!(
            e.0.contains("checkpoint 7") && e.0.contains("o.jsonl"),
            "{e}"
        );
    }
}
