//! Producing generated traffic to Kafka, paced or as fast as the broker takes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use model::config::KafkaConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tracing::info;

use super::{GeneratedMessage, Generator};

/// How fast to produce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// As fast as the broker accepts.
    Unpaced,
    /// This many messages per second of wall-clock time.
    Rate(f64),
    /// Follow event time, `speedup` event seconds per wall second (1.0 = real time), from the
    /// generator's start.
    EventTime {
        /// Event-time seconds per wall-clock second.
        speedup: f64,
    },
}

/// What a produce run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceReport {
    /// Messages handed to the producer.
    pub sent: u64,
    /// Messages the broker acknowledged.
    pub delivered: u64,
    /// Messages that failed delivery.
    pub failed: u64,
}

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
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Produces `count` messages (or until `stop` is set) from `generator` to `topic`, keyed by
/// brand. Blocking: run it on a thread of its own. `on_sent` is called every 10,000 messages.
pub fn produce(
    kafka: &KafkaConfig,
    topic: &str,
    generator: Generator,
    count: Option<u64>,
    pacing: Pacing,
    stop: Arc<AtomicBool>,
    mut on_sent: impl FnMut(u64),
) -> anyhow::Result<ProduceReport> {
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
    let start_micros = generator.opts.start_micros;
    let started = Instant::now();
    let mut sent = 0u64;
    for msg in generator {
        if stop.load(Ordering::Relaxed) || count.is_some_and(|c| sent >= c) {
            break;
        }
        pace(pacing, sent, &msg, start_micros, started, &stop);
        send(&producer, topic, &msg, &stop)?;
        sent += 1;
        if sent.is_multiple_of(10_000) {
            on_sent(sent);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flushing the producer")?;
    let ctx = producer.context();
    let report = ProduceReport {
        sent,
        delivered: ctx.delivered.load(Ordering::Relaxed),
        failed: ctx.failed.load(Ordering::Relaxed),
    };
    info!(
        sent = report.sent,
        delivered = report.delivered,
        failed = report.failed,
        "produced"
    );
    Ok(report)
}

fn pace(
    pacing: Pacing,
    sent: u64,
    msg: &GeneratedMessage,
    start_micros: i64,
    started: Instant,
    stop: &AtomicBool,
) {
    #[allow(clippy::cast_precision_loss)] // message counts far below 2^52
    let due = match pacing {
        Pacing::Unpaced => return,
        Pacing::Rate(r) if r > 0.0 => Duration::from_secs_f64(sent as f64 / r),
        Pacing::Rate(_) => return,
        Pacing::EventTime { speedup } => {
            let Some(t) = msg.event.as_ref().and_then(|e| e.created_at_micros().ok()) else {
                return;
            };
            #[allow(clippy::cast_precision_loss)] // µs offsets of days
            let secs = ((t - start_micros).max(0) as f64 / 1e6) / speedup.max(1e-3);
            Duration::from_secs_f64(secs)
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let elapsed = started.elapsed();
        if elapsed >= due {
            return;
        }
        std::thread::sleep((due - elapsed).min(Duration::from_millis(100)));
    }
}

fn send(
    producer: &ThreadedProducer<Counting>,
    topic: &str,
    msg: &GeneratedMessage,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    loop {
        let record = BaseRecord::to(topic)
            .key(msg.key.as_bytes())
            .payload(msg.payload.as_slice());
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                // The local queue is full: wait for deliveries to drain it.
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e).context(format!("producing to topic {topic:?}")),
        }
    }
}
