//! Command-line interface (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// cluetrain measures how organisations converse on social media: did the people who spoke to
/// a brand get an answer, how fast, and did it help. Kafka in; metrics, SQL and window records out.
#[derive(Debug, Parser)]
#[command(name = "cluetrain", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline: consume the input topic until stopped (SIGINT/SIGTERM), or with
    /// --until-end up to the end of the input as it was at start.
    Run(RunArgs),
    /// Print the documented default configuration, or check a configuration file.
    Config(ConfigArgs),
    /// Produce realistic synthetic social traffic to a topic, deterministic by seed.
    Generate(GenerateArgs),
    /// Everything in one process with nothing installed: an embedded Kafka-protocol broker,
    /// the generator and the pipeline, with a live summary. Ctrl-C stops it.
    Demo(DemoArgs),
    /// Publish a file of past conversations as events: a "Customer Support on Twitter" CSV
    /// (--format twcs, brands attributed from replies, mentions and answers) or schema events
    /// one per line (--format jsonl). Bad rows are reported by line number and skipped.
    Replay(ReplayArgs),
    /// Score UTF-8 lines from stdin with VADER; one TSV line (neg, neu, pos, compound) per
    /// input line on stdout.
    Sentiment,
    /// Run a read-only SQL query over the window history in Parquet (outputs.parquet_location)
    /// without a running pipeline. Tables: engagement_windows (latest revision per window),
    /// engagement_window_revisions, engagement_window_departments(_revisions).
    Sql(SqlArgs),
}

/// `cluetrain sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// Configuration (outputs.parquet_location and the sql limits).
    #[command(flatten)]
    pub source: ConfigSource,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::sql::Format,
    /// The query, e.g. "SELECT brand, avg(response_rate) FROM engagement_windows GROUP BY brand".
    #[arg(value_name = "QUERY")]
    pub query: String,
}

/// Where the configuration comes from.
#[derive(Debug, Args)]
pub struct ConfigSource {
    /// TOML configuration file (defaults apply to missing keys; CLUETRAIN_* variables override).
    #[arg(long, short = 'c', env = "CLUETRAIN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `cluetrain run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration.
    #[command(flatten)]
    pub source: ConfigSource,
    /// Bounded run for backfills, replays and tests: consume every partition up to its end at
    /// start, commit, and exit 0.
    #[arg(long)]
    pub until_end: bool,
}

/// `cluetrain config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration to check or show.
    #[command(flatten)]
    pub source: ConfigSource,
    /// Print the default configuration, every key documented.
    #[arg(long, conflicts_with_all = ["check", "show"])]
    pub print_default: bool,
    /// Load and validate the configuration; exit 78 (EX_CONFIG) with every problem listed if invalid.
    #[arg(long)]
    pub check: bool,
    /// Print the effective configuration (defaults + file + environment) as TOML; passwords
    /// and other secrets are shown as "<redacted>".
    #[arg(long)]
    pub show: bool,
}

/// `cluetrain generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Configuration (Kafka connection and security).
    #[command(flatten)]
    pub source: ConfigSource,
    /// Topic to produce to (default: kafka.input_topic).
    #[arg(long)]
    pub topic: Option<String>,
    /// Stop after this many messages (default: run until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// Messages per second of wall-clock time (default: as fast as possible).
    #[arg(long, conflicts_with = "speedup")]
    pub rate: Option<f64>,
    /// Follow event time at this many event seconds per wall second (1 = real time).
    #[arg(long)]
    pub speedup: Option<f64>,
    /// Seed: the same seed gives the same messages.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Event time of the first message, RFC 3339, or "now".
    #[arg(long, default_value = "now")]
    pub start: String,
    /// Spontaneous events per second of event time (answers and follow-ups come on top).
    #[arg(long, default_value_t = 20.0)]
    pub events_per_second: f64,
    /// Number of brands (1-5).
    #[arg(long, default_value_t = 5)]
    pub brands: usize,
    /// Share of messages replaced by malformed ones (0-1), to exercise the dead-letter path.
    #[arg(long, default_value_t = 0.0)]
    pub poison_rate: f64,
    /// Print the `[[brands]]` configuration of the generated brands (names and accounts, which
    /// linkage needs) as TOML and exit, producing nothing.
    #[arg(long)]
    pub print_brands: bool,
}

/// `cluetrain demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Stop after this long (e.g. "30s"); default: run until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Event seconds per wall second: the demo fast-forwards so answers hours later show up
    /// within a minute.
    #[arg(long, default_value_t = 60.0)]
    pub speedup: f64,
    /// Spontaneous events per second of event time.
    #[arg(long, default_value_t = 4.0)]
    pub events_per_second: f64,
    /// Seed of the generated traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Plain periodic log lines instead of a redrawn screen (default when stdout is not a terminal).
    #[arg(long)]
    pub plain: bool,
    /// Address of the admin HTTP server (/metrics, /livez, /readyz); default admin.listen's
    /// default, 127.0.0.1:9464. Port 0 picks a free port (printed at start).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<std::net::SocketAddr>,
    /// Address of the SQL (Postgres wire) server; default 127.0.0.1:5433. Port 0 picks one.
    #[arg(long, value_name = "ADDR")]
    pub sql_listen: Option<std::net::SocketAddr>,
}

/// `cluetrain replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Configuration (Kafka connection and security).
    #[command(flatten)]
    pub source: ConfigSource,
    /// Format of the file.
    #[arg(long, value_enum)]
    pub format: crate::replay::Format,
    /// Topic to produce to (default: kafka.input_topic).
    #[arg(long)]
    pub topic: Option<String>,
    /// Write the events as JSONL to stdout instead of producing them (the report goes to
    /// stderr).
    #[arg(long)]
    pub dry_run: bool,
    /// The file to replay.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}
