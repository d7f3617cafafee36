//! Helpers for the integration tests: the broker `cargo xtask test` started, unique topics,
//! producing and reading back with a real rdkafka client.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // helpers fail the test by panicking

pub mod golden;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use model::config::Config;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// This package's directory (`tests/`), read when the test runs rather than when it was built.
///
/// `env!("CARGO_MANIFEST_DIR")` is baked in at compile time, and cargo reuses a test binary
/// built from a checkout at another path when both share one target directory (as `.ci/run`'s
/// cache does), so the baked-in path can name a checkout that is gone or holds other files.
/// `cargo test` and nextest set the variable at run time too; that value wins.
pub fn package_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}

/// The broker address from `cargo xtask test`. Fails the test with instructions if unset.
pub fn brokers() -> String {
    match std::env::var("CLUETRAIN_TEST_BROKERS") {
        Ok(b) if !b.is_empty() => b,
        _ => panic!(
            "CLUETRAIN_TEST_BROKERS is not set: run the integration tests with `cargo xtask test`, \
             which starts a Kafka-compatible broker (Tansu) and sets it"
        ),
    }
}

/// The cluetrain binary built by `cargo xtask test`.
pub fn cluetrain_bin() -> std::path::PathBuf {
    match std::env::var_os("CLUETRAIN_BIN") {
        Some(p) => p.into(),
        None => {
            panic!("CLUETRAIN_BIN is not set: run the integration tests with `cargo xtask test`")
        }
    }
}

/// A topic name no other test uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates `name` with `partitions` partitions (Tansu does not auto-create topics).
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_on(&brokers(), name, partitions).await;
}

/// [`create_topic`] on the broker at `brokers`.
pub async fn create_topic_on(brokers: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let res = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics request");
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// A message to produce.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Payload; `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Outgoing {
    /// A keyed message without headers.
    pub fn new(key: &str, payload: impl Into<Vec<u8>>) -> Self {
        Outgoing {
            key: Some(key.as_bytes().to_vec()),
            payload: Some(payload.into()),
            headers: Vec::new(),
        }
    }
}

/// Produces `messages` in order; returns (partition, offset) of each.
pub async fn produce(topic: &str, messages: &[Outgoing]) -> Vec<(i32, i64)> {
    produce_on(&brokers(), topic, messages).await
}

/// [`produce`] to the broker at `brokers`.
pub async fn produce_on(brokers: &str, topic: &str, messages: &[Outgoing]) -> Vec<(i32, i64)> {
    produce_on_with(brokers, topic, messages, 1).await
}

/// [`produce_on`] with up to `in_flight` requests per connection (more is faster, and keeps
/// list order only while no request is retried).
///
/// One record per batch: Tansu 0.6.0 answers a fetch from an offset inside a record batch
/// with the batches after it, so a consumer that starts there (a restored checkpoint) would
/// never see the rest of that batch. With one record per batch every offset starts one.
pub async fn produce_on_with(
    brokers: &str,
    topic: &str,
    messages: &[Outgoing],
    in_flight: usize,
) -> Vec<(i32, i64)> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    // Queued at once, delivered as the requests allow: the round trip of one request does
    // not wait for the previous one when `in_flight` > 1.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .set(
            "max.in.flight.requests.per.connection",
            in_flight.max(1).to_string(),
        )
        .set("message.max.bytes", "10000000")
        .create()
        .expect("producer");
    let mut pending = Vec::with_capacity(messages.len());
    for m in messages {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &m.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(k) = &m.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(p) = &m.payload {
            rec = rec.payload(p.as_slice());
        }
        loop {
            match producer.send_result(rec) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }
    let mut out = Vec::with_capacity(messages.len());
    for d in pending {
        let d = d
            .await
            .expect("delivery future")
            .map_err(|(e, _)| e)
            .expect("delivery");
        out.push((d.partition, d.offset));
    }
    out
}

/// Reads `topic` from the beginning of every partition until `count` messages or `timeout`.
pub fn read_all(topic: &str, count: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("tpl");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(e)) => eprintln!("reader: {e}"),
            None => {}
        }
    }
    out
}

/// The group's committed offsets for `topic`, by partition.
pub fn committed(group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    committed_on(&brokers(), group, topic, partitions)
}

/// Each partition's end (high watermark) on the broker at `brokers`, from a fetch: Tansu's
/// ListOffsets can lag right after producing.
pub fn end_offsets_on(brokers: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("ends"))
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, high)
        })
        .collect()
}

/// Stops `child` with SIGTERM (a clean shutdown) and waits up to 60 s for it.
pub fn terminate(child: &mut std::process::Child) {
    let pid = child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(status.success(), "exit after SIGTERM: {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("no exit within 60 s of SIGTERM");
}

/// A Tansu broker with durable (SQLite) storage, on a port of its own, that a test can kill
/// and start again on the same storage.
pub struct DurableBroker {
    bin: std::path::PathBuf,
    db: std::path::PathBuf,
    /// host:port.
    pub address: String,
    child: Option<std::process::Child>,
}

impl DurableBroker {
    /// Starts the broker `bin` storing into `db`.
    pub fn start(bin: &std::path::Path, db: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut b = DurableBroker {
            bin: bin.to_path_buf(),
            db: db.to_path_buf(),
            address: format!("127.0.0.1:{port}"),
            child: None,
        };
        b.restart();
        b
    }

    /// Starts it (again) on the same port and storage; waits until it accepts connections.
    pub fn restart(&mut self) {
        let url = format!("tcp://{}", self.address);
        let log = std::fs::File::create(self.db.with_extension("log")).expect("broker log");
        let child = std::process::Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            // Tansu opens `sqlite://NAME` relative to its working directory.
            .arg("--storage-engine")
            .arg(format!(
                "sqlite://{}",
                self.db.file_name().expect("db file name").to_string_lossy()
            ))
            .current_dir(self.db.parent().expect("db directory"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "durable Tansu did not listen on {} within 30 s (log: {})",
                self.address,
                self.db.with_extension("log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills it (SIGKILL): what it acknowledged is in its storage, nothing else.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for DurableBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// [`committed`] on the broker at `brokers`.
pub fn committed_on(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let tpl = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// A header's value as text.
pub fn header(m: &OwnedMessage, key: &str) -> Option<String> {
    use rdkafka::message::Headers;
    let hs = m.headers()?;
    hs.iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
}

/// A configuration for the test broker with a unique group and the given topics.
pub fn config(input: &str, dead_letters: &str) -> Config {
    let mut c = Config::default();
    c.kafka.bootstrap_servers = brokers();
    c.kafka.group_id = unique("group");
    c.kafka.input_topic = input.to_string();
    c.kafka.dead_letter_topic = dead_letters.to_string();
    c.ingest.batch_wait_max = Duration::from_millis(100);
    c.ingest.event_time_future_max = Duration::from_secs(10 * 365 * 24 * 3600);
    // The default output topics exist on the test broker (`cargo xtask test` creates them);
    // nothing is written to disk unless a test asks for Parquet.
    c.outputs.parquet_location = String::new();
    // Checkpoints where `cargo xtask test` says (one directory per test run), else off.
    c.checkpoint.location = std::env::var("CLUETRAIN_CHECKPOINT__LOCATION").unwrap_or_default();
    c
}

/// Generated events as messages keyed by brand (deterministic by seed).
pub fn generated(seed: u64, n: usize) -> Vec<(Outgoing, model::SocialEvent)> {
    use cluetrain::generate::{Generator, GeneratorOptions};
    Generator::new(GeneratorOptions {
        seed,
        duplicate_rate: 0.0,
        ..Default::default()
    })
    .take(n)
    .filter_map(|m| {
        let e = m.event?;
        Some((Outgoing::new(&m.key, m.payload), e))
    })
    .collect()
}
