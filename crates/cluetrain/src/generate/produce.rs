//! Producing generated traffic to Kafka, paced or as fast as the broker takes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use model::config::KafkaConfig;
use tracing::info;

use crate::kafka_sink::KafkaSink;

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
    let sink = KafkaSink::new(kafka, topic)?;
    let start_micros = generator.opts.start_micros;
    let started = Instant::now();
    let mut sent = 0u64;
    for msg in generator {
        if stop.load(Ordering::Relaxed) || count.is_some_and(|c| sent >= c) {
            break;
        }
        pace(pacing, sent, &msg, start_micros, started, &stop);
        sink.send(msg.key.as_bytes(), &msg.payload, Some(&stop))?;
        sent += 1;
        if sent.is_multiple_of(10_000) {
            on_sent(sent);
        }
    }
    let delivered = sink.finish()?;
    let report = ProduceReport {
        sent,
        delivered: delivered.produced,
        failed: delivered.failed,
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
