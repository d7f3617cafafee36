//! Read-only SQL for analysts: `cluetrain sql "SELECT ..."` over the window history (Parquet),
//! and the Postgres-wire server of a running pipeline, which adds its live tables
//! ([`crate::live_tables`]: late_events, dead_letters, open_conversations, voices...).
//!
//! Tables (docs/sql.md describes them):
//! * `engagement_windows`: the latest revision of every window (one row per window key), over
//!   the history and, in a running pipeline, what it emitted that is not in Parquet yet;
//! * `engagement_window_revisions`: every revision, as written to Parquet;
//! * `engagement_window_departments` / `engagement_window_department_revisions`: the same for
//!   the per-department figures.
//!
//! Locked down: only queries (SELECT, EXPLAIN, SHOW) run; DDL (CREATE, DROP, CREATE EXTERNAL
//! TABLE), DML (INSERT, UPDATE, DELETE, COPY ... TO) and statements (SET ...) are refused by
//! DataFusion's SQL options before planning, so nothing can read or write files other than the
//! history. Each query runs under a memory limit and a timeout, and returns at most `rows_max`
//! rows.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrow_array::RecordBatch;
use arrow_schema::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use model::window_record::arrow_form;

use crate::live_tables::LiveTables;
use crate::outputs::parquet::{DEPARTMENTS_DIR, WINDOWS_DIR};
use crate::sql_limits::QueryLimitsRule;

/// Limits on one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Memory a query may use (sorts, joins, aggregations); beyond it the query fails.
    pub memory_bytes_max: usize,
    /// Wall time a query may take.
    pub timeout: Duration,
    /// Rows returned at most.
    pub rows_max: usize,
}

/// The key of a window record (upserts): the latest revision per key is the current one.
const WINDOW_KEY: &str = "brand, platform, stakeholder, department, window_start, window_seconds";
const DEPARTMENT_KEY: &str =
    "brand, platform, stakeholder, window_start, window_seconds, department";

/// A session over the Parquet history under `location` (as `outputs.parquet_location`) and,
/// in a running pipeline, its live tables. With live tables `location` may be empty (no
/// history: `engagement_windows` is then what this process emitted).
pub async fn history_context(
    location: &str,
    limits: QueryLimits,
    live: Option<&Arc<LiveTables>>,
) -> anyhow::Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.memory_bytes_max, 1.0)
        .build_arc()
        .context("internal: building the query runtime")?;
    let config = SessionConfig::new().with_information_schema(true);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(QueryLimitsRule {
            rows_max: limits.rows_max,
            timeout: limits.timeout,
        }))
        .build();
    let ctx = SessionContext::new_with_state(state);
    let history = !location.is_empty() || live.is_none();
    if history {
        let base = table_base(location, &ctx)?;
        for (table, dir, schema) in [
            (
                "engagement_window_revisions",
                WINDOWS_DIR,
                arrow_form::window_schema(),
            ),
            (
                "engagement_window_department_revisions",
                DEPARTMENTS_DIR,
                arrow_form::department_schema(),
            ),
        ] {
            let url = format!("{base}{dir}/");
            if let Some(local) = url.strip_prefix("file://") {
                std::fs::create_dir_all(local)
                    .with_context(|| format!("creating {local} (the history's directory)"))?;
            }
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(vec![("date".to_string(), DataType::Utf8)]);
            let cfg = ListingTableConfig::new(
                ListingTableUrl::parse(&url).with_context(|| format!("history location {url}"))?,
            )
            .with_listing_options(options)
            .with_schema(schema);
            let t = ListingTable::try_new(cfg).context("opening the history table")?;
            ctx.register_table(table, Arc::new(t))
                .context("registering the history table")?;
        }
    }
    if let Some(live) = live {
        live.register(&ctx)?;
    }
    // Views for the current figures: per key, a final record if there is one, else the highest
    // revision, over the history and what the running pipeline emitted since. Final first:
    // after a crash the records since the last checkpoint are emitted again with the same final
    // figures but possibly other revision numbers (docs/outputs.md, "Delivery guarantees").
    for (view, table, live_table, key) in [
        (
            "engagement_windows",
            "engagement_window_revisions",
            "engagement_windows_live",
            WINDOW_KEY,
        ),
        (
            "engagement_window_departments",
            "engagement_window_department_revisions",
            "engagement_window_departments_live",
            DEPARTMENT_KEY,
        ),
    ] {
        let source = match (history, live.is_some()) {
            (true, true) => format!("(SELECT * FROM {table} UNION ALL SELECT * FROM {live_table})"),
            (true, false) => table.to_string(),
            (false, _) => live_table.to_string(),
        };
        let sql = format!(
            "CREATE VIEW {view} AS SELECT * EXCLUDE (revision_rank) FROM (SELECT *, \
             row_number() OVER (PARTITION BY {key} ORDER BY \"final\" DESC, revision DESC) \
             AS revision_rank \
             FROM {source}) WHERE revision_rank = 1"
        );
        ctx.sql(&sql)
            .await
            .with_context(|| format!("internal: creating view {view}"))?;
    }
    Ok(ctx)
}

/// The URL prefix of `location` (ending in `/`), registering an object store for S3.
fn table_base(location: &str, ctx: &SessionContext) -> anyhow::Result<String> {
    if location.starts_with("s3://") {
        let (store, _) = crate::outputs::parquet::open_store(location)?;
        let url = url::Url::parse(location).context("outputs.parquet_location is not a URL")?;
        let bucket = url::Url::parse(&format!(
            "s3://{}",
            url.host_str().context("s3 location without a bucket")?
        ))?;
        ctx.register_object_store(&bucket, store);
        return Ok(format!("{}/", location.trim_end_matches('/')));
    }
    let path = location.strip_prefix("file://").unwrap_or(location);
    anyhow::ensure!(
        !path.is_empty(),
        "outputs.parquet_location is empty: there is no history to query (set it to the directory the pipeline writes)"
    );
    std::fs::create_dir_all(path).with_context(|| format!("creating {path}"))?;
    let abs = std::fs::canonicalize(path).with_context(|| format!("resolving {path}"))?;
    Ok(format!("file://{}/", abs.display()))
}

/// Why a statement was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Not a read-only query (user error).
    #[error("only SELECT, EXPLAIN and SHOW are allowed (cluetrain's SQL is read-only): {0}")]
    Refused(String),
    /// The query took longer than the timeout (user error: narrow it, or raise sql.query_timeout).
    #[error(
        "query timed out after {0:?}: narrow it (WHERE window_start > ...) or raise sql.query_timeout"
    )]
    Timeout(Duration),
    /// Planning or execution failed (bad SQL, memory limit...).
    #[error("{0}")]
    Failed(#[from] datafusion::error::DataFusionError),
}

/// Read-only statement options: no DDL, no DML (INSERT, COPY), no SET.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Runs one read-only query under `limits`.
pub async fn query(
    ctx: &SessionContext,
    sql: &str,
    limits: QueryLimits,
) -> Result<Vec<RecordBatch>, QueryError> {
    let df = match ctx.sql_with_options(sql, read_only()).await {
        Ok(df) => df,
        Err(e) => {
            let text = e.to_string();
            return Err(
                if text.contains("not supported") || text.contains("Unsupported") {
                    QueryError::Refused(text)
                } else {
                    QueryError::Failed(e)
                },
            );
        }
    };
    let df = df.limit(0, Some(limits.rows_max))?;
    match tokio::time::timeout(limits.timeout, df.collect()).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(QueryError::Timeout(limits.timeout)),
    }
}

/// Output formats of `cluetrain sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row.
    Json,
}

/// Renders batches in `format`.
pub fn render(batches: &[RecordBatch], format: Format) -> anyhow::Result<String> {
    match format {
        Format::Table => Ok(
            datafusion::arrow::util::pretty::pretty_format_batches(batches)
                .context("rendering the table")?
                .to_string(),
        ),
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                for b in batches {
                    w.write(b).context("rendering CSV")?;
                }
            }
            Ok(String::from_utf8(buf)?)
        }
        Format::Json => {
            let mut buf = Vec::new();
            {
                let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
                for b in batches {
                    w.write(b).context("rendering JSON")?;
                }
                w.finish().context("rendering JSON")?;
            }
            Ok(String::from_utf8(buf)?)
        }
    }
}
