//! Live figures for the terminal summary: throughput and per-brand counts.
//!
//! Bounded: at most [`BRANDS_TRACKED_MAX`] brands are tracked by name, the rest count as
//! `other`, so a stream with millions of brands cannot grow this map.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use model::schema::col;

/// Brands tracked by name in the live summary.
pub const BRANDS_TRACKED_MAX: usize = 32;

/// Per-brand counts of events by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrandCounts {
    /// All events.
    pub events: u64,
    /// Events written by organisation accounts.
    pub by_org: u64,
    /// Events by kind name.
    pub by_kind: BTreeMap<String, u64>,
}

/// A snapshot of the live figures.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Events decoded so far.
    pub events: u64,
    /// Messages dead-lettered so far.
    pub dead_letters: u64,
    /// Messages read per second since the previous snapshot.
    pub messages_per_second: f64,
    /// Per brand.
    pub brands: BTreeMap<String, BrandCounts>,
    /// Batches processed.
    pub batches: u64,
}

/// Thread-safe accumulator, updated once per batch.
#[derive(Debug)]
pub struct LiveStats {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    snapshot: Snapshot,
    messages: u64,
    last_messages: u64,
    last_at: Instant,
}

impl Default for LiveStats {
    fn default() -> Self {
        LiveStats {
            inner: Mutex::new(Inner {
                snapshot: Snapshot::default(),
                messages: 0,
                last_messages: 0,
                last_at: Instant::now(),
            }),
        }
    }
}

impl LiveStats {
    /// Adds a processed batch.
    pub fn observe(&self, events: &RecordBatch, messages: u64, dead_letters: u64) {
        let brands = events
            .column_by_name(col::BRAND)
            .map(|c| c.as_string::<i32>().clone());
        let kinds = events
            .column_by_name(col::KIND)
            .map(|c| c.as_string::<i32>().clone());
        let orgs = events
            .column_by_name(col::AUTHOR_IS_ORG)
            .map(|c| c.as_boolean().clone());
        let Ok(mut g) = self.inner.lock() else { return };
        g.messages += messages;
        g.snapshot.events += events.num_rows() as u64;
        g.snapshot.dead_letters += dead_letters;
        g.snapshot.batches += 1;
        if let (Some(brands), Some(kinds), Some(orgs)) = (brands, kinds, orgs) {
            for i in 0..events.num_rows() {
                let brand = brands.value(i);
                let map = &mut g.snapshot.brands;
                let key = if map.contains_key(brand) || map.len() < BRANDS_TRACKED_MAX {
                    brand
                } else {
                    "other"
                };
                let c = map.entry(key.to_string()).or_default();
                c.events += 1;
                c.by_org += u64::from(orgs.value(i));
                *c.by_kind.entry(kinds.value(i).to_string()).or_default() += 1;
            }
        }
    }

    /// The current figures; the rate covers the time since the previous call.
    pub fn snapshot(&self) -> Snapshot {
        let Ok(mut g) = self.inner.lock() else {
            return Snapshot::default();
        };
        let now = Instant::now();
        let dt = now.duration_since(g.last_at).as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // a rate for display
        let rate = if dt > 0.0 {
            (g.messages - g.last_messages) as f64 / dt
        } else {
            0.0
        };
        g.last_messages = g.messages;
        g.last_at = now;
        g.snapshot.messages_per_second = rate;
        g.snapshot.clone()
    }
}
