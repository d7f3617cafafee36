//! The enrichment step of the pipeline: sentiment columns, lateness, conversation linkage per
//! input partition driven by event-time watermarks, department routing, and the linked facts
//! the window engine aggregates.
//!
//! Linkage state is kept per input partition (the input is keyed by brand, so a brand's
//! conversations share a partition) and dropped when the watermark passes the response horizon.
//!
//! **Event-time order.** Events wait in a reorder buffer until the watermark passes their
//! time, and are then linked in event-time order (ties by event id). Linkage outcomes (which
//! response was first, turns, the author's next message) therefore do not depend on the order
//! in which Kafka delivered events within the out-of-orderness bound. The buffer is bounded
//! (`linkage.reorder_events_max`); beyond it the oldest event is released early and counted.
//!
//! **Late events.** An event older than the watermark (as it stood when the event arrived) minus
//! `windows.allowed_lateness` could change windows that are already final. It is taken out
//! before linkage, returned in [`Enriched::late`] for the late-events topic and counted: never
//! silently dropped, never half-counted (it does not answer anything either).

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::Instant;

use aggregate::{BusinessCalendar, WatermarkConfig, Watermarks};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use enrich::departments::{DepartmentRouter, DepartmentRule};
use enrich::linkage::{
    LinkInput, LinkStats, Linked, Linker, LinkerConfig, LinkerDelta, LinkerDeltaRef, OrgAuthorRule,
    OwnedInput, Role,
};
use enrich::{EnrichError, sentiment};
use model::EventKind;
use model::config::Config;
use model::facts::{EventFact, FactBatchBuilder, FactKeys};
use model::schema::col;

/// Platforms named in facts; beyond this many distinct values the rest are grouped as
/// `other`, so that hostile input cannot grow the grouping keys without bound.
pub const PLATFORMS_MAX: usize = 64;

/// Stakeholder values by index (packed into a linkage tag).
const STAKEHOLDERS: [&str; 7] = [
    "unknown", "customer", "employee", "partner", "supplier", "investor", "press",
];

/// Negative sentiment: VADER's convention, compound ≤ −0.05.
pub const NEGATIVE_COMPOUND: f64 = -0.05;

/// Why enrichment could not be set up: a configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SetupError {
    /// The configuration key.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A negative inbound message to forward to its department's topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// The topic.
    pub topic: String,
    /// The department.
    pub department: String,
    /// The message as JSON (captured when it arrived).
    pub json: serde_json::Value,
    /// Its compound score.
    pub compound: f64,
    /// Its brand (the message key).
    pub brand: String,
}

/// What one batch produced.
pub struct Enriched {
    /// The batch with sentiment columns added.
    pub batch: RecordBatch,
    /// What linkage learned (roles, first responses, response effects).
    pub linked: Vec<Linked>,
    /// Linked facts for the window engine ([`model::fact_schema`]).
    pub facts: RecordBatch,
    /// Rows of `batch` later than the allowed lateness.
    pub late: Vec<usize>,
    /// For each of `late`: the watermark it was behind, µs.
    pub late_watermarks: Vec<i64>,
    /// Negative inbound messages to forward to department topics.
    pub forwards: Vec<Forward>,
    /// The pipeline watermark after the batch, µs.
    pub watermark: Option<i64>,
}

/// Counters of enrichment beyond linkage's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnrichStats {
    /// Events later than the allowed lateness.
    pub late: u64,
    /// Responses later than the horizon after their inbound message (not counted as answers).
    pub answers_after_horizon: u64,
    /// Negative inbound messages forwarded to department topics.
    pub forwarded: u64,
    /// Events released from the reorder buffer before the watermark passed them (bound hit).
    pub reorder_forced: u64,
    /// Negative messages for a forwarding department not kept for forwarding because
    /// `linkage.entries_max` messages already waited for their role.
    pub forward_dropped: u64,
    /// Events of a brand on another partition than the brand's first (the input should be
    /// keyed by brand; such a brand's state is checkpointed with its first partition).
    pub brand_partition_conflicts: u64,
}

/// An event waiting in the reorder buffer: its partition and linkage's owned input, ordered
/// by (time, id, arrival sequence). The id is the input's own (a copy of it as a map key was
/// one more allocation per waiting event).
#[derive(Debug, Clone)]
struct Buffered {
    partition: i32,
    arrival: u64,
    input: OwnedInput,
}

impl Buffered {
    fn key(&self) -> (i64, &str, u64) {
        (self.input.created_at(), self.input.event_id(), self.arrival)
    }
}

impl PartialEq for Buffered {
    fn eq(&self, o: &Self) -> bool {
        self.key() == o.key()
    }
}

impl Eq for Buffered {}

impl PartialOrd for Buffered {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Buffered {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.key().cmp(&o.key())
    }
}

/// Packed per-event context carried through linkage (see [`LinkInput::tag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag {
    platform: u16,
    stakeholder: u8,
    department: u8,
    followers: u32,
}

impl Tag {
    fn pack(self) -> u64 {
        (u64::from(self.platform) << 48)
            | (u64::from(self.stakeholder) << 40)
            | (u64::from(self.department) << 32)
            | u64::from(self.followers)
    }

    #[allow(clippy::cast_possible_truncation)] // unpacking fields packed above
    fn unpack(t: u64) -> Tag {
        Tag {
            platform: (t >> 48) as u16,
            stakeholder: ((t >> 40) & 0xff) as u8,
            department: ((t >> 32) & 0xff) as u8,
            followers: (t & 0xffff_ffff) as u32,
        }
    }
}

/// A partition's enrichment state as a checkpoint writes it ([`Enrichment::snapshot`]).
#[derive(Debug, serde::Serialize)]
pub struct EnrichSliceRef<'a> {
    watermark: aggregate::PartitionWatermark,
    /// The whole linkage state (a full checkpoint) ...
    linker: Option<&'a Linker>,
    /// ... or its changes since the checkpoint this one is based on (an incremental one).
    linker_delta: Option<LinkerDeltaRef<'a>>,
    reorder: Vec<(i64, &'a str, &'a OwnedInput)>,
    pending_forward: Vec<(&'a str, i64, &'a serde_json::Value)>,
    brands: Vec<&'a str>,
    platforms: &'a [String],
}

impl EnrichSliceRef<'_> {
    /// The brands whose window state goes with this partition.
    pub fn brands(&self) -> &[&str] {
        &self.brands
    }

    /// Whether this holds linkage changes only (on top of a base checkpoint).
    pub fn is_delta(&self) -> bool {
        self.linker_delta.is_some()
    }
}

/// A partition's enrichment state as a checkpoint reads it back (the owned twin of
/// [`EnrichSliceRef`]: same fields, same encoding).
#[derive(Debug, serde::Deserialize)]
pub struct EnrichSlice {
    watermark: aggregate::PartitionWatermark,
    linker: Option<Linker>,
    linker_delta: Option<LinkerDelta>,
    reorder: Vec<(i64, String, OwnedInput)>,
    pending_forward: Vec<(String, i64, serde_json::Value)>,
    brands: Vec<String>,
    platforms: Vec<String>,
}

impl EnrichSlice {
    /// Whether this holds linkage changes only (on top of a base checkpoint).
    pub fn is_delta(&self) -> bool {
        self.linker_delta.is_some()
    }

    /// Composes the linkage state of an incremental checkpoint chain: `self` is the newest;
    /// `older` are the checkpoints it builds on, oldest (the full one) first. Everything but
    /// linkage is whole in every checkpoint and is taken from the newest. The platform table
    /// only grows within the process that wrote a chain (a chain starts with a full checkpoint
    /// after every start and restore), so the newest table maps every tag in the chain.
    ///
    /// Errors say what does not fit (a bug or files from different chains).
    pub fn compose(&mut self, older: Vec<EnrichSlice>) -> Result<(), String> {
        let mut chain = older.into_iter();
        let Some(full) = chain.next() else {
            return Ok(());
        };
        if full.linker_delta.is_some() {
            return Err("the oldest checkpoint of the chain is not a full one".into());
        }
        let mut linker = full.linker;
        for d in chain
            .map(|s| s.linker_delta)
            .chain(std::iter::once(self.linker_delta.take()))
        {
            match (linker.as_mut(), d) {
                (Some(l), Some(d)) => l.apply(d),
                (None, None) => {}
                (Some(_), None) => {
                    return Err("a checkpoint in the chain holds no linkage changes".into());
                }
                (None, Some(_)) => {
                    return Err("linkage changes on top of a checkpoint without linkage".into());
                }
            }
        }
        self.linker = linker;
        Ok(())
    }
}

/// Sentiment, linkage and routing state of a running pipeline.
pub struct Enrichment {
    link_cfg: LinkerConfig,
    /// By partition, in partition order: what the linkers give out together (expiry,
    /// evictions) comes in the same order from run to run.
    linkers: std::collections::BTreeMap<i32, Linker>,
    watermarks: Watermarks,
    lateness_micros: i64,
    horizon_micros: i64,
    router: DepartmentRouter,
    departments: Vec<String>,
    forward_topics: HashMap<String, String>,
    calendars: HashMap<String, BusinessCalendar>,
    always_open: BusinessCalendar,
    platforms: Vec<String>,
    /// Negative messages routed to a forwarding department whose role is not known yet:
    /// id → (time, JSON). Bounded like linkage state, and dropped past the horizon.
    pending_forward: HashMap<String, (i64, i32, serde_json::Value)>,
    /// The partition each brand's events arrive on: a checkpoint of a partition carries the
    /// window state of its brands. (The input is keyed by brand; a brand seen on a second
    /// partition stays with the first and is counted in `EnrichStats::brand_partition_conflicts`.)
    /// (Looked up for every event: foldhash, not SipHash.)
    brand_partition: HashMap<String, i32, foldhash::fast::RandomState>,
    pending_forward_max: usize,
    /// Events waiting for the watermark, by (time, id, arrival sequence).
    reorder: std::collections::BTreeSet<Buffered>,
    reorder_max: usize,
    arrivals: u64,
    stats: EnrichStats,
    /// Replaces user ids by pseudonyms before anything reads the batch (`[privacy]`).
    pseudonymiser: Option<enrich::pseudonym::Pseudonymiser>,
    /// Threads that score a batch's sentiment (`sentiment.threads`, resolved).
    sentiment_threads: usize,
    /// Threads that link the events a watermark step releases (`linkage.threads`, resolved).
    link_threads: usize,
}

/// Below this many events released at once, linking stays on the calling thread. Linking
/// costs ~2.2 µs an event (README, "Performance"), so 512 are ~1 ms, well above what starting a
/// thread is commonly reported to cost (tens of µs; not measured here). The bound itself was
/// not tuned.
const PARALLEL_LINK_MIN: usize = 512;

/// One partition's share of a release: its linker and its events, in event-time order.
type LinkWork<'a> = (i32, &'a mut Linker, Vec<OwnedInput>);

/// Links each partition's events on its linker; returns each partition's output.
fn link_partitions(work: Vec<LinkWork<'_>>) -> Vec<(i32, Vec<Linked>)> {
    work.into_iter()
        .map(|(p, linker, inputs)| {
            let mut out = Vec::with_capacity(inputs.len() + inputs.len() / 4);
            for i in &inputs {
                linker.observe(&i.view(), &mut out);
            }
            (p, out)
        })
        .collect()
}

fn model_error(e: model::ModelError) -> EnrichError {
    match e {
        model::ModelError::Arrow(a) => EnrichError::Arrow(a),
    }
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Enrichment {
    /// Enrichment as configured; errors name the configuration key.
    pub fn new(config: &Config) -> Result<Self, SetupError> {
        let accounts = config
            .brands
            .iter()
            .map(|b| {
                (
                    b.name.clone(),
                    b.accounts.iter().cloned().collect::<HashSet<_, _>>(),
                )
            })
            .collect();
        let rules: Vec<DepartmentRule> = config
            .departments
            .rules
            .iter()
            .map(|r| DepartmentRule {
                department: r.department.clone(),
                keywords: r.keywords.clone(),
                hashtags: r.hashtags.clone(),
                patterns: r.patterns.clone(),
            })
            .collect();
        let router =
            DepartmentRouter::new(&rules, &config.departments.default).map_err(|e| SetupError {
                key: "departments.rules".into(),
                message: e.to_string(),
            })?;
        let mut departments = vec![config.departments.default.clone()];
        for r in &rules {
            if !departments.contains(&r.department) {
                departments.push(r.department.clone());
            }
        }
        if departments.len() > 250 {
            return Err(SetupError {
                key: "departments.rules".into(),
                message: "at most 250 departments are supported".into(),
            });
        }
        let mut calendars = HashMap::new();
        for (i, b) in config.brands.iter().enumerate() {
            if let Some(h) = &b.business_hours {
                let week = h.week();
                let days: Vec<Vec<&str>> = week
                    .iter()
                    .map(|d| d.iter().map(String::as_str).collect())
                    .collect();
                let day = |n: usize| days.get(n).map_or(&[][..], Vec::as_slice);
                let holidays: Vec<&str> = h.holidays.iter().map(String::as_str).collect();
                let cal = BusinessCalendar::new(
                    &h.time_zone,
                    [day(0), day(1), day(2), day(3), day(4), day(5), day(6)],
                    &holidays,
                )
                .map_err(|e| SetupError {
                    key: format!("brands[{i}].business_hours"),
                    message: e.to_string(),
                })?;
                calendars.insert(b.name.clone(), cal);
            }
        }
        Ok(Enrichment {
            link_cfg: LinkerConfig {
                horizon_micros: micros(config.linkage.response_horizon),
                entries_max: config.linkage.entries_max,
                org_rule: match config.linkage.org_author_rule {
                    model::config::OrgAuthorRule::Configured => OrgAuthorRule::Configured,
                    model::config::OrgAuthorRule::ConfiguredElseIsOrg => {
                        OrgAuthorRule::ConfiguredElseIsOrg
                    }
                },
                accounts,
            },
            linkers: std::collections::BTreeMap::new(),
            watermarks: Watermarks::new(WatermarkConfig {
                out_of_orderness_micros: micros(config.linkage.out_of_orderness),
                idle_timeout: config.linkage.idle_timeout,
                empty_timeout: config.linkage.empty_partition_timeout,
            }),
            lateness_micros: micros(config.windows.allowed_lateness),
            horizon_micros: micros(config.linkage.response_horizon),
            router,
            departments,
            forward_topics: config
                .departments
                .forward_negative
                .iter()
                .map(|(d, t)| (d.clone(), t.clone()))
                .collect(),
            calendars,
            always_open: BusinessCalendar::always_open(),
            platforms: Vec::new(),
            pending_forward: HashMap::new(),
            brand_partition: HashMap::default(),
            pending_forward_max: config.linkage.entries_max,
            reorder: std::collections::BTreeSet::new(),
            reorder_max: config.linkage.reorder_events_max,
            arrivals: 0,
            stats: EnrichStats::default(),
            pseudonymiser: crate::privacy::pseudonymiser(config).map_err(|p| SetupError {
                key: p.key,
                message: p.message,
            })?,
            sentiment_threads: config.sentiment.threads_resolved(),
            link_threads: config.linkage.threads_resolved(),
        })
    }

    /// Linkage counters summed over partitions, and the number of entries held.
    pub fn link_stats(&self) -> (LinkStats, usize) {
        let mut total = LinkStats::default();
        let mut entries = 0;
        for l in self.linkers.values() {
            let s = l.stats();
            total.linked += s.linked;
            total.duplicates += s.duplicates;
            total.resolved_late += s.resolved_late;
            total.orphans += s.orphans;
            total.expired += s.expired;
            total.evicted += s.evicted;
            entries += l.entries();
        }
        (total, entries)
    }

    /// The partition whose checkpoint carries `brand`'s window state (None: no event of the
    /// brand seen since the last restore).
    pub fn brand_partition(&self, brand: &str) -> Option<i32> {
        self.brand_partition.get(brand).copied()
    }

    /// What a checkpoint keeps of `partition`: its watermark, linkage state, the events of it
    /// waiting in the reorder buffer and for forwarding, and the brands it carries. Borrowed:
    /// a checkpoint does not copy the state it writes. `now` is the wall time idleness is
    /// judged at. `incremental`: linkage as its changes since the last
    /// [`Enrichment::checkpointed`] when they are known (see [`EnrichSliceRef::is_delta`]),
    /// else whole.
    pub fn snapshot(&self, partition: i32, now: Instant, incremental: bool) -> EnrichSliceRef<'_> {
        let mut brands: Vec<&str> = self
            .brand_partition
            .iter()
            .filter(|(_, p)| **p == partition)
            .map(|(b, _)| b.as_str())
            .collect();
        brands.sort_unstable();
        let mut pending_forward: Vec<_> = self
            .pending_forward
            .iter()
            .filter(|(_, (_, p, _))| *p == partition)
            .map(|(id, (t, _, json))| (id.as_str(), *t, json))
            .collect();
        pending_forward.sort_by(|a, b| a.0.cmp(b.0));
        let linker = self.linkers.get(&partition);
        let linker_delta = linker.filter(|_| incremental).and_then(Linker::delta);
        EnrichSliceRef {
            watermark: self.watermarks.snapshot(partition, now),
            linker: linker.filter(|_| linker_delta.is_none()),
            linker_delta,
            reorder: self
                .reorder
                .iter()
                .filter(|b| b.partition == partition)
                .map(|b| (b.input.created_at(), b.input.event_id(), &b.input))
                .collect(),
            pending_forward,
            brands,
            platforms: &self.platforms,
        }
    }

    /// `partition`'s snapshot has been written: the next may be incremental on top of it.
    pub fn checkpointed(&mut self, partition: i32) {
        if let Some(l) = self.linkers.get_mut(&partition) {
            l.checkpointed();
        }
    }

    /// Forgets the state of every partition and the watermark (a rebalance: the partitions
    /// assigned next are restored from their checkpoints). Counters are kept.
    pub fn reset(&mut self) {
        self.linkers.clear();
        self.watermarks.reset();
        self.reorder.clear();
        self.pending_forward.clear();
        self.brand_partition.clear();
    }

    /// A partition comes back without a checkpoint: the pipeline watermark restarts unknown
    /// ([`aggregate::Watermarks::start_unjudged`]).
    pub fn start_unjudged(&mut self) {
        self.watermarks.start_unjudged();
    }

    /// Takes `partition`'s state back from a checkpoint, observed at wall time `now`.
    pub fn restore(&mut self, partition: i32, slice: EnrichSlice, now: Instant) {
        // The checkpoint's tags index its writer's platform table; map them onto ours.
        let map: Vec<u16> = slice
            .platforms
            .iter()
            .map(|p| self.platform_index(p))
            .collect();
        let remap = |tag: u64| {
            let mut t = Tag::unpack(tag);
            t.platform = map
                .get(usize::from(t.platform))
                .copied()
                .unwrap_or(u16::MAX);
            t.pack()
        };
        self.watermarks.restore(partition, slice.watermark, now);
        if let Some(linker) = slice.linker {
            let mut l = linker.restored(self.link_cfg.clone());
            l.map_tags(remap);
            self.linkers.insert(partition, l);
        }
        // (time, id) are the input's own: checkpoints write them beside it as format 3 did.
        for (_, _, mut input) in slice.reorder {
            input.set_tag(remap(input.tag()));
            self.arrivals += 1;
            self.reorder.insert(Buffered {
                partition,
                arrival: self.arrivals,
                input,
            });
        }
        for (id, t, json) in slice.pending_forward {
            self.pending_forward.insert(id, (t, partition, json));
        }
        for b in slice.brands {
            self.brand_partition.insert(b, partition);
        }
    }

    /// Enrichment's own counters.
    pub fn stats(&self) -> EnrichStats {
        self.stats
    }

    /// Assigned partitions that hold the watermark back at wall time `now` without having had
    /// an event (see `aggregate::watermark`).
    pub fn partitions_waiting(&self, now: Instant) -> usize {
        self.watermarks.waiting(now)
    }

    /// Whether time alone moved the watermark since the last batch (a partition's
    /// `linkage.idle_timeout` or `empty_partition_timeout` ran out): an empty batch would
    /// close the windows it passes.
    pub fn watermark_due(&self, now: Instant) -> bool {
        self.watermarks.would_advance(now)
    }

    /// The pipeline watermark.
    pub fn watermark(&self) -> Option<i64> {
        self.watermarks.current()
    }

    /// The time the end of a bounded run flushes from: the watermark, or the latest event time
    /// seen when that is later (a partition that never delivered can hold the watermark back
    /// to the end). None before any event.
    pub fn end_time(&self) -> Option<i64> {
        match (self.watermarks.current(), self.watermarks.max_event_time()) {
            (Some(w), Some(m)) => Some(w.max(m)),
            (w, m) => w.or(m),
        }
    }

    /// Moves the watermark to at least `t` (end of a bounded run) and lets linkage release
    /// what it held; returns the facts that produced.
    pub fn force_watermark(
        &mut self,
        t: i64,
    ) -> Result<(Vec<Linked>, RecordBatch, Vec<Forward>), EnrichError> {
        let w = self.watermarks.force(t);
        let mut linked = Vec::new();
        self.release(w, &mut linked);
        for l in self.linkers.values_mut() {
            l.advance(w, &mut linked);
        }
        let mut facts = FactBatchBuilder::with_capacity(linked.len());
        let mut forwards = Vec::new();
        self.facts(&linked, &mut facts, &mut forwards);
        let facts = facts.finish().map_err(model_error)?;
        Ok((linked, facts, forwards))
    }

    /// Links buffered events with time ≤ `watermark`, in event-time order, and any beyond the
    /// buffer bound.
    fn release(&mut self, watermark: i64, out: &mut Vec<Linked>) {
        let mut released = Vec::new();
        loop {
            let due = self
                .reorder
                .first()
                .is_some_and(|b| b.input.created_at() <= watermark);
            let over = self.reorder.len() > self.reorder_max;
            if !due && !over {
                break;
            }
            let Some(e) = self.reorder.pop_first() else {
                break;
            };
            if !due {
                self.stats.reorder_forced += 1;
            }
            released.push(e);
        }
        self.link(released, out);
    }

    /// Links released events, each partition's in their order on the partition's linker.
    /// Partitions share no linkage state (a conversation stays within its brand, and the input
    /// is keyed by brand), so with `linkage.threads` above 1 and more than one partition in
    /// the release, the partitions are linked on scoped threads, balanced by event count.
    /// The output is each partition's in turn, in partition order, whatever the thread count;
    /// within a partition it is what linking one event after the other gives.
    fn link(&mut self, released: Vec<Buffered>, out: &mut Vec<Linked>) {
        if released.is_empty() {
            return;
        }
        let total = released.len();
        let mut by_partition: std::collections::BTreeMap<i32, Vec<OwnedInput>> =
            std::collections::BTreeMap::new();
        for e in released {
            by_partition.entry(e.partition).or_default().push(e.input);
        }
        let cfg = &self.link_cfg;
        for p in by_partition.keys() {
            self.linkers
                .entry(*p)
                .or_insert_with(|| Linker::new(cfg.clone()));
        }
        let mut work: Vec<LinkWork<'_>> = self
            .linkers
            .iter_mut()
            .filter_map(|(p, l)| by_partition.remove(p).map(|inputs| (*p, l, inputs)))
            .collect();
        let threads = self.link_threads.min(work.len());
        let mut results = if threads <= 1 || total < PARALLEL_LINK_MIN {
            link_partitions(work)
        } else {
            // Largest first, each to the least loaded thread.
            work.sort_by_key(|(_, _, inputs)| std::cmp::Reverse(inputs.len()));
            let mut shares: Vec<(usize, Vec<LinkWork<'_>>)> =
                (0..threads).map(|_| (0, Vec::new())).collect();
            for w in work {
                if let Some(s) = shares.iter_mut().min_by_key(|(load, _)| *load) {
                    s.0 += w.2.len();
                    s.1.push(w);
                }
            }
            crate::scoped::on_threads(
                shares.into_iter().map(|(_, w)| w).collect(),
                link_partitions,
            )
            .into_iter()
            .flatten()
            .collect()
        };
        results.sort_by_key(|(p, _)| *p);
        for (_, linked) in results {
            out.extend(linked);
        }
    }

    /// The partitions assigned to this instance (from the consumer), those that reached the
    /// end of a bounded run, and those at their end now. Assigned partitions without events
    /// hold the watermark back until they are found empty at their end (see
    /// `aggregate::watermark`); revoked partitions' linkage state is dropped (their new owner
    /// rebuilds it; checkpoints will hand it over).
    pub fn assignment(&mut self, assigned: &[i32], ended: &[i32], at_end: &[i32], now: Instant) {
        if !assigned.is_empty() {
            self.watermarks.assign(assigned, now);
            self.linkers.retain(|p, _| assigned.contains(p));
        }
        for p in ended {
            self.watermarks.end(*p);
        }
        for p in at_end {
            // A bounded run's ended partition holds nothing back already (above): no notice of
            // a timeout that does not apply to it.
            if self.watermarks.at_end(*p, now) && !ended.contains(p) {
                tracing::info!(
                    partition = p,
                    release_in = ?self.watermarks.empty_timeout(),
                    "partition empty at its end, no event since it was assigned: it stops \
                     holding the watermark back after linkage.empty_partition_timeout"
                );
            }
        }
    }

    /// The platform, stakeholder type and department a linked event's tag stands for.
    pub fn describe(&self, tag: u64) -> (&str, &str, &str) {
        let t = Tag::unpack(tag);
        (
            self.platform_name(t.platform),
            STAKEHOLDERS
                .get(usize::from(t.stakeholder))
                .copied()
                .unwrap_or("unknown"),
            self.departments
                .get(usize::from(t.department))
                .map_or("support", String::as_str),
        )
    }

    /// The oldest `max` inbound messages still waiting for their brand's first response, on
    /// every partition, and how many wait in all.
    pub fn open_inbound(&self, max: usize) -> (Vec<crate::live_tables::OpenRow>, usize) {
        let mut open: Vec<enrich::linkage::OpenInbound<'_>> = self
            .linkers
            .values()
            .flat_map(enrich::linkage::Linker::open_inbound)
            .collect();
        let total = open.len();
        if total > max {
            open.select_nth_unstable_by_key(max, |o| o.created_at);
            open.truncate(max);
        }
        let rows = open
            .into_iter()
            .map(|o| {
                let (platform, _, department) = self.describe(o.tag);
                crate::live_tables::OpenRow {
                    brand: o.brand.to_string(),
                    platform: platform.to_string(),
                    department: department.to_string(),
                    event_id: o.event_id.to_string(),
                    created_at: o.created_at,
                }
            })
            .collect();
        (rows, total)
    }

    /// Events waiting in the reorder buffer.
    pub fn buffered(&self) -> usize {
        self.reorder.len()
    }

    fn platform_index(&mut self, p: &str) -> u16 {
        if let Some(i) = self.platforms.iter().position(|x| x == p) {
            return u16::try_from(i).unwrap_or(0);
        }
        if self.platforms.len() < PLATFORMS_MAX {
            self.platforms.push(p.to_string());
            return u16::try_from(self.platforms.len() - 1).unwrap_or(0);
        }
        u16::MAX
    }

    fn platform_name(&self, i: u16) -> &str {
        self.platforms
            .get(usize::from(i))
            .map_or("other", String::as_str)
    }

    /// Scores, screens for lateness, links and routes one batch of decoded events.
    pub fn process(&mut self, events: &RecordBatch, now: Instant) -> Result<Enriched, EnrichError> {
        // First of all: with `[privacy]` on, nothing downstream ever sees a raw user id.
        let batch = match &self.pseudonymiser {
            Some(p) => sentiment::append_sentiment_columns_parallel(
                &p.apply(events)?,
                self.sentiment_threads,
            )?,
            None => sentiment::append_sentiment_columns_parallel(events, self.sentiment_threads)?,
        };
        let mut linked = Vec::new();
        let mut late = Vec::new();
        let mut late_watermarks = Vec::new();
        let column = |name: &'static str| {
            batch
                .column_by_name(name)
                .ok_or(EnrichError::MissingColumn { column: name })
        };
        let str_col = |name: &'static str| -> Result<_, EnrichError> {
            column(name)?
                .as_string_opt::<i32>()
                .cloned()
                .ok_or(EnrichError::MissingColumn { column: name })
        };
        let ids = str_col(col::EVENT_ID)?;
        let brands = str_col(col::BRAND)?;
        let kinds = str_col(col::KIND)?;
        let authors = str_col(col::AUTHOR_ID)?;
        let handles = str_col(col::AUTHOR_HANDLE)?;
        let parents = str_col(col::IN_REPLY_TO)?;
        let platforms = str_col(col::PLATFORM)?;
        let stakeholders = str_col(col::AUTHOR_STAKEHOLDER)?;
        let texts = str_col(col::TEXT)?;
        let typed = |name: &'static str| EnrichError::MissingColumn { column: name };
        let orgs = column(col::AUTHOR_IS_ORG)?
            .as_boolean_opt()
            .cloned()
            .ok_or(typed(col::AUTHOR_IS_ORG))?;
        let times = column(col::CREATED_AT)?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .cloned()
            .ok_or(typed(col::CREATED_AT))?;
        let parts = column(col::KAFKA_PARTITION)?
            .as_primitive_opt::<Int32Type>()
            .cloned()
            .ok_or(typed(col::KAFKA_PARTITION))?;
        let followers = column(col::AUTHOR_FOLLOWERS)?
            .as_primitive_opt::<Int64Type>()
            .cloned()
            .ok_or(typed(col::AUTHOR_FOLLOWERS))?;
        let compounds = column(sentiment::col::COMPOUND)?
            .as_primitive_opt::<Float64Type>()
            .cloned()
            .ok_or(typed(sentiment::col::COMPOUND))?;
        for i in 0..batch.num_rows() {
            let Some(kind) = EventKind::parse(kinds.value(i)) else {
                continue;
            };
            let created_at = times.value(i);
            let partition = parts.value(i);
            if self
                .watermarks
                .is_late_on(partition, created_at, self.lateness_micros)
            {
                late.push(i);
                late_watermarks.push(self.watermarks.effective(partition).unwrap_or_default());
                self.stats.late += 1;
                continue;
            }
            let text = texts.value(i);
            let department = self.router.route(text);
            let dept_index = self
                .departments
                .iter()
                .position(|d| d == department)
                .unwrap_or(0);
            let forward = self.forward_topics.contains_key(department);
            let compound = compounds.value(i);
            let stakeholder = if stakeholders.is_valid(i) {
                stakeholders.value(i)
            } else {
                "unknown"
            };
            let tag = Tag {
                platform: self.platform_index(platforms.value(i)),
                stakeholder: u8::try_from(
                    STAKEHOLDERS
                        .iter()
                        .position(|s| *s == stakeholder)
                        .unwrap_or(0),
                )
                .unwrap_or(0),
                department: u8::try_from(dept_index).unwrap_or(0),
                followers: if followers.is_valid(i) {
                    u32::try_from(followers.value(i).max(0)).unwrap_or(u32::MAX)
                } else {
                    0
                },
            };
            let event_id = ids.value(i);
            if compound <= NEGATIVE_COMPOUND
                && forward
                && !self.pending_forward.contains_key(event_id)
            {
                if self.pending_forward.len() < self.pending_forward_max {
                    let json = crate::outputs::event_json(&batch, i);
                    self.pending_forward
                        .insert(event_id.to_string(), (created_at, partition, json));
                } else {
                    self.stats.forward_dropped += 1;
                }
            }
            let brand = brands.value(i);
            match self.brand_partition.get(brand) {
                Some(p) if *p != partition => self.stats.brand_partition_conflicts += 1,
                Some(_) => {}
                None => {
                    self.brand_partition.insert(brand.to_string(), partition);
                }
            }
            self.watermarks.observe(partition, created_at, now);
            // Per event, so that whether an event is late does not depend on how events were
            // cut into batches (only on the order they arrived in).
            self.watermarks.advance(now);
            self.arrivals += 1;
            self.reorder.insert(Buffered {
                partition,
                arrival: self.arrivals,
                input: OwnedInput::of(&LinkInput {
                    event_id,
                    brand: brands.value(i),
                    kind,
                    author_id: authors.value(i),
                    author_handle: handles.is_valid(i).then(|| handles.value(i)),
                    author_is_org: orgs.value(i),
                    in_reply_to: parents.is_valid(i).then(|| parents.value(i)),
                    created_at,
                    compound,
                    tag: tag.pack(),
                }),
            });
        }
        let watermark = self.watermarks.advance(now);
        self.release(watermark.unwrap_or(i64::MIN), &mut linked);
        if let Some(w) = watermark {
            for l in self.linkers.values_mut() {
                l.advance(w, &mut linked);
            }
        }
        let mut facts = FactBatchBuilder::with_capacity(linked.len() + 16);
        let mut forwards = Vec::new();
        self.facts(&linked, &mut facts, &mut forwards);
        if let Some(w) = watermark {
            let cutoff = w.saturating_sub(self.horizon_micros);
            self.pending_forward.retain(|_, (t, _, _)| *t >= cutoff);
        }
        let facts = facts.finish().map_err(model_error)?;
        Ok(Enriched {
            batch,
            linked,
            facts,
            late,
            late_watermarks,
            forwards,
            watermark,
        })
    }

    fn facts(
        &mut self,
        linked: &[Linked],
        out: &mut FactBatchBuilder,
        forwards: &mut Vec<Forward>,
    ) {
        for l in linked {
            match l {
                Linked::Event {
                    event_id,
                    brand,
                    created_at,
                    role,
                    root,
                    replies_to_broadcast,
                    turns,
                    compound,
                    tag,
                    ..
                } => {
                    let tag = Tag::unpack(*tag);
                    let inbound = *role == Role::Inbound;
                    let department = self
                        .departments
                        .get(usize::from(tag.department))
                        .map(String::as_str);
                    let keys = FactKeys {
                        brand,
                        platform: self.platform_name(tag.platform),
                        stakeholder: STAKEHOLDERS
                            .get(usize::from(tag.stakeholder))
                            .copied()
                            .unwrap_or("unknown"),
                        department: if inbound { department } else { None },
                    };
                    let mut h = std::hash::DefaultHasher::new();
                    root.hash(&mut h);
                    out.event(
                        &keys,
                        &EventFact {
                            t: *created_at,
                            role: role.as_str(),
                            compound: *compound,
                            to_broadcast: *replies_to_broadcast,
                            followers: Some(i64::from(tag.followers)),
                            root: h.finish(),
                            turns: i32::try_from(*turns).unwrap_or(i32::MAX),
                        },
                    );
                    let pending = self.pending_forward.remove(&**event_id);
                    if inbound
                        && *compound <= NEGATIVE_COMPOUND
                        && let Some(d) = department
                        && let Some(topic) = self.forward_topics.get(d)
                        && let Some((_, _, json)) = pending
                    {
                        self.stats.forwarded += 1;
                        forwards.push(Forward {
                            topic: topic.clone(),
                            department: d.to_string(),
                            json,
                            compound: *compound,
                            brand: brand.to_string(),
                        });
                    }
                }
                Linked::FirstResponse {
                    brand,
                    inbound_created_at,
                    responded_at,
                    tag,
                    ..
                } => {
                    let frt = responded_at - inbound_created_at;
                    if frt > self.horizon_micros {
                        self.stats.answers_after_horizon += 1;
                        continue;
                    }
                    let cal = self.calendars.get(&**brand).unwrap_or(&self.always_open);
                    let business = cal.business_micros(*inbound_created_at, *responded_at);
                    let tag = Tag::unpack(*tag);
                    let keys = self.keys_of(brand, tag);
                    #[allow(clippy::cast_precision_loss)] // µs durations far below 2^52
                    out.answer(
                        &keys,
                        *inbound_created_at,
                        frt as f64 / 1e6,
                        business as f64 / 1e6,
                    );
                }
                Linked::Effect {
                    brand,
                    inbound_created_at,
                    delta,
                    tag,
                    ..
                } => {
                    let keys = self.keys_of(brand, Tag::unpack(*tag));
                    out.effect(&keys, *inbound_created_at, *delta);
                }
            }
        }
    }

    fn keys_of<'a>(&'a self, brand: &'a str, tag: Tag) -> FactKeys<'a> {
        FactKeys {
            brand,
            platform: self.platform_name(tag.platform),
            stakeholder: STAKEHOLDERS
                .get(usize::from(tag.stakeholder))
                .copied()
                .unwrap_or("unknown"),
            department: self
                .departments
                .get(usize::from(tag.department))
                .map(String::as_str),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generated traffic of five brands on four partitions, fed in batches of 2,000 so that
    /// each watermark step releases more than [`PARALLEL_LINK_MIN`] events of several
    /// partitions: linked on threads, the output is what one thread gives, event for event.
    #[test]
    fn linking_partitions_on_threads_gives_what_one_thread_gives() {
        use crate::generate::{Generator, GeneratorOptions};
        use model::schema::EventBatchBuilder;
        let generator = Generator::new(GeneratorOptions {
            seed: 11,
            events_per_second: 200.0,
            ..GeneratorOptions::default()
        });
        let brands = generator.brand_configs();
        let events: Vec<model::SocialEvent> =
            generator.filter_map(|m| m.event).take(20_000).collect();
        let partition = |brand: &str| -> i32 {
            let i = brands.iter().position(|b| b.name == brand).unwrap_or(0);
            i32::try_from(i % 4).unwrap_or(0)
        };
        let run = |threads: usize| -> (Vec<Linked>, usize) {
            let config = Config {
                brands: brands.clone(),
                linkage: model::config::LinkageConfig {
                    threads,
                    ..Default::default()
                },
                ..Default::default()
            };
            let mut enrichment = Enrichment::new(&config).unwrap();
            let now = Instant::now();
            let mut all = Vec::new();
            let mut parallel_steps = 0;
            for (offset, chunk) in events.chunks(2_000).enumerate() {
                let mut b = EventBatchBuilder::with_capacity(chunk.len());
                for (i, e) in chunk.iter().enumerate() {
                    let t = e.created_at_micros().unwrap();
                    let o = i64::try_from(offset * 2_000 + i).unwrap();
                    b.append(&e.as_ref_with_time(t), partition(&e.brand), o);
                }
                let out = enrichment.process(&b.finish().unwrap(), now).unwrap();
                let parts: HashSet<i32> = out
                    .linked
                    .iter()
                    .filter_map(|l| match l {
                        Linked::Event { brand, .. } => Some(partition(brand)),
                        _ => None,
                    })
                    .collect();
                if out.linked.len() >= PARALLEL_LINK_MIN && parts.len() > 1 {
                    parallel_steps += 1;
                }
                all.extend(out.linked);
            }
            (all, parallel_steps)
        };
        let (one, steps) = run(1);
        assert!(one.len() > 15_000, "{} linked", one.len());
        assert!(steps >= 5, "only {steps} steps could run on threads");
        for threads in [2, 4] {
            let (many, _) = run(threads);
            assert_eq!(one.len(), many.len(), "{threads} threads");
            if let Some(i) = one.iter().zip(&many).position(|(a, b)| a != b) {
                panic!(
                    "{threads} threads: output {i} differs: {:?} against {:?}",
                    many[i], one[i]
                );
            }
        }
    }

    #[test]
    fn tags_round_trip() {
        let t = Tag {
            platform: 63,
            stakeholder: 6,
            department: 200,
            followers: 4_000_000_000,
        };
        assert_eq!(Tag::unpack(t.pack()), t);
    }
}
