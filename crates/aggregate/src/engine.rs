//! The window engine: DataFusion aggregates each micro-batch of facts once, the engine merges
//! the partial aggregates into pane state and emits window records as the watermark moves.
//!
//! ```text
//!  fact batch ──► DataFusion SQL (GROUP BY pane and keys)
//!                    │ partial aggregates, one row per (pane, brand, platform,
//!                    ▼ stakeholder, department)
//!               merge each row into one pane per spec (Acc), mark the windows
//!               covering the pane as changed (WindowState: revision, closed)
//!                    ──► advance(watermark) ──► combine each emitted window's
//!                        panes ──► WindowRecord revisions
//! ```
//!
//! Incremental: history is never re-scanned. A batch's facts are aggregated at the finest grain
//! (all grouping columns plus department), and the merge rolls rows up into the configured
//! record keys, keeping the department breakdown inside each record.
//!
//! Panes ("No pane, no gain", Li et al., SIGMOD Record 2005; what Flink and Arroyo do for
//! sliding windows): DataFusion groups facts by a slice of time as long as the greatest common
//! divisor of every spec's slide, not by window, so the query reads each fact once. The engine
//! then keeps the partial aggregates of each spec per *spec pane*, a slice as long as that
//! spec's slide: every window of the spec is `size / slide` whole panes, and a pane lies inside
//! a window or outside it, never across its edge. Each row is merged into one pane per spec
//! (2 with the default specs: 60 s tumbling, 1 h sliding by 5 min), where keeping state per
//! window merged it into every window covering it (13), stored every value 13 times and made
//! ingest cost grow with the overlap. A window's figures are combined from its panes when it is
//! emitted; sums add, response times are merged from sorted runs, thread depth takes the most
//! turns per conversation over the panes. The records are the same as with state per window
//! (the golden window cases pin them).
//!
//! Emission (the metrics reference, "Windows and time"):
//! * a window is emitted when the watermark passes its end (`closed`, revision 1 unless early
//!   results came before);
//! * emitted again, revision + 1, whenever its figures change (answers to its inbound messages,
//!   events within the allowed lateness);
//! * emitted a last time with `final = true` when the watermark passes end + horizon, then
//!   dropped from memory; its first pane goes with it (the last window that reads that pane).
//!
//! Determinism: sums of VADER scores are kept in fixed point (compound is rounded to 4
//! decimals by VADER), and quantiles and means are computed over sorted values, so a final
//! record does not depend on how events were split into batches or ordered within the
//! out-of-orderness bound.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The engine's hash maps on the ingest path: foldhash (randomly seeded per process, as std's
/// SipHash is) instead of SipHash, which was ~5 % of a bounded run's CPU in `perf` (one
/// lookup per pane row and window; the end-to-end ingest time did not move measurably). Iteration order never reaches output: snapshots are
/// sorted, and the only order-dependent reader (`thread_depth`) sums integers.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::{DataType, SchemaRef};
use chrono::{DateTime, Utc};
use datafusion::catalog::TableProvider;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};
use model::config::GroupKey;
use model::window_record::{
    Backlog, DepartmentFigures, Distribution, QuantileMethod, StakeholderMix, WindowRecord,
};
use serde::{Deserialize, Serialize};

use crate::current_batch::CurrentBatch;
use crate::distribution::{BacklogBucket, summarize_sorted};
use crate::error::AggregateError;
use crate::window::WindowSpec;

/// Which keys besides the brand window records are grouped by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupBy {
    /// Group by platform.
    pub platform: bool,
    /// Group by stakeholder type.
    pub stakeholder: bool,
    /// Group by department.
    pub department: bool,
}

impl GroupBy {
    /// From the configured keys.
    pub fn of(keys: &[GroupKey]) -> Self {
        GroupBy {
            platform: keys.contains(&GroupKey::Platform),
            stakeholder: keys.contains(&GroupKey::Stakeholder),
            department: keys.contains(&GroupKey::Department),
        }
    }
}

/// Engine settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Window specs, computed side by side.
    pub specs: Vec<WindowSpec>,
    /// Record grouping besides the brand.
    pub group_by: GroupBy,
    /// Response horizon H, µs: a window is final when the watermark passes end + H.
    pub horizon_micros: i64,
    /// Windows held in memory; beyond it the oldest is finalised early.
    pub open_windows_max: usize,
    /// First-response times (and unanswered messages) kept per window.
    pub values_per_window_max: usize,
    /// Conversations tracked per window for thread depth.
    pub conversations_per_window_max: usize,
    /// Allowed lateness, µs: upstream, an event older than the watermark minus this is late
    /// and never reaches the engine. So once the watermark passes a window's end plus this, no
    /// event can join the window any more: its thread depth is sealed (only answers, which
    /// carry no conversation, still change it), and each pane's conversations are released
    /// once every window covering it is sealed, rather than kept until final (end plus the
    /// response horizon).
    pub allowed_lateness_micros: i64,
    /// Per brand, its competitor set for share of voice (itself excluded; it is added).
    pub competitors: HashMap<String, Vec<String>>,
    /// A closed window whose figures changed is emitted again at most this often, µs of
    /// `emitted_at` (wall clock) since its previous emission; 0 = at every advance that finds
    /// it changed. The emission at close and the final are never held back.
    pub revision_interval_micros: i64,
}

/// Counters of the engine; they only grow (except `windows_open`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Fact rows aggregated.
    pub facts: u64,
    /// Micro-batches aggregated.
    pub batches: u64,
    /// Window records emitted (all revisions).
    pub records_emitted: u64,
    /// Of those, final.
    pub records_final: u64,
    /// Windows finalised before their time because `open_windows_max` was reached.
    pub forced_final: u64,
    /// First-response times or unanswered messages not kept (`values_per_window_max`, per
    /// spec pane).
    pub values_dropped: u64,
    /// Conversations not tracked for thread depth (`conversations_per_window_max`, per spec
    /// pane).
    pub conversations_dropped: u64,
    /// Partial aggregates for windows that were already final (counted, not applied): one per
    /// (partial aggregate row of the main query, final window covering its pane), so a late
    /// row counts once for every final window that covers it (up to 13 with the default
    /// specs); late events are counted per event before the engine
    /// (`cluetrain_late_events_total`).
    pub updates_after_final: u64,
    /// Windows in memory now.
    pub windows_open: u64,
    /// Closed windows with changed figures whose next revision waits for
    /// `revision_interval_micros` to pass (at the last advance).
    pub revisions_pending: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
struct Group {
    brand: String,
    platform: Option<String>,
    stakeholder: Option<String>,
    department: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
struct StateKey {
    spec: usize,
    start: i64,
    group: Group,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DeptAcc {
    inbound: u64,
    negative: u64,
    answered: u64,
    frt: Vec<f64>,
}

/// The additive figures of a pane, and of a window (the sum over its panes).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Counts {
    inbound: u64,
    responses: u64,
    broadcasts: u64,
    to_broadcast: u64,
    positive: u64,
    negative: u64,
    compound_e4: i64,
    reach: i64,
    answered: u64,
    effect_e4: i64,
    effects: u64,
    stakeholders: StakeholderMix,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.inbound += o.inbound;
        self.responses += o.responses;
        self.broadcasts += o.broadcasts;
        self.to_broadcast += o.to_broadcast;
        self.positive += o.positive;
        self.negative += o.negative;
        self.compound_e4 += o.compound_e4;
        self.reach += o.reach;
        self.answered += o.answered;
        self.effect_e4 += o.effect_e4;
        self.effects += o.effects;
        let (m, n) = (&mut self.stakeholders, &o.stakeholders);
        m.customer += n.customer;
        m.employee += n.employee;
        m.partner += n.partner;
        m.supplier += n.supplier;
        m.investor += n.investor;
        m.press += n.press;
        m.unknown += n.unknown;
    }

    fn net_sentiment(&self) -> Option<f64> {
        let pn = self.positive + self.negative;
        (pn > 0).then(|| ratio_signed(self.positive, self.negative, pn))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Acc {
    counts: Counts,
    frt: Vec<f64>,
    frt_business: Vec<f64>,
    /// Times (µs) of inbound messages not answered yet: a multiset, since equal times are
    /// interchangeable for the backlog's ages.
    unanswered: BTreeMap<i64, u32>,
    unanswered_len: usize,
    departments: BTreeMap<String, DeptAcc>,
    /// Conversation root hash → most turns seen in the pane. Emptied once every window
    /// covering the pane is sealed (`sealed`).
    roots: FastMap<u64, u32>,
    /// Every window covering the pane has its thread depth sealed, and `roots` was released:
    /// a conversation row for it now (only after the watermark went back, on a rebalance) is
    /// counted as dropped. Absent in checkpoints written before sealing: false.
    #[serde(default)]
    sealed: bool,
    /// The engine batch that last touched this pane (not checkpointed): the windows covering
    /// a pane are marked changed once per batch, not once per row.
    #[serde(skip)]
    batch: u64,
    /// Its response-time vectors are sorted (not checkpointed: false after a restore, so they
    /// are sorted once more). An hour window sliding by 5 min reads each pane at 12 windows'
    /// emissions: sorting only after new values arrived, not at each of them.
    #[serde(skip)]
    sorted: bool,
}

/// A window's emission state; its figures are in its panes (`WindowEngine::panes`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WindowState {
    revision: u32,
    closed: bool,
    changed: bool,
    /// `emitted_at` of its last emission, µs (0: none yet), for `revision_interval_micros`.
    /// Checkpointed, so that a restored run holds back the same revisions (absent in
    /// checkpoints written before it: 0, emitted at the next change).
    #[serde(default)]
    emitted_at: i64,
    /// Its figures fixed once the watermark passed its end plus the allowed lateness (no event
    /// can join it after that). Absent in checkpoints written before sealing: sealed at the
    /// next advance.
    #[serde(default)]
    sealed: Option<Sealed>,
}

/// The figures of a window that no event can change any more, kept instead of what they were
/// computed from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Sealed {
    /// Mean most turns per conversation (`None`: no conversation).
    thread_depth: Option<f64>,
}

/// (spec, group) → (the last finalised window's start, its net sentiment).
type NetKey = (usize, Group);
type NetValue = (i64, Option<f64>);

/// The window state of some brands, as a checkpoint keeps it ([`WindowEngine::snapshot`]).
///
/// Everything needed to go on as if nothing happened: each pane's partial aggregates, each
/// window's revision and whether it closed, and the side state later windows read (the previous
/// window's net sentiment, inbound per brand for share of voice). The indexes by end time are
/// derived and rebuilt on restore.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineSlice {
    windows: Vec<(StateKey, WindowState)>,
    panes: Vec<(StateKey, Acc)>,
    last_net: Vec<(NetKey, NetValue)>,
    brand_inbound: Vec<((usize, i64, String), u64)>,
    final_floor: Option<i64>,
    /// Per brand: windows final at or before this time were emitted as final (the engine's
    /// watermark then); facts for them are not applied after a restore either.
    floors: Vec<(String, i64)>,
    /// The engine's watermark when the slice was taken.
    watermark: Option<i64>,
}

impl EngineSlice {
    /// Windows in this slice.
    pub fn windows(&self) -> usize {
        self.windows.len()
    }
}

/// An [`EngineSlice`] borrowed from the engine ([`WindowEngine::snapshot`]): what a
/// checkpoint writes, without copying the window state first (the copy was as big as the
/// state itself, at the moment memory peaks). It serialises exactly as an `EngineSlice`:
/// the same fields in the same order, references serialising as what they point to.
#[derive(Debug, Serialize)]
pub struct EngineSliceRef<'a> {
    windows: Vec<(&'a StateKey, &'a WindowState)>,
    panes: Vec<(&'a StateKey, &'a Acc)>,
    last_net: Vec<(&'a NetKey, NetValue)>,
    brand_inbound: Vec<(&'a (usize, i64, String), u64)>,
    final_floor: Option<i64>,
    floors: Vec<(String, i64)>,
    watermark: Option<i64>,
}

impl EngineSliceRef<'_> {
    /// Windows in this slice.
    pub fn windows(&self) -> usize {
        self.windows.len()
    }
}

/// Event-time window aggregation over DataFusion.
pub struct WindowEngine {
    cfg: EngineConfig,
    ctx: SessionContext,
    /// Pane length, µs: the greatest common divisor of the specs' slides.
    pane_micros: i64,
    main_sql: String,
    depth_sql: String,
    /// The two queries' plans, built at the first batch.
    plans: Option<Plans>,
    /// Emission state per window (spec, window start, group).
    windows: FastMap<StateKey, WindowState>,
    /// Partial aggregates per spec pane (spec, pane start, group): a slide-long slice of the
    /// spec's windows. A pane exists while the last window covering it (the one starting with
    /// it) is not final.
    panes: FastMap<StateKey, Acc>,
    /// Not yet closed, by end time.
    pending_close: BTreeSet<(i64, StateKey)>,
    /// Every window, by the time it becomes final (end + H).
    pending_final: BTreeSet<(i64, StateKey)>,
    /// Windows to seal by seal time (end plus allowed lateness).
    pending_seal: BTreeSet<(i64, StateKey)>,
    /// Windows whose figures changed since their last emission.
    changed: BTreeSet<StateKey>,
    /// Per (spec, group): the last finalised window's start and net sentiment.
    last_net: FastMap<(usize, Group), (i64, Option<f64>)>,
    /// Inbound per (spec, window start, brand), for share of voice.
    brand_inbound: FastMap<(usize, i64, String), u64>,
    /// Records finalised early by the state bound, handed out at the next advance.
    forced: Vec<WindowRecord>,
    /// Scratch map for combining panes' conversations at emission (kept for its capacity).
    scratch_roots: FastMap<u64, u32>,
    watermark: Option<i64>,
    /// Windows becoming final at or before this time were finalised (early, by the state
    /// bound): later facts for them are counted, not applied, so a final is never followed by
    /// a second "revision 1".
    final_floor: Option<i64>,
    /// Per brand restored from a checkpoint: the watermark its windows had been finalised up
    /// to (see [`EngineSlice`]).
    brand_floors: HashMap<String, i64>,
    /// Since the last [`WindowEngine::reset`], a partition came back whose windows never saw
    /// a watermark: the engine's restarts unknown (see [`WindowEngine::start_unjudged`]).
    unjudged: bool,
    stats: EngineStats,
}

/// The facts table name inside the engine's DataFusion session.
const FACTS: &str = "facts";

/// The engine's two queries, planned once over the micro-batch table ([`CurrentBatch`]) and
/// executed for every batch.
struct Plans {
    table: Arc<CurrentBatch>,
    main: Arc<dyn ExecutionPlan>,
    depth: Arc<dyn ExecutionPlan>,
}

impl WindowEngine {
    /// An engine with no windows.
    pub fn new(cfg: EngineConfig) -> Self {
        // One partition: a micro-batch is small, and repartitioning it costs more than it saves.
        let session = SessionConfig::new()
            .with_target_partitions(1)
            .with_information_schema(false);
        let ctx = SessionContext::new_with_config(session);
        let pane_micros = pane_micros(&cfg.specs);
        let (main_sql, depth_sql) = queries(pane_micros);
        WindowEngine {
            cfg,
            ctx,
            pane_micros,
            main_sql,
            depth_sql,
            plans: None,
            windows: FastMap::default(),
            panes: FastMap::default(),
            pending_close: BTreeSet::new(),
            pending_final: BTreeSet::new(),
            pending_seal: BTreeSet::new(),
            changed: BTreeSet::new(),
            last_net: FastMap::default(),
            brand_inbound: FastMap::default(),
            forced: Vec::new(),
            scratch_roots: FastMap::default(),
            watermark: None,
            final_floor: None,
            brand_floors: HashMap::new(),
            unjudged: false,
            stats: EngineStats::default(),
        }
    }

    /// The pane length, µs: facts are aggregated per pane, then merged into windows.
    pub fn pane_micros(&self) -> i64 {
        self.pane_micros
    }

    /// The SQL run over each micro-batch (for docs and EXPLAIN).
    pub fn sql(&self) -> (&str, &str) {
        (&self.main_sql, &self.depth_sql)
    }

    /// The state of the windows of `brands`, for a checkpoint (the engine keeps it: a snapshot
    /// does not change what happens next), borrowed: checkpoints encode it as it is.
    pub fn snapshot(&self, brands: &[&str]) -> EngineSliceRef<'_> {
        let set: std::collections::HashSet<&str> = brands.iter().copied().collect();
        let owns = |b: &str| set.contains(b);
        let floors = brands
            .iter()
            .filter_map(|b| {
                // The instance-wide floor of forced finals goes with each brand: a restore
                // elsewhere applies it to these brands only.
                let f = [
                    self.watermark,
                    self.brand_floors.get(*b).copied(),
                    self.final_floor,
                ]
                .into_iter()
                .flatten()
                .max()?;
                Some(((*b).to_string(), f))
            })
            .collect();
        let mut windows: Vec<(&StateKey, &WindowState)> = self
            .windows
            .iter()
            .filter(|(k, _)| owns(&k.group.brand))
            .collect();
        windows.sort_by(|a, b| a.0.cmp(b.0));
        let mut panes: Vec<(&StateKey, &Acc)> = self
            .panes
            .iter()
            .filter(|(k, _)| owns(&k.group.brand))
            .collect();
        panes.sort_by(|a, b| a.0.cmp(b.0));
        let mut last_net: Vec<_> = self
            .last_net
            .iter()
            .filter(|((_, g), _)| owns(&g.brand))
            .map(|(k, v)| (k, *v))
            .collect();
        last_net.sort_by(|a, b| a.0.cmp(b.0));
        let mut brand_inbound: Vec<_> = self
            .brand_inbound
            .iter()
            .filter(|((_, _, b), _)| owns(b))
            .map(|(k, v)| (k, *v))
            .collect();
        brand_inbound.sort_by(|a, b| a.0.cmp(b.0));
        EngineSliceRef {
            windows,
            panes,
            last_net,
            brand_inbound,
            final_floor: self.final_floor,
            floors,
            watermark: self.watermark,
        }
    }

    /// Adds a slice from a checkpoint to the state (after [`WindowEngine::reset`], or for
    /// brands the engine does not hold).
    pub fn restore(&mut self, slice: EngineSlice) {
        let h = self.cfg.horizon_micros;
        for (key, st) in slice.windows {
            let size = self
                .cfg
                .specs
                .get(key.spec)
                .map_or(0, WindowSpec::size_micros);
            let end = key.start.saturating_add(size);
            if !st.closed {
                self.pending_close.insert((end, key.clone()));
            }
            if st.sealed.is_none() {
                self.pending_seal.insert((self.seal_at(end), key.clone()));
            }
            self.pending_final
                .insert((end.saturating_add(h), key.clone()));
            if st.changed {
                self.changed.insert(key.clone());
            }
            self.windows.insert(key, st);
        }
        self.panes.extend(slice.panes);
        self.last_net.extend(slice.last_net);
        self.brand_inbound.extend(slice.brand_inbound);
        // The slice's floor of forced finals holds for its own brands, not for every brand
        // here: merged into this engine's instance-wide `final_floor`, a partition taken over
        // from an instance that was behind would have its facts counted as after-final.
        // Snapshots fold it into each brand's floor; checkpoints written before that carry
        // it whole, so it is folded into the slice's brand floors here too.
        for (b, f) in slice.floors {
            let f = slice.final_floor.map_or(f, |ff| f.max(ff));
            let e = self.brand_floors.entry(b).or_insert(f);
            *e = (*e).max(f);
        }
        // The lowest restored watermark: windows of a partition taken over from an instance
        // that was behind must not close before its events arrive. A slice taken before its
        // engine ever had a watermark is the lowest of all.
        match slice.watermark {
            Some(w) if !self.unjudged => {
                self.watermark = Some(self.watermark.map_or(w, |c| c.min(w)));
            }
            Some(_) => {}
            None => self.start_unjudged(),
        }
    }

    /// A partition of a rebalance comes back whose windows never saw a watermark (no
    /// checkpoint, or one taken before the first advance): the engine's watermark restarts
    /// unknown until the next [`WindowEngine::advance`]. Otherwise the watermark of the other
    /// restored partitions would be every one of its brands' floor ([`WindowEngine::floor`]),
    /// and its backlog's facts would be counted as after-final instead of applied. The brands
    /// of the other partitions keep their floors from their checkpoints.
    pub fn start_unjudged(&mut self) {
        self.unjudged = true;
        self.watermark = None;
    }

    /// Drops every window and the engine's watermark (before restoring the partitions a
    /// rebalance assigned). Counters are kept.
    pub fn reset(&mut self) {
        self.windows.clear();
        self.panes.clear();
        self.pending_close.clear();
        self.pending_final.clear();
        self.pending_seal.clear();
        self.changed.clear();
        self.last_net.clear();
        self.brand_inbound.clear();
        self.forced.clear();
        self.watermark = None;
        self.final_floor = None;
        self.brand_floors.clear();
        self.unjudged = false;
    }

    /// Counters so far.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            windows_open: self.windows.len() as u64,
            ..self.stats
        }
    }

    /// The engine's watermark (the last one passed to [`WindowEngine::advance`]).
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// Aggregates one batch of facts ([`model::fact_schema`]) into window state.
    pub async fn ingest(&mut self, facts: &RecordBatch) -> Result<(), AggregateError> {
        if facts.num_rows() == 0 {
            return Ok(());
        }
        self.stats.facts += facts.num_rows() as u64;
        self.stats.batches += 1;
        let schema = facts.schema();
        // Taken out and put back below; after an error the next batch plans anew.
        let plans = match self.plans.take() {
            Some(p) if p.table.schema() == schema => p,
            _ => self.plan(schema).await?,
        };
        plans.table.set(Some(facts.clone()));
        let task = self.ctx.task_ctx();
        let main = collect(Arc::clone(&plans.main), Arc::clone(&task)).await;
        let depth = match &main {
            Ok(_) => collect(Arc::clone(&plans.depth), task).await,
            Err(_) => Ok(Vec::new()),
        };
        // The slot holds the batch only while the plans run.
        plans.table.set(None);
        let (main, depth) = (main?, depth?);
        self.plans = Some(plans);
        let mut touched = Vec::new();
        for b in &main {
            self.merge_main(b, &mut touched)?;
        }
        for b in &depth {
            self.merge_depth(b, &mut touched)?;
        }
        for pane in &touched {
            self.mark_windows(pane);
        }
        self.enforce_bound();
        Ok(())
    }

    /// Plans the two queries over a [`CurrentBatch`] table of `schema` (registered as the
    /// facts table, replacing any before it). Run at the first batch, and again only if a
    /// batch comes with another schema.
    async fn plan(&self, schema: SchemaRef) -> Result<Plans, AggregateError> {
        let table = Arc::new(CurrentBatch::new(schema));
        self.ctx.deregister_table(FACTS)?;
        self.ctx
            .register_table(FACTS, Arc::clone(&table) as Arc<dyn TableProvider>)?;
        let main = self
            .ctx
            .sql(&self.main_sql)
            .await?
            .create_physical_plan()
            .await?;
        let depth = self
            .ctx
            .sql(&self.depth_sql)
            .await?
            .create_physical_plan()
            .await?;
        Ok(Plans { table, main, depth })
    }

    fn group(&self, brand: &str, platform: &str, stakeholder: &str, dept: Option<&str>) -> Group {
        let g = self.cfg.group_by;
        Group {
            brand: brand.to_string(),
            platform: g.platform.then(|| platform.to_string()),
            stakeholder: g.stakeholder.then(|| stakeholder.to_string()),
            department: if g.department {
                dept.map(str::to_string)
            } else {
                None
            },
        }
    }

    /// The floor below which windows of `brand` are final: a window whose end + horizon is at
    /// or before it takes no more facts.
    fn floor(&self, brand: &str) -> Option<i64> {
        [
            self.watermark,
            self.final_floor,
            self.brand_floors.get(brand).copied(),
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// The pane of spec `spec_i` that the SQL pane starting at `pane` lies in, as its start,
    /// and how many of the windows covering it are final already (given `floor`).
    fn spec_pane(&self, spec: &WindowSpec, pane: i64, floor: Option<i64>) -> (i64, u64, u64) {
        let slide = spec.slide_micros();
        let p = pane.div_euclid(slide) * slide;
        let lifetime = spec.size_micros().saturating_add(self.cfg.horizon_micros);
        let covering = u64::try_from(spec.size_micros() / slide).unwrap_or(0);
        let finals = floor.map_or(0, |f| {
            spec.window_starts(p)
                .filter(|s| s.saturating_add(lifetime) <= f)
                .count() as u64
        });
        (p, covering, finals)
    }

    /// The pane `key`, created if new; `touched` gets its key on its first change in this
    /// batch, so the windows covering it are marked changed once per batch.
    fn pane(&mut self, key: StateKey, touched: &mut Vec<StateKey>) -> &mut Acc {
        let batch = self.stats.batches;
        let a = match self.panes.entry(key) {
            Entry::Occupied(e) => {
                if e.get().batch != batch {
                    touched.push(e.key().clone());
                }
                e.into_mut()
            }
            Entry::Vacant(v) => {
                touched.push(v.key().clone());
                v.insert(Acc::default())
            }
        };
        a.batch = batch;
        a
    }

    /// Marks every window covering the pane `pane` that is not final as changed, creating the
    /// windows not seen yet.
    ///
    /// The hot path of ingest (once per pane touched in a batch and window covering it): one
    /// hash lookup of the key, and `changed` (a sorted set of keys) is only touched when the
    /// window was not marked changed yet (`WindowState::changed` mirrors membership in it).
    fn mark_windows(&mut self, pane: &StateKey) {
        let Some(spec) = self.cfg.specs.get(pane.spec).copied() else {
            return;
        };
        let size = spec.size_micros();
        let floor = self.floor(&pane.group.brand);
        let mut key = pane.clone();
        for start in spec.window_starts(pane.start) {
            let end = start.saturating_add(size);
            let final_at = end.saturating_add(self.cfg.horizon_micros);
            if floor.is_some_and(|w| final_at <= w) {
                continue;
            }
            key.start = start;
            match self.windows.get_mut(&key) {
                Some(st) => {
                    if !st.changed {
                        st.changed = true;
                        self.changed.insert(key.clone());
                    }
                }
                None => {
                    self.pending_close.insert((end, key.clone()));
                    self.pending_final.insert((final_at, key.clone()));
                    self.pending_seal.insert((self.seal_at(end), key.clone()));
                    self.changed.insert(key.clone());
                    self.windows.insert(
                        key.clone(),
                        WindowState {
                            revision: 0,
                            closed: false,
                            changed: true,
                            emitted_at: 0,
                            sealed: None,
                        },
                    );
                }
            }
        }
    }

    fn merge_main(
        &mut self,
        b: &RecordBatch,
        touched: &mut Vec<StateKey>,
    ) -> Result<(), AggregateError> {
        let KeyCols {
            pane,
            brand,
            platform,
            stakeholder,
            dept,
        } = KeyCols::of(b)?;
        let n = |name: &'static str| i64_col(b, name);
        let (inbound, responses, broadcasts, to_broadcast) = (
            n("inbound")?,
            n("responses")?,
            n("broadcasts")?,
            n("to_broadcast")?,
        );
        let (positive, negative, compound_e4, reach) = (
            n("positive")?,
            n("negative")?,
            n("compound_e4")?,
            n("reach")?,
        );
        let (answered, effect_e4, effects) = (n("answered")?, n("effect_e4")?, n("effects")?);
        let frt = list_col(b, "frt")?;
        let frt_b = list_col(b, "frt_business")?;
        let inbound_times = list_col(b, "inbound_times")?;
        let answered_times = list_col(b, "answered_times")?;
        let max_values = self.cfg.values_per_window_max;
        let get = |a: &arrow_array::Int64Array, i: usize| -> u64 {
            if a.is_null(i) {
                0
            } else {
                u64::try_from(a.value(i)).unwrap_or(0)
            }
        };
        let geti = |a: &arrow_array::Int64Array, i: usize| -> i64 {
            if a.is_null(i) { 0 } else { a.value(i) }
        };
        let specs = self.cfg.specs.clone();
        for i in 0..b.num_rows() {
            let d = dept.is_valid(i).then(|| dept.value(i));
            let group = self.group(brand.value(i), platform.value(i), stakeholder.value(i), d);
            let floor = self.floor(&group.brand);
            // The row's figures, read once and added to one pane per spec.
            let mut row = Counts {
                inbound: get(&inbound, i),
                responses: get(&responses, i),
                broadcasts: get(&broadcasts, i),
                to_broadcast: get(&to_broadcast, i),
                positive: get(&positive, i),
                negative: get(&negative, i),
                compound_e4: geti(&compound_e4, i),
                reach: geti(&reach, i),
                answered: get(&answered, i),
                effect_e4: geti(&effect_e4, i),
                effects: get(&effects, i),
                stakeholders: StakeholderMix::default(),
            };
            row.stakeholders.add(stakeholder.value(i), row.inbound);
            let frt_i = list_values::<Float64Type>(&frt, i);
            let frt_b_i = list_values::<Float64Type>(&frt_b, i);
            let inbound_t = list_values::<Int64Type>(&inbound_times, i);
            let answered_t = list_values::<Int64Type>(&answered_times, i);
            for (spec_i, spec) in specs.iter().enumerate() {
                let (p, covering, finals) = self.spec_pane(spec, pane.value(i), floor);
                if row.inbound > 0 {
                    *self
                        .brand_inbound
                        .entry((spec_i, p, brand.value(i).to_string()))
                        .or_default() += row.inbound;
                }
                self.stats.updates_after_final += finals;
                if finals >= covering {
                    continue;
                }
                let mut dropped = 0;
                let key = StateKey {
                    spec: spec_i,
                    start: p,
                    group: group.clone(),
                };
                let a = self.pane(key, touched);
                a.counts.add(&row);
                if !frt_i.is_empty() || !frt_b_i.is_empty() {
                    a.sorted = false;
                }
                for v in &frt_i {
                    push_bounded(&mut a.frt, *v, max_values, &mut dropped);
                }
                for v in &frt_b_i {
                    push_bounded(&mut a.frt_business, *v, max_values, &mut dropped);
                }
                for t in &inbound_t {
                    if a.unanswered_len < max_values {
                        *a.unanswered.entry(*t).or_default() += 1;
                        a.unanswered_len += 1;
                    } else {
                        dropped += 1;
                    }
                }
                // An answer's time is its inbound message's (`model::facts`): the same pane.
                for t in &answered_t {
                    if let Some(c) = a.unanswered.get_mut(t) {
                        *c -= 1;
                        a.unanswered_len -= 1;
                        if *c == 0 {
                            a.unanswered.remove(t);
                        }
                    }
                }
                if let Some(d) = d {
                    let da = match a.departments.get_mut(d) {
                        Some(da) => da,
                        None => a.departments.entry(d.to_string()).or_default(),
                    };
                    da.inbound += row.inbound;
                    da.negative += row.negative;
                    da.answered += row.answered;
                    for v in &frt_i {
                        push_bounded(&mut da.frt, *v, max_values, &mut dropped);
                    }
                }
                self.stats.values_dropped += dropped;
            }
        }
        Ok(())
    }

    fn merge_depth(
        &mut self,
        b: &RecordBatch,
        touched: &mut Vec<StateKey>,
    ) -> Result<(), AggregateError> {
        let KeyCols {
            pane,
            brand,
            platform,
            stakeholder,
            dept,
        } = KeyCols::of(b)?;
        let root = b
            .column_by_name("root")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or(AggregateError::Column("root"))?
            .clone();
        let turns = i64_col(b, "turns")?;
        let max = self.cfg.conversations_per_window_max;
        let specs = self.cfg.specs.clone();
        for i in 0..b.num_rows() {
            if root.is_null(i) {
                continue;
            }
            let d = dept.is_valid(i).then(|| dept.value(i));
            let group = self.group(brand.value(i), platform.value(i), stakeholder.value(i), d);
            let floor = self.floor(&group.brand);
            let turns_i = u32::try_from(turns.value(i)).unwrap_or(0);
            for (spec_i, spec) in specs.iter().enumerate() {
                // Finals were counted for this row's pane by the main query's row.
                let (p, covering, finals) = self.spec_pane(spec, pane.value(i), floor);
                if finals >= covering {
                    continue;
                }
                let key = StateKey {
                    spec: spec_i,
                    start: p,
                    group: group.clone(),
                };
                let a = self.pane(key, touched);
                if a.sealed {
                    self.stats.conversations_dropped += 1;
                    continue;
                }
                let roots = &mut a.roots;
                let full = roots.len() >= max;
                let kept = match roots.entry(root.value(i)) {
                    Entry::Occupied(mut t) => {
                        let v = t.get_mut();
                        *v = (*v).max(turns_i);
                        true
                    }
                    Entry::Vacant(v) if !full => {
                        v.insert(turns_i);
                        true
                    }
                    Entry::Vacant(_) => false,
                };
                if !kept {
                    self.stats.conversations_dropped += 1;
                }
            }
        }
        Ok(())
    }

    fn enforce_bound(&mut self) {
        while self.windows.len() > self.cfg.open_windows_max {
            let Some((final_at, key)) = self.pending_final.first().cloned() else {
                break;
            };
            let wm = self.watermark.unwrap_or(key.start);
            let emitted_at = Utc::now();
            self.final_floor = Some(self.final_floor.map_or(final_at, |f| f.max(final_at)));
            if let Some(r) = self.finalise(&key, wm, emitted_at) {
                self.forced.push(r);
                self.stats.forced_final += 1;
            }
        }
    }

    /// Moves the watermark to `watermark` (µs; it never goes back) and returns the records to
    /// publish: windows that closed, closed windows whose figures changed, and windows that
    /// became final, in that order of kind and by window end within each.
    pub fn advance(&mut self, watermark: i64, emitted_at: DateTime<Utc>) -> Vec<WindowRecord> {
        let wm = self.watermark.map_or(watermark, |w| w.max(watermark));
        self.watermark = Some(wm);
        self.unjudged = false;
        let mut out = std::mem::take(&mut self.forced);
        // Closing: emitted now whatever the revision interval (the latency of window records
        // is measured from here).
        let mut closing = FastMap::default();
        while let Some((end, _)) = self.pending_close.first() {
            if *end > wm {
                break;
            }
            let Some((_, key)) = self.pending_close.pop_first() else {
                break;
            };
            if let Some(st) = self.windows.get_mut(&key) {
                st.closed = true;
                st.changed = true;
                closing.insert(key.clone(), ());
                self.changed.insert(key);
            }
        }
        while let Some((at, _)) = self.pending_seal.first() {
            if *at > wm {
                break;
            }
            let Some((_, key)) = self.pending_seal.pop_first() else {
                break;
            };
            self.seal(&key);
        }
        // Finals first: a window that closes and becomes final in one step is emitted once.
        let mut finals = Vec::new();
        while let Some((at, _)) = self.pending_final.first() {
            if *at > wm {
                break;
            }
            let Some((_, key)) = self.pending_final.first().cloned() else {
                break;
            };
            if let Some(r) = self.finalise(&key, wm, emitted_at) {
                finals.push(r);
            }
        }
        // Closed windows with new figures: those that just closed, and those emitted at least
        // the revision interval ago (the others wait, their changes accumulating).
        let now = emitted_at.timestamp_micros();
        let interval = self.cfg.revision_interval_micros;
        let mut held = 0_u64;
        let changed: Vec<StateKey> = self
            .changed
            .iter()
            .filter(|k| {
                let Some(s) = self.windows.get(*k) else {
                    return false;
                };
                if !s.closed {
                    return false;
                }
                let due = interval <= 0
                    || closing.contains_key(*k)
                    || now.saturating_sub(s.emitted_at) >= interval;
                held += u64::from(!due);
                due
            })
            .cloned()
            .collect();
        self.stats.revisions_pending = held;
        let mut updates = Vec::with_capacity(changed.len());
        for key in changed {
            self.changed.remove(&key);
            if let Some(r) = self.emit(&key, wm, emitted_at, false) {
                updates.push(r);
            }
        }
        updates.sort_by_key(|r| (r.window_end, r.window_seconds));
        out.extend(updates);
        out.extend(finals);
        self.prune_side_state(wm);
        out
    }

    /// The unanswered backlog now, per brand, over the panes of spec `spec` held in memory
    /// (use a tumbling spec: hopping windows overlap and would count a message several times):
    /// counts by age at the engine's watermark (under 1 h, 1–4 h, 4–24 h, 24 h and over),
    /// leaving out messages already past the horizon.
    pub fn backlog(&self, spec: usize) -> BTreeMap<String, [u64; 4]> {
        let mut out: BTreeMap<String, [u64; 4]> = BTreeMap::new();
        let Some(wm) = self.watermark else {
            return out;
        };
        let h = self.cfg.horizon_micros;
        for (k, a) in &self.panes {
            if k.spec != spec {
                continue;
            }
            let e = out.entry(k.group.brand.clone()).or_default();
            unanswered_by_age(a, wm, h, |bucket, n| {
                let slot = match bucket {
                    BacklogBucket::Under1h => 0,
                    BacklogBucket::From1hTo4h => 1,
                    BacklogBucket::From4hTo24h => 2,
                    BacklogBucket::Over24h => 3,
                    BacklogBucket::Expired => return,
                };
                e[slot] += n;
            });
        }
        out
    }

    /// The index of the spec the backlog gauges use: the shortest tumbling one, else the first.
    pub fn backlog_spec(&self) -> usize {
        self.cfg
            .specs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_tumbling())
            .min_by_key(|(_, s)| s.size_micros())
            .map_or(0, |(i, _)| i)
    }

    /// The window length of [`WindowEngine::backlog_spec`], seconds.
    pub fn backlog_window_seconds(&self) -> i64 {
        self.cfg
            .specs
            .get(self.backlog_spec())
            .map_or(0, |s| s.size_micros() / 1_000_000)
    }

    /// The longest window length, seconds (the gauges of the latest closed window use it).
    pub fn longest_window_seconds(&self) -> i64 {
        self.cfg
            .specs
            .iter()
            .map(|s| s.size_micros() / 1_000_000)
            .max()
            .unwrap_or(0)
    }

    /// Early results: windows not closed yet whose figures changed since their last emission.
    pub fn early(&mut self, emitted_at: DateTime<Utc>) -> Vec<WindowRecord> {
        let wm = self.watermark.unwrap_or(i64::MIN);
        let open: Vec<StateKey> = self
            .changed
            .iter()
            .filter(|k| self.windows.get(*k).is_some_and(|s| !s.closed))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for key in open {
            self.changed.remove(&key);
            if let Some(r) = self.emit(&key, wm, emitted_at, false) {
                out.push(r);
            }
        }
        out
    }

    /// End of a bounded run: moves the watermark past every window's end + horizon, so that
    /// every window is emitted as final.
    pub fn finish(&mut self, emitted_at: DateTime<Utc>) -> Vec<WindowRecord> {
        let last = self.pending_final.last().map(|(at, _)| *at);
        match (last, self.watermark) {
            (Some(at), _) => self.advance(at, emitted_at),
            (None, Some(w)) => self.advance(w, emitted_at),
            (None, None) => std::mem::take(&mut self.forced),
        }
    }

    fn finalise(
        &mut self,
        key: &StateKey,
        wm: i64,
        emitted_at: DateTime<Utc>,
    ) -> Option<WindowRecord> {
        let r = self.emit(key, wm, emitted_at, true);
        let size = self
            .cfg
            .specs
            .get(key.spec)
            .map_or(0, WindowSpec::size_micros);
        let end = key.start.saturating_add(size);
        self.pending_close.remove(&(end, key.clone()));
        self.pending_final
            .remove(&(end.saturating_add(self.cfg.horizon_micros), key.clone()));
        self.pending_seal.remove(&(self.seal_at(end), key.clone()));
        self.changed.remove(key);
        let net = self.window_net(key);
        if self.windows.remove(key).is_some() {
            let slot = self
                .last_net
                .entry((key.spec, key.group.clone()))
                .or_insert((i64::MIN, None));
            if key.start > slot.0 {
                *slot = (key.start, net);
            }
        }
        // The window starting with a pane is the last one covering it: the pane goes too.
        self.panes.remove(key);
        r
    }

    /// When a window ending at `end` is sealed: no event can join it after that.
    fn seal_at(&self, end: i64) -> i64 {
        end.saturating_add(self.cfg.allowed_lateness_micros)
    }

    /// Seals window `key`: its thread depth is computed once more and kept. The window starting
    /// with a pane is the last one covering it (windows are sealed in order of their end), so
    /// that pane's conversations are released.
    fn seal(&mut self, key: &StateKey) {
        let mut roots = std::mem::take(&mut self.scratch_roots);
        let depth = thread_depth(&self.window_panes(key), &mut roots);
        self.scratch_roots = roots;
        if let Some(st) = self.windows.get_mut(key) {
            st.sealed = Some(Sealed {
                thread_depth: depth,
            });
        }
        if let Some(a) = self.panes.get_mut(key) {
            a.roots = FastMap::default();
            a.sealed = true;
        }
    }

    fn prune_side_state(&mut self, wm: i64) {
        let h = self.cfg.horizon_micros;
        let specs = &self.cfg.specs;
        // A pane's side state lives as long as the last window covering it, the one starting
        // with it.
        let alive = |spec: usize, start: i64| {
            let size = specs.get(spec).map_or(0, WindowSpec::size_micros);
            start.saturating_add(size).saturating_add(h) > wm
        };
        self.brand_inbound
            .retain(|(spec, start, _), _| alive(*spec, *start));
        // Keep the last finalised net sentiment while the next window can still use it.
        self.last_net.retain(|(spec, _), (start, _)| {
            let slide = specs.get(*spec).map_or(0, WindowSpec::slide_micros);
            alive(*spec, start.saturating_add(slide))
        });
    }

    /// The starts of the panes of window `key` (spec, window start): `size / slide` of them.
    fn pane_starts(&self, key: &StateKey) -> impl Iterator<Item = i64> + use<> {
        let (size, slide) = self
            .cfg
            .specs
            .get(key.spec)
            .map_or((0, 1), |s| (s.size_micros(), s.slide_micros()));
        let start = key.start;
        (0..size / slide).map(move |k| start + k * slide)
    }

    /// The panes of window `key` held in memory, earliest first.
    fn window_panes(&self, key: &StateKey) -> Vec<&Acc> {
        let mut k = key.clone();
        self.pane_starts(key)
            .filter_map(|p| {
                k.start = p;
                self.panes.get(&k)
            })
            .collect()
    }

    /// The net sentiment of window `key`, from its panes.
    fn window_net(&self, key: &StateKey) -> Option<f64> {
        let mut sum = Counts::default();
        for a in self.window_panes(key) {
            sum.add(&a.counts);
        }
        sum.net_sentiment()
    }

    fn emit(
        &mut self,
        key: &StateKey,
        wm: i64,
        emitted_at: DateTime<Utc>,
        is_final: bool,
    ) -> Option<WindowRecord> {
        let spec = *self.cfg.specs.get(key.spec)?;
        let prev_start = key.start - spec.slide_micros();
        let prev_key = StateKey {
            spec: key.spec,
            start: prev_start,
            group: key.group.clone(),
        };
        let prev_net = if self.windows.contains_key(&prev_key) {
            self.window_net(&prev_key)
        } else {
            self.last_net
                .get(&(key.spec, key.group.clone()))
                .filter(|(s, _)| *s == prev_start)
                .and_then(|(_, n)| *n)
        };
        let sov = self.share_of_voice(key);
        let h = self.cfg.horizon_micros;
        // Response times are kept sorted in place in each pane between emissions (sorted again
        // only when values arrived since: `Acc::sorted`), and a window's times are then merged
        // from its panes' sorted runs (sorting a fresh copy per record was the run's single
        // costliest function in `perf`).
        let mut k = key.clone();
        for p in self.pane_starts(key) {
            k.start = p;
            if let Some(a) = self.panes.get_mut(&k)
                && !a.sorted
            {
                a.frt.sort_by(f64::total_cmp);
                a.frt_business.sort_by(f64::total_cmp);
                for d in a.departments.values_mut() {
                    d.frt.sort_by(f64::total_cmp);
                }
                a.sorted = true;
            }
        }
        let st = self.windows.get_mut(key)?;
        st.revision += 1;
        st.changed = false;
        st.emitted_at = emitted_at.timestamp_micros();
        let revision = st.revision;
        // Closed means the watermark had passed the window's end (a window finalised early by
        // the state bound is final without being closed).
        // (Or it closed before: after a rebalance the watermark restarts from the partitions
        // restored and can be lower for a while.)
        let closed = st.closed || key.start.saturating_add(spec.size_micros()) <= wm;
        let sealed = st.sealed;
        let mut roots = std::mem::take(&mut self.scratch_roots);
        let panes = self.window_panes(key);
        let a = Combined::of(&panes, wm, h, &mut roots, sealed);
        let n = &a.counts;
        let net = n.net_sentiment();
        let neutral = n.inbound.saturating_sub(n.positive + n.negative);
        let record = WindowRecord {
            brand: key.group.brand.clone(),
            platform: key.group.platform.clone(),
            stakeholder: key.group.stakeholder.clone(),
            department: key.group.department.clone(),
            window_start: micros_to_time(key.start),
            window_end: micros_to_time(key.start.saturating_add(spec.size_micros())),
            window_seconds: spec.size_micros() / 1_000_000,
            slide_seconds: spec.slide_micros() / 1_000_000,
            revision,
            closed,
            is_final,
            horizon_seconds: h / 1_000_000,
            inbound: n.inbound,
            responses: n.responses,
            broadcasts: n.broadcasts,
            answered: n.answered,
            response_rate: ratio(n.answered, n.inbound),
            first_response_seconds: distribution(&a.frt),
            first_response_business_seconds: distribution(&a.frt_business),
            quantile_method: QuantileMethod::ExactLinear,
            backlog: a.backlog,
            conversation_rate: ratio(n.to_broadcast, n.broadcasts),
            reply_share: ratio(n.responses, n.responses + n.broadcasts),
            thread_depth: a.thread_depth,
            #[allow(clippy::cast_precision_loss)] // fixed-point sums far below 2^52
            mean_compound: (n.inbound > 0)
                .then(|| n.compound_e4 as f64 / 10_000.0 / n.inbound as f64),
            net_sentiment: net,
            net_sentiment_all: (n.inbound > 0).then(|| {
                ratio_signed(n.positive, n.negative, n.positive + n.negative + neutral)
            }),
            sentiment_shift: match (net, prev_net) {
                (Some(n), Some(p)) => Some(n - p),
                _ => None,
            },
            #[allow(clippy::cast_precision_loss)]
            response_effect: (n.effects > 0)
                .then(|| n.effect_e4 as f64 / 10_000.0 / n.effects as f64),
            response_effect_count: n.effects,
            share_of_voice: sov,
            stakeholders: n.stakeholders,
            departments: a
                .departments
                .iter()
                .map(|(name, d)| DepartmentFigures {
                    department: (*name).to_string(),
                    inbound: d.inbound,
                    negative_inbound: d.negative,
                    answered: d.answered,
                    response_rate: ratio(d.answered, d.inbound),
                    first_response_seconds: distribution(&d.frt),
                })
                .collect(),
            broadcast_reach: n.reach,
            emitted_at,
            watermark: micros_to_time(wm),
        };
        drop(a);
        drop(panes);
        self.scratch_roots = roots;
        self.stats.records_emitted += 1;
        if is_final {
            self.stats.records_final += 1;
        }
        Some(record)
    }

    fn share_of_voice(&self, key: &StateKey) -> Option<f64> {
        let brand = &key.group.brand;
        let competitors = self.cfg.competitors.get(brand).filter(|c| !c.is_empty())?;
        let get = |b: &str| {
            let mut k = (key.spec, 0, b.to_string());
            self.pane_starts(key)
                .map(|p| {
                    k.1 = p;
                    self.brand_inbound.get(&k).copied().unwrap_or(0)
                })
                .sum::<u64>()
        };
        let own = get(brand);
        let total = own
            + competitors
                .iter()
                .filter(|c| *c != brand)
                .map(|c| get(c))
                .sum::<u64>();
        ratio(own, total)
    }
}

/// A window's figures, combined from its panes at emission.
#[derive(Default)]
struct Combined<'a> {
    counts: Counts,
    /// Sorted: a single pane's own vector, or the panes' sorted runs merged.
    frt: Cow<'a, [f64]>,
    frt_business: Cow<'a, [f64]>,
    departments: BTreeMap<&'a str, DeptView<'a>>,
    thread_depth: Option<f64>,
    backlog: Backlog,
}

#[derive(Default)]
struct DeptView<'a> {
    inbound: u64,
    negative: u64,
    answered: u64,
    /// Sorted.
    frt: Cow<'a, [f64]>,
}

/// Sorted runs as one sorted slice: the run itself when there is one, else merged.
fn merge_runs<'a>(runs: &[&'a [f64]]) -> Cow<'a, [f64]> {
    match runs {
        [] => Cow::Borrowed(&[]),
        [one] => Cow::Borrowed(one),
        _ => {
            let mut v = Vec::with_capacity(runs.iter().map(|r| r.len()).sum());
            for r in runs {
                v.extend_from_slice(r);
            }
            // Runs already sorted: the stable sort finds and merges them.
            v.sort_by(f64::total_cmp);
            Cow::Owned(v)
        }
    }
}

impl<'a> Combined<'a> {
    /// Sums the panes (each with its response times sorted) at watermark `wm`, horizon `h`;
    /// `roots` is scratch space for thread depth, unless the window is `sealed`.
    fn of(
        panes: &[&'a Acc],
        wm: i64,
        h: i64,
        roots: &mut FastMap<u64, u32>,
        sealed: Option<Sealed>,
    ) -> Self {
        let mut c = Combined::default();
        let mut frt: Vec<&[f64]> = Vec::with_capacity(panes.len());
        let mut frt_b: Vec<&[f64]> = Vec::with_capacity(panes.len());
        let mut dept_frt: BTreeMap<&str, Vec<&[f64]>> = BTreeMap::new();
        for a in panes {
            c.counts.add(&a.counts);
            frt.push(&a.frt);
            frt_b.push(&a.frt_business);
            for (name, d) in &a.departments {
                let cd = c.departments.entry(name.as_str()).or_default();
                cd.inbound += d.inbound;
                cd.negative += d.negative;
                cd.answered += d.answered;
                dept_frt.entry(name.as_str()).or_default().push(&d.frt);
            }
            let b = &mut c.backlog;
            unanswered_by_age(a, wm, h, |bucket, n| match bucket {
                BacklogBucket::Under1h => b.under_1h += n,
                BacklogBucket::From1hTo4h => b.from_1h_to_4h += n,
                BacklogBucket::From4hTo24h => b.from_4h_to_24h += n,
                BacklogBucket::Over24h => b.over_24h += n,
                BacklogBucket::Expired => b.expired_unanswered += n,
            });
        }
        c.frt = merge_runs(&frt);
        c.frt_business = merge_runs(&frt_b);
        for (name, runs) in &dept_frt {
            if let Some(d) = c.departments.get_mut(name) {
                d.frt = merge_runs(runs);
            }
        }
        c.thread_depth = match sealed {
            Some(s) => s.thread_depth,
            None => thread_depth(panes, roots),
        };
        c
    }
}

/// Hands `add` the unanswered messages of pane `a` by age bucket at watermark `wm` (horizon
/// `h`). A bucket is a monotone step of the age, so when the pane's oldest and newest
/// unanswered messages fall in one bucket, all of them do: their count (`unanswered_len`) goes
/// there at once. That is the usual case (a pane is minutes long, the buckets' edges hours
/// apart); walking every message of 12 panes for every emitted record was a fifth of the
/// window engine's time in `perf` (2026-12-07). A pane across an edge is walked.
fn unanswered_by_age(a: &Acc, wm: i64, h: i64, mut add: impl FnMut(BacklogBucket, u64)) {
    debug_assert_eq!(
        a.unanswered_len as u64,
        a.unanswered.values().map(|n| u64::from(*n)).sum::<u64>(),
        "unanswered_len counts the multiset"
    );
    let (Some((&oldest, _)), Some((&newest, _))) = (
        a.unanswered.first_key_value(),
        a.unanswered.last_key_value(),
    ) else {
        return;
    };
    let bucket = |t: i64| BacklogBucket::of(wm.saturating_sub(t).max(0), h);
    let first = bucket(oldest);
    if first == bucket(newest) {
        add(first, a.unanswered_len as u64);
        return;
    }
    for (t, n) in &a.unanswered {
        add(bucket(*t), u64::from(*n));
    }
}

/// Mean over the window's conversations of the most turns each reached in any of its panes
/// (`roots`: scratch, left empty).
fn thread_depth(panes: &[&Acc], roots: &mut FastMap<u64, u32>) -> Option<f64> {
    if let [one] = panes {
        return mean_u32(one.roots.values());
    }
    roots.clear();
    for a in panes {
        for (r, t) in &a.roots {
            let m = roots.entry(*r).or_insert(*t);
            *m = (*m).max(*t);
        }
    }
    let depth = mean_u32(roots.values());
    roots.clear();
    depth
}

fn push_bounded(v: &mut Vec<f64>, x: f64, max: usize, dropped: &mut u64) {
    if v.len() < max {
        v.push(x);
    } else {
        *dropped += 1;
    }
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

#[allow(clippy::cast_precision_loss)]
fn ratio_signed(p: u64, n: u64, den: u64) -> f64 {
    (p as f64 - n as f64) / den as f64
}

fn mean_u32<'a>(values: impl Iterator<Item = &'a u32>) -> Option<f64> {
    let (mut sum, mut n) = (0u64, 0u64);
    for v in values {
        sum += u64::from(*v);
        n += 1;
    }
    ratio(sum, n)
}

/// The distribution of `sorted` (by [`f64::total_cmp`]).
fn distribution(sorted: &[f64]) -> Distribution {
    let s = summarize_sorted(sorted);
    Distribution {
        count: s.count,
        median: s.median,
        p90: s.p90,
        mean: s.mean,
    }
}

fn micros_to_time(t: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(t).unwrap_or_default()
}

/// The key columns both queries return: pane start and the grouping columns.
struct KeyCols {
    pane: arrow_array::Int64Array,
    brand: StringArray,
    platform: StringArray,
    stakeholder: StringArray,
    dept: StringArray,
}

impl KeyCols {
    fn of(b: &RecordBatch) -> Result<Self, AggregateError> {
        Ok(KeyCols {
            pane: i64_col(b, "pane_start")?,
            brand: str_col(b, "brand")?,
            platform: str_col(b, "platform")?,
            stakeholder: str_col(b, "stakeholder")?,
            dept: str_col(b, "department")?,
        })
    }
}

fn i64_col(b: &RecordBatch, name: &'static str) -> Result<arrow_array::Int64Array, AggregateError> {
    let c = b.column_by_name(name).ok_or(AggregateError::Column(name))?;
    if c.data_type() == &DataType::Int64 {
        return Ok(c.as_primitive::<Int64Type>().clone());
    }
    let cast = datafusion::arrow::compute::cast(c, &DataType::Int64)
        .map_err(|_| AggregateError::Column(name))?;
    Ok(cast.as_primitive::<Int64Type>().clone())
}

fn str_col(b: &RecordBatch, name: &'static str) -> Result<StringArray, AggregateError> {
    let c = b.column_by_name(name).ok_or(AggregateError::Column(name))?;
    if c.data_type() == &DataType::Utf8 {
        return Ok(c.as_string::<i32>().clone());
    }
    let cast = datafusion::arrow::compute::cast(c, &DataType::Utf8)
        .map_err(|_| AggregateError::Column(name))?;
    Ok(cast.as_string::<i32>().clone())
}

fn list_col(b: &RecordBatch, name: &'static str) -> Result<arrow_array::ListArray, AggregateError> {
    b.column_by_name(name)
        .and_then(|c| c.as_list_opt::<i32>())
        .cloned()
        .ok_or(AggregateError::Column(name))
}

/// The values of row `i` of a list column (empty for a null list or another value type).
fn list_values<T: arrow_array::ArrowPrimitiveType>(
    l: &arrow_array::ListArray,
    i: usize,
) -> Vec<T::Native> {
    if l.is_null(i) {
        return Vec::new();
    }
    let v = l.value(i);
    match v.as_primitive_opt::<T>() {
        Some(a) => a.iter().flatten().collect(),
        None => Vec::new(),
    }
}

/// The pane length, µs: the greatest common divisor of the specs' slides (each spec's size is
/// a multiple of its slide, so every window is a whole number of panes).
fn pane_micros(specs: &[WindowSpec]) -> i64 {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    specs
        .iter()
        .map(WindowSpec::slide_micros)
        .filter(|s| *s > 0)
        .fold(0, gcd)
        .max(1)
}

/// The two queries run over each micro-batch: partial aggregates per pane and keys, and the
/// most turns per conversation per pane (thread depth).
fn queries(pane: i64) -> (String, String) {
    use model::facts::col;
    // Event times are after 2006, so integer division is floor.
    let pane_start = format!("({t} / {pane}) * {pane} AS pane_start", t = col::T);
    let keys = format!(
        "{brand}, {platform}, {stakeholder}, {dept}",
        brand = col::BRAND,
        platform = col::PLATFORM,
        stakeholder = col::STAKEHOLDER,
        dept = col::DEPARTMENT,
    );
    let (fact, role, compound) = (col::FACT, col::ROLE, col::COMPOUND);
    let ev = format!("{fact} = 'event'");
    let inb = format!("{fact} = 'event' AND {role} = 'inbound'");
    let outb = format!("{fact} = 'event' AND ({role} = 'broadcast' OR {role} = 'follow_up')");
    let main = format!(
        "SELECT {pane_start}, {keys}, \
         count(*) FILTER (WHERE {inb}) AS inbound, \
         count(*) FILTER (WHERE {ev} AND {role} = 'response') AS responses, \
         count(*) FILTER (WHERE {outb}) AS broadcasts, \
         count(*) FILTER (WHERE {ev} AND {to_b}) AS to_broadcast, \
         count(*) FILTER (WHERE {inb} AND {compound} >= 0.05) AS positive, \
         count(*) FILTER (WHERE {inb} AND {compound} <= -0.05) AS negative, \
         sum(CAST(round({compound} * 10000) AS BIGINT)) FILTER (WHERE {inb}) AS compound_e4, \
         sum({followers}) FILTER (WHERE {outb}) AS reach, \
         count(*) FILTER (WHERE {fact} = 'answer') AS answered, \
         array_agg({frt}) FILTER (WHERE {fact} = 'answer') AS frt, \
         array_agg({frtb}) FILTER (WHERE {fact} = 'answer') AS frt_business, \
         array_agg({t}) FILTER (WHERE {inb}) AS inbound_times, \
         array_agg({t}) FILTER (WHERE {fact} = 'answer') AS answered_times, \
         sum(CAST(round({delta} * 10000) AS BIGINT)) FILTER (WHERE {fact} = 'effect') AS effect_e4, \
         count(*) FILTER (WHERE {fact} = 'effect') AS effects \
         FROM {FACTS} GROUP BY 1, {keys}",
        to_b = col::TO_BROADCAST,
        followers = col::FOLLOWERS,
        frt = col::FRT_SECONDS,
        frtb = col::FRT_BUSINESS_SECONDS,
        t = col::T,
        delta = col::DELTA,
    );
    let depth = format!(
        "SELECT {pane_start}, {keys}, {root} AS root, max({turns}) AS turns \
         FROM {FACTS} WHERE {ev} GROUP BY 1, {keys}, {root}",
        root = col::ROOT,
        turns = col::TURNS,
    );
    (main, depth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The backlog of a pane by bucket, whole when it sits in one bucket, equals counting its
    /// messages one by one: for watermarks that put the pane's edge on, before and after every
    /// bucket edge, and horizons shorter and longer than a day.
    #[test]
    fn a_panes_backlog_counted_whole_equals_counting_each_message() {
        const M: i64 = 60_000_000;
        let mut a = Acc::default();
        // A 5-minute pane: messages at 0, 0, 30 s, 1 min, ... 4 min 59 s.
        for t in [0, 0, 30_000_000, M, 2 * M, 4 * M + 59_000_000] {
            *a.unanswered.entry(t).or_default() += 1;
            a.unanswered_len += 1;
        }
        let edges = [60 * M, 240 * M, 1440 * M, 120 * M, 2880 * M];
        let mut whole = 0;
        for h in [120 * M, 1440 * M, 2880 * M] {
            for edge in edges {
                for wm in (edge - 6 * M..edge + 6 * M).step_by(15_000_000) {
                    let mut fast = std::collections::BTreeMap::new();
                    let mut calls = 0;
                    unanswered_by_age(&a, wm, h, |b, n| {
                        calls += 1;
                        *fast.entry(b).or_insert(0) += n;
                    });
                    whole += usize::from(calls == 1);
                    let mut slow = std::collections::BTreeMap::new();
                    for (t, n) in &a.unanswered {
                        let b = BacklogBucket::of(wm.saturating_sub(*t).max(0), h);
                        *slow.entry(b).or_insert(0) += u64::from(*n);
                    }
                    assert_eq!(fast, slow, "watermark {wm}, horizon {h}");
                }
            }
        }
        assert!(whole > 100, "most watermarks count the pane whole: {whole}");
    }

    fn spec(size: u64, slide: u64) -> WindowSpec {
        WindowSpec::hopping(Duration::from_secs(size), Duration::from_secs(slide))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn panes_are_the_greatest_common_divisor_of_the_slides() {
        // The defaults: 60 s tumbling and 1 h every 5 min.
        assert_eq!(pane_micros(&[spec(60, 60), spec(3600, 300)]), 60_000_000);
        assert_eq!(
            pane_micros(&[spec(1800, 600), spec(1200, 1200)]),
            600_000_000
        );
        assert_eq!(pane_micros(&[spec(3600, 3600)]), 3_600_000_000);
        // Coprime slides: one-second panes, still whole numbers of them per window.
        assert_eq!(pane_micros(&[spec(7, 7), spec(22, 11)]), 1_000_000);
    }

    fn slice(brand: &str, floor: i64, final_floor: Option<i64>) -> EngineSlice {
        EngineSlice {
            final_floor,
            floors: vec![(brand.to_string(), floor)],
            watermark: Some(floor),
            ..EngineSlice::default()
        }
    }

    #[test]
    fn a_restored_floor_of_forced_finals_holds_for_its_own_brands_only() {
        let cfg = EngineConfig {
            specs: vec![spec(60, 60)],
            group_by: GroupBy::default(),
            horizon_micros: 3_600_000_000,
            open_windows_max: 10,
            values_per_window_max: 10,
            conversations_per_window_max: 10,
            competitors: HashMap::new(),
            revision_interval_micros: 0,
            allowed_lateness_micros: 0,
        };
        // "fast" comes from an instance that forced windows final up to 900; "slow" from one
        // that was behind (its windows final up to 100).
        let mut e = WindowEngine::new(cfg);
        e.reset();
        e.restore(slice("fast", 500, Some(900)));
        e.restore(slice("slow", 100, None));
        assert_eq!(e.floor("fast"), Some(900));
        assert_eq!(e.floor("slow"), Some(100), "not the other instance's 900");
        assert_eq!(e.watermark(), Some(100));
        // And the next snapshot carries "fast"'s floor with it.
        let s = e.snapshot(&["fast"]);
        assert_eq!(s.floors, vec![("fast".to_string(), 900)]);
    }

    /// Sealing a window at its end plus the allowed lateness changes none of its records
    /// (answers keep revising it up to its final), and releases the conversations of each pane
    /// once every window covering it is sealed; a conversation row that still reaches a sealed
    /// pane is counted as dropped and changes nothing.
    #[test]
    fn sealed_windows_keep_their_thread_depth_and_release_conversations() {
        use model::facts::{EventFact, FactBatchBuilder, FactKeys};
        const S: i64 = 1_000_000;
        let config = |lateness: i64| EngineConfig {
            specs: vec![spec(60, 60), spec(180, 60)],
            group_by: GroupBy::default(),
            horizon_micros: 3600 * S,
            open_windows_max: 1000,
            values_per_window_max: 1000,
            conversations_per_window_max: 1000,
            competitors: HashMap::new(),
            revision_interval_micros: 0,
            allowed_lateness_micros: lateness,
        };
        let keys = FactKeys {
            brand: "acme",
            platform: "x",
            stakeholder: "customer",
            department: None,
        };
        let event = |t: i64, root: u64, turns: i32| EventFact {
            t,
            role: "inbound",
            compound: 0.1,
            to_broadcast: false,
            followers: None,
            root,
            turns,
        };
        // Eight minutes: 20 messages a minute in conversations that span minutes (their turns
        // grow), answers to the messages of three minutes before, each batch followed by a
        // watermark at the end of its minute.
        let mut batches = Vec::new();
        for minute in 0..8_i64 {
            let mut b = FactBatchBuilder::with_capacity(32);
            for i in 0..20_i64 {
                let root = u64::try_from(i % 7 + minute).unwrap();
                let turns = i32::try_from(minute + i % 3).unwrap();
                b.event(&keys, &event(minute * 60 * S + i * 3 * S, root, turns));
            }
            if minute >= 3 {
                for i in 0..5_i64 {
                    #[allow(clippy::cast_precision_loss)]
                    b.answer(
                        &keys,
                        (minute - 3) * 60 * S + i * 3 * S,
                        180.0 + i as f64,
                        90.0,
                    );
                }
            }
            batches.push((b.finish().unwrap(), (minute + 1) * 60 * S));
        }
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let run = |e: &mut WindowEngine| -> Vec<WindowRecord> {
            let mut out = Vec::new();
            for (facts, wm) in &batches {
                futures::executor::block_on(e.ingest(facts)).unwrap();
                out.extend(e.advance(*wm, at));
            }
            out
        };
        // Lateness 30 s seals each window half a minute after its end; lateness equal to the
        // horizon seals nothing before the window is final.
        let mut sealing = WindowEngine::new(config(30 * S));
        let mut keeping = WindowEngine::new(config(3600 * S));
        let records = run(&mut sealing);
        assert_eq!(records, run(&mut keeping));
        assert!(
            records
                .iter()
                .any(|r| r.closed && r.answered > 0 && r.thread_depth.is_some()),
            "answers revise closed windows with a thread depth"
        );
        // Watermark at 8 min: windows ending by 7.5 min are sealed. The panes whose last
        // covering window (the one starting with them) ends by then have no conversations.
        let released = |e: &WindowEngine| {
            e.panes
                .iter()
                .filter(|(_, a)| a.sealed && a.roots.is_empty())
                .map(|(k, _)| (k.spec, k.start / (60 * S)))
                .collect::<BTreeSet<_>>()
        };
        let want: BTreeSet<(usize, i64)> = (0..7)
            .map(|m| (0, m))
            .chain((0..5).map(|m| (1, m)))
            .collect();
        assert_eq!(released(&sealing), want);
        assert!(released(&keeping).is_empty());
        assert!(keeping.panes.values().all(|a| !a.roots.is_empty()));
        // A conversation row for minute 0 (late: the pipeline would not pass it on) is
        // dropped in the sealed panes of both specs; the figures stay as they were.
        let before = sealing.stats();
        let mut b = FactBatchBuilder::with_capacity(1);
        b.event(&keys, &event(10 * S, 99, 9));
        futures::executor::block_on(sealing.ingest(&b.finish().unwrap())).unwrap();
        assert_eq!(
            sealing.stats().conversations_dropped,
            before.conversations_dropped + 2
        );
        let depth = |e: &mut WindowEngine| {
            e.advance(8 * 60 * S, at)
                .into_iter()
                .filter(|r| r.window_start.timestamp() == 0)
                .map(|r| (r.window_seconds, r.thread_depth))
                .collect::<Vec<_>>()
        };
        let revised = depth(&mut sealing);
        assert!(
            !revised.is_empty(),
            "the late row's counts revise the windows"
        );
        let first = records
            .iter()
            .rev()
            .find(|r| r.window_start.timestamp() == 0 && r.window_seconds == 60)
            .unwrap();
        assert!(revised.contains(&(60, first.thread_depth)), "{revised:?}");
    }
}
