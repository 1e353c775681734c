//! A real Kafka-protocol broker for tests and benchmarks: Tansu (crate `tansu`,
//! Apache-2.0), started on a free loopback port with its own SQLite storage in a
//! temporary folder, and killed when the [`Broker`] guard is dropped (however the test
//! ends); and a `read_committed` reader of a whole topic.
//!
//! Tansu needs its `libsql` feature for a storage that keeps records:
//! `cargo install tansu --locked --features libsql` (`.ci/run` does it once).
//!
//! Tansu 0.6.0 (the newest on crates.io) does not serve `EndTxn` (API key 26): a
//! transaction can be begun but never committed or aborted. Tests that need Kafka
//! transactions are `#[ignore]`d and run against another broker with
//! `SLUICE_KAFKA_BROKERS=<host:port> cargo test -- --ignored` ([`Broker::start`] then
//! uses that broker and starts nothing).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Tansu binary: `$SLUICE_TANSU`, else `tansu` on `PATH`, else `~/.cargo/bin/tansu`.
/// Panics with the command that installs it when there is none.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_TANSU") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    let in_cargo = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".cargo/bin/tansu"))
        .filter(|p| p.is_file());
    on_path.or(in_cargo).unwrap_or_else(|| {
        panic!(
            "the Kafka tests need the Tansu broker, which is not installed (not on PATH, not in \
             ~/.cargo/bin, $SLUICE_TANSU unset): run `cargo install tansu --locked --features \
             libsql` (or .ci/run)"
        )
    })
}

/// A running Tansu broker on `127.0.0.1:<port>`; dropping it kills the process.
pub struct Broker {
    /// `$SLUICE_KAFKA_BROKERS`, when set: a broker this guard did not start.
    external: Option<String>,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// A free loopback port (bound, then released for the broker).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Broker {
    /// Starts a broker with empty storage and waits until it accepts connections.
    /// Panics, with the broker's log, if it does not start within 30 s. With
    /// `$SLUICE_KAFKA_BROKERS` set, uses those brokers instead (tests then need topic
    /// names of their own: [`Broker::unique`]).
    pub fn start() -> Broker {
        if let Ok(brokers) = std::env::var("SLUICE_KAFKA_BROKERS") {
            return Broker {
                external: Some(brokers),
                port: 0,
                dir: tempfile::tempdir().expect("a temporary folder"),
                child: None,
            };
        }
        let mut broker = Broker {
            external: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary folder"),
            child: None,
        };
        broker.restart();
        broker
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        match &self.external {
            Some(b) => b.clone(),
            None => format!("127.0.0.1:{}", self.port),
        }
    }

    /// `name`, made unique to this process and moment for an external broker (whose
    /// topics outlive the test); `name` itself for a broker of this guard.
    pub fn unique(&self, name: &str) -> String {
        // Tests of one process run at the same moment: a counter keeps them apart.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        match &self.external {
            Some(_) => format!(
                "{name}-{}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
            ),
            None => name.to_string(),
        }
    }

    /// Creates topic `name` with `partitions` partitions. Panics on failure.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        sluice_kafka::admin::create_topic(&self.bootstrap(), name, partitions)
            .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
    }

    /// Grows topic `name` to `partitions` partitions, as a `CreatePartitions` request
    /// would. Tansu 0.6.0 does not serve that request (librdkafka's admin client gets
    /// `UnsupportedFeature`), so for a broker of this guard the new partitions are added
    /// to its SQLite storage, where Tansu reads topic metadata from on every request,
    /// in the rows its own `CreateTopics` writes (`topic.partitions`, `topition`,
    /// `watermark`), with Python's `sqlite3`. An external broker gets the admin request.
    /// Panics on failure.
    pub fn add_partitions(&self, name: &str, partitions: i32) {
        if self.external.is_some() {
            return sluice_kafka::admin::add_partitions(
                &self.bootstrap(),
                name,
                partitions as usize,
            )
            .unwrap_or_else(|e| panic!("adding partitions to {name}: {e}"));
        }
        let script = r#"
import sqlite3, sys
topic, n = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect("tansu.db", timeout=30)
with db:
    (tid, old) = db.execute("select id, partitions from topic where name = ?", (topic,)).fetchone()
    for p in range(old, n):
        db.execute("insert into topition (topic, partition) values (?, ?)", (tid, p))
        db.execute(
            "insert into watermark (topition) select id from topition where topic = ? and partition = ?",
            (tid, p),
        )
    db.execute("update topic set partitions = ? where id = ?", (n, tid))
"#;
        let status = Command::new("python3")
            .current_dir(self.dir.path())
            .args(["-c", script, name, &partitions.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("adding partitions needs python3: {e}"));
        assert!(status.success(), "adding partitions to {name}: {status}");
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    /// Kills the broker (SIGKILL); its storage stays for [`Broker::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker (again) on the same port and storage, and waits until it
    /// accepts connections.
    /// Panics for an external broker.
    pub fn restart(&mut self) {
        assert!(self.external.is_none(), "cannot restart an external broker");
        self.kill();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("the broker's log file");
        let child = Command::new(binary())
            .current_dir(self.dir.path())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                let hint = if log.contains("FeatureNotEnabled") {
                    "\nTansu was built without its SQLite storage: run `cargo install tansu \
                     --locked --features libsql --force`"
                } else {
                    ""
                };
                panic!("the Tansu broker exited at start ({status}):\n{log}{hint}");
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                panic!("the Tansu broker did not listen within 30 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp, ms.
    pub timestamp: i64,
    /// Key (empty if none).
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
}

/// Every record of `topic` (all partitions, from the start to their end as it is now)
/// that a `read_committed` consumer sees, in partition then offset order. Panics if the
/// topic cannot be read to its end within 120 s.
pub fn read_committed(brokers: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("a consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&tpl).expect("assigned");
    let mut at_end = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let started = Instant::now();
    while (at_end.len() as i32) < partitions {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "reading {topic} did not reach its end"
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis().unwrap_or(-1),
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().unwrap_or_default().to_vec(),
                });
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
        }
    }
    out.sort();
    out
}
