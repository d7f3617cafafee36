//! Where replayed events go: a Kafka topic (keyed by brand, delivery counted) or, for
//! `--dry-run`, stdout as JSONL.

use std::io::{BufWriter, Stdout, Write};

use anyhow::Context;
use model::config::KafkaConfig;

pub use crate::kafka_sink::Delivered;
use crate::kafka_sink::KafkaSink;

/// The destination of events.
pub struct Sink(Inner);

enum Inner {
    /// JSONL on stdout.
    Stdout {
        out: BufWriter<Stdout>,
        written: u64,
    },
    /// A Kafka topic.
    Kafka(Box<KafkaSink>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Stdout { written, .. } => write!(f, "Sink::Stdout({written})"),
            Inner::Kafka(k) => write!(f, "Sink::{k:?}"),
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
        Ok(Sink(Inner::Kafka(Box::new(KafkaSink::new(kafka, topic)?))))
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
            Inner::Kafka(k) => k.send(key.as_bytes(), payload, None),
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
            Inner::Kafka(k) => k.finish(),
        }
    }
}
