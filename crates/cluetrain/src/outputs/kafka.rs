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
        let sends = messages.iter().map(|m| async move {
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
            self.producer
                .send(record, DELIVERY_TIMEOUT)
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
                .with_context(|| format!("producing to topic {:?}", m.topic))
        });
        for r in futures::future::join_all(sends).await {
            r?;
        }
        Ok(())
    }
}
