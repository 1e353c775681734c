//! The `packed` value format: a compact binary record whose fields follow a schema
//! declared once (in the job spec), not in every record.
//!
//! A record is its fields concatenated in schema order, with no header and no padding:
//!
//! | type   | bytes                                            |
//! |--------|--------------------------------------------------|
//! | `bool` | 1 (0 or 1)                                       |
//! | `i32`  | 4, little-endian two's complement                |
//! | `i64`  | 8, little-endian two's complement                |
//! | `f64`  | 8, little-endian IEEE 754 binary64               |
//! | `str`  | 4-byte little-endian length `n`, then `n` bytes of UTF-8 |
//! | `bytes`| 4-byte little-endian length `n`, then `n` bytes  |
//!
//! The host (sources, built-in aggregates, sinks) and the guest SDKs read and write the
//! same bytes, so an operator can hand the window operator a value it aggregates without
//! parsing text. This crate has no dependencies so that guests built for `wasm32-wasip2`
//! can use it too.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;

/// The type of one field of a packed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// One byte, 0 or 1.
    Bool,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// 64-bit float.
    F64,
    /// Length-prefixed UTF-8 text.
    Str,
    /// Length-prefixed bytes.
    Bytes,
}

impl FieldType {
    /// Parses a type name as written in job specs: `bool`, `i32`, `i64`, `f64`, `str`
    /// (or `string`), `bytes`.
    pub fn parse(name: &str) -> Option<FieldType> {
        Some(match name {
            "bool" => FieldType::Bool,
            "i32" => FieldType::I32,
            "i64" => FieldType::I64,
            "f64" => FieldType::F64,
            "str" | "string" => FieldType::Str,
            "bytes" => FieldType::Bytes,
            _ => return None,
        })
    }

    /// The type's name as [`FieldType::parse`] accepts it.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Bool => "bool",
            FieldType::I32 => "i32",
            FieldType::I64 => "i64",
            FieldType::F64 => "f64",
            FieldType::Str => "str",
            FieldType::Bytes => "bytes",
        }
    }

    /// The encoded size in bytes for fixed-size types, `None` for `str` and `bytes`.
    pub fn fixed_size(self) -> Option<usize> {
        match self {
            FieldType::Bool => Some(1),
            FieldType::I32 => Some(4),
            FieldType::I64 | FieldType::F64 => Some(8),
            FieldType::Str | FieldType::Bytes => None,
        }
    }

    /// Whether the type is a number (`i32`, `i64`, `f64`) that aggregates can add up.
    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::I32 | FieldType::I64 | FieldType::F64)
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A record that ended before a field did, or held invalid UTF-8 in a `str` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedError {
    /// Byte offset in the record where reading failed.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

impl fmt::Display for PackedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "packed record: {} at byte {}", self.reason, self.offset)
    }
}

impl std::error::Error for PackedError {}

/// Appends fields of one record to a byte buffer, in schema order.
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// A writer appending to `buf` (existing bytes are kept).
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer { buf }
    }
    /// Appends a `bool` field.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(v as u8);
        self
    }
    /// Appends an `i32` field.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends an `i64` field.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends an `f64` field.
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a `str` field. Panics only if `v` is longer than 4 GiB.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    /// Appends a `bytes` field. Panics only if `v` is longer than 4 GiB.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).expect("packed field longer than 4 GiB");
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(v);
        self
    }
}

/// Reads the fields of one record in schema order.
#[derive(Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `record`.
    pub fn new(record: &'a [u8]) -> Self {
        Reader {
            data: record,
            pos: 0,
        }
    }

    /// Byte offset of the next field.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], PackedError> {
        let end = self.pos + N;
        let bytes = self.data.get(self.pos..end).ok_or(PackedError {
            offset: self.pos,
            reason: "record ends inside a fixed-size field",
        })?;
        self.pos = end;
        Ok(bytes.try_into().expect("slice of length N"))
    }

    /// Reads a `bool` field.
    pub fn bool(&mut self) -> Result<bool, PackedError> {
        Ok(self.take::<1>()?[0] != 0)
    }
    /// Reads an `i32` field.
    pub fn i32(&mut self) -> Result<i32, PackedError> {
        Ok(i32::from_le_bytes(self.take()?))
    }
    /// Reads an `i64` field.
    pub fn i64(&mut self) -> Result<i64, PackedError> {
        Ok(i64::from_le_bytes(self.take()?))
    }
    /// Reads an `f64` field.
    pub fn f64(&mut self) -> Result<f64, PackedError> {
        Ok(f64::from_le_bytes(self.take()?))
    }
    /// Reads a `bytes` field, borrowing from the record.
    pub fn bytes(&mut self) -> Result<&'a [u8], PackedError> {
        let at = self.pos;
        let len = u32::from_le_bytes(self.take()?) as usize;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.data.len())
            .ok_or(PackedError {
                offset: at,
                reason: "length prefix runs past the end of the record",
            })?;
        let v = &self.data[self.pos..end];
        self.pos = end;
        Ok(v)
    }
    /// Reads a `str` field, borrowing from the record.
    pub fn str(&mut self) -> Result<&'a str, PackedError> {
        let at = self.pos;
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| PackedError {
            offset: at,
            reason: "str field is not valid UTF-8",
        })
    }
    /// Skips one field of type `ty`.
    pub fn skip(&mut self, ty: FieldType) -> Result<(), PackedError> {
        match ty.fixed_size() {
            Some(1) => self.take::<1>().map(drop),
            Some(4) => self.take::<4>().map(drop),
            Some(_) => self.take::<8>().map(drop),
            None => self.bytes().map(drop),
        }
    }
    /// Reads a numeric field of type `ty` as `f64` and, for integers, also as `i64`.
    pub fn number(&mut self, ty: FieldType) -> Result<Number, PackedError> {
        Ok(match ty {
            FieldType::I32 => Number::Int(self.i32()? as i64),
            FieldType::I64 => Number::Int(self.i64()?),
            FieldType::F64 => Number::Float(self.f64()?),
            FieldType::Bool => Number::Int(self.bool()? as i64),
            FieldType::Str | FieldType::Bytes => {
                return Err(PackedError {
                    offset: self.pos,
                    reason: "field is not numeric",
                });
            }
        })
    }
}

/// A numeric field's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// From `bool`, `i32` or `i64`.
    Int(i64),
    /// From `f64`.
    Float(f64),
}

impl Number {
    /// The value as `f64` (integers above 2^53 lose precision).
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(v) => v as f64,
            Number::Float(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_type() {
        let mut buf = Vec::new();
        Writer::new(&mut buf)
            .bool(true)
            .i32(-7)
            .i64(i64::MIN)
            .f64(2.5)
            .str("ORD")
            .bytes(&[0, 255]);
        assert_eq!(buf.len(), 1 + 4 + 8 + 8 + (4 + 3) + (4 + 2));
        let mut r = Reader::new(&buf);
        assert!(r.bool().unwrap());
        assert_eq!(r.i32().unwrap(), -7);
        assert_eq!(r.i64().unwrap(), i64::MIN);
        assert_eq!(r.f64().unwrap(), 2.5);
        assert_eq!(r.str().unwrap(), "ORD");
        assert_eq!(r.bytes().unwrap(), &[0, 255]);
        assert_eq!(r.position(), buf.len());
    }

    #[test]
    fn truncated_and_invalid_records_are_errors_not_panics() {
        let mut buf = Vec::new();
        Writer::new(&mut buf).str("hello");
        for cut in 0..buf.len() {
            let mut r = Reader::new(&buf[..cut]);
            assert!(r.str().is_err(), "cut at {cut}");
        }
        let bad = [2, 0, 0, 0, 0xff, 0xfe];
        assert_eq!(
            Reader::new(&bad).str().unwrap_err().reason,
            "str field is not valid UTF-8"
        );
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert!(Reader::new(&huge).bytes().is_err());
        assert!(Reader::new(&[1, 2, 3]).i32().is_err());
    }

    #[test]
    fn type_names_round_trip() {
        for t in [
            FieldType::Bool,
            FieldType::I32,
            FieldType::I64,
            FieldType::F64,
            FieldType::Str,
            FieldType::Bytes,
        ] {
            assert_eq!(FieldType::parse(t.name()), Some(t));
        }
        assert_eq!(FieldType::parse("int"), None);
    }
}
