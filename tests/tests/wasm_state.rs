//! Keyed state and timers of WASM operators (`sluice-wasm` over `KeyedStateStore`),
//! driven at the operator level: the `test-state` plugin exercises every import and
//! error path command by command; the `fraud-rules` plugin is checked against a plain
//! Rust implementation of its three rules over generated payments, at several batch
//! sizes, with watermarks inside batches and between them, and across a snapshot and
//! restore of its state.

use sluice_core::batch::Batch;
use sluice_core::operator::{Collector, Operator, OperatorContext, OperatorError, StateContext};
use sluice_core::state::{
    Clock, HeapKvBackend, HeapKvBackendFactory, KeyedStateStore, KvBackend, KvBackendFactory,
};
use sluice_tests::payments::{
    self, Alert, OUT_OF_ORDERNESS, Payment, PaymentsConfig, RULES, parse_alert,
    per_event_watermarks, reference,
};
use sluice_tests::plugins;
use sluice_wasm::{Limits, LoadedComponent, WasmOperator};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use plugins::{config, load, returned};

/// `#[test]`s that run `$check` on plugin `$plugin` (Rust) and its Python, TypeScript
/// and C twins, `$plugin-py`, `$plugin-ts` and `$plugin-c`.
macro_rules! sdk_twins {
    ($check:ident, $plugin:literal: $rust:ident, $python:ident, $typescript:ident, $c:ident) => {
        #[test]
        fn $rust() {
            $check($plugin);
        }
        #[test]
        fn $python() {
            $check(concat!($plugin, "-py"));
        }
        #[test]
        fn $typescript() {
            $check(concat!($plugin, "-ts"));
        }
        #[test]
        fn $c() {
            $check(concat!($plugin, "-c"));
        }
    };
}

fn ctx(id: &str) -> OperatorContext {
    OperatorContext {
        operator_id: id.to_string(),
        subtask: 0,
        parallelism: 1,
    }
}

/// A processing-time clock the test moves.
#[derive(Clone, Default)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn set(&self, t: i64) {
        self.0.store(t, Ordering::Relaxed);
    }
    fn clock(&self) -> Clock {
        let c = self.0.clone();
        Arc::new(move || c.load(Ordering::Relaxed))
    }
}

const MAX_PARALLELISM: usize = 128;

fn store_over(backend: Box<dyn KvBackend>, clock: &TestClock) -> KeyedStateStore {
    KeyedStateStore::new(backend, MAX_PARALLELISM, 0..MAX_PARALLELISM, clock.clock()).unwrap()
}

/// The state the runtime would hand an operator.
fn state_context(keyed: Option<KeyedStateStore>, clock: &TestClock) -> StateContext {
    StateContext {
        keyed,
        clock: clock.clock(),
        operator_state: Vec::new(),
        union_operator_state: Vec::new(),
    }
}

/// An opened operator of plugin `name`, keyed (over a fresh heap store) or not.
fn operator(
    name: &str,
    cfg: &[(&str, &str)],
    keyed: Option<KeyedStateStore>,
    clock: &TestClock,
) -> Result<WasmOperator, OperatorError> {
    // `<name>-py`, `<name>-ts`, `<name>-c`: the Python, TypeScript and C twins of plugin
    // `<name>` (built with their SDKs).
    let component = if name.ends_with("-py") {
        plugins::runtime()
            .load_component(plugins::python_wasm(name))
            .unwrap()
    } else if name.ends_with("-ts") {
        plugins::runtime()
            .load_component(plugins::js_wasm(name))
            .unwrap()
    } else if name.ends_with("-c") {
        plugins::runtime()
            .load_component(plugins::c_wasm(name))
            .unwrap()
    } else {
        load(name)
    };
    let mut op = WasmOperator::new(&component, config(cfg), Limits::default());
    op.initialize_state(state_context(keyed, clock))?;
    op.open(&ctx(name))?;
    Ok(op)
}

fn keyed(name: &str, cfg: &[(&str, &str)], clock: &TestClock) -> WasmOperator {
    let store = store_over(Box::new(HeapKvBackend::new()), clock);
    operator(name, cfg, Some(store), clock).unwrap()
}

/// What an operator emitted, in order: events and watermarks (marks inside batches and
/// forwarded watermarks alike).
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Ev(i64, String, String),
    Wm(i64),
}

#[derive(Default)]
struct Stream(Vec<Item>);

impl Collector for Stream {
    fn collect(&mut self, batch: Batch) {
        let marks = batch.marks();
        let mut m = 0;
        for (i, e) in batch.iter().enumerate() {
            while m < marks.len() && marks[m].row as usize <= i {
                self.0.push(Item::Wm(marks[m].watermark));
                m += 1;
            }
            self.0.push(Item::Ev(
                e.timestamp,
                String::from_utf8_lossy(e.key).into_owned(),
                String::from_utf8_lossy(e.value).into_owned(),
            ));
        }
        for mark in &marks[m..] {
            self.0.push(Item::Wm(mark.watermark));
        }
    }
    fn collect_side(&mut self, output: &str, _batch: Batch) {
        panic!("unexpected side output {output}");
    }
    fn collect_watermark(&mut self, watermark: i64) {
        self.0.push(Item::Wm(watermark));
    }
}

impl Stream {
    /// The values of the events, in order.
    fn values(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|i| match i {
                Item::Ev(_, _, v) => Some(v.clone()),
                Item::Wm(_) => None,
            })
            .collect()
    }
}

/// A row of a test batch: an event `(timestamp, key, command)` or a watermark mark.
#[derive(Clone, Copy)]
enum Row<'a> {
    E(i64, &'a str, &'a str),
    W(i64),
}
use Row::{E, W};

fn batch(rows: &[Row<'_>]) -> Batch {
    let mut b = Batch::new();
    for r in rows {
        match *r {
            E(ts, key, cmd) => b.push(ts, key.as_bytes(), cmd.as_bytes()),
            W(w) => b.push_watermark(w),
        }
    }
    b
}

/// Runs `rows` as one batch and returns the values emitted.
fn run(op: &mut WasmOperator, rows: &[Row<'_>]) -> Vec<String> {
    let mut out = Stream::default();
    op.process_batch(batch(rows), &mut out).unwrap();
    out.values()
}

fn ev(ts: i64, key: &str, v: &str) -> Item {
    Item::Ev(ts, key.to_string(), v.to_string())
}

/// Runs one batch of commands `(key, command, expected output)` at time `ts` and checks
/// each command's output.
fn check_steps(op: &mut WasmOperator, ts: i64, steps: &[(&str, &str, &str)]) {
    let rows: Vec<Row> = steps.iter().map(|&(key, cmd, _)| E(ts, key, cmd)).collect();
    let want: Vec<&str> = steps.iter().map(|&(_, _, out)| out).collect();
    assert_eq!(run(op, &rows), want);
}

sdk_twins!(
    value_map_and_list_state_are_per_key_and_survive_batches_with,
    "test-state": value_map_and_list_state_are_per_key_and_survive_batches,
    value_map_and_list_state_are_per_key_and_survive_batches_python,
    value_map_and_list_state_are_per_key_and_survive_batches_typescript,
    value_map_and_list_state_are_per_key_and_survive_batches_c
);

fn value_map_and_list_state_are_per_key_and_survive_batches_with(plugin: &str) {
    let clock = TestClock::default();
    let mut op = keyed(plugin, &[], &clock);
    assert!(op.keyed_state().is_some());
    check_steps(
        &mut op,
        1,
        &[
            ("a", "vget", "v=none"),
            ("a", "vset apple", "ok"),
            ("b", "vset banana", "ok"),
            ("a", "vget", "v=apple"),
            ("b", "vget", "v=banana"),
            ("a", "mput k2 two", "ok"),
            ("a", "mput k1 one", "ok"),
            ("b", "mput k9 nine", "ok"),
            ("a", "mget k1", "m=one"),
            ("a", "mget k3", "m=none"),
            ("a", "lappend x", "ok"),
            ("a", "lappend y", "ok"),
            ("b", "lappend z", "ok"),
        ],
    );
    // A later batch sees the same state.
    check_steps(
        &mut op,
        2,
        &[
            ("a", "mentries", "k1=one,k2=two"),
            ("a", "mkeys", "k1,k2"),
            ("b", "mentries", "k9=nine"),
            ("a", "mdel k2", "ok"),
            ("a", "mentries", "k1=one"),
            ("a", "lget", "x,y"),
            ("b", "lget", "z"),
            ("a", "lset p,q,r", "ok"),
            ("a", "lget", "p,q,r"),
            ("a", "lset -", "ok"),
            ("a", "lget", ""),
            ("a", "vclear", "ok"),
            ("a", "vget", "v=none"),
            ("b", "vget", "v=banana"),
            ("a", "mclear", "ok"),
            ("a", "mentries", ""),
            ("b", "lclear", "ok"),
            ("b", "lget", ""),
        ],
    );
}

/// Number of entries in the backend (state values, map entries, lists, timers).
fn entries(store: &mut KeyedStateStore) -> usize {
    let mut n = 0;
    store
        .backend_mut()
        .scan(&[], &[0xff; 4], &mut |_, _| {
            n += 1;
            true
        })
        .unwrap();
    n
}

sdk_twins!(
    ttl_expired_state_is_invisible_and_cleaned_up_with,
    "test-state": ttl_expired_state_is_invisible_and_cleaned_up,
    ttl_expired_state_is_invisible_and_cleaned_up_python,
    ttl_expired_state_is_invisible_and_cleaned_up_typescript,
    ttl_expired_state_is_invisible_and_cleaned_up_c
);

fn ttl_expired_state_is_invisible_and_cleaned_up_with(plugin: &str) {
    let clock = TestClock::default();
    clock.set(10_000);
    let mut op = keyed(plugin, &[("ttl_ms", "1000")], &clock);
    assert_eq!(
        run(&mut op, &[E(1, "a", "tset x"), E(1, "b", "tset y")]),
        ["ok", "ok"]
    );
    clock.set(10_999);
    assert_eq!(run(&mut op, &[E(1, "a", "tget")]), ["t=x"]);
    // A write renews the time-to-live (Flink's OnCreateAndWrite).
    assert_eq!(run(&mut op, &[E(1, "b", "tset y2")]), ["ok"]);
    clock.set(11_000);
    assert_eq!(
        run(&mut op, &[E(1, "a", "tget"), E(1, "b", "tget")]),
        ["t=none", "t=y2"]
    );
    clock.set(12_000);
    assert_eq!(run(&mut op, &[E(1, "b", "tget")]), ["t=none"]);

    // Expired entries nobody reads again are removed by the cleanup after each batch.
    let names: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    let rows: Vec<Row> = names.iter().map(|k| E(1, k, "tset z")).collect();
    run(&mut op, &rows);
    let before = entries(op.keyed_state().unwrap());
    assert!(before >= 50, "{before}");
    clock.set(20_000);
    for _ in 0..10 {
        run(&mut op, &[E(1, "other", "vget")]);
    }
    let after = entries(op.keyed_state().unwrap());
    assert_eq!(after, 0, "{before} entries before, {after} after");
}

sdk_twins!(
    event_time_timers_fire_once_each_in_order_of_time_then_key_with,
    "test-state": event_time_timers_fire_once_each_in_order_of_time_then_key,
    event_time_timers_fire_once_each_in_order_of_time_then_key_python,
    event_time_timers_fire_once_each_in_order_of_time_then_key_typescript,
    event_time_timers_fire_once_each_in_order_of_time_then_key_c
);

fn event_time_timers_fire_once_each_in_order_of_time_then_key_with(plugin: &str) {
    let clock = TestClock::default();
    let mut op = keyed(plugin, &[], &clock);
    assert_eq!(
        run(
            &mut op,
            &[
                E(1, "a", "timer 30"),
                E(1, "b", "timer 10"),
                E(1, "c", "timer 20"),
                E(1, "a", "timer 10"),
                E(1, "c", "timer 20"),
                E(1, "c", "timer 50"),
                E(1, "c", "untimer 50"),
            ],
        ),
        ["ok"; 7]
    );
    let mut out = Stream::default();
    op.process_watermark(25, &mut out).unwrap();
    assert_eq!(
        out.0,
        [
            ev(10, "a", "fired e 10 wm=25"),
            ev(10, "b", "fired e 10 wm=25"),
            ev(20, "c", "fired e 20 wm=25"),
            Item::Wm(25),
        ],
        "due timers fire in (time, key) order before the watermark goes on; a timer \
         registered twice fires once"
    );
    let mut out = Stream::default();
    op.process_watermark(25, &mut out).unwrap();
    op.process_watermark(29, &mut out).unwrap();
    assert_eq!(out.0, [Item::Wm(25), Item::Wm(29)], "each fires once");
    let mut out = Stream::default();
    op.process_watermark(i64::MAX, &mut out).unwrap();
    assert_eq!(
        out.0,
        [
            ev(30, "a", &format!("fired e 30 wm={}", i64::MAX)),
            Item::Wm(i64::MAX)
        ],
        "the deleted timer at 50 never fires"
    );
    assert_eq!(op.keyed_state().unwrap().timer_count(), 0);
}

sdk_twins!(
    timers_registered_and_deleted_while_timers_fire_keep_flinks_order_with,
    "test-state": timers_registered_and_deleted_while_timers_fire_keep_flinks_order,
    timers_registered_and_deleted_while_timers_fire_keep_flinks_order_python,
    timers_registered_and_deleted_while_timers_fire_keep_flinks_order_typescript,
    timers_registered_and_deleted_while_timers_fire_keep_flinks_order_c
);

fn timers_registered_and_deleted_while_timers_fire_keep_flinks_order_with(plugin: &str) {
    let clock = TestClock::default();
    let mut op = keyed(plugin, &[], &clock);
    run(
        &mut op,
        &[
            E(1, "a", "timer 10"),
            E(1, "a", "timer 20"),
            E(1, "a", "timer 40"),
            E(1, "b", "timer 12"),
            // What key a does as its timers fire, one action per timer.
            E(1, "a", "onfire reg 15"),
            E(1, "a", "onfire del 40"),
            E(1, "a", "onfire reg 5"),
            E(1, "a", "onfire vset done"),
        ],
    );
    let mut out = Stream::default();
    op.process_watermark(100, &mut out).unwrap();
    assert_eq!(
        out.0,
        [
            // 15 is registered while 10 fires and sorts before 20 (which was in the same
            // batch of due timers): it fires before 20, as one timer at a time would.
            ev(10, "a", "fired e 10 wm=100 reg 15: ok"),
            ev(12, "b", "fired e 12 wm=100"),
            ev(15, "a", "fired e 15 wm=100 del 40: ok"),
            // 40 was deleted while due: it never fires. 5 is already due when 20
            // registers it: it fires in the same watermark.
            ev(20, "a", "fired e 20 wm=100 reg 5: ok"),
            ev(5, "a", "fired e 5 wm=100 vset done: ok"),
            Item::Wm(100),
        ]
    );
    assert_eq!(run(&mut op, &[E(101, "a", "vget")]), ["v=done"]);
    let mut out = Stream::default();
    op.process_watermark(i64::MAX, &mut out).unwrap();
    assert_eq!(out.0, [Item::Wm(i64::MAX)]);
}

sdk_twins!(
    timers_fire_between_rows_where_the_watermark_passes_them_with,
    "test-state": timers_fire_between_rows_where_the_watermark_passes_them,
    timers_fire_between_rows_where_the_watermark_passes_them_python,
    timers_fire_between_rows_where_the_watermark_passes_them_typescript,
    timers_fire_between_rows_where_the_watermark_passes_them_c
);

fn timers_fire_between_rows_where_the_watermark_passes_them_with(plugin: &str) {
    let rows = [
        E(1, "a", "onfire vset from-timer"),
        E(2, "a", "timer 15"),
        W(10),
        E(11, "a", "vget"),
        E(12, "b", "timer 12"),
        E(13, "b", "wm"),
        W(20),
        E(21, "a", "vget"),
        E(22, "b", "wm"),
        W(30),
    ];
    let expected = [
        ev(1, "a", "ok"),
        ev(2, "a", "ok"),
        Item::Wm(10),
        ev(11, "a", "v=none"),
        ev(12, "b", "ok"),
        ev(13, "b", "wm=10"),
        // Both due at the mark before row 21, fired there, before the mark goes on.
        ev(12, "b", "fired e 12 wm=20"),
        ev(15, "a", "fired e 15 wm=20 vset from-timer: ok"),
        Item::Wm(20),
        ev(21, "a", "v=from-timer"),
        ev(22, "b", "wm=20"),
        Item::Wm(30),
    ];
    // One batch (timers registered in it split it), one row per batch, and a few sizes
    // between: the same stream.
    for size in [rows.len(), 1, 2, 3, 4] {
        let clock = TestClock::default();
        let mut op = keyed(plugin, &[], &clock);
        let mut out = Stream::default();
        // Split between events only, keeping each mark before the event after it.
        let mut chunk: Vec<Row> = Vec::new();
        let mut events = 0;
        for r in rows {
            if matches!(r, E(..)) && events == size {
                op.process_batch(batch(&chunk), &mut out).unwrap();
                chunk.clear();
                events = 0;
            }
            events += matches!(r, E(..)) as usize;
            chunk.push(r);
        }
        op.process_batch(batch(&chunk), &mut out).unwrap();
        assert_eq!(out.0, expected, "batch size {size}");
    }
}

sdk_twins!(
    processing_time_timers_fire_when_the_clock_reaches_them_with,
    "test-state": processing_time_timers_fire_when_the_clock_reaches_them,
    processing_time_timers_fire_when_the_clock_reaches_them_python,
    processing_time_timers_fire_when_the_clock_reaches_them_typescript,
    processing_time_timers_fire_when_the_clock_reaches_them_c
);

fn processing_time_timers_fire_when_the_clock_reaches_them_with(plugin: &str) {
    let clock = TestClock::default();
    clock.set(1_000);
    let mut op = keyed(plugin, &[], &clock);
    assert_eq!(op.next_processing_timer(), None);
    assert_eq!(
        run(
            &mut op,
            &[
                E(1, "a", "now"),
                E(1, "a", "ptimer 1100"),
                E(1, "b", "ptimer 1050"),
                E(1, "c", "ptimer 1050"),
                E(1, "c", "unptimer 1050"),
            ]
        ),
        ["now=1000", "ok", "ok", "ok", "ok"]
    );
    assert_eq!(op.next_processing_timer(), Some(1050));
    let mut out = Stream::default();
    clock.set(1_060);
    op.on_processing_time(1_060, &mut out).unwrap();
    assert_eq!(
        out.0,
        [ev(1050, "b", &format!("fired p 1050 wm={}", i64::MIN))]
    );
    assert_eq!(op.next_processing_timer(), Some(1100));
    let mut out = Stream::default();
    op.on_processing_time(1_060, &mut out).unwrap();
    assert!(out.0.is_empty(), "fires once");
    op.on_processing_time(5_000, &mut out).unwrap();
    assert_eq!(
        out.0,
        [ev(1100, "a", &format!("fired p 1100 wm={}", i64::MIN))]
    );
    assert_eq!(op.next_processing_timer(), None);
}

#[test]
fn state_errors_are_typed_and_clear() {
    let clock = TestClock::default();
    // A non-keyed operator that declares state in init: init fails with `state`.
    let err = operator("test-state", &[], None, &clock).unwrap_err();
    eprintln!("{err}");
    let (code, message) = returned(&err);
    assert_eq!(code, "state");
    assert!(
        message.contains("declaring state 'v'") && message.contains("not-keyed"),
        "{message}"
    );
    assert!(message.contains("not keyed (no key_by edge"), "{message}");

    // A non-keyed operator that declares nothing: state and timer calls are refused,
    // the watermark is there.
    let mut op = operator("test-state", &[("declare", "none")], None, &clock).unwrap();
    let got = run(
        &mut op,
        &[
            W(5),
            E(9, "a", "raw-vget - 0"),
            E(9, "a", "raw-timer - 20"),
            E(9, "a", "declare x value -"),
            E(9, "a", "wm"),
        ],
    );
    for g in &got[..3] {
        assert!(
            g.starts_with("err not-keyed: this operator's input is not keyed"),
            "{g}"
        );
    }
    assert_eq!(got[3], "wm=5");

    // Keyed: bad rows, unknown handles, wrong kinds, bad declarations.
    let mut op = keyed("test-state", &[], &clock);
    let got = run(
        &mut op,
        &[
            E(1, "a", "raw-vget 99 0"),
            E(1, "a", "raw-vget - 42"),
            E(1, "a", "raw-mget - 0"),
            E(1, "a", "declare v map -"),
            E(1, "a", "declare x value 0"),
            E(1, "a", "declare extra map 60000"),
            E(1, "a", "declare extra map 60000"),
        ],
    );
    eprintln!("{got:#?}");
    assert_eq!(
        got[0],
        "err bad-index: row 99 is not in the batch being processed (7 rows)"
    );
    assert_eq!(
        got[1],
        "err bad-handle: handle 42 names no declared state (5 declared)"
    );
    assert_eq!(
        got[2],
        "err bad-handle: state 'v' (handle 0) is value state, used as map state"
    );
    assert!(
        got[3].starts_with("err bad-declaration: state 'v' is declared twice"),
        "{}",
        got[3]
    );
    assert!(
        got[4].starts_with("err bad-declaration:") && got[4].contains("must be positive"),
        "{}",
        got[4]
    );
    assert_eq!(got[5], "handle=5");
    assert_eq!(
        got[6], "handle=5",
        "the same declaration gets the same handle"
    );

    // The SDK's error, returned from process: an operator error with code `state`, and
    // the instance stays usable.
    let mut out = Stream::default();
    let err = op
        .process_batch(
            batch(&[E(1, "a", "vget"), E(1, "a", "fail-vget 7")]),
            &mut out,
        )
        .unwrap_err();
    let (code, message) = returned(&err);
    assert_eq!(code, "state");
    assert!(
        message.starts_with("event 1: bad-index: row 7 is not in the batch"),
        "{message}"
    );
    assert_eq!(run(&mut op, &[E(1, "a", "vget")]), ["v=none"]);

    // State calls in init (no current key).
    let store = store_over(Box::new(HeapKvBackend::new()), &clock);
    let err = operator(
        "test-state",
        &[("probe_in_init", "true")],
        Some(store),
        &clock,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(
            "err no-current-key: keyed state and timers are only available during process"
        ),
        "{err}"
    );
}

#[test]
fn a_guest_that_ignores_the_limit_is_refused() {
    let clock = TestClock::default();
    let mut op = keyed("test-state", &[], &clock);
    // `raw-timer` registers a timer that the mark before row 1 passes, but does not stop
    // the SDK's loop (it bypasses it): row 1's state call is refused, and its output is
    // a fault.
    let mut out = Stream::default();
    let err = op
        .process_batch(
            batch(&[E(1, "a", "raw-timer - 15"), W(20), E(21, "a", "vget")]),
            &mut out,
        )
        .unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, OperatorError::Fault { .. }), "{err:?}");
    assert!(text.contains("call's limit of 1 rows"), "{text}");
}

// ---- fraud rules ----

/// Feeds `payments` to `op` in batches of `size`, each payment preceded by a mark of its
/// watermark (`in_batch`), or each batch preceded by `process_watermark` of the first
/// payment's watermark (`!in_batch`); returns the alerts.
fn feed(
    op: &mut WasmOperator,
    payments: &[Payment],
    watermarks: &[i64],
    size: usize,
    in_batch: bool,
) -> Vec<Alert> {
    let mut out = Stream::default();
    for (chunk, wms) in payments.chunks(size).zip(watermarks.chunks(size)) {
        if !in_batch && wms[0] > i64::MIN {
            op.process_watermark(wms[0], &mut out).unwrap();
        }
        let mut b = Batch::new();
        for (p, &w) in chunk.iter().zip(wms) {
            if in_batch && w > i64::MIN {
                b.push_watermark(w);
            }
            b.push(p.time, p.card.as_bytes(), p.value().as_bytes());
        }
        op.process_batch(b, &mut out).unwrap();
    }
    out.values().iter().map(|v| parse_alert(v)).collect()
}

fn finish(op: &mut WasmOperator) -> Vec<Alert> {
    let mut out = Stream::default();
    op.process_watermark(i64::MAX, &mut out).unwrap();
    out.values().iter().map(|v| parse_alert(v)).collect()
}

fn fraud_operator(store: KeyedStateStore, clock: &TestClock) -> WasmOperator {
    let mut op = WasmOperator::new(&load("fraud-rules"), RULES.config(), Limits::default());
    op.initialize_state(state_context(Some(store), clock))
        .unwrap();
    op.open(&ctx("fraud")).unwrap();
    op
}

fn counts(alerts: &[Alert]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for a in alerts {
        *m.entry(a.rule.as_str()).or_default() += 1;
    }
    m
}

#[test]
fn fraud_rules_match_an_independent_computation_at_every_batch_size() {
    let payments = payments::generate(&PaymentsConfig::default());
    let watermarks = per_event_watermarks(&payments);
    let expected = reference(&payments, &watermarks, &RULES);
    let c = counts(&expected);
    eprintln!("{} payments, alerts {c:?}", payments.len());
    for rule in ["velocity", "amount", "idle-reset"] {
        assert!(c.get(rule).copied().unwrap_or(0) >= 10, "{rule}: {c:?}");
    }
    let clock = TestClock::default();
    for size in [1, 7, 256, payments.len()] {
        let store = store_over(Box::new(HeapKvBackend::new()), &clock);
        let mut op = fraud_operator(store, &clock);
        let mut got = feed(&mut op, &payments, &watermarks, size, true);
        got.extend(finish(&mut op));
        assert_eq!(got.len(), expected.len(), "batch size {size}");
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "alert {i} at batch size {size}");
        }
        assert_eq!(op.keyed_state().unwrap().timer_count(), 0);
        assert_eq!(
            entries(op.keyed_state().unwrap()),
            0,
            "every card was reset"
        );
    }
}

#[test]
fn fraud_rules_with_watermarks_between_batches() {
    let payments = payments::generate(&PaymentsConfig {
        count: 3_000,
        seed: 11,
        ..PaymentsConfig::default()
    });
    let size = 50;
    // Each batch meets the watermark of its first payment.
    let per_event = per_event_watermarks(&payments);
    let watermarks: Vec<i64> = per_event
        .chunks(size)
        .flat_map(|c| std::iter::repeat_n(c[0], c.len()))
        .collect();
    let expected = reference(&payments, &watermarks, &RULES);
    assert!(counts(&expected).get("idle-reset").copied().unwrap_or(0) >= 10);
    let clock = TestClock::default();
    let mut op = fraud_operator(store_over(Box::new(HeapKvBackend::new()), &clock), &clock);
    let mut got = feed(&mut op, &payments, &watermarks, size, false);
    got.extend(finish(&mut op));
    assert_eq!(got, expected);
}

#[test]
fn fraud_rules_continue_exactly_from_a_snapshot_of_their_state() {
    let payments = payments::generate(&PaymentsConfig {
        seed: 3,
        ..PaymentsConfig::default()
    });
    let watermarks = per_event_watermarks(&payments);
    let expected = reference(&payments, &watermarks, &RULES);
    let clock = TestClock::default();
    let cut = payments.len() * 2 / 5;
    let size = 64;

    let mut first = fraud_operator(store_over(Box::new(HeapKvBackend::new()), &clock), &clock);
    let mut got = feed(&mut first, &payments[..cut], &watermarks[..cut], size, true);
    // Snapshot between two batches, as the runtime does at a checkpoint barrier.
    let dir = tempfile::tempdir().unwrap();
    let snap = first
        .keyed_state()
        .unwrap()
        .backend_mut()
        .snapshot(dir.path())
        .unwrap();
    assert!(first.keyed_state().unwrap().timer_count() > 0);
    // The old instance goes on (and is dropped): the snapshot does not see later writes.
    feed(
        &mut first,
        &payments[cut..cut + 100],
        &watermarks[cut..cut + 100],
        size,
        true,
    );
    drop(first);

    let files: Vec<(String, std::path::PathBuf)> = snap
        .files
        .iter()
        .map(|f| (f.name.clone(), f.path.clone()))
        .collect();
    let restored = HeapKvBackendFactory
        .restore(&dir.path().join("restore"), &files)
        .unwrap();
    let mut second = fraud_operator(store_over(restored, &clock), &clock);
    got.extend(feed(
        &mut second,
        &payments[cut..],
        &watermarks[cut..],
        size,
        true,
    ));
    got.extend(finish(&mut second));
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
}

#[test]
fn fraud_rules_reject_bad_payments_and_config() {
    let clock = TestClock::default();
    let mut op = fraud_operator(store_over(Box::new(HeapKvBackend::new()), &clock), &clock);
    let mut b = Batch::new();
    b.push(1, b"c1", br#"{"card":"c1"}"#);
    let err = op.process_batch(b, &mut Stream::default()).unwrap_err();
    assert!(err.to_string().contains("no numeric 'amount'"), "{err}");

    let mut op = WasmOperator::new(
        &load("fraud-rules"),
        config(&[("idle_timeout_ms", "0")]),
        Limits::default(),
    );
    op.initialize_state(state_context(
        Some(store_over(Box::new(HeapKvBackend::new()), &clock)),
        &clock,
    ))
    .unwrap();
    let err = op.open(&ctx("fraud")).unwrap_err();
    assert!(
        err.to_string().contains("idle_timeout_ms must be positive"),
        "{err}"
    );
}

// ---- through a job graph ----

mod job {
    //! The fraud rules in a job: an in-memory source of payments keyed by card, a key-by
    //! edge into the WASM operator (the runtime hands it its keyed state), a sink that
    //! collects.
    use super::*;
    use sluice_core::connector::{
        ConnectorError, Sink, SinkFactory, SourceFactory, SourcePoll, SourceReader,
    };
    use sluice_core::format::ValueFormat;
    use sluice_core::graph::{
        ExecutionConfig, Input, JobGraph, OperatorFactory, Partitioning, Vertex, VertexKind,
    };
    use sluice_core::time::WatermarkStrategy;
    use std::sync::Mutex;

    struct Payments(Arc<Vec<Payment>>);
    struct Reader(Arc<Vec<Payment>>, usize);

    impl SourceFactory for Payments {
        fn value_format(&self) -> ValueFormat {
            ValueFormat::Json
        }
        fn max_parallelism(&self) -> usize {
            1
        }
        fn create_reader(
            &self,
            _: usize,
            _: usize,
        ) -> Result<Box<dyn SourceReader>, ConnectorError> {
            Ok(Box::new(Reader(self.0.clone(), 0)))
        }
    }

    impl SourceReader for Reader {
        fn poll_batch(&mut self, b: &mut Batch, max: usize) -> Result<SourcePoll, ConnectorError> {
            if self.1 == self.0.len() {
                return Ok(SourcePoll::End);
            }
            let end = (self.1 + max).min(self.0.len());
            for p in &self.0[self.1..end] {
                b.push(p.time, p.card.as_bytes(), p.value().as_bytes());
            }
            self.1 = end;
            Ok(SourcePoll::Data)
        }
    }

    type Rows = Arc<Mutex<Vec<String>>>;
    struct Collect(Rows);
    struct Writer(Rows);

    impl SinkFactory for Collect {
        fn create_sink(
            &self,
            _: usize,
            _: usize,
            _: &ValueFormat,
        ) -> Result<Box<dyn Sink>, ConnectorError> {
            Ok(Box::new(Writer(self.0.clone())))
        }
        fn describe(&self) -> String {
            "memory".into()
        }
    }

    impl Sink for Writer {
        fn write_batch(&mut self, b: &Batch) -> Result<(), ConnectorError> {
            let mut rows = self.0.lock().unwrap();
            rows.extend(
                b.iter()
                    .map(|e| String::from_utf8_lossy(e.value).into_owned()),
            );
            Ok(())
        }
        fn finish(&mut self) -> Result<(), ConnectorError> {
            Ok(())
        }
    }

    struct Fraud(LoadedComponent);

    impl OperatorFactory for Fraud {
        fn create(&self, _: usize, _: usize) -> Result<Box<dyn Operator>, OperatorError> {
            Ok(Box::new(WasmOperator::new(
                &self.0,
                RULES.config(),
                Limits::default(),
            )))
        }
    }

    fn edge(vertex: usize, partitioning: Partitioning) -> Input {
        Input {
            vertex,
            side_output: None,
            partitioning,
        }
    }

    /// Runs the job and returns the alerts the sink got.
    fn run_job(payments: Vec<Payment>, parallelism: usize, batch_size: usize) -> Vec<Alert> {
        let rows: Rows = Arc::default();
        let graph = JobGraph {
            name: "fraud".into(),
            config: ExecutionConfig {
                batch_size,
                ..ExecutionConfig::default()
            },
            durability: Default::default(),
            swaps: Default::default(),
            vertices: vec![
                Vertex {
                    id: "payments".into(),
                    parallelism: 1,
                    kind: VertexKind::Source {
                        factory: Arc::new(Payments(Arc::new(payments))),
                        watermarks: WatermarkStrategy {
                            max_out_of_orderness_ms: OUT_OF_ORDERNESS,
                            idleness: None,
                        },
                        max_events_per_second: None,
                    },
                    inputs: vec![],
                },
                Vertex {
                    id: "fraud-rules".into(),
                    parallelism,
                    kind: VertexKind::Operator {
                        factory: Arc::new(Fraud(load("fraud-rules"))),
                        output_format: Some(ValueFormat::Json),
                    },
                    inputs: vec![edge(0, Partitioning::KeyBy)],
                },
                Vertex {
                    id: "alerts".into(),
                    parallelism: 1,
                    kind: VertexKind::Sink {
                        factory: Arc::new(Collect(rows.clone())),
                    },
                    inputs: vec![edge(1, Partitioning::Rebalance)],
                },
            ],
        };
        sluice_core::runtime::start(graph).unwrap().join().unwrap();
        let rows = rows.lock().unwrap();
        rows.iter().map(|r| parse_alert(r)).collect()
    }

    /// The alerts of each card, in order (subtasks interleave cards arbitrarily, but each
    /// card's alerts come from one subtask, in order).
    fn per_card(alerts: &[Alert]) -> BTreeMap<String, Vec<Alert>> {
        let mut m: BTreeMap<String, Vec<Alert>> = BTreeMap::new();
        for a in alerts {
            m.entry(a.card.clone()).or_default().push(a.clone());
        }
        m
    }

    #[test]
    fn fraud_rules_in_a_keyed_job_at_several_parallelisms() {
        let payments = payments::generate(&PaymentsConfig {
            count: 3_000,
            seed: 21,
            ..PaymentsConfig::default()
        });
        let expected = reference(&payments, &per_event_watermarks(&payments), &RULES);
        assert!(
            counts(&expected).values().all(|&n| n >= 5),
            "{:?}",
            counts(&expected)
        );
        for (parallelism, batch_size) in [(1, 1024), (3, 100), (2, 7)] {
            let got = run_job(payments.clone(), parallelism, batch_size);
            assert_eq!(got.len(), expected.len(), "parallelism {parallelism}");
            assert_eq!(
                per_card(&got),
                per_card(&expected),
                "parallelism {parallelism}, batch size {batch_size}"
            );
            if parallelism == 1 {
                assert_eq!(got, expected, "one subtask: the exact sequence");
            }
        }
    }
}

/// Headers of test row `i`: none for every third row, else a few, one with a null
/// value, varying per row.
fn row_headers(i: usize) -> Vec<(String, Option<Vec<u8>>)> {
    if i.is_multiple_of(3) {
        return Vec::new();
    }
    let mut h = vec![(format!("trace-{i}"), Some(vec![i as u8, 0xff]))];
    if i.is_multiple_of(2) {
        h.push(("tenant".to_string(), None));
        h.push((String::new(), Some(Vec::new())));
    }
    h
}

/// What `test-headers` emits for headers `h`: `name=<hex>` or `name=~`, joined by `;`.
fn headers_text(h: &[(String, Option<Vec<u8>>)]) -> String {
    h.iter()
        .map(|(name, value)| match value {
            Some(v) => format!(
                "{name}={}",
                v.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
            None => format!("{name}=~"),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// 40 events with [`row_headers`], a watermark mark before every fifth row.
fn headers_batch() -> Batch {
    let mut b = Batch::new();
    for i in 0..40usize {
        if i % 5 == 0 {
            b.push_watermark(i as i64 * 10);
        }
        let h = row_headers(i);
        let key = format!("k{}", i % 4);
        b.push_with_headers(
            i as i64 * 10 + 5,
            key.as_bytes(),
            b"v",
            h.iter().map(|(n, v)| (n.as_str(), v.as_deref())),
        );
    }
    b
}

sdk_twins!(
    operators_read_each_events_headers_with,
    "test-headers": operators_read_each_events_headers,
    operators_read_each_events_headers_python,
    operators_read_each_events_headers_typescript,
    operators_read_each_events_headers_c
);

fn operators_read_each_events_headers_with(plugin: &str) {
    let clock = TestClock::default();
    let want: Vec<String> = (0..40).map(|i| headers_text(&row_headers(i))).collect();
    let mut op = operator(plugin, &[], None, &clock).unwrap();
    let mut out = Stream::default();
    op.process_batch(headers_batch(), &mut out).unwrap();
    assert_eq!(out.values(), want);
    // A batch without a headers column: every event has none.
    assert_eq!(run(&mut op, &[E(1, "k", "v"), E(2, "k", "v")]), ["", ""]);
}

sdk_twins!(
    headers_stay_with_their_rows_when_timers_split_a_keyed_batch_with,
    "test-headers": headers_stay_with_their_rows_when_timers_split_a_keyed_batch,
    headers_stay_with_their_rows_when_timers_split_a_keyed_batch_python,
    headers_stay_with_their_rows_when_timers_split_a_keyed_batch_typescript,
    headers_stay_with_their_rows_when_timers_split_a_keyed_batch_c
);

fn headers_stay_with_their_rows_when_timers_split_a_keyed_batch_with(plugin: &str) {
    // Every event registers an event-time timer at its time, so each watermark mark
    // inside the batch ends a `process` call: the batch goes in many segments.
    let clock = TestClock::default();
    let want: Vec<String> = (0..40).map(|i| headers_text(&row_headers(i))).collect();
    let mut op = keyed(plugin, &[("timers", "true")], &clock);
    let mut out = Stream::default();
    op.process_batch(headers_batch(), &mut out).unwrap();
    assert_eq!(out.values(), want);
}
