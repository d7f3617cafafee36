//! Sentiment stage: VADER scores of tweet-length texts, texts/s on one core.
//!
//! Two scorers side by side on the same corpus: cluetrain's (`enrich::sentiment::Scorer`) and
//! the crate `vader-parity` 0.1.0, a faithful but straightforward Rust port, as the baseline. The
//! corpus is the oracle's posts (`crates/enrich/tests/data/vader/oracle.jsonl`, kind "tweet")
//! of tweet length, 30 to 280 characters: social posts with emoji, handles, links, odd case and
//! punctuation, in a fixed order. A second group, `sentiment_stress`, scores every tweet-length
//! oracle text, rule-dense and multi-script stress texts included. A third,
//! `sentiment_batch`, scores an Arrow micro-batch as the pipeline does, on one thread and on
//! every core (`sentiment.threads`).

// Setup on a fixed corpus: a panic is a broken bench, reported as such.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use enrich::sentiment::Scorer;

/// The oracle, relative to this package.
const ORACLE: &str = "../crates/enrich/tests/data/vader/oracle.jsonl";

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

/// Texts per benchmark iteration.
const CORPUS: usize = 2000;

/// Decodes a JSON string body (the part between the quotes); `None` if malformed.
fn json_unescape(body: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hex = |chars: &mut std::str::Chars<'_>| -> Option<u32> {
                    let s: String = chars.take(4).collect();
                    u32::from_str_radix(&s, 16).ok()
                };
                let hi = hex(&mut chars)?;
                let cp = if (0xd800..0xdc00).contains(&hi) {
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let lo = hex(&mut chars)?;
                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                } else {
                    hi
                };
                out.push(char::from_u32(cp)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The `"text"` field of one oracle line (the first field, written by Python's json.dumps).
fn oracle_text(line: &str) -> Option<String> {
    let rest = line.strip_prefix("{\"text\": \"")?;
    // The body ends at the first unescaped quote.
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return json_unescape(&rest[..i]),
            _ => i += 1,
        }
    }
    None
}

/// Tweet-length (30 to 280 characters) oracle texts, `tweets_only` keeping those of kind
/// "tweet", repeated in order up to `CORPUS` texts.
fn corpus(tweets_only: bool) -> Vec<String> {
    let path = oracle_path();
    let data = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask vader-oracle`)", path.display()));
    let texts: Vec<String> = data
        .lines()
        // "kind" is the last field oracle.py writes.
        .filter(|line| !tweets_only || line.ends_with("\"kind\": \"tweet\"}"))
        .filter_map(oracle_text)
        .filter(|t| (30..=280).contains(&t.chars().count()))
        .collect();
    assert!(
        texts.len() > 1000,
        "only {} tweet-length texts in the oracle",
        texts.len()
    );
    let corpus: Vec<String> = texts.iter().cycle().take(CORPUS).cloned().collect();
    let bytes: usize = corpus.iter().map(String::len).sum();
    let words: usize = corpus.iter().map(|t| t.split_whitespace().count()).sum();
    eprintln!(
        "sentiment corpus ({}): {} texts ({} distinct), mean {} bytes, {:.1} words",
        if tweets_only {
            "posts"
        } else {
            "all tweet-length oracle texts"
        },
        corpus.len(),
        texts.len().min(CORPUS),
        bytes / corpus.len(),
        words as f64 / corpus.len() as f64
    );
    corpus
}

fn sentiment(c: &mut Criterion) {
    let texts = corpus(true);
    let mut group = c.benchmark_group("sentiment");
    group.throughput(Throughput::Elements(texts.len() as u64));
    // The baseline takes ~25 ms per iteration: fewer, longer samples keep the run short.
    group.sample_size(30);

    group.bench_function("cluetrain_vader", |b| {
        let mut scorer = Scorer::new();
        b.iter(|| {
            let mut sum = 0.0;
            for t in &texts {
                sum += scorer.score(black_box(t)).compound;
            }
            black_box(sum)
        });
    });

    group.bench_function("vader_parity_0_1_0", |b| {
        let analyzer = vader_parity::SentimentIntensityAnalyzer::new();
        b.iter(|| {
            for t in &texts {
                black_box(analyzer.polarity_scores(black_box(t)));
            }
        });
    });

    group.finish();

    // The whole oracle at tweet length, stress generators included (dense in rule words, emoji
    // and non-Latin scripts): a worst case rather than a typical stream.
    let stress = corpus(false);
    let mut group = c.benchmark_group("sentiment_stress");
    group.throughput(Throughput::Elements(stress.len() as u64));
    group.sample_size(30);
    group.bench_function("cluetrain_vader", |b| {
        let mut scorer = Scorer::new();
        b.iter(|| {
            let mut sum = 0.0;
            for t in &stress {
                sum += scorer.score(black_box(t)).compound;
            }
            black_box(sum)
        });
    });
    group.finish();

    // A micro-batch as the pipeline scores it (`append_sentiment_columns_parallel`, the
    // `sentiment.threads` setting): 8192 texts of the corpus as an Arrow column, on 1 thread
    // and on every available core. The rate of `threads_N` is per N cores, not per core.
    let rows = 8192;
    let column: Vec<&str> = texts
        .iter()
        .map(String::as_str)
        .cycle()
        .take(rows)
        .collect();
    let schema = arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        model::schema::col::TEXT,
        arrow_schema::DataType::Utf8,
        false,
    )]);
    let batch = arrow_array::RecordBatch::try_new(
        std::sync::Arc::new(schema),
        vec![std::sync::Arc::new(arrow_array::StringArray::from(column))],
    )
    .unwrap();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut group = c.benchmark_group("sentiment_batch");
    group.throughput(Throughput::Elements(rows as u64));
    group.sample_size(20);
    let mut counts = vec![1];
    if cores > 1 {
        counts.push(cores);
    }
    for threads in counts {
        group.bench_function(format!("arrow_8192_threads_{threads}"), |b| {
            b.iter(|| {
                black_box(
                    enrich::sentiment::append_sentiment_columns_parallel(&batch, threads).unwrap(),
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, sentiment);
criterion_main!(benches);
