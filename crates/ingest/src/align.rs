//! Event-time alignment of the input partitions: which partitions to hold back (their queues
//! not read, see `source`) so that none reads far ahead of the others in event time.
//!
//! The pipeline links events in event-time order once the watermark, the minimum over
//! partitions, has passed them. A partition read faster than another (a backlog, a broker
//! that serves one partition's fetches before the next's: Tansu does, see
//! docs/performance-log.md) only fills the reorder buffer with events that cannot be linked
//! yet. On the end-to-end bench the buffer held 835,000 of 1,000,000 events before the last
//! partition delivered its first one, and the batch that then moved the watermark six hours
//! at once was the run's slowest to emit. Holding back a partition that is ahead keeps its
//! events in Kafka until the one behind catches up (Flink calls it watermark alignment).
//!
//! A partition is *behind* while it may still hold the watermark back: it is not at its end,
//! and it delivered a message (or was assigned) within `drift_idle`. One that never delivered
//! counts as furthest behind of all. Partitions more than `drift_max` of event time ahead of
//! the furthest behind are held back, and read again once within half of that (so a partition
//! near the edge is not held and released at every message). The furthest behind is never
//! held back, so reading always goes on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Mark {
    /// Newest event time read, µs; `None` before the first.
    newest: Option<i64>,
    /// Last message, or the assignment.
    last_at: Instant,
    at_end: bool,
}

/// Per-partition event-time progress as the source reads it.
#[derive(Debug, Clone)]
pub(crate) struct Alignment {
    drift_max_micros: i64,
    drift_idle: Duration,
    marks: BTreeMap<i32, Mark>,
}

impl Alignment {
    /// `drift_max` zero: never hold back.
    pub(crate) fn new(drift_max: Duration, drift_idle: Duration) -> Self {
        Alignment {
            drift_max_micros: i64::try_from(drift_max.as_micros()).unwrap_or(i64::MAX),
            drift_idle,
            marks: BTreeMap::new(),
        }
    }

    fn mark(&mut self, partition: i32, now: Instant) -> &mut Mark {
        self.marks.entry(partition).or_insert(Mark {
            newest: None,
            last_at: now,
            at_end: false,
        })
    }

    /// The partitions assigned now (a rebalance): new ones start behind, revoked ones go.
    pub(crate) fn assign(&mut self, partitions: &[i32], now: Instant) {
        self.marks.retain(|p, _| partitions.contains(p));
        for p in partitions {
            self.mark(*p, now);
        }
    }

    /// A message of `partition`, with its event's time when it decoded.
    pub(crate) fn message(&mut self, partition: i32, event_time: Option<i64>, now: Instant) {
        let m = self.mark(partition, now);
        m.last_at = now;
        m.at_end = false;
        if let Some(t) = event_time {
            m.newest = Some(m.newest.map_or(t, |n| n.max(t)));
        }
    }

    /// `partition` reached its end (nothing more to read for now).
    pub(crate) fn end(&mut self, partition: i32) {
        if let Some(m) = self.marks.get_mut(&partition) {
            m.at_end = true;
        }
    }

    /// The partitions to hold back now, given those held back so far.
    pub(crate) fn held(&self, held: &BTreeSet<i32>, now: Instant) -> BTreeSet<i32> {
        if self.drift_max_micros == 0 {
            return BTreeSet::new();
        }
        let behind =
            |m: &Mark| !m.at_end && now.saturating_duration_since(m.last_at) <= self.drift_idle;
        // `None` (no event yet) sorts below every time: furthest behind.
        let Some(floor) = self
            .marks
            .values()
            .filter(|m| behind(m))
            .map(|m| m.newest)
            .min()
        else {
            return BTreeSet::new();
        };
        let Some(floor) = floor else {
            // A partition that has not delivered yet: everything that has, waits for it.
            return self
                .marks
                .iter()
                .filter(|(_, m)| m.newest.is_some() && !m.at_end)
                .map(|(p, _)| *p)
                .collect();
        };
        self.marks
            .iter()
            .filter(|(p, m)| {
                let Some(t) = m.newest else {
                    return false;
                };
                let ahead = t.saturating_sub(floor);
                if held.contains(p) {
                    ahead > self.drift_max_micros / 2
                } else {
                    ahead > self.drift_max_micros
                }
            })
            .map(|(p, _)| *p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    fn set(p: &[i32]) -> BTreeSet<i32> {
        p.iter().copied().collect()
    }

    #[test]
    fn a_partition_ahead_is_held_back_until_the_one_behind_catches_up() {
        let now = Instant::now();
        let mut a = Alignment::new(Duration::from_secs(300), Duration::from_secs(10));
        a.assign(&[0, 1, 2], now);
        // 1 has not delivered yet: 0, which has, waits for it; 2 has nothing either.
        a.message(0, Some(0), now);
        assert_eq!(a.held(&set(&[]), now), set(&[0]));
        a.message(1, Some(MIN), now);
        a.message(2, Some(2 * MIN), now);
        assert_eq!(a.held(&set(&[0]), now), set(&[]), "all within 5 min");
        // 0 runs 6 min ahead of 1 (the furthest behind): held back.
        a.message(0, Some(7 * MIN), now);
        let held = a.held(&set(&[]), now);
        assert_eq!(held, set(&[0]));
        // 1 and 2 catch up to 3 min behind 0: still held (released only within 2.5 min)...
        a.message(1, Some(4 * MIN), now);
        a.message(2, Some(4 * MIN), now);
        assert_eq!(a.held(&held, now), set(&[0]));
        // ...and released once both are within 2 min.
        a.message(1, Some(5 * MIN), now);
        a.message(2, Some(5 * MIN), now);
        assert_eq!(a.held(&held, now), set(&[]), "0 within 2.5 min of both");
    }

    #[test]
    fn partitions_at_their_end_or_quiet_hold_nothing_back() {
        let now = Instant::now();
        let mut a = Alignment::new(Duration::from_secs(300), Duration::from_secs(10));
        a.assign(&[0, 1, 2], now);
        a.message(0, Some(60 * MIN), now);
        a.message(2, Some(0), now);
        // 1 is empty: at its end, it holds nothing back; 2 is an hour behind 0.
        a.end(1);
        assert_eq!(a.held(&set(&[]), now), set(&[0]));
        // 2 reaches its end: nothing behind 0 any more.
        a.end(2);
        assert_eq!(a.held(&set(&[0]), now), set(&[]));
        // 2 gets a message again, then goes quiet past drift_idle: 0 goes on.
        a.message(2, Some(MIN), now);
        assert_eq!(a.held(&set(&[]), now), set(&[0]));
        let later = now + Duration::from_secs(11);
        a.message(0, Some(61 * MIN), later);
        assert_eq!(a.held(&set(&[0]), later), set(&[]));
        // Off: never holds back.
        let mut off = Alignment::new(Duration::ZERO, Duration::from_secs(10));
        off.assign(&[0, 1], now);
        off.message(0, Some(60 * MIN), now);
        assert_eq!(off.held(&set(&[]), now), set(&[]));
    }
}
