//! Exact summaries of response-time distributions, and backlog age buckets.
//!
//! Quantiles are exact with linear interpolation between the closest ranks, numpy's default
//! (`numpy.percentile(x, q, method="linear")`): for `n` sorted values the q-quantile sits at
//! position `q × (n − 1)`, between the values at its floor and ceiling. Window records name
//! this method (`quantile_method = "exact_linear"`), so analysts can reproduce the figures.

/// Count, median, 90th percentile and mean of a set of durations (seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of values.
    pub count: u64,
    /// Median; `None` without values.
    pub median: Option<f64>,
    /// 90th percentile; `None` without values.
    pub p90: Option<f64>,
    /// Arithmetic mean; `None` without values.
    pub mean: Option<f64>,
}

/// The q-quantile (0 ≤ q ≤ 1) of `sorted` (ascending), numpy's linear method.
pub fn quantile_linear(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let pos = q.clamp(0.0, 1.0) * last as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 0 ≤ pos ≤ last
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(last);
    let frac = pos - pos.floor();
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// Summarises `values` (any order; NaNs are ignored).
pub fn summarize(values: &[f64]) -> Summary {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    summarize_sorted(&v)
}

/// [`summarize`] of values already sorted by [`f64::total_cmp`], without a copy: NaNs, which
/// that order puts at either end, are left out, so the figures equal `summarize`'s.
pub fn summarize_sorted(sorted: &[f64]) -> Summary {
    let start = sorted
        .iter()
        .position(|x| !x.is_nan())
        .unwrap_or(sorted.len());
    let end = sorted
        .iter()
        .rposition(|x| !x.is_nan())
        .map_or(start, |i| i + 1);
    let v = sorted.get(start..end).unwrap_or(&[]);
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let mean = (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    Summary {
        count: v.len() as u64,
        median: quantile_linear(v, 0.5),
        p90: quantile_linear(v, 0.9),
        mean,
    }
}

/// Age buckets of the unanswered backlog (the metrics reference, "backlog").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BacklogBucket {
    /// Younger than 1 hour.
    Under1h,
    /// 1 to 4 hours.
    From1hTo4h,
    /// 4 to 24 hours.
    From4hTo24h,
    /// 24 hours or older, still within the horizon.
    Over24h,
    /// Reached the response horizon without an answer.
    Expired,
}

impl BacklogBucket {
    /// The bucket of an unanswered message of age `age_micros` under horizon `horizon_micros`.
    pub fn of(age_micros: i64, horizon_micros: i64) -> BacklogBucket {
        const H: i64 = 3_600_000_000;
        match age_micros {
            a if a >= horizon_micros => BacklogBucket::Expired,
            a if a < H => BacklogBucket::Under1h,
            a if a < 4 * H => BacklogBucket::From1hTo4h,
            a if a < 24 * H => BacklogBucket::From4hTo24h,
            _ => BacklogBucket::Over24h,
        }
    }

    /// The label / column suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            BacklogBucket::Under1h => "under_1h",
            BacklogBucket::From1hTo4h => "from_1h_to_4h",
            BacklogBucket::From4hTo24h => "from_4h_to_24h",
            BacklogBucket::Over24h => "over_24h",
            BacklogBucket::Expired => "expired_unanswered",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], [50, 90]) == [2.5, 3.7]
        let s = summarize(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(s.count, 4);
        assert_eq!(s.median, Some(2.5));
        assert!((s.p90.unwrap() - 3.7).abs() < 1e-12);
        assert_eq!(s.mean, Some(2.5));
        // numpy.percentile([10, 20, 30, 40, 1000], [50, 90]) == [30, 616]
        let s = summarize(&[1000.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(s.median, Some(30.0));
        assert!((s.p90.unwrap() - 616.0).abs() < 1e-9);
        let one = summarize(&[7.0]);
        assert_eq!((one.median, one.p90), (Some(7.0), Some(7.0)));
        let none = summarize(&[f64::NAN]);
        assert_eq!((none.count, none.median, none.mean), (0, None, None));
    }

    #[test]
    fn sorted_input_summarises_like_any_order() {
        let mut v = vec![3.5, f64::NAN, 1.0, -f64::NAN, 2.25, 9.0, 1.0];
        let any = summarize(&v);
        v.sort_by(f64::total_cmp);
        assert_eq!(summarize_sorted(&v), any);
        assert_eq!(any.count, 5);
        let nans = [f64::NAN, -f64::NAN];
        assert_eq!(summarize_sorted(&nans), summarize(&nans));
        assert_eq!(summarize_sorted(&[]).count, 0);
    }

    #[test]
    fn backlog_buckets_have_half_open_edges() {
        let h = 3_600_000_000;
        let horizon = 48 * h;
        assert_eq!(BacklogBucket::of(0, horizon), BacklogBucket::Under1h);
        assert_eq!(BacklogBucket::of(h - 1, horizon), BacklogBucket::Under1h);
        assert_eq!(BacklogBucket::of(h, horizon), BacklogBucket::From1hTo4h);
        assert_eq!(
            BacklogBucket::of(4 * h, horizon),
            BacklogBucket::From4hTo24h
        );
        assert_eq!(BacklogBucket::of(24 * h, horizon), BacklogBucket::Over24h);
        assert_eq!(BacklogBucket::of(48 * h, horizon), BacklogBucket::Expired);
        // With the default 24 h horizon a message expires before it could be "over 24h".
        assert_eq!(BacklogBucket::of(24 * h, 24 * h), BacklogBucket::Expired);
    }
}
