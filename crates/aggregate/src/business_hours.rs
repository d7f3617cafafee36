//! Business-hours arithmetic: how many seconds of an interval fall inside a brand's opening
//! hours (weekly schedule in an IANA time zone, minus holidays).
//!
//! First-response time "in business hours" (METRICS.md) counts only the seconds a team was
//! open. The computation works on real instants: each opening interval of each local day is
//! converted to UTC through the time-zone database and intersected with the interval, so
//! daylight-saving changes are right by construction (a 09:00-17:00 day is 8 h long on every
//! day; a 00:00-24:00 day is 23 h or 25 h long when the clocks change).
//!
//! Local times that do not exist (the spring-forward gap) start at the first instant after
//! the gap; local times that exist twice (fall-back) open at the first occurrence and close at
//! the second, so a schedule never loses business time to a clock change.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{
    Datelike, Duration as ChronoDuration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use chrono_tz::Tz;

/// A problem with a schedule definition: a user error in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The time zone is not in the IANA database.
    #[error(
        "unknown time zone {0:?}: use an IANA name such as \"Europe/London\" or \"America/New_York\""
    )]
    UnknownTimeZone(String),
    /// An opening interval is not `HH:MM-HH:MM` with start before end.
    #[error(
        "bad opening hours {0:?}: write \"HH:MM-HH:MM\" with the start before the end (\"24:00\" allowed as end)"
    )]
    BadInterval(String),
    /// A holiday is not a date.
    #[error("bad holiday {0:?}: write an ISO date such as \"2026-12-25\"")]
    BadHoliday(String),
}

/// Opening intervals of one weekday, as seconds since local midnight, half-open.
type DayIntervals = Vec<(u32, u32)>;

/// A brand's opening hours.
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessCalendar {
    tz: Tz,
    /// Monday = 0 … Sunday = 6.
    week: [DayIntervals; 7],
    holidays: BTreeSet<NaiveDate>,
}

impl fmt::Display for BusinessCalendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "business hours in {} ({} holidays)",
            self.tz.name(),
            self.holidays.len()
        )
    }
}

fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 3600 + m * 60)
}

/// Parses `"09:00-17:30"` into seconds since midnight.
pub fn parse_interval(s: &str) -> Result<(u32, u32), ScheduleError> {
    let bad = || ScheduleError::BadInterval(s.to_string());
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b) = (
        parse_hhmm(a).ok_or_else(bad)?,
        parse_hhmm(b).ok_or_else(bad)?,
    );
    if a >= b {
        return Err(bad());
    }
    Ok((a, b))
}

impl BusinessCalendar {
    /// A calendar in time zone `tz` with `week[0]` = Monday's intervals ("HH:MM-HH:MM") and
    /// ISO-date `holidays`.
    pub fn new(tz: &str, week: [&[&str]; 7], holidays: &[&str]) -> Result<Self, ScheduleError> {
        let tz: Tz = tz
            .parse()
            .map_err(|_| ScheduleError::UnknownTimeZone(tz.to_string()))?;
        let mut days: [DayIntervals; 7] = Default::default();
        for (day, intervals) in days.iter_mut().zip(week) {
            for s in intervals {
                day.push(parse_interval(s)?);
            }
            day.sort_unstable();
            if day.windows(2).any(|w| w[1].0 < w[0].1) {
                return Err(ScheduleError::BadInterval(intervals.join(",")));
            }
        }
        let holidays = holidays
            .iter()
            .map(|h| {
                NaiveDate::parse_from_str(h, "%Y-%m-%d")
                    .map_err(|_| ScheduleError::BadHoliday((*h).to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(BusinessCalendar {
            tz,
            week: days,
            holidays,
        })
    }

    /// Always open, in UTC: business time equals calendar time.
    pub fn always_open() -> Self {
        BusinessCalendar {
            tz: Tz::UTC,
            week: std::array::from_fn(|_| vec![(0, 86_400)]),
            holidays: BTreeSet::new(),
        }
    }

    /// The instant (µs) at which local wall time `t` on `date` happens. `late` picks the
    /// second occurrence of an ambiguous time; a time in a gap maps to the end of the gap.
    fn instant(&self, date: NaiveDate, secs: u32, late: bool) -> Option<i64> {
        let (date, secs) = if secs >= 86_400 {
            (date.succ_opt()?, secs - 86_400)
        } else {
            (date, secs)
        };
        let mut local = NaiveDateTime::new(
            date,
            NaiveTime::from_num_seconds_from_midnight_opt(secs, 0)?,
        );
        // Gaps are at most a few hours; step through them minute by minute.
        for _ in 0..(4 * 60) {
            match self.tz.from_local_datetime(&local) {
                chrono::LocalResult::Single(t) => return Some(t.timestamp_micros()),
                chrono::LocalResult::Ambiguous(a, b) => {
                    return Some(if late { b } else { a }.timestamp_micros());
                }
                chrono::LocalResult::None => local += ChronoDuration::minutes(1),
            }
        }
        None
    }

    /// Microseconds of `[start, end)` (µs since the epoch) that fall in business hours.
    /// Zero when `end <= start`.
    pub fn business_micros(&self, start: i64, end: i64) -> i64 {
        if end <= start {
            return 0;
        }
        let local_date = |t: i64| {
            Utc.timestamp_micros(t)
                .single()
                .map(|u| u.with_timezone(&self.tz).date_naive())
        };
        let (Some(first), Some(last)) = (local_date(start), local_date(end)) else {
            return 0;
        };
        // Start one day early: an interval ending after midnight ("24:00") belongs to the day before.
        let mut day = first.pred_opt().unwrap_or(first);
        let mut total = 0i64;
        while day <= last {
            if !self.holidays.contains(&day) {
                let weekday = day.weekday().num_days_from_monday() as usize;
                for &(open, close) in &self.week[weekday] {
                    let (Some(o), Some(c)) = (
                        self.instant(day, open, false),
                        self.instant(day, close, true),
                    ) else {
                        continue;
                    };
                    total += (c.min(end) - o.max(start)).max(0);
                }
            }
            match day.succ_opt() {
                Some(d) => day = d,
                None => break,
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;

    fn t(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    }

    fn nine_to_five(tz: &str, holidays: &[&str]) -> BusinessCalendar {
        let d: &[&str] = &["09:00-17:00"];
        BusinessCalendar::new(tz, [d, d, d, d, d, &[], &[]], holidays).unwrap()
    }

    #[test]
    fn counts_only_opening_hours_across_nights_weekends_and_holidays() {
        let c = nine_to_five("Europe/London", &["2026-01-07"]);
        // Mon 2026-01-05 16:00 → Tue 10:00 (GMT): 1 h Monday + 1 h Tuesday.
        assert_eq!(
            c.business_micros(t("2026-01-05T16:00:00Z"), t("2026-01-06T10:00:00Z")),
            2 * H
        );
        // Fri 16:00 → Mon 09:30: 1 h + 0.5 h, the weekend is closed.
        assert_eq!(
            c.business_micros(t("2026-01-09T16:00:00Z"), t("2026-01-12T09:30:00Z")),
            3 * H / 2
        );
        // Wednesday the 7th is a holiday: Tue 17:00 → Thu 10:00 is 1 h.
        assert_eq!(
            c.business_micros(t("2026-01-06T17:00:00Z"), t("2026-01-08T10:00:00Z")),
            H
        );
        // Entirely outside hours.
        assert_eq!(
            c.business_micros(t("2026-01-05T18:00:00Z"), t("2026-01-05T23:00:00Z")),
            0
        );
        assert_eq!(
            c.business_micros(t("2026-01-05T12:00:00Z"), t("2026-01-05T11:00:00Z")),
            0
        );
    }

    #[test]
    fn time_zone_shifts_the_opening_hours() {
        let c = nine_to_five("America/New_York", &[]);
        // 09:00 EST is 14:00 UTC.
        assert_eq!(
            c.business_micros(t("2026-01-05T13:00:00Z"), t("2026-01-05T15:00:00Z")),
            H
        );
    }

    #[test]
    fn daylight_saving_changes_are_right() {
        // Europe/London springs forward on Sun 2026-03-29 at 01:00 UTC and falls back on
        // Sun 2026-10-25 at 01:00 UTC. Open all day every day.
        let all: &[&str] = &["00:00-24:00"];
        let c = BusinessCalendar::new("Europe/London", [all; 7], &[]).unwrap();
        let day = |d: &str| {
            c.business_micros(
                t(&format!("{d}T00:00:00Z")) - 2 * H,
                t(&format!("{d}T00:00:00Z")) + 48 * H,
            )
        };
        // Local midnight to midnight: 23 h on the spring day, 25 h on the autumn day.
        let spring = c.business_micros(t("2026-03-29T00:00:00Z"), t("2026-03-29T23:00:00Z"));
        assert_eq!(spring, 23 * H, "00:00 GMT to 00:00 BST is 23 h");
        let autumn = c.business_micros(t("2026-10-24T23:00:00Z"), t("2026-10-26T00:00:00Z"));
        assert_eq!(autumn, 25 * H, "00:00 BST to 00:00 GMT is 25 h");
        assert_eq!(
            day("2026-03-29"),
            50 * H,
            "always open: business time = calendar time"
        );

        // 9-to-5 stays 8 hours across the change, at shifted UTC instants.
        let c = nine_to_five("Europe/London", &[]);
        // Fri 27 March 09:00 GMT = 09:00Z; Mon 30 March 09:00 BST = 08:00Z.
        assert_eq!(
            c.business_micros(t("2026-03-27T16:00:00Z"), t("2026-03-30T09:00:00Z")),
            2 * H
        );
    }

    #[test]
    fn gap_and_repeated_hours() {
        // A shift 00:30-03:00 local on the spring-forward day: 01:00-02:00 does not exist.
        let s: &[&str] = &["00:30-03:00"];
        let c =
            BusinessCalendar::new("Europe/London", [&[], &[], &[], &[], &[], &[], s], &[]).unwrap();
        // Sunday 2026-03-29: 00:30 GMT (00:30Z) to 03:00 BST (02:00Z) = 1.5 h.
        assert_eq!(
            c.business_micros(t("2026-03-29T00:00:00Z"), t("2026-03-29T12:00:00Z")),
            3 * H / 2
        );
        // Sunday 2026-10-25: 00:30 BST (23:30Z Sat) to 03:00 GMT (03:00Z) = 3.5 h.
        assert_eq!(
            c.business_micros(t("2026-10-24T20:00:00Z"), t("2026-10-25T12:00:00Z")),
            7 * H / 2
        );
    }

    #[test]
    fn bad_definitions_are_explained() {
        let d: &[&str] = &["17:00-09:00"];
        assert!(matches!(
            BusinessCalendar::new("UTC", [d; 7], &[]),
            Err(ScheduleError::BadInterval(_))
        ));
        let e = BusinessCalendar::new("Mars/Olympus", [&[]; 7], &[]).unwrap_err();
        assert!(e.to_string().contains("IANA"));
        assert!(BusinessCalendar::new("UTC", [&[]; 7], &["25/12/2026"]).is_err());
        let overlap: &[&str] = &["09:00-12:00", "11:00-13:00"];
        assert!(BusinessCalendar::new("UTC", [overlap; 7], &[]).is_err());
    }

    #[test]
    fn always_open_is_calendar_time() {
        let c = BusinessCalendar::always_open();
        assert_eq!(
            c.business_micros(t("2026-01-05T16:00:00Z"), t("2026-01-09T10:30:00Z")),
            90 * H + H / 2
        );
    }
}
