//! Value formats: how the bytes of an event's value are laid out, so that built-in
//! aggregates can read a field and sinks can render a value as JSON.

use sluice_packed::{FieldType, Number, Reader};
use std::fmt::Write as _;

/// One field of a [`PackedSchema`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedField {
    /// Field name, unique in its schema.
    pub name: String,
    /// Field type.
    pub ty: FieldType,
}

/// The ordered fields of a `packed` value (see [`sluice_packed`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackedSchema {
    /// Fields in record order.
    pub fields: Vec<PackedField>,
}

impl PackedSchema {
    /// Index of the field called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// Byte offset of field `index` when every field before it has a fixed size.
    pub fn fixed_offset(&self, index: usize) -> Option<usize> {
        self.fields[..index].iter().map(|f| f.ty.fixed_size()).sum()
    }
}

/// How an event's value bytes are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueFormat {
    /// A packed record with the given schema.
    Packed(PackedSchema),
    /// A UTF-8 JSON document (an object, for field access).
    Json,
    /// UTF-8 text (a CSV line, say).
    Text,
    /// Opaque bytes.
    Bytes,
}

/// Reads one numeric field out of values of a given format.
#[derive(Debug, Clone)]
pub enum FieldAccessor {
    /// Fixed offset into a packed record.
    PackedFixed {
        /// Byte offset.
        offset: usize,
        /// Field type (numeric).
        ty: FieldType,
    },
    /// Skip to field `index` of a packed record with variable-size fields before it.
    PackedScan {
        /// The schema's types.
        types: Vec<FieldType>,
        /// Field index.
        index: usize,
    },
    /// A top-level member of a JSON object.
    JsonMember(String),
}

/// A field named in a spec that the value format lacks or that is not numeric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldError(pub String);

impl FieldAccessor {
    /// An accessor for the numeric field `name` of `format`.
    ///
    /// Errors: the format has no such field, the field is not numeric, or the format
    /// has no fields at all (`text`, `bytes`).
    pub fn new(format: &ValueFormat, name: &str) -> Result<FieldAccessor, FieldError> {
        match format {
            ValueFormat::Packed(schema) => {
                let index = schema.index_of(name).ok_or_else(|| {
                    FieldError(format!(
                        "no field '{name}' in the packed value (fields: {})",
                        schema
                            .fields
                            .iter()
                            .map(|f| f.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                let ty = schema.fields[index].ty;
                if !ty.is_numeric() && ty != FieldType::Bool {
                    return Err(FieldError(format!("field '{name}' is {ty}, not a number")));
                }
                Ok(match schema.fixed_offset(index) {
                    Some(offset) => FieldAccessor::PackedFixed { offset, ty },
                    None => FieldAccessor::PackedScan {
                        types: schema.fields.iter().map(|f| f.ty).collect(),
                        index,
                    },
                })
            }
            ValueFormat::Json => Ok(FieldAccessor::JsonMember(name.to_string())),
            ValueFormat::Text | ValueFormat::Bytes => Err(FieldError(format!(
                "field '{name}' cannot be read from a value without fields (declare a packed or json value format)"
            ))),
        }
    }

    /// Reads the field from `value`. Errors name the field and what was wrong.
    #[inline]
    pub fn read(&self, value: &[u8]) -> Result<Number, FieldError> {
        match self {
            FieldAccessor::PackedFixed { offset, ty } => {
                let mut r = Reader::new(value.get(*offset..).ok_or_else(|| {
                    FieldError(format!(
                        "packed value of {} bytes is too short",
                        value.len()
                    ))
                })?);
                r.number(*ty).map_err(|e| FieldError(e.to_string()))
            }
            FieldAccessor::PackedScan { types, index } => {
                let mut r = Reader::new(value);
                for ty in &types[..*index] {
                    r.skip(*ty).map_err(|e| FieldError(e.to_string()))?;
                }
                r.number(types[*index])
                    .map_err(|e| FieldError(e.to_string()))
            }
            FieldAccessor::JsonMember(name) => {
                let v: serde_json::Value = serde_json::from_slice(value)
                    .map_err(|e| FieldError(format!("value is not JSON: {e}")))?;
                match v.get(name) {
                    Some(serde_json::Value::Number(n)) => Ok(match n.as_i64() {
                        Some(i) => Number::Int(i),
                        None => Number::Float(n.as_f64().unwrap_or(f64::NAN)),
                    }),
                    Some(serde_json::Value::Bool(b)) => Ok(Number::Int(*b as i64)),
                    Some(other) => Err(FieldError(format!(
                        "field '{name}' is not a number: {other}"
                    ))),
                    None => Err(FieldError(format!("value has no field '{name}'"))),
                }
            }
        }
    }
}

impl ValueFormat {
    /// Appends `value` rendered as one JSON value to `out`: a packed record as an object
    /// of its fields, JSON as itself (checked where it entered the engine, not here), text
    /// as a string, bytes as an array of numbers.
    /// A value that does not match its format is rendered as a string saying so, so a
    /// sink never loses an event.
    pub fn render_json(&self, value: &[u8], out: &mut String) {
        match self {
            ValueFormat::Packed(schema) => {
                let start = out.len();
                if let Err(e) = render_packed(schema, value, out) {
                    out.truncate(start);
                    write_json_str(out, &format!("<invalid packed value: {e}>"));
                }
            }
            // JSON values are checked where they enter the engine (JSON sources parse
            // every line; a user operator's JSON output is checked by the runtime), so
            // they are written as they are; only a value that is not UTF-8 or is empty
            // (which cannot have passed those checks) is written as a string.
            ValueFormat::Json => match std::str::from_utf8(value) {
                Ok(s) if !s.trim().is_empty() => out.push_str(s),
                _ => write_json_str(out, &String::from_utf8_lossy(value)),
            },
            ValueFormat::Text => write_json_str(out, &String::from_utf8_lossy(value)),
            ValueFormat::Bytes => write_json_bytes(out, value),
        }
    }
}

/// Appends `bytes` as a JSON array of numbers (`[0,255]`).
pub fn write_json_bytes(out: &mut String, bytes: &[u8]) {
    out.push('[');
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_i64(out, *b as i64);
    }
    out.push(']');
}

/// Appends an event key as JSON: a string when it is UTF-8, else an array of numbers.
pub fn write_json_key(out: &mut String, key: &[u8]) {
    match std::str::from_utf8(key) {
        Ok(s) => write_json_str(out, s),
        Err(_) => write_json_bytes(out, key),
    }
}

fn render_packed(
    schema: &PackedSchema,
    value: &[u8],
    out: &mut String,
) -> Result<(), sluice_packed::PackedError> {
    let mut r = Reader::new(value);
    out.push('{');
    for (i, f) in schema.fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(out, &f.name);
        out.push(':');
        match f.ty {
            FieldType::Bool => out.push_str(if r.bool()? { "true" } else { "false" }),
            FieldType::I32 => write_i64(out, r.i32()? as i64),
            FieldType::I64 => write_i64(out, r.i64()?),
            FieldType::F64 => write_json_f64(out, r.f64()?),
            FieldType::Str => write_json_str(out, r.str()?),
            FieldType::Bytes => write_json_str(out, &String::from_utf8_lossy(r.bytes()?)),
        }
    }
    out.push('}');
    Ok(())
}

/// Appends `s` as a JSON string literal, escaping as JSON requires, without allocating.
pub fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends `v` in decimal without going through `fmt`.
#[inline]
pub fn write_i64(out: &mut String, v: i64) {
    let mut b = [0u8; 20];
    let mut i = b.len();
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        b[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&b[i..]).expect("ASCII"));
}

/// Appends `v` as a JSON number (`null` for NaN and infinities, which JSON lacks).
pub fn write_json_f64(out: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.push_str("null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_packed::Writer;

    fn schema() -> PackedSchema {
        PackedSchema {
            fields: vec![
                PackedField {
                    name: "origin".into(),
                    ty: FieldType::Str,
                },
                PackedField {
                    name: "delay".into(),
                    ty: FieldType::I32,
                },
                PackedField {
                    name: "ratio".into(),
                    ty: FieldType::F64,
                },
            ],
        }
    }

    #[test]
    fn packed_fields_read_and_render() {
        let mut v = Vec::new();
        Writer::new(&mut v).str("ORD").i32(-5).f64(0.5);
        let f = ValueFormat::Packed(schema());
        assert_eq!(
            FieldAccessor::new(&f, "delay").unwrap().read(&v).unwrap(),
            Number::Int(-5)
        );
        assert_eq!(
            FieldAccessor::new(&f, "ratio").unwrap().read(&v).unwrap(),
            Number::Float(0.5)
        );
        assert!(FieldAccessor::new(&f, "origin").is_err());
        assert!(
            FieldAccessor::new(&f, "nope")
                .unwrap_err()
                .0
                .contains("fields: origin, delay, ratio")
        );
        let mut s = String::new();
        f.render_json(&v, &mut s);
        assert_eq!(s, r#"{"origin":"ORD","delay":-5,"ratio":0.5}"#);
        let mut s = String::new();
        f.render_json(&v[..3], &mut s);
        assert!(s.starts_with("\"<invalid packed value"), "{s}");
    }

    #[test]
    fn json_fields() {
        let f = ValueFormat::Json;
        let a = FieldAccessor::new(&f, "x").unwrap();
        assert_eq!(a.read(br#"{"x": 3}"#).unwrap(), Number::Int(3));
        assert_eq!(a.read(br#"{"x": 3.5}"#).unwrap(), Number::Float(3.5));
        assert!(a.read(br#"{"y": 3}"#).is_err());
        assert!(a.read(b"nope").is_err());
        assert!(FieldAccessor::new(&ValueFormat::Text, "x").is_err());
    }
}

#[cfg(test)]
mod json_str_tests {
    #[test]
    fn escapes_like_serde_json() {
        for v in [0, 1, -1, 10, -1234567890, i64::MAX, i64::MIN] {
            let mut s = String::new();
            super::write_i64(&mut s, v);
            assert_eq!(s, v.to_string());
        }
        for s in [
            "plain",
            "qu\"ote",
            "back\\slash",
            "new\nline\ttab\r",
            "\u{1}ctl\u{1f}",
            "ünïcode ✈",
            "",
        ] {
            let mut out = String::new();
            super::write_json_str(&mut out, s);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }
}
