//! The flights data for end-to-end tests and benchmarks: the real file (fetched with the
//! same code the job uses), slices of it, and the exact answer of the flights job
//! computed by a plain batch computation over the rows — independent of the engine.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
};
use arrow_array::{Array, RecordBatch};
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

/// The path of the real flights file (3,000,000 rows), fetched into the dataset cache on
/// first use. Panics when it cannot be fetched or its SHA-256 differs.
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

/// Reads the first `limit` rows of the Parquet file `path` (all with `None`), and writes
/// them to `slice` (a Parquet file with the same columns) when given. Panics when a file
/// cannot be read or written, or a column (`date`: a timestamp of any unit, `delay`:
/// Int64, `origin`: a string) is missing, of another type, or has a null.
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
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap_or_else(|| panic!("no column {name}"))
        };
        let dates = millis(column("date"));
        let delays = column("delay").as_primitive::<Int64Type>();
        let origins = strings(column("origin"));
        for ((date_ms, delay), origin) in dates.into_iter().zip(delays).zip(origins) {
            out.push(Flight {
                row: out.len(),
                date_ms,
                delay: delay.expect("no null delay"),
                origin: origin.to_string(),
            });
        }
    }
    if let Some(w) = writer {
        w.close().expect("close slice");
    }
    out
}

/// A timestamp column (any unit) as ms since the epoch. Panics on a null or another type.
fn millis(col: &dyn Array) -> Vec<i64> {
    let ms = |v: Option<i64>, per_ms: i64| v.expect("no null date").div_euclid(per_ms);
    match col.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let a = col.as_primitive::<TimestampMillisecondType>();
            a.iter().map(|v| ms(v, 1)).collect()
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let a = col.as_primitive::<TimestampMicrosecondType>();
            a.iter().map(|v| ms(v, 1_000)).collect()
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            let a = col.as_primitive::<TimestampNanosecondType>();
            a.iter().map(|v| ms(v, 1_000_000)).collect()
        }
        other => panic!("unexpected type of column date: {other}"),
    }
}

/// A string column (any offset size or views). Panics on a null or another type.
fn strings(col: &dyn Array) -> Vec<&str> {
    let values: Vec<Option<&str>> = match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => col.as_string::<i64>().iter().collect(),
        DataType::Utf8View => col.as_string_view().iter().collect(),
        other => panic!("unexpected type of column origin: {other}"),
    };
    values
        .into_iter()
        .map(|v| v.expect("no null origin"))
        .collect()
}

/// The value of one window of one airport at one firing (cumulative, as the job writes
/// it).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowValue {
    /// Flights.
    pub flights: i64,
    /// Flights delayed more than 15 minutes.
    pub delayed: i64,
    /// Sum of delays, minutes.
    pub delay_sum: i64,
    /// Largest delay, minutes.
    pub delay_max: i64,
    /// Index of this firing among the window's firings: 0 for the on-time firing (or the
    /// first late firing of a window that had no events on time), then 1, 2, … for each
    /// late firing.
    pub firing: i64,
    /// `on_time` or `late`: how this firing happened.
    pub timing: String,
}

/// The firings of every window, per `(origin, window start ms)`, in firing order (the
/// index in the `Vec` is the value's `firing`; the last is the window's final value).
pub type Firings = BTreeMap<(String, i64), Vec<WindowValue>>;

/// The exact answer: every firing of every window, and the late events as
/// `(timestamp ms, origin, delay minutes)`, sorted.
pub struct Answer {
    /// Every firing of every window.
    pub windows: Firings,
    /// Events beyond the allowed lateness.
    pub late: Vec<(i64, String, i64)>,
}

const HOUR: i64 = 3_600_000;

/// Replays the job's rules over the rows: events in order of actual departure
/// (`date + delay` minutes, ties by row), each meeting the watermark
/// `max(event times before it) - 30 min - 1 ms`; tumbling 1-hour windows; allowed
/// lateness 2 hours; an event whose window has `end - 1 + 2 h <= watermark` is late; an
/// event into a window whose `end - 1 <= watermark` fires it again (a late firing, with
/// the cumulative value). A window's on-time firing holds the events that came before
/// the watermark reached `end - 1` (all of them when none came later).
pub fn exact_answer(rows: &[Flight]) -> Answer {
    let mut order: Vec<&Flight> = rows.iter().collect();
    order.sort_by_key(|f| (f.date_ms + f.delay * 60_000, f.row));
    let mut max_seen: Option<i64> = None;
    // Per window: the running value and the firings so far.
    let mut windows: BTreeMap<(String, i64), (WindowValue, Vec<WindowValue>)> = BTreeMap::new();
    let mut late = Vec::new();
    let firing = |value: &WindowValue, index: usize, timing: &str| WindowValue {
        firing: index as i64,
        timing: timing.into(),
        ..value.clone()
    };
    for f in order {
        let wm = max_seen.map(|m| m - 30 * 60_000 - 1);
        max_seen = Some(max_seen.map_or(f.date_ms, |m| m.max(f.date_ms)));
        let start = f.date_ms.div_euclid(HOUR) * HOUR;
        let end = start + HOUR;
        if wm.is_some_and(|wm| end - 1 + 2 * HOUR <= wm) {
            late.push((f.date_ms, f.origin.clone(), f.delay));
            continue;
        }
        let (w, fired) = windows.entry((f.origin.clone(), start)).or_insert_with(|| {
            let empty = WindowValue {
                flights: 0,
                delayed: 0,
                delay_sum: 0,
                delay_max: i64::MIN,
                firing: 0,
                timing: String::new(),
            };
            (empty, Vec::new())
        });
        let fires_late = wm.is_some_and(|wm| end - 1 <= wm);
        if fires_late && fired.is_empty() && w.flights > 0 {
            // The watermark passed the end since the window's last event: it fired on time.
            fired.push(firing(w, 0, "on_time"));
        }
        w.flights += 1;
        w.delayed += (f.delay > 15) as i64;
        w.delay_sum += f.delay;
        w.delay_max = w.delay_max.max(f.delay);
        if fires_late {
            fired.push(firing(w, fired.len(), "late"));
        }
    }
    let windows = windows
        .into_iter()
        .map(|(k, (w, mut fired))| {
            if fired.is_empty() {
                // Only events on time: one firing, when the watermark passed the end.
                fired.push(firing(&w, 0, "on_time"));
            }
            (k, fired)
        })
        .collect();
    late.sort();
    Answer { windows, late }
}

/// What the flights job wrote: every firing of every window, the number of result rows,
/// and the late events `(timestamp ms, origin, delay minutes)`, sorted.
pub struct Output {
    /// Every firing written, per window in order of `firing` (an index missing from the
    /// output is missing here too: the values' `firing` show it).
    pub windows: Firings,
    /// Result rows (every firing).
    pub rows: usize,
    /// Late events.
    pub late: Vec<(i64, String, i64)>,
}

/// Reads `windows.jsonl` and `late.jsonl` in `dir`. Panics on a malformed line, on a
/// line whose `window_end` is not `window_start` + 1 h or whose `delay_avg` is not
/// `delay_sum / flights`, and on a window firing written twice (output duplicated).
pub fn read_output(dir: &Path) -> Output {
    let mut windows: BTreeMap<(String, i64), BTreeMap<i64, WindowValue>> = BTreeMap::new();
    let text = std::fs::read_to_string(dir.join("windows.jsonl")).expect("window results");
    let mut rows = 0;
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
        let firings = windows.entry(key).or_default();
        if firings.insert(firing, value).is_some() {
            panic!("window {line} fired twice with index {firing}");
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
        windows: windows
            .into_iter()
            .map(|(k, firings)| (k, firings.into_values().collect()))
            .collect(),
        rows,
        late,
    }
}

/// Asserts that `got` is the exact answer: the same late events, and every window with
/// exactly the answer's firings `0..=final`, each with the answer's value and timing
/// (nothing missing, nothing repeated, no intermediate value wrong).
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
            "{label}: firings of window {k:?}"
        );
    }
    let firings: usize = answer.windows.values().map(Vec::len).sum();
    assert_eq!(got.rows, firings, "{label}: one row per firing");
}
