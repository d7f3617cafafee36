//! The job: enrichment and the window engine, one micro-batch at a time, without Kafka.
//!
//! [`crate::pipeline`] feeds it batches from the consumer and publishes what it returns; the
//! golden tests feed it batches from files. Both therefore run exactly the same code.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aggregate::{EngineConfig, GroupBy, WindowEngine, WindowSpec};
use anyhow::Context;
use arrow_array::RecordBatch;
use chrono::{DateTime, Utc};
use model::WindowRecord;
use model::config::Config;

use crate::enrichment::{Enriched, Enrichment, Forward, SetupError};

/// What one batch produced.
pub struct Step {
    /// Enrichment's output (late rows, forwards, linkage facts, watermark).
    pub enriched: Enriched,
    /// Window records to publish, in order.
    pub records: Vec<WindowRecord>,
    /// How long each part took (the per-stage timings of the run summary).
    pub times: StepTimes,
}

/// Wall time of the parts of one [`Job::process`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepTimes {
    /// Enrichment: sentiment, lateness, reordering, linkage, routing, the facts.
    pub enrichment: Duration,
    /// The window engine: DataFusion over the facts and the merge into window state.
    pub windows_ingest: Duration,
    /// The window engine: emission as the watermark moved (and early results).
    pub windows_emit: Duration,
}

/// Enrichment plus window aggregation.
pub struct Job {
    /// Sentiment, lateness, linkage and routing.
    pub enrichment: Enrichment,
    /// DataFusion window aggregation.
    pub engine: WindowEngine,
    early_interval: Duration,
    last_early: Option<Instant>,
    horizon_micros: i64,
    size_max_micros: i64,
    /// What linkage released when [`Job::finish`] moved event time to the end (held replies,
    /// buffered events), for observers of the last step.
    pub finished_links: Vec<enrich::linkage::Linked>,
}

/// The engine settings of a configuration (already validated).
pub fn engine_config(config: &Config) -> Result<EngineConfig, SetupError> {
    let mut specs = Vec::new();
    for (i, s) in config.windows.specs.iter().enumerate() {
        let spec =
            WindowSpec::hopping(s.size, s.slide.unwrap_or(s.size)).map_err(|e| SetupError {
                key: format!("windows.specs[{i}]"),
                message: e.to_string(),
            })?;
        specs.push(spec);
    }
    let competitors: HashMap<String, Vec<String>> = config
        .brands
        .iter()
        .filter(|b| !b.competitors.is_empty())
        .map(|b| (b.name.clone(), b.competitors.clone()))
        .collect();
    Ok(EngineConfig {
        specs,
        group_by: GroupBy::of(&config.windows.group_by),
        horizon_micros: i64::try_from(config.linkage.response_horizon.as_micros())
            .unwrap_or(i64::MAX),
        open_windows_max: config.windows.open_windows_max,
        values_per_window_max: config.windows.response_times_per_window_max,
        conversations_per_window_max: config.windows.conversations_per_window_max,
        allowed_lateness_micros: i64::try_from(config.windows.allowed_lateness.as_micros())
            .unwrap_or(i64::MAX),
        competitors,
        revision_interval_micros: i64::try_from(config.windows.revision_interval.as_micros())
            .unwrap_or(i64::MAX),
    })
}

impl Job {
    /// A job as configured; errors name the configuration key.
    pub fn new(config: &Config) -> Result<Self, SetupError> {
        let cfg = engine_config(config)?;
        let size_max_micros = cfg
            .specs
            .iter()
            .map(WindowSpec::size_micros)
            .max()
            .unwrap_or(0);
        let horizon_micros = cfg.horizon_micros;
        Ok(Job {
            enrichment: Enrichment::new(config)?,
            engine: WindowEngine::new(cfg),
            early_interval: config.windows.early_results_interval,
            last_early: None,
            horizon_micros,
            size_max_micros,
            finished_links: Vec::new(),
        })
    }

    /// Forgets every partition's state (before the partitions of a rebalance are restored
    /// from their checkpoints). Counters are kept.
    pub fn reset(&mut self) {
        self.enrichment.reset();
        self.engine.reset();
        self.finished_links.clear();
    }

    /// [`Job::reset`], then takes `assigned` as the partitions owned now, before they are
    /// restored from their checkpoints: each holds the watermark back until its checkpoint is
    /// restored or its first event arrives. Otherwise, until the first batch told enrichment
    /// the assignment, only the restored partitions counted, and time alone (the pipeline's
    /// tick while no batch arrives) moved the watermark to theirs, past the events of a
    /// partition still to be read: a partition read again from its beginning had 6,817 of its
    /// 9,705 events late when the restores took longer than a second (the fault test, on a
    /// loaded machine, 2026-12-07).
    pub fn reset_to(&mut self, assigned: &[i32], now: std::time::Instant) {
        self.reset();
        self.enrichment.assignment(assigned, &[], &[], now);
    }

    /// A partition of a rebalance comes back without a checkpoint (empty state at its committed
    /// offset, or read again from its beginning): its events were never judged against a
    /// watermark, so enrichment's and the engine's restart unknown instead of at the other
    /// restored partitions' (which keep their own floors). See
    /// [`aggregate::Watermarks::start_unjudged`].
    pub fn start_unjudged(&mut self) {
        self.enrichment.start_unjudged();
        self.engine.start_unjudged();
    }

    /// Processes one batch of decoded events observed at wall time `now` (`wall` stamps the
    /// records' `emitted_at`): [`Job::enrich`], then [`Job::aggregate`].
    pub async fn process(
        &mut self,
        events: &RecordBatch,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> anyhow::Result<Step> {
        let (enriched, took) = self.enrich(events, now)?;
        let mut step = self.aggregate(enriched, now, wall).await?;
        step.times.enrichment = took;
        Ok(step)
    }

    /// The first half of [`Job::process`]: enrichment of one batch, and how long it took.
    pub fn enrich(
        &mut self,
        events: &RecordBatch,
        now: Instant,
    ) -> anyhow::Result<(Enriched, Duration)> {
        let started = Instant::now();
        let enriched = self.enrichment.process(events, now).context("enrichment")?;
        Ok((enriched, started.elapsed()))
    }

    /// The second half of [`Job::process`]: the window engine over an enriched batch, and the
    /// records its watermark (and the early-results timer) emits. `times.enrichment` is zero.
    pub async fn aggregate(
        &mut self,
        enriched: Enriched,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> anyhow::Result<Step> {
        let mut engine = EnginePart {
            engine: &mut self.engine,
            early_interval: self.early_interval,
            last_early: &mut self.last_early,
        };
        engine.run(enriched, now, wall).await
    }

    /// [`Job::aggregate`] of one batch on a thread of its own while this thread enriches the
    /// next one (`next`, with its wall time; see [`Job::enrich`]): enrichment and the window
    /// engine hold disjoint state, so the two stages use two cores. The results are the same
    /// as one after the other (the engine never reads enrichment's state, and enrichment of
    /// the next batch does not depend on the engine's), and so are the records, as the engine
    /// sees its batches in order; only the wall times of the stages overlap.
    ///
    /// `runtime` is entered on the engine's thread, so that a task DataFusion spawns (a plan
    /// with more than one partition would; the engine's run with `target_partitions = 1`)
    /// runs on it. It must be multi-threaded: this thread blocks until the engine is done.
    pub fn aggregate_beside(
        &mut self,
        enriched: Enriched,
        now: Instant,
        wall: DateTime<Utc>,
        next: (&RecordBatch, Instant),
        before_next: impl FnOnce(&mut Enrichment),
        runtime: &tokio::runtime::Handle,
    ) -> (anyhow::Result<Step>, anyhow::Result<(Enriched, Duration)>) {
        let mut engine = EnginePart {
            engine: &mut self.engine,
            early_interval: self.early_interval,
            last_early: &mut self.last_early,
        };
        let enrichment = &mut self.enrichment;
        std::thread::scope(|s| {
            let worker = std::thread::Builder::new()
                .name("cluetrain-windows".into())
                .spawn_scoped(s, move || {
                    let _entered = runtime.enter();
                    futures::executor::block_on(engine.run(enriched, now, wall))
                });
            before_next(enrichment);
            let (events, next_now) = next;
            let started = Instant::now();
            let next_enriched = enrichment
                .process(events, next_now)
                .context("enrichment")
                .map(|e| (e, started.elapsed()));
            let step = match worker {
                Ok(handle) => handle.join().unwrap_or_else(|_| {
                    Err(anyhow::anyhow!(
                        "internal: the window engine's thread panicked"
                    ))
                }),
                Err(e) => Err(anyhow::Error::new(e).context("starting the window engine's thread")),
            };
            (step, next_enriched)
        })
    }

    /// End of a bounded run: moves event time past every window's end plus the horizon, so
    /// held replies are released and every window is emitted as final.
    pub async fn finish(
        &mut self,
        wall: DateTime<Utc>,
    ) -> anyhow::Result<(Vec<WindowRecord>, Vec<Forward>)> {
        let Some(w) = self.enrichment.end_time() else {
            return Ok((self.engine.finish(wall), Vec::new()));
        };
        // Far enough that linkage releases every held reply (their time + horizon), and not
        // further than needed, so the records' watermark stays meaningful.
        let t = w
            .saturating_add(self.horizon_micros)
            .saturating_add(self.size_max_micros)
            .saturating_add(1);
        let (linked, facts, forwards) = self.enrichment.force_watermark(t).context("enrichment")?;
        self.finished_links = linked;
        self.engine
            .ingest(&facts)
            .await
            .context("window aggregation")?;
        Ok((self.engine.finish(wall), forwards))
    }
}

/// The window engine's half of a step, borrowed from the job apart from enrichment.
struct EnginePart<'a> {
    engine: &'a mut WindowEngine,
    early_interval: Duration,
    last_early: &'a mut Option<Instant>,
}

impl EnginePart<'_> {
    async fn run(
        &mut self,
        enriched: Enriched,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> anyhow::Result<Step> {
        let started = Instant::now();
        self.engine
            .ingest(&enriched.facts)
            .await
            .context("window aggregation")?;
        let ingested_at = Instant::now();
        let mut records = match enriched.watermark {
            Some(w) => self.engine.advance(w, wall),
            None => Vec::new(),
        };
        if !self.early_interval.is_zero() {
            let due = self
                .last_early
                .is_none_or(|t| now.saturating_duration_since(t) >= self.early_interval);
            if due {
                *self.last_early = Some(now);
                records.extend(self.engine.early(wall));
            }
        }
        let times = StepTimes {
            enrichment: Duration::ZERO,
            windows_ingest: ingested_at - started,
            windows_emit: ingested_at.elapsed(),
        };
        Ok(Step {
            enriched,
            records,
            times,
        })
    }
}
