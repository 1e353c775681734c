//! A real Apache Kafka broker for tests and benchmarks, and a `read_committed` reader of
//! a whole topic.
//!
//! The broker is Apache Kafka 4.1.1 itself (single node, KRaft, combined broker and
//! controller), run from Maven Central's jars by `tests/kafka-broker/kafka-broker.sh` on
//! free loopback ports with its data in a temporary folder. The jars are fetched once per
//! machine (`kafka-broker.sh fetch`, which `.ci/run` calls; a test fetches them itself
//! when Maven is there and they are not).
//!
//! * [`Broker::shared`]: one broker per test process, started on first use and killed
//!   when the process exits (however it exits: the JVM gets `PR_SET_PDEATHSIG`). Tests
//!   sharing it keep apart by topic names from [`Broker::unique`].
//! * [`Broker::start`]: a broker of the caller's own, killed when the guard drops, which
//!   [`Broker::kill`] and [`Broker::restart`] can stop and start again on its data.
//!
//! With `$SLUICE_KAFKA_BROKERS` set, both use those brokers instead and start nothing.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a broker may take to print "Kafka Server started" (a cold JVM on a busy
/// 2-core machine takes 5–10 s).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// `tests/kafka-broker/kafka-broker.sh`.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kafka-broker/kafka-broker.sh")
}

/// Makes sure the broker's jars are on this machine (`kafka-broker.sh fetch`: Maven
/// Central, once; Maven's own cache after that). Panics naming what is missing.
fn fetch_jars() {
    static FETCHED: OnceLock<()> = OnceLock::new();
    FETCHED.get_or_init(|| {
        let out = Command::new("bash")
            .arg(script())
            .arg("fetch")
            .output()
            .unwrap_or_else(|e| panic!("the Kafka tests need bash: {e}"));
        assert!(
            out.status.success(),
            "the Kafka tests need Apache Kafka's jars, and fetching them failed (they come \
             from Maven Central with `bash tests/kafka-broker/kafka-broker.sh fetch`, which \
             needs `mvn` and `java` 17: `apt-get install maven openjdk-17-jre-headless`; \
             .ci/run does it):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A free loopback port (bound, then released for the broker).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A broker process of this test run: its folder, ports and the running JVM.
struct Process {
    dir: tempfile::TempDir,
    port: u16,
    controller_port: u16,
    child: Option<Child>,
}

impl Process {
    fn new() -> Process {
        fetch_jars();
        let port = free_port();
        let mut controller_port = free_port();
        while controller_port == port {
            controller_port = free_port();
        }
        Process {
            dir: tempfile::Builder::new()
                .prefix("sluice-kafka-")
                .tempdir()
                .expect("a temporary folder"),
            port,
            controller_port,
            child: None,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("kafka.out")
    }

    /// Starts the JVM (formatting the storage the first time) and waits for its
    /// readiness line. The JVM is killed when the calling thread ends
    /// (`PR_SET_PDEATHSIG`), so a test run never leaves a broker behind. Errors: the
    /// broker could not start, exited, or was not ready within [`START_TIMEOUT`], with
    /// its log.
    fn start(&mut self) -> Result<(), String> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("the broker's log file");
        let offset = log.metadata().map_or(0, |m| m.len()) as usize;
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .arg("run")
            .arg(self.dir.path().join("broker"))
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_CONTROLLER_PORT", self.controller_port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the broker's log file"))
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it only sets a flag of the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(
            cmd.spawn()
                .map_err(|e| format!("cannot start {}: {e}", script().display()))?,
        );
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(self.log()).unwrap_or_default();
            if text
                .get(offset..)
                .is_some_and(|t| t.contains("Kafka Server started"))
            {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(format!(
                    "Apache Kafka exited at start ({status}); its log:\n{text}"
                ));
            }
            if started.elapsed() > START_TIMEOUT {
                self.kill();
                return Err(format!(
                    "Apache Kafka was not ready within {START_TIMEOUT:?}; its log:\n{text}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running Apache Kafka broker on `127.0.0.1:<port>` (or `$SLUICE_KAFKA_BROKERS`).
pub struct Broker {
    bootstrap: String,
    /// Owned by this guard: killed when it drops. `None` for the shared or an external
    /// broker.
    own: Option<Process>,
}

impl Broker {
    /// The broker of this test process, started on first use (a few seconds), used by
    /// every test of the process that needs no broker of its own, and killed when the
    /// process exits. Topic names must come from [`Broker::unique`].
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(|| {
            if let Ok(brokers) = std::env::var("SLUICE_KAFKA_BROKERS") {
                return Broker {
                    bootstrap: brokers,
                    own: None,
                };
            }
            // Here, so that a failed fetch panics with its message in the test.
            fetch_jars();
            // Started on a thread that lives as long as the process, so that the JVM's
            // parent-death signal comes when the process exits, not when a test ends.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("kafka-broker".into())
                .spawn(move || {
                    let mut p = Process::new();
                    match p.start() {
                        Ok(()) => {
                            let _ = tx.send(Ok(format!("127.0.0.1:{}", p.port)));
                            // Keep the process (and its folder) until the test run ends.
                            loop {
                                std::thread::park();
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                })
                .expect("a thread for the broker");
            match rx.recv().expect("the broker thread answers") {
                Ok(bootstrap) => Broker {
                    bootstrap,
                    own: None,
                },
                Err(msg) => panic!("{msg}"),
            }
        })
    }

    /// Starts a broker of the caller's own with empty storage and waits until it serves
    /// clients; dropping the guard kills it. Panics, with the broker's log, if it does
    /// not start within two minutes. With `$SLUICE_KAFKA_BROKERS` set, uses those
    /// brokers instead (then [`Broker::kill`] and [`Broker::restart`] panic).
    pub fn start() -> Broker {
        if let Ok(brokers) = std::env::var("SLUICE_KAFKA_BROKERS") {
            return Broker {
                bootstrap: brokers,
                own: None,
            };
        }
        let mut p = Process::new();
        p.start().unwrap_or_else(|e| panic!("{e}"));
        Broker {
            bootstrap: format!("127.0.0.1:{}", p.port),
            own: Some(p),
        }
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// `name`, made unique to this process and moment: topics of one broker are shared
    /// by the tests of a process (and outlive them on an external broker).
    pub fn unique(&self, name: &str) -> String {
        // Tests of one process run at the same moment: a counter keeps them apart.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        format!(
            "{name}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        )
    }

    /// Creates topic `name` with `partitions` partitions. Panics on failure.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        sluice_kafka::admin::create_topic(&self.bootstrap(), name, partitions)
            .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
    }

    /// Grows topic `name` to `partitions` partitions (a `CreatePartitions` request).
    /// Panics on failure.
    pub fn add_partitions(&self, name: &str, partitions: i32) {
        sluice_kafka::admin::add_partitions(&self.bootstrap(), name, partitions as usize)
            .unwrap_or_else(|e| panic!("adding partitions to {name}: {e}"))
    }

    fn own(&mut self) -> &mut Process {
        self.own
            .as_mut()
            .expect("only a broker of Broker::start can be killed or restarted")
    }

    /// Kills the broker (SIGKILL); its storage stays for [`Broker::restart`].
    pub fn kill(&mut self) {
        self.own().kill();
    }

    /// Starts the broker again on the same ports and storage, and waits until it
    /// serves clients.
    pub fn restart(&mut self) {
        self.own().start().unwrap_or_else(|e| panic!("{e}"));
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
/// that a consumer with `isolation.level` `read_committed` sees, in partition then
/// offset order: it reads until its position reaches each partition's high watermark
/// (taken first), so a transaction whose commit markers are still being written is
/// waited for, not cut off at the last stable offset. Panics if the topic cannot be read
/// to its end within 120 s (an open transaction that nobody ends holds it there).
pub fn read_committed(brokers: &str, topic: &str) -> Vec<Record> {
    read(brokers, topic, "read_committed")
}

/// Every record of `topic` as [`read_committed`], but `read_uncommitted`: records of
/// open and aborted transactions too.
pub fn read_uncommitted(brokers: &str, topic: &str) -> Vec<Record> {
    read(brokers, topic, "read_uncommitted")
}

fn read(brokers: &str, topic: &str, isolation: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("a consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("the end of {topic}/{p}: {e}"));
        ends.push(high);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&tpl).expect("assigned");
    let at_end = |consumer: &BaseConsumer| {
        let pos = consumer.position().expect("positions");
        (0..partitions).all(|p| {
            let end = ends[p as usize];
            end == 0
                || pos
                    .find_partition(topic, p)
                    .is_some_and(|e| match e.offset() {
                        Offset::Offset(o) => o >= end,
                        _ => false,
                    })
        })
    };
    let mut out = Vec::new();
    let started = Instant::now();
    while !at_end(&consumer) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "reading {topic} ({isolation}) did not reach its end {ends:?} within 120 s \
             (positions {:?})",
            consumer.position()
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis().unwrap_or(-1),
                key: m.key().unwrap_or_default().to_vec(),
                value: m.payload().unwrap_or_default().to_vec(),
            }),
            Some(Err(e)) => panic!("reading {topic}: {e}"),
        }
    }
    out.sort();
    out
}
