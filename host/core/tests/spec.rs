//! Job specs: errors name the field and what is wrong; a good spec builds the graph.

mod common;
use common::*;
use sluice_core::connector::*;
use sluice_core::graph::{OperatorFactory, VertexKind};
use sluice_core::spec::{self, Overrides, Resolver, SpecError};
use std::path::Path;
use std::sync::Arc;

struct TestResolver;

/// Never run: these tests only build graphs.
struct NoOperator;
impl OperatorFactory for NoOperator {
    fn create(
        &self,
        _: usize,
        _: usize,
    ) -> Result<Box<dyn sluice_core::Operator>, sluice_core::OperatorError> {
        unreachable!("graphs are only built here")
    }
}
impl Resolver for TestResolver {
    fn source(
        &self,
        c: &str,
        _: &serde_json::Value,
        _: &Path,
        f: &str,
    ) -> Result<Arc<dyn SourceFactory>, ConnectorError> {
        if c != "memory" {
            return Err(ConnectorError(format!(
                "{f}.connector: unknown connector '{c}'"
            )));
        }
        Ok(Arc::new(VecSource {
            events: Arc::default(),
        }))
    }
    fn sink(
        &self,
        _: &str,
        _: &serde_json::Value,
        _: &Path,
        _: &str,
    ) -> Result<Arc<dyn SinkFactory>, ConnectorError> {
        Ok(Arc::new(CollectSink(Rows::default())))
    }
    fn operator(
        &self,
        _: &str,
        o: &serde_json::Value,
        _: &Path,
        f: &str,
    ) -> Result<Arc<dyn OperatorFactory>, SpecError> {
        if o.get("wasm").is_none() {
            return Err(SpecError(format!("{f}.wasm: missing")));
        }
        Ok(Arc::new(NoOperator))
    }
}

const GOOD: &str = r#"
name: t
parallelism: 2
sources:
  - id: src
    connector: memory
    watermarks: {max_out_of_orderness: 30m, idleness: 1m}
windows:
  - id: hourly
    input: src
    window: {type: tumbling, size: 1h}
    allowed_lateness: 2h
    aggregates:
      - {name: n, fn: count}
      - {name: total, fn: sum, field: x}
sinks:
  - {id: out, input: hourly, connector: x}
  - {id: late, input: hourly.late, connector: x}
"#;

fn build(text: &str) -> Result<sluice_core::graph::JobGraph, SpecError> {
    spec::parse(text)?.to_graph(Path::new("."), &TestResolver, Overrides::default())
}

#[test]
fn a_good_spec_builds_the_graph() {
    let g = build(GOOD).unwrap();
    let ids: Vec<&str> = g.vertices.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["src", "hourly", "out", "late"]);
    assert_eq!(g.vertices[1].parallelism, 2);
    match &g.vertices[1].kind {
        VertexKind::Window {
            allowed_lateness, ..
        } => assert_eq!(*allowed_lateness, 7_200_000),
        _ => panic!("not a window"),
    }
    let g = spec::parse(GOOD)
        .unwrap()
        .to_graph(
            Path::new("."),
            &TestResolver,
            Overrides {
                parallelism: Some(4),
                batch_size: Some(7),
            },
        )
        .unwrap();
    assert_eq!((g.vertices[1].parallelism, g.config.batch_size), (4, 7));
}

fn err(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    build(&GOOD.replacen(from, to, 1))
        .map(|_| ())
        .unwrap_err()
        .0
}

#[test]
fn errors_name_the_field_and_what_is_wrong() {
    let cases = [
        ("size: 1h", "size: 1 fortnight", "windows[0].window.size"),
        (
            "size: 1h",
            "size: 0",
            "windows[0].window.size: must be longer than 0",
        ),
        (
            "type: tumbling",
            "type: hopping",
            "windows[0].window.type: unknown window type 'hopping'",
        ),
        (
            "fn: count",
            "fn: median",
            "windows[0].aggregates[0].fn: unknown function 'median'",
        ),
        (
            "input: hourly.late",
            "input: hourly.early",
            "sinks[1].input: 'hourly' has no side output 'early'",
        ),
        (
            "input: src",
            "input: nowhere",
            "windows[0].input: no vertex 'nowhere'",
        ),
        (
            "id: out",
            "id: src",
            "sinks[0].id: 'src' is already the id of sources[0]",
        ),
        (
            "max_out_of_orderness: 30m",
            "max_out_of_orderness: -5",
            "sources[0].watermarks.max_out_of_orderness",
        ),
        (
            "connector: memory",
            "connector: kafka",
            "sources[0].connector: unknown connector 'kafka'",
        ),
        (
            "parallelism: 2",
            "parallelism: 0",
            "parallelism: must be at least 1",
        ),
        ("parallelism: 2", "parallelism: 129", "max_parallelism"),
        (
            "allowed_lateness: 2h",
            "allowed_latenes: 2h",
            "windows[0].allowed_latenes: unknown field `allowed_latenes`, expected one of",
        ),
        (
            ", field: x}",
            "}",
            "windows[0].aggregates: aggregate 'total': needs a field",
        ),
    ];
    for (from, to, want) in cases {
        let e = err(from, to);
        assert!(
            e.contains(want),
            "replacing {from:?} by {to:?}: got {e:?}, want {want:?}"
        );
    }
}

#[test]
fn a_cycle_is_an_error_naming_its_vertices() {
    let text = r#"
name: t
sources: [{id: src, connector: memory, watermarks: {max_out_of_orderness: 0}}]
windows:
  - {id: a, input: [src, b], window: {type: session, gap: 1s}, aggregates: [{name: n, fn: count}]}
  - {id: b, input: a, window: {type: session, gap: 1s}, aggregates: [{name: n, fn: count}]}
sinks: [{id: out, input: b, connector: x}]
"#;
    let e = build(text).map(|_| ()).unwrap_err().0;
    assert!(e.contains("cycle") && e.contains("a, b"), "{e}");
}

#[test]
fn yaml_errors_are_reported() {
    assert!(
        build("name: [")
            .map(|_| ())
            .unwrap_err()
            .0
            .contains("not valid YAML")
    );
    assert!(
        build("name: t\n")
            .map(|_| ())
            .unwrap_err()
            .0
            .contains("missing field `sources`")
    );
}

#[test]
fn a_union_of_different_value_formats_is_an_error() {
    let text = r#"
name: t
sources: [{id: src, connector: memory, watermarks: {max_out_of_orderness: 0}}]
operators:
  - {id: op, input: src, wasm: x.wasm, output: {format: packed, fields: [{name: x, type: i64}]}}
windows:
  - {id: w, input: [src, op], window: {type: tumbling, size: 1s}, aggregates: [{name: n, fn: count}]}
sinks: [{id: out, input: w, connector: x}]
"#;
    let e = build(text).map(|_| ()).unwrap_err().0;
    assert!(
        e.contains("windows[0].input") && e.contains("'op'") && e.contains("format"),
        "{e}"
    );
}

#[test]
fn state_checkpoint_and_restart_sections() {
    use sluice_core::runtime::RestartStrategy;
    use std::time::Duration;
    // The defaults: heap state, no checkpoints, no restarts.
    let g = build(GOOD).unwrap();
    assert_eq!(g.durability.state_backend.kind(), "heap");
    assert!(g.durability.checkpoints.is_none());
    assert_eq!(g.durability.restart, RestartStrategy::None);
    let with = |extra: &str| build(&format!("{GOOD}{extra}"));
    let g = with("restart: {strategy: fixed-delay, attempts: 4, delay: 2s}\nstate: {backend: heap, dir: st}\n").unwrap();
    assert_eq!(
        g.durability.restart,
        RestartStrategy::FixedDelay {
            attempts: 4,
            delay: Duration::from_secs(2),
            reset_after: None,
        }
    );
    assert!(g.durability.state_dir.ends_with("st"));
    let g = with("restart: {strategy: failure-rate, max_failures: 3, interval: 5m, delay: 1s}\n")
        .unwrap();
    assert_eq!(
        g.durability.restart,
        RestartStrategy::FailureRate {
            max_failures: 3,
            interval: Duration::from_secs(300),
            delay: Duration::from_secs(1),
        }
    );
    let g = with(
        "restart: {strategy: exponential-backoff, attempts: 3, initial_delay: 1s, max_delay: 1m}\n",
    )
    .unwrap();
    assert!(matches!(
        g.durability.restart,
        RestartStrategy::ExponentialBackoff { reset_after: Some(r), .. } if r == Duration::from_secs(3600)
    ));
    let cases = [
        (
            "state: {backend: leveldb}\n",
            "state.backend: unknown state backend 'leveldb'",
        ),
        ("state: {backnd: heap}\n", "unknown field `backnd`"),
        (
            "checkpoints: {interval: 0}\n",
            "checkpoints.interval: must be longer than 0",
        ),
        (
            "checkpoints: {interval: 1s, retain: 0}\n",
            "checkpoints.retain: must be at least 1",
        ),
        // The test resolver has no storage: the error names the field.
        (
            "checkpoints: {interval: 1s}\n",
            "checkpoints.storage: this build has no checkpoint storage",
        ),
        (
            "restart: {strategy: exponential-backoff, attempts: 3, initial_delay: 1s, max_delay: 1m, multiplier: 0.5}\n",
            "restart.multiplier: must be at least 1",
        ),
        (
            "restart: {strategy: failure-rate, max_failures: 3, interval: 0, delay: 1s}\n",
            "restart.interval: must be longer than 0",
        ),
        (
            "restart: {strategy: sometimes}\n",
            "unknown variant `sometimes`",
        ),
    ];
    for (extra, want) in cases {
        let e = with(extra).map(|_| ()).unwrap_err().0;
        assert!(e.contains(want), "{extra:?}: got {e:?}, want {want:?}");
    }
}
