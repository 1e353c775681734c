//! Sluice's sources and sinks: Parquet, CSV and JSON-lines file sources, a JSON-lines
//! file sink and a stdout sink.
//!
//! The job spec gives each connector a section of options (a JSON object, parsed here
//! with unknown fields rejected), the directory of the spec file (relative paths resolve
//! against it) and the section's field path (`sources[0]`), which every option error
//! names (`sources[0].event_time: column 'dat' not found; columns are: date, delay`).
//! Data errors name the file, the row or line and what was wrong.
//!
//! Entry points: [`source_factory`] and [`sink_factory`]; [`resolve_dataset`] turns a
//! `path` option (a local path or an `npm:<package>@<version>/<path>` dataset) into a
//! local file, cached under [`cache_dir`].
//!
//! # Sources
//!
//! Every source takes `path` (a file, relative to the spec's directory, or
//! `npm:<package>@<version>/<path inside the package>`) and `sha256` (hex; optional for
//! local files, where it is checked before reading; required for `npm:` datasets).
//!
//! **`parquet`**: one event per row, with an empty key.
//! * `event_time` (required): a column: a timestamp of any unit (naive timestamps are
//!   UTC), an `Int64` of epoch ms, or a date; converted to ms.
//! * `columns`: the value's fields, in order (default: every column of the file).
//! * `value_format`: `packed` (default; a [`sluice_packed`] record: Int8/16/32 → `i32`;
//!   Int64, UInt*, timestamps, dates → `i64` (times in ms); floats → `f64`; Boolean →
//!   `bool`; strings → `str`; binary → `bytes`; a null is an error) or `json` (an
//!   object; nulls are `null`; binary is a string if UTF-8, else an array of bytes).
//! * `order_by`: an arithmetic expression over numeric and timestamp columns (times in
//!   ms) with integer literals, `+ - * /` and parentheses (`date + delay * 60000`);
//!   rows are emitted sorted by its value, ties in row order. Integer columns evaluate
//!   with checked `i64` arithmetic (`/` truncates), any float column makes it `f64`.
//!   This loads the selected columns of the whole file into memory (3 million rows of
//!   a few columns take some 100 MB) and makes the source's max parallelism 1; without
//!   it, subtask `i` of `P` reads row groups `i, i + P, ...` as they stream.
//!
//! **`csv`**: one event per record, with an empty key; parallelism 1.
//! * `has_header` (default `true`), `delimiter` (one byte, default `,`; `tab` or `\t`
//!   for a tab).
//! * `event_time: {column, format}`: `column` is a header name or a 0-based index;
//!   `format` is `epoch_ms`, `epoch_s` (integer or decimal), `rfc3339`, or a chrono
//!   strftime pattern such as `%Y-%m-%d %H:%M`, read as UTC unless it has `%z`.
//! * `value_format`: `text` (default: the record's fields joined by the delimiter,
//!   UTF-8 text) or `packed` with `schema: [{name, type}]`, one entry per CSV column,
//!   types as [`sluice_packed::FieldType::parse`] names them.
//!
//! **`jsonl`**: one event per non-blank line, the value the line itself (JSON);
//! parallelism 1.
//! * `event_time: {field, format}`: a top-level member; `format` is `epoch_ms`,
//!   `epoch_s` or `rfc3339`.
//! * `key`: a top-level member whose value is the event key (a string as its UTF-8
//!   bytes, an integer in decimal, another number as the shortest decimal that reads
//!   back); default: an empty key.
//!
//! # Sinks
//!
//! Both render each event as one JSON line. `write: event` (default) writes
//! `{"timestamp":<ms>,"time":"<RFC 3339 UTC, ms>","key":<string, or array of bytes if
//! not UTF-8>,"value":<the value as ValueFormat::render_json renders it>}`;
//! `write: value` writes only the rendered value.
//!
//! **`jsonl`**: `path` (relative to the spec's directory; parent directories are
//! created; an existing file is truncated). With parallelism > 1, subtask `i` writes
//! `<stem>-<i>.<ext>` next to it.
//!
//! **`stdout`**: no other options; whole lines are written through a 1 MiB buffer.

#![warn(missing_docs)]

use serde::de::DeserializeOwned;
use sluice_core::connector::{SinkFactory, SourceFactory};
use std::path::Path;
use std::sync::Arc;

pub use sluice_core::connector::ConnectorError;

mod csv_source;
mod dataset;
mod expr;
mod file_tx;
mod jsonl_source;
mod parquet_source;
mod sink;
mod time;

pub use dataset::{cache_dir, resolve_dataset};

/// The source connectors [`source_factory`] knows.
pub const SOURCE_CONNECTORS: &[&str] = &["parquet", "csv", "jsonl"];
/// The sink connectors [`sink_factory`] knows.
pub const SINK_CONNECTORS: &[&str] = &["jsonl", "stdout"];

/// Builds the factory of a source vertex.
///
/// * `connector`: `parquet`, `csv` or `jsonl`.
/// * `options`: the connector's section of the job spec (a JSON object); the options
///   of each connector are listed in the [crate docs](crate).
/// * `spec_dir`: directory of the job spec; relative `path`s resolve against it.
/// * `field`: the section's field path in the spec (`sources[0]`), prefixed to errors.
///
/// The input file is opened (and, for an `npm:` dataset, fetched) here, so option
/// errors that depend on the data (a column that does not exist, a hash mismatch) are
/// reported before the job starts.
///
/// Options per connector:
/// * `parquet`: `path`, `sha256`, `columns`, `event_time` (column), `order_by`
///   (expression), `value_format` (`packed` | `json`).
/// * `csv`: `path`, `sha256`, `has_header`, `delimiter`, `event_time: {column, format}`,
///   `value_format` (`text` | `packed`), `schema: [{name, type}]`.
/// * `jsonl`: `path`, `sha256`, `event_time: {field, format}`, `key`.
///
/// Errors: unknown connector (listing the known ones), bad options (naming the field
/// path), unreadable input.
pub fn source_factory(
    connector: &str,
    options: &serde_json::Value,
    spec_dir: &Path,
    field: &str,
) -> Result<Arc<dyn SourceFactory>, ConnectorError> {
    match connector {
        "parquet" => Ok(Arc::new(parquet_source::ParquetSourceFactory::new(
            options, spec_dir, field,
        )?)),
        "csv" => Ok(Arc::new(csv_source::CsvSourceFactory::new(
            options, spec_dir, field,
        )?)),
        "jsonl" => Ok(Arc::new(jsonl_source::JsonlSourceFactory::new(
            options, spec_dir, field,
        )?)),
        other => Err(ConnectorError(format!(
            "{field}: unknown source connector '{other}'; known source connectors are: {}",
            SOURCE_CONNECTORS.join(", ")
        ))),
    }
}

/// Builds the factory of a sink vertex.
///
/// * `connector`: `jsonl` (a file) or `stdout`.
/// * `options`: the connector's section of the job spec. `jsonl`: `path`, `write`
///   (`event` | `value`); `stdout`: `write`.
/// * `spec_dir`: directory of the job spec; a relative `path` resolves against it.
/// * `field`: the section's field path in the spec (`sinks[0]`), prefixed to errors.
///
/// Errors: unknown connector (listing the known ones), bad options (naming the field
/// path). Files are created by [`SinkFactory::create_sink`], not here.
pub fn sink_factory(
    connector: &str,
    options: &serde_json::Value,
    spec_dir: &Path,
    field: &str,
) -> Result<Arc<dyn SinkFactory>, ConnectorError> {
    match connector {
        "jsonl" => Ok(Arc::new(sink::JsonlSinkFactory::new(
            options, spec_dir, field,
        )?)),
        "stdout" => Ok(Arc::new(sink::StdoutSinkFactory::new(options, field)?)),
        other => Err(ConnectorError(format!(
            "{field}: unknown sink connector '{other}'; known sink connectors are: {}",
            SINK_CONNECTORS.join(", ")
        ))),
    }
}

/// Parses a connector's options, rejecting unknown fields; errors name the full field
/// path (`sources[0].event_time.format: unknown variant ...`).
pub(crate) fn parse_options<T: DeserializeOwned>(
    options: &serde_json::Value,
    field: &str,
) -> Result<T, ConnectorError> {
    sluice_core::spec::from_value(options, field).map_err(ConnectorError)
}

/// The local file of a source's `path` option (fetching an `npm:` dataset, checking
/// `sha256`); errors are prefixed with `<field>.path`.
pub(crate) fn input_path(
    path: &str,
    sha256: Option<&str>,
    spec_dir: &Path,
    field: &str,
) -> Result<std::path::PathBuf, ConnectorError> {
    resolve_dataset(path, sha256, spec_dir)
        .map_err(|e| ConnectorError(format!("{}: {}", sub(field, "path"), e.0)))
}

/// Opens an input file with a 1 MiB read buffer; errors name the file.
pub(crate) fn open_buffered(
    path: &Path,
) -> Result<std::io::BufReader<std::fs::File>, ConnectorError> {
    let f = std::fs::File::open(path)
        .map_err(|e| ConnectorError(format!("{}: {e}", path.display())))?;
    Ok(std::io::BufReader::with_capacity(1 << 20, f))
}

/// `field.sub`, for error messages.
pub(crate) fn sub(field: &str, name: &str) -> String {
    format!("{field}.{name}")
}

#[cfg(test)]
mod tests;
