//! Tests of the connectors through the public entry points.

use crate::{resolve_dataset, sink_factory, source_factory};
use arrow_array::builder::{BinaryBuilder, BooleanBuilder, Int32Builder, StringBuilder};
use arrow_array::{
    ArrayRef, Date32Array, Float32Array, Int32Array, Int64Array, RecordBatch,
    TimestampMicrosecondArray, TimestampMillisecondArray, UInt16Array,
};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde_json::{Value, json};
use sluice_core::batch::Batch;
use sluice_core::connector::{SourceFactory, SourcePoll};
use sluice_core::format::{PackedField, PackedSchema, ValueFormat};
use sluice_packed::{FieldType, Reader};
use std::path::Path;
use std::sync::Arc;

fn write_parquet(path: &Path, batch: &RecordBatch, rows_per_group: usize) {
    let f = std::fs::File::create(path).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .build();
    let mut w = ArrowWriter::try_new(f, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// Reads every event of subtask `subtask` of `parallelism`, in small polls.
fn drain(f: &Arc<dyn SourceFactory>, subtask: usize, parallelism: usize) -> Result<Batch, String> {
    let mut r = f.create_reader(subtask, parallelism).map_err(|e| e.0)?;
    let mut b = Batch::new();
    loop {
        match r.poll_batch(&mut b, 7).map_err(|e| e.0)? {
            SourcePoll::Data => {}
            SourcePoll::End => return Ok(b),
            SourcePoll::Pending => panic!("files never pend"),
        }
    }
}

fn source(connector: &str, options: Value, dir: &Path) -> Result<Arc<dyn SourceFactory>, String> {
    source_factory(connector, &options, dir, "sources[0]").map_err(|e| e.0)
}

const T0: i64 = 1_700_000_000_000;

/// A small table of every supported kind, with a null in `maybe` at row 2.
fn mixed_table() -> RecordBatch {
    let n = 5;
    let ts: Vec<i64> = (0..n).map(|i| (T0 + i * 1000) * 1000 + 999).collect();
    let mut maybe = Int32Builder::new();
    let mut name = StringBuilder::new();
    let mut blob = BinaryBuilder::new();
    let mut ok = BooleanBuilder::new();
    for i in 0..n {
        if i == 2 {
            maybe.append_null();
        } else {
            maybe.append_value(i as i32 * 10);
        }
        name.append_value(format!("n\"{i}"));
        blob.append_value([i as u8, 0xff]);
        ok.append_value(i % 2 == 0);
    }
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("ts", Arc::new(TimestampMicrosecondArray::from(ts))),
        (
            "day",
            Arc::new(Date32Array::from(vec![
                19_000, 19_001, 19_002, 19_003, 19_004,
            ])),
        ),
        ("delay", Arc::new(Int32Array::from(vec![-5, 0, 7, 12, 3]))),
        (
            "big",
            Arc::new(Int64Array::from(vec![1i64 << 40, -1, 0, 5, 6])),
        ),
        (
            "small",
            Arc::new(UInt16Array::from(vec![1u16, 2, 65535, 4, 5])),
        ),
        (
            "ratio",
            Arc::new(Float32Array::from(vec![0.5f32, 1.5, -2.0, 0.25, 8.0])),
        ),
        ("ok", Arc::new(ok.finish())),
        ("name", Arc::new(name.finish())),
        ("blob", Arc::new(blob.finish())),
        ("maybe", Arc::new(maybe.finish())),
    ];
    RecordBatch::try_from_iter(cols).unwrap()
}

#[test]
fn parquet_packed_values_and_event_times() {
    let dir = tempfile::tempdir().unwrap();
    write_parquet(&dir.path().join("t.parquet"), &mixed_table(), 1000);
    let f = source(
        "parquet",
        json!({"path": "t.parquet", "event_time": "ts",
               "columns": ["name", "delay", "big", "small", "ratio", "ok", "blob", "day", "ts"]}),
        dir.path(),
    )
    .unwrap();
    let types = [
        ("name", FieldType::Str),
        ("delay", FieldType::I32),
        ("big", FieldType::I64),
        ("small", FieldType::I64),
        ("ratio", FieldType::F64),
        ("ok", FieldType::Bool),
        ("blob", FieldType::Bytes),
        ("day", FieldType::I64),
        ("ts", FieldType::I64),
    ];
    let want = PackedSchema {
        fields: types
            .iter()
            .map(|(n, t)| PackedField {
                name: n.to_string(),
                ty: *t,
            })
            .collect(),
    };
    assert_eq!(f.value_format(), ValueFormat::Packed(want));
    assert_eq!(f.max_parallelism(), 1);
    let b = drain(&f, 0, 1).unwrap();
    assert_eq!(b.len(), 5);
    let delays = [-5, 0, 7, 12, 3];
    let bigs = [1i64 << 40, -1, 0, 5, 6];
    let smalls = [1i64, 2, 65535, 4, 5];
    let ratios = [0.5, 1.5, -2.0, 0.25, 8.0];
    for (i, e) in b.iter().enumerate() {
        // Microseconds truncate to ms; naive timestamps are UTC.
        let ts = T0 + i as i64 * 1000;
        assert_eq!(e.timestamp, ts);
        assert_eq!(e.key, b"");
        let mut r = Reader::new(e.value);
        assert_eq!(r.str().unwrap(), format!("n\"{i}"));
        assert_eq!(r.i32().unwrap(), delays[i]);
        assert_eq!(r.i64().unwrap(), bigs[i]);
        assert_eq!(r.i64().unwrap(), smalls[i]);
        assert_eq!(r.f64().unwrap(), ratios[i]);
        assert_eq!(r.bool().unwrap(), i % 2 == 0);
        assert_eq!(r.bytes().unwrap(), &[i as u8, 0xff]);
        assert_eq!(r.i64().unwrap(), (19_000 + i as i64) * 86_400_000);
        assert_eq!(r.i64().unwrap(), ts);
        assert_eq!(r.position(), e.value.len());
    }
}

#[test]
fn parquet_nulls_are_errors_in_packed_and_null_in_json() {
    let dir = tempfile::tempdir().unwrap();
    write_parquet(&dir.path().join("t.parquet"), &mixed_table(), 1000);
    // Default columns: all of them, including `maybe` with its null at row 2.
    let f = source(
        "parquet",
        json!({"path": "t.parquet", "event_time": "ts"}),
        dir.path(),
    )
    .unwrap();
    let e = drain(&f, 0, 1).unwrap_err();
    assert!(e.contains("t.parquet: row 2"), "{e}");
    assert!(e.contains("column 'maybe' is null"), "{e}");
    assert!(e.contains("value_format: json"), "{e}");

    let f = source(
        "parquet",
        json!({"path": "t.parquet", "event_time": "day", "columns": ["maybe", "name", "blob", "ratio", "ok", "day"],
               "value_format": "json"}),
        dir.path(),
    )
    .unwrap();
    assert_eq!(f.value_format(), ValueFormat::Json);
    let b = drain(&f, 0, 1).unwrap();
    let rows: Vec<Value> = b
        .iter()
        .map(|e| serde_json::from_slice(e.value).unwrap())
        .collect();
    assert_eq!(b.timestamp(1), 19_001 * 86_400_000);
    assert_eq!(
        rows[0],
        json!({"maybe": 0, "name": "n\"0", "blob": [0, 255], "ratio": 0.5, "ok": true, "day": 19_000i64 * 86_400_000})
    );
    assert_eq!(rows[2]["maybe"], Value::Null);
    assert_eq!(rows[3]["maybe"], json!(30));
    // Field order is the columns' order.
    let text = std::str::from_utf8(b.value(0)).unwrap();
    assert!(text.starts_with("{\"maybe\":0,\"name\":"), "{text}");
}

#[test]
fn parquet_u64_beyond_i64_is_an_error_in_packed_and_exact_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let t = RecordBatch::try_from_iter(vec![
        ("t", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        (
            "n",
            Arc::new(arrow_array::UInt64Array::from(vec![5, u64::MAX, 7])) as ArrayRef,
        ),
    ])
    .unwrap();
    write_parquet(&dir.path().join("u.parquet"), &t, 100);
    let o = |fmt: &str| json!({"path": "u.parquet", "event_time": "t", "value_format": fmt});
    let e = drain(&source("parquet", o("packed"), dir.path()).unwrap(), 0, 1).unwrap_err();
    assert!(
        e.contains("u.parquet: row 1 (0-based): column 'n' holds 18446744073709551615, which does not fit in an i64"),
        "{e}"
    );
    let b = drain(&source("parquet", o("json"), dir.path()).unwrap(), 0, 1).unwrap();
    assert_eq!(b.value(1), br#"{"t":2,"n":18446744073709551615}"#);
}

/// A table of `n` rows: `id` (row number), `date` (timestamp ms, many ties), `delay`.
fn flights_like(n: usize) -> (RecordBatch, Vec<i64>, Vec<i32>) {
    let mut x: u64 = 12345;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let dates: Vec<i64> = (0..n).map(|_| T0 + (rnd() % 50) as i64 * 60_000).collect();
    let delays: Vec<i32> = (0..n).map(|_| (rnd() % 21) as i32 - 10).collect();
    let b = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
        ),
        (
            "date",
            Arc::new(TimestampMillisecondArray::from(dates.clone())),
        ),
        ("delay", Arc::new(Int32Array::from(delays.clone()))),
        (
            "origin",
            Arc::new(arrow_array::StringArray::from_iter_values(
                (0..n).map(|i| format!("A{}", i % 7)),
            )) as ArrayRef,
        ),
    ])
    .unwrap();
    (b, dates, delays)
}

fn ids(b: &Batch) -> Vec<i64> {
    b.iter()
        .map(|e| Reader::new(e.value).i64().unwrap())
        .collect()
}

#[test]
fn parquet_order_by_sorts_stably() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    let (t, dates, delays) = flights_like(n);
    write_parquet(&dir.path().join("f.parquet"), &t, 700);
    let f = source(
        "parquet",
        json!({"path": "f.parquet", "event_time": "date", "columns": ["id", "origin"],
               "order_by": "date + delay * 60000"}),
        dir.path(),
    )
    .unwrap();
    assert_eq!(f.max_parallelism(), 1);
    let b = drain(&f, 0, 1).unwrap();
    let mut want: Vec<usize> = (0..n).collect();
    want.sort_by_key(|&i| dates[i] + delays[i] as i64 * 60_000); // stable: ties by row
    assert_eq!(ids(&b), want.iter().map(|&i| i as i64).collect::<Vec<_>>());
    for (e, &i) in b.iter().zip(&want) {
        assert_eq!(
            e.timestamp, dates[i],
            "the event time is the event_time column"
        );
    }
    // Parenthesised, with subtraction and division.
    let f = source(
        "parquet",
        json!({"path": "f.parquet", "event_time": "date", "columns": ["id"], "order_by": "-(delay - 3) / 2"}),
        dir.path(),
    )
    .unwrap();
    let b = drain(&f, 0, 1).unwrap();
    let mut want2: Vec<usize> = (0..n).collect();
    want2.sort_by_key(|&i| -(delays[i] as i64 - 3) / 2);
    assert_eq!(ids(&b), want2.iter().map(|&i| i as i64).collect::<Vec<_>>());
}

#[test]
fn parquet_subtasks_share_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let (t, dates, _) = flights_like(1000);
    write_parquet(&dir.path().join("f.parquet"), &t, 100);
    let f = source(
        "parquet",
        json!({"path": "f.parquet", "event_time": "date", "columns": ["id"]}),
        dir.path(),
    )
    .unwrap();
    assert_eq!(f.max_parallelism(), 10);
    let mut all = Vec::new();
    for s in 0..3 {
        let b = drain(&f, s, 3).unwrap();
        let got = ids(&b);
        let want: Vec<i64> = (s..10)
            .step_by(3)
            .flat_map(|g| (g * 100) as i64..(g * 100 + 100) as i64)
            .collect();
        assert_eq!(got, want, "subtask {s}");
        for e in b.iter() {
            assert_eq!(
                e.timestamp,
                dates[Reader::new(e.value).i64().unwrap() as usize]
            );
        }
        all.extend(got);
    }
    all.sort();
    assert_eq!(all, (0..1000).collect::<Vec<i64>>());
}

#[test]
fn parquet_null_error_names_the_file_row_across_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = Int32Builder::new();
    for i in 0..300 {
        if i == 250 {
            v.append_null()
        } else {
            v.append_value(i)
        }
    }
    let t = RecordBatch::try_from_iter(vec![
        (
            "t",
            Arc::new(Int64Array::from((0..300).collect::<Vec<i64>>())) as ArrayRef,
        ),
        ("v", Arc::new(v.finish()) as ArrayRef),
    ])
    .unwrap();
    write_parquet(&dir.path().join("n.parquet"), &t, 100);
    let f = source(
        "parquet",
        json!({"path": "n.parquet", "event_time": "t"}),
        dir.path(),
    )
    .unwrap();
    // Subtask 1 of 2 reads row groups 1 (rows 100..200) and nothing else; subtask 0 reads 0 and 2.
    assert!(drain(&f, 1, 2).is_ok());
    let e = drain(&f, 0, 2).unwrap_err();
    assert!(
        e.contains("row 250 (0-based)") && e.contains("column 'v'"),
        "{e}"
    );
}

#[test]
fn parquet_option_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (t, _, _) = flights_like(10);
    write_parquet(&dir.path().join("f.parquet"), &t, 100);
    let err = |o: Value| source("parquet", o, dir.path()).err().expect("an error");

    let e = err(json!({"path": "f.parquet", "event_time": "dat"}));
    assert!(
        e.starts_with("sources[0].event_time: column 'dat' not found"),
        "{e}"
    );
    assert!(e.ends_with("columns are: id, date, delay, origin"), "{e}");
    let e = err(json!({"path": "f.parquet", "event_time": "date", "columns": ["id", "nope"]}));
    assert!(
        e.starts_with("sources[0].columns[1]: column 'nope' not found"),
        "{e}"
    );
    let e = err(json!({"path": "f.parquet", "event_time": "origin"}));
    assert!(
        e.starts_with("sources[0].event_time: column 'origin' has type Utf8"),
        "{e}"
    );
    let e = err(json!({"path": "f.parquet", "event_time": "date", "order_by": "date + * 3"}));
    assert!(
        e.starts_with("sources[0].order_by: in 'date + * 3' at position 8"),
        "{e}"
    );
    let e = err(json!({"path": "f.parquet", "event_time": "date", "order_by": "date + dlay"}));
    assert!(
        e.starts_with("sources[0].order_by: column 'dlay' not found"),
        "{e}"
    );
    let e = err(json!({"path": "f.parquet", "event_time": "date", "order_by": "origin * 2"}));
    assert!(
        e.contains("column 'origin' has type Utf8, not a number"),
        "{e}"
    );
    let e = err(json!({"path": "f.parquet", "event_time": "date", "colums": ["id"]}));
    assert!(
        e.starts_with("sources[0].colums: unknown field `colums`"),
        "{e}"
    );
    let e = err(json!({"path": "f.parquet", "event_time": "date", "value_format": "xml"}));
    assert!(
        e.starts_with("sources[0].value_format: unknown variant `xml`"),
        "{e}"
    );
    let e = err(json!({"path": "missing.parquet", "event_time": "date"}));
    assert!(
        e.starts_with("sources[0].path: ") && e.contains("missing.parquet: no such file"),
        "{e}"
    );
    let e = err(json!({"event_time": "date"}));
    assert!(e.contains("missing field `path`"), "{e}");

    // An unsupported column type.
    let list =
        arrow_array::ListArray::from_iter_primitive::<arrow_array::types::Int32Type, _, _>(vec![
            Some(vec![Some(1)]),
        ]);
    let t = RecordBatch::try_from_iter(vec![
        ("t", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
        ("l", Arc::new(list) as ArrayRef),
    ])
    .unwrap();
    write_parquet(&dir.path().join("l.parquet"), &t, 100);
    let e = source(
        "parquet",
        json!({"path": "l.parquet", "event_time": "t"}),
        dir.path(),
    )
    .err()
    .unwrap();
    assert!(
        e.starts_with("sources[0].columns[1]: column 'l' has type List"),
        "{e}"
    );
    assert!(
        source(
            "parquet",
            json!({"path": "l.parquet", "event_time": "t", "columns": ["t"]}),
            dir.path()
        )
        .is_ok()
    );

    let e = source("kafka", json!({}), dir.path()).err().unwrap();
    assert_eq!(
        e,
        "sources[0]: unknown source connector 'kafka'; known source connectors are: parquet, csv, jsonl"
    );
    let e = sink_factory("s3", &json!({}), dir.path(), "sinks[1]")
        .err()
        .unwrap()
        .0;
    assert_eq!(
        e,
        "sinks[1]: unknown sink connector 's3'; known sink connectors are: jsonl, stdout"
    );
}

#[test]
fn sha256_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jsonl"), "{\"t\": 1}\n").unwrap();
    let good = crate::dataset::sha256_file(&dir.path().join("a.jsonl")).unwrap();
    // As `printf '{"t": 1}\n' | sha256sum` gives it.
    assert_eq!(
        good,
        "1f0815cc7721e69167e468ea09127f28bc7fd819ffc4304d71f2095b50d89dda"
    );
    let o = |sha: &str| json!({"path": "a.jsonl", "sha256": sha, "event_time": {"field": "t", "format": "epoch_ms"}});
    assert!(source("jsonl", o(&good.to_uppercase()), dir.path()).is_ok());
    let bad = "0".repeat(64);
    let e = source("jsonl", o(&bad), dir.path()).err().unwrap();
    assert!(e.starts_with("sources[0].path: "), "{e}");
    assert!(
        e.contains(&format!(
            "SHA-256 mismatch: expected {bad}, file has {good}"
        )),
        "{e}"
    );
    let e = source("jsonl", o("abc"), dir.path()).err().unwrap();
    assert!(e.contains("not 64 hex digits"), "{e}");
    let e = resolve_dataset("npm:vega-datasets@3.2.1/data/x.csv", None, dir.path())
        .unwrap_err()
        .0;
    assert!(e.contains("a sha256 is required"), "{e}");
}

#[test]
fn csv_text_and_packed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.csv"),
        "when,origin,delay\n2024-01-02 03:04,ORD,5\n2024-01-02 03:05,\"S,FO\",-2\n",
    )
    .unwrap();
    let f = source(
        "csv",
        json!({"path": "a.csv", "event_time": {"column": "when", "format": "%Y-%m-%d %H:%M"}}),
        dir.path(),
    )
    .unwrap();
    assert_eq!(f.value_format(), ValueFormat::Text);
    let b = drain(&f, 0, 1).unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b.timestamp(0), 1_704_164_640_000);
    assert_eq!(b.timestamp(1), 1_704_164_700_000);
    assert_eq!(b.value(0), b"2024-01-02 03:04,ORD,5");
    assert_eq!(b.value(1), b"2024-01-02 03:05,S,FO,-2");

    let packed = json!({"path": "a.csv", "event_time": {"column": 0, "format": "%Y-%m-%d %H:%M"},
        "value_format": "packed",
        "schema": [{"name": "when", "type": "str"}, {"name": "origin", "type": "str"}, {"name": "delay", "type": "i32"}]});
    let f = source("csv", packed.clone(), dir.path()).unwrap();
    let b = drain(&f, 0, 1).unwrap();
    let mut r = Reader::new(b.value(1));
    assert_eq!(r.str().unwrap(), "2024-01-02 03:05");
    assert_eq!(r.str().unwrap(), "S,FO");
    assert_eq!(r.i32().unwrap(), -2);

    // A bad row: the error names file, line and field.
    std::fs::write(
        dir.path().join("a.csv"),
        "when,origin,delay\n2024-01-02 03:04,ORD,5\n2024-01-02 03:05,SFO,late\n",
    )
    .unwrap();
    let e = drain(&source("csv", packed, dir.path()).unwrap(), 0, 1).unwrap_err();
    assert!(
        e.contains("a.csv:3: field 'delay' (i32): 'late' is not an i32"),
        "{e}"
    );
    // A bad time.
    std::fs::write(dir.path().join("b.csv"), "1,a\n2,b\nx,c\n").unwrap();
    let f = source("csv", json!({"path": "b.csv", "has_header": false, "event_time": {"column": 0, "format": "epoch_s"}}), dir.path()).unwrap();
    let e = drain(&f, 0, 1).unwrap_err();
    assert!(
        e.contains("b.csv:3: event time (column 0): 'x' is not a number of epoch seconds"),
        "{e}"
    );
    // Tab-separated, epoch ms.
    std::fs::write(dir.path().join("c.tsv"), "t\tv\n5\thello\n").unwrap();
    let f = source("csv", json!({"path": "c.tsv", "delimiter": "\t", "event_time": {"column": "t", "format": "epoch_ms"}}), dir.path()).unwrap();
    let b = drain(&f, 0, 1).unwrap();
    assert_eq!((b.timestamp(0), b.value(0)), (5, &b"5\thello"[..]));

    let err = |o: Value| source("csv", o, dir.path()).err().unwrap();
    let e = err(json!({"path": "a.csv", "event_time": {"column": "wen", "format": "epoch_ms"}}));
    assert!(
        e.starts_with("sources[0].event_time.column: column 'wen' not found")
            && e.ends_with("columns are: when, origin, delay"),
        "{e}"
    );
    let e = err(json!({"path": "a.csv", "event_time": {"column": "when", "format": "iso"}}));
    assert!(
        e.starts_with("sources[0].event_time.format: unknown time format 'iso'"),
        "{e}"
    );
    let e = err(
        json!({"path": "a.csv", "value_format": "packed", "event_time": {"column": 0, "format": "epoch_ms"}}),
    );
    assert!(
        e.starts_with("sources[0].schema: value_format packed needs a schema"),
        "{e}"
    );
    let e = err(
        json!({"path": "a.csv", "value_format": "packed", "schema": [{"name": "a", "type": "int"}], "event_time": {"column": 0, "format": "epoch_ms"}}),
    );
    assert!(
        e.starts_with("sources[0].schema[0].type: unknown type 'int'"),
        "{e}"
    );
    let e = err(
        json!({"path": "a.csv", "event_time": {"column": 0, "format": "epoch_ms", "tz": "UTC"}}),
    );
    assert!(
        e.starts_with("sources[0].event_time.tz: unknown field `tz`"),
        "{e}"
    );
}

#[test]
fn jsonl_source() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("e.jsonl"),
        "{\"t\": \"2024-01-02T03:04:05.678Z\", \"x\": [1, {\"t\": 0}]}\n\n   \n{\"x\": 2, \"t\": \"1970-01-01T00:00:01+01:00\"}\r\n",
    )
    .unwrap();
    let f = source(
        "jsonl",
        json!({"path": "e.jsonl", "event_time": {"field": "t", "format": "rfc3339"}}),
        dir.path(),
    )
    .unwrap();
    assert_eq!(f.value_format(), ValueFormat::Json);
    let b = drain(&f, 0, 1).unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b.timestamp(0), 1_704_164_645_678);
    assert_eq!(b.timestamp(1), -3_599_000);
    assert_eq!(b.value(1), br#"{"x": 2, "t": "1970-01-01T00:00:01+01:00"}"#);

    std::fs::write(
        dir.path().join("m.jsonl"),
        "{\"ts\": 5}\n{\"ts\": 6.4}\n\n{\"ts\": 7, }\n",
    )
    .unwrap();
    let f = source(
        "jsonl",
        json!({"path": "m.jsonl", "event_time": {"field": "ts", "format": "epoch_ms"}}),
        dir.path(),
    )
    .unwrap();
    let e = drain(&f, 0, 1).unwrap_err();
    assert!(e.contains("m.jsonl:4: invalid JSON: trailing comma"), "{e}");
    std::fs::write(dir.path().join("m.jsonl"), "{\"ts\": 5}\n{\"tz\": 6}\n").unwrap();
    let e = drain(&f, 0, 1).unwrap_err();
    assert!(e.contains("m.jsonl:2: no member 'ts'"), "{e}");
    std::fs::write(dir.path().join("m.jsonl"), "{\"ts\": \"soon\"}\n").unwrap();
    let e = drain(&f, 0, 1).unwrap_err();
    assert!(
        e.contains("m.jsonl:1: event time member 'ts': 'soon' is not an integer"),
        "{e}"
    );
    std::fs::write(dir.path().join("m.jsonl"), "[1]\n").unwrap();
    let e = drain(&f, 0, 1).unwrap_err();
    assert!(
        e.contains("m.jsonl:1: invalid JSON: invalid type: sequence, expected a JSON object"),
        "{e}"
    );
    let e = source(
        "jsonl",
        json!({"path": "m.jsonl", "event_time": {"field": "ts", "format": "iso"}}),
        dir.path(),
    )
    .err()
    .unwrap();
    assert!(
        e.starts_with("sources[0].event_time.format: unknown variant `iso`"),
        "{e}"
    );
}

#[test]
fn jsonl_source_keys_events_by_a_member() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("k.jsonl"),
        "{\"t\": 1, \"card\": \"c-7\", \"n\": {\"card\": 0}}\n{\"card\": 42, \"t\": 2}\n\
         {\"t\": 3, \"card\": -7}\n{\"t\": 4, \"card\": 1.5}\n{\"t\": 5, \"card\": 2.0}\n",
    )
    .unwrap();
    let opts = |key: &str| json!({"path": "k.jsonl", "event_time": {"field": "t", "format": "epoch_ms"}, "key": key});
    let b = drain(&source("jsonl", opts("card"), dir.path()).unwrap(), 0, 1).unwrap();
    let keys: Vec<&[u8]> = b.iter().map(|e| e.key).collect();
    assert_eq!(keys, [&b"c-7"[..], b"42", b"-7", b"1.5", b"2"]);
    std::fs::write(dir.path().join("k.jsonl"), "{\"t\": 1, \"card\": null}\n").unwrap();
    let e = drain(&source("jsonl", opts("card"), dir.path()).unwrap(), 0, 1).unwrap_err();
    assert!(
        e.contains("k.jsonl:1: key member 'card': expected a string or a number, found null"),
        "{e}"
    );
    let e = drain(&source("jsonl", opts("id"), dir.path()).unwrap(), 0, 1).unwrap_err();
    assert!(e.contains("k.jsonl:1: no member 'id' (the key)"), "{e}");
}

fn packed_batch() -> (ValueFormat, Batch) {
    let schema = PackedSchema {
        fields: vec![
            PackedField {
                name: "origin".into(),
                ty: FieldType::Str,
            },
            PackedField {
                name: "delay".into(),
                ty: FieldType::I32,
            },
        ],
    };
    let mut b = Batch::new();
    for (i, (origin, key)) in [
        ("ORD", &b"k1"[..]),
        ("S\"FO", &[0xff, 1][..]),
        ("JFK", &b""[..]),
    ]
    .iter()
    .enumerate()
    {
        b.push_with(T0 + i as i64 * 1001, key, |buf| {
            sluice_packed::Writer::new(buf)
                .str(origin)
                .i32(i as i32 - 1);
        });
    }
    (ValueFormat::Packed(schema), b)
}

#[test]
fn jsonl_sink_writes_events_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let (format, b) = packed_batch();
    let out = dir.path().join("out/deeper/events.jsonl");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, "old contents that must go\n".repeat(100)).unwrap();
    let f = sink_factory(
        "jsonl",
        &json!({"path": "out/deeper/events.jsonl"}),
        dir.path(),
        "sinks[0]",
    )
    .unwrap();
    let mut s = f.create_sink(0, 1, &format).unwrap();
    s.write_batch(&b).unwrap();
    s.finish().unwrap();
    assert_eq!(f.describe(), out.display().to_string());
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0],
        json!({"timestamp": T0, "time": "2023-11-14T22:13:20.000Z", "key": "k1", "value": {"origin": "ORD", "delay": -1}})
    );
    assert_eq!(lines[1]["key"], json!([255, 1]));
    assert_eq!(lines[1]["time"], "2023-11-14T22:13:21.001Z");
    assert_eq!(lines[1]["value"]["origin"], "S\"FO");
    assert_eq!(lines[2]["key"], "");

    let f = sink_factory(
        "jsonl",
        &json!({"path": "v.jsonl", "write": "value"}),
        dir.path(),
        "sinks[0]",
    )
    .unwrap();
    let mut s = f.create_sink(0, 1, &format).unwrap();
    s.write_batch(&b).unwrap();
    s.finish().unwrap();
    let text = std::fs::read_to_string(dir.path().join("v.jsonl")).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        r#"{"origin":"ORD","delay":-1}"#
    );

    let e = sink_factory(
        "jsonl",
        &json!({"path": "v.jsonl", "write": "all"}),
        dir.path(),
        "sinks[2]",
    )
    .err()
    .unwrap()
    .0;
    assert!(
        e.starts_with("sinks[2].write: unknown variant `all`"),
        "{e}"
    );
    let e = sink_factory("jsonl", &json!({"write": "value"}), dir.path(), "sinks[2]")
        .err()
        .unwrap()
        .0;
    assert!(e.starts_with("sinks[2]: missing field `path`"), "{e}");
    // Stdout takes the same options (and none).
    assert!(sink_factory("stdout", &json!({"write": "value"}), dir.path(), "sinks[0]").is_ok());
    assert_eq!(
        sink_factory("stdout", &Value::Null, dir.path(), "sinks[0]")
            .unwrap()
            .describe(),
        "stdout"
    );
}

#[test]
fn jsonl_sink_subtasks_write_their_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let (format, b) = packed_batch();
    let f = sink_factory(
        "jsonl",
        &json!({"path": "o/res.jsonl"}),
        dir.path(),
        "sinks[0]",
    )
    .unwrap();
    for s in 0..3 {
        let mut sink = f.create_sink(s, 3, &format).unwrap();
        if s == 1 {
            sink.write_batch(&b).unwrap();
        }
        sink.finish().unwrap();
    }
    let names: Vec<String> = (0..3).map(|s| format!("res-{s}.jsonl")).collect();
    for (s, n) in names.iter().enumerate() {
        let text = std::fs::read_to_string(dir.path().join("o").join(n)).unwrap();
        assert_eq!(text.lines().count(), if s == 1 { 3 } else { 0 });
    }
    let d = f.describe();
    for n in &names {
        assert!(d.contains(n), "{d}");
    }
    let f = sink_factory("jsonl", &json!({"path": "noext"}), dir.path(), "sinks[0]").unwrap();
    f.create_sink(1, 2, &format).unwrap().finish().unwrap();
    assert!(dir.path().join("noext-1").is_file());
}

/// The real flights file, fetched (once per machine) into the default cache with the
/// same code a job uses.
fn real_flights() -> std::path::PathBuf {
    resolve_dataset(FLIGHTS, Some(FLIGHTS_SHA), Path::new(".")).expect("fetch the flights data set")
}

/// The real dataset installed in a fresh cache directory as a fetch would: checks that
/// `resolve_dataset` uses the cached copy.
#[test]
fn npm_dataset_cache_hit() {
    let real = &real_flights();
    let cache = tempfile::tempdir().unwrap();
    let dest = cache
        .path()
        .join("datasets/vega-datasets@3.2.1/data/flights-3m.parquet");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(real, &dest).unwrap();
    // SAFETY: the only test that sets this variable; others do not read it.
    unsafe { std::env::set_var("SLUICE_CACHE_DIR", cache.path()) };
    assert_eq!(crate::cache_dir(), cache.path());
    let got = resolve_dataset(FLIGHTS, Some(FLIGHTS_SHA), Path::new("/")).unwrap();
    assert_eq!(got, dest);
    let f = source(
        "parquet",
        json!({"path": FLIGHTS, "sha256": FLIGHTS_SHA, "event_time": "date"}),
        Path::new("/"),
    )
    .unwrap();
    assert!(matches!(f.value_format(), ValueFormat::Packed(_)));
}

const FLIGHTS: &str = "npm:vega-datasets@3.2.1/data/flights-3m.parquet";
const FLIGHTS_SHA: &str = "dbeb920c90f59b6ccaff823dcc3d08f25a97fa1ce128d93f40be4e931f5900b0";

/// Fetches the real dataset with `npm pack` into a fresh cache (network; run by hand:
/// `cargo test -p sluice-connectors --release -- --ignored npm_fetch --nocapture`).
#[test]
#[ignore]
fn npm_fetch_real_dataset() {
    let cache = tempfile::tempdir().unwrap();
    // SAFETY: run alone (ignored test, by hand).
    unsafe { std::env::set_var("SLUICE_CACHE_DIR", cache.path()) };
    let t = std::time::Instant::now();
    let p = resolve_dataset(FLIGHTS, Some(FLIGHTS_SHA), Path::new("/")).unwrap();
    eprintln!("fetched {} in {:?}", p.display(), t.elapsed());
    let t = std::time::Instant::now();
    resolve_dataset(FLIGHTS, Some(FLIGHTS_SHA), Path::new("/")).unwrap();
    eprintln!("cache hit (hash check) in {:?}", t.elapsed());
    std::fs::write(&p, b"corrupt").unwrap();
    let t = std::time::Instant::now();
    resolve_dataset(FLIGHTS, Some(FLIGHTS_SHA), Path::new("/")).unwrap();
    eprintln!("re-fetched a corrupt cached file in {:?}", t.elapsed());
    assert_eq!(crate::dataset::sha256_file(&p).unwrap(), FLIGHTS_SHA);
    let e = resolve_dataset(
        "npm:vega-datasets@3.2.1/data/nope.csv",
        Some(FLIGHTS_SHA),
        Path::new("/"),
    )
    .unwrap_err()
    .0;
    assert!(e.contains("has no file 'data/nope.csv'"), "{e}");
    let e = resolve_dataset(
        "npm:no-such-package-sluice-test@0.0.1/x",
        Some(FLIGHTS_SHA),
        Path::new("/"),
    )
    .unwrap_err()
    .0;
    assert!(
        e.contains("`npm pack no-such-package-sluice-test@0.0.1` failed"),
        "{e}"
    );
    eprintln!("{e}");
}

/// Reads and encodes the real 3M-row file sorted by `date + delay * 60000`; prints the
/// time. Run: `cargo test -p sluice-connectors --release -- --ignored real_flights --nocapture`.
#[test]
#[ignore]
fn real_flights_order_by_timing() {
    let real = &real_flights();
    for (order_by, fmt) in [
        (Some("date + delay * 60000"), "packed"),
        (None, "packed"),
        (Some("date + delay * 60000"), "json"),
    ] {
        let mut o = json!({"path": real, "event_time": "date", "value_format": fmt});
        if let Some(ob) = order_by {
            o["order_by"] = json!(ob);
        }
        let t = std::time::Instant::now();
        let f = source("parquet", o, Path::new("/")).unwrap();
        let t_open = t.elapsed();
        let mut r = f.create_reader(0, 1).unwrap();
        let mut b = Batch::with_capacity(8192, 8192 * 64);
        let (mut n, mut bytes, mut last, mut sorted) = (0usize, 0usize, i64::MIN, true);
        let mut first = None;
        let delay = sluice_core::format::FieldAccessor::new(&f.value_format(), "delay").unwrap();
        loop {
            b.clear();
            match r.poll_batch(&mut b, 8192).unwrap() {
                SourcePoll::End => break,
                _ => {
                    n += b.len();
                    bytes += b.value_data().len();
                    if first.is_none() {
                        first = Some(format!("{:?}", b.get(0)));
                    }
                    if order_by.is_some() && fmt == "packed" {
                        for e in b.iter() {
                            let d = match delay.read(e.value).unwrap() {
                                sluice_packed::Number::Int(v) => v,
                                sluice_packed::Number::Float(v) => v as i64,
                            };
                            let k = e.timestamp + d * 60_000;
                            sorted &= k >= last;
                            last = k;
                        }
                    }
                }
            }
        }
        eprintln!(
            "order_by {order_by:?} {fmt}: {n} events, {bytes} value bytes in {:?} (of which open + sha256 {:?}); sorted: {sorted}; format {:?}; first {}",
            t.elapsed(),
            t_open,
            f.value_format(),
            first.unwrap_or_default()
        );
        assert!(sorted);
    }
}

#[test]
fn parquet_order_by_floats_and_nulls() {
    let dir = tempfile::tempdir().unwrap();
    write_parquet(&dir.path().join("t.parquet"), &mixed_table(), 2);
    let o = |ob: &str| json!({"path": "t.parquet", "event_time": "ts", "columns": ["delay"], "order_by": ob});
    // ratio (f32) makes the expression f64: keys 6, 3, -11, -11.5, 13.
    let f = source("parquet", o("ratio * 2 - delay"), dir.path()).unwrap();
    let b = drain(&f, 0, 1).unwrap();
    let delays: Vec<i32> = b
        .iter()
        .map(|e| Reader::new(e.value).i32().unwrap())
        .collect();
    assert_eq!(delays, vec![12, 7, 0, -5, 3]);
    let e = drain(
        &source("parquet", o("maybe + 1"), dir.path()).unwrap(),
        0,
        1,
    )
    .unwrap_err();
    assert!(
        e.contains("t.parquet: row 2 (0-based): column 'maybe' of order_by 'maybe + 1' is null"),
        "{e}"
    );
    let e = drain(
        &source("parquet", o("delay / (delay - 7)"), dir.path()).unwrap(),
        0,
        1,
    )
    .unwrap_err();
    assert!(
        e.contains("row 2 (0-based): order_by 'delay / (delay - 7)' overflows or divides by zero"),
        "{e}"
    );
}

/// Writes the real 3M-row file through the jsonl sink; prints the time. Run:
/// `cargo test -p sluice-connectors --release -- --ignored real_flights_sink --nocapture`.
#[test]
#[ignore]
fn real_flights_sink_timing() {
    let real = &real_flights();
    let f = source(
        "parquet",
        json!({"path": real, "event_time": "date"}),
        Path::new("/"),
    )
    .unwrap();
    let mut r = f.create_reader(0, 1).unwrap();
    let mut batches = Vec::new();
    loop {
        let mut b = Batch::with_capacity(8192, 8192 * 40);
        if r.poll_batch(&mut b, 8192).unwrap() == SourcePoll::End {
            break;
        }
        batches.push(b);
    }
    let dir = tempfile::tempdir().unwrap();
    let row_groups = f.max_parallelism();
    for write in ["event", "value"] {
        let sink = sink_factory(
            "jsonl",
            &json!({"path": "out.jsonl", "write": write}),
            dir.path(),
            "sinks[0]",
        )
        .unwrap();
        let t = std::time::Instant::now();
        let mut s = sink.create_sink(0, 1, &f.value_format()).unwrap();
        for b in &batches {
            s.write_batch(b).unwrap();
        }
        s.finish().unwrap();
        let size = std::fs::metadata(dir.path().join("out.jsonl"))
            .unwrap()
            .len();
        eprintln!(
            "jsonl sink, write {write}: 3M events, {size} bytes in {:?} (file has {row_groups} row groups)",
            t.elapsed()
        );
    }
}
