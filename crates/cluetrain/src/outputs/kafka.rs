//! Kafka outputs: one producer for window records, late events and department forwards.

use std::time::Duration;

use anyhow::Context;
use model::config::KafkaConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// One message to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// Topic.
    pub topic: String,
    /// Key (the brand for every cluetrain output).
    pub key: Vec<u8>,
    /// JSON payload.
    pub payload: Vec<u8>,
    /// Headers.
    pub headers: Vec<(&'static str, String)>,
}

/// How long librdkafka may try to deliver one output message before it reports failure.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The output producer. Idempotent, so retries inside librdkafka never duplicate a record.
pub struct OutputProducer {
    producer: FutureProducer,
}

impl std::fmt::Debug for OutputProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputProducer")
    }
}

impl OutputProducer {
    /// A producer with the configured connection and security.
    pub fn new(kafka: &KafkaConfig) -> anyhow::Result<Self> {
        let mut cfg = ingest::kafka::client_config(kafka, ingest::kafka::Role::Producer);
        for (k, v) in [
            ("enable.idempotence", "true"),
            ("linger.ms", "5"),
            ("compression.type", "lz4"),
            ("message.timeout.ms", "60000"),
        ] {
            if !kafka.producer_properties.contains_key(k) && !kafka.properties.contains_key(k) {
                cfg.set(k, v);
            }
        }
        let producer: FutureProducer = cfg
            .create()
            .context("creating the Kafka producer for outputs")?;
        Ok(OutputProducer { producer })
    }

    /// Fails with a message naming the setting when an output topic does not exist, instead
    /// of failing every delivery a minute later (brokers such as Tansu do not auto-create).
    pub fn check_topics(&self, topics: &[(&str, &str)]) -> anyhow::Result<()> {
        use rdkafka::producer::Producer;
        for (key, topic) in topics {
            let md = self
                .producer
                .client()
                .fetch_metadata(Some(topic), Duration::from_secs(15))
                .with_context(|| format!("reading metadata of output topic {topic:?} ({key})"))?;
            let missing = md
                .topics()
                .iter()
                .find(|t| t.name() == *topic)
                .is_none_or(|t| t.error().is_some() || t.partitions().is_empty());
            if missing {
                anyhow::bail!(
                    "output topic {topic:?} ({key}) does not exist on the cluster: create it, or point {key} at an existing topic"
                );
            }
        }
        Ok(())
    }

    /// Produces every message and returns when all are delivered (or the first failure).
    pub async fn send_all(&self, messages: &[OutMessage]) -> anyhow::Result<()> {
        self.enqueue(messages).await?.delivered().await
    }

    /// Hands every message to librdkafka, in order, and returns without waiting for their
    /// delivery: the pipeline goes on with the next batch while these travel (linger and the
    /// broker's answer were ~3.6 ms of every 8,192-event batch, 2026-12-07), and awaits
    /// [`Deliveries::delivered`] before anything that assumes them durable (an
    /// acknowledgement, a checkpoint). Order between calls is kept: a message enqueued later
    /// is never written before one enqueued earlier (one idempotent producer).
    ///
    /// Waits only while librdkafka's queue is full (`queue.buffering.max.messages`), at most
    /// the delivery timeout.
    pub async fn enqueue(&self, messages: &[OutMessage]) -> anyhow::Result<Deliveries> {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        let mut pending = Vec::with_capacity(messages.len());
        for m in messages {
            let started = std::time::Instant::now();
            loop {
                let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
                for (k, v) in &m.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v.as_str()),
                    });
                }
                let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&m.topic)
                    .key(m.key.as_slice())
                    .payload(m.payload.as_slice())
                    .headers(headers);
                match self.producer.send_result(record) {
                    Ok(future) => {
                        pending.push(Pending {
                            future,
                            topic: m.topic.clone(),
                        });
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                        if started.elapsed() < DELIVERY_TIMEOUT =>
                    {
                        tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                    }
                    Err((e, _)) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("producing to topic {:?}", m.topic)));
                    }
                }
            }
        }
        Ok(Deliveries { pending })
    }
}

/// How long [`OutputProducer::enqueue`] waits before it tries again when librdkafka's queue is
/// full (as rdkafka's own `FutureProducer::send` does, but shorter: the queue drains at
/// broker speed).
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

/// One enqueued message's delivery report to come.
struct Pending {
    future: rdkafka::producer::DeliveryFuture,
    topic: String,
}

/// Messages librdkafka has, whose delivery reports have not been awaited
/// ([`OutputProducer::enqueue`]). Dropping it does not cancel them; it only forgets whether
/// they were delivered.
#[must_use = "a batch's outputs count as delivered only once `delivered` returned Ok"]
pub struct Deliveries {
    pending: Vec<Pending>,
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Deliveries({} pending)", self.pending.len())
    }
}

impl Deliveries {
    /// Returns when every message is delivered, or with the first failure.
    pub async fn delivered(self) -> anyhow::Result<()> {
        for p in self.pending {
            match p.future.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("producing to topic {:?}", p.topic))
                    );
                }
                Err(_) => anyhow::bail!(
                    "producing to topic {:?}: the producer was closed before the delivery report",
                    p.topic
                ),
            }
        }
        Ok(())
    }
}
