//! Configuration types shared across stages.
//!
//! The binary loads them (TOML file, then `CLUETRAIN_*` environment variables) and calls
//! [`Config::validate`]; stages receive only their own section. Every field is documented in
//! the default file the binary prints with `cluetrain config --print-default`; a test keeps that
//! file and [`Config::default`] identical.
//!
//! Conventions: durations are durations (`"250ms"`, `"24h"`), closed sets are enums, sizes and
//! counts carry their unit in the name (`message_bytes_max`, `batch_rows_max`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// The whole configuration of a cluetrain process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kafka connection, topics and client properties.
    pub kafka: KafkaConfig,
    /// Decoding and micro-batching of input messages.
    pub ingest: IngestConfig,
    /// Logging.
    pub log: LogConfig,
    /// Sentiment scoring (VADER): how many threads score a micro-batch.
    pub sentiment: SentimentConfig,
    /// Conversation linkage: response horizon and state bounds.
    pub linkage: LinkageConfig,
    /// The brands cluetrain knows by name, with their accounts.
    pub brands: Vec<BrandConfig>,
    /// Event-time windows: specs, grouping, lateness and state bounds.
    pub windows: WindowsConfig,
    /// Routing of inbound messages to departments.
    pub departments: DepartmentsConfig,
    /// Where window records and late events go.
    pub outputs: OutputsConfig,
    /// The admin HTTP server: metrics and health.
    pub admin: AdminConfig,
    /// SQL for analysts: limits, and the Postgres-wire endpoint.
    pub sql: SqlConfig,
    /// Pseudonymisation of user ids (docs/privacy.md).
    pub privacy: PrivacyConfig,
    /// Checkpoints of window and linkage state, aligned with the input offsets.
    pub checkpoint: CheckpointConfig,
}

/// Pseudonymisation of user ids with a keyed HMAC-SHA-256 (docs/privacy.md). The key itself is
/// never part of the configuration: only where to find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Replace author ids and handles by pseudonyms before enrichment, so that no stage, table
    /// or output sees the platform's values (the brand's configured accounts are exempt).
    pub pseudonymise_user_ids: bool,
    /// Name of the environment variable that holds the key (at least 32 bytes).
    pub hmac_key_env: String,
    /// A file that holds the key instead; when set it wins over `hmac_key_env`. "" = none.
    pub hmac_key_file: String,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            pseudonymise_user_ids: false,
            hmac_key_env: "CLUETRAIN_HMAC_KEY".into(),
            hmac_key_file: String::new(),
        }
    }
}

/// Checkpoints: per input partition, the window state of its brands, its linkage state, its
/// watermark and the offset they cover, written together; offsets are committed only once the
/// checkpoint that covers them is durable, and restored on start and after a rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// A local directory, `file:///path`, or `s3://bucket/prefix` (so that another machine can
    /// restore a partition); "" = off (state lives in memory only: a restart replays from the
    /// committed offsets with empty state).
    pub location: String,
    /// How often a checkpoint is taken (also on shutdown, at the end of a bounded run and
    /// before partitions are given up in a rebalance).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Checkpoints kept per partition: the newest is restored; an older one is the fallback
    /// when the newest is corrupt or unreadable.
    pub keep: usize,
    /// One checkpoint in this many is full; the others are incremental (linkage as its
    /// changes since the previous checkpoint, the rest whole). 1 = every checkpoint full.
    /// Higher: less written per checkpoint, a longer chain to read on restore (at most this
    /// many files per partition). Default 30: with the 10 s interval, a full checkpoint of a
    /// partition every 5 minutes.
    pub full_every: usize,
    /// How long a rebalance waits for the checkpoint of the partitions given up and the restore
    /// of those assigned (keep it below the consumer's `max.poll.interval.ms`).
    #[serde(with = "humantime_serde")]
    pub rebalance_timeout: Duration,
    /// Partitions whose checkpoints are encoded at once, on scoped threads; 0 = one per
    /// available core. The pipeline waits while a checkpoint is taken; each partition's
    /// encoded checkpoint is held in memory until it is written, so more threads take a
    /// checkpoint sooner and hold more at once (the end of the bench's bounded run: three
    /// partitions, 125 MB in all).
    pub threads: usize,
}

/// A `threads` setting resolved: 0 is one per core this process may run on.
fn threads_or_cores(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    }
}

/// The most threads a `threads` setting takes.
const THREADS_MAX: usize = 256;

impl CheckpointConfig {
    /// The thread count to use: [`CheckpointConfig::threads`], 0 resolved to the cores this
    /// process may run on.
    pub fn threads_resolved(&self) -> usize {
        threads_or_cores(self.threads)
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            location: "cluetrain-checkpoints".into(),
            interval: Duration::from_secs(10),
            keep: 3,
            full_every: 30,
            rebalance_timeout: Duration::from_secs(60),
            threads: 0,
        }
    }
}

/// SQL for analysts (`cluetrain sql`, the Postgres-wire endpoint): read-only, limited.
/// `Debug` shows the password as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlConfig {
    /// Postgres-wire address. Loopback by default; any other address requires a password.
    pub listen: std::net::SocketAddr,
    /// User name clients log in with.
    pub user: String,
    /// Password (better from the environment: CLUETRAIN_SQL__PASSWORD); "" = none, allowed
    /// only on loopback.
    pub password: String,
    /// Memory one query may use; beyond it the query fails with an error.
    pub memory_bytes_max: usize,
    /// Wall time one query may take.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Rows one query returns at most.
    pub rows_max: usize,
    /// Windows (latest revision each) the running pipeline keeps for `engagement_windows`
    /// before they reach Parquet; the oldest window end is evicted first.
    pub live_windows_max: usize,
    /// Recent late events and dead letters kept for `late_events` / `dead_letters`, each.
    pub samples_max: usize,
    /// Author-days tracked for `voices`; the oldest day is evicted first.
    pub voices_max: usize,
    /// Distinct conversations counted per author-day in `voices` (its `conversations` stops
    /// there): each is remembered to count it once, so this times `voices_max` bounds them.
    pub voice_conversations_max: usize,
    /// Rows of `open_conversations` (the oldest waiting messages are kept).
    pub open_conversations_max: usize,
    /// How often `open_conversations` is refreshed from linkage state.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 5433)),
            user: "cluetrain".into(),
            password: String::new(),
            memory_bytes_max: 512 << 20,
            query_timeout: Duration::from_secs(30),
            rows_max: 100_000,
            live_windows_max: 100_000,
            samples_max: 1_000,
            voices_max: 200_000,
            voice_conversations_max: 32,
            open_conversations_max: 10_000,
            refresh_interval: Duration::from_secs(5),
        }
    }
}

/// The admin HTTP server (`/metrics`, `/livez`, `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address to listen on. Loopback by default: metrics reveal brands and volumes.
    pub listen: std::net::SocketAddr,
    /// `/readyz` fails when the watermark stands still this long while batches keep coming.
    #[serde(with = "humantime_serde")]
    pub ready_stall: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9464)),
            ready_stall: Duration::from_secs(300),
        }
    }
}

/// Where to start when the consumer group has no committed offset for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// From the oldest retained message (replays whole history on first start).
    Earliest,
    /// Only messages produced after the group first joins.
    Latest,
}

impl OffsetReset {
    /// The librdkafka value of `auto.offset.reset`.
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

/// Kafka connection, topics and client properties. `Debug` shows secret properties
/// ([`is_secret_property`]) as `<redacted>`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list (librdkafka `bootstrap.servers`).
    pub bootstrap_servers: String,
    /// Consumer group; instances with the same group split the input partitions.
    pub group_id: String,
    /// The input topic of social events, keyed by brand.
    pub input_topic: String,
    /// Where undecodable or invalid messages go, with their reason in headers.
    pub dead_letter_topic: String,
    /// Start position for partitions without a committed offset.
    pub auto_offset_reset: OffsetReset,
    /// librdkafka `fetch.min.bytes`: the broker waits for this much data (or
    /// `fetch_wait_max`) before answering a fetch. Measured on Tansu: 1,000,000 with 10 ms
    /// drains ~5x faster than librdkafka's default of 1 byte.
    pub fetch_min_bytes: u32,
    /// librdkafka `fetch.wait.max.ms`: the longest the broker holds a fetch.
    #[serde(with = "humantime_serde")]
    pub fetch_wait_max: Duration,
    /// librdkafka `max.partition.fetch.bytes`: per-partition fetch size.
    pub partition_fetch_bytes_max: u32,
    /// librdkafka `queued.max.messages.kbytes`, in bytes: the most input the consumer holds
    /// prefetched ahead of the pipeline (one queue for every assigned partition; a fetch may
    /// overshoot it by one `partition_fetch_bytes_max`). Default 64 MiB, librdkafka's own:
    /// measured on Tansu (README, "Performance"), 16 MiB made the pipeline wait for input
    /// and cost ~20 % of the rate, while 32, 64 and 128 MiB gave the same rate and peak RSS
    /// within noise. Lower it to bound memory when many instances share a host.
    /// `cluetrain_kafka_prefetch_bytes` shows how full it is.
    pub prefetch_bytes_max: u64,
    /// librdkafka `queued.min.messages`: the most messages the consumer prefetches per
    /// assigned partition (it stops fetching a partition at this many, or at
    /// `prefetch_bytes_max` for all together, whichever comes first). librdkafka's own
    /// default is 100,000; on a backlog the queues stay full, and each queued message costs
    /// its decompressed message set plus a ~200-byte op that `prefetch_bytes_max` does not
    /// count. Measured (README, "Performance"): at 100,000 the prefetch was 128 of a 158 MB
    /// peak heap (200,000 events); at 20,000 about 1 MB at the peak (144 MB). A reader paced
    /// at 400,000 messages/s (5x the pipeline's best) never found the queue empty at 20,000,
    /// and its RSS was 67 against 137 MiB at 100,000. This bound needs `prefetch_backoff`
    /// short. `cluetrain_kafka_prefetch_messages` shows how full it is.
    pub prefetch_messages_max: u32,
    /// librdkafka `fetch.queue.backoff.ms`: how long fetching a partition pauses once its
    /// prefetch queue is at a bound. librdkafka's default, 1 s, is made for deep queues.
    /// Measured with `prefetch_messages_max = 20000`: at 1 s even an unpaced reader got
    /// 57,000 messages/s (the queues ran dry while fetching paused), at 100 ms 379,000, at
    /// 10 ms 912,000 (100,000 messages: 1,040,000), with the same CPU.
    #[serde(with = "humantime_serde")]
    pub prefetch_backoff: Duration,
    /// How often stored offsets (of fully processed batches) are committed to the group.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Any librdkafka property, applied to every client (consumer and producers): security
    /// (`security.protocol`, `sasl.*`, `ssl.*`), timeouts, compression.
    #[serde(deserialize_with = "flatten_properties")]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only (override `properties`).
    #[serde(deserialize_with = "flatten_properties")]
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka properties for producers only (override `properties`).
    #[serde(deserialize_with = "flatten_properties")]
    pub producer_properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            group_id: "cluetrain".into(),
            input_topic: "social-events".into(),
            dead_letter_topic: "cluetrain-dead-letters".into(),
            auto_offset_reset: OffsetReset::Earliest,
            fetch_min_bytes: 1_000_000,
            fetch_wait_max: Duration::from_millis(10),
            partition_fetch_bytes_max: 1_048_576,
            prefetch_bytes_max: 64 * 1024 * 1024,
            prefetch_messages_max: 20_000,
            prefetch_backoff: Duration::from_millis(10),
            commit_interval: Duration::from_secs(5),
            properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
        }
    }
}

/// What is shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// True for librdkafka properties whose values are secrets (passwords, passphrases, client
/// secrets, inline private keys, OAUTHBEARER configs): they are never printed.
pub fn is_secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "passphrase"]
        .iter()
        .any(|w| n.contains(w))
        || n.ends_with("key.pem")
        || n == "sasl.oauthbearer.config"
}

fn redact_properties(props: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    props
        .iter()
        .map(|(k, v)| {
            let v = if is_secret_property(k) { REDACTED } else { v };
            (k.clone(), v.to_string())
        })
        .collect()
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured, so that a new field cannot be forgotten here.
        let Self {
            bootstrap_servers,
            group_id,
            input_topic,
            dead_letter_topic,
            auto_offset_reset,
            fetch_min_bytes,
            fetch_wait_max,
            partition_fetch_bytes_max,
            prefetch_bytes_max,
            prefetch_messages_max,
            prefetch_backoff,
            commit_interval,
            properties,
            consumer_properties,
            producer_properties,
        } = self;
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", bootstrap_servers)
            .field("group_id", group_id)
            .field("input_topic", input_topic)
            .field("dead_letter_topic", dead_letter_topic)
            .field("auto_offset_reset", auto_offset_reset)
            .field("fetch_min_bytes", fetch_min_bytes)
            .field("fetch_wait_max", fetch_wait_max)
            .field("partition_fetch_bytes_max", partition_fetch_bytes_max)
            .field("prefetch_bytes_max", prefetch_bytes_max)
            .field("prefetch_messages_max", prefetch_messages_max)
            .field("prefetch_backoff", prefetch_backoff)
            .field("commit_interval", commit_interval)
            .field("properties", &redact_properties(properties))
            .field(
                "consumer_properties",
                &redact_properties(consumer_properties),
            )
            .field(
                "producer_properties",
                &redact_properties(producer_properties),
            )
            .finish()
    }
}

impl fmt::Debug for SqlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            listen,
            user,
            password,
            memory_bytes_max,
            query_timeout,
            rows_max,
            live_windows_max,
            samples_max,
            voices_max,
            voice_conversations_max,
            open_conversations_max,
            refresh_interval,
        } = self;
        f.debug_struct("SqlConfig")
            .field("listen", listen)
            .field("user", user)
            .field("password", &if password.is_empty() { "" } else { REDACTED })
            .field("memory_bytes_max", memory_bytes_max)
            .field("query_timeout", query_timeout)
            .field("rows_max", rows_max)
            .field("live_windows_max", live_windows_max)
            .field("samples_max", samples_max)
            .field("voices_max", voices_max)
            .field("voice_conversations_max", voice_conversations_max)
            .field("open_conversations_max", open_conversations_max)
            .field("refresh_interval", refresh_interval)
            .finish()
    }
}

impl Config {
    /// This configuration with every secret replaced by [`REDACTED`]: for display
    /// (`cluetrain config --show`). Secrets are `sql.password` and the secret librdkafka
    /// properties; the HMAC key is never part of the configuration.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if !c.sql.password.is_empty() {
            c.sql.password = REDACTED.into();
        }
        for props in [
            &mut c.kafka.properties,
            &mut c.kafka.consumer_properties,
            &mut c.kafka.producer_properties,
        ] {
            *props = redact_properties(props);
        }
        c
    }
}

/// Decoding and micro-batching of input messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// A micro-batch is closed when it holds this many decoded events...
    pub batch_rows_max: usize,
    /// ...or when its first message has waited this long, whichever comes first.
    #[serde(with = "humantime_serde")]
    pub batch_wait_max: Duration,
    /// Decoded batches waiting for the pipeline; when full, consumption pauses (backpressure).
    pub queue_batches_max: usize,
    /// Messages larger than this are dead-lettered unread (reason `oversized`).
    pub message_bytes_max: usize,
    /// Events created before this instant are dead-lettered (reason `timestamp_out_of_range`).
    pub event_time_min: DateTime<Utc>,
    /// Events created more than this far ahead of the wall clock are dead-lettered.
    #[serde(with = "humantime_serde")]
    pub event_time_future_max: Duration,
    /// At most one log line per dead-letter reason per interval (the first one always logs).
    #[serde(with = "humantime_serde")]
    pub dead_letter_log_interval: Duration,
    /// What a dead letter carries of the original payload: `full` (lossless, replayable),
    /// `truncate` (the first `dead_letter_payload_bytes_max` bytes) or `none`.
    pub dead_letter_payload: DeadLetterPayload,
    /// With `truncate`: payload bytes kept per dead letter.
    pub dead_letter_payload_bytes_max: usize,
    /// On shutdown, how long to wait for in-flight batches before committing what is done.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Event-time alignment of the input partitions: a partition whose newest event is more
    /// than this ahead of the partition furthest behind is held back (its queue not read:
    /// librdkafka stops fetching it once `kafka.prefetch_messages_max` are queued) until that
    /// one is within half of it, so that a backlog read faster from one partition than from
    /// another waits in Kafka, not in the reorder buffer (docs/performance-log.md);
    /// `cluetrain_ingest_partitions_held` shows it. "0s" = never hold back.
    #[serde(with = "humantime_serde")]
    pub partition_drift_max: Duration,
    /// A partition without a message for this long (wall clock), or at its end, no longer
    /// counts as behind: the longest the others wait for one that has stopped delivering.
    #[serde(with = "humantime_serde")]
    pub partition_drift_idle: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_rows_max: 8192,
            batch_wait_max: Duration::from_millis(250),
            queue_batches_max: 4,
            message_bytes_max: 1_048_576,
            event_time_min: DateTime::<Utc>::from_timestamp(1_136_073_600, 0).unwrap_or_default(),
            event_time_future_max: Duration::from_secs(3600),
            dead_letter_log_interval: Duration::from_secs(10),
            dead_letter_payload: DeadLetterPayload::Full,
            dead_letter_payload_bytes_max: 1024,
            shutdown_timeout: Duration::from_secs(30),
            partition_drift_max: Duration::from_secs(300),
            partition_drift_idle: Duration::from_secs(10),
        }
    }
}

/// What a dead letter carries of the rejected message's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterPayload {
    /// The original bytes, unchanged: the message can be fixed and replayed.
    Full,
    /// At most `ingest.dead_letter_payload_bytes_max` bytes (less personal data, not
    /// replayable when cut).
    Truncate,
    /// No payload, only headers: nothing personal is kept, nothing can be replayed.
    None,
}

/// How a brand's own accounts are recognised (see the metrics reference, "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgAuthorRule {
    /// Only the configured accounts of a brand speak for it.
    Configured,
    /// Configured accounts; for brands without any, every `is_org` author of the brand's events.
    ConfiguredElseIsOrg,
}

/// Sentiment scoring settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SentimentConfig {
    /// Threads that score one micro-batch's texts, each a contiguous share of its rows
    /// (scoped threads, joined before the batch goes on); 0 = one per available core. The
    /// scores do not depend on it. VADER costs ~1 µs per text, so at today's rates 1 and 2
    /// threads measured the same (docs/performance-log.md); it pays once the rest of the
    /// pipeline is faster, and the pipeline task is otherwise waiting while it runs.
    pub threads: usize,
}

impl SentimentConfig {
    /// The thread count to use: [`SentimentConfig::threads`], 0 resolved to the cores this
    /// process may run on.
    pub fn threads_resolved(&self) -> usize {
        threads_or_cores(self.threads)
    }
}

/// Conversation linkage settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkageConfig {
    /// How long an inbound message may wait for an answer and still count as answered (H).
    #[serde(with = "humantime_serde")]
    pub response_horizon: Duration,
    /// Messages remembered per input partition (plus replies waiting for their parent); the
    /// oldest are evicted beyond it (cluetrain_linkage_evictions_total).
    pub entries_max: usize,
    /// How the brand's own accounts are recognised.
    pub org_author_rule: OrgAuthorRule,
    /// Allowed out-of-orderness of event time: the watermark trails the newest event by this.
    #[serde(with = "humantime_serde")]
    pub out_of_orderness: Duration,
    /// A partition without events for this long no longer holds the watermark back.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A partition with no event since it was assigned, which the source has found at its end
    /// (empty: nothing to read), holds the watermark back this long more, then no longer,
    /// without waiting for `idle_timeout`. A partition with a backlog is not at its end. The
    /// trade-off: events a partition counted empty gets later are late if they are older than
    /// the watermark by then (a topic filled one partition after another while cluetrain
    /// reads it); meanwhile a cold start's first windows wait and what is read waits in the
    /// reorder buffer. At `idle_timeout` or above, empty partitions wait like any other.
    #[serde(with = "humantime_serde")]
    pub empty_partition_timeout: Duration,
    /// Events waiting for the watermark to be linked in event-time order; beyond it the oldest
    /// is linked early (cluetrain_linkage_reorder_forced_total).
    pub reorder_events_max: usize,
    /// Threads that link the events one watermark step releases, each input partition's on one
    /// thread (partitions share no linkage state: the input is keyed by brand); 0 = one per
    /// available core. The links are the same whatever it is. Linking was the largest share of
    /// the pipeline task, which does everything else on one thread (README, "Performance").
    pub threads: usize,
}

impl LinkageConfig {
    /// The thread count to use: [`LinkageConfig::threads`], 0 resolved to the cores this
    /// process may run on.
    pub fn threads_resolved(&self) -> usize {
        threads_or_cores(self.threads)
    }
}

impl Default for LinkageConfig {
    fn default() -> Self {
        LinkageConfig {
            response_horizon: Duration::from_secs(24 * 3600),
            entries_max: 1_000_000,
            org_author_rule: OrgAuthorRule::ConfiguredElseIsOrg,
            out_of_orderness: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            empty_partition_timeout: Duration::from_secs(5),
            reorder_events_max: 1_000_000,
            threads: 0,
        }
    }
}

/// A brand cluetrain knows by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BrandConfig {
    /// The `brand` value of its events.
    pub name: String,
    /// Its own accounts: author ids or handles (handles compare case-insensitively).
    pub accounts: Vec<String>,
    /// Brands it competes with, for share of voice (itself is always included).
    pub competitors: Vec<String>,
    /// Opening hours for first-response time in business hours; absent = always open (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_hours: Option<BusinessHoursConfig>,
}

/// A brand's opening hours: a weekly schedule in an IANA time zone, minus holidays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BusinessHoursConfig {
    /// IANA time zone, e.g. "Europe/London".
    pub time_zone: String,
    /// Opening intervals "HH:MM-HH:MM" per weekday.
    pub monday: Vec<String>,
    /// Tuesday's intervals.
    pub tuesday: Vec<String>,
    /// Wednesday's intervals.
    pub wednesday: Vec<String>,
    /// Thursday's intervals.
    pub thursday: Vec<String>,
    /// Friday's intervals.
    pub friday: Vec<String>,
    /// Saturday's intervals.
    pub saturday: Vec<String>,
    /// Sunday's intervals.
    pub sunday: Vec<String>,
    /// Closed all day, ISO dates ("2026-12-25").
    pub holidays: Vec<String>,
}

impl BusinessHoursConfig {
    /// The week, Monday first.
    pub fn week(&self) -> [&[String]; 7] {
        [
            &self.monday,
            &self.tuesday,
            &self.wednesday,
            &self.thursday,
            &self.friday,
            &self.saturday,
            &self.sunday,
        ]
    }
}

/// One window specification: tumbling when `slide` is absent or equal to `size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpecConfig {
    /// Window length.
    #[serde(with = "humantime_serde")]
    pub size: Duration,
    /// Distance between window starts (must divide `size`); absent = tumbling.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub slide: Option<Duration>,
}

/// A grouping key of window records besides the brand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKey {
    /// The event's platform.
    Platform,
    /// The author's stakeholder type.
    Stakeholder,
    /// The department an inbound message was routed to.
    Department,
}

/// Event-time windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsConfig {
    /// Window specs computed side by side.
    pub specs: Vec<WindowSpecConfig>,
    /// Grouping keys besides the brand (records carry null for keys not grouped by).
    pub group_by: Vec<GroupKey>,
    /// How long after the watermark passes a time events for it are still accepted (they
    /// update closed windows as a new revision); older events go to the late-events topic.
    /// Past a window's end plus this its thread depth is sealed and its conversations released.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// Emit not-yet-closed windows that changed this often (wall clock); "0s" = only at close.
    #[serde(with = "humantime_serde")]
    pub early_results_interval: Duration,
    /// A closed window whose figures changed (answers, events within the allowed lateness)
    /// is emitted again at most this often (wall clock, since its previous emission; changes
    /// in between are in the next revision); "0s" = with every batch that changes it. The
    /// record at close and the final are never held back.
    #[serde(with = "humantime_serde")]
    pub revision_interval: Duration,
    /// Run the window engine of a micro-batch on a thread of its own while the next batch,
    /// when one is already queued, goes through enrichment: the two stages on two cores (the
    /// records are the same either way). false = one after the other on the pipeline task.
    pub overlap_enrichment: bool,
    /// Window records held in memory; beyond it the oldest are finalised early
    /// (cluetrain_windows_forced_final_total).
    pub open_windows_max: usize,
    /// First-response times kept per window pane (a slide-long slice of a window: the whole
    /// window when tumbling) for exact quantiles; beyond it further values count in
    /// `answered` but not in the quantiles (cluetrain_windows_values_dropped_total). A hopping
    /// window reads at most size / slide times this.
    pub response_times_per_window_max: usize,
    /// Conversations tracked per window pane for thread depth; beyond it new ones are not
    /// counted.
    pub conversations_per_window_max: usize,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        WindowsConfig {
            specs: vec![
                WindowSpecConfig {
                    size: Duration::from_secs(60),
                    slide: None,
                },
                WindowSpecConfig {
                    size: Duration::from_secs(3600),
                    slide: Some(Duration::from_secs(300)),
                },
            ],
            group_by: Vec::new(),
            allowed_lateness: Duration::from_secs(300),
            early_results_interval: Duration::ZERO,
            revision_interval: Duration::from_secs(1),
            overlap_enrichment: true,
            open_windows_max: 200_000,
            response_times_per_window_max: 100_000,
            conversations_per_window_max: 100_000,
        }
    }
}

/// A department routing rule: the first rule with a matching keyword, hashtag or pattern wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DepartmentRuleConfig {
    /// Department name (a metric label value: keep the set small).
    pub department: String,
    /// Whole words or phrases, case-insensitive.
    pub keywords: Vec<String>,
    /// Whole hashtags, with or without '#'.
    pub hashtags: Vec<String>,
    /// Regular expressions (Rust regex syntax), case-insensitive.
    pub patterns: Vec<String>,
}

/// Routing of inbound messages to departments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DepartmentsConfig {
    /// Department of messages no rule matches.
    pub default: String,
    /// Rules, tried in order.
    pub rules: Vec<DepartmentRuleConfig>,
    /// Department name → Kafka topic: negative inbound messages (compound ≤ −0.05) routed to
    /// that department are also published there, so complaints reach the team.
    pub forward_negative: BTreeMap<String, String>,
}

impl Default for DepartmentsConfig {
    fn default() -> Self {
        DepartmentsConfig {
            default: "support".into(),
            rules: Vec::new(),
            forward_negative: BTreeMap::new(),
        }
    }
}

/// Where window records and late events go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputsConfig {
    /// Kafka topic of window records (JSON, key = brand); "" = not published.
    pub windows_topic: String,
    /// Kafka topic of events later than the allowed lateness (never silently dropped).
    pub late_events_topic: String,
    /// Parquet output: a local directory, `file:///path`, or `s3://bucket/prefix`; "" = off.
    pub parquet_location: String,
    /// Buffered window records are written as one Parquet file this often (and on shutdown).
    #[serde(with = "humantime_serde")]
    pub parquet_flush_interval: Duration,
    /// ...or as soon as this many records are buffered.
    pub parquet_rows_max: usize,
    /// Hand a micro-batch's Kafka outputs to the producer and go on with the next batch while
    /// they are delivered (at most one batch in flight; it is acknowledged once delivered).
    /// false = wait for every delivery before the next batch.
    pub overlap_delivery: bool,
}

impl Default for OutputsConfig {
    fn default() -> Self {
        OutputsConfig {
            windows_topic: "cluetrain-windows".into(),
            late_events_topic: "cluetrain-late-events".into(),
            parquet_location: "cluetrain-data".into(),
            parquet_flush_interval: Duration::from_secs(60),
            parquet_rows_max: 100_000,
            overlap_delivery: true,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing env-filter directive (`info`, `cluetrain=debug,rdkafka=warn`); `RUST_LOG`
    /// overrides it when set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// One thing wrong with a configuration: which key, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `ingest.batch_rows_max`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A configuration that failed validation; lists every problem, not only the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Every problem found.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  - {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

/// librdkafka properties that cluetrain sets itself. Setting them by hand would break a
/// guarantee (offsets only after durable results) or contradict a dedicated key.
const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    (
        "enable.auto.offset.store",
        "cluetrain stores offsets itself, only after results are durable",
    ),
    (
        "enable.auto.commit",
        "cluetrain commits stored offsets itself (see kafka.commit_interval)",
    ),
    ("bootstrap.servers", "use kafka.bootstrap_servers"),
    ("group.id", "use kafka.group_id"),
    ("auto.offset.reset", "use kafka.auto_offset_reset"),
    ("fetch.min.bytes", "use kafka.fetch_min_bytes"),
    ("fetch.wait.max.ms", "use kafka.fetch_wait_max"),
    (
        "max.partition.fetch.bytes",
        "use kafka.partition_fetch_bytes_max",
    ),
    ("queued.max.messages.kbytes", "use kafka.prefetch_bytes_max"),
    ("queued.min.messages", "use kafka.prefetch_messages_max"),
    ("fetch.queue.backoff.ms", "use kafka.prefetch_backoff"),
    (
        "enable.partition.eof",
        "cluetrain needs partition EOF events for bounded runs",
    ),
];

impl Config {
    /// Cross-field and range checks; returns every problem with the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: String| {
            problems.push(ConfigProblem {
                key: key.to_string(),
                message,
            });
        };
        let c = &self.checkpoint;
        if !c.location.is_empty() {
            if c.keep < 2 {
                bad(
                    "checkpoint.keep",
                    format!(
                        "is {}: keep at least 2, so that a corrupt newest checkpoint has a \
                         fallback",
                        c.keep
                    ),
                );
            }
            if c.keep > 100 {
                bad("checkpoint.keep", format!("is {}: at most 100", c.keep));
            }
            if c.full_every == 0 || c.full_every > 1000 {
                bad(
                    "checkpoint.full_every",
                    format!(
                        "is {}: from 1 (every checkpoint full) to 1000 (the longest chain a \
                         restore follows)",
                        c.full_every
                    ),
                );
            }
            if c.interval < Duration::from_millis(100) {
                bad(
                    "checkpoint.interval",
                    "is below 100ms: every checkpoint writes each partition's whole state".into(),
                );
            }
            let strategy = self
                .kafka
                .consumer_properties
                .get("partition.assignment.strategy")
                .or_else(|| self.kafka.properties.get("partition.assignment.strategy"));
            if strategy.is_some_and(|s| s.contains("cooperative")) {
                bad(
                    "kafka.consumer_properties.partition.assignment.strategy",
                    "cooperative-sticky is not supported with checkpoints: a rebalance hands the \
                     whole assignment over and restores it from checkpoints; use range or \
                     roundrobin (the default)"
                        .into(),
                );
            }
            if c.rebalance_timeout < Duration::from_secs(1) {
                bad(
                    "checkpoint.rebalance_timeout",
                    "is below 1s: a checkpoint of a large state takes longer".into(),
                );
            }
        }
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            bad(
                "kafka.bootstrap_servers",
                "is empty: set it to host:port[,host:port...]".into(),
            );
        }
        if k.group_id.trim().is_empty() {
            bad(
                "kafka.group_id",
                "is empty: every cluetrain instance needs a group id".into(),
            );
        }
        for (key, topic) in [
            ("kafka.input_topic", &k.input_topic),
            ("kafka.dead_letter_topic", &k.dead_letter_topic),
        ] {
            if let Err(why) = check_topic_name(topic) {
                bad(key, why);
            }
        }
        if k.input_topic == k.dead_letter_topic {
            bad(
                "kafka.dead_letter_topic",
                "is the input topic: dead letters would be read again; choose another topic".into(),
            );
        }
        if k.fetch_wait_max.is_zero() || k.fetch_wait_max > Duration::from_secs(60) {
            bad(
                "kafka.fetch_wait_max",
                "must be between 1ms and 60s (try \"10ms\")".into(),
            );
        }
        // librdkafka's range for queued.max.messages.kbytes: 1 to 2,097,151 KiB.
        if !(1024..=2_097_151 * 1024).contains(&k.prefetch_bytes_max) {
            bad(
                "kafka.prefetch_bytes_max",
                format!(
                    "is {}: must be between 1024 and 2147482624 bytes (default 67108864, 64 MiB)",
                    k.prefetch_bytes_max
                ),
            );
        }
        // librdkafka's range for queued.min.messages.
        if !(1..=10_000_000).contains(&k.prefetch_messages_max) {
            bad(
                "kafka.prefetch_messages_max",
                format!(
                    "is {}: must be between 1 and 10000000 messages per partition (default 20000)",
                    k.prefetch_messages_max
                ),
            );
        }
        // librdkafka's range for fetch.queue.backoff.ms: 0 to 300,000 ms.
        if k.prefetch_backoff > Duration::from_secs(300) {
            bad(
                "kafka.prefetch_backoff",
                "must be at most 300s (default \"10ms\")".into(),
            );
        }
        if k.commit_interval.is_zero() {
            bad(
                "kafka.commit_interval",
                "must be greater than zero (try \"5s\")".into(),
            );
        }
        for (section, props) in [
            ("kafka.properties", &k.properties),
            ("kafka.consumer_properties", &k.consumer_properties),
            ("kafka.producer_properties", &k.producer_properties),
        ] {
            for name in props.keys() {
                if let Some((_, why)) = RESERVED_PROPERTIES.iter().find(|(r, _)| r == name) {
                    bad(
                        &format!("{section}.\"{name}\""),
                        format!("is managed by cluetrain: {why}; remove it"),
                    );
                }
            }
        }
        for (key, threads) in [
            ("sentiment.threads", self.sentiment.threads),
            ("linkage.threads", self.linkage.threads),
            ("checkpoint.threads", self.checkpoint.threads),
        ] {
            if threads > THREADS_MAX {
                bad(
                    key,
                    format!(
                        "is {threads}: at most {THREADS_MAX} (0, the default, uses one per available core)"
                    ),
                );
            }
        }
        let i = &self.ingest;
        if !(1..=1_000_000).contains(&i.batch_rows_max) {
            bad(
                "ingest.batch_rows_max",
                "must be between 1 and 1000000 (default 8192)".into(),
            );
        }
        if i.batch_wait_max.is_zero() || i.batch_wait_max > Duration::from_secs(60) {
            bad(
                "ingest.batch_wait_max",
                "must be between 1ms and 60s (default \"250ms\")".into(),
            );
        }
        if !(1..=1024).contains(&i.queue_batches_max) {
            bad(
                "ingest.queue_batches_max",
                "must be between 1 and 1024 (default 4)".into(),
            );
        }
        if i.partition_drift_idle < Duration::from_millis(100)
            || i.partition_drift_idle > Duration::from_secs(3600)
        {
            bad(
                "ingest.partition_drift_idle",
                "must be between 100ms and 1h (default \"10s\")".into(),
            );
        }
        if !(64..=(256 << 20)).contains(&i.message_bytes_max) {
            bad(
                "ingest.message_bytes_max",
                "must be between 64 and 268435456 bytes (default 1048576)".into(),
            );
        }
        let l = &self.linkage;
        if l.response_horizon < Duration::from_secs(60)
            || l.response_horizon > Duration::from_secs(30 * 24 * 3600)
        {
            bad(
                "linkage.response_horizon",
                "must be between 1m and 30d (default \"24h\")".into(),
            );
        }
        if !(1_000..=100_000_000).contains(&l.entries_max) {
            bad(
                "linkage.entries_max",
                "must be between 1000 and 100000000 (default 1000000)".into(),
            );
        }
        if !(1_000..=100_000_000).contains(&l.reorder_events_max) {
            bad(
                "linkage.reorder_events_max",
                "must be between 1000 and 100000000 (default 1000000)".into(),
            );
        }
        if l.idle_timeout.is_zero() {
            bad(
                "linkage.idle_timeout",
                "must be greater than zero (default \"60s\")".into(),
            );
        }
        self.validate_windows(&mut bad);
        let mut names = std::collections::BTreeSet::new();
        for (i, b) in self.brands.iter().enumerate() {
            if b.name.trim().is_empty() {
                bad(
                    &format!("brands[{i}].name"),
                    "is empty: use the brand value of its events".into(),
                );
            } else if !names.insert(b.name.as_str()) {
                bad(
                    &format!("brands[{i}].name"),
                    format!("{:?} is configured twice; merge the entries", b.name),
                );
            }
        }
        if self.ingest.dead_letter_payload == DeadLetterPayload::Truncate
            && !(1..=self.ingest.message_bytes_max)
                .contains(&self.ingest.dead_letter_payload_bytes_max)
        {
            bad(
                "ingest.dead_letter_payload_bytes_max",
                "must be between 1 and ingest.message_bytes_max (default 1024); use dead_letter_payload = \"none\" to keep no payload".into(),
            );
        }
        let p = &self.privacy;
        if p.pseudonymise_user_ids
            && p.hmac_key_env.trim().is_empty()
            && p.hmac_key_file.trim().is_empty()
        {
            bad(
                "privacy.hmac_key_env",
                "pseudonymise_user_ids is on but no key source is set: name the environment variable holding the key (default \"CLUETRAIN_HMAC_KEY\") or set privacy.hmac_key_file".into(),
            );
        }
        if self.log.filter.trim().is_empty() {
            bad(
                "log.filter",
                "is empty: use a level such as \"info\"".into(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

impl Config {
    fn validate_windows(&self, bad: &mut impl FnMut(&str, String)) {
        let w = &self.windows;
        if w.specs.is_empty() {
            bad(
                "windows.specs",
                "is empty: configure at least one window, e.g. [[windows.specs]] size = \"1m\""
                    .into(),
            );
        }
        if w.specs.len() > 16 {
            bad(
                "windows.specs",
                "at most 16 window specs are supported".into(),
            );
        }
        for (i, s) in w.specs.iter().enumerate() {
            let slide = s.slide.unwrap_or(s.size);
            let key = format!("windows.specs[{i}]");
            if s.size < Duration::from_secs(1) || slide < Duration::from_secs(1) {
                bad(&key, "size and slide must be at least 1s".into());
            } else if slide > s.size || s.size.as_micros() % slide.as_micros() != 0 {
                bad(
                    &key,
                    format!(
                        "slide {} must divide size {} (e.g. size \"1h\", slide \"5m\")",
                        humantime::format_duration(slide),
                        humantime::format_duration(s.size)
                    ),
                );
            } else if s.size.as_micros() / slide.as_micros() > 1024 {
                bad(
                    &key,
                    "size / slide must be at most 1024 windows per event".into(),
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &w.specs {
            if !seen.insert((s.size, s.slide.unwrap_or(s.size))) {
                bad(
                    "windows.specs",
                    "lists the same window twice; remove one".into(),
                );
            }
        }
        let mut keys = w.group_by.clone();
        keys.sort();
        keys.dedup();
        if keys.len() != w.group_by.len() {
            bad("windows.group_by", "lists a key twice".into());
        }
        if w.allowed_lateness > self.linkage.response_horizon {
            bad(
                "windows.allowed_lateness",
                "must not exceed linkage.response_horizon: a window is final at end + horizon"
                    .into(),
            );
        }
        for (key, v, min) in [
            ("windows.open_windows_max", w.open_windows_max, 100),
            (
                "windows.response_times_per_window_max",
                w.response_times_per_window_max,
                100,
            ),
            (
                "windows.conversations_per_window_max",
                w.conversations_per_window_max,
                100,
            ),
        ] {
            if !(min..=100_000_000).contains(&v) {
                bad(key, format!("must be between {min} and 100000000"));
            }
        }
        let d = &self.departments;
        if d.default.trim().is_empty() {
            bad(
                "departments.default",
                "is empty: name the department of unmatched messages (default \"support\")".into(),
            );
        }
        for (i, r) in d.rules.iter().enumerate() {
            if r.department.trim().is_empty() {
                bad(
                    &format!("departments.rules[{i}].department"),
                    "is empty: name the department this rule routes to".into(),
                );
            }
            if r.keywords.is_empty() && r.hashtags.is_empty() && r.patterns.is_empty() {
                bad(
                    &format!("departments.rules[{i}]"),
                    "has no keywords, hashtags or patterns: it would never match".into(),
                );
            }
        }
        for (dept, topic) in &d.forward_negative {
            if let Err(why) = check_topic_name(topic) {
                bad(&format!("departments.forward_negative.{dept}"), why);
            }
        }
        let q = &self.sql;
        if !q.listen.ip().is_loopback() && q.password.is_empty() {
            bad(
                "sql.password",
                format!(
                    "is required because sql.listen ({}) is not a loopback address: set CLUETRAIN_SQL__PASSWORD",
                    q.listen
                ),
            );
        }
        if q.user.trim().is_empty() {
            bad("sql.user", "is empty (default \"cluetrain\")".into());
        }
        if q.memory_bytes_max < (1 << 20) {
            bad(
                "sql.memory_bytes_max",
                "must be at least 1048576 (1 MiB)".into(),
            );
        }
        if q.query_timeout.is_zero() {
            bad(
                "sql.query_timeout",
                "must be greater than zero (default \"30s\")".into(),
            );
        }
        if !(1..=100_000_000).contains(&q.rows_max) {
            bad("sql.rows_max", "must be between 1 and 100000000".into());
        }
        for (key, v) in [
            ("sql.live_windows_max", q.live_windows_max),
            ("sql.samples_max", q.samples_max),
            ("sql.voices_max", q.voices_max),
            ("sql.open_conversations_max", q.open_conversations_max),
        ] {
            if !(1..=100_000_000).contains(&v) {
                bad(key, "must be between 1 and 100000000".into());
            }
        }
        if !(1..=10_000).contains(&q.voice_conversations_max) {
            bad(
                "sql.voice_conversations_max",
                "must be between 1 and 10000 (default 32): each counted conversation is kept \
                 per author-day, up to sql.voices_max of them"
                    .into(),
            );
        }
        if q.refresh_interval.is_zero() {
            bad(
                "sql.refresh_interval",
                "must be greater than zero (default \"5s\")".into(),
            );
        }
        let o = &self.outputs;
        if !o.windows_topic.is_empty()
            && let Err(why) = check_topic_name(&o.windows_topic)
        {
            bad("outputs.windows_topic", why);
        }
        if let Err(why) = check_topic_name(&o.late_events_topic) {
            bad(
                "outputs.late_events_topic",
                format!("{why} (late events are never dropped: a topic is required)"),
            );
        }
        if o.late_events_topic == self.kafka.input_topic
            || o.windows_topic == self.kafka.input_topic
        {
            bad(
                "outputs",
                "an output topic is the input topic: records would be read again as events".into(),
            );
        }
        if o.parquet_flush_interval.is_zero() {
            bad(
                "outputs.parquet_flush_interval",
                "must be greater than zero (default \"60s\")".into(),
            );
        }
        if !(1..=10_000_000).contains(&o.parquet_rows_max) {
            bad(
                "outputs.parquet_rows_max",
                "must be between 1 and 10000000 (default 100000)".into(),
            );
        }
        let brands: std::collections::BTreeSet<&str> =
            self.brands.iter().map(|b| b.name.as_str()).collect();
        for (i, b) in self.brands.iter().enumerate() {
            for c in &b.competitors {
                if !brands.contains(c.as_str()) {
                    bad(
                        &format!("brands[{i}].competitors"),
                        format!("{c:?} is not a configured brand: add a [[brands]] entry for it"),
                    );
                }
            }
            if let Some(h) = &b.business_hours
                && h.time_zone.trim().is_empty()
            {
                bad(
                    &format!("brands[{i}].business_hours.time_zone"),
                    "is empty: use an IANA name such as \"Europe/London\"".into(),
                );
            }
        }
    }
}

/// Kafka's rules for topic names: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!("topic name {name:?} must have 1 to 249 characters"));
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed by Kafka"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}: Kafka allows only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Reads a table of librdkafka properties, flattening nested tables into dotted names.
///
/// TOML turns `security.protocol = "SASL_SSL"` (unquoted) into a nested table, and the
/// environment provider does the same for `CLUETRAIN_KAFKA__PROPERTIES__SASL_PASSWORD`; both
/// should mean the property `security.protocol` / `sasl.password`. Scalars become strings, as
/// librdkafka expects.
fn flatten_properties<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Node {
        Str(String),
        Bool(bool),
        Int(i64),
        Float(f64),
        Table(BTreeMap<String, Node>),
    }
    fn walk(prefix: &str, node: Node, out: &mut BTreeMap<String, String>) {
        match node {
            Node::Str(s) => {
                out.insert(prefix.to_string(), s);
            }
            Node::Bool(b) => {
                out.insert(prefix.to_string(), b.to_string());
            }
            Node::Int(i) => {
                out.insert(prefix.to_string(), i.to_string());
            }
            Node::Float(f) => {
                out.insert(prefix.to_string(), f.to_string());
            }
            Node::Table(t) => {
                for (k, v) in t {
                    let name = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&name, v, out);
                }
            }
        }
    }
    let top = BTreeMap::<String, Node>::deserialize(d)?;
    let mut out = BTreeMap::new();
    for (k, v) in top {
        walk(&k, v, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn every_problem_names_its_key() {
        let mut c = Config::default();
        c.ingest.batch_rows_max = 0;
        c.kafka.dead_letter_topic = c.kafka.input_topic.clone();
        c.kafka
            .properties
            .insert("enable.auto.offset.store".into(), "true".into());
        c.kafka.input_topic = "bad topic".into();
        c.kafka.prefetch_messages_max = 0;
        c.kafka.prefetch_backoff = Duration::from_secs(301);
        c.kafka
            .consumer_properties
            .insert("queued.min.messages".into(), "5".into());
        let err = c.validate().unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"ingest.batch_rows_max"), "{keys:?}");
        assert!(keys.contains(&"kafka.prefetch_messages_max"), "{keys:?}");
        assert!(keys.contains(&"kafka.prefetch_backoff"), "{keys:?}");
        assert!(
            err.problems
                .iter()
                .any(|p| p.key.contains("queued.min.messages")
                    && p.message.contains("kafka.prefetch_messages_max")),
            "{err}"
        );
        assert!(keys.contains(&"kafka.input_topic"), "{keys:?}");
        assert!(
            keys.contains(&"kafka.properties.\"enable.auto.offset.store\""),
            "{keys:?}"
        );
        let text = err.to_string();
        assert!(text.contains("remove it"), "{text}");
    }

    #[test]
    fn linkage_and_brand_problems_name_their_key() {
        let mut c = Config::default();
        c.linkage.response_horizon = Duration::from_secs(1);
        c.brands = vec![
            BrandConfig {
                name: "acme".into(),
                ..Default::default()
            },
            BrandConfig {
                name: "acme".into(),
                ..Default::default()
            },
        ];
        let keys: Vec<_> = c
            .validate()
            .unwrap_err()
            .problems
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(
            keys,
            vec![
                "linkage.response_horizon".to_string(),
                // The default lateness (5m) now exceeds the 1s horizon: named as well.
                "windows.allowed_lateness".to_string(),
                "brands[1].name".to_string()
            ]
        );
    }

    #[test]
    fn thread_counts_beyond_the_maximum_name_their_key() {
        let mut c = Config::default();
        c.sentiment.threads = THREADS_MAX + 1;
        c.linkage.threads = THREADS_MAX;
        c.checkpoint.threads = 1_000;
        let err = c.validate().unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["sentiment.threads", "checkpoint.threads"]);
        assert!(err.to_string().contains("is 1000: at most 256"), "{err}");
        c.sentiment.threads = 0;
        c.checkpoint.threads = 2;
        assert!(c.validate().is_ok());
        assert!(c.sentiment.threads_resolved() >= 1);
        assert_eq!(c.checkpoint.threads_resolved(), 2);
    }

    #[test]
    fn checkpoint_problems_name_their_key_and_the_fix() {
        let mut c = Config::default();
        c.checkpoint.keep = 1;
        c.kafka.consumer_properties.insert(
            "partition.assignment.strategy".into(),
            "cooperative-sticky".into(),
        );
        let err = c.validate().unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "checkpoint.keep",
                "kafka.consumer_properties.partition.assignment.strategy"
            ]
        );
        assert!(err.to_string().contains("use range or roundrobin"), "{err}");
        // Off: nothing to check.
        c.checkpoint.location.clear();
        c.validate().unwrap();
    }

    #[test]
    fn nested_property_tables_flatten_to_dotted_names() {
        let c: KafkaConfig = serde_json::from_str(
            r#"{"properties": {"security": {"protocol": "SASL_SSL"}, "sasl.mechanism": "PLAIN",
                "socket": {"timeout": {"ms": 3000}}, "ssl": {"endpoint": {"identification": {"algorithm": "none"}}}}}"#,
        )
        .unwrap();
        assert_eq!(c.properties["security.protocol"], "SASL_SSL");
        assert_eq!(c.properties["sasl.mechanism"], "PLAIN");
        assert_eq!(c.properties["socket.timeout.ms"], "3000");
        assert_eq!(
            c.properties["ssl.endpoint.identification.algorithm"],
            "none"
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_in_redacted() {
        let mut c = Config::default();
        c.sql.password = "sqlpw-123".into();
        for (k, v) in [
            ("sasl.password", "saslpw-123"),
            ("ssl.key.password", "keypw-123"),
            ("ssl.keystore.password", "storepw-123"),
            ("sasl.oauthbearer.client.secret", "oauth-123"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----pem-123"),
            ("sasl.username", "alice"),
        ] {
            c.kafka.properties.insert(k.into(), v.into());
        }
        c.kafka
            .producer_properties
            .insert("sasl.password".into(), "prodpw-123".into());
        let r = c.redacted();
        for text in [
            format!("{c:?}"),
            format!("{r:?}"),
            serde_json::to_string(&r).unwrap(),
        ] {
            assert!(!text.contains("-123"), "a secret is shown: {text}");
            assert!(text.contains(REDACTED), "{text}");
            assert!(text.contains("alice"), "non-secrets stay: {text}");
        }
        assert_eq!(
            c.kafka.properties["sasl.password"], "saslpw-123",
            "untouched"
        );
        assert!(!is_secret_property("ssl.key.location"));
        assert!(!is_secret_property("security.protocol"));
    }

    #[test]
    fn privacy_and_dead_letter_payload_problems_name_their_key() {
        let mut c = Config::default();
        c.privacy.pseudonymise_user_ids = true;
        c.validate().unwrap();
        c.privacy.hmac_key_env = String::new();
        c.ingest.dead_letter_payload = DeadLetterPayload::Truncate;
        c.ingest.dead_letter_payload_bytes_max = 0;
        let err = c.validate().unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ingest.dead_letter_payload_bytes_max",
                "privacy.hmac_key_env"
            ]
        );
        assert!(err.to_string().contains("hmac_key_file"), "{err}");
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(check_topic_name("social-events.v1_x").is_ok());
        assert!(check_topic_name("").is_err());
        assert!(check_topic_name("..").is_err());
        assert!(check_topic_name(&"a".repeat(250)).is_err());
        assert!(check_topic_name("a/b").unwrap_err().contains("'/'"));
    }
}
