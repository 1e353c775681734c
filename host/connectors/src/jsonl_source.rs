//! The JSON-lines file source: one event per non-blank line, the event time read from a
//! top-level member, the key from another (optional), the value the line itself (JSON).
//! Parallelism 1.

use crate::time::TimeFormat;
use crate::{ConnectorError, input_path, open_buffered, parse_options};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use sluice_core::batch::Batch;
use sluice_core::connector::{SourceFactory, SourcePoll, SourceReader};
use sluice_core::format::ValueFormat;
use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    path: String,
    #[serde(default)]
    sha256: Option<String>,
    event_time: EventTimeOpt,
    /// A member whose value becomes the event key (a string as its UTF-8 bytes, an
    /// integer in decimal, another number as the shortest decimal that reads back, so
    /// `1.0` is `1`); default: an empty key.
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventTimeOpt {
    field: String,
    format: JsonTimeFormat,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum JsonTimeFormat {
    EpochMs,
    EpochS,
    Rfc3339,
}

/// The factory of a JSON-lines source; see the module docs.
pub(crate) struct JsonlSourceFactory {
    lines: LineFormat,
}

/// How a line is read: the file (for errors), the event time member and its format,
/// and the key member.
#[derive(Clone)]
struct LineFormat {
    path: PathBuf,
    field: String,
    format: JsonTimeFormat,
    key: Option<String>,
}

impl JsonlSourceFactory {
    pub(crate) fn new(
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Self, ConnectorError> {
        let o: Options = parse_options(options, field)?;
        let path = input_path(&o.path, o.sha256.as_deref(), spec_dir, field)?;
        Ok(JsonlSourceFactory {
            lines: LineFormat {
                path,
                field: o.event_time.field,
                format: o.event_time.format,
                key: o.key,
            },
        })
    }
}

impl SourceFactory for JsonlSourceFactory {
    fn value_format(&self) -> ValueFormat {
        ValueFormat::Json
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
            Some(open_buffered(&self.lines.path)?)
        } else {
            None
        };
        Ok(Box::new(JsonlReader {
            lines: self.lines.clone(),
            reader,
            line: Vec::new(),
            line_no: 0,
            key: Vec::new(),
        }))
    }
}

struct JsonlReader {
    lines: LineFormat,
    reader: Option<BufReader<File>>,
    /// The current line, and its 1-based number.
    line: Vec<u8>,
    line_no: u64,
    /// The current line's key.
    key: Vec<u8>,
}

/// The time or key member as found in a line.
enum TimeValue<'a> {
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Other(&'static str),
}

/// Walks a JSON object, keeping only the members `field` (the time) and `key` (no
/// allocation for the rest).
struct Probe<'f> {
    field: &'f str,
    key: Option<&'f str>,
}

/// The time member and the key member, as found.
type Probed<'de> = (Option<TimeValue<'de>>, Option<TimeValue<'de>>);

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = Probed<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = Probed<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut found, mut key_found) = (None, None);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == self.field && found.is_none() {
                found = Some(map.next_value::<TimeValueDe<'de>>()?.0);
            } else if Some(key.as_ref()) == self.key && key_found.is_none() {
                key_found = Some(map.next_value::<TimeValueDe<'de>>()?.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok((found, key_found))
    }
}

struct TimeValueDe<'a>(TimeValue<'a>);

impl<'de> Deserialize<'de> for TimeValueDe<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TimeValueDe<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a time")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(TimeValueDe(TimeValue::Int(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(TimeValueDe(match i64::try_from(v) {
                    Ok(v) => TimeValue::Int(v),
                    Err(_) => TimeValue::Float(v as f64),
                }))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(TimeValueDe(TimeValue::Float(v)))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(TimeValueDe(TimeValue::Str(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TimeValueDe(TimeValue::Str(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(TimeValueDe(TimeValue::Other("a boolean")))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(TimeValueDe(TimeValue::Other("null")))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TimeValueDe(TimeValue::Other("an array")))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(TimeValueDe(TimeValue::Other("an object")))
            }
        }
        d.deserialize_any(V)
    }
}

impl LineFormat {
    fn err(&self, line_no: u64, what: String) -> ConnectorError {
        ConnectorError(format!("{}:{line_no}: {what}", self.path.display()))
    }

    /// The event time of line `line_no`, `text`; its key goes into `key`.
    fn read(&self, line_no: u64, text: &[u8], key: &mut Vec<u8>) -> Result<i64, ConnectorError> {
        let err = |what: String| self.err(line_no, what);
        let mut de = serde_json::Deserializer::from_slice(text);
        let (found, key_found) = Probe {
            field: &self.field,
            key: self.key.as_deref(),
        }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|_| v))
        .map_err(|e| err(format!("invalid JSON: {e}")))?;
        key.clear();
        if let Some(name) = &self.key {
            // Numbers are written as Rust displays them, straight into the buffer.
            const INFALLIBLE: &str = "writing into a Vec does not fail";
            match key_found {
                Some(TimeValue::Str(s)) => key.extend_from_slice(s.as_bytes()),
                Some(TimeValue::Int(v)) => write!(key, "{v}").expect(INFALLIBLE),
                Some(TimeValue::Float(v)) => write!(key, "{v}").expect(INFALLIBLE),
                Some(TimeValue::Other(what)) => {
                    return Err(err(format!(
                        "key member '{name}': expected a string or a number, found {what}"
                    )));
                }
                None => return Err(err(format!("no member '{name}' (the key)"))),
            }
        }
        let field = &self.field;
        let v = found.ok_or_else(|| err(format!("no member '{field}' (the event time)")))?;
        let r = match (self.format, v) {
            (JsonTimeFormat::EpochMs, TimeValue::Int(v)) => Ok(v),
            (JsonTimeFormat::EpochMs, TimeValue::Float(v)) if v.is_finite() => Ok(v.round() as i64),
            (JsonTimeFormat::EpochS, TimeValue::Int(v)) => v
                .checked_mul(1000)
                .ok_or_else(|| format!("{v} is out of range")),
            (JsonTimeFormat::EpochS, TimeValue::Float(v)) if v.is_finite() => {
                Ok((v * 1000.0).round() as i64)
            }
            (JsonTimeFormat::EpochMs, TimeValue::Str(s)) => TimeFormat::EpochMs.read(&s),
            (JsonTimeFormat::EpochS, TimeValue::Str(s)) => TimeFormat::EpochS.read(&s),
            (JsonTimeFormat::Rfc3339, TimeValue::Str(s)) => TimeFormat::Rfc3339.read(&s),
            (JsonTimeFormat::Rfc3339, _) => Err("expected an RFC 3339 string".to_string()),
            (_, TimeValue::Other(what)) => Err(format!("expected a number, found {what}")),
            (_, _) => Err("expected a finite number".to_string()),
        };
        r.map_err(|e| err(format!("event time member '{field}': {e}")))
    }
}

impl SourceReader for JsonlReader {
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
            self.line.clear();
            let read = reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| self.lines.err(self.line_no + 1, e.to_string()))?;
            if read == 0 {
                self.reader = None;
                break;
            }
            self.line_no += 1;
            let text = self.line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let ts = self.lines.read(self.line_no, text, &mut self.key)?;
            batch.push(ts, &self.key, text);
            n += 1;
        }
        Ok(if n == 0 {
            SourcePoll::End
        } else {
            SourcePoll::Data
        })
    }
}
