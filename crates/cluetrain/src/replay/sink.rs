//! Where replayed events go: a Kafka topic (keyed by brand, delivery counted) or, for
//! `--dry-run`, stdout as JSONL.

use std::io::{BufWriter, Stdout, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use model::config::KafkaConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

/// How long one flush attempt waits; [`Sink::finish`] retries while deliveries are pending
/// (librdkafka reports every message within `message.timeout.ms`, delivered or failed).
const FLUSH_WAIT: Duration = Duration::from_secs(10);

/// Counts delivery reports.
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
    /// Events delivered (or written).
    pub produced: u64,
    /// Events not delivered.
    pub failed: u64,
}

/// The destination of events.
pub struct Sink(Inner);

enum Inner {
    /// JSONL on stdout.
    Stdout {
        out: BufWriter<Stdout>,
        written: u64,
    },
    /// A Kafka topic; the producer polls delivery reports on its own thread.
    Kafka {
        producer: Box<ThreadedProducer<Counting>>,
        topic: String,
    },
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Stdout { written, .. } => write!(f, "Sink::Stdout({written})"),
            Inner::Kafka { topic, .. } => write!(f, "Sink::Kafka({topic})"),
        }
    }
}

impl Sink {
    /// Events as JSONL on stdout.
    pub fn stdout() -> Sink {
        Sink(Inner::Stdout {
            out: BufWriter::with_capacity(1 << 16, std::io::stdout()),
            written: 0,
        })
    }

    /// A producer to `topic` with the configured connection and security.
    pub fn kafka(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Sink> {
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
        let producer: ThreadedProducer<Counting> = cfg
            .create_with_context(Counting::default())
            .context("creating the Kafka producer")?;
        Ok(Sink(Inner::Kafka {
            producer: Box::new(producer),
            topic: topic.to_string(),
        }))
    }

    /// Sends one event, keyed by `key`. Waits while the producer's local queue is full.
    pub fn send(&mut self, key: &str, payload: &[u8]) -> anyhow::Result<()> {
        match &mut self.0 {
            Inner::Stdout { out, written } => {
                out.write_all(payload)
                    .and_then(|()| out.write_all(b"\n"))
                    .context("writing to stdout")?;
                *written += 1;
                Ok(())
            }
            Inner::Kafka { producer, topic } => loop {
                let record = BaseRecord::to(topic.as_str())
                    .key(key.as_bytes())
                    .payload(payload);
                match producer.send(record) {
                    Ok(()) => return Ok(()),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // Wait for deliveries to drain the local queue.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => {
                        return Err(e).context(format!("producing to topic {topic:?}"));
                    }
                }
            },
        }
    }

    /// Flushes and returns the delivery counts.
    pub fn finish(self) -> anyhow::Result<Delivered> {
        match self.0 {
            Inner::Stdout { mut out, written } => {
                out.flush().context("writing to stdout")?;
                Ok(Delivered {
                    produced: written,
                    failed: 0,
                })
            }
            Inner::Kafka { producer, topic } => {
                while let Err(e) = producer.flush(FLUSH_WAIT) {
                    let pending = producer.in_flight_count();
                    if pending <= 0 {
                        return Err(e)
                            .with_context(|| format!("flushing the producer to topic {topic:?}"));
                    }
                    tracing::info!(pending, "waiting for deliveries to {topic:?}");
                }
                let ctx = producer.context();
                Ok(Delivered {
                    produced: ctx.delivered.load(Ordering::Relaxed),
                    failed: ctx.failed.load(Ordering::Relaxed),
                })
            }
        }
    }
}
