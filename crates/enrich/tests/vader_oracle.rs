//! Checks the Rust VADER against the Python reference (vaderSentiment 3.3.2) on every text of
//! the oracle, `tests/data/vader/oracle.jsonl`, written by `tests/data/vader/oracle.py` (run it
//! with `cargo xtask vader-oracle`).
//!
//! The contract: `neg`, `neu` and `pos` equal the reference's rounded values exactly and print
//! the same as Python's `str()`; `compound` is within 1e-4 of the reference (in practice it is
//! bit-identical, and the test reports how many are). Any mismatch fails the test and the first
//! ones are printed with the text and both sets of scores.

use enrich::sentiment::{Scorer, score_lines};
use serde::Deserialize;

/// The oracle, relative to this package.
const ORACLE: &str = "tests/data/vader/oracle.jsonl";

/// The oracle file, found from `CARGO_MANIFEST_DIR` as set when the test runs (cargo and nextest
/// set it), not only as baked in at build time: a binary cargo reuses from a checkout at another
/// path (one shared target directory) would otherwise read that checkout's files.
fn oracle_path() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || env!("CARGO_MANIFEST_DIR").into(),
            std::path::PathBuf::from,
        )
        .join(ORACLE)
}

/// The oracle must not silently shrink (a truncated file would pass trivially).
const MIN_TEXTS: usize = 5000;
const COMPOUND_TOLERANCE: f64 = 1e-4;

#[derive(Deserialize)]
struct Row {
    text: String,
    neg: f64,
    neu: f64,
    pos: f64,
    compound: f64,
    /// Python's `str()` of the four values, tab-separated.
    tsv: String,
    /// Which generator of `oracle.py` wrote the text.
    kind: String,
}

fn load() -> Vec<Row> {
    let path = oracle_path();
    let data = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask vader-oracle`)", path.display()));
    data.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// A text shortened for a failure message.
fn excerpt(text: &str) -> String {
    let mut s: String = text.chars().take(160).collect();
    if s.len() < text.len() {
        s.push_str(&format!("... ({} bytes)", text.len()));
    }
    format!("{s:?}")
}

#[test]
fn every_oracle_text_scores_like_the_reference() {
    let rows = load();
    assert!(
        rows.len() >= MIN_TEXTS,
        "oracle has {} texts, expected >= {MIN_TEXTS}",
        rows.len()
    );

    let mut scorer = Scorer::new();
    let mut mismatches = Vec::new();
    let mut exact_compound = 0;
    for (i, row) in rows.iter().enumerate() {
        let got = scorer.score(&row.text);
        let tsv = got.to_string();
        let want_fields: Vec<&str> = row.tsv.split('\t').collect();
        let got_fields: Vec<&str> = tsv.split('\t').collect();
        let ok = got.neg == row.neg
            && got.neu == row.neu
            && got.pos == row.pos
            && (got.compound - row.compound).abs() <= COMPOUND_TOLERANCE
            && got_fields[..3] == want_fields[..3]
            && (got.compound != row.compound || tsv == row.tsv);
        if got.compound.to_bits() == row.compound.to_bits() {
            exact_compound += 1;
        }
        if !ok {
            mismatches.push(format!(
                "line {} ({}): {}\n    reference: {}\n    ours:      {}",
                i + 1,
                row.kind,
                excerpt(&row.text),
                row.tsv.replace('\t', "  "),
                tsv.replace('\t', "  "),
            ));
        }
    }
    println!(
        "{} oracle texts, {} mismatches, {} compounds bit-identical",
        rows.len(),
        mismatches.len(),
        exact_compound
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} texts differ from vaderSentiment 3.3.2; the first ones:\n{}",
        mismatches.len(),
        rows.len(),
        mismatches
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The same texts through the `cluetrain sentiment` line scorer: its output must be the
/// reference's `str()` values, line for line.
#[test]
fn line_scorer_prints_reference_values() {
    let rows: Vec<Row> = load()
        .into_iter()
        // One text per line only works for texts without line breaks of their own.
        .filter(|r| !r.text.contains('\n') && !r.text.ends_with('\r'))
        .collect();
    assert!(rows.len() >= MIN_TEXTS);
    let mut input = Vec::new();
    for row in &rows {
        input.extend_from_slice(row.text.as_bytes());
        input.push(b'\n');
    }
    let mut out = Vec::new();
    let mut err = Vec::new();
    let report = score_lines(input.as_slice(), &mut out, &mut err).unwrap();
    assert_eq!(report.lines, rows.len() as u64);
    assert_eq!(report.failed, 0);
    assert!(err.is_empty());
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), rows.len());
    let bad: Vec<String> = rows
        .iter()
        .zip(&lines)
        .filter(|(row, line)| row.tsv != **line)
        .take(25)
        .map(|(row, line)| format!("{}: want {:?}, got {:?}", excerpt(&row.text), row.tsv, line))
        .collect();
    assert!(
        bad.is_empty(),
        "line scorer output differs:\n{}",
        bad.join("\n")
    );
}
