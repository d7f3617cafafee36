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

/// The counts of `brand`, or of `other` once [`BRANDS_TRACKED_MAX`] brands are tracked.
/// Allocates only the first time a brand is seen.
fn brand_entry<'m>(map: &'m mut BTreeMap<String, BrandCounts>, brand: &str) -> &'m mut BrandCounts {
    let key = if map.contains_key(brand) || map.len() < BRANDS_TRACKED_MAX {
        brand
    } else {
        "other"
    };
    if !map.contains_key(key) {
        map.insert(key.to_string(), BrandCounts::default());
    }
    map.get_mut(key)
        .unwrap_or_else(|| unreachable!("inserted above"))
}

/// First-response times kept per brand for the live median (the most recent ones).
pub const FIRST_RESPONSES_KEPT_MAX: usize = 1024;

/// Per-brand counts for the live summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrandCounts {
    /// All events.
    pub events: u64,
    /// Events written by organisation accounts.
    pub by_org: u64,
    /// Events by kind name.
    pub by_kind: BTreeMap<String, u64>,
    /// Inbound messages (linkage roles).
    pub inbound: u64,
    /// Responses.
    pub responses: u64,
    /// Broadcasts and follow-ups.
    pub broadcasts: u64,
    /// Inbound messages answered within the response horizon.
    pub answered: u64,
    /// Positive / negative inbound messages (compound ≥ 0.05 / ≤ −0.05).
    pub inbound_positive: u64,
    /// See `inbound_positive`.
    pub inbound_negative: u64,
    /// Recent first-response times in seconds (at most [`FIRST_RESPONSES_KEPT_MAX`]).
    pub first_response_seconds: std::collections::VecDeque<f64>,
}

impl BrandCounts {
    /// Answered ÷ inbound so far (answers may still come for recent messages).
    pub fn answered_share(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)] // display
        (self.inbound > 0).then(|| self.answered as f64 / self.inbound as f64)
    }

    /// Median of the recent first-response times, in seconds.
    pub fn median_first_response(&self) -> Option<f64> {
        let mut v: Vec<f64> = self.first_response_seconds.iter().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        Some(if v.len().is_multiple_of(2) {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        })
    }

    /// (P − N) ÷ (P + N) over inbound messages.
    pub fn net_sentiment(&self) -> Option<f64> {
        let (p, n) = (self.inbound_positive, self.inbound_negative);
        #[allow(clippy::cast_precision_loss)] // display
        (p + n > 0).then(|| (p as f64 - n as f64) / (p + n) as f64)
    }
}

/// A snapshot of the live figures.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The pipeline watermark, µs since the epoch.
    pub watermark: Option<i64>,
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
    /// Records the pipeline watermark.
    pub fn set_watermark(&self, watermark: Option<i64>) {
        if let Ok(mut g) = self.inner.lock() {
            g.snapshot.watermark = watermark;
        }
    }

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
                let c = brand_entry(&mut g.snapshot.brands, brand);
                c.events += 1;
                c.by_org += u64::from(orgs.value(i));
                match c.by_kind.get_mut(kinds.value(i)) {
                    Some(n) => *n += 1,
                    None => {
                        c.by_kind.insert(kinds.value(i).to_string(), 1);
                    }
                }
            }
        }
    }

    /// Adds what linkage learned. `horizon_micros` bounds what counts as answered.
    pub fn observe_linked(&self, linked: &[enrich::linkage::Linked], horizon_micros: i64) {
        use enrich::linkage::{Linked, Role};
        let Ok(mut g) = self.inner.lock() else { return };
        for l in linked {
            let brand = match l {
                Linked::Event { brand, .. }
                | Linked::FirstResponse { brand, .. }
                | Linked::Effect { brand, .. } => brand,
            };
            let c = brand_entry(&mut g.snapshot.brands, brand);
            match l {
                Linked::Event { role, compound, .. } => match role {
                    Role::Inbound => {
                        c.inbound += 1;
                        c.inbound_positive += u64::from(*compound >= 0.05);
                        c.inbound_negative += u64::from(*compound <= -0.05);
                    }
                    Role::Response => c.responses += 1,
                    Role::Broadcast | Role::FollowUp => c.broadcasts += 1,
                    Role::Other => {}
                },
                Linked::FirstResponse {
                    inbound_created_at,
                    responded_at,
                    ..
                } => {
                    let delay = responded_at - inbound_created_at;
                    if delay <= horizon_micros {
                        c.answered += 1;
                        if c.first_response_seconds.len() >= FIRST_RESPONSES_KEPT_MAX {
                            c.first_response_seconds.pop_front();
                        }
                        #[allow(clippy::cast_precision_loss)] // seconds for display
                        c.first_response_seconds.push_back(delay as f64 / 1e6);
                    }
                }
                Linked::Effect { .. } => {}
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
