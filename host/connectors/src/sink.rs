//! JSON-lines sinks: to a file (one per subtask) or to stdout.
//!
//! `write: event` (the default) writes one object per event,
//! `{"timestamp":<ms>,"time":"<RFC 3339 UTC, ms>","key":<string, or array of byte
//! values if not UTF-8>,"value":<the value rendered by ValueFormat::render_json>}`;
//! `write: value` writes only the rendered value.

use crate::file_tx::{TxFile, TxState};
use crate::{ConnectorError, parse_options};
use serde::Deserialize;
use sluice_core::batch::Batch;
use sluice_core::connector::{Sink, SinkFactory};
use sluice_core::format::ValueFormat;
use sluice_core::format::{write_i64 as push_i64, write_json_key};
use sluice_core::time::write_rfc3339_ms;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Output buffer size of the sinks.
const BUFFER: usize = 1 << 20;

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum WriteOpt {
    #[default]
    Event,
    Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOptions {
    path: String,
    #[serde(default)]
    write: WriteOpt,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StdoutOptions {
    #[serde(default)]
    write: WriteOpt,
}

/// Renders events as JSON lines into a reused buffer.
struct Renderer {
    write: WriteOpt,
    format: ValueFormat,
    line: String,
}

impl Renderer {
    fn new(write: WriteOpt, format: &ValueFormat) -> Renderer {
        Renderer {
            write,
            format: format.clone(),
            line: String::new(),
        }
    }

    fn render(&mut self, timestamp: i64, key: &[u8], value: &[u8]) -> &[u8] {
        let out = &mut self.line;
        out.clear();
        if self.write == WriteOpt::Event {
            out.push_str("{\"timestamp\":");
            push_i64(out, timestamp);
            out.push_str(",\"time\":\"");
            write_rfc3339_ms(out, timestamp);
            out.push_str("\",\"key\":");
            write_json_key(out, key);
            out.push_str(",\"value\":");
            self.format.render_json(value, out);
            out.push('}');
        } else {
            self.format.render_json(value, out);
        }
        out.push('\n');
        out.as_bytes()
    }
}

/// The factory of a JSON-lines file sink.
pub(crate) struct JsonlSinkFactory {
    path: PathBuf,
    write: WriteOpt,
    created: Mutex<Vec<PathBuf>>,
}

impl JsonlSinkFactory {
    pub(crate) fn new(
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Self, ConnectorError> {
        let o: FileOptions = parse_options(options, field)?;
        if o.path.is_empty() {
            return Err(ConnectorError(format!("{field}.path: empty path")));
        }
        Ok(JsonlSinkFactory {
            path: spec_dir.join(o.path),
            write: o.write,
            created: Mutex::new(Vec::new()),
        })
    }

    /// The file of `subtask`: the path itself for one subtask, else `<stem>-<subtask>.<ext>`.
    fn subtask_path(&self, subtask: usize, parallelism: usize) -> PathBuf {
        if parallelism <= 1 {
            return self.path.clone();
        }
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match self.path.extension() {
            Some(ext) => format!("{stem}-{subtask}.{}", ext.to_string_lossy()),
            None => format!("{stem}-{subtask}"),
        };
        self.path.with_file_name(name)
    }
}

impl SinkFactory for JsonlSinkFactory {
    fn create_sink(
        &self,
        subtask: usize,
        parallelism: usize,
        format: &ValueFormat,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        let path = self.subtask_path(subtask, parallelism);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                ConnectorError(format!(
                    "{}: cannot create the directory: {e}",
                    dir.display()
                ))
            })?;
        }
        {
            let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
            if !created.contains(&path) {
                created.push(path.clone());
                created.sort();
            }
        }
        Ok(Box::new(JsonlFileSink {
            out: Output::Unopened,
            path,
            renderer: Renderer::new(self.write, format),
        }))
    }

    fn describe(&self) -> String {
        let created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        if created.is_empty() {
            self.path.display().to_string()
        } else {
            created
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

struct JsonlFileSink {
    out: Output,
    path: PathBuf,
    renderer: Renderer,
}

/// Where a file sink writes.
enum Output {
    /// Nothing written yet: the file is created (truncated) at the first write, unless
    /// the job checkpoints and the sink becomes transactional first.
    Unopened,
    /// Straight to the file (the job does not checkpoint).
    Direct(BufWriter<File>),
    /// Through two-phase commit (the job checkpoints): see [`crate::file_tx`].
    Transactional(TxFile),
}

impl Output {
    fn write(&mut self, path: &Path, line: &[u8]) -> Result<(), ConnectorError> {
        if let Output::Unopened = self {
            let f = File::create(path)
                .map_err(|e| ConnectorError(format!("{}: cannot create: {e}", path.display())))?;
            *self = Output::Direct(BufWriter::with_capacity(BUFFER, f));
        }
        match self {
            Output::Direct(out) => out
                .write_all(line)
                .map_err(|err| ConnectorError(format!("{}: write failed: {err}", path.display()))),
            Output::Transactional(tx) => tx.write(line),
            Output::Unopened => unreachable!("opened above"),
        }
    }
}

impl Sink for JsonlFileSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), ConnectorError> {
        for e in batch.iter() {
            let line = self.renderer.render(e.timestamp, e.key, e.value);
            self.out.write(&self.path, line)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ConnectorError> {
        match &mut self.out {
            Output::Unopened => File::create(&self.path).map(|_| ()).map_err(|e| {
                ConnectorError(format!("{}: cannot create: {e}", self.path.display()))
            }),
            Output::Direct(out) => out
                .flush()
                .map_err(|e| ConnectorError(format!("{}: flush failed: {e}", self.path.display()))),
            Output::Transactional(tx) => tx.finish(),
        }
    }

    fn begin_transactions(&mut self, restored: &[Vec<u8>]) -> Result<bool, ConnectorError> {
        let mut own = 0;
        for bytes in restored {
            let state: TxState = serde_json::from_slice(bytes).map_err(|e| {
                ConnectorError(format!(
                    "{}: the checkpointed sink state is corrupted: {e}",
                    self.path.display()
                ))
            })?;
            let len = crate::file_tx::recover(&state)?;
            if state.path == self.path {
                own = len;
            }
        }
        self.out = Output::Transactional(TxFile::open(&self.path, own)?);
        Ok(true)
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Vec<u8>, ConnectorError> {
        match &mut self.out {
            Output::Transactional(tx) => {
                let state = tx.pre_commit(checkpoint)?;
                Ok(serde_json::to_vec(&state).expect("state serializes"))
            }
            _ => Ok(Vec::new()),
        }
    }

    fn commit(&mut self, checkpoint: u64) -> Result<(), ConnectorError> {
        match &mut self.out {
            Output::Transactional(tx) => tx.commit(checkpoint),
            _ => Ok(()),
        }
    }
}

/// The factory of the stdout sink.
pub(crate) struct StdoutSinkFactory {
    write: WriteOpt,
}

impl StdoutSinkFactory {
    pub(crate) fn new(options: &serde_json::Value, field: &str) -> Result<Self, ConnectorError> {
        let o: StdoutOptions = if options.is_null() {
            StdoutOptions {
                write: WriteOpt::Event,
            }
        } else {
            parse_options(options, field)?
        };
        Ok(StdoutSinkFactory { write: o.write })
    }
}

impl SinkFactory for StdoutSinkFactory {
    fn create_sink(
        &self,
        _subtask: usize,
        _parallelism: usize,
        format: &ValueFormat,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        Ok(Box::new(StdoutSink {
            out: BufWriter::with_capacity(BUFFER, std::io::stdout()),
            renderer: Renderer::new(self.write, format),
        }))
    }

    fn describe(&self) -> String {
        "stdout".into()
    }
}

/// Writes whole lines into a large buffer; the buffer goes to stdout (under its lock,
/// in one write) when full and at the end, so subtasks never interleave within a line.
struct StdoutSink {
    out: BufWriter<std::io::Stdout>,
    renderer: Renderer,
}

impl Sink for StdoutSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), ConnectorError> {
        for e in batch.iter() {
            let line = self.renderer.render(e.timestamp, e.key, e.value);
            self.out
                .write_all(line)
                .map_err(|err| ConnectorError(format!("stdout: write failed: {err}")))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ConnectorError> {
        self.out
            .flush()
            .map_err(|e| ConnectorError(format!("stdout: flush failed: {e}")))
    }
}
