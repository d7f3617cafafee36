//! The pipeline: wires ingest → (enrich → aggregate → outputs, as they land) and drives
//! acknowledgements.
//!
//! Each micro-batch is handled in order: dead letters, then the [`Job`] (enrichment and window
//! aggregation), then its outputs. A batch is acknowledged (its offsets become committable) only
//! after its dead letters, late events, forwarded complaints and the window records it caused
//! are delivered to Kafka. Its outputs are handed to librdkafka in order and their delivery is
//! awaited while the next batch is processed (at most one batch in flight: `InFlight`). Window
//! state itself lives in memory until checkpoints land, so a crash replays from the last commit
//! (at-least-once; records are upserts by key and revision).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use ingest::source::{self, PartitionOffset, RunMode, SourceSummary};
use ingest::{DeadLetterSink, IngestBatch, IngestMetrics};
use model::WindowRecord;
use model::config::Config;
use tracing::{error, info};

use crate::admin::Health;
use crate::checkpoint::{self, CheckpointStore};
use crate::enrichment::Forward;
use crate::job::{Job, Step};
use crate::live_tables::{DeadRow, LateRow, LiveLimits, LiveTables, Voice};
use crate::metrics::PipelineMetrics;
use crate::outputs::kafka::{OutMessage, OutputProducer};
use crate::outputs::parquet::ParquetSink;
use crate::stats::LiveStats;

/// What a finished run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Batches processed and acknowledged.
    pub batches: u64,
    /// Events decoded.
    pub events: u64,
    /// Messages dead-lettered.
    pub dead_letters: u64,
    /// Events later than the allowed lateness, sent to the late-events topic.
    pub late_events: u64,
    /// Window records emitted (every revision).
    pub window_records: u64,
    /// Of those, final.
    pub final_records: u64,
    /// Negative inbound messages forwarded to department topics.
    pub forwarded: u64,
    /// Parquet files written.
    pub parquet_files: u64,
    /// What the source reports (committed offsets per partition).
    pub source: SourceSummary,
    /// Per batch that closed a window (its first record at close), µs from the batch's arrival
    /// to its records delivered: what `cluetrain_emit_delay_seconds` observes. The first
    /// [`EMIT_DELAY_SAMPLES_MAX`] batches only.
    pub emit_delay_micros: Vec<u64>,
    /// When the run did its work, for rates in the summary.
    pub timing: RunTiming,
    /// Linkage entries (messages remembered as possible parents) at the end.
    pub linkage_entries: usize,
    /// Where the pipeline task spent its time, summed over the run.
    pub stages: StageTimes,
    /// Batches whose enrichment ran beside the window engine of the batch before
    /// (`windows.overlap_enrichment`): their enrichment time is in `stages` and overlapped
    /// the engine's.
    pub overlapped_batches: u64,
    /// Empty batches run while the input was quiet, because time alone moved the watermark (a partition's
    /// idle or empty timeout ran out with no batch arriving).
    pub heartbeats: u64,
}

/// Wall time of the pipeline task per stage, summed over a run: which stage holds the rate
/// back. Decoding is not here: it runs on the source thread, in parallel (the source's
/// `cluetrain_ingest_queue_full_seconds_total` says how long it waited for this task).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Dead letters delivered.
    pub dead_letters: Duration,
    /// Enrichment (sentiment, lateness, reordering, linkage, routing, facts).
    pub enrichment: Duration,
    /// Window engine: DataFusion aggregation of the facts and the merge into window state.
    pub windows_ingest: Duration,
    /// Window engine: emission as the watermark moves.
    pub windows_emit: Duration,
    /// Kafka outputs: window records, late events and forwards serialised and delivered.
    pub outputs: Duration,
    /// Parquet: records buffered, files written.
    pub parquet: Duration,
    /// Prometheus metrics, live summary and live SQL tables.
    pub observers: Duration,
    /// Checkpoints (with the Parquet flush before each).
    pub checkpoints: Duration,
    /// Waiting for the next batch from the source.
    pub waiting: Duration,
    /// The source thread blocked on a full queue (`ingest.queue_batches_max`): the time this
    /// task held the source back.
    pub source_blocked: Duration,
}

/// Emit delays a [`RunReport`] keeps (8 bytes each; one per batch that closed a window).
pub const EMIT_DELAY_SAMPLES_MAX: usize = 100_000;

/// When a run did its work (wall clock, monotonic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunTiming {
    /// The first batch with events arrived.
    pub first_events: Option<Instant>,
    /// The last batch with events was done (outputs delivered).
    pub last_events_done: Option<Instant>,
    /// The input ended (the source closed its queue) or the run stopped.
    pub input_ended: Option<Instant>,
    /// The run was done: final records delivered and Parquet flushed.
    pub finished: Option<Instant>,
}

/// Shared handles a run reports into (metrics registry contents, health, live summary).
#[derive(Debug, Default, Clone)]
pub struct Observers {
    /// Ingest counters.
    pub ingest: Arc<IngestMetrics>,
    /// Pipeline metrics (engagement and health); created by [`Observers::with_metrics`].
    pub pipeline: Option<Arc<PipelineMetrics>>,
    /// What `/readyz` reports.
    pub health: Arc<Health>,
    /// Live figures for the terminal summary.
    pub live: Arc<LiveStats>,
    /// What the SQL server shows of the running pipeline.
    pub tables: Arc<LiveTables>,
}

impl Observers {
    /// Observers with every metric registered in a new registry, for the admin server.
    pub fn with_metrics(config: &Config) -> (Self, prometheus_client::registry::Registry) {
        let mut registry = prometheus_client::registry::Registry::default();
        let ingest = Arc::new(IngestMetrics::default());
        ingest.register(&mut registry);
        let pipeline = Arc::new(PipelineMetrics::new(config));
        pipeline.register(&mut registry);
        registry.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        (
            Observers {
                ingest,
                pipeline: Some(pipeline),
                health: Arc::new(Health::new()),
                live: Arc::new(LiveStats::default()),
                tables: Arc::new(LiveTables::new(LiveLimits::of(&config.sql))),
            },
            registry,
        )
    }
}

/// The inbound messages of `linked` as `voices` sees them.
fn voices<'a>(
    job: &'a Job,
    linked: &'a [enrich::linkage::Linked],
) -> impl Iterator<Item = Voice<'a>> + 'a {
    linked.iter().filter_map(move |l| match l {
        enrich::linkage::Linked::Event {
            brand,
            author_id,
            created_at,
            role: enrich::linkage::Role::Inbound,
            root,
            compound,
            tag,
            ..
        } => Some(Voice {
            brand,
            author_id,
            stakeholder: job.enrichment.describe(*tag).1,
            root,
            created_at: *created_at,
            compound: *compound,
        }),
        _ => None,
    })
}

/// Below this many linked events in a batch, `voices` is fed on the pipeline task itself.
/// Feeding it costs ~0.5 µs an event (its share of the profile, docs/performance-log.md), so
/// 512 are ~0.25 ms, well above what starting a thread is commonly reported to cost (tens of
/// µs; not measured here). The bound itself was not tuned.
const OBSERVE_BESIDE_MIN: usize = 512;

/// Feeds the live SQL tables with what one batch did, but `voices` (the caller feeds it, beside
/// the metrics); `open_conversations` is refreshed at most every `sql.refresh_interval` (it
/// walks all linkage state).
fn feed_tables(
    tables: &LiveTables,
    job: &Job,
    batch: &IngestBatch,
    step: &Step,
    watermark_before: Option<i64>,
    last_open_refresh: &mut Option<Instant>,
    refresh_interval: std::time::Duration,
) {
    let now = chrono::Utc::now().timestamp_micros();
    tables.windows(&step.records);
    if !batch.rejects.is_empty() {
        tables.dead_letters(batch.rejects.iter().map(|r| DeadRow {
            received_at: now,
            reason: r.reason.as_str(),
            detail: r.detail.clone(),
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            payload_bytes: r.payload.as_ref().map_or(0, |p| p.len() as i64),
        }));
    }
    if !step.enriched.late.is_empty() {
        let b = &step.enriched.batch;
        let s = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
        };
        let (ids, brands, platforms, kinds) = (
            s(model::schema::col::EVENT_ID),
            s(model::schema::col::BRAND),
            s(model::schema::col::PLATFORM),
            s(model::schema::col::KIND),
        );
        let times = b
            .column_by_name(model::schema::col::CREATED_AT)
            .and_then(|c| c.as_primitive_opt::<arrow_array::types::TimestampMicrosecondType>());
        let parts = b
            .column_by_name(model::schema::col::KAFKA_PARTITION)
            .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int32Type>());
        let offs = b
            .column_by_name(model::schema::col::KAFKA_OFFSET)
            .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int64Type>());
        if let (
            Some(ids),
            Some(brands),
            Some(platforms),
            Some(kinds),
            Some(times),
            Some(parts),
            Some(offs),
        ) = (ids, brands, platforms, kinds, times, parts, offs)
        {
            let marks = &step.enriched.late_watermarks;
            tables.late(
                step.enriched
                    .late
                    .iter()
                    .enumerate()
                    .map(|(n, &i)| LateRow {
                        event_id: ids.value(i).to_string(),
                        brand: brands.value(i).to_string(),
                        platform: platforms.value(i).to_string(),
                        kind: kinds.value(i).to_string(),
                        created_at: times.value(i),
                        watermark: marks.get(n).copied().or(watermark_before),
                        arrived_at: now,
                        partition: parts.value(i),
                        offset: offs.value(i),
                    }),
            );
        }
    }
    refresh_open(
        tables,
        job,
        step.enriched.watermark,
        last_open_refresh,
        refresh_interval,
    );
}

/// Refreshes `open_conversations` from linkage state when `sql.refresh_interval` has passed.
fn refresh_open(
    tables: &LiveTables,
    job: &Job,
    watermark: Option<i64>,
    last: &mut Option<Instant>,
    interval: std::time::Duration,
) {
    if last.is_some_and(|t| t.elapsed() < interval) {
        return;
    }
    *last = Some(Instant::now());
    let (open, total) = job.enrichment.open_inbound(tables.limits().open_max);
    tables.set_open(open, total, watermark);
}

/// Header on late events: the pipeline watermark when the event arrived (RFC 3339).
pub const LATE_WATERMARK_HEADER: &str = "cluetrain.late.watermark";
/// Header on late events: how far behind the watermark the event was, in seconds.
pub const LATE_BEHIND_HEADER: &str = "cluetrain.late.behind_seconds";
/// Header on forwarded complaints: the department.
pub const FORWARD_DEPARTMENT_HEADER: &str = "cluetrain.department";
/// Header on window records: the record's revision.
pub const RECORD_REVISION_HEADER: &str = "cluetrain.revision";

/// Everything a batch sends to Kafka, built from a [`Step`].
fn messages(
    config: &Config,
    step: &Step,
    watermark_before: Option<i64>,
) -> anyhow::Result<Vec<OutMessage>> {
    let mut out = Vec::with_capacity(step.records.len() + step.enriched.late.len());
    let batch = &step.enriched.batch;
    let brands = batch
        .column_by_name(model::schema::col::BRAND)
        .and_then(|c| c.as_string_opt::<i32>().cloned());
    let times = batch
        .column_by_name(model::schema::col::CREATED_AT)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>().cloned());
    for (n, &row) in step.enriched.late.iter().enumerate() {
        let json = crate::outputs::event_json(batch, row);
        let key = brands
            .as_ref()
            .map(|b| b.value(row).as_bytes().to_vec())
            .unwrap_or_default();
        let mut headers = Vec::new();
        // The watermark the event was judged against (it moves within a batch).
        if let Some(w) = step
            .enriched
            .late_watermarks
            .get(n)
            .copied()
            .or(watermark_before)
        {
            headers.push((
                LATE_WATERMARK_HEADER,
                chrono::DateTime::<chrono::Utc>::from_timestamp_micros(w)
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ));
            if let Some(t) = &times {
                #[allow(clippy::cast_precision_loss)] // seconds, display only
                let behind = (w - t.value(row)) as f64 / 1e6;
                headers.push((LATE_BEHIND_HEADER, format!("{behind}")));
            }
        }
        out.push(OutMessage {
            topic: config.outputs.late_events_topic.clone(),
            key,
            payload: serde_json::to_vec(&json)?,
            headers,
        });
    }
    out.extend(forward_messages(&step.enriched.forwards)?);
    if !config.outputs.windows_topic.is_empty() {
        out.extend(record_messages(config, &step.records)?);
    }
    Ok(out)
}

fn forward_messages(forwards: &[Forward]) -> anyhow::Result<Vec<OutMessage>> {
    let mut out = Vec::with_capacity(forwards.len());
    for f in forwards {
        let mut json = f.json.clone();
        if let Some(o) = json.as_object_mut() {
            o.insert("department".into(), serde_json::json!(f.department));
            o.insert("sentiment_compound".into(), serde_json::json!(f.compound));
        }
        out.push(OutMessage {
            topic: f.topic.clone(),
            key: f.brand.as_bytes().to_vec(),
            payload: serde_json::to_vec(&json)?,
            headers: vec![(FORWARD_DEPARTMENT_HEADER, f.department.clone())],
        });
    }
    Ok(out)
}

fn record_messages(config: &Config, records: &[WindowRecord]) -> anyhow::Result<Vec<OutMessage>> {
    records
        .iter()
        .map(|r| {
            Ok(OutMessage {
                topic: config.outputs.windows_topic.clone(),
                key: r.brand.as_bytes().to_vec(),
                payload: serde_json::to_vec(r)?,
                headers: vec![(RECORD_REVISION_HEADER, r.revision.to_string())],
            })
        })
        .collect()
}

/// Runs the pipeline until `shutdown` resolves (continuous mode) or the input ends
/// (bounded mode). Returns after the final commit.
pub async fn run(
    config: &Config,
    mode: RunMode,
    observers: Observers,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<RunReport> {
    let job = Job::new(config).map_err(|e| {
        anyhow::Error::new(crate::settings::LoadError::Invalid(
            model::config::ConfigError {
                problems: vec![model::config::ConfigProblem {
                    key: e.key.clone(),
                    message: e.message.clone(),
                }],
            },
        ))
    })?;
    let dead_letters = DeadLetterSink::new(&config.kafka, &config.ingest)
        .context("creating the dead-letter producer")?;
    let outputs = OutputProducer::new(&config.kafka)?;
    let mut topics = vec![(
        "outputs.late_events_topic",
        config.outputs.late_events_topic.as_str(),
    )];
    if !config.outputs.windows_topic.is_empty() {
        topics.push((
            "outputs.windows_topic",
            config.outputs.windows_topic.as_str(),
        ));
    }
    for t in config.departments.forward_negative.values() {
        topics.push(("departments.forward_negative", t.as_str()));
    }
    let check = {
        let topics: Vec<(String, String)> = topics
            .iter()
            .map(|(k, t)| ((*k).to_string(), (*t).to_string()))
            .collect();
        let kafka = config.kafka.clone();
        tokio::task::spawn_blocking(move || {
            let p = OutputProducer::new(&kafka)?;
            let refs: Vec<(&str, &str)> = topics
                .iter()
                .map(|(k, t)| (k.as_str(), t.as_str()))
                .collect();
            p.check_topics(&refs)
        })
    };
    check.await.context("checking output topics")??;
    let parquet = if config.outputs.parquet_location.is_empty() {
        None
    } else {
        Some(ParquetSink::new(
            &config.outputs.parquet_location,
            config.outputs.parquet_flush_interval,
            config.outputs.parquet_rows_max,
        )?)
    };
    // With checkpoints, rebalances come to this loop: the source waits for the checkpoint of
    // the partitions it gives up and for the offsets of those it is assigned.
    let (co_tx, mut rebalances) = tokio::sync::mpsc::channel(16);
    let ck = if config.checkpoint.location.is_empty() {
        drop(co_tx);
        None
    } else {
        let store = CheckpointStore::open(
            &config.checkpoint.location,
            &config.kafka.group_id,
            &config.kafka.input_topic,
            config.checkpoint.keep,
            config.checkpoint.full_every,
        )?
        .with_threads(config.checkpoint.threads_resolved());
        info!(location = %config.checkpoint.location, interval = ?config.checkpoint.interval, "checkpoints on");
        Some((
            Checkpoints {
                store,
                interval: config.checkpoint.interval,
                last: Instant::now(),
                owned: BTreeSet::new(),
                positions: BTreeMap::new(),
                dirty: BTreeSet::new(),
                last_seq: None,
            },
            co_tx,
        ))
    };
    let (ck, coordination) = match ck {
        Some((c, tx)) => (
            Some(c),
            Some(source::Coordination {
                tx,
                timeout: config.checkpoint.rebalance_timeout,
            }),
        ),
        None => (None, None),
    };
    let (handle, mut batches) = source::start_coordinated(
        &config.kafka,
        &config.ingest,
        mode,
        observers.ingest.clone(),
        coordination,
    )
    .context("starting the Kafka consumer")?;
    info!(
        topic = %config.kafka.input_topic,
        group = %config.kafka.group_id,
        brokers = %config.kafka.bootstrap_servers,
        bounded = mode == RunMode::UntilEnd,
        windows_topic = %config.outputs.windows_topic,
        parquet = %config.outputs.parquet_location,
        "pipeline started"
    );
    let mut run = Run {
        config,
        mode,
        acker: handle.acker(),
        observers,
        job,
        dead_letters,
        outputs,
        parquet,
        report: RunReport::default(),
        deferred: None,
        last_backlog: None,
        last_open_refresh: None,
        horizon_micros: i64::try_from(config.linkage.response_horizon.as_micros())
            .unwrap_or(i64::MAX),
        ck,
        in_flight: None,
    };
    let mut failure = None;
    tokio::pin!(shutdown);
    let mut stopping = false;
    // Parquet is flushed, open conversations refreshed and checkpoints taken on this tick even
    // when no batch arrives.
    let mut every = config
        .outputs
        .parquet_flush_interval
        .min(config.sql.refresh_interval);
    if run.ck.is_some() {
        every = every.min(config.checkpoint.interval);
    }
    let mut tick = tokio::time::interval(every.clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(60),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // While no batch arrives, time alone can move the watermark (a partition's idle or empty
    // timeout runs out): looked at every second then ([`Run::heartbeat`]). Batches flowing
    // move it themselves, so this never cuts a chain of overlapped batches.
    let mut quiet = tokio::time::interval(std::time::Duration::from_secs(1));
    quiet.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A batch enriched beside the window engine of the one before (`Run::look_ahead`):
    // completed before anything else, so the loop only waits, ticks or rebalances with
    // enrichment and the engine at the same batch.
    let mut ahead: Option<Prepared> = None;
    let mut tick_due = false;
    loop {
        if let Some(p) = ahead.take() {
            let next = run.look_ahead(&mut batches, &rebalances, &mut tick, &mut tick_due);
            match run.complete(p, next).await {
                Ok(a) => ahead = a,
                Err(e) => {
                    handle.stop();
                    failure = Some(e);
                    break;
                }
            }
            continue;
        }
        if tick_due {
            tick_due = false;
            if let Err(e) = run.tick().await {
                handle.stop();
                failure = Some(e);
                break;
            }
            continue;
        }
        let waiting = Instant::now();
        let batch = tokio::select! {
            b = batches.recv() => b,
            Some(r) = rebalances.recv() => {
                // The source is inside the rebalance now and queues nothing more: the batches
                // it queued before come first.
                while let Ok(b) = batches.try_recv() {
                    if let Err(e) = run.handle_batch(b).await {
                        failure = Some(e);
                        break;
                    }
                }
                if failure.is_some() {
                    handle.stop();
                    break;
                }
                if let Err(e) = run.rebalance(r).await {
                    error!(error = %format!("{e:#}"), "stopping: partitions could not be restored");
                    handle.stop();
                    failure = Some(e);
                    break;
                }
                continue;
            }
            _ = tick.tick() => {
                if let Err(e) = run.tick().await {
                    handle.stop();
                    failure = Some(e);
                    break;
                }
                continue;
            }
            _ = quiet.tick() => {
                if run.job.enrichment.watermark_due(Instant::now())
                    && let Err(e) = run.heartbeat().await
                {
                    handle.stop();
                    failure = Some(e);
                    break;
                }
                continue;
            }
            () = &mut shutdown, if !stopping => {
                info!("shutdown requested: flushing the current batch and committing");
                handle.stop();
                stopping = true;
                continue;
            }
        };
        let Some(batch) = batch else { break };
        run.report.stages.waiting += waiting.elapsed();
        match run.prepare(batch).await {
            Ok(p) => ahead = Some(p),
            Err(e) => {
                handle.stop();
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_none()
        && let Err(e) = run.settle().await
    {
        failure = Some(e);
    }
    run.report.timing.input_ended = Some(Instant::now());
    if failure.is_none()
        && run.ck.is_some()
        && let Err(e) = run.checkpoint("end of run").await
    {
        // Not committed: the next run restores the previous checkpoint and reads again.
        error!(error = %format!("{e:#}"), "the final checkpoint failed");
        failure = Some(e.into());
    }
    if failure.is_none()
        && mode == RunMode::UntilEnd
        && !stopping
        && let Err(e) = run.finish().await
    {
        error!(error = %format!("{e:#}"), "the final window records could not be delivered");
        run.deferred = None;
        failure = Some(e);
    }
    if let Some(p) = run.parquet.as_mut() {
        if let Err(e) = p.flush().await {
            error!(error = %format!("{e:#}"), "Parquet output failed at shutdown");
            run.deferred = None;
            failure.get_or_insert(e);
        }
        run.report.parquet_files = p.files_written();
    }
    run.report.timing.finished = Some(Instant::now());
    run.report.stages.source_blocked =
        Duration::try_from_secs_f64(run.observers.ingest.queue_full_seconds.get())
            .unwrap_or_default();
    if let Some(last) = run.deferred.take() {
        run.acker.ack(&last);
    }
    let Run {
        acker,
        mut report,
        job,
        ..
    } = run;
    drop(acker);
    // Unblock the source if it waits on a full queue or for a rebalance answer, then let it
    // commit and close.
    drop(batches);
    drop(rebalances);
    report.source = tokio::task::spawn_blocking(move || handle.join())
        .await
        .context("joining the ingest thread")?
        .context("ingest")?;
    let es = job.engine.stats();
    info!(
        batches = report.batches,
        events = report.events,
        dead_letters = report.dead_letters,
        late_events = report.late_events,
        window_records = report.window_records,
        final_records = report.final_records,
        windows_open = es.windows_open,
        forced_final = es.forced_final,
        values_dropped = es.values_dropped,
        conversations_dropped = es.conversations_dropped,
        updates_after_final = es.updates_after_final,
        committed = ?report.source.committed,
        "pipeline stopped"
    );
    let (links, entries) = job.enrichment.link_stats();
    report.linkage_entries = entries;
    let en = job.enrichment.stats();
    info!(
        late = en.late,
        answers_after_horizon = en.answers_after_horizon,
        forwarded = en.forwarded,
        forward_dropped = en.forward_dropped,
        reorder_forced = en.reorder_forced,
        brand_partition_conflicts = en.brand_partition_conflicts,
        "enrichment"
    );
    info!(
        linked = links.linked,
        duplicates = links.duplicates,
        resolved_late = links.resolved_late,
        orphans = links.orphans,
        evicted = links.evicted,
        entries,
        "linkage"
    );
    match failure {
        Some(e) => Err(e.context("pipeline stopped on an error")),
        None => Ok(report),
    }
}

/// Checkpoint bookkeeping of a run (`checkpoint.location` set).
struct Checkpoints {
    store: CheckpointStore,
    interval: std::time::Duration,
    last: Instant,
    /// The partitions this instance owns since the last rebalance; events of others (read
    /// before the rebalance took effect) are dropped.
    owned: BTreeSet<i32>,
    /// Per owned partition, the next offset to process: restored from the checkpoint, then
    /// moved by every batch. Events before it are already in the state and are dropped.
    positions: BTreeMap<i32, i64>,
    /// Partitions whose position moved since their last checkpoint.
    dirty: BTreeSet<i32>,
    /// Sequence number of the last batch processed.
    last_seq: Option<u64>,
}

/// Why a checkpoint round failed.
#[derive(Debug, thiserror::Error)]
enum CheckpointFailure {
    /// Parquet could not be flushed first: the pipeline stops, as for any Parquet failure.
    #[error("flushing Parquet before the checkpoint: {0:#}")]
    Parquet(anyhow::Error),
    /// The outputs of a batch it would cover were not delivered: the pipeline stops, as for
    /// any delivery failure.
    #[error("delivering outputs before the checkpoint: {0:#}")]
    Outputs(anyhow::Error),
    /// The store did not take a checkpoint: nothing is committed; the next round retries.
    #[error("writing the checkpoint: {0:#}")]
    Store(anyhow::Error),
}

/// A batch through enrichment, waiting for the window engine and the rest of its handling.
struct Prepared {
    batch: IngestBatch,
    arrived: Instant,
    /// The pipeline watermark before its enrichment.
    watermark_before: Option<i64>,
    enriched: crate::enrichment::Enriched,
    enrich_time: Duration,
    /// No batch from the source: a heartbeat ([`Run::heartbeat`]), for a watermark that time
    /// moved. Nothing to acknowledge, no offset moved.
    heartbeat: bool,
}

/// What one run holds between batches.
struct Run<'a> {
    config: &'a Config,
    mode: RunMode,
    acker: source::Acker,
    observers: Observers,
    job: Job,
    dead_letters: DeadLetterSink,
    outputs: OutputProducer,
    parquet: Option<ParquetSink>,
    report: RunReport,
    /// Without checkpoints, in a bounded run, the last batch is acknowledged only after the
    /// final window records are delivered, so that the source's closing commit never runs
    /// ahead of them. (With checkpoints, the final checkpoint covers them: a restart restores
    /// it and finishes again.)
    deferred: Option<IngestBatch>,
    last_backlog: Option<Instant>,
    last_open_refresh: Option<Instant>,
    horizon_micros: i64,
    ck: Option<Checkpoints>,
    /// The last batch whose outputs librdkafka has and whose delivery is not yet known: at
    /// most one batch ([`Run::settle`]).
    in_flight: Option<InFlight>,
}

/// A batch whose outputs were handed to librdkafka ([`OutputProducer::enqueue`]) while the
/// pipeline went on, and what waits for their delivery ([`Run::settle`]).
///
/// At most one batch is in flight, a fixed bound rather than a setting: the one before is
/// settled when the next batch's outputs are enqueued, and everything is settled before a
/// checkpoint, a rebalance, a tick and the end of a run. A batch's processing takes longer than
/// its delivery (linger 5 ms and the broker's answer against ~50 ms of work per 8,192 events),
/// so the wait is usually over when it is looked at; when it is not, it shows in the stage
/// `outputs` of the run summary and in `cluetrain_emit_delay_seconds`.
struct InFlight {
    /// The delivery reports, awaited on a task of their own that notes when they all came.
    delivered: tokio::task::JoinHandle<(anyhow::Result<()>, Instant)>,
    /// When the batch reached the pipeline.
    arrived: Instant,
    /// When the pipeline was done with it but for the delivery.
    done: Instant,
    /// It had events: the run's last busy moment is its delivery at the earliest.
    events: bool,
    /// Its records include a window's first emission at close: an emit-delay sample, and
    /// the debug line of a closing batch.
    closing: Option<ClosingBatch>,
    /// Without checkpoints: the batch to acknowledge once its outputs are delivered.
    ack: Option<IngestBatch>,
}

/// What the debug line of a batch that closed windows says of its own stages.
struct ClosingBatch {
    seq: u64,
    rows: usize,
    records: usize,
    watermark_moved_seconds: Option<i64>,
    times: crate::job::StepTimes,
    enqueue: Duration,
    observers: Duration,
}

impl Run<'_> {
    /// Puts a batch's delivery in flight; without `outputs.overlap_delivery`, settles it at once.
    async fn hand_over(&mut self, flight: InFlight) -> anyhow::Result<()> {
        self.in_flight = Some(flight);
        if self.config.outputs.overlap_delivery {
            return Ok(());
        }
        self.settle().await
    }

    /// Waits for the delivery of the batch in flight, if any, then does what waited for it:
    /// its acknowledgement (without checkpoints), its emit delay. A failed delivery stops the
    /// run without acknowledging (the batch is read again by the next run).
    async fn settle(&mut self) -> anyhow::Result<()> {
        let Some(f) = self.in_flight.take() else {
            return Ok(());
        };
        let waiting = Instant::now();
        let joined = f.delivered.await;
        self.report.stages.outputs += waiting.elapsed();
        let (result, delivered) = match joined {
            Ok(r) => r,
            Err(e) => (
                Err(anyhow::anyhow!("internal: the delivery task failed: {e}")),
                Instant::now(),
            ),
        };
        if let Err(e) = result {
            error!(error = %format!("{e:#}"), "stopping: outputs could not be delivered");
            return Err(e);
        }
        if f.events {
            self.report.timing.last_events_done = Some(delivered.max(f.done));
        }
        if let Some(c) = f.closing {
            // Until the outputs delivered the records: the metrics and live tables fed after
            // they were handed over do not delay them.
            let delay = delivered.saturating_duration_since(f.arrived);
            if let Some(m) = &self.observers.pipeline {
                m.emit_delay.observe(delay.as_secs_f64());
            }
            let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
            if self.report.emit_delay_micros.len() < EMIT_DELAY_SAMPLES_MAX {
                self.report.emit_delay_micros.push(micros);
            }
            // Where a slow emission went (`cluetrain=debug`): this batch's own stages.
            tracing::debug!(
                batch = c.seq,
                rows = c.rows,
                records = c.records,
                watermark_moved_seconds = c.watermark_moved_seconds,
                delay_ms = micros / 1000,
                enrichment_ms = c.times.enrichment.as_millis(),
                windows_ingest_ms = c.times.windows_ingest.as_millis(),
                windows_emit_ms = c.times.windows_emit.as_millis(),
                outputs_ms = c.enqueue.as_millis(),
                observers_ms = c.observers.as_millis(),
                "a batch closed windows"
            );
        }
        if let Some(batch) = f.ack {
            if self.mode == RunMode::UntilEnd {
                if let Some(prev) = self.deferred.replace(batch) {
                    self.acker.ack(&prev);
                }
            } else {
                self.acker.ack(&batch);
            }
        }
        Ok(())
    }

    /// Drops what a checkpoint already covers or another instance owns.
    fn admit(&mut self, batch: &mut IngestBatch) -> anyhow::Result<()> {
        let Some(ck) = &self.ck else { return Ok(()) };
        let keep = |p: i32, o: i64| {
            ck.owned.contains(&p) && ck.positions.get(&p).is_none_or(|next| o >= *next)
        };
        let before = batch.rejects.len();
        batch.rejects.retain(|r| keep(r.partition, r.offset));
        let mut skipped = (before - batch.rejects.len()) as u64;
        let events = &batch.events;
        if events.num_rows() > 0 {
            let parts = events
                .column_by_name(model::schema::col::KAFKA_PARTITION)
                .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int32Type>())
                .context("internal: batch without kafka_partition")?;
            let offs = events
                .column_by_name(model::schema::col::KAFKA_OFFSET)
                .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int64Type>())
                .context("internal: batch without kafka_offset")?;
            let mask: arrow_array::BooleanArray = parts
                .values()
                .iter()
                .zip(offs.values().iter())
                .map(|(p, o)| Some(keep(*p, *o)))
                .collect();
            let dropped = mask.false_count();
            if dropped > 0 {
                skipped += dropped as u64;
                batch.events = datafusion::arrow::compute::filter_record_batch(events, &mask)
                    .context("internal: filtering a batch")?;
            }
        }
        if skipped > 0 {
            if let Some(m) = &self.observers.pipeline {
                m.checkpoint_replay_skipped.inc_by(skipped);
            }
            tracing::debug!(skipped, "messages already covered by the restored state");
        }
        Ok(())
    }

    /// One batch, on its own: [`Run::prepare`], then [`Run::complete`] without a next one.
    async fn handle_batch(&mut self, batch: IngestBatch) -> anyhow::Result<()> {
        let p = self.prepare(batch).await?;
        self.complete(p, None).await.map(|_| ())
    }

    /// What comes before a batch's enrichment: the trace, dropping what a checkpoint covers,
    /// its dead letters (durable before anything else of it). Returns when it arrived.
    async fn receive(&mut self, batch: &mut IngestBatch) -> anyhow::Result<Instant> {
        if tracing::enabled!(tracing::Level::TRACE) {
            let mut span: BTreeMap<i32, (i64, i64, usize)> = BTreeMap::new();
            if let (Some(parts), Some(offs)) = (
                batch
                    .events
                    .column_by_name(model::schema::col::KAFKA_PARTITION)
                    .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int32Type>()),
                batch
                    .events
                    .column_by_name(model::schema::col::KAFKA_OFFSET)
                    .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int64Type>()),
            ) {
                for (p, o) in parts.values().iter().zip(offs.values().iter()) {
                    let e = span.entry(*p).or_insert((*o, *o, 0));
                    e.0 = e.0.min(*o);
                    e.1 = e.1.max(*o);
                    e.2 += 1;
                }
            }
            tracing::trace!(seq = batch.seq, offsets = ?batch.offsets, rows = ?span, "batch arrives");
        }
        self.admit(batch)?;
        let started = Instant::now();
        if let Err(e) = self.dead_letters.publish(&batch.rejects).await {
            // Not acknowledged: its offsets stay uncommitted and the batch is read again.
            error!(error = %e, "stopping: a batch could not be made durable");
            return Err(anyhow::Error::new(e));
        }
        let arrived = Instant::now();
        self.report.stages.dead_letters += arrived - started;
        if batch.events.num_rows() > 0 {
            self.report.timing.first_events.get_or_insert(arrived);
        }
        Ok(arrived)
    }

    /// A batch through [`Run::receive`] and enrichment.
    async fn prepare(&mut self, mut batch: IngestBatch) -> anyhow::Result<Prepared> {
        let arrived = self.receive(&mut batch).await?;
        self.job
            .enrichment
            .assignment(&batch.assigned, &batch.ended, &batch.at_end, arrived);
        let watermark_before = self.job.enrichment.watermark();
        match self.job.enrich(&batch.events, Instant::now()) {
            Ok((enriched, took)) => Ok(Prepared {
                batch,
                arrived,
                watermark_before,
                enriched,
                enrich_time: took,
                heartbeat: false,
            }),
            Err(e) => {
                // A wiring bug (the batch lacks a column): stop without acknowledging.
                error!(error = %format!("{e:#}"), "stopping: processing failed");
                Err(e)
            }
        }
    }

    /// Whether the next queued batch may go through enrichment beside the window engine of
    /// the current one, and if so that batch. Not when overlapping is off
    /// (`windows.overlap_enrichment`), nor when the tick is due or a rebalance waits: both
    /// need enrichment and the engine at the same batch (a checkpoint is the state of both at
    /// one offset), so the chain of overlapped batches ends there and the tick or rebalance
    /// runs with nothing enriched ahead.
    fn look_ahead(
        &self,
        batches: &mut tokio::sync::mpsc::Receiver<IngestBatch>,
        rebalances: &tokio::sync::mpsc::Receiver<source::Rebalanced>,
        tick: &mut tokio::time::Interval,
        tick_due: &mut bool,
    ) -> Option<IngestBatch> {
        use futures::FutureExt;
        if !self.config.windows.overlap_enrichment || *tick_due {
            return None;
        }
        // `Interval::tick` is cancellation safe: polled once here, a tick that is ready is
        // taken (and run by the loop once this batch is done); one that is not stays.
        if tick.tick().now_or_never().is_some() {
            *tick_due = true;
            return None;
        }
        if !rebalances.is_empty() {
            return None;
        }
        batches.try_recv().ok()
    }

    /// The rest of a prepared batch: the window engine, its outputs, observers; then its
    /// acknowledgement (without checkpoints) or its place in the next checkpoint. With `next`,
    /// the engine runs on a thread of its own while this one receives and enriches `next`,
    /// which is returned prepared, to be completed next (in order: nothing of `next` is
    /// published before this batch's records). An error stops the run.
    async fn complete(
        &mut self,
        p: Prepared,
        next: Option<IngestBatch>,
    ) -> anyhow::Result<Option<Prepared>> {
        let config = self.config;
        let Prepared {
            batch,
            arrived,
            watermark_before,
            enriched,
            enrich_time,
            heartbeat,
        } = p;
        let (step, ahead) = match next {
            None => (
                self.job
                    .aggregate(enriched, Instant::now(), chrono::Utc::now())
                    .await,
                None,
            ),
            Some(mut next) => {
                let next_arrived = self.receive(&mut next).await?;
                let runtime = tokio::runtime::Handle::current();
                let mut next_watermark_before = None;
                let (step, next_enriched) = self.job.aggregate_beside(
                    enriched,
                    Instant::now(),
                    chrono::Utc::now(),
                    (&next.events, Instant::now()),
                    |e| {
                        e.assignment(&next.assigned, &next.ended, &next.at_end, next_arrived);
                        next_watermark_before = e.watermark();
                    },
                    &runtime,
                );
                self.report.overlapped_batches += 1;
                (
                    step,
                    Some((next, next_arrived, next_watermark_before, next_enriched)),
                )
            }
        };
        let mut step = match step {
            Ok(s) => s,
            Err(e) => {
                // A wiring bug (a query failed): stop without acknowledging.
                error!(error = %format!("{e:#}"), "stopping: processing failed");
                return Err(e);
            }
        };
        step.times.enrichment = enrich_time;
        let stages = &mut self.report.stages;
        stages.enrichment += step.times.enrichment;
        stages.windows_ingest += step.times.windows_ingest;
        stages.windows_emit += step.times.windows_emit;
        // The batch before: its outputs delivered (at most one batch in flight).
        self.settle().await?;
        let processed = Instant::now();
        let enqueued = match messages(config, &step, watermark_before) {
            Ok(m) => self.outputs.enqueue(&m).await,
            Err(e) => Err(e),
        };
        let deliveries = match enqueued {
            Ok(d) => d,
            Err(e) => {
                error!(error = %format!("{e:#}"), "stopping: outputs could not be delivered");
                return Err(e);
            }
        };
        let delivered = tokio::spawn(async move {
            let r = deliveries.delivered().await;
            (r, Instant::now())
        });
        let handed_over = Instant::now();
        let enqueue_time = handed_over - processed;
        self.report.stages.outputs += enqueue_time;
        if let Some(p) = self.parquet.as_mut() {
            p.push(&step.records);
            if p.due()
                && let Err(e) = p.flush().await
            {
                error!(error = %format!("{e:#}"), "stopping: Parquet output failed");
                return Err(e);
            }
        }
        let observing = Instant::now();
        self.report.stages.parquet += observing - handed_over;
        let observers = &self.observers;
        let job = &self.job;
        let linked = &step.enriched.linked;
        std::thread::scope(|scope| {
            // The live table `voices` (an author-day entry per inbound message, the largest
            // observer) on a thread of its own beside the metrics and the other tables: the
            // pipeline task waits for the longer of the two, not for both.
            let beside = (linked.len() >= OBSERVE_BESIDE_MIN)
                .then(|| scope.spawn(|| observers.tables.voices(voices(job, linked))));
            if beside.is_none() {
                observers.tables.voices(voices(job, linked));
            }
            if let Some(m) = &observers.pipeline {
                observe(
                    m,
                    job,
                    &step,
                    self.parquet.as_ref(),
                    arrived,
                    &mut self.last_backlog,
                );
            }
            if heartbeat {
                observers.health.watermark(step.enriched.watermark);
            } else {
                observers
                    .health
                    .batch(batch.assigned.len(), step.enriched.watermark);
            }
            observers.live.observe(
                &step.enriched.batch,
                batch.messages,
                batch.rejects.len() as u64,
            );
            observers.live.observe_linked(linked, self.horizon_micros);
            observers.live.set_watermark(step.enriched.watermark);
            feed_tables(
                &observers.tables,
                job,
                &batch,
                &step,
                watermark_before,
                &mut self.last_open_refresh,
                config.sql.refresh_interval,
            );
            if let Some(h) = beside
                && let Err(panic) = h.join()
            {
                // A panic in a live table is a bug, as it would be on this thread.
                std::panic::resume_unwind(panic);
            }
            if let Some(m) = &observers.pipeline {
                m.observe_live_tables(observers.tables.counters());
            }
        });
        let observed = observing.elapsed();
        let report = &mut self.report;
        report.stages.observers += observed;
        let closing = step
            .records
            .iter()
            .any(|r| r.closed && r.revision == 1)
            .then(|| ClosingBatch {
                seq: batch.seq,
                rows: batch.events.num_rows(),
                records: step.records.len(),
                watermark_moved_seconds: step
                    .enriched
                    .watermark
                    .zip(watermark_before)
                    .map(|(a, b)| (a - b) / 1_000_000),
                times: step.times,
                enqueue: enqueue_time,
                observers: observed,
            });
        let mut flight = InFlight {
            delivered,
            arrived,
            done: Instant::now(),
            events: batch.events.num_rows() > 0,
            closing,
            ack: None,
        };
        if heartbeat {
            // Not the source's: no offset moved, nothing to acknowledge.
            report.heartbeats += 1;
            report.window_records += step.records.len() as u64;
            report.final_records += step.records.iter().filter(|r| r.is_final).count() as u64;
            if !step.records.is_empty()
                && let Some(ck) = self.ck.as_mut()
            {
                // The state moved at the same offsets: the next checkpoint keeps it, so that
                // a restart does not emit these records again.
                ck.dirty.extend(ck.positions.keys().copied());
            }
            self.hand_over(flight).await?;
            return Ok(None);
        }
        report.batches += 1;
        report.events += batch.events.num_rows() as u64;
        report.dead_letters += batch.rejects.len() as u64;
        report.late_events += step.enriched.late.len() as u64;
        report.forwarded += step.enriched.forwards.len() as u64;
        report.window_records += step.records.len() as u64;
        report.final_records += step.records.iter().filter(|r| r.is_final).count() as u64;
        match self.ck.as_mut() {
            Some(ck) => {
                for o in &batch.offsets {
                    if ck.owned.contains(&o.partition) {
                        let next = ck.positions.entry(o.partition).or_insert(o.next_offset);
                        if o.next_offset >= *next {
                            *next = o.next_offset;
                            ck.dirty.insert(o.partition);
                        }
                    }
                }
                ck.last_seq = Some(batch.seq);
            }
            // Acknowledged once its outputs are delivered ([`Run::settle`]).
            None => flight.ack = Some(batch),
        }
        self.hand_over(flight).await?;
        match ahead {
            None => Ok(None),
            Some((batch, arrived, watermark_before, Ok((enriched, took)))) => Ok(Some(Prepared {
                batch,
                arrived,
                watermark_before,
                enriched,
                enrich_time: took,
                heartbeat: false,
            })),
            Some((_, _, _, Err(e))) => {
                error!(error = %format!("{e:#}"), "stopping: processing failed");
                Err(e)
            }
        }
    }

    /// The periodic work: open conversations, Parquet, checkpoints. An error stops the run.
    async fn tick(&mut self) -> anyhow::Result<()> {
        // The last batch's outputs: on a quiet input nothing else would settle them (without
        // checkpoints, its acknowledgement waits for this).
        self.settle().await?;
        // Also when idle: answers and expiries since the last batch show up.
        refresh_open(
            &self.observers.tables,
            &self.job,
            self.job.enrichment.watermark(),
            &mut self.last_open_refresh,
            self.config.sql.refresh_interval,
        );
        if self
            .ck
            .as_ref()
            .is_some_and(|ck| ck.last.elapsed() >= ck.interval)
        {
            match self.checkpoint("interval").await {
                Ok(_) => {}
                Err(CheckpointFailure::Store(e)) => {
                    // Nothing committed; the next round tries again (replay grows meanwhile).
                    error!(error = %format!("{e:#}"), "checkpoint failed; retrying at the next interval");
                }
                Err(e @ CheckpointFailure::Parquet(_)) => {
                    error!(error = %e, "stopping: Parquet output failed");
                    return Err(e.into());
                }
                Err(e @ CheckpointFailure::Outputs(_)) => return Err(e.into()),
            }
        }
        if let Some(p) = self.parquet.as_mut()
            && p.due()
            && let Err(e) = p.flush().await
        {
            error!(error = %format!("{e:#}"), "stopping: Parquet output failed");
            return Err(e);
        }
        Ok(())
    }

    /// No batch came, but time moved the watermark: a partition's `linkage.idle_timeout` or
    /// `empty_partition_timeout` ran out while the input was quiet (e.g. a cold start beside
    /// an empty partition, all of its input read in the first batches). An empty batch through
    /// enrichment and the window engine closes the windows the watermark passed now, instead
    /// of when the next message arrives, which on a quiet topic may be never.
    async fn heartbeat(&mut self) -> anyhow::Result<()> {
        let batch = IngestBatch {
            seq: self
                .ck
                .as_ref()
                .and_then(|c| c.last_seq)
                .unwrap_or_default(),
            events: arrow_array::RecordBatch::new_empty(model::event_schema()),
            rejects: Vec::new(),
            offsets: Vec::new(),
            messages: 0,
            bytes: 0,
            assigned: Vec::new(),
            ended: Vec::new(),
            at_end: Vec::new(),
        };
        let mut p = self.prepare(batch).await?;
        p.heartbeat = true;
        tracing::debug!(
            watermark_before = ?p.watermark_before,
            watermark = ?p.enriched.watermark,
            "time moved the watermark with no batch (idle or empty partition timeout)"
        );
        self.complete(p, None).await.map(|_| ())
    }

    /// Writes the checkpoint of every partition whose position moved, after flushing Parquet,
    /// then hands the covered offsets to the source to commit. Returns them.
    async fn checkpoint(&mut self, why: &str) -> Result<Vec<PartitionOffset>, CheckpointFailure> {
        let started = Instant::now();
        let result = self.checkpoint_untimed(why).await;
        self.report.stages.checkpoints += started.elapsed();
        result
    }

    async fn checkpoint_untimed(
        &mut self,
        why: &str,
    ) -> Result<Vec<PartitionOffset>, CheckpointFailure> {
        if self.ck.is_none() {
            return Ok(Vec::new());
        }
        // A checkpoint acknowledges every batch before it: their outputs must be delivered.
        self.settle().await.map_err(CheckpointFailure::Outputs)?;
        let Some(ck) = self.ck.as_mut() else {
            return Ok(Vec::new());
        };
        ck.last = Instant::now();
        let started = Instant::now();
        if !ck.dirty.is_empty()
            && let Some(p) = self.parquet.as_mut()
        {
            // Records emitted before the checkpoint are not emitted again after a restore:
            // they must be durable first.
            p.flush().await.map_err(CheckpointFailure::Parquet)?;
        }
        let mut written = Vec::new();
        let mut bytes_total = 0usize;
        let mut deltas = 0usize;
        let metrics = self.observers.pipeline.clone();
        let due: Vec<(i32, i64)> = ck
            .dirty
            .iter()
            .filter_map(|p| ck.positions.get(p).map(|next| (*p, *next)))
            .collect();
        let (done, result) = ck
            .store
            .checkpoint_partitions(&mut self.job, &due, Instant::now())
            .await;
        for (p, next, w) in done {
            bytes_total += w.bytes;
            deltas += usize::from(w.delta);
            if let Some(m) = &metrics {
                m.checkpoint_files
                    .get_or_create(&crate::metrics::KindLabels {
                        kind: if w.delta { "incremental" } else { "full" }.into(),
                    })
                    .inc();
            }
            ck.dirty.remove(&p);
            written.push(PartitionOffset {
                partition: p,
                next_offset: next,
            });
        }
        if let Some(m) = &metrics {
            let ok = result.is_ok();
            m.checkpoints
                .get_or_create(&crate::metrics::ResultLabels {
                    result: if ok { "ok" } else { "error" }.into(),
                })
                .inc();
            m.checkpoint_seconds
                .observe(started.elapsed().as_secs_f64());
            m.checkpoint_bytes
                .set(i64::try_from(bytes_total).unwrap_or(i64::MAX));
            if ok {
                #[allow(clippy::cast_precision_loss)] // ms since the epoch, far below 2^52
                m.checkpoint_last_success
                    .set(chrono::Utc::now().timestamp_millis() as f64 / 1e3);
            }
        }
        // What was written is durable even if a later partition failed: commit it.
        if let Some(seq) = ck.last_seq {
            if result.is_ok() {
                self.acker.ack_through(seq, written.clone());
            } else {
                // Not every batch is covered: only offsets, no batch count.
                self.acker.commit_offsets(written.clone());
            }
        }
        result.map_err(CheckpointFailure::Store)?;
        if !written.is_empty() {
            info!(
                why,
                partitions = ?written.iter().map(|o| o.partition).collect::<Vec<_>>(),
                incremental = deltas,
                bytes = bytes_total,
                seconds = started.elapsed().as_secs_f64(),
                "checkpoint written"
            );
        }
        Ok(written)
    }

    /// A rebalance: checkpoint and forget before partitions go; restore before they are read.
    async fn rebalance(&mut self, r: source::Rebalanced) -> anyhow::Result<()> {
        match r {
            source::Rebalanced::Revoking { partitions, reply } => {
                // Not answered when outputs failed: the run stops, nothing more is committed.
                self.settle().await?;
                let covered = match self.checkpoint("rebalance").await {
                    Ok(_) => self.ck.as_ref().map_or_else(Vec::new, |ck| {
                        partitions
                            .iter()
                            .filter_map(|p| {
                                ck.positions.get(p).map(|o| PartitionOffset {
                                    partition: *p,
                                    next_offset: *o,
                                })
                            })
                            .collect()
                    }),
                    Err(e) => {
                        // The next owner restores the previous checkpoint and reads more.
                        error!(error = %e, "checkpoint before giving up partitions failed");
                        Vec::new()
                    }
                };
                // The source may have timed out and gone on: nothing to answer then.
                let _ = reply.send(covered);
                // Eager rebalancing gives up the whole assignment: what comes back is restored
                // from the checkpoints just written.
                self.job.reset();
                if let Some(ck) = self.ck.as_mut() {
                    ck.store.forget_chains();
                    ck.owned.clear();
                    ck.positions.clear();
                    ck.dirty.clear();
                }
                Ok(())
            }
            source::Rebalanced::Assigned { partitions, reply } => {
                let starts = self.restore(&partitions).await?;
                // The restored checkpoints are durable: their offsets are committed (the
                // previous owner's commit may have failed in the rebalance, and a partition
                // with no new message would otherwise never commit again).
                self.acker.commit_offsets(starts.clone());
                let _ = reply.send(starts);
                Ok(())
            }
        }
    }

    /// Rebuilds the state of `partitions` from their newest good checkpoints. Returns the
    /// offset each restored partition starts from.
    async fn restore(&mut self, partitions: &[i32]) -> anyhow::Result<Vec<PartitionOffset>> {
        let Some(ck) = self.ck.as_mut() else {
            return Ok(Vec::new());
        };
        let now = Instant::now();
        self.job.reset_to(partitions, now);
        ck.store.forget_chains();
        ck.owned = partitions.iter().copied().collect();
        ck.positions.clear();
        ck.dirty.clear();
        let metrics = self.observers.pipeline.clone();
        let mut starts = Vec::new();
        for &p in partitions {
            let found = ck
                .store
                .latest(p)
                .await
                .with_context(|| format!("restoring partition {p} (checkpoint.location)"))?;
            for r in &found.rejected {
                error!(
                    partition = p,
                    path = %r.path,
                    reason = %r.reason,
                    "corrupt checkpoint set aside (moved to quarantine/); falling back to the previous one"
                );
                if let Some(m) = &metrics {
                    m.checkpoint_corrupt.inc();
                }
            }
            let outcome = match found.snapshot {
                Some((s, path)) => {
                    info!(
                        partition = p,
                        offset = s.next_offset,
                        windows = s.windows(),
                        path = %path,
                        files = found.files,
                        "partition restored from its checkpoint"
                    );
                    ck.positions.insert(p, s.next_offset);
                    starts.push(PartitionOffset {
                        partition: p,
                        next_offset: s.next_offset,
                    });
                    checkpoint::restore(&mut self.job, s, now);
                    "restored"
                }
                None if found.rejected.is_empty() => {
                    info!(
                        partition = p,
                        "no checkpoint: the partition starts with empty state at its committed offset"
                    );
                    self.job.start_unjudged();
                    "empty"
                }
                None => {
                    // Every checkpoint of the partition was set aside. Its committed offset
                    // was covered by one of them, so starting there with empty state would
                    // silently drop the events before it from every open window. The only
                    // good state left is the one before the first event: read the partition
                    // again from its first retained record (offset 0 is taken as "beginning"
                    // by the source). Window records are upserts, so the replay re-emits
                    // the same final figures as far as the broker still retains the input.
                    error!(
                        partition = p,
                        "no usable checkpoint: the partition is read again from its beginning with empty state"
                    );
                    starts.push(PartitionOffset {
                        partition: p,
                        next_offset: 0,
                    });
                    self.job.start_unjudged();
                    "replayed"
                }
            };
            if let Some(m) = &metrics {
                m.checkpoint_restores
                    .get_or_create(&crate::metrics::ResultLabels {
                        result: outcome.into(),
                    })
                    .inc();
            }
        }
        Ok(starts)
    }

    /// End of a bounded run: every window final, published, and kept for the observers.
    async fn finish(&mut self) -> anyhow::Result<()> {
        let records = finish_bounded(self.config, &mut self.job, &self.outputs).await?;
        let observers = &self.observers;
        // Events still in the reorder buffer (e.g. when a quiet partition held the watermark
        // to the end) are linked now: the live figures include them.
        observers
            .live
            .observe_linked(&self.job.finished_links, self.horizon_micros);
        observers.tables.windows(&records);
        observers
            .tables
            .voices(voices(&self.job, &self.job.finished_links));
        let (open, total) = self
            .job
            .enrichment
            .open_inbound(self.config.sql.open_conversations_max);
        observers
            .tables
            .set_open(open, total, self.job.enrichment.watermark());
        self.report.window_records += records.len() as u64;
        self.report.final_records += records.iter().filter(|r| r.is_final).count() as u64;
        if let Some(p) = self.parquet.as_mut() {
            p.push(&records);
        }
        Ok(())
    }
}

/// Brings the pipeline metrics up to date after a batch.
fn observe(
    m: &PipelineMetrics,
    job: &Job,
    step: &Step,
    parquet: Option<&ParquetSink>,
    arrived: Instant,
    last_backlog: &mut Option<Instant>,
) {
    m.observe_facts(&step.enriched.facts);
    m.observe_records(
        &step.records,
        job.engine.longest_window_seconds(),
        job.engine.backlog_window_seconds(),
    );
    m.late_events.inc_by(step.enriched.late.len() as u64);
    for f in &step.enriched.forwards {
        m.forwarded
            .get_or_create(&crate::metrics::DepartmentLabels {
                department: f.department.clone(),
            })
            .inc();
    }
    m.batch_seconds.observe(arrived.elapsed().as_secs_f64());
    // The emit delay (a window's first emission at close) is observed once the batch's
    // outputs are delivered: `Run::settle`.
    let (links, entries) = job.enrichment.link_stats();
    m.observe_state(
        &links,
        entries,
        &job.engine.stats(),
        &job.enrichment.stats(),
        job.enrichment.buffered(),
        parquet.map_or(0, ParquetSink::files_written),
        step.enriched.watermark,
        job.enrichment.partitions_waiting(Instant::now()),
    );
    // The backlog walks every open window: at most once a second.
    if last_backlog.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
        *last_backlog = Some(Instant::now());
        m.set_backlog(&job.engine.backlog(job.engine.backlog_spec()));
    }
}

/// Moves event time past every window and publishes the final records.
async fn finish_bounded(
    config: &Config,
    job: &mut Job,
    outputs: &OutputProducer,
) -> anyhow::Result<Vec<WindowRecord>> {
    let (records, forwards) = job.finish(chrono::Utc::now()).await?;
    let mut messages = forward_messages(&forwards)?;
    if !config.outputs.windows_topic.is_empty() {
        messages.extend(record_messages(config, &records)?);
    }
    outputs.send_all(&messages).await?;
    info!(
        records = records.len(),
        "bounded run: every window emitted as final"
    );
    Ok(records)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

impl StageTimes {
    /// Seconds per stage, as JSON.
    pub fn json(&self) -> serde_json::Value {
        let s = |d: Duration| d.as_secs_f64();
        serde_json::json!({
            "dead_letters": s(self.dead_letters),
            "enrichment": s(self.enrichment),
            "windows_ingest": s(self.windows_ingest),
            "windows_emit": s(self.windows_emit),
            "outputs": s(self.outputs),
            "parquet": s(self.parquet),
            "observers": s(self.observers),
            "checkpoints": s(self.checkpoints),
            "waiting_for_input": s(self.waiting),
            "source_blocked_on_full_queue": s(self.source_blocked),
        })
    }
}

impl RunReport {
    /// The run's performance figures as JSON, for the line `cluetrain run` prints at exit (the
    /// end-to-end bench reads them): events per second from the first batch with events, the
    /// emit delay's quantiles, and this process's CPU time and peak memory.
    pub fn performance_json(&self) -> serde_json::Value {
        let mut delays: Vec<f64> = self
            .emit_delay_micros
            .iter()
            .map(|&us| {
                #[allow(clippy::cast_precision_loss)] // µs of one batch, far below 2^52
                let s = us as f64 / 1e6;
                s
            })
            .collect();
        delays.sort_by(f64::total_cmp);
        let q = |p: f64| aggregate::quantile_linear(&delays, p);
        let t = &self.timing;
        let secs = |end: Option<Instant>| {
            t.first_events
                .zip(end)
                .map(|(a, b)| b.saturating_duration_since(a).as_secs_f64())
        };
        #[allow(clippy::cast_precision_loss)] // event counts, far below 2^52
        let rate = |s: Option<f64>| s.filter(|s| *s > 0.0).map(|s| self.events as f64 / s);
        let total = secs(t.finished);
        // Busy: from the first batch to the last one with events, plus the end of the run
        // (final checkpoint, final records, Parquet), without the wait in between for the
        // partitions' ends to settle (a bounded run's fixed second, `ingest::source`).
        let end_work = t
            .input_ended
            .zip(t.finished)
            .map(|(a, b)| b.saturating_duration_since(a).as_secs_f64());
        let busy = secs(t.last_events_done).map(|s| s + end_work.unwrap_or(0.0));
        serde_json::json!({
            "events_per_second": rate(busy),
            "events_per_second_wall": rate(total),
            "busy_seconds": busy,
            "end_seconds": end_work,
            "wall_seconds": total,
            "emit_delay_seconds": {
                "batches": delays.len(),
                "p50": q(0.5),
                "p99": q(0.99),
                "max": delays.last(),
            },
            "linkage_entries": self.linkage_entries,
            "batches": self.batches,
            "overlapped_batches": self.overlapped_batches,
            "heartbeats": self.heartbeats,
            "stage_seconds": self.stages.json(),
            "process": crate::resources::current(),
        })
    }
}
