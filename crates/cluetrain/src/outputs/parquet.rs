//! Window records as Parquet, through `object_store`: a local directory by default, S3 by URL.
//!
//! Layout, for analysts (also in docs/outputs.md):
//!
//! ```text
//! <location>/engagement_windows/date=YYYY-MM-DD/part-<time>-<instance>-<seq>.parquet
//! <location>/engagement_window_departments/date=YYYY-MM-DD/part-....parquet
//! ```
//!
//! `date` is the UTC date of `window_start`. Every emitted revision is a row: a window appears
//! once per revision, and the current figures are the row with the highest `revision` per key
//! (brand, platform, stakeholder, department, window_start, window_seconds); `final = true`
//! marks the last one. Files are immutable and written whole with one object-store `put`
//! (atomic on S3; a temporary file renamed into place on a local disk), so a reader never sees
//! a half-written file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow_array::RecordBatch;
use model::WindowRecord;
use model::window_record::arrow_form;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Directory (object prefix) of the window table.
pub const WINDOWS_DIR: &str = "engagement_windows";
/// Directory (object prefix) of the department table.
pub const DEPARTMENTS_DIR: &str = "engagement_window_departments";

/// Buffers window records and writes them as Parquet files.
pub struct ParquetSink {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    location: String,
    buffer: Vec<WindowRecord>,
    rows_max: usize,
    interval: Duration,
    last_flush: Instant,
    instance: String,
    seq: u64,
    files_written: u64,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParquetSink({})", self.location)
    }
}

/// Opens `location`: `s3://bucket/prefix` (credentials and region from the usual `AWS_*`
/// environment variables), `file:///absolute/path`, or a local directory path (created if
/// missing).
pub fn open_store(location: &str) -> anyhow::Result<(Arc<dyn ObjectStore>, StorePath)> {
    open_store_for("outputs.parquet_location", location)
}

/// [`open_store`] for the configuration key `key` (named in its errors).
pub fn open_store_for(
    key: &str,
    location: &str,
) -> anyhow::Result<(Arc<dyn ObjectStore>, StorePath)> {
    if let Some(rest) = location.strip_prefix("s3://") {
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_url(location)
            .build()
            .with_context(|| format!("{key} {location:?}: opening S3"))?;
        let prefix = rest.split_once('/').map_or("", |(_, p)| p);
        return Ok((Arc::new(store), StorePath::from(prefix)));
    }
    let path = match location.strip_prefix("file://") {
        Some(p) => std::path::PathBuf::from(p),
        None if location.contains("://") => anyhow::bail!(
            "{key} {location:?}: unsupported scheme; use a directory, file:///path or s3://bucket/prefix"
        ),
        None => std::path::PathBuf::from(location),
    };
    std::fs::create_dir_all(&path)
        .with_context(|| format!("{key}: cannot create directory {}", path.display()))?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(&path)
        .with_context(|| format!("{key}: opening {}", path.display()))?;
    Ok((Arc::new(store), StorePath::default()))
}

impl ParquetSink {
    /// A sink writing under `location` every `interval` or `rows_max` records.
    pub fn new(location: &str, interval: Duration, rows_max: usize) -> anyhow::Result<Self> {
        let (store, prefix) = open_store(location)?;
        let started = chrono::Utc::now().timestamp_micros();
        Ok(ParquetSink {
            store,
            prefix,
            location: location.to_string(),
            buffer: Vec::new(),
            rows_max: rows_max.max(1),
            interval,
            last_flush: Instant::now(),
            instance: format!("{}-{started}", std::process::id()),
            seq: 0,
            files_written: 0,
        })
    }

    /// Buffers records.
    pub fn push(&mut self, records: &[WindowRecord]) {
        self.buffer.extend_from_slice(records);
    }

    /// Records buffered and not yet written.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Files written so far.
    pub fn files_written(&self) -> u64 {
        self.files_written
    }

    /// Whether a flush is due (enough records, or the interval passed with records waiting).
    pub fn due(&self) -> bool {
        self.buffer.len() >= self.rows_max
            || (!self.buffer.is_empty() && self.last_flush.elapsed() >= self.interval)
    }

    /// Writes every buffered record (one file per table and date).
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.last_flush = Instant::now();
        if self.buffer.is_empty() {
            return Ok(());
        }
        let mut by_date: BTreeMap<String, Vec<WindowRecord>> = BTreeMap::new();
        for r in self.buffer.drain(..) {
            by_date
                .entry(r.window_start.format("%Y-%m-%d").to_string())
                .or_default()
                .push(r);
        }
        for (date, records) in by_date {
            self.seq += 1;
            let name = format!(
                "part-{}-{}-{:06}.parquet",
                chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
                self.instance,
                self.seq
            );
            let windows =
                arrow_form::windows_batch(&records).context("internal: window records to Arrow")?;
            self.put(WINDOWS_DIR, &date, &name, &windows).await?;
            let departments = arrow_form::departments_batch(&records)
                .context("internal: department figures to Arrow")?;
            if departments.num_rows() > 0 {
                self.put(DEPARTMENTS_DIR, &date, &name, &departments)
                    .await?;
            }
        }
        Ok(())
    }

    async fn put(
        &mut self,
        table: &str,
        date: &str,
        name: &str,
        batch: &RecordBatch,
    ) -> anyhow::Result<()> {
        let bytes = encode(batch)?;
        let path = self
            .prefix
            .clone()
            .join(table)
            .join(format!("date={date}"))
            .join(name);
        self.store
            .put(&path, bytes.into())
            .await
            .with_context(|| format!("writing {path} under {}", self.location))?;
        self.files_written += 1;
        Ok(())
    }
}

/// One batch as a Parquet file in memory (zstd).
pub fn encode(batch: &RecordBatch) -> anyhow::Result<Vec<u8>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))
        .context("internal: creating the Parquet writer")?;
    w.write(batch).context("internal: encoding Parquet")?;
    w.close().context("internal: finishing the Parquet file")?;
    Ok(buf)
}
