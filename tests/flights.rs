//! The flights data for end-to-end tests and benchmarks: the real file (fetched with the
//! same code the job uses), slices of it, and the exact answer of the flights job
//! computed by a plain batch computation over the rows — independent of the engine.

use arrow_array::{
    Array, Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The dataset as the job spec names it.
pub const DATASET: &str = "npm:vega-datasets@3.2.1/data/flights-3m.parquet";
/// Its SHA-256.
pub const SHA256: &str = "dbeb920c90f59b6ccaff823dcc3d08f25a97fa1ce128d93f40be4e931f5900b0";
/// The job spec in the repository.
pub const SPEC: &str = "plugins/flight-delays/flights.yaml";

/// The real flights file, fetched into the cache on first use.
pub fn dataset() -> PathBuf {
    sluice_connectors::resolve_dataset(DATASET, Some(SHA256), Path::new("."))
        .unwrap_or_else(|e| panic!("cannot get the flights data: {e}"))
}

/// One row of the file: what the exact answer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Flight {
    /// Row number in the file.
    pub row: usize,
    /// Scheduled departure, ms since the epoch (UTC).
    pub date_ms: i64,
    /// Delay, minutes.
    pub delay: i64,
    /// Origin airport.
    pub origin: String,
}

/// Reads the first `limit` rows of `path` (all with `None`), and writes them to `slice`
/// (a Parquet file with the same columns) when given.
pub fn read_rows(path: &Path, limit: Option<usize>, slice: Option<&Path>) -> Vec<Flight> {
    let file = std::fs::File::open(path).expect("open flights");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut out = Vec::new();
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    for batch in reader {
        let mut batch: RecordBatch = batch.expect("batch");
        if let Some(l) = limit {
            if out.len() >= l {
                break;
            }
            let take = (l - out.len()).min(batch.num_rows());
            batch = batch.slice(0, take);
        }
        if let Some(p) = slice {
            let w = writer.get_or_insert_with(|| {
                ArrowWriter::try_new(
                    std::fs::File::create(p).expect("create slice"),
                    batch.schema(),
                    None,
                )
                .expect("writer")
            });
            w.write(&batch).expect("write slice");
        }
        let date_col = batch.column_by_name("date").unwrap();
        let to_ms: Box<dyn Fn(usize) -> i64> = match date_col.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let a = date_col
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .unwrap()
                    .clone();
                Box::new(move |i| a.value(i).div_euclid(1000))
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                let a = date_col
                    .as_any()
                    .downcast_ref::<TimestampNanosecondArray>()
                    .unwrap()
                    .clone();
                Box::new(move |i| a.value(i).div_euclid(1_000_000))
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                let a = date_col
                    .as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
                    .unwrap()
                    .clone();
                Box::new(move |i| a.value(i))
            }
            other => panic!("unexpected type of column date: {other}"),
        };
        let delay = batch
            .column_by_name("delay")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let origin_col = batch.column_by_name("origin").unwrap();
        let origin_of: Box<dyn Fn(usize) -> String> = match origin_col.data_type() {
            DataType::Utf8 => {
                let a = origin_col
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone();
                Box::new(move |i| a.value(i).to_string())
            }
            DataType::LargeUtf8 => {
                let a = origin_col
                    .as_any()
                    .downcast_ref::<LargeStringArray>()
                    .unwrap()
                    .clone();
                Box::new(move |i| a.value(i).to_string())
            }
            DataType::Utf8View => {
                let a = origin_col
                    .as_any()
                    .downcast_ref::<StringViewArray>()
                    .unwrap()
                    .clone();
                Box::new(move |i| a.value(i).to_string())
            }
            other => panic!("unexpected type of column origin: {other}"),
        };
        for i in 0..batch.num_rows() {
            assert!(!date_col.is_null(i) && !delay.is_null(i) && !origin_col.is_null(i));
            out.push(Flight {
                row: out.len(),
                date_ms: to_ms(i),
                delay: delay.value(i),
                origin: origin_of(i),
            });
        }
    }
    if let Some(w) = writer {
        w.close().expect("close slice");
    }
    out
}

/// The final value of one window of one airport.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowValue {
    /// Flights.
    pub flights: i64,
    /// Flights delayed more than 15 minutes.
    pub delayed: i64,
    /// Sum of delays, minutes.
    pub delay_sum: i64,
    /// Largest delay.
    pub delay_max: i64,
    /// Index of the last firing (0 = only the on-time firing, or one late firing).
    pub firing: i64,
    /// `on_time` or `late`: how the last firing happened.
    pub timing: String,
}

/// The exact answer: final window values per `(origin, window start)` and the late
/// events as `(timestamp, origin, delay)`, sorted.
pub struct Answer {
    /// Final values.
    pub windows: BTreeMap<(String, i64), WindowValue>,
    /// Events beyond the allowed lateness.
    pub late: Vec<(i64, String, i64)>,
}

const HOUR: i64 = 3_600_000;

/// Replays the job's rules over the rows: events in order of actual departure
/// (`date + delay` minutes, ties by row), each meeting the watermark
/// `max(event times before it) - 30 min - 1 ms`; tumbling 1-hour windows; allowed
/// lateness 2 hours; an event whose window has `end - 1 + 2 h <= watermark` is late; an
/// event into a window whose `end - 1 <= watermark` fires it again (a late firing).
pub fn exact_answer(rows: &[Flight]) -> Answer {
    let mut order: Vec<&Flight> = rows.iter().collect();
    order.sort_by_key(|f| (f.date_ms + f.delay * 60_000, f.row));
    let mut max_seen: Option<i64> = None;
    let mut windows: BTreeMap<(String, i64), WindowValue> = BTreeMap::new();
    let mut late = Vec::new();
    for f in order {
        let wm = max_seen.map(|m| m - 30 * 60_000 - 1);
        max_seen = Some(max_seen.map_or(f.date_ms, |m| m.max(f.date_ms)));
        let start = f.date_ms.div_euclid(HOUR) * HOUR;
        let end = start + HOUR;
        if wm.is_some_and(|wm| end - 1 + 2 * HOUR <= wm) {
            late.push((f.date_ms, f.origin.clone(), f.delay));
            continue;
        }
        let w = windows
            .entry((f.origin.clone(), start))
            .or_insert(WindowValue {
                flights: 0,
                delayed: 0,
                delay_sum: 0,
                delay_max: i64::MIN,
                firing: -1,
                timing: String::new(),
            });
        w.flights += 1;
        w.delayed += (f.delay > 15) as i64;
        w.delay_sum += f.delay;
        w.delay_max = w.delay_max.max(f.delay);
        if wm.is_some_and(|wm| end - 1 <= wm) {
            // A late firing; the on-time firing came first if the window had events then.
            if w.firing == -1 && w.flights > 1 {
                w.firing = 0;
            }
            w.firing += 1;
            w.timing = "late".into();
        }
    }
    for w in windows.values_mut() {
        if w.timing.is_empty() {
            w.firing = 0;
            w.timing = "on_time".into();
        }
    }
    late.sort();
    Answer { windows, late }
}

/// What the flights job wrote: final window values (the highest firing of each window),
/// result rows, and late events `(timestamp, origin, delay)`, sorted.
pub struct Output {
    /// Final values.
    pub windows: BTreeMap<(String, i64), WindowValue>,
    /// Result rows (every firing).
    pub rows: usize,
    /// Late events.
    pub late: Vec<(i64, String, i64)>,
}

/// Reads `windows.jsonl` and `late.jsonl` in `dir`. Panics on a malformed line, and on a
/// window firing written twice (output duplicated).
pub fn read_output(dir: &Path) -> Output {
    let mut windows: BTreeMap<(String, i64), (i64, WindowValue)> = BTreeMap::new();
    let text = std::fs::read_to_string(dir.join("windows.jsonl")).expect("window results");
    let mut rows = 0;
    let mut firings = std::collections::BTreeSet::new();
    for line in text.lines() {
        rows += 1;
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let key = (
            v["key"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
        );
        assert_eq!(v["window_end"].as_i64().unwrap() - key.1, HOUR);
        let flights = v["flights"].as_i64().unwrap();
        let sum = v["delay_sum"].as_i64().unwrap();
        let avg = v["delay_avg"].as_f64().unwrap();
        assert!((avg - sum as f64 / flights as f64).abs() < 1e-9, "{line}");
        let value = WindowValue {
            flights,
            delayed: v["delayed"].as_i64().unwrap(),
            delay_sum: sum,
            delay_max: v["delay_max"].as_i64().unwrap(),
            firing: v["firing"].as_i64().unwrap(),
            timing: v["timing"].as_str().unwrap().to_string(),
        };
        let firing = value.firing;
        assert!(
            firings.insert((key.clone(), firing)),
            "window {key:?} fired twice with index {firing}"
        );
        if windows.get(&key).is_none_or(|(f, _)| *f < firing) {
            windows.insert(key, (firing, value));
        }
    }
    let text = std::fs::read_to_string(dir.join("late.jsonl")).expect("late events");
    let mut late: Vec<(i64, String, i64)> = text
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            (
                v["timestamp"].as_i64().unwrap(),
                v["key"].as_str().unwrap().to_string(),
                v["value"]["delay"].as_i64().unwrap(),
            )
        })
        .collect();
    late.sort();
    Output {
        windows: windows.into_iter().map(|(k, (_, v))| (k, v)).collect(),
        rows,
        late,
    }
}

/// Asserts that `got` is the exact answer: the same late events, the same final value of
/// every window, and every firing `0..=final` of every window written once (nothing
/// missing, nothing repeated).
pub fn check_output(answer: &Answer, got: &Output, label: &str) {
    assert_eq!(
        got.late.len(),
        answer.late.len(),
        "{label}: number of late events"
    );
    assert!(got.late == answer.late, "{label}: the late events differ");
    assert_eq!(
        got.windows.len(),
        answer.windows.len(),
        "{label}: number of windows"
    );
    for (k, v) in &answer.windows {
        assert_eq!(
            got.windows.get(k),
            Some(v),
            "{label}: final value of window {k:?}"
        );
    }
    let firings: i64 = answer.windows.values().map(|w| w.firing + 1).sum();
    assert_eq!(got.rows as i64, firings, "{label}: one row per firing");
}
