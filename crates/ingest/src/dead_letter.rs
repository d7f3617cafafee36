//! The dead-letter sink: rejected messages go to a topic with their original bytes.
//!
//! Headers on each dead letter: the original headers, in order, then
//! `cluetrain.dlq.reason` (a [`RejectReason`](crate::RejectReason) value),
//! `cluetrain.dlq.detail`, `cluetrain.source.topic`, `cluetrain.source.partition`,
//! `cluetrain.source.offset`, and `cluetrain.source.timestamp_ms` when known. The key is the
//! original key, so a dead letter lands next to its brand's other dead letters.
//!
//! The payload is the original bytes unless `ingest.dead_letter_payload` says otherwise
//! ([`DeadLetterPayload`]): `truncate` keeps the first `ingest.dead_letter_payload_bytes_max`
//! bytes, `none` keeps none. Either trades replayability for privacy (a rejected message holds
//! raw user ids, which pseudonymisation never sees). A cut or left-out payload is marked by
//! `cluetrain.dlq.payload` (`truncated` / `omitted`) and `cluetrain.dlq.payload_bytes` (the
//! original length); a payload that is short enough is sent whole, without these headers.

use std::time::Duration;

use model::config::{DeadLetterPayload, IngestConfig, KafkaConfig};
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
    /// Set when `ingest.dead_letter_payload` cut the payload (`truncated`) or left it out
    /// (`omitted`).
    pub const PAYLOAD: &str = "cluetrain.dlq.payload";
    /// The original payload length in bytes (decimal), with [`PAYLOAD`] or [`PAYLOAD_DROPPED`].
    pub const PAYLOAD_BYTES: &str = "cluetrain.dlq.payload_bytes";
    /// Source topic.
    pub const SOURCE_TOPIC: &str = "cluetrain.source.topic";
    /// Source partition (decimal).
    pub const SOURCE_PARTITION: &str = "cluetrain.source.partition";
    /// Source offset (decimal).
    pub const SOURCE_OFFSET: &str = "cluetrain.source.offset";
    /// Source message timestamp in ms (decimal), when the broker gave one.
    pub const SOURCE_TIMESTAMP_MS: &str = "cluetrain.source.timestamp_ms";
}

/// What a dead letter carries of its payload, by `ingest.dead_letter_payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadPolicy {
    /// Full, truncated or none.
    pub mode: DeadLetterPayload,
    /// With [`DeadLetterPayload::Truncate`]: bytes kept.
    pub bytes_max: usize,
}

impl PayloadPolicy {
    /// The policy of an ingest configuration.
    pub fn of(ingest: &IngestConfig) -> Self {
        PayloadPolicy {
            mode: ingest.dead_letter_payload,
            bytes_max: ingest.dead_letter_payload_bytes_max,
        }
    }

    /// The bytes to send and, when they are not the whole payload, the value of
    /// [`header::PAYLOAD`]. A UTF-8 payload is cut at a character boundary.
    pub fn apply<'a>(&self, payload: &'a [u8]) -> (Option<&'a [u8]>, Option<&'static str>) {
        match self.mode {
            DeadLetterPayload::Full => (Some(payload), None),
            DeadLetterPayload::None => (None, Some("omitted")),
            DeadLetterPayload::Truncate if payload.len() <= self.bytes_max => (Some(payload), None),
            DeadLetterPayload::Truncate => {
                let mut cut = &payload[..self.bytes_max];
                // Do not leave half a character at the end of a text payload.
                if let Err(e) = std::str::from_utf8(cut)
                    && e.error_len().is_none()
                {
                    cut = &cut[..e.valid_up_to()];
                }
                (Some(cut), Some("truncated"))
            }
        }
    }
}

/// Produces dead letters and waits for their delivery.
pub struct DeadLetterSink {
    producer: FutureProducer,
    topic: String,
    payload: PayloadPolicy,
}

impl DeadLetterSink {
    /// A sink for `kafka.dead_letter_topic`, with payloads as `ingest.dead_letter_payload` says.
    pub fn new(kafka: &KafkaConfig, ingest: &IngestConfig) -> Result<Self, IngestError> {
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
            payload: PayloadPolicy::of(ingest),
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
        let (payload, reduced) = match &r.payload {
            Some(p) => self.payload.apply(p),
            None => (None, None),
        };
        let original_bytes = r.payload.as_ref().map(|p| p.len().to_string());
        if let Some(how) = reduced.filter(|_| with_payload) {
            headers = headers.insert(Header {
                key: header::PAYLOAD,
                value: Some(how),
            });
        }
        if !with_payload {
            headers = headers.insert(Header {
                key: header::PAYLOAD_DROPPED,
                value: Some("message_size_too_large"),
            });
        }
        if (reduced.is_some() || !with_payload)
            && let Some(n) = &original_bytes
        {
            headers = headers.insert(Header {
                key: header::PAYLOAD_BYTES,
                value: Some(n.as_str()),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        if with_payload && let Some(p) = payload {
            record = record.payload(p);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: DeadLetterPayload, bytes_max: usize) -> PayloadPolicy {
        PayloadPolicy { mode, bytes_max }
    }

    #[test]
    fn full_is_the_default_and_keeps_every_byte() {
        let p = PayloadPolicy::of(&IngestConfig::default());
        assert_eq!(p.mode, DeadLetterPayload::Full);
        let big = vec![b'x'; 10_000];
        assert_eq!(p.apply(&big), (Some(&big[..]), None));
    }

    #[test]
    fn none_omits_the_payload() {
        assert_eq!(
            policy(DeadLetterPayload::None, 10).apply(b"{\"author\": 1}"),
            (None, Some("omitted"))
        );
    }

    #[test]
    fn truncate_cuts_long_payloads_at_a_character_boundary() {
        let p = policy(DeadLetterPayload::Truncate, 4);
        assert_eq!(p.apply(b"abcd"), (Some(&b"abcd"[..]), None), "short enough");
        assert_eq!(p.apply(b"abcdef"), (Some(&b"abcd"[..]), Some("truncated")));
        // "ab" + "é" (2 bytes) + "c": the cut at 4 bytes is after é; at 3 it would split it.
        let text = "abéc".as_bytes();
        assert_eq!(p.apply(text), (Some(&text[..4]), Some("truncated")));
        let p3 = policy(DeadLetterPayload::Truncate, 3);
        assert_eq!(p3.apply(text), (Some(&b"ab"[..]), Some("truncated")));
        // Bytes that are not UTF-8 are cut where the limit says.
        let binary = [0xff, 0xfe, 0xfd, 0xfc, 0xfb];
        assert_eq!(p3.apply(&binary), (Some(&binary[..3]), Some("truncated")));
    }
}
