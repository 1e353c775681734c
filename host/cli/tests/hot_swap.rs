//! Hot-swap of an operator's code in a running job, through the API of a real `sluice
//! serve`: swapped three times between two versions whose outputs differ in a field,
//! under a steady stream, with keyed state carried over; a new version whose init fails
//! is refused before the swap; one that fails its first batches is rolled back by the
//! job itself. Every answer is checked against the input: each event once, each key's
//! count consecutive, the versions in source order as the barriers split them.

use serde_json::{Value, json};
use sluice_tests::server::{TestServer, flights_spec, swap_spec};
use sluice_tests::{flights, plugins};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const EVENTS: usize = 200_000;

fn start(dir: &Path) -> TestServer {
    TestServer::start(
        env!("CARGO_BIN_EXE_sluice").as_ref(),
        &dir.join("data"),
        None,
        &[],
    )
}

fn job(dir: &Path) -> Value {
    swap_spec(dir, EVENTS, 20_000)
}

/// The output rows in source order: `(t, key, version, n)`; checks each input event is
/// there exactly once.
fn rows(dir: &Path) -> Vec<(u64, String, String, u64)> {
    let text = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
    let mut rows: Vec<(u64, String, String, u64)> = text
        .lines()
        .map(|l| {
            let o: Value = serde_json::from_str(l).unwrap();
            let v = &o["value"];
            (
                v["in"]["t"].as_u64().unwrap(),
                o["key"].as_str().unwrap().to_string(),
                v["version"].as_str().unwrap().to_string(),
                v["n"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    let ts: Vec<u64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(
        ts,
        (0..EVENTS as u64).collect::<Vec<_>>(),
        "every event exactly once"
    );
    rows
}

/// Each key's counts, in source order, are 1, 2, 3...: the state went over to every new
/// version, and no event counted twice.
fn counts_are_consecutive(rows: &[(u64, String, String, u64)]) {
    let mut next: BTreeMap<&str, u64> = BTreeMap::new();
    for (t, k, _, n) in rows {
        let want = next.entry(k).or_insert(1);
        assert_eq!(*n, *want, "key {k} at t={t}");
        *want += 1;
    }
}

fn swap(server: &TestServer, id: &str, to: &str) -> (u16, Value) {
    swap_vertex(server, id, "versioned", to)
}

fn swap_vertex(server: &TestServer, id: &str, vertex: &str, to: &str) -> (u16, Value) {
    let a = server.call(
        "PUT",
        &format!("/v1/jobs/{id}/operators/{vertex}"),
        Some("application/json"),
        json!({"operator": to}).to_string().as_bytes(),
    );
    (a.status, a.body)
}

/// Lets the stream run a little.
fn run_a_while() {
    std::thread::sleep(Duration::from_millis(700));
}

#[test]
fn swapped_three_times_under_load_each_event_goes_through_the_version_of_its_barrier() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    server.upload(&plugins::wasm("test_swap_a"), "swap", "a");
    server.upload(&plugins::wasm("test_swap_b"), "swap", "b");
    let id = server.submit(&job(tmp.path()));
    let mut pauses = Vec::new();
    let mut barriers = Vec::new();
    for to in ["swap@b", "swap@a", "swap@b"] {
        run_a_while();
        let (status, body) = swap(&server, &id, to);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "committed", "{body}");
        pauses.push(body["pause_ms"].as_f64().unwrap());
        barriers.push(body["checkpoint"].as_u64().unwrap());
        assert_eq!(body["job"]["status"], "running");
    }
    assert!(barriers.windows(2).all(|w| w[0] < w[1]), "{barriers:?}");
    let job = server.wait_for_end(&id, Duration::from_secs(120));
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(job["restarts"], 0, "{job}");
    let b = server.get("/v1/operators/swap@b").body;
    assert_eq!(
        job["spec"]["operators"][0]["operator"], b["sha256"],
        "the spec names the last version"
    );

    let rows = rows(tmp.path());
    counts_are_consecutive(&rows);
    // In source order the versions run a, b, a, b: each event went through the version
    // active at the barrier before it, in every subtask.
    let mut runs: Vec<(&str, usize)> = Vec::new();
    for (_, _, v, _) in &rows {
        match runs.last_mut() {
            Some((last, n)) if last == v => *n += 1,
            _ => runs.push((v, 1)),
        }
    }
    let order: Vec<&str> = runs.iter().map(|r| r.0).collect();
    assert_eq!(order, ["a", "b", "a", "b"], "{runs:?}");
    println!(
        "hot-swap: 3 swaps at checkpoints {barriers:?}; pause of the stream (longest subtask) {:?} ms; rows per version run {:?}",
        pauses
            .iter()
            .map(|p| (p * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        runs.iter().map(|r| r.1).collect::<Vec<_>>()
    );
}

#[test]
fn a_version_that_cannot_start_is_refused_and_one_that_fails_its_first_batches_is_rolled_back() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    server.upload(&plugins::wasm("test_swap_a"), "swap", "a");
    server.upload(&plugins::wasm("test_swap_bad"), "swap", "bad");
    server.upload(&plugins::wasm("test_faults"), "faults", "1.0");
    let id = server.submit(&job(tmp.path()));
    run_a_while();

    // Its init fails (test-faults wants a `mode`): refused before anything changes.
    let (status, body) = swap(&server, &id, "faults@1.0");
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_operator", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not start"),
        "{body}"
    );
    // Unknown operator, unknown vertex.
    assert_eq!(swap(&server, &id, "swap@zzz").0, 422);
    let a = server.call(
        "PUT",
        &format!("/v1/jobs/{id}/operators/nope"),
        Some("application/json"),
        json!({"operator": "swap@a"}).to_string().as_bytes(),
    );
    assert_eq!(a.status, 404, "{a:?}");

    // It starts, then traps on its first event: the job fails and comes back with the
    // old version from its latest checkpoint.
    let (status, body) = swap(&server, &id, "swap@bad");
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "swap_rolled_back", "{body}");
    let job = server.wait_for_end(&id, Duration::from_secs(120));
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(job["restarts"], 1, "{job}");
    let a = server.get("/v1/operators/swap@a").body;
    assert_eq!(job["spec"]["operators"][0]["operator"], a["sha256"]);
    let rows = rows(tmp.path());
    counts_are_consecutive(&rows);
    assert!(
        rows.iter().all(|r| r.2 == "a"),
        "only version a's output was committed"
    );
}

/// The flights job at full speed, its operator swapped three times between two versions
/// that differ in the `trace` side output's value: in processing order, the flights went
/// through v1, v2, v1, v2 (each through the version active at the barrier before it),
/// each exactly once, and the windows equal the exact answer computed from the rows.
#[test]
fn the_flights_job_at_full_speed_swapped_three_times_gives_the_exact_answer() {
    plugins::build();
    let tmp = tempfile::tempdir().unwrap();
    let rows = 1_500_000;
    let input = tmp.path().join("flights.parquet");
    let answer = flights::exact_answer(&flights::read_rows(
        &flights::dataset(),
        Some(rows),
        Some(&input),
    ));
    let server = start(tmp.path());
    server.upload(&plugins::wasm("test_flights_v1"), "flights", "v1");
    server.upload(&plugins::wasm("test_flights_v2"), "flights", "v2");
    let out = tmp.path().join("out");
    let mut spec = flights_spec(&input, "flights@v1", &out, None);
    spec["checkpoints"] = json!({"interval": "500ms"});
    let trace = tmp.path().join("trace.jsonl");
    spec["sinks"].as_array_mut().unwrap().push(json!({
        "id": "trace", "input": "flight-delays.trace", "connector": "jsonl",
        "path": trace.to_str().unwrap(), "write": "value", "parallelism": 1
    }));
    let id = server.submit(&spec);
    let mut pauses = Vec::new();
    for to in ["flights@v2", "flights@v1", "flights@v2"] {
        let (status, body) = swap_vertex(&server, &id, "flight-delays", to);
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("committed")),
            "{body}"
        );
        pauses.push(body["pause_ms"].as_f64().unwrap());
    }
    let job = server.wait_for_end(&id, Duration::from_secs(300));
    assert_eq!(job["status"], "finished", "{job}");
    flights::check_output(&answer, &flights::read_output(&out), "swapped three times");
    let text = std::fs::read_to_string(&trace).unwrap();
    let mut runs: Vec<(String, usize)> = Vec::new();
    for line in text.lines() {
        // Side-output values are bytes, written as a JSON array of them.
        let bytes: Vec<u8> = serde_json::from_str(line).unwrap();
        let v = String::from_utf8(bytes).unwrap();
        match runs.last_mut() {
            Some((last, n)) if *last == v => *n += 1,
            _ => runs.push((v, 1)),
        }
    }
    let order: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(order, ["v1", "v2", "v1", "v2"], "{runs:?}");
    assert_eq!(
        runs.iter().map(|r| r.1).sum::<usize>(),
        rows,
        "every flight once"
    );
    println!(
        "hot-swap of the flights job ({rows} flights, unpaced): pauses {:?} ms; flights per version run {:?}",
        pauses
            .iter()
            .map(|p| (p * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        runs.iter().map(|r| r.1).collect::<Vec<_>>()
    );
}
