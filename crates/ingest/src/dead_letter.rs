//! The dead-letter sink: rejected messages go to a topic with their original bytes.
//!
//! Headers on each dead letter: the original headers, in order, then
//! `cluetrain.dlq.reason` (a [`RejectReason`](crate::RejectReason) value),
//! `cluetrain.dlq.detail`, `cluetrain.source.topic`, `cluetrain.source.partition`,
//! `cluetrain.source.offset`, and `cluetrain.source.timestamp_ms` when known. The key is the
//! original key, so a dead letter lands next to its brand's other dead letters.

use std::time::Duration;

use model::config::KafkaConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::warn;

use crate::error::IngestError;
use crate::kafka::{Role, client_config};
use crate::source::Rejected;

/// Header names added to every dead letter.
pub mod header {
    /// The reject reason.
    pub const REASON: &str = "cluetrain.dlq.reason";
    /// Human-readable detail.
    pub const DETAIL: &str = "cluetrain.dlq.detail";
    /// Set when the payload itself was too large for the broker and had to be left out.
    pub const PAYLOAD_DROPPED: &str = "cluetrain.dlq.payload_dropped";
    /// Source topic.
    pub const SOURCE_TOPIC: &str = "cluetrain.source.topic";
    /// Source partition (decimal).
    pub const SOURCE_PARTITION: &str = "cluetrain.source.partition";
    /// Source offset (decimal).
    pub const SOURCE_OFFSET: &str = "cluetrain.source.offset";
    /// Source message timestamp in ms (decimal), when the broker gave one.
    pub const SOURCE_TIMESTAMP_MS: &str = "cluetrain.source.timestamp_ms";
}

/// Produces dead letters and waits for their delivery.
pub struct DeadLetterSink {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetterSink {
    /// A sink for `kafka.dead_letter_topic`.
    pub fn new(kafka: &KafkaConfig) -> Result<Self, IngestError> {
        let mut cfg = client_config(kafka, Role::Producer);
        if !kafka.producer_properties.contains_key("linger.ms") {
            cfg.set("linger.ms", "5");
        }
        let producer = cfg.create().map_err(|source| IngestError::ClientConfig {
            role: "producer",
            source,
        })?;
        Ok(DeadLetterSink {
            producer,
            topic: kafka.dead_letter_topic.clone(),
        })
    }

    /// Delivers every rejected message; returns only when all are acknowledged by the broker.
    pub async fn publish(&self, rejects: &[Rejected]) -> Result<(), IngestError> {
        let sends = rejects.iter().map(|r| self.publish_one(r));
        for result in futures::future::join_all(sends).await {
            result?;
        }
        Ok(())
    }

    async fn publish_one(&self, r: &Rejected) -> Result<(), IngestError> {
        match self.send(r, true).await {
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {
                // The broker will never take these bytes; keep the record of the failure.
                warn!(
                    partition = r.partition,
                    offset = r.offset,
                    "dead letter too large for the broker; sending it without payload"
                );
                self.send(r, false).await
            }
            other => other,
        }
        .map_err(|source| IngestError::DeadLetter {
            topic: self.topic.clone(),
            source,
        })
    }

    async fn send(&self, r: &Rejected, with_payload: bool) -> Result<(), KafkaError> {
        let partition = r.partition.to_string();
        let offset = r.offset.to_string();
        let ts = r.timestamp_ms.map(|t| t.to_string());
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len() + 7);
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        headers = headers
            .insert(Header {
                key: header::REASON,
                value: Some(r.reason.as_str()),
            })
            .insert(Header {
                key: header::DETAIL,
                value: Some(r.detail.as_str()),
            })
            .insert(Header {
                key: header::SOURCE_TOPIC,
                value: Some(r.topic.as_str()),
            })
            .insert(Header {
                key: header::SOURCE_PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: header::SOURCE_OFFSET,
                value: Some(offset.as_str()),
            });
        if let Some(ts) = &ts {
            headers = headers.insert(Header {
                key: header::SOURCE_TIMESTAMP_MS,
                value: Some(ts.as_str()),
            });
        }
        if !with_payload {
            headers = headers.insert(Header {
                key: header::PAYLOAD_DROPPED,
                value: Some("message_size_too_large"),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        if with_payload && let Some(p) = &r.payload {
            record = record.payload(p.as_slice());
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}
