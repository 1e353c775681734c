//! The WASM operator host (`sluice-wasm`) against the guest plugins: outputs, watermark
//! marks, faults, limits, load errors and the compiled-component cache.

use sluice_core::batch::{Batch, WatermarkMark};
use sluice_core::operator::{Operator, OperatorContext, OperatorError, VecCollector};
use sluice_packed::{Reader, Writer};
use sluice_tests::plugins;
use sluice_wasm::{
    CacheOutcome, Grants, Limits, LoadError, RuntimeConfig, WasmOperator, WasmRuntime,
};
use std::time::{Duration, Instant};

// One runtime for the tests of this process, with its cache under plugins/target (so a
// second test run does not compile again).
use plugins::{config, load, returned, runtime};

fn ctx(id: &str) -> OperatorContext {
    OperatorContext {
        operator_id: id.to_string(),
        subtask: 0,
        parallelism: 2,
    }
}

fn open(name: &str, id: &str, cfg: &[(&str, &str)], limits: Limits) -> WasmOperator {
    let mut op = WasmOperator::new(&load(name), config(cfg), limits);
    op.open(&ctx(id)).unwrap();
    op
}

/// A batch of one event: time 1, no key, `value`.
fn one_event(value: &[u8]) -> Batch {
    let mut b = Batch::new();
    b.push(1, b"", value);
    b
}

struct Flight {
    date: i64,
    delay: i64,
    distance: i64,
    origin: &'static str,
    destination: &'static str,
}

fn flights(n: usize) -> Vec<Flight> {
    const AIRPORTS: [&str; 5] = ["ORD", "SFO", "JFK", "LAX", "BOS"];
    (0..n)
        .map(|i| Flight {
            date: 1_167_609_600_000 + i as i64 * 60_000,
            delay: (i as i64 * 7) % 61 - 20,
            distance: 100 + i as i64 * 13,
            origin: AIRPORTS[i % 5],
            destination: AIRPORTS[(i + 2) % 5],
        })
        .collect()
}

fn flight_batch(rows: &[Flight]) -> Batch {
    let mut b = Batch::new();
    for (i, f) in rows.iter().enumerate() {
        if i % 10 == 3 {
            b.push_watermark(f.date - 5_000);
        }
        b.push_with(f.date, b"", |buf| {
            Writer::new(buf)
                .i64(f.date)
                .i64(f.delay)
                .i64(f.distance)
                .str(f.origin)
                .str(f.destination);
        });
    }
    b.push_watermark(rows.last().map_or(0, |f| f.date));
    b
}

#[test]
fn flight_delays_flags_delays_above_the_threshold() {
    let mut op = open(
        "flight-delays",
        "delays",
        &[("delayed_threshold_minutes", "20")],
        Limits::default(),
    );
    let rows = flights(100);
    let input = flight_batch(&rows);
    let marks = input.marks().to_vec();
    assert!(marks.len() > 5);
    let mut out = VecCollector::default();
    op.process_batch(input, &mut out).unwrap();
    assert_eq!(out.main.len(), 1);
    let got = &out.main[0];
    assert_eq!(got.len(), rows.len());
    assert_eq!(
        got.marks(),
        marks.as_slice(),
        "1:1 operator keeps every mark in place"
    );
    for (i, f) in rows.iter().enumerate() {
        let e = got.get(i);
        assert_eq!(e.timestamp, f.date);
        assert_eq!(e.key, f.origin.as_bytes());
        let mut r = Reader::new(e.value);
        assert_eq!(r.i32().unwrap() as i64, f.delay, "row {i}");
        assert_eq!(r.i32().unwrap(), (f.delay > 20) as i32, "row {i}");
        assert_eq!(r.position(), e.value.len());
    }
    assert!(got.iter().any(|e| e.value[4] == 1) && got.iter().any(|e| e.value[4] == 0));

    // The default threshold is 15; a second batch on the same instance.
    let mut op = open("flight-delays", "delays", &[], Limits::default());
    let rows = flights(30);
    let mut out = VecCollector::default();
    op.process_batch(flight_batch(&rows), &mut out).unwrap();
    for (i, f) in rows.iter().enumerate() {
        let mut r = Reader::new(out.main[0].value(i));
        r.i32().unwrap();
        assert_eq!(r.i32().unwrap(), (f.delay > 15) as i32);
    }
    op.process_batch(flight_batch(&rows[..3]), &mut out)
        .unwrap();
    assert_eq!(out.main[1].len(), 3);
}

#[test]
fn flight_delays_rejects_bad_input_and_bad_config() {
    let mut op = open("flight-delays", "delays", &[], Limits::default());
    let mut b = flight_batch(&flights(3));
    b.push(5, b"", b"\x01\x02");
    let err = op
        .process_batch(b, &mut VecCollector::default())
        .unwrap_err();
    let (code, message) = returned(&err);
    assert_eq!(code, "invalid-input");
    assert!(
        message.contains("event 3") && message.contains("packed record"),
        "{message}"
    );
    assert!(
        err.to_string().contains("operator 'delays' (subtask 1/2)"),
        "{err}"
    );
    // A typed error does not kill the instance.
    op.process_batch(flight_batch(&flights(2)), &mut VecCollector::default())
        .unwrap();

    let mut op = WasmOperator::new(
        &load("flight-delays"),
        config(&[("delayed_threshold_minutes", "soon")]),
        Limits::default(),
    );
    let err = op.open(&ctx("delays")).unwrap_err();
    let (code, message) = returned(&err);
    assert_eq!(code, "invalid-config");
    assert!(message.contains("'soon'"), "{message}");
}

#[test]
fn identity_returns_the_batch_exactly() {
    let mut op = open("identity", "id", &[], Limits::default());
    let mut b = Batch::new();
    b.push_watermark(1);
    for i in 0..1000u32 {
        if i % 100 == 50 {
            b.push_watermark(i as i64);
        }
        let key = i.to_le_bytes();
        b.push(
            i as i64 * 3 - 7,
            &key[..(i % 4) as usize],
            &vec![i as u8; (i % 17) as usize],
        );
    }
    b.push_watermark(5000);
    let mut out = VecCollector::default();
    op.process_batch(b.clone(), &mut out).unwrap();
    assert_eq!(out.main, vec![b]);

    // A batch of marks only still carries them.
    let mut marks_only = Batch::new();
    marks_only.push_watermark(6000);
    op.process_batch(marks_only, &mut out).unwrap();
    assert_eq!(
        out.main[1].marks(),
        &[WatermarkMark {
            row: 0,
            watermark: 6000
        }]
    );
    assert!(out.main[1].is_empty());
}

#[test]
fn side_outputs_are_forwarded_with_their_marks() {
    let mut op = open(
        "test-faults",
        "sides",
        &[("mode", "side")],
        Limits::default(),
    );
    let mut b = Batch::new();
    b.push(1, b"a", b"x");
    b.push_watermark(10);
    b.push(2, b"b", b"y");
    let mut out = VecCollector::default();
    op.process_batch(b.clone(), &mut out).unwrap();
    assert_eq!(out.main, vec![b.clone()]);
    assert_eq!(out.side.len(), 1);
    assert_eq!(out.side[0].0, "copy");
    assert_eq!(out.side[0].1, b);
}

#[test]
fn a_panic_is_a_fault_with_the_panic_message_and_kills_the_instance() {
    let mut op = open(
        "test-faults",
        "faulty",
        &[("mode", "trap-on"), ("poison", "bad")],
        Limits::default(),
    );
    let good = one_event(b"fine");
    op.process_batch(good.clone(), &mut VecCollector::default())
        .unwrap();
    let mut b = Batch::new();
    b.push(1, b"", b"ok");
    b.push(2, b"", b"bad");
    let err = op
        .process_batch(b, &mut VecCollector::default())
        .unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, OperatorError::Fault { .. }), "{err:?}");
    assert!(text.contains("operator 'faulty' (subtask 1/2)"), "{text}");
    assert!(text.contains("trapped"), "{text}");
    assert!(text.contains("poison record: bad"), "{text}");
    // Never reused after a trap: errors, no panic.
    let err = op
        .process_batch(good, &mut VecCollector::default())
        .unwrap_err();
    assert!(
        err.to_string().contains("unusable after an earlier fault"),
        "{err}"
    );
}

#[test]
fn a_memory_bomb_hits_the_memory_limit_and_the_host_lives_on() {
    let limits = Limits {
        max_memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let mut op = open("test-faults", "bomb", &[("mode", "memory-bomb")], limits);
    let b = one_event(b"boom");
    let err = op
        .process_batch(b.clone(), &mut VecCollector::default())
        .unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, OperatorError::Fault { .. }), "{err:?}");
    assert!(text.contains("operator 'bomb'"), "{text}");
    assert!(text.contains("memory limit of 16 MiB"), "{text}");
    // The host and other instances are fine.
    let mut id = open("identity", "id", &[], Limits::default());
    let mut out = VecCollector::default();
    id.process_batch(b.clone(), &mut out).unwrap();
    assert_eq!(out.main, vec![b]);
}

#[test]
fn an_infinite_loop_ends_at_the_time_limit() {
    let limits = Limits {
        time_per_call: Duration::from_millis(200),
        ..Limits::default()
    };
    let mut op = open("test-faults", "loop", &[("mode", "infinite-loop")], limits);
    let b = one_event(b"spin");
    let start = Instant::now();
    let err = op
        .process_batch(b, &mut VecCollector::default())
        .unwrap_err();
    let took = start.elapsed();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(text.contains("operator 'loop'"), "{text}");
    assert!(
        text.contains("exceeded its time limit of 200 ms per batch"),
        "{text}"
    );
    assert!(
        took >= Duration::from_millis(190),
        "stopped too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn sleeping_is_refused_rather_than_blocking_the_thread() {
    let limits = Limits {
        time_per_call: Duration::from_millis(500),
        ..Limits::default()
    };
    let mut op = open("test-faults", "sleepy", &[("mode", "sleep")], limits);
    let b = one_event(b"zzz");
    let start = Instant::now();
    let err = op
        .process_batch(b, &mut VecCollector::default())
        .unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, OperatorError::Fault { .. }), "{err:?}");
    assert!(
        text.contains("operator 'sleepy'") && text.contains("tried to sleep"),
        "{text}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn typed_errors_are_returned() {
    let mut op = open(
        "test-faults",
        "err",
        &[("mode", "error")],
        Limits::default(),
    );
    let b = one_event(b"what");
    let err = op
        .process_batch(b, &mut VecCollector::default())
        .unwrap_err();
    let (code, message) = returned(&err);
    assert_eq!(code, "invalid-input");
    assert_eq!(
        message,
        "event 0 (timestamp 1): cannot handle value \"what\""
    );
    assert_eq!(
        err.to_string(),
        "operator 'err' (subtask 1/2): operator error (invalid-input): event 0 (timestamp 1): \
         cannot handle value \"what\""
    );

    let mut op = WasmOperator::new(
        &load("test-faults"),
        config(&[("mode", "init-error")]),
        Limits::default(),
    );
    let err = op.open(&ctx("init")).unwrap_err();
    let (code, message) = returned(&err);
    assert_eq!(code, "invalid-config");
    assert!(message.contains("refusing to start"), "{message}");
    // process after a failed init: an error, not a panic.
    assert!(
        op.process_batch(Batch::new(), &mut VecCollector::default())
            .is_err()
    );
}

#[test]
fn load_errors_say_what_is_wrong_with_the_file() {
    let rt = runtime();
    let err = rt
        .load_component(plugins::wasm("test-other-world"))
        .unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err:?}");
    assert!(text.contains("test_other_world.wasm"), "{text}");
    assert!(
        text.contains("does not export 'sluice:operator/operator@0.2.0'"),
        "{text}"
    );
    assert!(text.contains("process"), "names what it exports: {text}");

    let err = rt
        .load_component(plugins::wasm("test-extra-import"))
        .unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(
        matches!(err, LoadError::UnsupportedImport { .. }),
        "{err:?}"
    );
    assert!(
        text.contains("test_extra_import.wasm") && text.contains("sluice-test:extra/secret"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    // The smallest core module: header and version 1.
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = rt.load_component(&core).unwrap_err();
    assert!(matches!(err, LoadError::CoreModule { .. }), "{err:?}");
    eprintln!("{err}");
    assert!(
        err.to_string().contains("core.wasm") && err.to_string().contains("wasm32-wasip2"),
        "{err}"
    );

    let bytes = std::fs::read(plugins::wasm("identity")).unwrap();
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = rt.load_component(&truncated).unwrap_err();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err:?}");
    eprintln!("{err}");
    assert!(err.to_string().contains("truncated.wasm"), "{err}");

    let text_file = dir.path().join("notes.wasm");
    std::fs::write(&text_file, "hello, I am text").unwrap();
    let err = rt.load_component(&text_file).unwrap_err();
    assert!(matches!(err, LoadError::NotWasm { .. }), "{err:?}");

    let missing = dir.path().join("missing.wasm");
    let err = rt.load_component(&missing).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.wasm"), "{err}");
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || RuntimeConfig {
        max_instances: 8,
        ..RuntimeConfig::with_cache_dir(dir.path())
    };
    let wasm = plugins::wasm("identity");

    let first = WasmRuntime::new(cfg()).unwrap();
    let c = first.load_component(&wasm).unwrap();
    assert_eq!(c.cache_outcome(), CacheOutcome::Compiled);
    assert_eq!(first.compilations(), 1);
    assert_eq!(c.sha256().len(), 64);

    let second = WasmRuntime::new(cfg()).unwrap();
    let c = second.load_component(&wasm).unwrap();
    assert_eq!(c.cache_outcome(), CacheOutcome::Hit);
    assert_eq!(second.compilations(), 0);
    let mut op = WasmOperator::new(&c, vec![], Limits::default());
    op.open(&ctx("cached")).unwrap();
    let mut b = Batch::new();
    b.push(1, b"k", b"v");
    let mut out = VecCollector::default();
    op.process_batch(b.clone(), &mut out).unwrap();
    assert_eq!(out.main, vec![b]);

    // A corrupt entry is recompiled, not fatal.
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("compiled"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    // Replace it (a new file, as the cache itself does: the old one may still be mapped by
    // the runtimes above, and truncating a mapped file in place would fault them).
    std::fs::remove_file(&entries[0]).unwrap();
    std::fs::write(&entries[0], b"garbage").unwrap();
    let third = WasmRuntime::new(cfg()).unwrap();
    let c = third.load_component(&wasm).unwrap();
    assert_eq!(c.cache_outcome(), CacheOutcome::Recompiled);
    let fourth = WasmRuntime::new(cfg()).unwrap();
    assert_eq!(
        fourth.load_component(&wasm).unwrap().cache_outcome(),
        CacheOutcome::Hit
    );
}

#[test]
fn clocks_are_frozen_unless_granted() {
    let b = one_event(b"now?");
    let read = |op: &mut WasmOperator| {
        let mut out = VecCollector::default();
        op.process_batch(b.clone(), &mut out).unwrap();
        i64::from_le_bytes(out.main[0].value(0).try_into().unwrap())
    };
    let mut op = open(
        "test-faults",
        "clock",
        &[("mode", "clock")],
        Limits::default(),
    );
    assert_eq!(read(&mut op), 0, "the sandbox's wall clock reads the epoch");
    let mut op = WasmOperator::new(
        &load("test-faults"),
        config(&[("mode", "clock")]),
        Limits::default(),
    )
    .with_grants(Grants {
        clocks: true,
        ..Grants::default()
    });
    op.open(&ctx("clock")).unwrap();
    assert!(
        read(&mut op) > 1_600_000_000_000,
        "a granted clock is the host's"
    );
}

#[test]
fn guest_output_and_log_calls_reach_tracing_with_the_operator() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        // test-faults logs at init (host.log) and prints to stdout.
        let mut op = open(
            "test-faults",
            "chatty",
            &[("mode", "side")],
            Limits::default(),
        );
        let b = one_event(b"x");
        op.process_batch(b, &mut VecCollector::default()).unwrap();
    });
    let logged = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    eprintln!("{logged}");
    assert!(
        logged.contains("test-faults starting in mode side"),
        "{logged}"
    );
    assert!(logged.contains("test-faults: init done"), "{logged}");
    assert!(
        logged.contains("operator 'chatty' (subtask 1/2)"),
        "{logged}"
    );
    assert!(logged.contains("stdout"), "{logged}");
}
