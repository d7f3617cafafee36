//! The pipeline: wires ingest → (enrich → aggregate → outputs, as they land) and drives
//! acknowledgements.
//!
//! Each micro-batch is handled in order. A batch is acknowledged (its offsets become
//! committable) only after everything derived from it is durable: today its dead letters are
//! delivered; each output added later joins that list before the ack.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use ingest::source::{self, RunMode, SourceSummary};
use ingest::{DeadLetterSink, IngestMetrics};
use model::config::Config;
use tracing::{error, info};

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
    /// What the source reports (committed offsets per partition).
    pub source: SourceSummary,
}

/// Shared handles a run reports into (metrics registry contents, live summary).
#[derive(Debug, Default, Clone)]
pub struct Observers {
    /// Ingest counters.
    pub ingest: Arc<IngestMetrics>,
    /// Live figures for the terminal summary.
    pub live: Arc<LiveStats>,
}

/// Runs the pipeline until `shutdown` resolves (continuous mode) or the input ends
/// (bounded mode). Returns after the final commit.
pub async fn run(
    config: &Config,
    mode: RunMode,
    observers: Observers,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<RunReport> {
    let dead_letters =
        DeadLetterSink::new(&config.kafka).context("creating the dead-letter producer")?;
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
        "pipeline started"
    );
    let mut enrichment = crate::enrichment::Enrichment::new(config);
    let horizon_micros =
        i64::try_from(config.linkage.response_horizon.as_micros()).unwrap_or(i64::MAX);
    let mut report = RunReport::default();
    let mut failure = None;
    tokio::pin!(shutdown);
    let mut stopping = false;
    loop {
        let batch = tokio::select! {
            b = batches.recv() => b,
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
        let enriched = match enrichment.process(&batch.events) {
            Ok(e) => e,
            Err(e) => {
                // A wiring bug (the batch lacks a column): stop without acknowledging.
                error!(error = %e, "stopping: enrichment failed");
                handle.stop();
                failure = Some(anyhow::Error::new(e));
                break;
            }
        };
        observers
            .live
            .observe(&enriched.batch, batch.messages, batch.rejects.len() as u64);
        observers
            .live
            .observe_linked(&enriched.linked, horizon_micros);
        observers.live.set_watermark(enriched.watermark);
        report.batches += 1;
        report.events += batch.events.num_rows() as u64;
        report.dead_letters += batch.rejects.len() as u64;
        acker.ack(&batch);
    }
    drop(acker);
    // Unblock the source if it waits on a full queue, then let it commit and close.
    drop(batches);
    report.source = tokio::task::spawn_blocking(move || handle.join())
        .await
        .context("joining the ingest thread")?
        .context("ingest")?;
    info!(
        batches = report.batches,
        events = report.events,
        dead_letters = report.dead_letters,
        committed = ?report.source.committed,
        "pipeline stopped"
    );
    let (links, entries) = enrichment.link_stats();
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
