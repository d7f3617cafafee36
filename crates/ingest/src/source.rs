//! The consumer-group source: one thread that polls Kafka, decodes, and closes micro-batches.
//!
//! Why a dedicated thread and not a task: decoding is CPU work and librdkafka's poll is
//! blocking; keeping both off the async runtime keeps admin and SQL endpoints responsive.
//!
//! Offset discipline (see ARCHITECTURE.md, "offsets follow durability"):
//! 1. Each [`IngestBatch`] carries, per partition, the offset after its last message.
//! 2. The pipeline calls [`Acker::ack`] only when everything derived from the batch is durable
//!    (its dead letters delivered, its outputs written).
//! 3. The source thread stores acknowledged offsets (`enable.auto.offset.store=false`) and
//!    commits stored offsets every `kafka.commit_interval`, on revocation, and on shutdown.
//!
//! Unacknowledged batches are never committed, so a crash replays them: at-least-once.
//!
//! **Coordinated rebalances** ([`start_coordinated`], used with checkpoints): before partitions
//! are given up, the source sends [`Rebalanced::Revoking`] and waits (up to the coordination
//! timeout) for the offsets the pipeline's checkpoint covers, and commits them; when partitions
//! are assigned it sends [`Rebalanced::Assigned`] and starts each partition at the offset the
//! pipeline restored it to. Messages read but not yet sent in a batch when a rebalance happens
//! are dropped: their partitions start again at the restored offsets, so they are read again.
//! Only the eager protocol is supported then (the assignment is always given up and taken back
//! whole; see `model::config` validation).
//!
//! **A queue per partition, and event-time alignment.** Each partition's messages are read from
//! a queue of its own (librdkafka's `rd_kafka_queue_get_partition`, split off in the rebalance
//! callback before the partition is assigned, so that no message of it ever reaches the
//! consumer's main queue). A partition whose newest event is more than
//! `ingest.partition_drift_max` ahead of the partition furthest behind is *held*: its queue is
//! not read until that one catches up ([`crate::align`]). librdkafka stops fetching a
//! partition whose queue holds `kafka.prefetch_messages_max` messages, so a backlog that the
//! broker serves one partition after another (Tansu does) waits in Kafka instead of in the
//! reorder buffer. Holding never pauses, seeks or restarts a fetch: librdkafka's
//! `pause`/`resume` would restart the fetch at the position the application reached, which is
//! inside a record batch, and Tansu 0.6.0 answers a fetch at an offset inside a batch with the
//! next batch (measured 2026-12-04: a fetch at offset 12,345 of a partition returned 13,700
//! first), so pausing lost 51,121 of 1,000,000 messages on the end-to-end bench.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use model::EventBatchBuilder;
use model::config::{IngestConfig, KafkaConfig};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc as tmpsc;
use tracing::{debug, info, warn};

use crate::align::Alignment;
use crate::decode::{DecodeLimits, Decoder, RejectReason};
use crate::error::IngestError;
use crate::kafka::{Role, client_config};
use crate::metrics::{BatchTrigger, CommitResult, IngestMetrics};

/// Run until stopped, or until the end of the input as it was at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Consume until [`SourceHandle::stop`].
    Continuous,
    /// Consume every partition up to the end it had when the run started, then finish.
    /// The end is taken from partition-EOF events (the fetch high watermark), not from
    /// ListOffsets alone, which some brokers report late.
    UntilEnd,
}

/// The offset to commit for a partition: one past the last message of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffset {
    /// Partition number.
    pub partition: i32,
    /// Next offset to read (last processed + 1).
    pub next_offset: i64,
}

/// A message that failed decoding, with everything needed to dead-letter it losslessly.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// Why it was rejected.
    pub reason: RejectReason,
    /// Details for humans.
    pub detail: String,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Original key.
    pub key: Option<Vec<u8>>,
    /// Original payload, byte for byte.
    pub payload: Option<Vec<u8>>,
    /// Original headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Original message timestamp (ms since the epoch), when the broker reported one.
    pub timestamp_ms: Option<i64>,
}

/// One micro-batch: decoded events, rejected messages, and the offsets both cover.
#[derive(Debug)]
pub struct IngestBatch {
    /// Sequence number, from 0, in emission order.
    pub seq: u64,
    /// Decoded events, schema [`model::event_schema`].
    pub events: RecordBatch,
    /// Messages to dead-letter.
    pub rejects: Vec<Rejected>,
    /// Per partition, the offset to commit once this batch is durable.
    pub offsets: Vec<PartitionOffset>,
    /// Messages read into this batch (events + rejects).
    pub messages: u64,
    /// Payload bytes read into this batch.
    pub bytes: u64,
    /// Partitions assigned to this consumer when the batch was closed.
    pub assigned: Vec<i32>,
    /// Bounded runs: partitions that have reached their end (they hold no watermark back).
    pub ended: Vec<i32>,
    /// Any run: partitions at their end now, settled (no message for a second since the end
    /// was seen). One that never delivered an event is empty, and holds no watermark back.
    pub at_end: Vec<i32>,
}

/// A rebalance, as a coordinating pipeline sees it ([`start_coordinated`]).
#[derive(Debug)]
pub enum Rebalanced {
    /// These partitions are about to be given up. Reply with the offsets the state handed
    /// over covers (a checkpoint written): they are committed before the partitions go. No
    /// reply within the timeout: nothing more is committed.
    Revoking {
        /// Partitions being revoked.
        partitions: Vec<i32>,
        /// Where the covered offsets go.
        reply: mpsc::SyncSender<Vec<PartitionOffset>>,
    },
    /// These partitions are now assigned (the whole assignment). Reply with the offset each
    /// restored partition starts from; a partition without one starts at its committed offset.
    Assigned {
        /// Partitions assigned.
        partitions: Vec<i32>,
        /// Where the start offsets go.
        reply: mpsc::SyncSender<Vec<PartitionOffset>>,
    },
}

/// How a source hands rebalances to the pipeline.
#[derive(Debug)]
pub struct Coordination {
    /// Where rebalances are sent.
    pub tx: tmpsc::Sender<Rebalanced>,
    /// How long a rebalance waits for the pipeline's reply.
    pub timeout: Duration,
}

/// Acknowledges batches whose results are durable. Cheap to clone; sending never blocks.
#[derive(Debug, Clone)]
pub struct Acker {
    tx: mpsc::Sender<Ack>,
}

#[derive(Debug)]
struct Ack {
    offsets: Vec<PartitionOffset>,
    /// Which batches this makes durable.
    batches: Acked,
}

#[derive(Debug, Clone, Copy)]
enum Acked {
    /// The next batch.
    One,
    /// Every batch up to this sequence number (a checkpoint).
    Through(u64),
    /// None: only offsets that a durable checkpoint covers (a restore, a partial checkpoint).
    None,
}

impl Acker {
    /// Marks `batch` durable: its offsets become committable. Call in emission order.
    pub fn ack(&self, batch: &IngestBatch) {
        // The source thread may already be gone after a fatal error; nothing to commit then.
        let _ = self.tx.send(Ack {
            offsets: batch.offsets.clone(),
            batches: Acked::One,
        });
    }

    /// Marks every batch up to sequence number `seq` durable, with the offsets that covers
    /// (a checkpoint's): they become committable.
    pub fn ack_through(&self, seq: u64, offsets: Vec<PartitionOffset>) {
        let _ = self.tx.send(Ack {
            offsets,
            batches: Acked::Through(seq),
        });
    }

    /// Makes `offsets` committable without acknowledging any batch: offsets a durable
    /// checkpoint covers, e.g. those a partition was just restored at (a commit of them may
    /// have failed before, in the rebalance that moved the partition).
    pub fn commit_offsets(&self, offsets: Vec<PartitionOffset>) {
        if offsets.is_empty() {
            return;
        }
        let _ = self.tx.send(Ack {
            offsets,
            batches: Acked::None,
        });
    }
}

/// What a finished source did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSummary {
    /// Batches emitted.
    pub batches_emitted: u64,
    /// Batches acknowledged before the source closed.
    pub batches_acked: u64,
    /// Per partition, the last committed offset.
    pub committed: BTreeMap<i32, i64>,
}

/// Controls a running source.
pub struct SourceHandle {
    stop: Arc<AtomicBool>,
    acker: Acker,
    thread: Option<JoinHandle<Result<SourceSummary, IngestError>>>,
}

impl SourceHandle {
    /// An acknowledger for the batches of this source.
    pub fn acker(&self) -> Acker {
        self.acker.clone()
    }

    /// Asks the source to stop: it flushes its partial batch, waits (up to
    /// `ingest.shutdown_timeout`) for outstanding acknowledgements, commits and closes.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// A flag that stops the source when set; for signal handlers.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Waits for the source thread to finish (blocking: call from a blocking context).
    pub fn join(mut self) -> Result<SourceSummary, IngestError> {
        // Our own acker must not keep the ack channel open while we wait.
        drop(self.acker);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| IngestError::Thread("ingest thread panicked".into()))?,
            None => Err(IngestError::Thread("joined twice".into())),
        }
    }
}

/// Whether `e` reports a partition's end rather than a failure.
fn is_partition_end(e: &KafkaError) -> bool {
    matches!(e, KafkaError::PartitionEOF(_))
        || e.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
}

/// Logs partition assignments and commits stored offsets before partitions are revoked;
/// with coordination, hands rebalances to the pipeline.
struct SourceContext {
    metrics: Arc<IngestMetrics>,
    topic: String,
    coordination: Option<Coordination>,
    /// Bumped at every coordinated rebalance: the worker drops its unsent messages.
    generation: Arc<AtomicU64>,
    /// Set once the worker sent its last batch and closes the consumer: the revocation that
    /// closing brings is not a rebalance for the pipeline (see the revoke handler).
    closing: Arc<AtomicBool>,
    /// The consumer itself, to split partition queues off in the rebalance callback (weak:
    /// the consumer owns this context).
    consumer: OnceLock<Weak<BaseConsumer<SourceContext>>>,
    /// What rebalances changed, for the worker to take after its next poll (the callback
    /// runs inside the worker's poll, on its thread).
    changes: Mutex<AssignmentChanges>,
}

/// The assignment as rebalances left it, and the partition queues split off since the worker
/// last looked. The queues must not stay here: each holds the consumer, which owns this
/// context.
#[derive(Default)]
struct AssignmentChanges {
    assigned: BTreeSet<i32>,
    changed: bool,
    /// Partitions split off so far (their queues are the worker's).
    split: BTreeSet<i32>,
    new_queues: Vec<(i32, PartitionQueue<SourceContext>)>,
}

impl SourceContext {
    fn changes(&self) -> std::sync::MutexGuard<'_, AssignmentChanges> {
        // Poisoned only if a panic happened while it was held; the data is still whole.
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives each partition of `tpl` without one a queue of its own, before it is assigned:
    /// then none of its messages goes to the main queue. The split outlives revocations
    /// (librdkafka keeps an application's forwarding when it starts a fetch again).
    fn split_queues(&self, tpl: &TopicPartitionList) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        let mut changes = self.changes();
        for p in partitions_of(tpl) {
            if changes.split.contains(&p) {
                continue;
            }
            match consumer.split_partition_queue(&self.topic, p) {
                Some(q) => {
                    changes.split.insert(p);
                    changes.new_queues.push((p, q));
                }
                // Its messages then come through the main queue, which is read too.
                None => warn!(partition = p, "could not give a partition its own queue"),
            }
        }
    }

    /// Records a rebalance's effect on the assignment.
    fn record_assignment(&self, partitions: &[i32], assigned: bool, incremental: bool) {
        let mut changes = self.changes();
        if !incremental {
            changes.assigned.clear();
        }
        for p in partitions {
            if assigned {
                changes.assigned.insert(*p);
            } else {
                changes.assigned.remove(p);
            }
        }
        changes.changed = true;
    }

    /// Sends `event` to the pipeline and waits for its reply (None: no pipeline, or timeout).
    fn ask(
        &self,
        make: impl FnOnce(mpsc::SyncSender<Vec<PartitionOffset>>) -> Rebalanced,
    ) -> Option<Vec<PartitionOffset>> {
        let co = self.coordination.as_ref()?;
        let (tx, rx) = mpsc::sync_channel(1);
        if co.tx.blocking_send(make(tx)).is_err() {
            return None;
        }
        match rx.recv_timeout(co.timeout) {
            Ok(offsets) => Some(offsets),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.metrics.rebalance_timeouts.inc();
                warn!(
                    timeout = ?co.timeout,
                    "rebalance: the pipeline did not answer in time (checkpoint.rebalance_timeout); going on without it"
                );
                None
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
        }
    }

    fn offsets_list(&self, offsets: &[PartitionOffset]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for o in offsets {
            if let Err(e) =
                tpl.add_partition_offset(&self.topic, o.partition, Offset::Offset(o.next_offset))
            {
                warn!(error = %e, "could not build offset list");
            }
        }
        tpl
    }
}

impl ClientContext for SourceContext {
    /// librdkafka's errors outside a message poll. A partition's end is no error here: every
    /// run sets `enable.partition.eof` to learn which partitions are empty, and rdkafka's
    /// default logged each end at ERROR (5,491 lines in a 10-minute soak, 2026-12-07). The
    /// others are counted in `cluetrain_kafka_consumer_errors_total` and logged as warnings;
    /// librdkafka retries them.
    fn error(&self, error: KafkaError, reason: &str) {
        if is_partition_end(&error) {
            debug!(%reason, "partition at end (global)");
            return;
        }
        self.metrics.consumer_errors.inc();
        warn!(%error, %reason, "Kafka client error (librdkafka retries)");
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let (mut prefetched, mut prefetched_messages): (u64, i64) = (0, 0);
        for topic in statistics.topics.values() {
            for (p, part) in &topic.partitions {
                prefetched = prefetched.saturating_add(part.fetchq_size);
                prefetched_messages = prefetched_messages.saturating_add(part.fetchq_cnt.max(0));
                // -1 is librdkafka's internal "unassigned" partition; -1 lag = unknown yet.
                if *p < 0 || part.consumer_lag < 0 {
                    continue;
                }
                self.metrics
                    .consumer_lag
                    .get_or_create(&crate::metrics::PartitionLabels {
                        partition: p.to_string(),
                    })
                    .set(part.consumer_lag);
            }
        }
        self.metrics
            .prefetch_bytes
            .set(i64::try_from(prefetched).unwrap_or(i64::MAX));
        self.metrics.prefetch_messages.set(prefetched_messages);
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions = partitions_of(tpl);
                info!(partitions = ?partitions, "partitions assigned");
                if self.coordination.is_some() {
                    self.generation.fetch_add(1, Ordering::SeqCst);
                    let starts = self
                        .ask(|reply| Rebalanced::Assigned {
                            partitions: partitions.clone(),
                            reply,
                        })
                        .unwrap_or_default();
                    for o in starts {
                        // Offset 0 is the first record a partition ever had; asking for the
                        // beginning instead also works once retention has deleted it.
                        let at = if o.next_offset <= 0 {
                            Offset::Beginning
                        } else {
                            Offset::Offset(o.next_offset)
                        };
                        if let Err(e) = tpl.set_partition_offset(&self.topic, o.partition, at) {
                            warn!(partition = o.partition, error = %e, "could not set a start offset");
                        } else {
                            info!(
                                partition = o.partition,
                                offset = o.next_offset,
                                "partition starts at its checkpoint"
                            );
                        }
                    }
                }
                self.split_queues(tpl);
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    warn!(error = %e, "could not take the assignment");
                }
                self.record_assignment(&partitions, true, cooperative);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions = partitions_of(tpl);
                if self.closing.load(Ordering::SeqCst) {
                    // Closing the consumer revokes everything. The pipeline ends its run on its
                    // own (the end of run checkpoint, then, in a bounded run, every window
                    // emitted as final): asking it to checkpoint and forget here raced with
                    // that and could drop the state before the finals were emitted.
                    info!(partitions = ?partitions, "partitions revoked at shutdown; committing stored offsets");
                } else if self.coordination.is_some() {
                    self.generation.fetch_add(1, Ordering::SeqCst);
                    info!(partitions = ?partitions, "partitions revoked; checkpointing before giving them up");
                    if let Some(covered) = self.ask(|reply| Rebalanced::Revoking {
                        partitions: partitions.clone(),
                        reply,
                    }) && !covered.is_empty()
                        && let Err(e) = consumer.store_offsets(&self.offsets_list(&covered))
                    {
                        self.metrics.offsets_store_failures.inc();
                        warn!(error = %e, "could not store the checkpoint's offsets");
                    }
                } else {
                    info!(partitions = ?partitions, "partitions revoked; committing stored offsets");
                }
                commit(consumer, &self.metrics, CommitMode::Sync);
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    warn!(error = %e, "could not give up the assignment");
                }
                self.record_assignment(&partitions, false, cooperative);
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                warn!(error = %code, "rebalance error; giving up the assignment");
                if let Err(e) = consumer.unassign() {
                    warn!(error = %e, "could not give up the assignment");
                }
                self.record_assignment(&[], false, false);
            }
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                info!(partitions = ?partitions_of(tpl), "partitions revoked; committing stored offsets");
                commit(consumer, &self.metrics, CommitMode::Sync);
            }
            Rebalance::Assign(tpl) => {
                info!(partitions = ?partitions_of(tpl), "partitions assigned")
            }
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// Commits stored offsets. "Nothing to commit" is not an error.
fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    metrics: &IngestMetrics,
    mode: CommitMode,
) {
    match consumer.commit_consumer_state(mode) {
        Ok(()) => metrics.count_commit(CommitResult::ok),
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            metrics.count_commit(CommitResult::error);
            warn!(error = %e, "offset commit failed; will retry at the next commit");
        }
    }
}

/// Starts a source for `kafka.input_topic`. Returns its handle and the batch queue
/// (capacity `ingest.queue_batches_max`).
pub fn start(
    kafka: &KafkaConfig,
    ingest: &IngestConfig,
    mode: RunMode,
    metrics: Arc<IngestMetrics>,
) -> Result<(SourceHandle, tmpsc::Receiver<IngestBatch>), IngestError> {
    start_coordinated(kafka, ingest, mode, metrics, None)
}

/// [`start`], handing rebalances to the pipeline through `coordination` (see the module docs).
pub fn start_coordinated(
    kafka: &KafkaConfig,
    ingest: &IngestConfig,
    mode: RunMode,
    metrics: Arc<IngestMetrics>,
    coordination: Option<Coordination>,
) -> Result<(SourceHandle, tmpsc::Receiver<IngestBatch>), IngestError> {
    let generation = Arc::new(AtomicU64::new(0));
    let closing = Arc::new(AtomicBool::new(false));
    let mut cfg = client_config(kafka, Role::Consumer);
    // Every run: a bounded one stops at the ends; a continuous one learns which partitions are
    // empty, so that they hold neither the watermark nor event-time alignment back (a cold
    // start beside an empty partition held its first windows for `linkage.idle_timeout`).
    // librdkafka reports an end once each time a partition's fetch catches up with it.
    cfg.set("enable.partition.eof", "true");
    let consumer: BaseConsumer<SourceContext> = cfg
        .create_with_context(SourceContext {
            metrics: metrics.clone(),
            topic: kafka.input_topic.clone(),
            coordination,
            generation: generation.clone(),
            closing: closing.clone(),
            consumer: OnceLock::new(),
            changes: Mutex::new(AssignmentChanges::default()),
        })
        .map_err(|source| IngestError::ClientConfig {
            role: "consumer",
            source,
        })?;
    let consumer = Arc::new(consumer);
    // Set before the first poll, so before any rebalance callback.
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    consumer
        .subscribe(&[&kafka.input_topic])
        .map_err(|source| IngestError::Kafka {
            operation: "subscribe",
            source,
        })?;

    let (batch_tx, batch_rx) = tmpsc::channel(ingest.queue_batches_max.max(1));
    let (ack_tx, ack_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = Worker {
        consumer,
        topic: kafka.input_topic.clone(),
        decoder: Decoder::new(DecodeLimits::from_config(ingest)),
        settings: ingest.clone(),
        commit_interval: kafka.commit_interval,
        mode,
        metrics,
        stop: stop.clone(),
        batch_tx: Some(batch_tx),
        ack_rx,
        acked: 0,
        stored_since_commit: false,
        next_commit: Instant::now() + kafka.commit_interval,
        generation,
        seen_generation: 0,
        closing,
        queues: BTreeMap::new(),
        assigned: Vec::new(),
        align: Alignment::new(ingest.partition_drift_max, ingest.partition_drift_idle),
        held: BTreeSet::new(),
        round_start: 0,
    };
    let thread = std::thread::Builder::new()
        .name("cluetrain-ingest".into())
        .spawn(move || worker.run())
        .map_err(|e| IngestError::Thread(e.to_string()))?;
    Ok((
        SourceHandle {
            stop,
            acker: Acker { tx: ack_tx },
            thread: Some(thread),
        },
        batch_rx,
    ))
}

/// Logs the first rejection of each reason at once, then at most one line per interval with
/// the count of suppressed ones: a flood of bad input cannot flood the logs.
struct ReasonLogLimiter {
    interval: Duration,
    last: [Option<Instant>; RejectReason::ALL.len()],
    suppressed: [u64; RejectReason::ALL.len()],
}

impl ReasonLogLimiter {
    fn new(interval: Duration) -> Self {
        ReasonLogLimiter {
            interval,
            last: [None; RejectReason::ALL.len()],
            suppressed: [0; RejectReason::ALL.len()],
        }
    }

    fn log(&mut self, r: &Rejected) {
        let i = r.reason.index();
        let now = Instant::now();
        if self.last[i].is_some_and(|t| now.duration_since(t) < self.interval) {
            self.suppressed[i] += 1;
            return;
        }
        warn!(
            reason = r.reason.as_str(),
            detail = %r.detail,
            partition = r.partition,
            offset = r.offset,
            suppressed_since_last_log = self.suppressed[i],
            "message dead-lettered"
        );
        self.last[i] = Some(now);
        self.suppressed[i] = 0;
    }
}

struct Worker {
    consumer: Arc<BaseConsumer<SourceContext>>,
    topic: String,
    decoder: Decoder,
    settings: IngestConfig,
    commit_interval: Duration,
    mode: RunMode,
    metrics: Arc<IngestMetrics>,
    stop: Arc<AtomicBool>,
    batch_tx: Option<tmpsc::Sender<IngestBatch>>,
    ack_rx: mpsc::Receiver<Ack>,
    /// Batches acknowledged so far.
    acked: u64,
    /// Offsets were stored since the last commit.
    stored_since_commit: bool,
    next_commit: Instant,
    generation: Arc<AtomicU64>,
    seen_generation: u64,
    /// Shared with the consumer's context: set before the consumer closes.
    closing: Arc<AtomicBool>,
    /// Each partition's own queue (see the module docs); kept across revocations.
    queues: BTreeMap<i32, PartitionQueue<SourceContext>>,
    /// The assignment, as the last rebalance left it.
    assigned: Vec<i32>,
    /// Event-time progress per partition, to hold back those that read ahead.
    align: Alignment,
    /// Partitions held back now (their queues not read).
    held: BTreeSet<i32>,
    /// Which assigned partition's queue a round of reads starts with (turn by turn).
    round_start: usize,
}

/// Messages read from one partition's queue before the next partition's turn.
const BURST: usize = 512;
/// Longest wait on the main queue when no partition queue had a message: what a message
/// arriving on a partition queue may wait before it is read.
const IDLE_POLL: Duration = Duration::from_millis(5);

/// The batch being filled.
/// How long a partition stays at its end, with no message, before a bounded run believes it
/// (and before any run counts a partition that never delivered as empty).
const END_SETTLE: Duration = Duration::from_secs(1);

struct Pending {
    builder: EventBatchBuilder,
    rejects: Vec<Rejected>,
    offsets: BTreeMap<i32, i64>,
    messages: u64,
    bytes: u64,
    opened: Option<Instant>,
    /// The partitions at their end now (a message from one takes it out again).
    at_end: BTreeMap<i32, Instant>,
    /// The settled ends the last emitted batch carried.
    reported_end: BTreeSet<i32>,
}

impl Pending {
    /// Forgets the messages not sent yet (a coordinated rebalance: their partitions start
    /// again at the offsets the pipeline restored, so they are read again).
    fn drop_unsent(&mut self) {
        if self.messages > 0 {
            debug!(
                messages = self.messages,
                "rebalance: dropping messages not sent yet; they are read again"
            );
        }
        // Finishing empties the builder; the rows are discarded.
        let _ = self.builder.finish();
        self.rejects.clear();
        self.offsets.clear();
        self.messages = 0;
        self.bytes = 0;
        self.opened = None;
        self.at_end.clear();
        self.reported_end.clear();
    }

    /// Nothing to send: no messages, and no partition reached its end since the last batch.
    /// A partition's end must reach the pipeline even when no message follows it (an empty
    /// partition, or an end seen after the last batch): until then it holds the watermark.
    fn is_empty(&self) -> bool {
        self.messages == 0 && self.settled_ends() == self.reported_end
    }

    /// Partitions at their end for at least [`END_SETTLE`] with no message since: only these
    /// count as ended. Tansu can report a partition's end (its high watermark) before data
    /// produced earlier is visible; an end believed too early would release the watermark
    /// and make that partition's events late.
    fn settled_ends(&self) -> BTreeSet<i32> {
        self.at_end
            .iter()
            .filter(|(_, t)| t.elapsed() >= END_SETTLE)
            .map(|(p, _)| *p)
            .collect()
    }
}

impl Worker {
    fn run(mut self) -> Result<SourceSummary, IngestError> {
        let mut log_limiter = ReasonLogLimiter::new(self.settings.dead_letter_log_interval);
        let mut pending = Pending {
            builder: EventBatchBuilder::with_capacity(self.settings.batch_rows_max.min(65_536)),
            rejects: Vec::new(),
            offsets: BTreeMap::new(),
            messages: 0,
            bytes: 0,
            opened: None,
            at_end: BTreeMap::new(),
            reported_end: BTreeSet::new(),
        };
        let mut seq = 0u64;
        let poll_max = Duration::from_millis(100);
        let mut queue_open = true;

        // The last round read no message: the next one waits on the main queue.
        let mut idle = false;
        while queue_open && !self.stop.load(Ordering::SeqCst) {
            self.service_acks(None);
            let timeout = match pending.opened {
                Some(t) => self
                    .settings
                    .batch_wait_max
                    .saturating_sub(t.elapsed())
                    .min(poll_max),
                None => poll_max,
            };
            // Rebalances and errors come through the main queue (and the messages of a
            // partition that could not have a queue of its own).
            let wait = if idle {
                timeout.min(IDLE_POLL)
            } else {
                Duration::ZERO
            };
            let consumer = Arc::clone(&self.consumer);
            let polled = consumer.poll(wait);
            self.take_changes();
            let generation = self.generation.load(Ordering::SeqCst);
            if generation != self.seen_generation {
                self.seen_generation = generation;
                pending.drop_unsent();
            }
            let mut took = 0usize;
            match polled {
                None => {}
                Some(Ok(msg)) => {
                    self.message(&msg, &mut pending, &mut log_limiter);
                    took += 1;
                }
                Some(Err(e)) => self.consumer_error(e, &mut pending),
            }
            // Decided every round: a round reads at most BURST messages of each partition, which
            // is how far past the bound a partition can read before it is held back.
            self.align_partitions(Instant::now());
            // The partitions not held back, in turn, up to BURST messages each.
            let queues = std::mem::take(&mut self.queues);
            let n = self.assigned.len().max(1);
            let order: Vec<i32> = (0..self.assigned.len())
                .map(|i| self.assigned[(i + self.round_start) % n])
                .filter(|p| !self.held.contains(p))
                .collect();
            self.round_start = self.round_start.wrapping_add(1);
            for p in order {
                let Some(q) = queues.get(&p) else {
                    continue;
                };
                for _ in 0..BURST {
                    match q.poll(Duration::ZERO) {
                        None => break,
                        Some(Ok(msg)) => {
                            self.message(&msg, &mut pending, &mut log_limiter);
                            took += 1;
                        }
                        Some(Err(e)) => {
                            self.consumer_error(e, &mut pending);
                            break;
                        }
                    }
                    // Count rejects too: a flood of bad input must not grow a batch without
                    // bound.
                    if pending.messages >= self.settings.batch_rows_max as u64 {
                        break;
                    }
                }
                if pending.messages >= self.settings.batch_rows_max as u64 {
                    queue_open = self.emit(&mut pending, &mut seq, BatchTrigger::rows);
                    if !queue_open {
                        break;
                    }
                }
            }
            self.queues = queues;
            if !queue_open {
                break;
            }
            if pending.messages >= self.settings.batch_rows_max as u64 {
                queue_open = self.emit(&mut pending, &mut seq, BatchTrigger::rows);
            } else if pending
                .opened
                .is_some_and(|t| t.elapsed() >= self.settings.batch_wait_max)
            {
                queue_open = self.emit(&mut pending, &mut seq, BatchTrigger::wait);
            }
            // Ends are looked at only when no message came: asking librdkafka for the
            // assignment is a round trip to its main thread, which per message held the
            // source to ~16k messages/s (end-to-end bench).
            idle = took == 0;
            if !idle || pending.at_end.is_empty() {
                continue;
            }
            let settled = pending.settled_ends();
            if pending.opened.is_none() && settled != pending.reported_end {
                // A partition's end is sent within `ingest.batch_wait_max`, with or without
                // messages: until then it holds the watermark.
                pending.opened = Some(Instant::now());
            }
            if self.mode == RunMode::UntilEnd && self.all_at_end(&settled) {
                info!("bounded run: every partition reached its end");
                break;
            }
        }
        let trigger = if self.stop.load(Ordering::SeqCst) {
            BatchTrigger::shutdown
        } else {
            BatchTrigger::end
        };
        if queue_open {
            self.emit(&mut pending, &mut seq, trigger);
        }
        // Closing the queue tells the pipeline no more batches come.
        drop(self.batch_tx.take());
        let deadline = Instant::now() + self.settings.shutdown_timeout;
        while self.acked < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.service_acks(Some(left)) {
                warn!(
                    outstanding = seq - self.acked,
                    "shutting down with unacknowledged batches; they will be read again on restart"
                );
                break;
            }
        }
        commit(&self.consumer, &self.metrics, CommitMode::Sync);
        self.closing.store(true, Ordering::SeqCst);
        // Queues split off in the last poll would keep the consumer (which owns the context
        // that holds them) from ever closing.
        self.take_changes();
        let summary = SourceSummary {
            batches_emitted: seq,
            batches_acked: self.acked,
            committed: self.committed(),
        };
        info!(batches = summary.batches_emitted, committed = ?summary.committed, "ingest stopped");
        Ok(summary)
    }

    /// Takes what rebalances changed (they run inside the main queue's poll): new partition
    /// queues, and the assignment, which alignment follows.
    fn take_changes(&mut self) {
        let mut changes = self.consumer.context().changes();
        for (p, q) in changes.new_queues.drain(..) {
            self.queues.insert(p, q);
        }
        if !std::mem::take(&mut changes.changed) {
            return;
        }
        let assigned: Vec<i32> = changes.assigned.iter().copied().collect();
        drop(changes);
        let now = Instant::now();
        self.align.assign(&assigned, now);
        self.held.retain(|p| assigned.contains(p));
        self.assigned = assigned;
    }

    /// A message from any queue.
    fn message(
        &mut self,
        msg: &rdkafka::message::BorrowedMessage<'_>,
        pending: &mut Pending,
        log_limiter: &mut ReasonLogLimiter,
    ) {
        let event_time = self.take(msg, pending, log_limiter);
        self.align
            .message(msg.partition(), event_time, Instant::now());
    }

    /// An error or partition end from any queue.
    fn consumer_error(&mut self, e: KafkaError, pending: &mut Pending) {
        match e {
            KafkaError::PartitionEOF(p) => {
                pending.at_end.entry(p).or_insert_with(Instant::now);
                self.align.end(p);
                debug!(partition = p, "partition at end");
            }
            e => {
                self.metrics.consumer_errors.inc();
                warn!(error = %e, "Kafka consumer error (librdkafka retries)");
            }
        }
    }

    /// Works out which partitions to hold back: those that read ahead of the others in event
    /// time ([`crate::align`]).
    fn align_partitions(&mut self, now: Instant) {
        let want = self.align.held(&self.held, now);
        let newly = want.difference(&self.held).count();
        if newly > 0 {
            self.metrics.partition_holds.inc_by(newly as u64);
        }
        if want != self.held {
            debug!(held = ?want, "event-time alignment");
        }
        self.held = want;
        self.metrics
            .partitions_held
            .set(i64::try_from(self.held.len()).unwrap_or(i64::MAX));
    }

    /// Stores acknowledged offsets and commits them when `kafka.commit_interval` is due.
    /// With `wait`, blocks up to that long for an acknowledgement. Returns whether any arrived.
    fn service_acks(&mut self, wait: Option<Duration>) -> bool {
        let mut any = false;
        if let Some(w) = wait
            && let Ok(ack) = self.ack_rx.recv_timeout(w)
        {
            self.store(&ack);
            any = true;
        }
        while let Ok(ack) = self.ack_rx.try_recv() {
            self.store(&ack);
            any = true;
        }
        if self.stored_since_commit && Instant::now() >= self.next_commit {
            commit(&self.consumer, &self.metrics, CommitMode::Async);
            self.stored_since_commit = false;
            self.next_commit = Instant::now() + self.commit_interval;
        }
        any
    }

    fn store(&mut self, ack: &Ack) {
        match ack.batches {
            Acked::Through(seq) => self.acked = self.acked.max(seq + 1),
            Acked::One => self.acked += 1,
            Acked::None => {}
        }
        if ack.offsets.is_empty() {
            return;
        }
        self.stored_since_commit = true;
        let mut tpl = TopicPartitionList::new();
        for o in &ack.offsets {
            if let Err(e) =
                tpl.add_partition_offset(&self.topic, o.partition, Offset::Offset(o.next_offset))
            {
                warn!(error = %e, "could not build offset list");
            }
        }
        if let Err(e) = self.consumer.store_offsets(&tpl) {
            self.metrics.offsets_store_failures.inc();
            warn!(error = %e, "could not store offsets (partition revoked?); its new owner re-reads them");
        }
    }

    /// Adds a message to the batch; returns its event's time when it decoded.
    fn take(
        &self,
        msg: &rdkafka::message::BorrowedMessage<'_>,
        p: &mut Pending,
        log_limiter: &mut ReasonLogLimiter,
    ) -> Option<i64> {
        let payload = msg.payload();
        let len = payload.map_or(0, <[u8]>::len) as u64;
        self.metrics.messages.inc();
        self.metrics.bytes.inc_by(len);
        if p.opened.is_none() {
            p.opened = Some(Instant::now());
        }
        p.messages += 1;
        p.bytes += len;
        p.offsets.insert(msg.partition(), msg.offset() + 1);
        // Not at its end any more (a bounded run over a topic that is still written to).
        p.at_end.remove(&msg.partition());
        let now = chrono::Utc::now().timestamp_micros();
        match self
            .decoder
            .decode_into(payload, now, &mut p.builder, msg.partition(), msg.offset())
        {
            Ok(()) => {
                self.metrics.events_decoded.inc();
                p.builder.last_created_at()
            }
            Err(reject) => {
                let r = Rejected {
                    reason: reject.reason,
                    detail: reject.detail,
                    topic: msg.topic().to_string(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    key: msg.key().map(<[u8]>::to_vec),
                    payload: payload.map(<[u8]>::to_vec),
                    headers: msg
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default(),
                    timestamp_ms: msg.timestamp().to_millis(),
                };
                self.metrics.count_dead_letter(r.reason);
                log_limiter.log(&r);
                p.rejects.push(r);
                None
            }
        }
    }

    /// Sends the pending batch (if any) downstream. Returns false when the pipeline is gone.
    fn emit(&mut self, p: &mut Pending, seq: &mut u64, trigger: BatchTrigger) -> bool {
        if p.is_empty() {
            return true;
        }
        let events = match p.builder.finish() {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "internal: could not finish a batch; stopping ingest");
                return false;
            }
        };
        let settled = p.settled_ends();
        let batch = IngestBatch {
            seq: *seq,
            events,
            rejects: std::mem::take(&mut p.rejects),
            offsets: std::mem::take(&mut p.offsets)
                .into_iter()
                .map(|(partition, next_offset)| PartitionOffset {
                    partition,
                    next_offset,
                })
                .collect(),
            messages: std::mem::take(&mut p.messages),
            bytes: std::mem::take(&mut p.bytes),
            assigned: self
                .consumer
                .assignment()
                .map(|tpl| partitions_of(&tpl))
                .unwrap_or_default(),
            ended: if self.mode == RunMode::UntilEnd {
                settled.iter().copied().collect()
            } else {
                Vec::new()
            },
            at_end: settled.iter().copied().collect(),
        };
        p.reported_end = settled;
        p.opened = None;
        *seq += 1;
        self.metrics.count_batch(trigger);
        let Some(tx) = self.batch_tx.clone() else {
            return false;
        };
        let started = Instant::now();
        let mut batch = batch;
        // While the queue is full, keep storing acknowledgements and committing, so that
        // backpressure never delays commits of work that is already done.
        let sent = loop {
            match tx.try_send(batch) {
                Ok(()) => break true,
                Err(tmpsc::error::TrySendError::Closed(_)) => break false,
                Err(tmpsc::error::TrySendError::Full(b)) => {
                    batch = b;
                    self.service_acks(Some(Duration::from_millis(5)));
                }
            }
        };
        let waited = started.elapsed();
        if waited > Duration::from_millis(1) {
            self.metrics.queue_full_seconds.inc_by(waited.as_secs_f64());
        }
        sent
    }

    /// In a bounded run: is every partition of the topic assigned to us and at its end?
    fn all_at_end(&self, at_end: &BTreeSet<i32>) -> bool {
        let Ok(assignment) = self.consumer.assignment() else {
            return false;
        };
        let assigned = partitions_of(&assignment);
        !assigned.is_empty() && assigned.iter().all(|p| at_end.contains(p))
    }

    fn committed(&self) -> BTreeMap<i32, i64> {
        let mut out = BTreeMap::new();
        if let Ok(tpl) = self.consumer.committed(Duration::from_secs(5)) {
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    out.insert(e.partition(), o);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_end_is_not_an_error_and_failures_are() {
        assert!(is_partition_end(&KafkaError::PartitionEOF(3)));
        // How librdkafka's error callback reports it ("Global error: PartitionEOF").
        assert!(is_partition_end(&KafkaError::Global(
            RDKafkaErrorCode::PartitionEOF
        )));
        assert!(!is_partition_end(&KafkaError::Global(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
        assert!(!is_partition_end(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::UnknownTopicOrPartition
        )));
    }
}
