//! Event-time watermarks: how far event time has certainly progressed.
//!
//! Per partition, the watermark is the largest event time seen minus the allowed
//! out-of-orderness. The pipeline watermark is the minimum over partitions, leaving out
//! partitions that have been idle (no events) for longer than the idle timeout, so that one
//! quiet partition cannot hold every window open. When every partition is idle, the watermark
//! is the largest of theirs: time does not run backwards. The pipeline watermark never
//! decreases, even when an idle partition wakes up behind it (its events are then late).
//!
//! Partitions assigned to this instance but without events yet ([`Watermarks::assign`]) hold
//! the watermark back until their first event or until they are idle: otherwise the first
//! partition the consumer happens to read would carry the watermark hours ahead and every
//! other partition's history would be late. A partition known to have ended (bounded runs)
//! holds nothing back, and neither does one the source found empty: at its end, with nothing
//! read since it was assigned ([`Watermarks::at_end`]). Waiting for an empty partition until
//! the idle timeout held a cold start's first windows for that long (a minute by default),
//! with everything read meanwhile waiting in the reorder buffer. A partition that is merely
//! slow, with a backlog, is not at its end, so it still holds the watermark back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Watermark settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkConfig {
    /// Allowed out-of-orderness, µs: events up to this much older than the newest seen on
    /// their partition are on time.
    pub out_of_orderness_micros: i64,
    /// A partition without events for this long (wall clock) stops holding the watermark back.
    pub idle_timeout: Duration,
    /// A partition without any event, found at its end ([`Watermarks::at_end`]), stops holding
    /// the watermark back this long after.
    pub empty_timeout: Duration,
}

#[derive(Debug, Clone, Copy)]
struct PartitionMark {
    /// `None`: assigned, no event yet.
    max_event_time: Option<i64>,
    last_event_at: Instant,
    ended: bool,
    /// No event yet, and the source found it at its end at this time: there is nothing to
    /// wait for once `empty_timeout` has passed.
    empty_since: Option<Instant>,
}

impl PartitionMark {
    fn assigned(now: Instant) -> Self {
        PartitionMark {
            max_event_time: None,
            last_event_at: now,
            ended: false,
            empty_since: None,
        }
    }

    /// Whether it holds nothing back at wall time `now`.
    fn idle(&self, now: Instant, cfg: &WatermarkConfig) -> bool {
        self.ended
            || (self.max_event_time.is_none()
                && self
                    .empty_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= cfg.empty_timeout))
            || now.saturating_duration_since(self.last_event_at) > cfg.idle_timeout
    }
}

/// What a checkpoint keeps of a partition's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionWatermark {
    /// The largest event time seen on the partition (µs).
    pub max_event_time: Option<i64>,
    /// Whether it was idle (it held nothing back).
    pub idle: bool,
    /// The pipeline watermark its events were judged against (µs): after a restore, they
    /// are never judged against a lower one, so an event late before is late after.
    pub pipeline: Option<i64>,
}

/// Tracks per-partition watermarks and the pipeline watermark.
#[derive(Debug, Clone)]
pub struct Watermarks {
    cfg: WatermarkConfig,
    partitions: BTreeMap<i32, PartitionMark>,
    current: Option<i64>,
    /// Per restored partition, the pipeline watermark when its checkpoint was taken.
    floors: BTreeMap<i32, i64>,
    /// Since the last [`Watermarks::reset`], a partition came back whose events were never
    /// judged against any watermark (its checkpoint has none, or it has no checkpoint): the
    /// pipeline watermark restarts unknown, whatever the other restored partitions had.
    unjudged: bool,
}

impl Watermarks {
    /// No partitions seen yet.
    pub fn new(cfg: WatermarkConfig) -> Self {
        Watermarks {
            cfg,
            partitions: BTreeMap::new(),
            current: None,
            floors: BTreeMap::new(),
            unjudged: false,
        }
    }

    /// Records an event of `partition` at `event_time` (µs), observed at wall time `now`.
    pub fn observe(&mut self, partition: i32, event_time: i64, now: Instant) {
        let m = self
            .partitions
            .entry(partition)
            .or_insert(PartitionMark::assigned(now));
        m.max_event_time = Some(m.max_event_time.map_or(event_time, |t| t.max(event_time)));
        m.last_event_at = now;
        m.ended = false;
        m.empty_since = None;
    }

    /// The partitions assigned now: new ones hold the watermark until their first event (or
    /// until idle), revoked ones are forgotten.
    pub fn assign(&mut self, partitions: &[i32], now: Instant) {
        self.partitions.retain(|p, _| partitions.contains(p));
        for p in partitions {
            self.partitions
                .entry(*p)
                .or_insert(PartitionMark::assigned(now));
        }
    }

    /// The source found `partition` at its end at wall time `now`, with no message read since
    /// it was assigned (or since its last message). If it never had an event, it is empty: it
    /// stops holding the watermark back `empty_timeout` after the first such report rather
    /// than after the idle timeout. Its first event, when it comes, makes it count again; an
    /// event older than the watermark by then is late, as it would be on a partition that
    /// woke up from idle. Returns whether it was found empty now (the first report).
    pub fn at_end(&mut self, partition: i32, now: Instant) -> bool {
        match self.partitions.get_mut(&partition) {
            Some(m) if m.max_event_time.is_none() && m.empty_since.is_none() => {
                m.empty_since = Some(now);
                true
            }
            _ => false,
        }
    }

    /// A partition reached the end of a bounded run: it holds nothing back any more.
    pub fn end(&mut self, partition: i32) {
        if let Some(m) = self.partitions.get_mut(&partition) {
            m.ended = true;
        }
    }

    /// Assigned partitions without an event yet that hold the watermark back at wall time
    /// `now`: neither idle, nor found empty for `empty_timeout`, nor ended.
    pub fn waiting(&self, now: Instant) -> usize {
        self.partitions
            .values()
            .filter(|m| m.max_event_time.is_none() && !m.idle(now, &self.cfg))
            .count()
    }

    /// How long a partition found empty still holds the watermark back.
    pub fn empty_timeout(&self) -> Duration {
        self.cfg.empty_timeout
    }

    /// Forgets a partition (revoked in a rebalance).
    pub fn remove(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// What a checkpoint keeps of `partition` at wall time `now`.
    pub fn snapshot(&self, partition: i32, now: Instant) -> PartitionWatermark {
        let m = self.partitions.get(&partition);
        PartitionWatermark {
            max_event_time: m.and_then(|m| m.max_event_time),
            idle: m.is_some_and(|m| m.idle(now, &self.cfg)),
            pipeline: self.effective(partition),
        }
    }

    /// Takes a partition back from a checkpoint at wall time `now`: its largest event time, its
    /// idleness, and the pipeline watermark its events were judged against, which becomes its
    /// floor for lateness. The pipeline watermark restarts at the lowest of the restored ones
    /// (a partition handed over from an instance that was behind is not judged against this
    /// instance's watermark).
    pub fn restore(&mut self, partition: i32, s: PartitionWatermark, now: Instant) {
        let last_event_at = if s.idle {
            now.checked_sub(self.cfg.idle_timeout + Duration::from_millis(1))
                .unwrap_or(now)
        } else {
            now
        };
        self.partitions.insert(
            partition,
            PartitionMark {
                max_event_time: s.max_event_time,
                last_event_at,
                ended: false,
                empty_since: None,
            },
        );
        match s.pipeline {
            Some(p) => {
                self.floors.insert(partition, p);
                if !self.unjudged {
                    self.current = Some(self.current.map_or(p, |c| c.min(p)));
                }
            }
            // Its previous owner never had a watermark (say, an assigned partition without
            // events held it back all along): its events were judged against nothing, so they
            // must not be judged against the other partitions' watermark here either.
            None => self.start_unjudged(),
        }
    }

    /// A partition of a rebalance comes back without a checkpoint (it starts with empty state
    /// at its committed offset, or is read again from its beginning): like a partition whose
    /// checkpoint has no watermark, its events were never judged, and the pipeline watermark
    /// restarts unknown until [`Watermarks::advance`] computes it from every partition. The
    /// other partitions keep their floors ([`Watermarks::effective`]): what was late on them
    /// stays late. Without this, a partition handed over from an instance that was held back
    /// would have its whole backlog judged late against this instance's watermark.
    pub fn start_unjudged(&mut self) {
        self.unjudged = true;
        self.current = None;
    }

    /// Forgets every partition and the pipeline watermark, before the partitions of a
    /// rebalance are restored ([`Watermarks::restore`]).
    pub fn reset(&mut self) {
        self.partitions.clear();
        self.floors.clear();
        self.current = None;
        self.unjudged = false;
    }

    /// The watermark `partition`'s events are judged against: the pipeline watermark, or the
    /// one it had under its previous owner when that is higher.
    pub fn effective(&self, partition: i32) -> Option<i64> {
        match (self.current, self.floors.get(&partition)) {
            (Some(c), Some(f)) => Some(c.max(*f)),
            (c, f) => c.or(f.copied()),
        }
    }

    /// [`Watermarks::is_late`] for an event of `partition` (see [`Watermarks::effective`]).
    pub fn is_late_on(&self, partition: i32, event_time: i64, lateness_micros: i64) -> bool {
        self.effective(partition)
            .is_some_and(|w| event_time < w.saturating_sub(lateness_micros))
    }

    /// The watermark of one partition, if it has seen events.
    pub fn partition(&self, partition: i32) -> Option<i64> {
        self.partitions
            .get(&partition)
            .and_then(|m| m.max_event_time)
            .map(|t| t.saturating_sub(self.cfg.out_of_orderness_micros))
    }

    /// Recomputes and returns the pipeline watermark at wall time `now` (None before any event).
    pub fn advance(&mut self, now: Instant) -> Option<i64> {
        if let Some(candidate) = self.candidate(now) {
            self.current = Some(self.current.map_or(candidate, |c| c.max(candidate)));
            self.unjudged = false;
        }
        self.current
    }

    /// Whether [`Watermarks::advance`] at wall time `now` would move the watermark with no new
    /// event: a partition's idle or empty timeout ran out since the last advance. With no
    /// batch arriving, nothing else would move it (the pipeline asks every second while no batch arrives).
    pub fn would_advance(&self, now: Instant) -> bool {
        self.candidate(now)
            .is_some_and(|c| self.current.is_none_or(|w| c > w))
    }

    /// The watermark the partitions allow at wall time `now`, before it is kept from running
    /// backwards; None while an assigned partition without events holds it.
    fn candidate(&self, now: Instant) -> Option<i64> {
        let (mut active_min, mut all_max, mut blocked) = (None::<i64>, None::<i64>, false);
        for m in self.partitions.values() {
            let idle = m.idle(now, &self.cfg);
            let Some(t) = m.max_event_time else {
                // Assigned, nothing seen yet: wait for it unless it is idle, empty or ended.
                blocked |= !idle;
                continue;
            };
            let w = t.saturating_sub(self.cfg.out_of_orderness_micros);
            all_max = Some(all_max.map_or(w, |a| a.max(w)));
            if !idle {
                active_min = Some(active_min.map_or(w, |a| a.min(w)));
            }
        }
        if blocked {
            None
        } else {
            active_min.or(all_max)
        }
    }

    /// Moves the watermark to at least `t` (end of a bounded run: flush everything).
    pub fn force(&mut self, t: i64) -> i64 {
        let w = self.current.map_or(t, |c| c.max(t));
        self.current = Some(w);
        w
    }

    /// The latest event time seen on any partition (None before any event). The end of a
    /// bounded run flushes up to it even when a partition held the watermark back all along.
    pub fn max_event_time(&self) -> Option<i64> {
        self.partitions
            .values()
            .filter_map(|m| m.max_event_time)
            .max()
    }

    /// The last computed pipeline watermark.
    pub fn current(&self) -> Option<i64> {
        self.current
    }

    /// Whether an event at `event_time` is later than the allowed lateness: its windows may
    /// already be final. `lateness_micros` is how long after the watermark passes a time an
    /// event for it is still accepted.
    pub fn is_late(&self, event_time: i64, lateness_micros: i64) -> bool {
        self.current
            .is_some_and(|w| event_time < w.saturating_sub(lateness_micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn cfg() -> WatermarkConfig {
        WatermarkConfig {
            out_of_orderness_micros: 5 * S,
            idle_timeout: Duration::from_secs(30),
            empty_timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn minimum_over_partitions_minus_out_of_orderness() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(cfg());
        assert_eq!(w.advance(t0), None);
        w.observe(0, 100 * S, t0);
        w.observe(1, 60 * S, t0);
        w.observe(0, 90 * S, t0); // out of order: does not lower partition 0
        assert_eq!(w.partition(0), Some(95 * S));
        assert_eq!(w.advance(t0), Some(55 * S));
        assert!(w.is_late(40 * S, 10 * S));
        assert!(!w.is_late(50 * S, 10 * S));
    }

    #[test]
    fn idle_partitions_do_not_stall_and_time_never_runs_backwards() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(cfg());
        w.observe(0, 100 * S, t0);
        w.observe(1, 10 * S, t0);
        assert_eq!(w.advance(t0), Some(5 * S));
        let later = t0 + Duration::from_secs(31);
        w.observe(0, 200 * S, later);
        assert_eq!(
            w.advance(later),
            Some(195 * S),
            "partition 1 is idle and left out"
        );
        // Partition 1 wakes up far behind: the watermark stays, its events are late.
        w.observe(1, 20 * S, later);
        assert_eq!(w.advance(later), Some(195 * S));
        assert!(w.is_late(20 * S, 60 * S));
        // All idle: the largest partition watermark.
        let much_later = later + Duration::from_secs(60);
        assert_eq!(w.advance(much_later), Some(195 * S));
        assert_eq!(w.force(1_000 * S), 1_000 * S);
        w.remove(0);
        assert_eq!(w.partition(0), None);
    }

    #[test]
    fn assigned_partitions_without_events_hold_the_watermark_until_idle_or_ended() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(cfg());
        w.assign(&[0, 1, 2], t0);
        w.observe(0, 100 * S, t0);
        assert_eq!(
            w.advance(t0),
            None,
            "partitions 1 and 2 have not spoken yet"
        );
        w.observe(1, 50 * S, t0);
        w.end(2);
        assert_eq!(w.advance(t0), Some(45 * S), "2 ended; min of 0 and 1");
        let mut w = Watermarks::new(cfg());
        w.assign(&[0, 1], t0);
        w.observe(0, 100 * S, t0);
        let later = t0 + Duration::from_secs(31);
        w.observe(0, 110 * S, later);
        assert_eq!(
            w.advance(later),
            Some(105 * S),
            "1 stayed silent past the idle timeout"
        );
        // Revoked partitions are forgotten.
        w.assign(&[1], later);
        assert_eq!(w.partition(0), None);
    }

    #[test]
    fn an_empty_partition_at_its_end_holds_nothing_back_but_a_slow_one_does() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let t2 = t0 + Duration::from_secs(2);
        let mut w = Watermarks::new(cfg());
        w.assign(&[0, 1, 2], t0);
        w.observe(0, 100 * S, t0);
        w.observe(1, 80 * S, t0);
        assert_eq!(w.advance(t0), None, "partition 2 has not spoken yet");
        assert_eq!(w.waiting(t0), 1);
        // Partition 1 is at its end too, but it had events: it still counts (idle timeout).
        assert!(!w.at_end(1, t0));
        assert!(w.at_end(2, t0), "2 is found empty");
        assert!(
            !w.at_end(2, t1),
            "found once; the timer runs from the first report"
        );
        assert_eq!(
            w.advance(t1),
            None,
            "2 holds the watermark for empty_timeout"
        );
        assert!(!w.snapshot(2, t1).idle);
        assert!(!w.would_advance(t1), "nothing to move it yet");
        assert!(
            w.would_advance(t2),
            "time alone moves it once the empty timeout runs out (the pipeline's tick asks)"
        );
        assert_eq!(
            w.advance(t2),
            Some(75 * S),
            "2 is empty: the minimum of 0 and 1, long before the idle timeout"
        );
        assert_eq!(w.waiting(t2), 0);
        assert!(
            !w.would_advance(t2),
            "advanced: nothing more until an event or a timeout"
        );
        assert!(w.snapshot(2, t2).idle, "a checkpoint keeps it idle");
        // Its first event makes it count again, and the watermark never runs backwards.
        w.observe(2, 90 * S, t2);
        w.observe(1, 120 * S, t2);
        assert_eq!(w.advance(t2), Some(85 * S), "2 holds the watermark again");
        w.at_end(2, t2);
        assert_eq!(
            w.advance(t2 + Duration::from_secs(5)),
            Some(85 * S),
            "at its end after events, it waits for the idle timeout like any other"
        );
        // Revoked and assigned again: empty only once the source says so again.
        w.assign(&[0, 1], t2);
        w.assign(&[0, 1, 2], t2);
        w.observe(0, 200 * S, t2);
        w.observe(1, 200 * S, t2);
        assert_eq!(
            w.advance(t2 + Duration::from_secs(5)),
            Some(85 * S),
            "2 is new and not known empty"
        );
    }

    fn restored(max: i64, pipeline: Option<i64>) -> PartitionWatermark {
        PartitionWatermark {
            max_event_time: Some(max),
            idle: false,
            pipeline,
        }
    }

    #[test]
    fn a_restored_partition_never_judged_is_not_judged_against_the_others() {
        // Takeover: partitions 2 and 3 were far ahead here; partition 0 comes from an
        // instance whose watermark an empty partition held back, so it has none.
        let t0 = Instant::now();
        for order in [[0, 2, 3], [2, 3, 0], [2, 0, 3]] {
            let mut w = Watermarks::new(cfg());
            w.reset();
            for p in order {
                match p {
                    0 => w.restore(0, restored(20 * S, None), t0),
                    _ => w.restore(p, restored(500 * S, Some(495 * S)), t0),
                }
            }
            assert_eq!(w.current(), None, "restored in the order {order:?}");
            assert!(
                !w.is_late_on(0, 12 * S, 0),
                "partition 0's backlog is on time ({order:?})"
            );
            assert!(
                w.is_late_on(2, 400 * S, 0),
                "what was late on partition 2 stays late ({order:?})"
            );
            w.observe(0, 30 * S, t0);
            assert_eq!(w.advance(t0), Some(25 * S), "min over partitions");
            // The next rebalance starts judged again.
            w.reset();
            w.restore(2, restored(500 * S, Some(495 * S)), t0);
            assert_eq!(w.current(), Some(495 * S));
        }
        // A partition without a checkpoint: the same.
        let mut w = Watermarks::new(cfg());
        w.restore(2, restored(500 * S, Some(495 * S)), t0);
        w.start_unjudged();
        w.restore(3, restored(400 * S, Some(395 * S)), t0);
        assert_eq!(w.current(), None);
        w.observe(1, 10 * S, t0);
        assert_eq!(w.advance(t0), Some(5 * S));
        assert!(!w.is_late_on(1, 6 * S, 0));
    }
}
