//! The Parquet file source: one event per row, the event time from a column, the value
//! the row's selected columns as a packed record or a JSON object.
//!
//! Without `order_by`, rows stream in file order, one record batch of the file at a
//! time, and subtasks share the row groups (subtask `i` of `P` reads row groups
//! `i, i + P, ...`). With `order_by`, the one reader loads the selected columns (plus
//! the event time and the expression's columns) of the whole file into memory (about
//! the file's uncompressed column size: some 100 MB for 3 million rows of a few columns),
//! computes the expression per row and emits rows sorted by it, ties by row number.

use crate::expr::{self, Expr};
use crate::{ConnectorError, input_path, parse_options, sub};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, LargeBinaryArray, LargeStringArray, RecordBatch,
    StringArray,
};
use arrow_schema::{DataType, Schema, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use serde::Deserialize;
use sluice_core::batch::Batch;
use sluice_core::connector::{SourceFactory, SourcePoll, SourceReader};
use sluice_core::format::{PackedField, PackedSchema, ValueFormat};
use sluice_packed::{FieldType, Writer};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Rows per record batch read from the file.
const READ_BATCH: usize = 65_536;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    path: String,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    columns: Option<Vec<String>>,
    event_time: String,
    #[serde(default)]
    order_by: Option<String>,
    #[serde(default)]
    value_format: ValueFormatOpt,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ValueFormatOpt {
    #[default]
    Packed,
    Json,
}

/// The factory of a Parquet source; see the module docs.
pub(crate) struct ParquetSourceFactory {
    path: PathBuf,
    /// Selected value columns, in value order.
    columns: Vec<String>,
    event_time: String,
    order_by: Option<OrderBy>,
    json: bool,
    schema: PackedSchema,
    /// Root column indices to read (value, event time and order-by columns).
    projection: Vec<usize>,
    /// Rows per row group.
    row_groups: Vec<usize>,
}

#[derive(Clone)]
struct OrderBy {
    text: String,
    expr: Expr,
    columns: Vec<String>,
    float: bool,
}

fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, ConnectorError> {
    let f = File::open(path).map_err(|e| ConnectorError(format!("{}: {e}", path.display())))?;
    // Types come from the Parquet schema alone, not from an embedded Arrow schema, so
    // that strings written as Arrow dictionaries read as plain strings.
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    ParquetRecordBatchReaderBuilder::try_new_with_options(f, options).map_err(|e| {
        ConnectorError(format!(
            "{}: not a readable Parquet file: {e}",
            path.display()
        ))
    })
}

fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The packed type a column is encoded as, or `None` if unsupported.
fn packed_type(dt: &DataType) -> Option<FieldType> {
    Some(match dt {
        DataType::Int8 | DataType::Int16 | DataType::Int32 => FieldType::I32,
        DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Timestamp(_, _)
        | DataType::Date32
        | DataType::Date64 => FieldType::I64,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => FieldType::F64,
        DataType::Boolean => FieldType::Bool,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => FieldType::Str,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => FieldType::Bytes,
        _ => return None,
    })
}

impl ParquetSourceFactory {
    pub(crate) fn new(
        options: &serde_json::Value,
        spec_dir: &Path,
        field: &str,
    ) -> Result<Self, ConnectorError> {
        let o: Options = parse_options(options, field)?;
        let path = input_path(&o.path, o.sha256.as_deref(), spec_dir, field)?;
        let builder = open(&path)?;
        let schema = builder.schema().clone();
        let find = |name: &str, at: &str| {
            schema.index_of(name).map_err(|_| {
                ConnectorError(format!(
                    "{at}: column '{name}' not found in {}; columns are: {}",
                    path.display(),
                    column_list(&schema)
                ))
            })
        };
        // Value columns.
        let columns = match o.columns {
            Some(c) => c,
            None => schema.fields().iter().map(|f| f.name().clone()).collect(),
        };
        let mut packed = PackedSchema::default();
        let mut projection = Vec::new();
        for (i, name) in columns.iter().enumerate() {
            let at = format!("{field}.columns[{i}]");
            if columns[..i].contains(name) {
                return Err(ConnectorError(format!(
                    "{at}: column '{name}' is listed twice"
                )));
            }
            let idx = find(name, &at)?;
            let dt = schema.field(idx).data_type();
            let ty = packed_type(dt).ok_or_else(|| {
                ConnectorError(format!(
                    "{at}: column '{name}' has type {dt}, which the Parquet source does not support (supported: integers, floats, booleans, strings, binary, timestamps, dates)"
                ))
            })?;
            packed.fields.push(PackedField {
                name: name.clone(),
                ty,
            });
            projection.push(idx);
        }
        // Event time.
        let et_at = sub(field, "event_time");
        let et_idx = find(&o.event_time, &et_at)?;
        match schema.field(et_idx).data_type() {
            DataType::Timestamp(_, _) | DataType::Int64 | DataType::Date32 | DataType::Date64 => {}
            dt => {
                return Err(ConnectorError(format!(
                    "{et_at}: column '{}' has type {dt}; an event time column must be a timestamp, a date or an Int64 of epoch milliseconds",
                    o.event_time
                )));
            }
        }
        projection.push(et_idx);
        // Order by.
        let order_by = match &o.order_by {
            None => None,
            Some(text) => {
                let ob_at = sub(field, "order_by");
                let p = expr::parse(text).map_err(|e| ConnectorError(format!("{ob_at}: {e}")))?;
                let mut float = false;
                for c in &p.columns {
                    let idx = find(c, &ob_at)?;
                    let dt = schema.field(idx).data_type();
                    match dt {
                        DataType::Float16 | DataType::Float32 | DataType::Float64 => float = true,
                        d if d.is_integer() => {}
                        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {}
                        _ => {
                            return Err(ConnectorError(format!(
                                "{ob_at}: column '{c}' has type {dt}, not a number or a timestamp"
                            )));
                        }
                    }
                    projection.push(idx);
                }
                Some(OrderBy {
                    text: text.clone(),
                    expr: p.expr,
                    columns: p.columns,
                    float,
                })
            }
        };
        projection.sort_unstable();
        projection.dedup();
        let md = builder.metadata();
        let row_groups = (0..md.num_row_groups())
            .map(|i| md.row_group(i).num_rows() as usize)
            .collect();
        Ok(ParquetSourceFactory {
            path,
            columns,
            event_time: o.event_time,
            order_by,
            json: o.value_format == ValueFormatOpt::Json,
            schema: packed,
            projection,
            row_groups,
        })
    }
}

impl SourceFactory for ParquetSourceFactory {
    fn value_format(&self) -> ValueFormat {
        if self.json {
            ValueFormat::Json
        } else {
            ValueFormat::Packed(self.schema.clone())
        }
    }

    fn max_parallelism(&self) -> usize {
        if self.order_by.is_some() {
            1
        } else {
            self.row_groups.len().max(1)
        }
    }

    fn create_reader(
        &self,
        subtask: usize,
        parallelism: usize,
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        let parallelism = parallelism.max(1);
        let groups: Vec<usize> = if self.order_by.is_some() {
            if parallelism > 1 && subtask > 0 {
                // An ordered source has one reader; extra subtasks read nothing.
                Vec::new()
            } else {
                (0..self.row_groups.len()).collect()
            }
        } else {
            (subtask..self.row_groups.len())
                .step_by(parallelism)
                .collect()
        };
        // seq position -> file row, per selected row group.
        let mut segments = Vec::with_capacity(groups.len());
        let (mut seq, mut file_starts) = (0usize, Vec::with_capacity(self.row_groups.len()));
        let mut acc = 0;
        for n in &self.row_groups {
            file_starts.push(acc);
            acc += n;
        }
        for &g in &groups {
            segments.push((seq, file_starts[g]));
            seq += self.row_groups[g];
        }
        let builder = open(&self.path)?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), self.projection.iter().copied());
        let reader = builder
            .with_projection(mask)
            .with_batch_size(READ_BATCH)
            .with_row_groups(groups)
            .build()
            .map_err(|e| ConnectorError(format!("{}: {e}", self.path.display())))?;
        let mut prefixes = Vec::new();
        for (i, c) in self.columns.iter().enumerate() {
            let mut s = String::new();
            if i > 0 {
                s.push(',');
            }
            sluice_core::format::write_json_str(&mut s, c);
            s.push(':');
            prefixes.push(s.into_bytes());
        }
        Ok(Box::new(ParquetReader {
            f: self.clone_meta(),
            reader: Some(reader),
            segments,
            seq: 0,
            current: None,
            sorted: None,
            prefixes,
        }))
    }
}

/// What a reader needs of its factory.
struct Meta {
    path: PathBuf,
    columns: Vec<String>,
    event_time: String,
    order_by: Option<OrderBy>,
    json: bool,
}

impl ParquetSourceFactory {
    fn clone_meta(&self) -> Meta {
        Meta {
            path: self.path.clone(),
            columns: self.columns.clone(),
            event_time: self.event_time.clone(),
            order_by: self.order_by.clone(),
            json: self.json,
        }
    }
}

/// One column of a record batch, downcast once, ready to encode row by row.
enum Col {
    I8(ScalarBufferOf<Int8Type>),
    I16(ScalarBufferOf<Int16Type>),
    I32(ScalarBufferOf<Int32Type>),
    /// An i64 column scaled to ms: `v * mul / div` (Int64, timestamps, Date64).
    I64 {
        v: ScalarBufferOf<Int64Type>,
        mul: i64,
        div: i64,
    },
    /// Days since the epoch, encoded as ms.
    Date32(ScalarBufferOf<Date32Type>),
    U8(ScalarBufferOf<UInt8Type>),
    U16(ScalarBufferOf<UInt16Type>),
    U32(ScalarBufferOf<UInt32Type>),
    U64(ScalarBufferOf<UInt64Type>),
    F16(ScalarBufferOf<Float16Type>),
    F32(ScalarBufferOf<Float32Type>),
    F64(ScalarBufferOf<Float64Type>),
    Bool(BooleanArray),
    Str(StringArray),
    LargeStr(LargeStringArray),
    StrView(arrow_array::StringViewArray),
    Bin(BinaryArray),
    LargeBin(LargeBinaryArray),
    BinView(arrow_array::BinaryViewArray),
}

type ScalarBufferOf<T> = arrow_buffer::ScalarBuffer<<T as ArrowPrimitiveType>::Native>;

fn ts_scale(unit: &TimeUnit) -> (i64, i64) {
    match unit {
        TimeUnit::Second => (1000, 1),
        TimeUnit::Millisecond => (1, 1),
        TimeUnit::Microsecond => (1, 1000),
        TimeUnit::Nanosecond => (1, 1_000_000),
    }
}

impl Col {
    fn new(a: &ArrayRef) -> Col {
        match a.data_type() {
            DataType::Int8 => Col::I8(a.as_primitive::<Int8Type>().values().clone()),
            DataType::Int16 => Col::I16(a.as_primitive::<Int16Type>().values().clone()),
            DataType::Int32 => Col::I32(a.as_primitive::<Int32Type>().values().clone()),
            DataType::Int64 => Col::I64 {
                v: a.as_primitive::<Int64Type>().values().clone(),
                mul: 1,
                div: 1,
            },
            DataType::Date64 => Col::I64 {
                v: a.as_primitive::<Date64Type>().values().clone(),
                mul: 1,
                div: 1,
            },
            DataType::Timestamp(unit, _) => {
                let (mul, div) = ts_scale(unit);
                let v = match unit {
                    TimeUnit::Second => a.as_primitive::<TimestampSecondType>().values().clone(),
                    TimeUnit::Millisecond => a
                        .as_primitive::<TimestampMillisecondType>()
                        .values()
                        .clone(),
                    TimeUnit::Microsecond => a
                        .as_primitive::<TimestampMicrosecondType>()
                        .values()
                        .clone(),
                    TimeUnit::Nanosecond => {
                        a.as_primitive::<TimestampNanosecondType>().values().clone()
                    }
                };
                Col::I64 { v, mul, div }
            }
            DataType::Date32 => Col::Date32(a.as_primitive::<Date32Type>().values().clone()),
            DataType::UInt8 => Col::U8(a.as_primitive::<UInt8Type>().values().clone()),
            DataType::UInt16 => Col::U16(a.as_primitive::<UInt16Type>().values().clone()),
            DataType::UInt32 => Col::U32(a.as_primitive::<UInt32Type>().values().clone()),
            DataType::UInt64 => Col::U64(a.as_primitive::<UInt64Type>().values().clone()),
            DataType::Float16 => Col::F16(a.as_primitive::<Float16Type>().values().clone()),
            DataType::Float32 => Col::F32(a.as_primitive::<Float32Type>().values().clone()),
            DataType::Float64 => Col::F64(a.as_primitive::<Float64Type>().values().clone()),
            DataType::Boolean => Col::Bool(a.as_boolean().clone()),
            DataType::Utf8 => Col::Str(a.as_string::<i32>().clone()),
            DataType::LargeUtf8 => Col::LargeStr(a.as_string::<i64>().clone()),
            DataType::Utf8View => Col::StrView(a.as_string_view().clone()),
            DataType::Binary => Col::Bin(a.as_binary::<i32>().clone()),
            DataType::LargeBinary => Col::LargeBin(a.as_binary::<i64>().clone()),
            DataType::BinaryView => Col::BinView(a.as_binary_view().clone()),
            dt => unreachable!("type {dt} was rejected when the source was built"),
        }
    }

    /// The value as i64 (ms for times); for integer-like columns only.
    #[inline]
    fn int(&self, i: usize) -> i64 {
        match self {
            Col::I8(v) => v[i] as i64,
            Col::I16(v) => v[i] as i64,
            Col::I32(v) => v[i] as i64,
            Col::I64 { v, mul, div } => scale(v[i], *mul, *div),
            Col::Date32(v) => v[i] as i64 * 86_400_000,
            Col::U8(v) => v[i] as i64,
            Col::U16(v) => v[i] as i64,
            Col::U32(v) => v[i] as i64,
            Col::U64(v) => v[i] as i64,
            _ => 0,
        }
    }

    /// The value as f64, for numeric columns.
    #[inline]
    fn float(&self, i: usize) -> f64 {
        match self {
            Col::F16(v) => v[i].to_f64(),
            Col::F32(v) => v[i] as f64,
            Col::F64(v) => v[i],
            Col::U64(v) => v[i] as f64,
            c => c.int(i) as f64,
        }
    }

    /// Appends row `i` as a packed field of the type [`packed_type`] gives the column
    /// (the column has no null there).
    #[inline]
    fn write_packed(&self, i: usize, w: &mut Writer<'_>) {
        match self {
            Col::I8(v) => w.i32(v[i] as i32),
            Col::I16(v) => w.i32(v[i] as i32),
            Col::I32(v) => w.i32(v[i]),
            Col::F16(_) | Col::F32(_) | Col::F64(_) => w.f64(self.float(i)),
            Col::Bool(a) => w.bool(a.value(i)),
            Col::Str(a) => w.str(a.value(i)),
            Col::LargeStr(a) => w.str(a.value(i)),
            Col::StrView(a) => w.str(a.value(i)),
            Col::Bin(a) => w.bytes(a.value(i)),
            Col::LargeBin(a) => w.bytes(a.value(i)),
            Col::BinView(a) => w.bytes(a.value(i)),
            _ => w.i64(self.int(i)),
        };
    }

    /// Appends row `i` as a JSON value (the caller handles nulls).
    #[inline]
    fn write_json(&self, i: usize, buf: &mut Vec<u8>) {
        let r = match self {
            Col::F16(v) => serde_json::to_writer(&mut *buf, &v[i].to_f32()),
            Col::F32(v) => serde_json::to_writer(&mut *buf, &v[i]),
            Col::F64(v) => serde_json::to_writer(&mut *buf, &v[i]),
            Col::U64(v) => serde_json::to_writer(&mut *buf, &v[i]),
            Col::Bool(a) => {
                buf.extend_from_slice(if a.value(i) { b"true" } else { b"false" });
                Ok(())
            }
            Col::Str(a) => serde_json::to_writer(&mut *buf, a.value(i)),
            Col::LargeStr(a) => serde_json::to_writer(&mut *buf, a.value(i)),
            Col::StrView(a) => serde_json::to_writer(&mut *buf, a.value(i)),
            Col::Bin(a) => json_bytes(buf, a.value(i)),
            Col::LargeBin(a) => json_bytes(buf, a.value(i)),
            Col::BinView(a) => json_bytes(buf, a.value(i)),
            _ => serde_json::to_writer(&mut *buf, &self.int(i)),
        };
        debug_assert!(r.is_ok());
    }
}

#[inline]
fn scale(v: i64, mul: i64, div: i64) -> i64 {
    if div == 1 {
        v.saturating_mul(mul)
    } else {
        v.div_euclid(div)
    }
}

/// Binary in JSON: a string if it is UTF-8, else an array of byte values.
fn json_bytes(buf: &mut Vec<u8>, b: &[u8]) -> serde_json::Result<()> {
    match std::str::from_utf8(b) {
        Ok(s) => serde_json::to_writer(&mut *buf, s),
        Err(_) => serde_json::to_writer(&mut *buf, b),
    }
}

/// A record batch of the file, ready to emit.
struct Chunk {
    /// Sequence position (within this reader's rows) of the chunk's first row.
    start: usize,
    len: usize,
    time: Col,
    cols: Vec<(Col, Option<arrow_buffer::NullBuffer>)>,
    /// Extra columns for `order_by`, in the expression's column order.
    order: Vec<Col>,
}

struct Sorted {
    chunks: Vec<Chunk>,
    starts: Vec<usize>,
    order: Vec<u32>,
    pos: usize,
}

struct ParquetReader {
    f: Meta,
    reader: Option<ParquetRecordBatchReader>,
    /// (sequence start, file row start) per selected row group.
    segments: Vec<(usize, usize)>,
    /// Sequence position of the next row the reader returns.
    seq: usize,
    /// Streaming mode: the chunk being emitted and the next row in it.
    current: Option<(Chunk, usize)>,
    sorted: Option<Sorted>,
    /// `"name":` (with a leading comma after the first) per value column, for JSON.
    prefixes: Vec<Vec<u8>>,
}

impl ParquetReader {
    fn file_row(&self, seq: usize) -> usize {
        let k = self.segments.partition_point(|s| s.0 <= seq);
        match k {
            0 => seq,
            k => self.segments[k - 1].1 + (seq - self.segments[k - 1].0),
        }
    }

    fn err_at(&self, seq: usize, what: String) -> ConnectorError {
        ConnectorError(format!(
            "{}: row {} (0-based): {what}",
            self.f.path.display(),
            self.file_row(seq)
        ))
    }

    /// Reads the next record batch from the file and checks it; `None` at the end.
    fn next_chunk(&mut self) -> Result<Option<Chunk>, ConnectorError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(None);
        };
        let rb: RecordBatch = match reader.next() {
            None => {
                self.reader = None;
                return Ok(None);
            }
            Some(r) => r.map_err(|e| {
                ConnectorError(format!(
                    "{}: near row {}: {e}",
                    self.f.path.display(),
                    self.file_row(self.seq)
                ))
            })?,
        };
        let start = self.seq;
        let len = rb.num_rows();
        self.seq += len;
        let col = |name: &str| rb.column_by_name(name).expect("projected column").clone();
        let time_a = col(&self.f.event_time);
        if let Some(n) = time_a.nulls().filter(|n| n.null_count() > 0) {
            let r = n.iter().position(|v| !v).expect("a null");
            return Err(self.err_at(
                start + r,
                format!("event time column '{}' is null", self.f.event_time),
            ));
        }
        let mut cols = Vec::with_capacity(self.f.columns.len());
        for name in &self.f.columns {
            let a = col(name);
            let nulls = a.nulls().filter(|n| n.null_count() > 0).cloned();
            // A packed value holds no null, and its i64 not every u64 (JSON holds both).
            if !self.f.json {
                if let Some(n) = &nulls {
                    let r = n.iter().position(|v| !v).expect("a null");
                    return Err(self.err_at(
                        start + r,
                        format!("column '{name}' is null, which a packed value cannot hold (use value_format: json, where it is null)"),
                    ));
                }
                if let Some(v) = a.as_primitive_opt::<UInt64Type>()
                    && let Some(r) = v.values().iter().position(|&x| x > i64::MAX as u64)
                {
                    return Err(self.err_at(
                        start + r,
                        format!(
                            "column '{name}' holds {}, which does not fit in an i64",
                            v.value(r)
                        ),
                    ));
                }
            }
            cols.push((Col::new(&a), nulls));
        }
        let mut order = Vec::new();
        if let Some(ob) = &self.f.order_by {
            for name in &ob.columns {
                let a = col(name);
                if let Some(n) = a.nulls().filter(|n| n.null_count() > 0) {
                    let r = n.iter().position(|v| !v).expect("a null");
                    return Err(self.err_at(
                        start + r,
                        format!("column '{name}' of order_by '{}' is null", ob.text),
                    ));
                }
                order.push(Col::new(&a));
            }
        }
        Ok(Some(Chunk {
            start,
            len,
            time: Col::new(&time_a),
            cols,
            order,
        }))
    }

    /// Loads the whole input and sorts it by the `order_by` expression.
    fn load_sorted(&mut self) -> Result<Sorted, ConnectorError> {
        let ob = self.f.order_by.clone().expect("order_by");
        let t0 = std::time::Instant::now();
        let mut chunks = Vec::new();
        while let Some(c) = self.next_chunk()? {
            chunks.push(c);
        }
        let total: usize = chunks.iter().map(|c| c.len).sum();
        let t_read = t0.elapsed();
        if total > u32::MAX as usize {
            return Err(ConnectorError(format!(
                "{}: {total} rows are too many to sort in memory",
                self.f.path.display()
            )));
        }
        // Keys mapped to u64 in the same order, then a stable radix sort: ties keep
        // row order.
        let mut keys: Vec<(u64, u32)> = Vec::with_capacity(total);
        for c in &chunks {
            let rows = (c.start as u32)..;
            if ob.float {
                let cols: Vec<Vec<f64>> = c
                    .order
                    .iter()
                    .map(|o| (0..c.len).map(|i| o.float(i)).collect())
                    .collect();
                let k = ob.expr.eval_vec_f64(&cols, c.len);
                keys.extend(k.into_iter().map(f64_key).zip(rows));
            } else {
                let cols: Vec<Vec<i64>> = c
                    .order
                    .iter()
                    .map(|o| (0..c.len).map(|i| o.int(i)).collect())
                    .collect();
                let k = ob.expr.eval_vec_i64(&cols, c.len).map_err(|i| {
                    self.err_at(
                        c.start + i,
                        format!("order_by '{}' overflows or divides by zero", ob.text),
                    )
                })?;
                keys.extend(k.into_iter().map(|k| (k as u64) ^ (1 << 63)).zip(rows));
            }
        }
        let t_eval = t0.elapsed();
        let order = radix_sort(keys);
        for c in &mut chunks {
            c.order.clear();
        }
        tracing::debug!(
            "{}: read {total} rows in {t_read:?}, evaluated '{}' in {:?}, sorted in {:?}",
            self.f.path.display(),
            ob.text,
            t_eval - t_read,
            t0.elapsed() - t_eval
        );
        let starts = chunks.iter().map(|c| c.start).collect();
        Ok(Sorted {
            chunks,
            starts,
            order,
            pos: 0,
        })
    }
}

/// Maps an f64 to a u64 with the same order as `f64::total_cmp`.
#[inline]
fn f64_key(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 { !b } else { b ^ (1 << 63) }
}

/// Sorts `(key, row)` pairs (rows increasing) by key, stably, and returns the rows in
/// order: an LSD radix sort over the significant bits of `key - min`, on `key << row_bits
/// | row` packed in a u64 when that fits (it does for timestamps in ms and millions of
/// rows), else on the pairs.
fn radix_sort(keys: Vec<(u64, u32)>) -> Vec<u32> {
    let Some(min) = keys.iter().map(|k| k.0).min() else {
        return Vec::new();
    };
    let max = keys.iter().map(|k| k.0 - min).max().unwrap_or(0);
    let key_bits = 64 - max.leading_zeros();
    let row_bits = 64 - (keys.len() as u64).leading_zeros();
    if key_bits + row_bits <= 64 {
        let packed: Vec<u64> = keys
            .iter()
            .map(|&(k, r)| ((k - min) << row_bits) | r as u64)
            .collect();
        drop(keys);
        let sorted = lsd(packed, |v| v >> row_bits, key_bits);
        let mask = (1u64 << row_bits) - 1;
        sorted.into_iter().map(|v| (v & mask) as u32).collect()
    } else {
        lsd(keys, |k| k.0 - min, key_bits)
            .into_iter()
            .map(|k| k.1)
            .collect()
    }
}

/// Stable LSD radix sort of `v` by the low `bits` bits of `key`, 11 bits a pass.
fn lsd<T: Copy + Default>(mut v: Vec<T>, key: impl Fn(T) -> u64, bits: u32) -> Vec<T> {
    const DIGIT: u32 = 11;
    let mut tmp = vec![T::default(); v.len()];
    let mut shift = 0;
    while shift < bits {
        let mut pos = vec![0usize; 1 << DIGIT];
        for &x in &v {
            pos[((key(x) >> shift) & ((1 << DIGIT) - 1)) as usize] += 1;
        }
        if pos.iter().all(|&c| c == 0 || c == v.len()) {
            shift += DIGIT;
            continue;
        }
        let mut acc = 0;
        for p in pos.iter_mut() {
            let c = *p;
            *p = acc;
            acc += c;
        }
        for &x in &v {
            let d = ((key(x) >> shift) & ((1 << DIGIT) - 1)) as usize;
            tmp[pos[d]] = x;
            pos[d] += 1;
        }
        std::mem::swap(&mut v, &mut tmp);
        shift += DIGIT;
    }
    v
}

#[inline]
fn emit(chunk: &Chunk, i: usize, json: bool, prefixes: &[Vec<u8>], batch: &mut Batch) {
    let ts = chunk.time.int(i);
    batch.push_with(ts, b"", |buf| {
        if json {
            buf.push(b'{');
            for ((c, nulls), p) in chunk.cols.iter().zip(prefixes) {
                buf.extend_from_slice(p);
                if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                    buf.extend_from_slice(b"null");
                } else {
                    c.write_json(i, buf);
                }
            }
            buf.push(b'}');
        } else {
            let mut w = Writer::new(buf);
            for (c, _) in &chunk.cols {
                c.write_packed(i, &mut w);
            }
        }
    });
}

impl SourceReader for ParquetReader {
    fn poll_batch(
        &mut self,
        batch: &mut Batch,
        max_events: usize,
    ) -> Result<SourcePoll, ConnectorError> {
        let json = self.f.json;
        if self.f.order_by.is_some() {
            if self.sorted.is_none() {
                self.sorted = Some(self.load_sorted()?);
            }
            let s = self.sorted.as_mut().expect("loaded");
            if s.pos >= s.order.len() {
                return Ok(SourcePoll::End);
            }
            let end = (s.pos + max_events.max(1)).min(s.order.len());
            let mut k = s.starts.len().saturating_sub(1);
            for &row in &s.order[s.pos..end] {
                let row = row as usize;
                // Rows of neighbouring order often share a chunk: try the last one first.
                if !(s.starts[k] <= row && row < s.starts[k] + s.chunks[k].len) {
                    k = s.starts.partition_point(|&st| st <= row) - 1;
                }
                emit(&s.chunks[k], row - s.starts[k], json, &self.prefixes, batch);
            }
            s.pos = end;
            return Ok(SourcePoll::Data);
        }
        let mut emitted = 0;
        let max = max_events.max(1);
        while emitted < max {
            if self.current.as_ref().is_none_or(|(c, i)| *i >= c.len) {
                match self.next_chunk()? {
                    Some(c) => self.current = Some((c, 0)),
                    None => {
                        self.current = None;
                        break;
                    }
                }
            }
            let (c, i) = self.current.as_mut().expect("a chunk");
            let end = (*i + (max - emitted)).min(c.len);
            for r in *i..end {
                emit(c, r, json, &self.prefixes, batch);
            }
            emitted += end - *i;
            *i = end;
        }
        Ok(if emitted == 0 {
            SourcePoll::End
        } else {
            SourcePoll::Data
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(keys: Vec<u64>) {
        let pairs: Vec<(u64, u32)> = keys
            .iter()
            .enumerate()
            .map(|(i, &k)| (k, i as u32))
            .collect();
        let mut want: Vec<u32> = (0..keys.len() as u32).collect();
        want.sort_by_key(|&i| keys[i as usize]);
        assert_eq!(radix_sort(pairs), want);
    }

    #[test]
    fn radix_sort_is_a_stable_sort() {
        let mut x: u64 = 99;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        check(vec![]);
        check(vec![5]);
        check((0..5000).map(|_| rnd() % 100).collect()); // many ties
        check((0..5000).map(|_| rnd() % (1 << 40) + (1 << 63)).collect()); // packed path
        check((0..5000).map(|_| rnd()).collect()); // full range: pairs path
        let floats = [
            3.5,
            -0.0,
            0.0,
            -7.25,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -1e-300,
            3.5,
        ];
        let keys: Vec<u64> = floats.iter().map(|&f| f64_key(f)).collect();
        let mut want: Vec<u32> = (0..floats.len() as u32).collect();
        want.sort_by(|&a, &b| floats[a as usize].total_cmp(&floats[b as usize]));
        assert_eq!(
            radix_sort(
                keys.iter()
                    .enumerate()
                    .map(|(i, &k)| (k, i as u32))
                    .collect()
            ),
            want
        );
    }
}
