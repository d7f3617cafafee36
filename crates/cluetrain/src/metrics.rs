//! Prometheus metrics of a running pipeline (served on `/metrics` by [`crate::admin`]).
//!
//! Two families, named per Prometheus conventions (base units, `_total`, `_seconds`), each
//! documented in docs/prometheus.md:
//!
//! * **engagement** (the product): inbound messages, responses, broadcasts, first-response
//!   time histograms (calendar and business hours), the latest closed window's response rate,
//!   net sentiment, sentiment shift, conversation rate and reply share, and the unanswered
//!   backlog by age;
//! * **pipeline health**: what ingest consumed and rejected (registered by
//!   [`ingest::IngestMetrics`]), consumer lag, watermark lag, late events, window records,
//!   emit delay, linkage and window state, and micro-batch processing time.
//!
//! Label values come from closed sets only: brands that are configured by name (every other
//! brand is `other`), departments from the routing rules, platforms up to
//! [`crate::enrichment::PLATFORMS_MAX`] (then `other`), fixed age buckets. Never a user id,
//! message id or text.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, RecordBatch};
use model::WindowRecord;
use model::config::Config;
use model::facts::col as fcol;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The label value of every brand that is not configured by name.
pub const OTHER_BRAND: &str = "other";

/// First-response histogram buckets, seconds: 1 min to 2 days.
pub const FRT_BUCKETS: [f64; 12] = [
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0, 28_800.0, 43_200.0, 86_400.0, 129_600.0,
    172_800.0,
];

/// Micro-batch and emit-delay histogram buckets, seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Backlog age buckets (label `age`), as in window records.
pub const AGE_BUCKETS: [&str; 4] = ["under_1h", "from_1h_to_4h", "from_4h_to_24h", "over_24h"];

/// `brand`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrandLabels {
    /// Configured brand name, or `other`.
    pub brand: String,
}

/// `brand`, `department`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrandDepartmentLabels {
    /// Configured brand name, or `other`.
    pub brand: String,
    /// Department from the routing rules.
    pub department: String,
}

/// `brand`, `age`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BacklogLabels {
    /// Configured brand name, or `other`.
    pub brand: String,
    /// One of [`AGE_BUCKETS`].
    pub age: String,
}

/// Labels of gauges taken from the latest closed window record.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabels {
    /// Configured brand name, or `other`.
    pub brand: String,
    /// The record's platform when records are grouped by platform, else `all`.
    pub platform: String,
    /// The record's department when records are grouped by department, else `all`.
    pub department: String,
    /// Window length, e.g. `3600s`.
    pub window: String,
}

/// `final`: whether a window record was final.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinalLabels {
    /// `true` or `false`.
    pub r#final: String,
}

/// `department` (forwarded complaints).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DepartmentLabels {
    /// Department from the routing rules.
    pub department: String,
}

fn frt_histogram() -> Histogram {
    Histogram::new(FRT_BUCKETS)
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// Counters that the pipeline's components keep as running totals; the metrics add the
/// difference since the last update.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    evicted: u64,
    expired: u64,
    orphans: u64,
    duplicates: u64,
    forced_final: u64,
    values_dropped: u64,
    updates_after_final: u64,
    reorder_forced: u64,
    answers_after_horizon: u64,
    parquet_files: u64,
    forward_dropped: u64,
    live: crate::live_tables::LiveCounters,
}

/// Label set of outcomes (`ok`/`error`, `restored`/`empty`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// The outcome.
    pub result: String,
}

/// Label set of checkpoint files: `full` or `incremental`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind.
    pub kind: String,
}

/// Label set of the SQL live tables' evictions.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// `engagement_windows_live`, `voices`, `voice_conversations` or `open_conversations`.
    pub table: String,
}

/// Every metric of the pipeline stage (ingest registers its own).
#[derive(Debug)]
pub struct PipelineMetrics {
    /// Configured brands (looked up per fact: foldhash, not SipHash).
    brands: HashSet<String, foldhash::fast::RandomState>,
    /// Inbound messages by brand and department.
    pub inbound: Family<BrandDepartmentLabels, Counter>,
    /// Negative inbound messages by brand and department.
    pub negative_inbound: Family<BrandDepartmentLabels, Counter>,
    /// Inbound messages answered within the horizon, by brand and department.
    pub answered: Family<BrandDepartmentLabels, Counter>,
    /// Responses by brand.
    pub responses: Family<BrandLabels, Counter>,
    /// Broadcasts and follow-ups by brand.
    pub broadcasts: Family<BrandLabels, Counter>,
    /// First-response time, calendar seconds.
    pub first_response: Family<BrandLabels, Histogram, fn() -> Histogram>,
    /// First-response time, business-hours seconds.
    pub first_response_business: Family<BrandLabels, Histogram, fn() -> Histogram>,
    /// Latest closed window: response rate.
    pub response_rate: Family<WindowLabels, F64Gauge>,
    /// Latest closed window: net sentiment.
    pub net_sentiment: Family<WindowLabels, F64Gauge>,
    /// Latest closed window: sentiment shift.
    pub sentiment_shift: Family<WindowLabels, F64Gauge>,
    /// Latest closed window: conversation rate.
    pub conversation_rate: Family<WindowLabels, F64Gauge>,
    /// Latest closed window: reply share.
    pub reply_share: Family<WindowLabels, F64Gauge>,
    /// Unanswered inbound messages by age, over the open windows of the shortest tumbling
    /// window spec.
    pub backlog: Family<BacklogLabels, Gauge>,
    /// Inbound messages that reached the horizon unanswered.
    pub expired_unanswered: Family<BrandLabels, Counter>,
    /// Negative inbound messages forwarded to department topics.
    pub forwarded: Family<DepartmentLabels, Counter>,
    /// Events later than the allowed lateness (sent to the late-events topic).
    pub late_events: Counter,
    /// Window records emitted, by `final`.
    pub window_records: Family<FinalLabels, Counter>,
    /// Pipeline watermark, seconds since the epoch.
    pub watermark_seconds: F64Gauge,
    /// Wall clock minus the watermark, seconds.
    pub watermark_lag_seconds: F64Gauge,
    /// Assigned partitions without an event yet that hold the watermark back.
    pub watermark_partitions_waiting: Gauge,
    /// Wall time from a micro-batch's arrival to the publication of the records it closed.
    pub emit_delay: Histogram,
    /// Wall time to process one micro-batch (enrichment, aggregation, outputs).
    pub batch_seconds: Histogram,
    /// Linkage state entries (messages remembered plus replies held).
    pub linkage_entries: Gauge,
    /// Linkage entries evicted by `linkage.entries_max`.
    pub linkage_evictions: Counter,
    /// Linkage entries dropped past the horizon.
    pub linkage_expired: Counter,
    /// Replies released without their parent.
    pub linkage_orphans: Counter,
    /// Re-delivered event ids ignored.
    pub duplicates: Counter,
    /// Events waiting in the reorder buffer.
    pub reorder_buffered: Gauge,
    /// Events linked early because `linkage.reorder_events_max` was reached.
    pub reorder_forced: Counter,
    /// Windows in memory.
    pub windows_open: Gauge,
    /// Closed windows whose changed figures wait for `windows.revision_interval`.
    pub windows_revisions_pending: Gauge,
    /// Windows finalised early by `windows.open_windows_max`.
    pub windows_forced_final: Counter,
    /// Values not kept by `windows.response_times_per_window_max` (and conversations by
    /// `windows.conversations_per_window_max`).
    pub windows_values_dropped: Counter,
    /// Partial aggregates for windows already final (counted, not applied).
    pub windows_updates_after_final: Counter,
    /// Responses later than the horizon (not counted as answers).
    pub answers_after_horizon: Counter,
    /// Parquet files written.
    pub parquet_files: Counter,
    /// Negative messages for a forwarding department not kept for forwarding (bound).
    pub forward_dropped: Counter,
    /// Rows the SQL live tables dropped because their bound (`sql.*_max`) was reached.
    pub sql_live_evictions: Family<TableLabels, Counter>,
    /// Checkpoint rounds, by result (`ok`, `error`).
    pub checkpoints: Family<ResultLabels, Counter>,
    /// Seconds a checkpoint round took (Parquet flush, encode, write).
    pub checkpoint_seconds: Histogram,
    /// Bytes the last checkpoint round wrote.
    pub checkpoint_bytes: Gauge,
    /// Partition checkpoint files written, by kind (`full`, `incremental`).
    pub checkpoint_files: Family<KindLabels, Counter>,
    /// When the last checkpoint round succeeded (Unix seconds).
    pub checkpoint_last_success: F64Gauge,
    /// Partitions restored at an assignment, by outcome (`restored`, `empty`).
    pub checkpoint_restores: Family<ResultLabels, Counter>,
    /// Checkpoint files that did not verify (truncated, damaged, another format) and were set
    /// aside for an older one.
    pub checkpoint_corrupt: Counter,
    /// Events and dead letters dropped because their offset is before the restored position
    /// (read again after a restore) or their partition is not this instance's.
    pub checkpoint_replay_skipped: Counter,
    totals: Mutex<Totals>,
}

impl PipelineMetrics {
    /// Metrics for `config`'s brands and departments, every known label pre-created so that
    /// dashboards see zeros rather than gaps.
    pub fn new(config: &Config) -> Self {
        let m = PipelineMetrics {
            brands: config.brands.iter().map(|b| b.name.clone()).collect(),
            inbound: Family::default(),
            negative_inbound: Family::default(),
            answered: Family::default(),
            responses: Family::default(),
            broadcasts: Family::default(),
            first_response: Family::new_with_constructor(frt_histogram),
            first_response_business: Family::new_with_constructor(frt_histogram),
            response_rate: Family::default(),
            net_sentiment: Family::default(),
            sentiment_shift: Family::default(),
            conversation_rate: Family::default(),
            reply_share: Family::default(),
            backlog: Family::default(),
            expired_unanswered: Family::default(),
            forwarded: Family::default(),
            late_events: Counter::default(),
            window_records: Family::default(),
            watermark_seconds: F64Gauge::default(),
            watermark_lag_seconds: F64Gauge::default(),
            watermark_partitions_waiting: Gauge::default(),
            emit_delay: latency_histogram(),
            batch_seconds: latency_histogram(),
            linkage_entries: Gauge::default(),
            linkage_evictions: Counter::default(),
            linkage_expired: Counter::default(),
            linkage_orphans: Counter::default(),
            duplicates: Counter::default(),
            reorder_buffered: Gauge::default(),
            reorder_forced: Counter::default(),
            windows_open: Gauge::default(),
            windows_revisions_pending: Gauge::default(),
            windows_forced_final: Counter::default(),
            windows_values_dropped: Counter::default(),
            windows_updates_after_final: Counter::default(),
            answers_after_horizon: Counter::default(),
            parquet_files: Counter::default(),
            checkpoints: Family::default(),
            checkpoint_seconds: latency_histogram(),
            checkpoint_bytes: Gauge::default(),
            checkpoint_files: Family::default(),
            checkpoint_last_success: F64Gauge::default(),
            checkpoint_restores: Family::default(),
            checkpoint_corrupt: Counter::default(),
            checkpoint_replay_skipped: Counter::default(),
            forward_dropped: Counter::default(),
            sql_live_evictions: Family::default(),
            totals: Mutex::new(Totals::default()),
        };
        let mut departments = vec![config.departments.default.clone()];
        for r in &config.departments.rules {
            if !departments.contains(&r.department) {
                departments.push(r.department.clone());
            }
        }
        let mut brands: Vec<String> = m.brands.iter().cloned().collect();
        brands.push(OTHER_BRAND.to_string());
        for b in &brands {
            let bl = BrandLabels { brand: b.clone() };
            let _ = m.responses.get_or_create(&bl);
            let _ = m.broadcasts.get_or_create(&bl);
            let _ = m.first_response.get_or_create(&bl);
            let _ = m.first_response_business.get_or_create(&bl);
            let _ = m.expired_unanswered.get_or_create(&bl);
            for d in &departments {
                let l = BrandDepartmentLabels {
                    brand: b.clone(),
                    department: d.clone(),
                };
                let _ = m.inbound.get_or_create(&l);
                let _ = m.negative_inbound.get_or_create(&l);
                let _ = m.answered.get_or_create(&l);
            }
            for age in AGE_BUCKETS {
                let _ = m.backlog.get_or_create(&BacklogLabels {
                    brand: b.clone(),
                    age: age.to_string(),
                });
            }
        }
        for d in &departments {
            let _ = m.forwarded.get_or_create(&DepartmentLabels {
                department: d.clone(),
            });
        }
        for f in ["true", "false"] {
            let _ = m.window_records.get_or_create(&FinalLabels {
                r#final: f.to_string(),
            });
        }
        m
    }

    /// The label value of `brand`: itself if configured, else `other`.
    pub fn brand_label(&self, brand: &str) -> String {
        if self.brands.contains(brand) {
            brand.to_string()
        } else {
            OTHER_BRAND.to_string()
        }
    }

    /// Counts a batch of linked facts ([`model::fact_schema`]).
    pub fn observe_facts(&self, facts: &RecordBatch) {
        let s = |name: &str| {
            facts
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>().cloned())
        };
        let f = |name: &str| {
            facts
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Float64Type>().cloned())
        };
        let (Some(fact), Some(brand), Some(dept), Some(role)) = (
            s(fcol::FACT),
            s(fcol::BRAND),
            s(fcol::DEPARTMENT),
            s(fcol::ROLE),
        ) else {
            return;
        };
        let (Some(compound), Some(frt), Some(frtb)) = (
            f(fcol::COMPOUND),
            f(fcol::FRT_SECONDS),
            f(fcol::FRT_BUSINESS_SECONDS),
        ) else {
            return;
        };
        // Summed per brand and department over the batch first, then one label lookup per
        // series: a lookup per fact (two label strings, a lock and a hash each) was most of
        // the observers' time in the soak (58 s of 600).
        #[derive(Default)]
        struct Dept {
            inbound: u64,
            negative: u64,
            answered: u64,
        }
        #[derive(Default)]
        struct Brand<'a> {
            responses: u64,
            broadcasts: u64,
            frt: Vec<f64>,
            frt_business: Vec<f64>,
            departments: HashMap<&'a str, Dept, foldhash::fast::RandomState>,
        }
        let mut brands: HashMap<&str, Brand<'_>, foldhash::fast::RandomState> = HashMap::default();
        for i in 0..facts.num_rows() {
            let e = brands.entry(brand.value(i)).or_default();
            let department = if dept.is_valid(i) { dept.value(i) } else { "" };
            match fact.value(i) {
                "event" if role.is_valid(i) => match role.value(i) {
                    "inbound" => {
                        let d = e.departments.entry(department).or_default();
                        d.inbound += 1;
                        if compound.is_valid(i)
                            && compound.value(i) <= crate::enrichment::NEGATIVE_COMPOUND
                        {
                            d.negative += 1;
                        }
                    }
                    "response" => e.responses += 1,
                    "broadcast" | "follow_up" => e.broadcasts += 1,
                    _ => {}
                },
                "answer" => {
                    e.departments.entry(department).or_default().answered += 1;
                    if frt.is_valid(i) {
                        e.frt.push(frt.value(i));
                    }
                    if frtb.is_valid(i) {
                        e.frt_business.push(frtb.value(i));
                    }
                }
                _ => {}
            }
        }
        for (brand, e) in brands {
            let b = self.brand_label(brand);
            for (department, d) in e.departments {
                let l = BrandDepartmentLabels {
                    brand: b.clone(),
                    department: department.to_string(),
                };
                if d.inbound > 0 {
                    self.inbound.get_or_create(&l).inc_by(d.inbound);
                }
                if d.negative > 0 {
                    self.negative_inbound.get_or_create(&l).inc_by(d.negative);
                }
                if d.answered > 0 {
                    self.answered.get_or_create(&l).inc_by(d.answered);
                }
            }
            let bl = BrandLabels { brand: b };
            if e.responses > 0 {
                self.responses.get_or_create(&bl).inc_by(e.responses);
            }
            if e.broadcasts > 0 {
                self.broadcasts.get_or_create(&bl).inc_by(e.broadcasts);
            }
            if !e.frt.is_empty() {
                let h = self.first_response.get_or_create(&bl);
                for v in e.frt {
                    h.observe(v);
                }
            }
            if !e.frt_business.is_empty() {
                let h = self.first_response_business.get_or_create(&bl);
                for v in e.frt_business {
                    h.observe(v);
                }
            }
        }
    }

    /// Updates the window gauges from emitted records: for each brand and grouping, the
    /// latest closed record of the longest window spec wins.
    /// `backlog_window_seconds` is the tumbling spec whose final records count expired
    /// messages (each message is in exactly one of its windows).
    pub fn observe_records(
        &self,
        records: &[WindowRecord],
        longest_window_seconds: i64,
        backlog_window_seconds: i64,
    ) {
        let mut latest: BTreeMap<(String, String, String), &WindowRecord> = BTreeMap::new();
        for r in records {
            let f = if r.is_final { "true" } else { "false" };
            self.window_records
                .get_or_create(&FinalLabels {
                    r#final: f.to_string(),
                })
                .inc();
            if r.is_final
                && r.window_seconds == backlog_window_seconds
                && r.slide_seconds == r.window_seconds
            {
                self.expired_unanswered
                    .get_or_create(&BrandLabels {
                        brand: self.brand_label(&r.brand),
                    })
                    .inc_by(r.backlog.expired_unanswered);
            }
            if !r.closed || r.window_seconds != longest_window_seconds {
                continue;
            }
            let key = (
                self.brand_label(&r.brand),
                r.platform.clone().unwrap_or_else(|| "all".into()),
                r.department.clone().unwrap_or_else(|| "all".into()),
            );
            let newer = latest
                .get(&key)
                .is_none_or(|old| old.window_start <= r.window_start);
            if newer {
                latest.insert(key, r);
            }
        }
        for ((brand, platform, department), r) in latest {
            let l = WindowLabels {
                brand,
                platform,
                department,
                window: format!("{}s", r.window_seconds),
            };
            let set = |g: &Family<WindowLabels, F64Gauge>, v: Option<f64>| {
                if let Some(v) = v {
                    g.get_or_create(&l).set(v);
                }
            };
            set(&self.response_rate, r.response_rate);
            set(&self.net_sentiment, r.net_sentiment);
            set(&self.sentiment_shift, r.sentiment_shift);
            set(&self.conversation_rate, r.conversation_rate);
            set(&self.reply_share, r.reply_share);
        }
    }

    /// Sets the backlog gauges (per brand label, summed over brands that share `other`).
    pub fn set_backlog(&self, by_brand: &BTreeMap<String, [u64; 4]>) {
        let mut summed: BTreeMap<String, [u64; 4]> = BTreeMap::new();
        for (b, counts) in by_brand {
            let e = summed.entry(self.brand_label(b)).or_default();
            for (a, c) in e.iter_mut().zip(counts) {
                *a += c;
            }
        }
        for (brand, counts) in summed {
            for (age, c) in AGE_BUCKETS.iter().zip(counts) {
                self.backlog
                    .get_or_create(&BacklogLabels {
                        brand: brand.clone(),
                        age: (*age).to_string(),
                    })
                    .set(i64::try_from(c).unwrap_or(i64::MAX));
            }
        }
    }

    /// Brings state gauges and running-total counters up to date.
    #[allow(clippy::too_many_arguments)]
    pub fn observe_state(
        &self,
        link: &enrich::linkage::LinkStats,
        linkage_entries: usize,
        engine: &aggregate::EngineStats,
        enrich: &crate::enrichment::EnrichStats,
        reorder_buffered: usize,
        parquet_files: u64,
        watermark_micros: Option<i64>,
        partitions_waiting: usize,
    ) {
        self.watermark_partitions_waiting
            .set(i64::try_from(partitions_waiting).unwrap_or(i64::MAX));
        self.linkage_entries
            .set(i64::try_from(linkage_entries).unwrap_or(i64::MAX));
        self.reorder_buffered
            .set(i64::try_from(reorder_buffered).unwrap_or(i64::MAX));
        self.windows_open
            .set(i64::try_from(engine.windows_open).unwrap_or(i64::MAX));
        self.windows_revisions_pending
            .set(i64::try_from(engine.revisions_pending).unwrap_or(i64::MAX));
        if let Some(w) = watermark_micros {
            #[allow(clippy::cast_precision_loss)] // seconds since the epoch, display only
            let ws = w as f64 / 1e6;
            self.watermark_seconds.set(ws);
            #[allow(clippy::cast_precision_loss)]
            let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
            self.watermark_lag_seconds.set(now - ws);
        }
        let Ok(mut t) = self.totals.lock() else {
            return;
        };
        let now = Totals {
            evicted: link.evicted,
            expired: link.expired,
            orphans: link.orphans,
            duplicates: link.duplicates,
            forced_final: engine.forced_final,
            values_dropped: engine.values_dropped + engine.conversations_dropped,
            updates_after_final: engine.updates_after_final,
            reorder_forced: enrich.reorder_forced,
            answers_after_horizon: enrich.answers_after_horizon,
            parquet_files,
            forward_dropped: enrich.forward_dropped,
            live: t.live,
        };
        let add = |c: &Counter, new: u64, old: u64| {
            if new > old {
                c.inc_by(new - old);
            }
        };
        add(&self.linkage_evictions, now.evicted, t.evicted);
        add(&self.linkage_expired, now.expired, t.expired);
        add(&self.linkage_orphans, now.orphans, t.orphans);
        add(&self.duplicates, now.duplicates, t.duplicates);
        add(&self.windows_forced_final, now.forced_final, t.forced_final);
        add(
            &self.windows_values_dropped,
            now.values_dropped,
            t.values_dropped,
        );
        add(
            &self.windows_updates_after_final,
            now.updates_after_final,
            t.updates_after_final,
        );
        add(&self.reorder_forced, now.reorder_forced, t.reorder_forced);
        add(
            &self.answers_after_horizon,
            now.answers_after_horizon,
            t.answers_after_horizon,
        );
        add(&self.parquet_files, now.parquet_files, t.parquet_files);
        add(
            &self.forward_dropped,
            now.forward_dropped,
            t.forward_dropped,
        );
        *t = now;
    }

    /// Brings the SQL live tables' eviction counters up to date.
    pub fn observe_live_tables(&self, live: crate::live_tables::LiveCounters) {
        let Ok(mut t) = self.totals.lock() else {
            return;
        };
        for (table, new, old) in [
            (
                "engagement_windows_live",
                live.windows_evicted,
                t.live.windows_evicted,
            ),
            ("voices", live.voices_evicted, t.live.voices_evicted),
            (
                "voice_conversations",
                live.voice_conversations_uncounted,
                t.live.voice_conversations_uncounted,
            ),
            (
                "open_conversations",
                live.open_left_out,
                t.live.open_left_out,
            ),
        ] {
            let c = self.sql_live_evictions.get_or_create(&TableLabels {
                table: table.to_string(),
            });
            if new > old {
                c.inc_by(new - old);
            }
        }
        t.live = live;
    }

    /// Registers every metric under `registry`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "cluetrain_checkpoints",
            "Checkpoint rounds, by result",
            self.checkpoints.clone(),
        );
        r.register(
            "cluetrain_checkpoint_duration_seconds",
            "Seconds a checkpoint round took (Parquet flush, encode, write)",
            self.checkpoint_seconds.clone(),
        );
        r.register(
            "cluetrain_checkpoint_bytes",
            "Bytes the last checkpoint round wrote",
            self.checkpoint_bytes.clone(),
        );
        r.register(
            "cluetrain_checkpoint_files",
            "Partition checkpoint files written, by kind (full, incremental)",
            self.checkpoint_files.clone(),
        );
        r.register(
            "cluetrain_checkpoint_last_success_timestamp_seconds",
            "When the last checkpoint round succeeded (Unix time)",
            self.checkpoint_last_success.clone(),
        );
        r.register(
            "cluetrain_checkpoint_restores",
            "Partitions restored at an assignment, by outcome",
            self.checkpoint_restores.clone(),
        );
        r.register(
            "cluetrain_checkpoint_corrupt",
            "Checkpoint files that did not verify and were set aside for an older one",
            self.checkpoint_corrupt.clone(),
        );
        r.register(
            "cluetrain_checkpoint_replay_skipped",
            "Messages dropped because a restored checkpoint already covers them or another instance owns their partition",
            self.checkpoint_replay_skipped.clone(),
        );
        r.register(
            "cluetrain_inbound_messages",
            "Inbound messages (someone addressing the brand), by brand and department",
            self.inbound.clone(),
        );
        r.register(
            "cluetrain_negative_inbound_messages",
            "Inbound messages with VADER compound <= -0.05, by brand and department",
            self.negative_inbound.clone(),
        );
        r.register(
            "cluetrain_answered_messages",
            "Inbound messages that got a first response within the horizon, by brand and department",
            self.answered.clone(),
        );
        r.register(
            "cluetrain_responses",
            "Responses by the brand to inbound messages",
            self.responses.clone(),
        );
        r.register(
            "cluetrain_broadcasts",
            "Broadcasts and thread follow-ups by the brand",
            self.broadcasts.clone(),
        );
        r.register(
            "cluetrain_first_response_seconds",
            "Time from an inbound message to the brand's first response, calendar seconds",
            self.first_response.clone(),
        );
        r.register(
            "cluetrain_first_response_business_seconds",
            "Time from an inbound message to the brand's first response, business-hours seconds",
            self.first_response_business.clone(),
        );
        r.register(
            "cluetrain_response_rate",
            "Share of the latest closed window's inbound messages answered so far",
            self.response_rate.clone(),
        );
        r.register(
            "cluetrain_net_sentiment",
            "(positive - negative) / (positive + negative) inbound messages, latest closed window",
            self.net_sentiment.clone(),
        );
        r.register(
            "cluetrain_sentiment_shift",
            "Net sentiment of the latest closed window minus that of the window before",
            self.sentiment_shift.clone(),
        );
        r.register(
            "cluetrain_conversation_rate",
            "Public replies to the brand's broadcasts per broadcast, latest closed window",
            self.conversation_rate.clone(),
        );
        r.register(
            "cluetrain_reply_share",
            "Responses / (responses + broadcasts), latest closed window",
            self.reply_share.clone(),
        );
        r.register(
            "cluetrain_backlog_messages",
            "Unanswered inbound messages younger than the horizon, by age",
            self.backlog.clone(),
        );
        r.register(
            "cluetrain_expired_unanswered_messages",
            "Inbound messages that reached the horizon without an answer",
            self.expired_unanswered.clone(),
        );
        r.register(
            "cluetrain_forwarded_complaints",
            "Negative inbound messages forwarded to a department topic",
            self.forwarded.clone(),
        );
        r.register(
            "cluetrain_late_events",
            "Events later than windows.allowed_lateness, sent to the late-events topic",
            self.late_events.clone(),
        );
        r.register(
            "cluetrain_window_records",
            "Window records emitted, by final",
            self.window_records.clone(),
        );
        r.register(
            "cluetrain_watermark_seconds",
            "Pipeline watermark, seconds since the Unix epoch",
            self.watermark_seconds.clone(),
        );
        r.register(
            "cluetrain_watermark_lag_seconds",
            "Wall clock minus the pipeline watermark",
            self.watermark_lag_seconds.clone(),
        );
        r.register(
            "cluetrain_watermark_partitions_waiting",
            "Assigned partitions without an event yet that hold the watermark back (not idle, not found empty for linkage.empty_partition_timeout, not ended)",
            self.watermark_partitions_waiting.clone(),
        );
        r.register(
            "cluetrain_emit_delay_seconds",
            "Wall time from the arrival of the batch that moved the watermark past a window's end to the window's publication",
            self.emit_delay.clone(),
        );
        r.register(
            "cluetrain_batch_processing_seconds",
            "Wall time to process one micro-batch (enrichment, aggregation, outputs)",
            self.batch_seconds.clone(),
        );
        r.register(
            "cluetrain_linkage_entries",
            "Linkage state entries (linkage.entries_max bounds them)",
            self.linkage_entries.clone(),
        );
        r.register(
            "cluetrain_linkage_evictions",
            "Linkage entries evicted because linkage.entries_max was reached",
            self.linkage_evictions.clone(),
        );
        r.register(
            "cluetrain_linkage_expired",
            "Linkage entries dropped past the response horizon",
            self.linkage_expired.clone(),
        );
        r.register(
            "cluetrain_linkage_orphans",
            "Replies released without their parent",
            self.linkage_orphans.clone(),
        );
        r.register(
            "cluetrain_duplicate_events",
            "Re-delivered event ids counted once",
            self.duplicates.clone(),
        );
        r.register(
            "cluetrain_linkage_reorder_buffered_events",
            "Events waiting for the watermark to be linked in event-time order",
            self.reorder_buffered.clone(),
        );
        r.register(
            "cluetrain_linkage_reorder_forced",
            "Events linked early because linkage.reorder_events_max was reached",
            self.reorder_forced.clone(),
        );
        r.register(
            "cluetrain_windows_open",
            "Windows held in memory (windows.open_windows_max bounds them)",
            self.windows_open.clone(),
        );
        r.register(
            "cluetrain_windows_revisions_pending",
            "Closed windows whose changed figures wait for windows.revision_interval",
            self.windows_revisions_pending.clone(),
        );
        r.register(
            "cluetrain_windows_forced_final",
            "Windows finalised early because windows.open_windows_max was reached",
            self.windows_forced_final.clone(),
        );
        r.register(
            "cluetrain_windows_values_dropped",
            "Response times or conversations not kept (windows.*_per_window_max)",
            self.windows_values_dropped.clone(),
        );
        r.register(
            "cluetrain_windows_updates_after_final",
            "Partial aggregates for windows that were already final, one per (pane, window) pair (counted, not applied)",
            self.windows_updates_after_final.clone(),
        );
        r.register(
            "cluetrain_answers_after_horizon",
            "Responses later than the horizon after their message (not counted as answers)",
            self.answers_after_horizon.clone(),
        );
        r.register(
            "cluetrain_sql_live_evictions",
            "Rows the SQL live tables left out because sql.live_windows_max, sql.voices_max or sql.open_conversations_max was reached, and conversations not counted in voices because sql.voice_conversations_max was (table voice_conversations)",
            self.sql_live_evictions.clone(),
        );
        r.register(
            "cluetrain_forward_dropped",
            "Negative messages not kept for forwarding because linkage.entries_max messages already waited",
            self.forward_dropped.clone(),
        );
        r.register(
            "cluetrain_parquet_files",
            "Parquet files written",
            self.parquet_files.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::facts::{EventFact, FactBatchBuilder, FactKeys};

    #[test]
    fn facts_are_counted_per_brand_and_department_and_unknown_brands_fold_into_other() {
        let mut config = Config::default();
        config.brands.push(model::config::BrandConfig {
            name: "acme".into(),
            accounts: vec!["acme".into()],
            ..Default::default()
        });
        let keys = |brand, department| FactKeys {
            brand,
            platform: "x",
            stakeholder: "customer",
            department,
        };
        let event = |role, compound| EventFact {
            t: 0,
            role,
            compound,
            to_broadcast: false,
            followers: None,
            root: 1,
            turns: 0,
        };
        let mut b = FactBatchBuilder::with_capacity(8);
        b.event(&keys("acme", Some("billing")), &event("inbound", -0.6));
        b.event(&keys("acme", Some("billing")), &event("inbound", 0.3));
        b.event(&keys("acme", Some("support")), &event("inbound", 0.0));
        b.event(&keys("acme", None), &event("response", 0.2));
        b.event(&keys("acme", None), &event("broadcast", 0.2));
        b.answer(&keys("acme", Some("billing")), 0, 120.0, 60.0);
        b.event(&keys("zeta", None), &event("inbound", -0.9));
        b.event(&keys("yota", None), &event("inbound", 0.9));
        let facts = b.finish().unwrap();

        let m = PipelineMetrics::new(&config);
        // Twice: counters add up across batches.
        m.observe_facts(&facts);
        m.observe_facts(&facts);
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let value = |series: &str| -> Option<String> {
            text.lines()
                .find_map(|l| l.strip_prefix(series))
                .map(|v| v.trim().to_string())
        };
        let other = OTHER_BRAND;
        for (series, want) in [
            (
                r#"cluetrain_inbound_messages_total{brand="acme",department="billing"}"#
                    .to_string(),
                "4",
            ),
            (
                r#"cluetrain_inbound_messages_total{brand="acme",department="support"}"#
                    .to_string(),
                "2",
            ),
            (
                r#"cluetrain_negative_inbound_messages_total{brand="acme",department="billing"}"#
                    .to_string(),
                "2",
            ),
            (
                r#"cluetrain_answered_messages_total{brand="acme",department="billing"}"#
                    .to_string(),
                "2",
            ),
            (
                r#"cluetrain_responses_total{brand="acme"}"#.to_string(),
                "2",
            ),
            (
                r#"cluetrain_broadcasts_total{brand="acme"}"#.to_string(),
                "2",
            ),
            (
                r#"cluetrain_first_response_seconds_sum{brand="acme"}"#.to_string(),
                "240.0",
            ),
            (
                r#"cluetrain_first_response_business_seconds_count{brand="acme"}"#.to_string(),
                "2",
            ),
            (
                format!(r#"cluetrain_inbound_messages_total{{brand="{other}",department=""}}"#),
                "4",
            ),
            (
                format!(
                    r#"cluetrain_negative_inbound_messages_total{{brand="{other}",department=""}}"#
                ),
                "2",
            ),
        ] {
            assert_eq!(
                value(&series).as_deref(),
                Some(want),
                "{series} in:\n{text}"
            );
        }
        // Series are pre-created at zero per brand and department; no negative message here.
        assert_eq!(
            value(
                r#"cluetrain_negative_inbound_messages_total{brand="acme",department="support"}"#
            )
            .as_deref(),
            Some("0"),
            "{text}"
        );
    }
}
