//! Ingest telemetry, as Prometheus metrics (names follow `<namespace>_<name>_<unit>_total`).
//!
//! Every bound of the ingest stage has a metric that shows when it bites:
//! `ingest.batch_rows_max` → `cluetrain_ingest_batches_total{trigger="rows"}`,
//! `ingest.queue_batches_max` → `cluetrain_ingest_queue_full_seconds_total`,
//! `ingest.message_bytes_max` → `cluetrain_dead_letters_total{reason="oversized"}`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::decode::RejectReason;

/// Label set with a dead-letter reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// One of [`RejectReason::ALL`].
    pub reason: ReasonLabel,
}

/// [`RejectReason`] as a label value.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct ReasonLabel(pub RejectReason);

impl EncodeLabelValue for ReasonLabel {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(self.0.as_str())
    }
}

/// Why a micro-batch was closed.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are snake_case on the wire
pub enum BatchTrigger {
    /// `ingest.batch_rows_max` reached.
    rows,
    /// `ingest.batch_wait_max` elapsed.
    wait,
    /// The end of a bounded run.
    end,
    /// Shutdown flushed a partial batch.
    shutdown,
}

/// Label set with a batch trigger.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// Why the batch closed.
    pub trigger: BatchTrigger,
}

/// Outcome of a commit.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are snake_case on the wire
pub enum CommitResult {
    /// Committed.
    ok,
    /// The broker refused or timed out.
    error,
}

/// Label set with a commit result.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitLabels {
    /// The outcome.
    pub result: CommitResult,
}

/// Label set with an input partition (bounded by the topic's partition count).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Partition number.
    pub partition: String,
}

/// Counters of the ingest stage; cheap to update from the consumer thread.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// Messages read from the input topic, valid or not.
    pub messages: Counter,
    /// Payload bytes read from the input topic.
    pub bytes: Counter,
    /// Messages decoded into events.
    pub events_decoded: Counter,
    /// Messages sent to the dead-letter topic, by reason.
    pub dead_letters: Family<ReasonLabels, Counter>,
    /// Micro-batches closed, by trigger.
    pub batches: Family<TriggerLabels, Counter>,
    /// Seconds the consumer waited because the batch queue was full (backpressure).
    pub queue_full_seconds: Counter<f64, AtomicU64>,
    /// Offset commits, by result.
    pub commits: Family<CommitLabels, Counter>,
    /// Errors reported by the consumer (broker connection, fetch); librdkafka retries them.
    pub consumer_errors: Counter,
    /// Acknowledged offsets that could not be stored because the partition was revoked
    /// meanwhile; those messages will be processed again by the partition's new owner.
    pub offsets_store_failures: Counter,
    /// Coordinated rebalances the pipeline did not answer within `checkpoint.rebalance_timeout`
    /// (the partitions went without a final checkpoint; their next owner replays more).
    pub rebalance_timeouts: Counter,
    /// Messages between the consumer position and the end of each assigned input partition
    /// (librdkafka statistics, every `statistics.interval.ms`).
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// Bytes of input prefetched by the consumer and not yet handed to the source, summed
    /// over partitions (librdkafka statistics `fetchq_size`; bounded by
    /// `kafka.prefetch_bytes_max`).
    pub prefetch_bytes: Gauge,
    /// Messages prefetched by the consumer and not yet handed to the source, summed over
    /// partitions (librdkafka statistics `fetchq_cnt`; bounded per partition by
    /// `kafka.prefetch_messages_max`).
    pub prefetch_messages: Gauge,
    /// Input partitions held back now (their queue not read) because they read ahead of the
    /// others in event time (`ingest.partition_drift_max`).
    pub partitions_held: Gauge,
    /// Times an input partition was held back for event-time alignment.
    pub partition_holds: Counter,
}

impl IngestMetrics {
    /// Registers every metric under `registry` and pre-creates every label value, so that a
    /// dashboard sees zeros rather than gaps before the first event.
    pub fn register(&self, registry: &mut Registry) {
        for r in RejectReason::ALL {
            let _ = self.dead_letters.get_or_create(&ReasonLabels {
                reason: ReasonLabel(r),
            });
        }
        for t in [
            BatchTrigger::rows,
            BatchTrigger::wait,
            BatchTrigger::end,
            BatchTrigger::shutdown,
        ] {
            let _ = self.batches.get_or_create(&TriggerLabels { trigger: t });
        }
        for r in [CommitResult::ok, CommitResult::error] {
            let _ = self.commits.get_or_create(&CommitLabels { result: r });
        }
        registry.register(
            "cluetrain_ingest_partitions_held",
            "Input partitions held back now for reading ahead of the others in event time (ingest.partition_drift_max)",
            self.partitions_held.clone(),
        );
        registry.register(
            "cluetrain_ingest_partition_holds",
            "Times an input partition was held back for event-time alignment",
            self.partition_holds.clone(),
        );
        registry.register(
            "cluetrain_ingest_messages",
            "Messages read from the input topic",
            self.messages.clone(),
        );
        registry.register(
            "cluetrain_ingest_bytes",
            "Payload bytes read from the input topic",
            self.bytes.clone(),
        );
        registry.register(
            "cluetrain_ingest_events_decoded",
            "Messages decoded into valid events",
            self.events_decoded.clone(),
        );
        registry.register(
            "cluetrain_dead_letters",
            "Messages sent to the dead-letter topic, by reason",
            self.dead_letters.clone(),
        );
        registry.register(
            "cluetrain_ingest_batches",
            "Micro-batches closed, by trigger (rows = ingest.batch_rows_max reached)",
            self.batches.clone(),
        );
        registry.register(
            "cluetrain_ingest_queue_full_seconds",
            "Seconds ingest waited on a full batch queue (ingest.queue_batches_max)",
            self.queue_full_seconds.clone(),
        );
        registry.register(
            "cluetrain_kafka_commits",
            "Offset commits, by result",
            self.commits.clone(),
        );
        registry.register(
            "cluetrain_kafka_consumer_errors",
            "Errors reported by the Kafka consumer",
            self.consumer_errors.clone(),
        );
        registry.register(
            "cluetrain_kafka_consumer_lag_messages",
            "Messages between the consumer position and the end of each input partition",
            self.consumer_lag.clone(),
        );
        registry.register(
            "cluetrain_kafka_prefetch_bytes",
            "Input bytes prefetched by the consumer, not yet read (bounded by kafka.prefetch_bytes_max)",
            self.prefetch_bytes.clone(),
        );
        registry.register(
            "cluetrain_kafka_prefetch_messages",
            "Input messages prefetched by the consumer, not yet read (bounded per partition by kafka.prefetch_messages_max)",
            self.prefetch_messages.clone(),
        );
        registry.register(
            "cluetrain_kafka_offsets_store_failures",
            "Acknowledged offsets not stored because the partition was revoked",
            self.offsets_store_failures.clone(),
        );
        registry.register(
            "cluetrain_kafka_rebalance_timeouts",
            "Rebalances the pipeline did not answer within checkpoint.rebalance_timeout",
            self.rebalance_timeouts.clone(),
        );
    }

    /// Dead letters counted so far for `reason`.
    pub fn dead_letters_for(&self, reason: RejectReason) -> u64 {
        self.dead_letters
            .get_or_create(&ReasonLabels {
                reason: ReasonLabel(reason),
            })
            .get()
    }

    pub(crate) fn count_dead_letter(&self, reason: RejectReason) {
        self.dead_letters
            .get_or_create(&ReasonLabels {
                reason: ReasonLabel(reason),
            })
            .inc();
    }

    pub(crate) fn count_batch(&self, trigger: BatchTrigger) {
        self.batches.get_or_create(&TriggerLabels { trigger }).inc();
    }

    pub(crate) fn count_commit(&self, result: CommitResult) {
        self.commits.get_or_create(&CommitLabels { result }).inc();
    }
}
