//! The pipeline: wires ingest → (enrich → aggregate → outputs, as they land) and drives
//! acknowledgements.
//!
//! Each micro-batch is handled in order: dead letters, then the [`Job`] (enrichment and window
//! aggregation), then its outputs. A batch is acknowledged (its offsets become committable) only
//! after its dead letters, late events, forwarded complaints and the window records it caused
//! are delivered to Kafka. Window state itself lives in memory until checkpoints land, so a
//! crash replays from the last commit (at-least-once; records are upserts by key and revision).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use ingest::source::{self, RunMode, SourceSummary};
use ingest::{DeadLetterSink, IngestBatch, IngestMetrics};
use model::WindowRecord;
use model::config::Config;
use tracing::{error, info};

use crate::admin::Health;
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

/// Feeds the live SQL tables with what one batch did; `open_conversations` is refreshed at
/// most every `sql.refresh_interval` (it walks all linkage state).
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
    tables.voices(voices(job, &step.enriched.linked));
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
    let mut job = Job::new(config).map_err(|e| {
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
    let mut parquet = if config.outputs.parquet_location.is_empty() {
        None
    } else {
        Some(ParquetSink::new(
            &config.outputs.parquet_location,
            config.outputs.parquet_flush_interval,
            config.outputs.parquet_rows_max,
        )?)
    };
    let (handle, mut batches) = source::start(
        &config.kafka,
        &config.ingest,
        mode,
        observers.ingest.clone(),
    )
    .context("starting the Kafka consumer")?;
    let acker = handle.acker();
    info!(
        topic = %config.kafka.input_topic,
        group = %config.kafka.group_id,
        brokers = %config.kafka.bootstrap_servers,
        bounded = mode == RunMode::UntilEnd,
        windows_topic = %config.outputs.windows_topic,
        parquet = %config.outputs.parquet_location,
        "pipeline started"
    );
    let horizon_micros =
        i64::try_from(config.linkage.response_horizon.as_micros()).unwrap_or(i64::MAX);
    let mut report = RunReport::default();
    let mut failure = None;
    // In a bounded run the last batch is acknowledged only after the final window records are
    // delivered, so that the source's closing commit never runs ahead of them.
    let mut deferred: Option<IngestBatch> = None;
    let mut last_backlog: Option<Instant> = None;
    let mut last_open_refresh: Option<Instant> = None;
    tokio::pin!(shutdown);
    let mut stopping = false;
    // Parquet is flushed on its interval even when no batch arrives.
    let mut tick = tokio::time::interval(
        config
            .outputs
            .parquet_flush_interval
            .min(config.sql.refresh_interval)
            .clamp(
                std::time::Duration::from_millis(100),
                std::time::Duration::from_secs(60),
            ),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let batch = tokio::select! {
            b = batches.recv() => b,
            _ = tick.tick() => {
                // Also when idle: answers and expiries since the last batch show up.
                refresh_open(
                    &observers.tables,
                    &job,
                    job.enrichment.watermark(),
                    &mut last_open_refresh,
                    config.sql.refresh_interval,
                );
                if let Some(p) = parquet.as_mut()
                    && p.due()
                    && let Err(e) = p.flush().await
                {
                    error!(error = %format!("{e:#}"), "stopping: Parquet output failed");
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
        if let Err(e) = dead_letters.publish(&batch.rejects).await {
            // Not acknowledged: its offsets stay uncommitted and the batch is read again.
            error!(error = %e, "stopping: a batch could not be made durable");
            failure = Some(anyhow::Error::new(e));
            handle.stop();
            break;
        }
        let arrived = Instant::now();
        job.enrichment
            .assignment(&batch.assigned, &batch.ended, arrived);
        let watermark_before = job.enrichment.watermark();
        let step = match job
            .process(&batch.events, Instant::now(), chrono::Utc::now())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                // A wiring bug (the batch lacks a column, a query failed): stop without
                // acknowledging.
                error!(error = %format!("{e:#}"), "stopping: processing failed");
                handle.stop();
                failure = Some(e);
                break;
            }
        };
        let sent = match messages(config, &step, watermark_before) {
            Ok(m) => outputs.send_all(&m).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            error!(error = %format!("{e:#}"), "stopping: outputs could not be delivered");
            handle.stop();
            failure = Some(e);
            break;
        }
        if let Some(p) = parquet.as_mut() {
            p.push(&step.records);
            if p.due()
                && let Err(e) = p.flush().await
            {
                error!(error = %format!("{e:#}"), "stopping: Parquet output failed");
                handle.stop();
                failure = Some(e);
                break;
            }
        }
        if let Some(m) = &observers.pipeline {
            observe(m, &job, &step, parquet.as_ref(), arrived, &mut last_backlog);
        }
        observers
            .health
            .batch(batch.assigned.len(), step.enriched.watermark);
        observers.live.observe(
            &step.enriched.batch,
            batch.messages,
            batch.rejects.len() as u64,
        );
        observers
            .live
            .observe_linked(&step.enriched.linked, horizon_micros);
        observers.live.set_watermark(step.enriched.watermark);
        feed_tables(
            &observers.tables,
            &job,
            &batch,
            &step,
            watermark_before,
            &mut last_open_refresh,
            config.sql.refresh_interval,
        );
        if let Some(m) = &observers.pipeline {
            m.observe_live_tables(observers.tables.counters());
        }
        report.batches += 1;
        report.events += batch.events.num_rows() as u64;
        report.dead_letters += batch.rejects.len() as u64;
        report.late_events += step.enriched.late.len() as u64;
        report.forwarded += step.enriched.forwards.len() as u64;
        report.window_records += step.records.len() as u64;
        report.final_records += step.records.iter().filter(|r| r.is_final).count() as u64;
        if mode == RunMode::UntilEnd {
            if let Some(prev) = deferred.replace(batch) {
                acker.ack(&prev);
            }
        } else {
            acker.ack(&batch);
        }
    }
    if failure.is_none() && mode == RunMode::UntilEnd && !stopping {
        match finish_bounded(config, &mut job, &outputs).await {
            Ok(records) => {
                // Events still in the reorder buffer (e.g. when a quiet partition held the
                // watermark to the end) are linked now: the live figures include them.
                observers
                    .live
                    .observe_linked(&job.finished_links, horizon_micros);
                observers.tables.windows(&records);
                observers.tables.voices(voices(&job, &job.finished_links));
                let (open, total) = job
                    .enrichment
                    .open_inbound(config.sql.open_conversations_max);
                observers
                    .tables
                    .set_open(open, total, job.enrichment.watermark());
                report.window_records += records.len() as u64;
                report.final_records += records.iter().filter(|r| r.is_final).count() as u64;
                if let Some(p) = parquet.as_mut() {
                    p.push(&records);
                }
            }
            Err(e) => {
                error!(error = %format!("{e:#}"), "the final window records could not be delivered");
                deferred = None;
                failure = Some(e);
            }
        }
    }
    if let Some(p) = parquet.as_mut() {
        if let Err(e) = p.flush().await {
            error!(error = %format!("{e:#}"), "Parquet output failed at shutdown");
            deferred = None;
            failure.get_or_insert(e);
        }
        report.parquet_files = p.files_written();
    }
    if let Some(last) = deferred.take() {
        acker.ack(&last);
    }
    drop(acker);
    // Unblock the source if it waits on a full queue, then let it commit and close.
    drop(batches);
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
    let en = job.enrichment.stats();
    info!(
        late = en.late,
        answers_after_horizon = en.answers_after_horizon,
        forwarded = en.forwarded,
        forward_dropped = en.forward_dropped,
        reorder_forced = en.reorder_forced,
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
    let elapsed = arrived.elapsed().as_secs_f64();
    m.batch_seconds.observe(elapsed);
    // A window's first emission at close: the watermark passed its end in this batch.
    if step.records.iter().any(|r| r.closed && r.revision == 1) {
        m.emit_delay.observe(elapsed);
    }
    let (links, entries) = job.enrichment.link_stats();
    m.observe_state(
        &links,
        entries,
        &job.engine.stats(),
        &job.enrichment.stats(),
        job.enrichment.buffered(),
        parquet.map_or(0, ParquetSink::files_written),
        step.enriched.watermark,
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
