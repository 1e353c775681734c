//! Topic administration for tools and tests: create a topic, add partitions.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use sluice_core::connector::ConnectorError;
use std::time::Duration;

fn client(brokers: &str) -> Result<AdminClient<DefaultClientContext>, ConnectorError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| ConnectorError(format!("kafka {brokers}: {e}")))
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// Creates `topic` with `partitions` partitions at `brokers`; an existing topic is kept
/// (its partitions are not changed). Errors name the topic and the broker's answer.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), ConnectorError> {
    let admin = client(brokers)?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = futures_executor::block_on(admin.create_topics([&new], &options()))
        .map_err(|e| ConnectorError(format!("creating topic '{topic}' at {brokers}: {e}")))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => {
                return Err(ConnectorError(format!(
                    "creating topic '{t}' at {brokers}: {e}"
                )));
            }
        }
    }
    Ok(())
}

/// Grows `topic` to `partitions` partitions.
pub fn add_partitions(brokers: &str, topic: &str, partitions: usize) -> Result<(), ConnectorError> {
    let admin = client(brokers)?;
    let new = NewPartitions::new(topic, partitions);
    let results = futures_executor::block_on(admin.create_partitions([&new], &options()))
        .map_err(|e| ConnectorError(format!("adding partitions to '{topic}': {e}")))?;
    for r in results {
        r.map_err(|(t, e)| ConnectorError(format!("adding partitions to '{t}': {e}")))?;
    }
    Ok(())
}
