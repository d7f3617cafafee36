//! Window records: the two-way engagement figures of one brand (and grouping keys) over one
//! event-time window, as published on the output topic and written to Parquet.
//!
//! The JSON form is `schemas/engagement-window.v1.json` (a test validates serialized records
//! against it). Records are upserts keyed by [`WindowRecord::key`]: a window is emitted again,
//! with a higher `revision`, whenever its figures change, and a last time with `final = true`
//! when the watermark passes its end plus the response horizon.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Count, median, 90th percentile and mean of first-response times, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Distribution {
    /// Number of values.
    pub count: u64,
    /// Median; `None` when `count` is 0.
    pub median: Option<f64>,
    /// 90th percentile; `None` when `count` is 0.
    pub p90: Option<f64>,
    /// Mean; `None` when `count` is 0.
    pub mean: Option<f64>,
}

/// The unanswered backlog of a window's inbound messages at the watermark, by age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Backlog {
    /// Younger than 1 hour.
    pub under_1h: u64,
    /// 1 to 4 hours old.
    pub from_1h_to_4h: u64,
    /// 4 to 24 hours old.
    pub from_4h_to_24h: u64,
    /// 24 hours or older, still within the horizon.
    pub over_24h: u64,
    /// Reached the horizon without an answer.
    pub expired_unanswered: u64,
}

/// Inbound messages by the author's stakeholder type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StakeholderMix {
    /// Customers.
    pub customer: u64,
    /// Employees.
    pub employee: u64,
    /// Partners.
    pub partner: u64,
    /// Suppliers.
    pub supplier: u64,
    /// Investors.
    pub investor: u64,
    /// Press.
    pub press: u64,
    /// Not stated.
    pub unknown: u64,
}

impl StakeholderMix {
    /// Adds `n` to the count of `stakeholder` (unrecognised values count as unknown).
    pub fn add(&mut self, stakeholder: &str, n: u64) {
        let slot = match stakeholder {
            "customer" => &mut self.customer,
            "employee" => &mut self.employee,
            "partner" => &mut self.partner,
            "supplier" => &mut self.supplier,
            "investor" => &mut self.investor,
            "press" => &mut self.press,
            _ => &mut self.unknown,
        };
        *slot += n;
    }
}

/// Figures of one department within a window record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepartmentFigures {
    /// Department name from the routing rules.
    pub department: String,
    /// Inbound messages routed here.
    pub inbound: u64,
    /// Of those, negative (compound ≤ −0.05).
    pub negative_inbound: u64,
    /// Of those, answered within the horizon so far.
    pub answered: u64,
    /// answered / inbound.
    pub response_rate: Option<f64>,
    /// First-response times of this department's answered messages.
    pub first_response_seconds: Distribution,
}

/// How medians and 90th percentiles were computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantileMethod {
    /// Exact, linear interpolation between closest ranks (numpy's default).
    ExactLinear,
}

/// One revision of one window's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    /// The brand, as in its events.
    pub brand: String,
    /// Grouping key, when windows are grouped by platform.
    pub platform: Option<String>,
    /// Grouping key, when windows are grouped by stakeholder.
    pub stakeholder: Option<String>,
    /// Grouping key, when windows are grouped by department.
    pub department: Option<String>,
    /// Inclusive start.
    pub window_start: DateTime<Utc>,
    /// Exclusive end.
    pub window_end: DateTime<Utc>,
    /// Length, seconds.
    pub window_seconds: i64,
    /// Distance between window starts, seconds.
    pub slide_seconds: i64,
    /// 1 at the first emission, +1 at every later one.
    pub revision: u32,
    /// The watermark has passed `window_end`: volumes and sentiment are complete.
    pub closed: bool,
    /// The watermark has passed `window_end + horizon`: no revision follows.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Response horizon H, seconds.
    pub horizon_seconds: i64,
    /// Inbound messages created in the window.
    pub inbound: u64,
    /// Responses created in the window.
    pub responses: u64,
    /// Broadcasts and follow-ups created in the window.
    pub broadcasts: u64,
    /// Inbound messages of the window answered within H so far.
    pub answered: u64,
    /// answered / inbound.
    pub response_rate: Option<f64>,
    /// First-response times, calendar seconds.
    pub first_response_seconds: Distribution,
    /// First-response times, business-hours seconds.
    pub first_response_business_seconds: Distribution,
    /// How the quantiles were computed.
    pub quantile_method: QuantileMethod,
    /// Unanswered inbound messages of the window at the watermark, by age.
    pub backlog: Backlog,
    /// Public replies to the brand's broadcasts ÷ broadcasts.
    pub conversation_rate: Option<f64>,
    /// responses ÷ (responses + broadcasts).
    pub reply_share: Option<f64>,
    /// Mean turns of conversations active in the window.
    pub thread_depth: Option<f64>,
    /// Mean compound of inbound messages.
    pub mean_compound: Option<f64>,
    /// (P − N) ÷ (P + N) over inbound messages.
    pub net_sentiment: Option<f64>,
    /// (P − N) ÷ (P + N + U) over inbound messages.
    pub net_sentiment_all: Option<f64>,
    /// net_sentiment − that of the previous window of the same brand and grouping.
    pub sentiment_shift: Option<f64>,
    /// Mean change in compound from an answered message to its author's next one.
    pub response_effect: Option<f64>,
    /// Number of response effects measured.
    pub response_effect_count: u64,
    /// The brand's inbound ÷ that of its competitor set (itself included).
    pub share_of_voice: Option<f64>,
    /// Inbound messages by stakeholder type.
    pub stakeholders: StakeholderMix,
    /// Per department.
    pub departments: Vec<DepartmentFigures>,
    /// Sum of followers over broadcasts (for contrast only).
    pub broadcast_reach: i64,
    /// Wall-clock time of emission.
    pub emitted_at: DateTime<Utc>,
    /// Pipeline watermark at emission.
    pub watermark: DateTime<Utc>,
}

/// The upsert key of a window record: what identifies "the same window".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowKey {
    /// Brand.
    pub brand: String,
    /// Platform grouping key.
    pub platform: Option<String>,
    /// Stakeholder grouping key.
    pub stakeholder: Option<String>,
    /// Department grouping key.
    pub department: Option<String>,
    /// Window start, µs.
    pub window_start_micros: i64,
    /// Window length, seconds.
    pub window_seconds: i64,
}

impl WindowRecord {
    /// The upsert key (brand, grouping keys, window start, window length).
    pub fn key(&self) -> WindowKey {
        WindowKey {
            brand: self.brand.clone(),
            platform: self.platform.clone(),
            stakeholder: self.stakeholder.clone(),
            department: self.department.clone(),
            window_start_micros: self.window_start.timestamp_micros(),
            window_seconds: self.window_seconds,
        }
    }
}

/// The Arrow (and Parquet) form of window records: one flat row per record, nested figures
/// spread into columns (`first_response_median_seconds`, `backlog_under_1h`,
/// `stakeholder_customer`...), so that SQL clients and BI tools need no struct access. The
/// department breakdown is a table of its own ([`department_schema`]).
pub mod arrow_form {
    use std::sync::{Arc, OnceLock};

    use arrow_array::builder::{
        BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
    };
    use arrow_array::{ArrayRef, RecordBatch};
    use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

    use super::{Distribution, WindowRecord};
    use crate::ModelError;

    fn ts() -> DataType {
        DataType::Timestamp(
            TimeUnit::Microsecond,
            Some(crate::schema::TIMESTAMP_TZ.into()),
        )
    }

    const KEY_TEXT: [&str; 4] = ["brand", "platform", "stakeholder", "department"];

    const COUNTS: [&str; 5] = ["inbound", "responses", "broadcasts", "answered", "revision"];

    const DIST: [&str; 2] = ["first_response", "first_response_business"];

    const BACKLOG: [&str; 5] = [
        "backlog_under_1h",
        "backlog_from_1h_to_4h",
        "backlog_from_4h_to_24h",
        "backlog_over_24h",
        "backlog_expired_unanswered",
    ];

    const RATIOS: [&str; 10] = [
        "response_rate",
        "conversation_rate",
        "reply_share",
        "thread_depth",
        "mean_compound",
        "net_sentiment",
        "net_sentiment_all",
        "sentiment_shift",
        "response_effect",
        "share_of_voice",
    ];

    const STAKEHOLDERS: [&str; 7] = [
        "stakeholder_customer",
        "stakeholder_employee",
        "stakeholder_partner",
        "stakeholder_supplier",
        "stakeholder_investor",
        "stakeholder_press",
        "stakeholder_unknown",
    ];

    /// The schema of window records as Arrow / Parquet (table `engagement_windows`).
    pub fn window_schema() -> SchemaRef {
        static S: OnceLock<SchemaRef> = OnceLock::new();
        S.get_or_init(|| {
            let mut f = vec![Field::new("brand", DataType::Utf8, false)];
            for k in &KEY_TEXT[1..] {
                f.push(Field::new(*k, DataType::Utf8, true));
            }
            f.push(Field::new("window_start", ts(), false));
            f.push(Field::new("window_end", ts(), false));
            f.push(Field::new("window_seconds", DataType::Int64, false));
            f.push(Field::new("slide_seconds", DataType::Int64, false));
            f.push(Field::new("closed", DataType::Boolean, false));
            f.push(Field::new("final", DataType::Boolean, false));
            f.push(Field::new("horizon_seconds", DataType::Int64, false));
            for c in COUNTS {
                f.push(Field::new(c, DataType::Int64, false));
            }
            for d in DIST {
                f.push(Field::new(format!("{d}_count"), DataType::Int64, false));
                for q in ["median", "p90", "mean"] {
                    f.push(Field::new(
                        format!("{d}_{q}_seconds"),
                        DataType::Float64,
                        true,
                    ));
                }
            }
            f.push(Field::new("quantile_method", DataType::Utf8, false));
            for b in BACKLOG {
                f.push(Field::new(b, DataType::Int64, false));
            }
            for r in RATIOS {
                f.push(Field::new(r, DataType::Float64, true));
            }
            f.push(Field::new("response_effect_count", DataType::Int64, false));
            for s in STAKEHOLDERS {
                f.push(Field::new(s, DataType::Int64, false));
            }
            f.push(Field::new("broadcast_reach", DataType::Int64, false));
            f.push(Field::new("emitted_at", ts(), false));
            f.push(Field::new("watermark", ts(), false));
            Arc::new(Schema::new(f))
        })
        .clone()
    }

    /// The schema of the per-department figures (table `engagement_window_departments`): the
    /// record's key and revision, then one department's figures.
    pub fn department_schema() -> SchemaRef {
        static S: OnceLock<SchemaRef> = OnceLock::new();
        S.get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("brand", DataType::Utf8, false),
                Field::new("platform", DataType::Utf8, true),
                Field::new("stakeholder", DataType::Utf8, true),
                Field::new("window_start", ts(), false),
                Field::new("window_end", ts(), false),
                Field::new("window_seconds", DataType::Int64, false),
                Field::new("slide_seconds", DataType::Int64, false),
                Field::new("revision", DataType::Int64, false),
                Field::new("closed", DataType::Boolean, false),
                Field::new("final", DataType::Boolean, false),
                Field::new("department", DataType::Utf8, false),
                Field::new("inbound", DataType::Int64, false),
                Field::new("negative_inbound", DataType::Int64, false),
                Field::new("answered", DataType::Int64, false),
                Field::new("response_rate", DataType::Float64, true),
                Field::new("first_response_count", DataType::Int64, false),
                Field::new("first_response_median_seconds", DataType::Float64, true),
                Field::new("first_response_p90_seconds", DataType::Float64, true),
                Field::new("first_response_mean_seconds", DataType::Float64, true),
            ]))
        })
        .clone()
    }

    fn i(v: u64) -> i64 {
        i64::try_from(v).unwrap_or(i64::MAX)
    }

    fn tsb(n: usize) -> TimestampMicrosecondBuilder {
        TimestampMicrosecondBuilder::with_capacity(n).with_timezone(crate::schema::TIMESTAMP_TZ)
    }

    /// Window records as one batch of [`window_schema`].
    pub fn windows_batch(records: &[WindowRecord]) -> Result<RecordBatch, ModelError> {
        let n = records.len();
        let mut text: Vec<StringBuilder> = (0..4).map(|_| StringBuilder::new()).collect();
        let (mut start, mut end, mut emitted, mut wm) = (tsb(n), tsb(n), tsb(n), tsb(n));
        let mut ints: Vec<Int64Builder> = (0..3).map(|_| Int64Builder::with_capacity(n)).collect();
        let (mut closed, mut fin) = (BooleanBuilder::new(), BooleanBuilder::new());
        let mut counts: Vec<Int64Builder> =
            (0..COUNTS.len()).map(|_| Int64Builder::new()).collect();
        let mut dist_counts: Vec<Int64Builder> = (0..2).map(|_| Int64Builder::new()).collect();
        let mut dist_q: Vec<Float64Builder> = (0..6).map(|_| Float64Builder::new()).collect();
        let mut method = StringBuilder::new();
        let mut backlog: Vec<Int64Builder> = (0..5).map(|_| Int64Builder::new()).collect();
        let mut ratios: Vec<Float64Builder> =
            (0..RATIOS.len()).map(|_| Float64Builder::new()).collect();
        let mut effects = Int64Builder::new();
        let mut stake: Vec<Int64Builder> = (0..7).map(|_| Int64Builder::new()).collect();
        let mut reach = Int64Builder::new();
        for r in records {
            text[0].append_value(&r.brand);
            text[1].append_option(r.platform.as_deref());
            text[2].append_option(r.stakeholder.as_deref());
            text[3].append_option(r.department.as_deref());
            start.append_value(r.window_start.timestamp_micros());
            end.append_value(r.window_end.timestamp_micros());
            ints[0].append_value(r.window_seconds);
            ints[1].append_value(r.slide_seconds);
            ints[2].append_value(r.horizon_seconds);
            closed.append_value(r.closed);
            fin.append_value(r.is_final);
            for (b, v) in counts.iter_mut().zip([
                r.inbound,
                r.responses,
                r.broadcasts,
                r.answered,
                u64::from(r.revision),
            ]) {
                b.append_value(i(v));
            }
            for (k, d) in [r.first_response_seconds, r.first_response_business_seconds]
                .iter()
                .enumerate()
            {
                let d: &Distribution = d;
                dist_counts[k].append_value(i(d.count));
                dist_q[3 * k].append_option(d.median);
                dist_q[3 * k + 1].append_option(d.p90);
                dist_q[3 * k + 2].append_option(d.mean);
            }
            method.append_value("exact_linear");
            let bl = r.backlog;
            for (b, v) in backlog.iter_mut().zip([
                bl.under_1h,
                bl.from_1h_to_4h,
                bl.from_4h_to_24h,
                bl.over_24h,
                bl.expired_unanswered,
            ]) {
                b.append_value(i(v));
            }
            for (b, v) in ratios.iter_mut().zip([
                r.response_rate,
                r.conversation_rate,
                r.reply_share,
                r.thread_depth,
                r.mean_compound,
                r.net_sentiment,
                r.net_sentiment_all,
                r.sentiment_shift,
                r.response_effect,
                r.share_of_voice,
            ]) {
                b.append_option(v);
            }
            effects.append_value(i(r.response_effect_count));
            let s = r.stakeholders;
            for (b, v) in stake.iter_mut().zip([
                s.customer, s.employee, s.partner, s.supplier, s.investor, s.press, s.unknown,
            ]) {
                b.append_value(i(v));
            }
            reach.append_value(r.broadcast_reach);
            emitted.append_value(r.emitted_at.timestamp_micros());
            wm.append_value(r.watermark.timestamp_micros());
        }
        let mut cols: Vec<ArrayRef> = Vec::new();
        for b in &mut text {
            cols.push(Arc::new(b.finish()));
        }
        cols.push(Arc::new(start.finish()));
        cols.push(Arc::new(end.finish()));
        cols.push(Arc::new(ints[0].finish()));
        cols.push(Arc::new(ints[1].finish()));
        cols.push(Arc::new(closed.finish()));
        cols.push(Arc::new(fin.finish()));
        cols.push(Arc::new(ints[2].finish()));
        for b in &mut counts {
            cols.push(Arc::new(b.finish()));
        }
        for k in 0..2 {
            cols.push(Arc::new(dist_counts[k].finish()));
            for q in 0..3 {
                cols.push(Arc::new(dist_q[3 * k + q].finish()));
            }
        }
        cols.push(Arc::new(method.finish()));
        for b in &mut backlog {
            cols.push(Arc::new(b.finish()));
        }
        for b in &mut ratios {
            cols.push(Arc::new(b.finish()));
        }
        cols.push(Arc::new(effects.finish()));
        for b in &mut stake {
            cols.push(Arc::new(b.finish()));
        }
        cols.push(Arc::new(reach.finish()));
        cols.push(Arc::new(emitted.finish()));
        cols.push(Arc::new(wm.finish()));
        Ok(RecordBatch::try_new(window_schema(), cols)?)
    }

    /// The department breakdown of window records as one batch of [`department_schema`].
    pub fn departments_batch(records: &[WindowRecord]) -> Result<RecordBatch, ModelError> {
        let mut text: Vec<StringBuilder> = (0..4).map(|_| StringBuilder::new()).collect();
        let (mut start, mut end) = (tsb(0), tsb(0));
        let mut ints: Vec<Int64Builder> = (0..7).map(|_| Int64Builder::new()).collect();
        let (mut closed, mut fin) = (BooleanBuilder::new(), BooleanBuilder::new());
        let mut floats: Vec<Float64Builder> = (0..4).map(|_| Float64Builder::new()).collect();
        for r in records {
            for d in &r.departments {
                text[0].append_value(&r.brand);
                text[1].append_option(r.platform.as_deref());
                text[2].append_option(r.stakeholder.as_deref());
                text[3].append_value(&d.department);
                start.append_value(r.window_start.timestamp_micros());
                end.append_value(r.window_end.timestamp_micros());
                ints[0].append_value(r.window_seconds);
                ints[6].append_value(r.slide_seconds);
                ints[1].append_value(i64::from(r.revision));
                closed.append_value(r.closed);
                fin.append_value(r.is_final);
                ints[2].append_value(i(d.inbound));
                ints[3].append_value(i(d.negative_inbound));
                ints[4].append_value(i(d.answered));
                floats[0].append_option(d.response_rate);
                ints[5].append_value(i(d.first_response_seconds.count));
                floats[1].append_option(d.first_response_seconds.median);
                floats[2].append_option(d.first_response_seconds.p90);
                floats[3].append_option(d.first_response_seconds.mean);
            }
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(text[0].finish()),
            Arc::new(text[1].finish()),
            Arc::new(text[2].finish()),
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            Arc::new(ints[0].finish()),
            Arc::new(ints[6].finish()),
            Arc::new(ints[1].finish()),
            Arc::new(closed.finish()),
            Arc::new(fin.finish()),
            Arc::new(text[3].finish()),
            Arc::new(ints[2].finish()),
            Arc::new(ints[3].finish()),
            Arc::new(ints[4].finish()),
            Arc::new(floats[0].finish()),
            Arc::new(ints[5].finish()),
            Arc::new(floats[1].finish()),
            Arc::new(floats[2].finish()),
            Arc::new(floats[3].finish()),
        ];
        Ok(RecordBatch::try_new(department_schema(), cols)?)
    }
}
