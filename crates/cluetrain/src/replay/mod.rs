//! `cluetrain replay`: publishes a file of past conversations as cluetrain events, so analysts
//! can try cluetrain on their own history (replay the file, then run the pipeline over it).
//!
//! Formats: [`twcs`], the public "Customer Support on Twitter" CSV, mapped to events with
//! brand attribution; [`jsonl`], schema events one per line, validated and passed on. Events
//! go to Kafka keyed by brand ([`sink`]), or with `--dry-run` to stdout as JSONL. Bad rows are
//! reported on stderr with their line numbers, skipped and counted in the final [`Report`].

pub mod jsonl;
pub mod sink;
/// The twcs parser lives in [`ingest::twcs`] (light dependencies, so that it can be fuzzed
/// without building DataFusion); re-exported here, where the replay uses it.
pub use ingest::twcs;

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use model::config::Config;
use serde::Serialize;

use crate::cli::ReplayArgs;
use sink::Sink;

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// "Customer Support on Twitter" CSV (tweet_id, author_id, inbound, created_at, text,
    /// response_tweet_id, in_response_to_tweet_id).
    Twcs,
    /// One social event (schemas/social-event.v1.json) per line.
    Jsonl,
}

/// What a replay did: printed as one JSON line at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Data rows (twcs) or non-blank lines (jsonl) read.
    pub rows: u64,
    /// Valid, attributed events.
    pub events: u64,
    /// Events delivered to Kafka (or written, with `--dry-run`).
    pub produced: u64,
    /// Events Kafka did not accept.
    pub failed: u64,
    /// Malformed rows or invalid lines, skipped.
    pub malformed: u64,
    /// Valid twcs rows that no rule attributes to a company, skipped.
    pub unattributable: u64,
}

/// How many problems of one kind are printed individually before only counting.
const SHOWN_MAX: u64 = 20;

/// Rate-limited problem lines on stderr, drawn around the progress bar.
struct Problems {
    what: &'static str,
    count: u64,
}

impl Problems {
    fn new(what: &'static str) -> Self {
        Problems { what, count: 0 }
    }

    fn report(&mut self, bar: &ProgressBar, line: u64, detail: &str) {
        self.count += 1;
        if self.count <= SHOWN_MAX {
            bar.suspend(|| eprintln!("line {line}: {}: {detail}", self.what));
        } else if self.count == SHOWN_MAX + 1 {
            bar.suspend(|| {
                eprintln!("(more {} rows: only counting them from here on)", self.what);
            });
        }
    }

    fn summary(&self) {
        if self.count > 0 {
            eprintln!("{} {} rows skipped", self.count, self.what);
        }
    }
}

/// The progress bar: phase, bytes read of the file, rate and ETA.
const BAR_TEMPLATE: &str = "{msg:10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";

fn progress(len: u64, phase: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(BAR_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(phase);
    bar
}

fn open(
    path: &Path,
    phase: &'static str,
) -> anyhow::Result<(indicatif::ProgressBarIter<File>, ProgressBar)> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress(len, phase);
    Ok((bar.wrap_read(file), bar))
}

/// Runs `cluetrain replay` with `config` (Kafka connection, default topic).
pub fn run(config: &Config, args: &ReplayArgs) -> anyhow::Result<Report> {
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| config.kafka.input_topic.clone());
    let mut sink = if args.dry_run {
        Sink::stdout()
    } else {
        Sink::kafka(&config.kafka, &topic)?
    };
    let path = args.file.as_path();
    let mut report = Report::default();
    let mut malformed = Problems::new("malformed");
    let mut unattributable = Problems::new("unattributable");
    match args.format {
        Format::Twcs => {
            let (reader, bar) = open(path, "indexing")?;
            let index = twcs::Index::build(reader)
                .with_context(|| format!("indexing {}", path.display()))?;
            bar.finish_and_clear();
            tracing::info!(
                tweets = index.stats.tweets,
                duplicate_rows = index.stats.duplicate_rows,
                companies = index.stats.companies,
                unattributable = index.stats.unattributable,
                "indexed"
            );
            let (reader, bar) = open(path, "replaying")?;
            let now = chrono::Utc::now().timestamp_micros();
            let decoder = ingest::Decoder::new(ingest::DecodeLimits::schema_only());
            twcs::replay(reader, &index, |item| {
                report.rows += 1;
                match item {
                    twcs::Item::Event { line, event: e } => {
                        let payload = serde_json::to_vec(&e).context("serialising an event")?;
                        if let Err(r) = decoder.check(Some(&payload), now) {
                            report.malformed += 1;
                            malformed.report(&bar, line, &format!("{}: {}", r.reason, r.detail));
                            return Ok(());
                        }
                        report.events += 1;
                        sink.send(&e.brand, &payload)
                    }
                    twcs::Item::Malformed { line, reason } => {
                        report.malformed += 1;
                        malformed.report(&bar, line, &reason);
                        Ok(())
                    }
                    twcs::Item::Unattributable { line, tweet_id } => {
                        report.unattributable += 1;
                        unattributable.report(
                            &bar,
                            line,
                            &format!(
                                "tweet {tweet_id} replies to no company tweet, mentions no \
                                 company and no company answers it"
                            ),
                        );
                        Ok(())
                    }
                }
            })
            .with_context(|| format!("replaying {}", path.display()))?;
            bar.finish_and_clear();
        }
        Format::Jsonl => {
            let (reader, bar) = open(path, "replaying")?;
            let now = chrono::Utc::now().timestamp_micros();
            report.rows = jsonl::replay(reader, now, |line| match line {
                jsonl::Line::Event { brand, payload } => {
                    report.events += 1;
                    sink.send(&brand, payload)
                }
                jsonl::Line::Malformed { line, reason } => {
                    report.malformed += 1;
                    malformed.report(&bar, line, &reason);
                    Ok(())
                }
            })
            .with_context(|| format!("replaying {}", path.display()))?;
            bar.finish_and_clear();
        }
    }
    let done = sink.finish()?;
    report.produced = done.produced;
    report.failed = done.failed;
    malformed.summary();
    unattributable.summary();
    Ok(report)
}

/// Prints `report` as one JSON line: on stdout, or on stderr with `--dry-run` (stdout then
/// holds only the events).
pub fn print_report(report: &Report, dry_run: bool) -> anyhow::Result<()> {
    let line = serde_json::to_string(report).context("rendering the report")?;
    if dry_run {
        eprintln!("{line}");
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").context("writing the report")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_template_is_valid() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
    }

    #[test]
    fn report_is_one_json_line_with_every_count() {
        let r = Report {
            rows: 5,
            events: 3,
            produced: 2,
            failed: 1,
            malformed: 1,
            unattributable: 1,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"rows":5,"events":3,"produced":2,"failed":1,"malformed":1,"unattributable":1}"#
        );
    }
}
