//! `cluetrain-e2e`: the end-to-end benchmark that `cargo xtask bench` runs against a broker it
//! started (README, "Performance").
//!
//! 1. **Preload**: `cluetrain generate --count N` (deterministic, seed 7, keyed by brand) into
//!    a topic of 4 partitions, then waits until a consumer sees all N messages (Tansu's
//!    ListOffsets can lag the true end right after producing; partition EOF plus the count is
//!    what "end" means here).
//! 2. **Drain** (K runs): a plain rdkafka consumer with the same fetch settings as cluetrain's
//!    defaults and no processing reads the topic from the beginning to its end, in a child
//!    process of its own (`cluetrain-e2e drain`), so that its CPU time and peak memory are its
//!    own. This is the practical I/O limit of the machine.
//! 3. **cluetrain** (K runs): `cluetrain run --until-end` with the full job (decode,
//!    sentiment, linkage, every window spec, metrics, window records to Kafka and Parquet,
//!    checkpoints) from the beginning of the same topic, in a fresh consumer group, until every
//!    window is emitted as final. Its figures come from the summary it prints at exit.
//! 4. Optionally a **soak** (`--soak MINUTES`): `cluetrain run` (continuous) while `cluetrain
//!    generate --rate R` feeds a second topic at a steady rate; RSS sampled every few seconds,
//!    the emit delay from the summary printed at SIGTERM.
//!
//! Medians over the runs are printed and written as JSON (`--out`), with every run's figures.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

// The one reader of /proc figures, shared with the run summary's: compiled in from the
// cluetrain crate rather than linking all of it (DataFusion) into this binary, whose release
// link would then cost as much as cluetrain's own.
#[path = "../crates/cluetrain/src/resources.rs"]
#[allow(dead_code)] // `current()` is the pipeline's
mod resources;
use clap::{Args, Parser, Subcommand};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{Value, json};

/// Event time of the first generated message: fixed, so runs are comparable.
const GENERATE_START: &str = "2026-01-05T08:00:00Z";
/// Seed of the generated traffic.
const GENERATE_SEED: &str = "7";
/// Messages the generator sends per spontaneous event in the soak (answers and follow-ups
/// come on top), where event time follows the wall clock: answers and follow-ups
/// come minutes to hours after what they answer, so in the first minutes few of them have
/// come. A 10-minute soak at 61,333 spontaneous events/s delivered 65,572 messages/s
/// (2026-12-04); with 1.5 the soak ran at 70 % of the rate asked for.
const SOAK_MESSAGES_PER_SPONTANEOUS_EVENT: f64 = 1.07;
/// Longest a drain may take before the bench gives up (a broker that lost data).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the soak samples cluetrain's memory.
const SOAK_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// Gauges the soak reads from cluetrain's `/metrics` at each sample (summed over labels), so
/// that memory growth can be told apart: the allocator's live against resident bytes, and the
/// state that each bound caps.
const SOAK_GAUGES: [&str; 10] = [
    "process_resident_memory_bytes",
    "cluetrain_allocator_allocated_bytes",
    "cluetrain_allocator_resident_bytes",
    "cluetrain_linkage_entries",
    "cluetrain_linkage_reorder_buffered_events",
    "cluetrain_windows_open",
    "cluetrain_kafka_prefetch_bytes",
    "cluetrain_kafka_prefetch_messages",
    "cluetrain_checkpoint_bytes",
    "cluetrain_watermark_lag_seconds",
];

#[derive(Debug, Parser)]
#[command(
    name = "cluetrain-e2e",
    about = "End-to-end benchmark (run by `cargo xtask bench`)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Preload, drain and cluetrain runs (and the soak, if asked).
    Run(RunArgs),
    /// One drain of a topic to its end (a child of `run`); prints its figures as JSON.
    Drain(DrainArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// Broker address (host:port).
    #[arg(long)]
    brokers: String,
    /// The topic to preload and read.
    #[arg(long, default_value = "cluetrain-bench-events")]
    topic: String,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// The release `cluetrain` binary.
    #[arg(long)]
    cluetrain: PathBuf,
    /// Another build of cluetrain (an A/B): run interleaved with `--cluetrain` on the same
    /// topic, and summarised beside it with the ratio of their rates.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Environment of the baseline runs, `KEY=VALUE`, after the bench's own (e.g.
    /// `CLUETRAIN_OUTPUTS__OVERLAP_DELIVERY=false`): an A/B of a setting. Without `--baseline`
    /// the baseline is the `--cluetrain` binary itself.
    #[arg(long, value_parser = parse_env)]
    baseline_env: Vec<(String, String)>,
    /// Messages to preload.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Runs of each measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Checkpoints during the cluetrain runs (on by default, as in production).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    checkpoints: bool,
    /// Soak: minutes of `cluetrain run` at a steady input rate (0: none).
    #[arg(long, default_value_t = 0.0)]
    soak: f64,
    /// Input rate of the soak, messages/s (default: half the median cluetrain rate measured
    /// in this invocation, else 50,000).
    #[arg(long)]
    rate: Option<f64>,
    /// Topic of the soak (4 partitions, created by the caller).
    #[arg(long, default_value = "cluetrain-bench-soak")]
    soak_topic: String,
    /// Directory for logs, checkpoints, Parquet and configuration of the runs.
    #[arg(long)]
    work_dir: PathBuf,
    /// Where the figures go as JSON.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct DrainArgs {
    #[command(flatten)]
    common: Common,
    /// Messages the topic holds: the drain ends at every partition's end once it has seen
    /// this many.
    #[arg(long)]
    expect: u64,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// librdkafka fetch.min.bytes (cluetrain's default kafka.fetch_min_bytes).
    #[arg(long, default_value_t = 1_000_000)]
    fetch_min_bytes: u32,
    /// librdkafka fetch.wait.max.ms (cluetrain's default kafka.fetch_wait_max).
    #[arg(long, default_value_t = 10)]
    fetch_wait_max_ms: u32,
    /// librdkafka queued.min.messages: messages prefetched per partition. The drain keeps
    /// librdkafka's default (100,000), the I/O limit; cluetrain's kafka.prefetch_messages_max
    /// is lower (20,000), and a drain at that value shows whether it costs reading speed.
    #[arg(long, default_value_t = 100_000)]
    queued_min_messages: u32,
    /// Read at most this many messages per second (0: as fast as they come), standing in for
    /// a pipeline slower than the fetcher: the prefetch queues then fill up and their bounds
    /// bite. `empty_poll_seconds` in the figures is the time the reader found nothing
    /// prefetched while input remained, the cost of a bound set too low.
    #[arg(long, default_value_t = 0)]
    pace: u32,
    /// librdkafka fetch.queue.backoff.ms: how long a partition's fetching pauses once its
    /// prefetch queue is at a bound (librdkafka's default 1000).
    #[arg(long, default_value_t = 1000)]
    fetch_queue_backoff_ms: u32,
    /// librdkafka max.partition.fetch.bytes (cluetrain's default kafka.partition_fetch_bytes_max).
    #[arg(long, default_value_t = 1_048_576)]
    partition_fetch_bytes_max: u32,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Run(a) => run(&a),
        Cmd::Drain(a) => {
            let figures = drain(&a)?;
            println!("{figures}");
            Ok(())
        }
    }
}

/// One drain: every message of the topic from the beginning, nothing done with it but adding
/// up payload bytes.
fn drain(a: &DrainArgs) -> anyhow::Result<Value> {
    let group = format!("cluetrain-bench-drain-{}", std::process::id());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &a.common.brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.min.bytes", a.fetch_min_bytes.to_string())
        .set("fetch.wait.max.ms", a.fetch_wait_max_ms.to_string())
        .set("queued.min.messages", a.queued_min_messages.to_string())
        .set(
            "fetch.queue.backoff.ms",
            a.fetch_queue_backoff_ms.to_string(),
        )
        .set(
            "max.partition.fetch.bytes",
            a.partition_fetch_bytes_max.to_string(),
        )
        .create()
        .context("creating the drain consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..a.partitions {
        tpl.add_partition_offset(&a.common.topic, p, Offset::Beginning)
            .context("assigning")?;
    }
    consumer.assign(&tpl).context("assigning")?;
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    let mut last = started;
    let mut messages = 0u64;
    let mut bytes = 0u64;
    let mut at_end = vec![false; usize::try_from(a.partitions).unwrap_or(0)];
    let mut empty_polls = Duration::ZERO;
    loop {
        if a.pace > 0
            && let Some(f) = first
        {
            let due = f + Duration::from_secs_f64(messages as f64 / f64::from(a.pace));
            if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(ahead);
            }
        }
        let polled = Instant::now();
        if started.elapsed() > DRAIN_TIMEOUT {
            bail!(
                "drain: {messages} of {} messages after {DRAIN_TIMEOUT:?}",
                a.expect
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                messages += 1;
                bytes += m.payload().map_or(0, <[u8]>::len) as u64;
                if let Some(e) = usize::try_from(m.partition())
                    .ok()
                    .and_then(|p| at_end.get_mut(p))
                {
                    *e = false;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if let Some(e) = usize::try_from(p).ok().and_then(|p| at_end.get_mut(p)) {
                    *e = true;
                }
            }
            Some(Err(e)) => eprintln!("drain: consumer error (retried): {e}"),
            None => {
                if first.is_some() {
                    empty_polls += polled.elapsed();
                }
            }
        }
        if messages >= a.expect && at_end.iter().all(|e| *e) {
            break;
        }
    }
    let seconds = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let rate = (seconds > 0.0).then(|| messages as f64 / seconds);
    Ok(json!({
        "events": messages,
        "payload_bytes": bytes,
        "seconds": seconds,
        "events_per_second": rate,
        "empty_poll_seconds": empty_polls.as_secs_f64(),
        "queued_min_messages": a.queued_min_messages,
        "pace": a.pace,
        "fetch_queue_backoff_ms": a.fetch_queue_backoff_ms,
        "process": process_usage(Path::new("/proc/self")),
    }))
}

/// CPU seconds and peak/current RSS of a process from its `/proc` directory
/// (`cluetrain::resources`, the reading the run summary uses), `null` where there is none.
fn process_usage(dir: &Path) -> Value {
    resources::of(dir).map_or(Value::Null, |u| json!(u))
}

fn run(a: &RunArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.work_dir)
        .with_context(|| format!("creating {}", a.work_dir.display()))?;
    let config = write_config(a)?;
    let started = chrono_like_now();
    eprintln!(
        "==> preloading {} events into {} (cluetrain generate)",
        a.events, a.common.topic
    );
    let t = Instant::now();
    generate(
        a,
        &config,
        &a.common.topic,
        &["--count", &a.events.to_string()],
    )?;
    eprintln!("    produced in {:.1}s", t.elapsed().as_secs_f64());

    let mut drains = Vec::new();
    let mut cluetrains = Vec::new();
    let mut baselines = Vec::new();
    let baseline = a
        .baseline
        .clone()
        .or_else(|| (!a.baseline_env.is_empty()).then(|| a.cluetrain.clone()));
    // Interleaved, so that a slow spell of the machine touches every side alike.
    for i in 0..a.runs {
        eprintln!("==> run {}/{}: drain", i + 1, a.runs);
        let d = drain_child(a)?;
        eprintln!("    {}", brief(&d, "events_per_second"));
        drains.push(d);
        eprintln!("==> run {}/{}: cluetrain run --until-end", i + 1, a.runs);
        let c = cluetrain_until_end(a, &a.cluetrain, &[], &config, &format!("run-{i}"))?;
        eprintln!("    {}", brief(&c["performance"], "events_per_second"));
        cluetrains.push(c);
        if let Some(b) = &baseline {
            eprintln!(
                "==> run {}/{}: baseline {} run --until-end {:?}",
                i + 1,
                a.runs,
                b.display(),
                a.baseline_env
            );
            let c = cluetrain_until_end(a, b, &a.baseline_env, &config, &format!("baseline-{i}"))?;
            eprintln!("    {}", brief(&c["performance"], "events_per_second"));
            baselines.push(c);
        }
    }
    let drain_rate = median(&drains, &["events_per_second"]);
    let ct_rate = median(&cluetrains, &["performance", "events_per_second"]);
    let ratio = rate_ratio(ct_rate, drain_rate);
    let baseline = baseline.as_ref().map(|b| {
        let rate = median(&baselines, &["performance", "events_per_second"]);
        let mut side = side_summary(&baselines);
        side["binary"] = json!(b.display().to_string());
        side["env"] = json!(
            a.baseline_env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        );
        // How much faster `--cluetrain` is than the baseline (1.1 = 10 % more events/s).
        side["speedup"] = json!(rate_ratio(ct_rate, rate));
        side["ratio"] = json!(rate_ratio(rate, drain_rate));
        side
    });
    let summary = json!({
        "drain": {
            "events_per_second": drain_rate,
            "cpu_seconds": median(&drains, &["process", "cpu_seconds"]),
            "peak_rss_bytes": median(&drains, &["process", "peak_rss_bytes"]),
            "min_events_per_second": extreme(&drains, &["events_per_second"], f64::min),
            "max_events_per_second": extreme(&drains, &["events_per_second"], f64::max),
        },
        "cluetrain": side_summary(&cluetrains),
        "ratio": ratio,
        "baseline": baseline,
    });
    let soak = if a.soak > 0.0 {
        let rate = a
            .rate
            .or_else(|| ct_rate.map(|r| (r / 2.0).round()))
            .unwrap_or(50_000.0);
        Some(soak(a, &config, rate)?)
    } else {
        None
    };
    let doc = json!({
        "date": started,
        "machine": machine(),
        "events": a.events,
        "runs": a.runs,
        "checkpoints": a.checkpoints,
        "summary": summary,
        "soak": soak,
        "drain_runs": drains,
        "cluetrain_runs": cluetrains,
        "baseline_runs": baselines,
    });
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", a.out.display()))?;
    print_summary(&doc);
    eprintln!("\n==> figures written to {}", a.out.display());
    Ok(())
}

/// The configuration of every cluetrain process: the generator's brands (their accounts, which
/// linkage needs), the rest default. Broker, topics, groups and directories come from the
/// environment of each run.
fn write_config(a: &RunArgs) -> anyhow::Result<PathBuf> {
    let out = Command::new(&a.cluetrain)
        .args(["generate", "--print-brands"])
        .output()
        .context("running cluetrain generate --print-brands")?;
    if !out.status.success() {
        bail!(
            "cluetrain generate --print-brands: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = a.work_dir.join("cluetrain-bench.toml");
    std::fs::write(&path, &out.stdout)?;
    Ok(path)
}

/// `cluetrain generate` with `extra` arguments into `topic`.
fn generate(a: &RunArgs, config: &Path, topic: &str, extra: &[&str]) -> anyhow::Result<()> {
    let status = generate_command(a, config, topic, extra)
        .stdout(Stdio::null())
        .status()
        .context("running cluetrain generate")?;
    if !status.success() {
        bail!("cluetrain generate failed ({status})");
    }
    Ok(())
}

fn generate_command(a: &RunArgs, config: &Path, topic: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(&a.cluetrain);
    c.arg("generate")
        .arg("--config")
        .arg(config)
        .args(["--topic", topic, "--seed", GENERATE_SEED])
        .args(extra)
        .env("CLUETRAIN_KAFKA__BOOTSTRAP_SERVERS", &a.common.brokers)
        .env("CLUETRAIN_LOG__FILTER", "warn")
        .stdin(Stdio::null());
    if !extra.contains(&"--start") {
        c.args(["--start", GENERATE_START]);
    }
    c
}

fn drain_child(a: &RunArgs) -> anyhow::Result<Value> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let out = Command::new(exe)
        .args([
            "drain",
            "--brokers",
            &a.common.brokers,
            "--topic",
            &a.common.topic,
        ])
        .args(["--expect", &a.events.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running the drain")?;
    if !out.status.success() {
        bail!("the drain failed ({})", out.status);
    }
    last_json_line(&out.stdout).context("the drain printed no figures")
}

/// The environment of a cluetrain run: broker, topic, its own group, state directories and
/// free ports.
fn cluetrain_env(a: &RunArgs, c: &mut Command, topic: &str, name: &str, checkpoints: bool) {
    let dir = a.work_dir.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    c.env("CLUETRAIN_KAFKA__BOOTSTRAP_SERVERS", &a.common.brokers)
        .env("CLUETRAIN_KAFKA__INPUT_TOPIC", topic)
        .env(
            "CLUETRAIN_KAFKA__GROUP_ID",
            format!("cluetrain-bench-{name}-{}", std::process::id()),
        )
        .env(
            "CLUETRAIN_OUTPUTS__PARQUET_LOCATION",
            dir.join("parquet").display().to_string(),
        )
        .env(
            "CLUETRAIN_CHECKPOINT__LOCATION",
            if checkpoints {
                dir.join("checkpoints").display().to_string()
            } else {
                String::new()
            },
        )
        .env("CLUETRAIN_ADMIN__LISTEN", "127.0.0.1:0")
        .env("CLUETRAIN_SQL__LISTEN", "127.0.0.1:0")
        .env("CLUETRAIN_LOG__FILTER", "info")
        .stdin(Stdio::null());
}

/// `rate / of`, when both are known and `of` is positive.
fn rate_ratio(rate: Option<f64>, of: Option<f64>) -> Option<f64> {
    rate.zip(of).and_then(|(r, o)| (o > 0.0).then_some(r / o))
}

/// The medians of one side's runs (`cluetrain` or `baseline`).
fn side_summary(runs: &[Value]) -> Value {
    let perf = |path: &[&str]| {
        let full: Vec<&str> = ["performance"].iter().chain(path).copied().collect();
        median(runs, &full)
    };
    json!({
        "events_per_second": perf(&["events_per_second"]),
        "events_per_second_wall": perf(&["events_per_second_wall"]),
        "cpu_seconds": perf(&["process", "cpu_seconds"]),
        "peak_rss_bytes": perf(&["process", "peak_rss_bytes"]),
        "emit_delay_p50_seconds": perf(&["emit_delay_seconds", "p50"]),
        "emit_delay_p99_seconds": perf(&["emit_delay_seconds", "p99"]),
        "end_seconds": perf(&["end_seconds"]),
        "linkage_entries": perf(&["linkage_entries"]),
        "stage_seconds": stage_medians(runs),
        "min_events_per_second": extreme(runs, &["performance", "events_per_second"], f64::min),
        "max_events_per_second": extreme(runs, &["performance", "events_per_second"], f64::max),
    })
}

/// `KEY=VALUE` of `--baseline-env`.
fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "{s:?}: expected KEY=VALUE, e.g. CLUETRAIN_OUTPUTS__OVERLAP_DELIVERY=false"
        )),
    }
}

fn cluetrain_until_end(
    a: &RunArgs,
    binary: &Path,
    env: &[(String, String)],
    config: &Path,
    name: &str,
) -> anyhow::Result<Value> {
    let log = a.work_dir.join(format!("{name}.log"));
    let mut c = Command::new(binary);
    c.args(["run", "--until-end", "--config"]).arg(config);
    cluetrain_env(a, &mut c, &a.common.topic, name, a.checkpoints);
    c.envs(env.iter().map(|(k, v)| (k, v)));
    let out = c
        .stderr(std::fs::File::create(&log)?)
        .output()
        .context("running cluetrain")?;
    if !out.status.success() {
        bail!(
            "cluetrain run --until-end failed ({}); log: {}",
            out.status,
            log.display()
        );
    }
    let v = last_json_line(&out.stdout).context("cluetrain printed no summary")?;
    if v["events"].as_u64().unwrap_or(0) + v["dead_letters"].as_u64().unwrap_or(0) < a.events {
        bail!(
            "cluetrain read {} events of {}; log: {}",
            v["events"],
            a.events,
            log.display()
        );
    }
    Ok(v)
}

/// `cluetrain run` at a steady input of `rate` messages/s for `a.soak` minutes.
fn soak(a: &RunArgs, config: &Path, rate: f64) -> anyhow::Result<Value> {
    eprintln!(
        "==> soak: {:.1} minutes at {rate:.0} messages/s into {}",
        a.soak, a.soak_topic
    );
    let name = "soak";
    let log = a.work_dir.join("soak.log");
    let mut c = Command::new(&a.cluetrain);
    c.args(["run", "--config"]).arg(config);
    cluetrain_env(a, &mut c, &a.soak_topic, name, a.checkpoints);
    // A known admin port, to read its gauges.
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port for cluetrain's admin server")?;
    c.env("CLUETRAIN_ADMIN__LISTEN", admin.to_string());
    let mut pipeline = c
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting cluetrain run")?;
    let guard = KillOnDrop(pipeline.id());
    // Let it join the group before the input starts.
    std::thread::sleep(Duration::from_secs(5));
    // Event time must follow the wall clock: `--rate R` alone paces messages but lets event
    // time run at `--events-per-second` (20 by default), i.e. hundreds of times faster than
    // the wall clock at 17,000 messages/s, and `ingest.event_time_future_max` dead-letters
    // nearly all of it (the first soak did exactly that). So: real-time pacing of event time,
    // with as many spontaneous events per second as give ~R messages/s. The rate reached
    // is reported (`events_per_second_processed`), not assumed.
    let per_second = format!("{}", rate / SOAK_MESSAGES_PER_SPONTANEOUS_EVENT);
    let mut generator = generate_command(
        a,
        config,
        &a.soak_topic,
        &[
            "--speedup",
            "1",
            "--events-per-second",
            &per_second,
            "--start",
            "now",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .context("starting cluetrain generate")?;
    let gen_guard = KillOnDrop(generator.id());
    let proc_dir = PathBuf::from(format!("/proc/{}", pipeline.id()));
    let t = Instant::now();
    let length = Duration::from_secs_f64(a.soak * 60.0);
    let mut samples = Vec::new();
    while t.elapsed() < length {
        std::thread::sleep(SOAK_SAMPLE_INTERVAL);
        if let Some(s) = pipeline.try_wait()? {
            bail!(
                "cluetrain stopped during the soak ({s}); log: {}",
                log.display()
            );
        }
        let u = process_usage(&proc_dir);
        let gauges = scrape(admin).map_or(Value::Null, |text| gauges(&text, &SOAK_GAUGES));
        samples.push(json!({"seconds": t.elapsed().as_secs_f64(), "rss_bytes": u["rss_bytes"], "cpu_seconds": u["cpu_seconds"], "gauges": gauges}));
    }
    signal(gen_guard.0, "INT");
    let _ = generator.wait();
    std::mem::forget(gen_guard);
    signal(guard.0, "TERM");
    let mut stdout = String::new();
    if let Some(out) = pipeline.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            stdout.push_str(&line);
            stdout.push('\n');
        }
    }
    let status = pipeline.wait()?;
    std::mem::forget(guard);
    if !status.success() {
        bail!("cluetrain run ended with {status}; log: {}", log.display());
    }
    let report = last_json_line(stdout.as_bytes()).context("cluetrain printed no summary")?;
    let rss: Vec<f64> = samples
        .iter()
        .filter_map(|s| s["rss_bytes"].as_f64())
        .collect();
    // Flat: the last third's mean against the second third's.
    let third = rss.len() / 3;
    let mean = |v: &[f64]| {
        #[allow(clippy::cast_precision_loss)] // a few hundred samples
        let n = v.len() as f64;
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / n)
    };
    let growth = mean(&rss[third..2 * third])
        .zip(mean(&rss[2 * third..]))
        .map(|(b, c)| c / b - 1.0);
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let achieved = report["events"]
        .as_f64()
        .map(|e| e / t.elapsed().as_secs_f64());
    // What each gauge did over the last two thirds, per minute: where the growth is.
    let growth_per_minute: serde_json::Map<String, Value> = SOAK_GAUGES
        .iter()
        .map(|g| {
            (
                (*g).to_string(),
                json!(slope_per_minute(&samples[third..], g)),
            )
        })
        .collect();
    Ok(json!({
        "minutes": a.soak,
        "rate": rate,
        "events_per_second_processed": achieved,
        "rss_max_bytes": rss.iter().copied().fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x)))),
        "rss_growth_last_third": growth,
        "gauge_growth_per_minute": growth_per_minute,
        "emit_delay_seconds": report["performance"]["emit_delay_seconds"],
        "linkage_entries": report["performance"]["linkage_entries"],
        "report": report,
        "samples": samples,
    }))
}

/// Most bytes of a `/metrics` answer the soak reads (a few hundred series; ~60 KB here).
const SCRAPE_BYTES_MAX: u64 = 16 << 20;

/// The body of `GET /metrics` from cluetrain's admin server; `None` if it does not answer.
fn scrape(admin: std::net::SocketAddr) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    std::io::copy(&mut s.take(SCRAPE_BYTES_MAX), &mut raw).ok()?;
    let out = String::from_utf8(raw).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split_ascii_whitespace().nth(1)?;
    (status == "200").then(|| body.to_string())
}

/// The value of each of `names` in a Prometheus text exposition, summed over its label sets.
fn gauges(text: &str, names: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        let (true, Ok(v)) = (names.contains(&name), value.parse::<f64>()) else {
            continue;
        };
        let sum = out.entry(name).or_insert(json!(0.0));
        *sum = json!(sum.as_f64().unwrap_or(0.0) + v);
    }
    Value::Object(out)
}

/// Least-squares slope of gauge `name` over `samples`, per minute.
fn slope_per_minute(samples: &[Value], name: &str) -> Option<f64> {
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| Some((s["seconds"].as_f64()? / 60.0, s["gauges"][name].as_f64()?)))
        .collect();
    #[allow(clippy::cast_precision_loss)] // a few hundred samples
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), p| {
        (sxy + (p.0 - mx) * (p.1 - my), sxx + (p.0 - mx) * (p.0 - mx))
    });
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Sends a signal by name with kill(1) (no `unsafe` here for libc).
fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status();
}

/// Kills a child process if the bench fails while it runs.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        signal(self.0, "KILL");
    }
}

fn last_json_line(out: &[u8]) -> Option<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn median(runs: &[Value], path: &[&str]) -> Option<f64> {
    let mut v: Vec<f64> = runs.iter().filter_map(|r| at(r, path)?.as_f64()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

/// The median of every per-stage time of the cluetrain runs.
fn stage_medians(runs: &[Value]) -> Value {
    let keys: Vec<String> = runs
        .first()
        .and_then(|r| at(r, &["performance", "stage_seconds"])?.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    Value::Object(
        keys.into_iter()
            .map(|k| {
                let m = median(runs, &["performance", "stage_seconds", &k]);
                (k, json!(m))
            })
            .collect(),
    )
}

fn extreme(runs: &[Value], path: &[&str], f: fn(f64, f64) -> f64) -> Option<f64> {
    runs.iter().filter_map(|r| at(r, path)?.as_f64()).reduce(f)
}

fn brief(v: &Value, key: &str) -> String {
    match v[key].as_f64() {
        Some(r) => format!("{r:.0} events/s"),
        None => format!("{v}"),
    }
}

/// The date in UTC as RFC 3339, from `date` (this binary has no clock library).
fn chrono_like_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(usize::from).ok(),
        "cpu_model": model,
        "loadavg_at_end": load.trim(),
    })
}

fn print_summary(doc: &Value) {
    let s = &doc["summary"];
    let f = |v: &Value, scale: f64, unit: &str| match v.as_f64() {
        Some(x) => format!("{:.1}{unit}", x / scale),
        None => "-".to_string(),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nend-to-end, {} events, median of {} runs ({}):",
        doc["events"], doc["runs"], doc["date"]
    );
    let sides = [
        ("drain", &s["drain"]),
        ("cluetrain", &s["cluetrain"]),
        ("baseline", &s["baseline"]),
    ];
    for (name, side) in sides.into_iter().filter(|(_, v)| !v.is_null()) {
        let _ = writeln!(
            out,
            "  {name:10} {:>12} events/s (min {}, max {})  cpu {}  peak rss {}",
            f(&side["events_per_second"], 1e3, "k"),
            f(&side["min_events_per_second"], 1e3, "k"),
            f(&side["max_events_per_second"], 1e3, "k"),
            f(&side["cpu_seconds"], 1.0, " s"),
            f(&side["peak_rss_bytes"], 1_048_576.0, " MiB"),
        );
    }
    let c = &s["cluetrain"];
    let _ = writeln!(
        out,
        "  ratio      {}   emit delay p50 {}  p99 {}  (watermark passing → records delivered)",
        f(&s["ratio"], 0.01, " %"),
        f(&c["emit_delay_p50_seconds"], 1e-3, " ms"),
        f(&c["emit_delay_p99_seconds"], 1e-3, " ms"),
    );
    let stages = |side: &Value| -> Option<String> {
        let parts: Vec<String> = side["stage_seconds"]
            .as_object()?
            .iter()
            .filter_map(|(k, v)| Some(format!("{k} {:.2}", v.as_f64()?)))
            .collect();
        Some(format!(
            "{}, end of run {}",
            parts.join(", "),
            f(&side["end_seconds"], 1.0, "")
        ))
    };
    if let Some(line) = stages(c) {
        let _ = writeln!(out, "  stages (s) {line}");
    }
    let b = &s["baseline"];
    if !b.is_null() {
        let _ = writeln!(
            out,
            "  baseline   speedup {} (cluetrain / baseline events/s), baseline ratio {}, emit delay p50 {}  p99 {}",
            f(&b["speedup"], 1.0, "x"),
            f(&b["ratio"], 0.01, " %"),
            f(&b["emit_delay_p50_seconds"], 1e-3, " ms"),
            f(&b["emit_delay_p99_seconds"], 1e-3, " ms"),
        );
        if let Some(line) = stages(b) {
            let _ = writeln!(out, "  baseline stages (s) {line}");
        }
    }
    let soak = &doc["soak"];
    if !soak.is_null() {
        let _ = writeln!(
            out,
            "  soak       {} min at {} msg/s: rss max {}, growth over the last third {}, emit delay p50 {} p99 {}",
            soak["minutes"],
            f(&soak["rate"], 1.0, ""),
            f(&soak["rss_max_bytes"], 1_048_576.0, " MiB"),
            f(&soak["rss_growth_last_third"], 0.01, " %"),
            f(&soak["emit_delay_seconds"]["p50"], 1e-3, " ms"),
            f(&soak["emit_delay_seconds"]["p99"], 1e-3, " ms"),
        );
        if let Some(g) = soak["gauge_growth_per_minute"].as_object() {
            let line: Vec<String> = g
                .iter()
                .filter_map(|(k, v)| Some(format!("{k} {:+.0}", v.as_f64()?)))
                .collect();
            let _ = writeln!(
                out,
                "  soak gauges, change per minute over the last two thirds: {}",
                line.join(", ")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_sum_over_label_sets_and_skip_others() {
        let text = "# HELP cluetrain_linkage_entries x\n\
                    # TYPE cluetrain_linkage_entries gauge\n\
                    cluetrain_linkage_entries 12\n\
                    cluetrain_kafka_prefetch_messages{partition=\"0\"} 3\n\
                    cluetrain_kafka_prefetch_messages{partition=\"1\"} 4.5\n\
                    cluetrain_linkage_entries_other 99\n";
        let g = gauges(
            text,
            &[
                "cluetrain_linkage_entries",
                "cluetrain_kafka_prefetch_messages",
            ],
        );
        assert_eq!(g["cluetrain_linkage_entries"], json!(12.0));
        assert_eq!(g["cluetrain_kafka_prefetch_messages"], json!(7.5));
        assert_eq!(g.as_object().map(serde_json::Map::len), Some(2));
    }

    #[test]
    fn slope_is_per_minute_and_ignores_missing_samples() {
        // 60 bytes a second = 3,600 a minute; one sample without the gauge.
        let mut samples: Vec<Value> = (0..10)
            .map(|i| json!({"seconds": f64::from(i) * 5.0, "gauges": {"g": 1000.0 + f64::from(i) * 300.0}}))
            .collect();
        samples.push(json!({"seconds": 60.0, "gauges": null}));
        let s = slope_per_minute(&samples, "g").unwrap();
        assert!((s - 3600.0).abs() < 1e-6, "{s}");
        assert_eq!(slope_per_minute(&samples[..1], "g"), None);
    }
}
