//! `sluice kafka produce`: load a spec's source into a Kafka topic.

use anyhow::{Context, Result, bail};
use sluice_core::batch::Batch;
use sluice_core::connector::SourcePoll;
use sluice_core::graph::{JobGraph, VertexKind};
use std::time::Instant;

/// Produces every event of source `source` of `graph` (one reader, so in the source's
/// order) to `topic` at `brokers`, creating the topic with `partitions` partitions if it
/// does not exist. Records keep the events' keys, values and times; `partitioning` is the
/// Kafka sink's (`round-robin`, `key-hash`). Returns the number of events.
pub fn produce(
    graph: &JobGraph,
    source: &str,
    brokers: &str,
    topic: &str,
    partitions: i32,
    partitioning: &str,
) -> Result<u64> {
    let Some(vertex) = graph.vertices.iter().find(|v| v.id == source) else {
        bail!(
            "the spec has no source '{source}' (its sources: {})",
            graph
                .vertices
                .iter()
                .filter(|v| matches!(v.kind, VertexKind::Source { .. }))
                .map(|v| v.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let VertexKind::Source { factory, .. } = &vertex.kind else {
        bail!("'{source}' is not a source");
    };
    sluice_kafka::admin::create_topic(brokers, topic, partitions)?;
    let sink_factory = sluice_kafka::sink_factory(
        &serde_json::json!({"brokers": brokers, "topic": topic, "partitioning": partitioning}),
        std::path::Path::new("."),
        "--topic",
    )?;
    let mut reader = factory.create_reader(0, 1)?;
    let mut sink = sink_factory.create_sink(0, 1, &factory.value_format())?;
    let started = Instant::now();
    let mut batch = Batch::with_capacity(8192, 8192 * 32);
    let mut events = 0u64;
    loop {
        batch.clear();
        match reader.poll_batch(&mut batch, 8192)? {
            SourcePoll::End => break,
            SourcePoll::Pending => std::thread::sleep(std::time::Duration::from_millis(1)),
            SourcePoll::Data => {
                sink.write_batch(&batch)?;
                events += batch.len() as u64;
            }
        }
    }
    sink.finish().context("flushing the last records")?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {events} events of source '{source}' to topic '{topic}' at {brokers} in {secs:.2} s ({:.2} M events/s)",
        events as f64 / secs / 1e6
    );
    eprintln!(
        "a Kafka source reads them with: value_format: {}",
        sluice_kafka::config::value_format_spec(&factory.value_format())
    );
    Ok(events)
}
