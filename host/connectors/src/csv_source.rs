//! The CSV file source: one event per record, the event time parsed from a field, the
//! value either the record's fields re-joined with the delimiter (`text`) or the fields
//! converted to a packed record (`packed`, with a declared schema). Parallelism 1.

use crate::time::TimeFormat;
use crate::{ConnectorError, input_path, open_buffered, parse_options, sub};
use serde::Deserialize;
use sluice_core::batch::Batch;
use sluice_core::connector::{SourceFactory, SourcePoll, SourceReader};
use sluice_core::format::{PackedField, PackedSchema, ValueFormat};
use sluice_packed::{FieldType, Writer};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    path: String,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default = "yes")]
    has_header: bool,
    #[serde(default = "comma")]
    delimiter: String,
    event_time: EventTimeOpt,
    #[serde(default)]
    value_format: ValueFormatOpt,
    #[serde(default)]
    schema: Option<Vec<SchemaField>>,
}

fn yes() -> bool {
    true
}
fn comma() -> String {
    ",".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventTimeOpt {
    column: ColumnRef,
    format: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ColumnRef {
    Index(usize),
    Name(String),
}

#[derive(Deserialize, Default, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ValueFormatOpt {
    #[default]
    Text,
    Packed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaField {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

/// The factory of a CSV source; see the module docs.
pub(crate) struct CsvSourceFactory {
    path: PathBuf,
    has_header: bool,
    delimiter: u8,
    time_column: usize,
    time_format: TimeFormat,
    /// `Some` for packed values.
    schema: Option<PackedSchema>,
}

impl CsvSourceFactory {
    pub(crate) fn new(
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Self, ConnectorError> {
        let o: Options = parse_options(options, field)?;
        let path = input_path(&o.path, o.sha256.as_deref(), spec_dir, field)?;
        let delimiter = match o.delimiter.as_str() {
            "\\t" | "tab" => b'\t',
            d if d.len() == 1 => d.as_bytes()[0],
            d => {
                return Err(ConnectorError(format!(
                    "{}: '{d}' is not a single-byte delimiter",
                    sub(field, "delimiter")
                )));
            }
        };
        let time_format = TimeFormat::parse(&o.event_time.format)
            .map_err(|e| ConnectorError(format!("{}: {e}", sub(field, "event_time.format"))))?;
        let schema = match (o.value_format, o.schema) {
            (ValueFormatOpt::Text, None) => None,
            (ValueFormatOpt::Text, Some(_)) => {
                return Err(ConnectorError(format!(
                    "{}: a schema is only used with value_format: packed",
                    sub(field, "schema")
                )));
            }
            (ValueFormatOpt::Packed, None) => {
                return Err(ConnectorError(format!(
                    "{}: value_format packed needs a schema: [{{name, type}}, ...], one per CSV column",
                    sub(field, "schema")
                )));
            }
            (ValueFormatOpt::Packed, Some(fields)) => {
                let mut s = PackedSchema::default();
                for (i, f) in fields.into_iter().enumerate() {
                    let ty = FieldType::parse(&f.ty).ok_or_else(|| {
                        ConnectorError(format!(
                            "{field}.schema[{i}].type: unknown type '{}'; types are bool, i32, i64, f64, str, bytes",
                            f.ty
                        ))
                    })?;
                    if s.index_of(&f.name).is_some() {
                        return Err(ConnectorError(format!(
                            "{field}.schema[{i}].name: '{}' is declared twice",
                            f.name
                        )));
                    }
                    s.fields.push(PackedField { name: f.name, ty });
                }
                Some(s)
            }
        };
        let col_at = sub(field, "event_time.column");
        let time_column = match o.event_time.column {
            ColumnRef::Index(i) => i,
            ColumnRef::Name(name) => {
                let names: Vec<String> = if o.has_header {
                    let mut r = csv::ReaderBuilder::new()
                        .delimiter(delimiter)
                        .has_headers(true)
                        .from_path(&path)
                        .map_err(|e| ConnectorError(format!("{}: {e}", path.display())))?;
                    r.headers()
                        .map_err(|e| ConnectorError(format!("{}: line 1: {e}", path.display())))?
                        .iter()
                        .map(str::to_string)
                        .collect()
                } else if let Some(s) = &schema {
                    s.fields.iter().map(|f| f.name.clone()).collect()
                } else {
                    return Err(ConnectorError(format!(
                        "{col_at}: the file has no header, so give the column's 0-based index (or declare a packed schema)"
                    )));
                };
                names.iter().position(|n| *n == name).ok_or_else(|| {
                    ConnectorError(format!(
                        "{col_at}: column '{name}' not found in {}; columns are: {}",
                        path.display(),
                        names.join(", ")
                    ))
                })?
            }
        };
        if let Some(s) = &schema
            && time_column >= s.fields.len()
        {
            return Err(ConnectorError(format!(
                "{col_at}: column {time_column} is beyond the schema's {} fields",
                s.fields.len()
            )));
        }
        Ok(CsvSourceFactory {
            path,
            has_header: o.has_header,
            delimiter,
            time_column,
            time_format,
            schema,
        })
    }
}

impl SourceFactory for CsvSourceFactory {
    fn value_format(&self) -> ValueFormat {
        match &self.schema {
            Some(s) => ValueFormat::Packed(s.clone()),
            None => ValueFormat::Text,
        }
    }

    fn max_parallelism(&self) -> usize {
        1
    }

    fn create_reader(
        &self,
        subtask: usize,
        _parallelism: usize,
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        let reader = if subtask == 0 {
            Some(
                csv::ReaderBuilder::new()
                    .delimiter(self.delimiter)
                    .has_headers(self.has_header)
                    .flexible(self.schema.is_none())
                    .from_reader(open_buffered(&self.path)?),
            )
        } else {
            None
        };
        Ok(Box::new(CsvReader {
            path: self.path.clone(),
            delimiter: self.delimiter,
            time_column: self.time_column,
            time_format: self.time_format.clone(),
            schema: self.schema.clone(),
            reader,
            record: csv::ByteRecord::new(),
            scratch: Vec::new(),
        }))
    }
}

struct CsvReader {
    path: PathBuf,
    delimiter: u8,
    time_column: usize,
    time_format: TimeFormat,
    schema: Option<PackedSchema>,
    reader: Option<csv::Reader<BufReader<File>>>,
    record: csv::ByteRecord,
    scratch: Vec<u8>,
}

impl CsvReader {
    fn err(&self, line: u64, what: String) -> ConnectorError {
        ConnectorError(format!("{}:{line}: {what}", self.path.display()))
    }

    /// Encodes `self.record` as a packed record into `self.scratch`.
    fn encode_packed(&mut self, line: u64) -> Result<(), ConnectorError> {
        let schema = self.schema.as_ref().expect("packed");
        self.scratch.clear();
        if self.record.len() != schema.fields.len() {
            return Err(self.err(
                line,
                format!(
                    "{} fields, but the schema declares {}",
                    self.record.len(),
                    schema.fields.len()
                ),
            ));
        }
        let mut w = Writer::new(&mut self.scratch);
        for (f, raw) in schema.fields.iter().zip(self.record.iter()) {
            let bad = |why: &str| {
                ConnectorError(format!(
                    "{}:{line}: field '{}' ({}): '{}' {why}",
                    self.path.display(),
                    f.name,
                    f.ty,
                    String::from_utf8_lossy(raw)
                ))
            };
            let text = || {
                std::str::from_utf8(raw)
                    .map(str::trim)
                    .map_err(|_| bad("is not UTF-8"))
            };
            match f.ty {
                FieldType::Bool => {
                    let v = match text()? {
                        "true" | "TRUE" | "True" | "1" => true,
                        "false" | "FALSE" | "False" | "0" => false,
                        _ => return Err(bad("is not a boolean (true/false/1/0)")),
                    };
                    w.bool(v);
                }
                FieldType::I32 => {
                    w.i32(text()?.parse().map_err(|_| bad("is not an i32"))?);
                }
                FieldType::I64 => {
                    w.i64(text()?.parse().map_err(|_| bad("is not an i64"))?);
                }
                FieldType::F64 => {
                    w.f64(text()?.parse().map_err(|_| bad("is not a number"))?);
                }
                FieldType::Str => {
                    w.str(std::str::from_utf8(raw).map_err(|_| bad("is not UTF-8"))?);
                }
                FieldType::Bytes => {
                    w.bytes(raw);
                }
            }
        }
        Ok(())
    }
}

impl SourceReader for CsvReader {
    fn poll_batch(
        &mut self,
        batch: &mut Batch,
        max_events: usize,
    ) -> Result<SourcePoll, ConnectorError> {
        let mut n = 0;
        while n < max_events.max(1) {
            let Some(reader) = self.reader.as_mut() else {
                break;
            };
            let more = reader.read_byte_record(&mut self.record).map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                ConnectorError(format!("{}:{line}: {e}", self.path.display()))
            })?;
            if !more {
                self.reader = None;
                break;
            }
            let line = self.record.position().map(|p| p.line()).unwrap_or(0);
            let Some(raw) = self.record.get(self.time_column) else {
                return Err(self.err(
                    line,
                    format!(
                        "no event time column {} (the record has {} fields)",
                        self.time_column,
                        self.record.len()
                    ),
                ));
            };
            let ts = std::str::from_utf8(raw)
                .map_err(|_| "is not UTF-8".to_string())
                .and_then(|t| self.time_format.read(t))
                .map_err(|e| {
                    self.err(
                        line,
                        format!("event time (column {}): {e}", self.time_column),
                    )
                })?;
            if self.schema.is_some() {
                self.encode_packed(line)?;
                batch.push(ts, b"", &self.scratch);
            } else {
                let (rec, d) = (&self.record, self.delimiter);
                batch.push_with(ts, b"", |buf| {
                    for (i, f) in rec.iter().enumerate() {
                        if i > 0 {
                            buf.push(d);
                        }
                        buf.extend_from_slice(f);
                    }
                });
            }
            n += 1;
        }
        Ok(if n == 0 {
            SourcePoll::End
        } else {
            SourcePoll::Data
        })
    }
}
