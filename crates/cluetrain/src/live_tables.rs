//! The running pipeline as SQL tables, beside the Parquet history (docs/sql.md):
//!
//! * `engagement_windows_live` / `engagement_window_departments_live`: the latest revision of
//!   every window this process emitted, so `engagement_windows` shows figures before Parquet is
//!   flushed (bounded by `sql.live_windows_max`, oldest window end evicted first);
//! * `late_events`: the most recent events that came later than the allowed lateness;
//! * `dead_letters`: the most recent rejected messages, without their payload bytes (reason,
//!   detail, coordinates and size only), and `dead_letter_counts`: messages per reason;
//! * `open_conversations`: inbound messages still waiting for their brand's first answer, with
//!   their age at the watermark (refreshed every `sql.refresh_interval`, the oldest
//!   `sql.open_conversations_max` kept: the most urgent);
//! * `voices`: per brand and UTC day, the authors who converse with the brand, ranked by
//!   conversations and then turns (bounded by `sql.voices_max` author-days, the oldest day
//!   evicted first, and `sql.voice_conversations_max` conversations counted per author-day).
//!
//! The pipeline thread writes, the SQL runtime reads: every table is built from a snapshot
//! taken under one short lock when a query scans it. Bounds bite visibly: the counters of
//! [`LiveTables::counters`] are exported as metrics.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::builder::{
    Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use model::window_record::{WindowKey, WindowRecord, arrow_form};

/// Bounds of the live tables (from `[sql]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveLimits {
    /// Windows (latest revision each) kept in memory.
    pub windows_max: usize,
    /// Recent late events and dead letters kept, each.
    pub samples_max: usize,
    /// Author-days tracked for `voices`.
    pub voices_max: usize,
    /// Conversations counted (and remembered) per author-day of `voices`.
    pub voice_conversations_max: usize,
    /// Rows of `open_conversations`.
    pub open_max: usize,
}

impl LiveLimits {
    /// The limits of a configuration.
    pub fn of(sql: &model::config::SqlConfig) -> Self {
        LiveLimits {
            windows_max: sql.live_windows_max,
            samples_max: sql.samples_max,
            voices_max: sql.voices_max,
            voice_conversations_max: sql.voice_conversations_max,
            open_max: sql.open_conversations_max,
        }
    }
}

impl Default for LiveLimits {
    fn default() -> Self {
        LiveLimits::of(&model::config::SqlConfig::default())
    }
}

/// How often each bound bit (they only grow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveCounters {
    /// Windows evicted from `engagement_windows_live` (still in Parquet when it is on).
    pub windows_evicted: u64,
    /// Author-days evicted from `voices`.
    pub voices_evicted: u64,
    /// Conversations not counted in an author-day of `voices` that had
    /// `sql.voice_conversations_max` already.
    pub voice_conversations_uncounted: u64,
    /// Open inbound messages left out of `open_conversations`, summed over refreshes.
    pub open_left_out: u64,
}

/// One late event, as `late_events` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LateRow {
    /// Event id.
    pub event_id: String,
    /// Brand.
    pub brand: String,
    /// Platform.
    pub platform: String,
    /// Kind.
    pub kind: String,
    /// Event time, µs.
    pub created_at: i64,
    /// The watermark it arrived behind, µs.
    pub watermark: Option<i64>,
    /// When it arrived, µs (wall).
    pub arrived_at: i64,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
}

/// One rejected message, as `dead_letters` shows it (no payload bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadRow {
    /// When it was read, µs (wall).
    pub received_at: i64,
    /// Reject reason (as the metric label).
    pub reason: &'static str,
    /// What was wrong, for humans.
    pub detail: String,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Payload size in bytes.
    pub payload_bytes: i64,
}

/// One inbound message awaiting an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRow {
    /// Brand.
    pub brand: String,
    /// Platform.
    pub platform: String,
    /// Department it was routed to.
    pub department: String,
    /// Event id.
    pub event_id: String,
    /// Event time, µs.
    pub created_at: i64,
}

/// An inbound message of an author to a brand (feeds `voices`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Voice<'a> {
    /// Brand addressed.
    pub brand: &'a str,
    /// Author.
    pub author_id: &'a str,
    /// Stakeholder type of the author.
    pub stakeholder: &'a str,
    /// Root of the conversation.
    pub root: &'a str,
    /// Event time, µs.
    pub created_at: i64,
    /// VADER compound of the message.
    pub compound: f64,
}

#[derive(Debug, Default)]
struct VoiceFigures {
    turns: u64,
    compound_sum: f64,
    stakeholder: String,
    /// Conversation roots, hashed and sorted (their count is what is shown), at most
    /// `sql.voice_conversations_max`. A sorted vector, not a hash set: 8 bytes a root with no
    /// spare buckets, and a few dozen at most to search. With a set of up to 10,000 roots per
    /// author-day, the bench's soak (20,000 authors writing to 5 brands at 43,000 messages/s)
    /// held 13.5 million roots after 8 minutes, growing ~30 MB a minute (2026-12-07).
    roots: Vec<u64>,
}

/// foldhash with a fixed seed: root hashes stand for roots within one process.
type Fixed = foldhash::fast::FixedState;
/// Author → figures, in insertion order (eviction takes the earliest of the oldest day).
type Authors = indexmap::IndexMap<String, VoiceFigures, foldhash::fast::RandomState>;
/// Brand → its authors of one day.
type DayVoices = indexmap::IndexMap<String, Authors, foldhash::fast::RandomState>;

const DAY_MICROS: i64 = 86_400_000_000;

#[derive(Debug, Default)]
struct Inner {
    windows: HashMap<WindowKey, WindowRecord>,
    windows_by_end: BTreeSet<(i64, WindowKey)>,
    late: VecDeque<LateRow>,
    dead: VecDeque<DeadRow>,
    dead_counts: BTreeMap<&'static str, u64>,
    open: Vec<OpenRow>,
    open_watermark: Option<i64>,
    /// Day → brand → author → figures; the oldest day first. Nested hash maps looked up by
    /// `&str`, not one ordered map of owned (day, brand, author) keys: that one allocated two
    /// strings and compared keys down a tree for every inbound message (6.5 % of the
    /// pipeline's CPU in the profile of the 1,000,000-event bench).
    voices: BTreeMap<i32, DayVoices>,
    /// Author-days in `voices`.
    voices_len: usize,
    counters: LiveCounters,
}

/// The live tables of one process, shared by the pipeline (writer) and the SQL server.
pub struct LiveTables {
    limits: LiveLimits,
    inner: Mutex<Inner>,
}

/// Removes one author-day of the oldest day (among its first brand's, the earliest first,
/// by swap removal: O(1)); false when there is none.
fn evict_voice(voices: &mut BTreeMap<i32, DayVoices>) -> bool {
    while let Some(mut day) = voices.first_entry() {
        let brands = day.get_mut();
        let evicted = brands
            .first_mut()
            .is_some_and(|(_, authors)| authors.swap_remove_index(0).is_some());
        if brands.first().is_some_and(|(_, a)| a.is_empty()) {
            brands.swap_remove_index(0);
        }
        if brands.is_empty() {
            day.remove();
        }
        if evicted {
            return true;
        }
    }
    false
}

impl std::fmt::Debug for LiveTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTables")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for LiveTables {
    fn default() -> Self {
        LiveTables::new(LiveLimits::default())
    }
}

/// The tables [`LiveTables::register`] adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Windows,
    Departments,
    Late,
    Dead,
    DeadCounts,
    Open,
    Voices,
}

impl LiveTables {
    /// Empty tables with these bounds.
    pub fn new(limits: LiveLimits) -> Self {
        LiveTables {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data: keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bounds.
    pub fn limits(&self) -> LiveLimits {
        self.limits
    }

    /// How often the bounds bit.
    pub fn counters(&self) -> LiveCounters {
        self.lock().counters
    }

    /// Emitted window records: each replaces the earlier revision of its window; a final record
    /// is replaced by nothing but a final one (a replay after a restore can emit lower revisions).
    pub fn windows(&self, records: &[WindowRecord]) {
        if records.is_empty() {
            return;
        }
        let mut g = self.lock();
        for r in records {
            let key = r.key();
            let end = r.window_end.timestamp_micros();
            match g.windows.get_mut(&key) {
                Some(old) if (old.is_final, old.revision) > (r.is_final, r.revision) => {}
                Some(old) => *old = r.clone(),
                None => {
                    g.windows_by_end.insert((end, key.clone()));
                    g.windows.insert(key, r.clone());
                }
            }
        }
        while g.windows.len() > self.limits.windows_max {
            let Some((_, key)) = g.windows_by_end.pop_first() else {
                break;
            };
            g.windows.remove(&key);
            g.counters.windows_evicted += 1;
        }
    }

    /// Late events (most recent kept).
    pub fn late(&self, rows: impl IntoIterator<Item = LateRow>) {
        let mut g = self.lock();
        for r in rows {
            if g.late.len() >= self.limits.samples_max {
                g.late.pop_front();
            }
            g.late.push_back(r);
        }
    }

    /// Rejected messages (counted by reason; the most recent kept without payload).
    pub fn dead_letters(&self, rows: impl IntoIterator<Item = DeadRow>) {
        let mut g = self.lock();
        for r in rows {
            *g.dead_counts.entry(r.reason).or_default() += 1;
            if g.dead.len() >= self.limits.samples_max {
                g.dead.pop_front();
            }
            g.dead.push_back(r);
        }
    }

    /// Inbound messages of authors to brands.
    pub fn voices<'a>(&self, voices: impl IntoIterator<Item = Voice<'a>>) {
        let mut guard = self.lock();
        let g = &mut *guard;
        for v in voices {
            let day = i32::try_from(v.created_at.div_euclid(DAY_MICROS)).unwrap_or(i32::MAX);
            let brands = g.voices.entry(day).or_default();
            let authors = match brands.get_mut(v.brand) {
                Some(a) => a,
                None => brands.entry(v.brand.to_string()).or_default(),
            };
            let f = match authors.get_index_of(v.author_id) {
                Some(i) => &mut authors[i],
                None => {
                    g.voices_len += 1;
                    authors.entry(v.author_id.to_string()).or_default()
                }
            };
            f.turns += 1;
            f.compound_sum += v.compound;
            if f.stakeholder != v.stakeholder {
                f.stakeholder = v.stakeholder.to_string();
            }
            let root = Fixed::default().hash_one(v.root);
            if let Err(at) = f.roots.binary_search(&root) {
                if f.roots.len() < self.limits.voice_conversations_max {
                    f.roots.insert(at, root);
                } else {
                    g.counters.voice_conversations_uncounted += 1;
                }
            }
            while g.voices_len > self.limits.voices_max {
                if !evict_voice(&mut g.voices) {
                    break;
                }
                g.voices_len -= 1;
                g.counters.voices_evicted += 1;
            }
        }
    }

    /// Replaces the open inbound messages: `rows` of `total` waiting (the oldest
    /// `sql.open_conversations_max` are kept).
    pub fn set_open(&self, mut rows: Vec<OpenRow>, total: usize, watermark: Option<i64>) {
        let left_out = total.saturating_sub(self.limits.open_max.min(rows.len()));
        if rows.len() > self.limits.open_max {
            rows.select_nth_unstable_by_key(self.limits.open_max, |r| r.created_at);
            rows.truncate(self.limits.open_max);
        }
        rows.sort_by(|a, b| {
            (a.created_at, &a.brand, &a.event_id).cmp(&(b.created_at, &b.brand, &b.event_id))
        });
        let mut g = self.lock();
        g.open = rows;
        g.open_watermark = watermark;
        g.counters.open_left_out = g.counters.open_left_out.saturating_add(left_out as u64);
    }

    /// Registers every live table in `ctx`.
    pub fn register(self: &Arc<Self>, ctx: &SessionContext) -> anyhow::Result<()> {
        for (name, which) in [
            ("engagement_windows_live", Which::Windows),
            ("engagement_window_departments_live", Which::Departments),
            ("late_events", Which::Late),
            ("dead_letters", Which::Dead),
            ("dead_letter_counts", Which::DeadCounts),
            ("open_conversations", Which::Open),
            ("voices", Which::Voices),
        ] {
            let table = LiveTable {
                which,
                schema: schema(which),
                live: Arc::clone(self),
            };
            ctx.register_table(name, Arc::new(table))
                .map_err(|e| anyhow::anyhow!("internal: registering {name}: {e}"))?;
        }
        Ok(())
    }

    /// The current rows of one table.
    fn batch(&self, which: Which) -> anyhow::Result<RecordBatch> {
        let schema = schema(which);
        let g = self.lock();
        let columns: Vec<ArrayRef> = match which {
            Which::Windows | Which::Departments => {
                let mut records: Vec<WindowRecord> = g.windows.values().cloned().collect();
                drop(g);
                records.sort_by_key(WindowRecord::key);
                let b = if which == Which::Windows {
                    arrow_form::windows_batch(&records)?
                } else {
                    arrow_form::departments_batch(&records)?
                };
                // The history's `date` partition column: the UTC date of window_start.
                let starts = match which {
                    Which::Windows => records
                        .iter()
                        .map(|r| r.window_start.format("%Y-%m-%d").to_string())
                        .collect::<Vec<_>>(),
                    _ => records
                        .iter()
                        .flat_map(|r| {
                            let d = r.window_start.format("%Y-%m-%d").to_string();
                            std::iter::repeat_n(d, r.departments.len())
                        })
                        .collect(),
                };
                let mut cols = b.columns().to_vec();
                cols.push(Arc::new(StringArray::from(starts)));
                cols
            }
            Which::Late => {
                let mut ids = StringBuilder::new();
                let mut brands = StringBuilder::new();
                let mut platforms = StringBuilder::new();
                let mut kinds = StringBuilder::new();
                let mut created = ts();
                let mut watermark = ts();
                let mut behind = Float64Builder::new();
                let mut arrived = ts();
                let mut parts = Int32Builder::new();
                let mut offs = Int64Builder::new();
                for r in &g.late {
                    ids.append_value(&r.event_id);
                    brands.append_value(&r.brand);
                    platforms.append_value(&r.platform);
                    kinds.append_value(&r.kind);
                    created.append_value(r.created_at);
                    watermark.append_option(r.watermark);
                    #[allow(clippy::cast_precision_loss)] // seconds for display
                    behind.append_option(r.watermark.map(|w| (w - r.created_at) as f64 / 1e6));
                    arrived.append_value(r.arrived_at);
                    parts.append_value(r.partition);
                    offs.append_value(r.offset);
                }
                vec![
                    Arc::new(ids.finish()),
                    Arc::new(brands.finish()),
                    Arc::new(platforms.finish()),
                    Arc::new(kinds.finish()),
                    Arc::new(created.finish().with_timezone("UTC")),
                    Arc::new(watermark.finish().with_timezone("UTC")),
                    Arc::new(behind.finish()),
                    Arc::new(arrived.finish().with_timezone("UTC")),
                    Arc::new(parts.finish()),
                    Arc::new(offs.finish()),
                ]
            }
            Which::Dead => {
                let mut received = ts();
                let mut reasons = StringBuilder::new();
                let mut details = StringBuilder::new();
                let mut topics = StringBuilder::new();
                let mut parts = Int32Builder::new();
                let mut offs = Int64Builder::new();
                let mut sizes = Int64Builder::new();
                for r in &g.dead {
                    received.append_value(r.received_at);
                    reasons.append_value(r.reason);
                    details.append_value(&r.detail);
                    topics.append_value(&r.topic);
                    parts.append_value(r.partition);
                    offs.append_value(r.offset);
                    sizes.append_value(r.payload_bytes);
                }
                vec![
                    Arc::new(received.finish().with_timezone("UTC")),
                    Arc::new(reasons.finish()),
                    Arc::new(details.finish()),
                    Arc::new(topics.finish()),
                    Arc::new(parts.finish()),
                    Arc::new(offs.finish()),
                    Arc::new(sizes.finish()),
                ]
            }
            Which::DeadCounts => {
                let mut reasons = StringBuilder::new();
                let mut counts = UInt64Builder::new();
                for reason in ingest::RejectReason::ALL {
                    reasons.append_value(reason.as_str());
                    counts.append_value(g.dead_counts.get(reason.as_str()).copied().unwrap_or(0));
                }
                vec![Arc::new(reasons.finish()), Arc::new(counts.finish())]
            }
            Which::Open => {
                let mut brands = StringBuilder::new();
                let mut platforms = StringBuilder::new();
                let mut depts = StringBuilder::new();
                let mut ids = StringBuilder::new();
                let mut created = ts();
                let mut age = Float64Builder::new();
                let mut watermark = ts();
                for r in &g.open {
                    brands.append_value(&r.brand);
                    platforms.append_value(&r.platform);
                    depts.append_value(&r.department);
                    ids.append_value(&r.event_id);
                    created.append_value(r.created_at);
                    #[allow(clippy::cast_precision_loss)] // seconds for display
                    age.append_option(
                        // 0 for a message newer than the watermark (within out-of-orderness).
                        g.open_watermark
                            .map(|w| (w - r.created_at).max(0) as f64 / 1e6),
                    );
                    watermark.append_option(g.open_watermark);
                }
                vec![
                    Arc::new(brands.finish()),
                    Arc::new(platforms.finish()),
                    Arc::new(depts.finish()),
                    Arc::new(ids.finish()),
                    Arc::new(created.finish().with_timezone("UTC")),
                    Arc::new(age.finish()),
                    Arc::new(watermark.finish().with_timezone("UTC")),
                ]
            }
            Which::Voices => {
                // Rank per (brand, day): most conversations, then most turns, then author id.
                let mut rows: Vec<((i32, &String, &String), &VoiceFigures)> = g
                    .voices
                    .iter()
                    .flat_map(|(day, brands)| {
                        brands.iter().flat_map(move |(brand, authors)| {
                            authors.iter().map(move |(a, f)| ((*day, brand, a), f))
                        })
                    })
                    .collect();
                rows.sort_by(|(ka, a), (kb, b)| {
                    (ka.1, ka.0)
                        .cmp(&(kb.1, kb.0))
                        .then(b.roots.len().cmp(&a.roots.len()))
                        .then(b.turns.cmp(&a.turns))
                        .then(ka.2.cmp(kb.2))
                });
                let mut brands = StringBuilder::new();
                let mut days = Date32Builder::new();
                let mut authors = StringBuilder::new();
                let mut convs = UInt64Builder::new();
                let mut turns = UInt64Builder::new();
                let mut sentiment = Float64Builder::new();
                let mut stakeholders = StringBuilder::new();
                let mut ranks = UInt32Builder::new();
                let mut rank = 0u32;
                let mut group: Option<(&str, i32)> = None;
                for ((day, brand, author), f) in rows {
                    if group != Some((brand.as_str(), day)) {
                        group = Some((brand.as_str(), day));
                        rank = 0;
                    }
                    rank += 1;
                    brands.append_value(brand);
                    days.append_value(day);
                    authors.append_value(author);
                    convs.append_value(f.roots.len() as u64);
                    turns.append_value(f.turns);
                    #[allow(clippy::cast_precision_loss)] // a mean for display
                    sentiment.append_value(f.compound_sum / f.turns.max(1) as f64);
                    stakeholders.append_value(&f.stakeholder);
                    ranks.append_value(rank);
                }
                vec![
                    Arc::new(brands.finish()),
                    Arc::new(days.finish()),
                    Arc::new(authors.finish()),
                    Arc::new(convs.finish()),
                    Arc::new(turns.finish()),
                    Arc::new(sentiment.finish()),
                    Arc::new(stakeholders.finish()),
                    Arc::new(ranks.finish()),
                ]
            }
        };
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

fn ts() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::new()
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn with_date(base: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("date", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

fn schema(which: Which) -> SchemaRef {
    static SCHEMAS: OnceLock<Vec<SchemaRef>> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
        vec![
            with_date(&arrow_form::window_schema()),
            with_date(&arrow_form::department_schema()),
            Arc::new(Schema::new(vec![
                f("event_id", DataType::Utf8, false),
                f("brand", DataType::Utf8, false),
                f("platform", DataType::Utf8, false),
                f("kind", DataType::Utf8, false),
                f("created_at", ts_type(), false),
                f("watermark", ts_type(), true),
                f("behind_watermark_seconds", DataType::Float64, true),
                f("arrived_at", ts_type(), false),
                f("kafka_partition", DataType::Int32, false),
                f("kafka_offset", DataType::Int64, false),
            ])),
            Arc::new(Schema::new(vec![
                f("received_at", ts_type(), false),
                f("reason", DataType::Utf8, false),
                f("detail", DataType::Utf8, false),
                f("topic", DataType::Utf8, false),
                f("kafka_partition", DataType::Int32, false),
                f("kafka_offset", DataType::Int64, false),
                f("payload_bytes", DataType::Int64, false),
            ])),
            Arc::new(Schema::new(vec![
                f("reason", DataType::Utf8, false),
                f("messages", DataType::UInt64, false),
            ])),
            Arc::new(Schema::new(vec![
                f("brand", DataType::Utf8, false),
                f("platform", DataType::Utf8, false),
                f("department", DataType::Utf8, false),
                f("event_id", DataType::Utf8, false),
                f("created_at", ts_type(), false),
                f("age_seconds", DataType::Float64, true),
                f("watermark", ts_type(), true),
            ])),
            Arc::new(Schema::new(vec![
                f("brand", DataType::Utf8, false),
                f("day", DataType::Date32, false),
                f("author_id", DataType::Utf8, false),
                f("conversations", DataType::UInt64, false),
                f("turns", DataType::UInt64, false),
                f("mean_compound", DataType::Float64, false),
                f("stakeholder", DataType::Utf8, false),
                f("rank", DataType::UInt32, false),
            ])),
        ]
    });
    let i = match which {
        Which::Windows => 0,
        Which::Departments => 1,
        Which::Late => 2,
        Which::Dead => 3,
        Which::DeadCounts => 4,
        Which::Open => 5,
        Which::Voices => 6,
    };
    Arc::clone(&all[i])
}

/// A live table: each scan serves a snapshot of the current rows.
#[derive(Debug)]
struct LiveTable {
    which: Which,
    schema: SchemaRef,
    live: Arc<LiveTables>,
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = self
            .live
            .batch(self.which)
            .map_err(|e| DataFusionError::External(e.into()))?;
        MemTable::try_new(Arc::clone(&self.schema), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice<'a>(author: &'a str, root: &'a str, t: i64, compound: f64) -> Voice<'a> {
        Voice {
            brand: "acme",
            author_id: author,
            stakeholder: "customer",
            root,
            created_at: t,
            compound,
        }
    }

    #[tokio::test]
    async fn tables_answer_sql_and_bounds_bite() {
        let live = Arc::new(LiveTables::new(LiveLimits {
            windows_max: 10,
            samples_max: 2,
            voices_max: 3,
            voice_conversations_max: 2,
            open_max: 1,
        }));
        let ctx = SessionContext::new();
        live.register(&ctx).unwrap();
        let h = 3_600_000_000;
        live.voices([
            voice("u1", "c1", 0, 0.5),
            voice("u1", "c1", 1, -0.5),
            voice("u2", "c2", 2, 0.2),
            voice("u2", "c3", 3, 0.4),
        ]);
        let sql = |q: &'static str| {
            let ctx = ctx.clone();
            async move {
                let b = ctx.sql(q).await.unwrap().collect().await.unwrap();
                datafusion::arrow::util::pretty::pretty_format_batches(&b)
                    .unwrap()
                    .to_string()
            }
        };
        let v = sql(
            "SELECT author_id, conversations, turns, round(mean_compound, 2) AS s, rank \
             FROM voices ORDER BY rank",
        )
        .await;
        let got: Vec<String> = v
            .lines()
            .filter(|l| l.starts_with("| u"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        // u2 spoke in two conversations, u1 twice in one: u2 ranks first.
        assert_eq!(
            got,
            vec!["| u2 | 2 | 2 | 0.3 | 1 |", "| u1 | 1 | 2 | 0.0 | 2 |"],
            "{v}"
        );
        // u2's third conversation is past sql.voice_conversations_max (2): its turn counts,
        // the conversation does not, and that is counted. Its first conversation again is
        // no new one.
        live.voices([voice("u2", "c9", 4, 0.3), voice("u2", "c2", 5, 0.3)]);
        assert_eq!(live.counters().voice_conversations_uncounted, 1);
        let v =
            sql("SELECT author_id, conversations, turns FROM voices WHERE author_id = 'u2'").await;
        let row: Vec<String> = v
            .lines()
            .filter(|l| l.starts_with("| u"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(row, vec!["| u2 | 2 | 4 |"], "{v}");
        // A third and fourth author-day: the bound (3) evicts the oldest day's first entry.
        live.voices([
            voice("u3", "c4", 24 * h, 0.0),
            voice("u4", "c5", 24 * h, 0.0),
        ]);
        assert_eq!(live.counters().voices_evicted, 1);
        let kept = sql("SELECT author_id FROM voices ORDER BY author_id").await;
        let kept: Vec<&str> = kept
            .lines()
            .filter_map(|l| l.strip_prefix("| "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|a| a.starts_with('u'))
            .collect();
        // Bounded at 3, the oldest day's earliest author (u1) gone, the new day whole.
        assert_eq!(kept, vec!["u2", "u3", "u4"], "{kept:?}");

        live.dead_letters((0..3).map(|i| DeadRow {
            received_at: i,
            reason: "invalid_json",
            detail: format!("bad {i}"),
            topic: "in".into(),
            partition: 0,
            offset: i,
            payload_bytes: 10,
        }));
        let d = sql("SELECT count(*) AS n, min(kafka_offset) AS first FROM dead_letters").await;
        assert!(d.contains("| 2 | 1     |"), "the 2 most recent kept: {d}");
        let c = sql("SELECT messages FROM dead_letter_counts WHERE reason = 'invalid_json'").await;
        assert!(
            c.contains("| 3        |"),
            "counts cover every message: {c}"
        );

        live.set_open(
            vec![
                OpenRow {
                    brand: "acme".into(),
                    platform: "x".into(),
                    department: "support".into(),
                    event_id: "m2".into(),
                    created_at: 2 * h,
                },
                OpenRow {
                    brand: "acme".into(),
                    platform: "x".into(),
                    department: "billing".into(),
                    event_id: "m1".into(),
                    created_at: h,
                },
            ],
            2,
            Some(3 * h),
        );
        let o = sql("SELECT event_id, age_seconds FROM open_conversations").await;
        assert!(
            o.contains("| m1       | 7200.0      |"),
            "the oldest is kept: {o}"
        );
        assert_eq!(live.counters().open_left_out, 1);
    }
}
