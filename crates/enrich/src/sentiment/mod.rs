//! VADER sentiment, identical to the reference implementation vaderSentiment 3.3.2.
//!
//! [`Scorer::score`] returns the same `neg`, `neu`, `pos` and `compound` as the Python package's
//! `SentimentIntensityAnalyzer().polarity_scores(text)`, rounding included: the test
//! `tests/vader_oracle.rs` checks thousands of varied texts scored by the Python package
//! (`cargo xtask vader-oracle` regenerates them). The lexicons are the package's own files
//! (`data/vader/`); the code is a Rust implementation of its rules, written for speed: one hash
//! probe per word, no copying of the text, and no heap allocation per text once a [`Scorer`]'s
//! scratch space has grown to the texts' size.
//!
//! Three ways in:
//! - [`Scorer`] (or [`score`] with a per-thread scorer) for one text at a time;
//! - [`append_sentiment_columns`] for an Arrow batch of events (adds the [`col`] columns);
//! - [`score_lines`] for the `cluetrain sentiment` command: one TSV line out per line in,
//!   printed like Python's `str()` of the reference's values so the two can be diffed.
//!
//! ```
//! use enrich::sentiment::{Scorer, SentimentLabel};
//!
//! let mut scorer = Scorer::new();
//! let s = scorer.score("The book was good.");
//! assert_eq!((s.neg, s.neu, s.pos, s.compound), (0.0, 0.508, 0.492, 0.4404));
//! assert_eq!(s.to_string(), "0.0\t0.508\t0.492\t0.4404");
//! assert_eq!(s.label(), SentimentLabel::Positive);
//! ```

mod arrow;
mod lexicon;
mod lines;
mod pyfloat;
mod pytext;
mod scorer;

use std::cell::RefCell;
use std::fmt;
use std::io;

pub use arrow::{
    PARALLEL_ROWS_MIN, append_sentiment_columns, append_sentiment_columns_parallel,
    sentiment_fields,
};
pub use lines::{FLUSH_EVERY_LINES, LineReport, score_lines};
pub use scorer::Scorer;

/// Names of the columns [`append_sentiment_columns`] adds, in the order it adds them.
pub mod col {
    /// `neg`: share of negative valence, `[0, 1]`, 3 decimals (Float64).
    pub const NEG: &str = "sentiment_neg";
    /// `neu`: share of neutral words, `[0, 1]`, 3 decimals (Float64).
    pub const NEU: &str = "sentiment_neu";
    /// `pos`: share of positive valence, `[0, 1]`, 3 decimals (Float64).
    pub const POS: &str = "sentiment_pos";
    /// `compound`: normalised sum of valences, `[-1, 1]`, 4 decimals (Float64).
    pub const COMPOUND: &str = "sentiment_compound";
    /// [`super::SentimentLabel::as_str`] of the compound (Utf8).
    pub const LABEL: &str = "sentiment_label";
    /// All of them, in order.
    pub const ALL: [&str; 5] = [NEG, NEU, POS, COMPOUND, LABEL];
}

/// VADER's scores for one text, rounded exactly as the reference rounds them (`round(x, 3)`
/// for `neg`, `neu` and `pos`; `round(x, 4)` for `compound`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// Proportion of the text's valence that is negative.
    pub neg: f64,
    /// Proportion of words that are neutral.
    pub neu: f64,
    /// Proportion of the text's valence that is positive.
    pub pos: f64,
    /// Normalised, weighted composite score in `[-1, 1]`; the usual single measure.
    pub compound: f64,
}

impl Scores {
    /// The scores of a text with no words: all zero.
    pub const ZERO: Scores = Scores {
        neg: 0.0,
        neu: 0.0,
        pos: 0.0,
        compound: 0.0,
    };

    /// The label of the compound score (see [`label`]).
    pub fn label(&self) -> SentimentLabel {
        label(self.compound)
    }

    /// Writes `neg\tneu\tpos\tcompound` (no newline), each printed as Python's `str()` prints the
    /// reference's value: `0.0\t0.508\t0.492\t0.4404`.
    pub fn write_tsv<W: io::Write + ?Sized>(&self, out: &mut W) -> io::Result<()> {
        pyfloat::write_py_str(out, self.neg, 3)?;
        out.write_all(b"\t")?;
        pyfloat::write_py_str(out, self.neu, 3)?;
        out.write_all(b"\t")?;
        pyfloat::write_py_str(out, self.pos, 3)?;
        out.write_all(b"\t")?;
        pyfloat::write_py_str(out, self.compound, 4)
    }
}

impl fmt::Display for Scores {
    /// The same text as [`Scores::write_tsv`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = [
            (self.neg, 3),
            (self.neu, 3),
            (self.pos, 3),
            (self.compound, 4),
        ];
        for (i, (value, ndigits)) in fields.into_iter().enumerate() {
            if i > 0 {
                f.write_str("\t")?;
            }
            let mut buf = [0u8; 48];
            let len = pyfloat::format_py_str(&mut buf, value, ndigits);
            f.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

/// The conventional three-way reading of a compound score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SentimentLabel {
    /// `compound >= 0.05`.
    Positive,
    /// `-0.05 < compound < 0.05`.
    Neutral,
    /// `compound <= -0.05`.
    Negative,
}

impl SentimentLabel {
    /// `"positive"`, `"neutral"` or `"negative"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SentimentLabel::Positive => "positive",
            SentimentLabel::Neutral => "neutral",
            SentimentLabel::Negative => "negative",
        }
    }
}

impl fmt::Display for SentimentLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The thresholds recommended by VADER's authors: positive at `compound >= 0.05`, negative at
/// `compound <= -0.05`, neutral in between (and for NaN, which VADER never produces).
pub fn label(compound: f64) -> SentimentLabel {
    if compound >= 0.05 {
        SentimentLabel::Positive
    } else if compound <= -0.05 {
        SentimentLabel::Negative
    } else {
        SentimentLabel::Neutral
    }
}

/// Scores one text with this thread's [`Scorer`] (created on first use). Prefer owning a
/// `Scorer` in loops; this is for one-off calls.
pub fn score(text: &str) -> Scores {
    thread_local! {
        static SCORER: RefCell<Scorer> = RefCell::new(Scorer::new());
    }
    SCORER.with(|s| match s.try_borrow_mut() {
        Ok(mut scorer) => scorer.score(text),
        // Only reachable by re-entrance, which nothing in `score` does; stay correct anyway.
        Err(_) => Scorer::new().score(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_at_the_thresholds() {
        assert_eq!(label(0.05), SentimentLabel::Positive);
        assert_eq!(label(0.0499), SentimentLabel::Neutral);
        assert_eq!(label(-0.05), SentimentLabel::Negative);
        assert_eq!(label(-0.0499), SentimentLabel::Neutral);
        assert_eq!(label(f64::NAN), SentimentLabel::Neutral);
        assert_eq!(SentimentLabel::Negative.as_str(), "negative");
    }

    #[test]
    fn display_and_write_tsv_agree() {
        let s = score("VADER is not smart, handsome, nor funny.");
        let mut out = Vec::new();
        s.write_tsv(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), s.to_string());
        assert_eq!(s.to_string(), "0.646\t0.354\t0.0\t-0.7424");
    }
}
