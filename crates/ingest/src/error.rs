//! Errors of the ingest crate, each saying whose fault it is and whether retrying can help.

use rdkafka::error::KafkaError;

/// Who has to act on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The configuration or the deployment is wrong: the operator must change something.
    User,
    /// Something outside cluetrain (the broker, the network) failed: retrying may help.
    External,
    /// A bug in cluetrain.
    Internal,
}

/// Errors of the Kafka ingest edge.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// librdkafka refused the client configuration (unknown property, bad value).
    #[error(
        "Kafka client configuration rejected ({role}): {source}; check kafka.properties and kafka.{role}_properties"
    )]
    ClientConfig {
        /// `consumer` or `producer`.
        role: &'static str,
        /// The librdkafka error.
        source: KafkaError,
    },
    /// A broker operation failed.
    #[error("Kafka {operation} failed: {source}")]
    Kafka {
        /// What was being done.
        operation: &'static str,
        /// The librdkafka error.
        source: KafkaError,
    },
    /// A dead letter could not be delivered; its batch was not acknowledged, so its offsets are
    /// not committed and the messages will be read again after a restart.
    #[error("could not deliver a dead letter to topic {topic:?}: {source}")]
    DeadLetter {
        /// The dead-letter topic.
        topic: String,
        /// The delivery error.
        source: KafkaError,
    },
    /// Assembling an Arrow batch failed (a bug).
    #[error(transparent)]
    Model(#[from] model::ModelError),
    /// The consumer thread could not be started or ended abnormally (a bug).
    #[error("internal: ingest thread failed: {0}")]
    Thread(String),
}

impl IngestError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            IngestError::ClientConfig { .. } => Fault::User,
            IngestError::Kafka { .. } | IngestError::DeadLetter { .. } => Fault::External,
            IngestError::Model(_) | IngestError::Thread(_) => Fault::Internal,
        }
    }

    /// Whether the same operation may succeed later.
    pub fn is_retryable(&self) -> bool {
        self.fault() == Fault::External
    }
}
