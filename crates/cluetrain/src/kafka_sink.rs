//! Producing keyed messages to one topic, with delivery counted: shared by `generate` and
//! `replay`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use model::config::KafkaConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

/// How long one flush attempt waits; [`KafkaSink::finish`] retries while deliveries are pending
/// (librdkafka reports every message within `message.timeout.ms`, delivered or failed).
const FLUSH_WAIT: Duration = Duration::from_secs(10);

/// Counts delivery reports; logs the first failure.
#[derive(Default)]
struct Counting {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, (): ()) {
        match r {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::error!(error = %e, "delivery failed");
                }
                0
            }
        };
    }
}

/// Delivery counts at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Messages the broker acknowledged.
    pub produced: u64,
    /// Messages it did not.
    pub failed: u64,
}

/// A producer to one topic; it polls delivery reports on its own thread.
pub struct KafkaSink {
    producer: ThreadedProducer<Counting>,
    topic: String,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KafkaSink({})", self.topic)
    }
}

impl KafkaSink {
    /// A producer to `topic` with the configured connection and security, tuned for bulk
    /// loads unless the configuration says otherwise.
    pub fn new(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Self> {
        let mut cfg = ingest::kafka::client_config(kafka, ingest::kafka::Role::Producer);
        for (k, v) in [
            ("linger.ms", "20"),
            ("batch.num.messages", "10000"),
            ("compression.type", "lz4"),
        ] {
            if !kafka.producer_properties.contains_key(k) && !kafka.properties.contains_key(k) {
                cfg.set(k, v);
            }
        }
        let producer = cfg
            .create_with_context(Counting::default())
            .context("creating the Kafka producer")?;
        Ok(KafkaSink {
            producer,
            topic: topic.to_string(),
        })
    }

    /// Sends one message keyed by `key`, waiting while the local queue is full. Gives up
    /// waiting (returns Ok without sending) when `stop` is set.
    pub fn send(
        &self,
        key: &[u8],
        payload: &[u8],
        stop: Option<&AtomicBool>,
    ) -> anyhow::Result<()> {
        loop {
            let record = BaseRecord::to(self.topic.as_str())
                .key(key)
                .payload(payload);
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                        return Ok(());
                    }
                    // Wait for deliveries to drain the local queue.
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    return Err(e).context(format!("producing to topic {:?}", self.topic));
                }
            }
        }
    }

    /// Flushes until every message has a delivery report, and returns the counts.
    pub fn finish(self) -> anyhow::Result<Delivered> {
        while let Err(e) = self.producer.flush(FLUSH_WAIT) {
            let pending = self.producer.in_flight_count();
            if pending <= 0 {
                return Err(e)
                    .with_context(|| format!("flushing the producer to topic {:?}", self.topic));
            }
            tracing::info!(pending, "waiting for deliveries to {:?}", self.topic);
        }
        let ctx = self.producer.context();
        Ok(Delivered {
            produced: ctx.delivered.load(Ordering::Relaxed),
            failed: ctx.failed.load(Ordering::Relaxed),
        })
    }
}
