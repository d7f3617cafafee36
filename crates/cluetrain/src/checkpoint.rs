//! Checkpoints: the state of each input partition, aligned with the offset it covers.
//!
//! A checkpoint of partition *p* holds, taken together between two batches: the window state of
//! the brands *p* carries (the input is keyed by brand, so a brand's windows depend on one
//! partition only), *p*'s linkage state, the events of *p* waiting in the reorder buffer, *p*'s
//! watermark, and the next offset of *p* to read. Restoring it and reading *p* from that offset
//! gives the same state as if the process had never stopped: nothing counted twice (every event
//! before the offset is in the state, none after it), nothing lost.
//!
//! The pipeline's side of the protocol (`pipeline`): Parquet is flushed, every changed
//! partition's checkpoint is written, and only then are the covered offsets handed to the
//! consumer to commit. On start and after every rebalance the state is rebuilt from the newest
//! good checkpoint of each assigned partition, and the consumer starts each partition at its
//! checkpoint's offset (not at the committed one: a crash between the checkpoint and the commit
//! leaves the commit behind, and a fallback to an older checkpoint leaves it ahead).
//!
//! **Files.** `{location}/{group}/{topic}/p{partition}/{next_offset:020}-{written_ms:015}.ckpt`,
//! newest first by name; `checkpoint.keep` are kept per partition. One file per partition and
//! checkpoint: object stores put whole objects atomically (the local store writes a temporary
//! file and renames it), so a reader sees a complete file or none. A file that does not verify
//! (truncated, bit rot, another format version) is reported with its path and reason, moved to
//! `quarantine/` beside it (kept for inspection, out of the way of the next restore), and the
//! next older one is tried.
//!
//! **Incremental checkpoints.** Linkage state (a node per message of the last 24 h, up to
//! `linkage.entries_max` per partition) is most of a checkpoint and changes little between two:
//! writing it whole every `checkpoint.interval` held the pipeline task for seconds in steady
//! state (the 30-minute soak: 1,136 s of 1,853 s). So a partition's checkpoint is either
//! *full* (`….ckpt`) or a *delta* (`….delta.ckpt`): linkage as the messages and conversations
//! added, changed or removed since the checkpoint it names as its `base` (the previous one of
//! the same partition, written by the same process), everything else (window state, watermark,
//! buffers, held replies) whole, as they are small or change wholesale. A delta follows the
//! previous write of its partition; after `checkpoint.full_every - 1` deltas, after any start,
//! restore or rebalance, after a failed write's base is unknown, and whenever linkage dropped
//! more than `linkage.entries_max` entries since the base, the next one is full (the first
//! chain of each partition after a start is shorter by a partition-dependent step, so that
//! the partitions' full checkpoints fall in different rounds). Restoring a
//! delta reads its chain back to the full one, applies the deltas in order and takes the rest
//! from the newest; a chain with a missing or damaged link is reported like a corrupt file and
//! the next older checkpoint is tried. Retention keeps the newest `checkpoint.keep`
//! checkpoints and every file they build on.
//!
//! **Format** (version [`FORMAT_VERSION`]): the magic `CLTRCKPT`, the format version (u32 LE),
//! the body length (u64 LE), the SHA-256 of the body, then the body: CBOR of [`Snapshot`].

use std::sync::Arc;

use anyhow::Context;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use aggregate::{EngineSlice, EngineSliceRef};

use crate::enrichment::{EnrichSlice, EnrichSliceRef};
use crate::job::Job;

/// The checkpoint format this build writes. 2 (2026-12-02): window state per spec pane; a
/// version 1 file (state per window) is quarantined like any unreadable one, and the partition
/// starts over from its committed offset without state (README, "Upgrading"). 3 (2026-12-02):
/// incremental checkpoints (a `base` and linkage changes); a version 2 file is read as a full
/// checkpoint (its fields are a subset), and a build that reads only 2 refuses a 3 instead of
/// taking a delta for the whole state. 4 (2026-12-04): a linkage node is a CBOR array and
/// its author a 64-bit key (`enrich::linkage`'s compact nodes); versions 2 and 3 (a map per
/// node, the author's id) still read, and a build that reads only up to 3 refuses a 4 by
/// its version rather than failing on its body. 5 (2026-12-04): a waiting event (reorder
/// buffer, held reply) is a CBOR array, and a delta carries held replies as changes per
/// parent instead of all of them (`enrich::linkage`); version 4 files still read.
pub const FORMAT_VERSION: u32 = 5;
/// The oldest format this build reads.
pub const FORMAT_VERSION_MIN: u32 = 2;
/// File name ending of a full checkpoint, and of an incremental one.
const FULL_SUFFIX: &str = ".ckpt";
const DELTA_SUFFIX: &str = ".delta.ckpt";
/// Longest chain a restore follows (a cycle or a runaway chain is a broken one):
/// `checkpoint.full_every` is at most this.
pub const CHAIN_MAX: usize = 1000;
const MAGIC: &[u8; 8] = b"CLTRCKPT";
const HEADER_BYTES: usize = 8 + 4 + 8 + 32;

/// Why a checkpoint file could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptCheckpoint {
    /// Shorter than its header, or than the length its header gives.
    #[error("truncated: {got} bytes, expected {expected}")]
    Truncated {
        /// Bytes the header promises (or the header's own size).
        expected: u64,
        /// Bytes present.
        got: u64,
    },
    /// Not a cluetrain checkpoint.
    #[error("not a cluetrain checkpoint (bad magic)")]
    BadMagic,
    /// Written by a build with another format.
    #[error("format version {found}, this build reads {FORMAT_VERSION_MIN} to {FORMAT_VERSION}")]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// The body's SHA-256 differs from the header's: the file was damaged.
    #[error("checksum mismatch: the body was damaged")]
    Checksum,
    /// The body verified but does not decode (a bug, or a hand-edited file).
    #[error("body does not decode: {0}")]
    Decode(String),
    /// An incremental checkpoint whose chain back to a full one cannot be read.
    #[error("builds on {base}, which {reason}")]
    BrokenChain {
        /// The file of the chain that is missing or damaged.
        base: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file belongs to another topic or partition than its path says.
    #[error("belongs to {topic} partition {partition}")]
    Misplaced {
        /// Its topic.
        topic: String,
        /// Its partition.
        partition: i32,
    },
}

/// A partition's checkpoint, as written (borrowing the live state).
#[derive(Debug, Serialize)]
pub struct SnapshotRef<'a> {
    topic: &'a str,
    partition: i32,
    next_offset: i64,
    written_at_ms: i64,
    /// The checkpoint (file name, same directory) this one's linkage changes are relative to;
    /// none: a full checkpoint.
    base: Option<&'a str>,
    enrich: EnrichSliceRef<'a>,
    engine: EngineSliceRef<'a>,
}

/// A partition's checkpoint, as read back.
#[derive(Debug, Deserialize)]
pub struct Snapshot {
    /// The input topic.
    pub topic: String,
    /// The input partition.
    pub partition: i32,
    /// The next offset to read: every event before it is in the state, none after it.
    pub next_offset: i64,
    /// When it was written (ms since the epoch).
    pub written_at_ms: i64,
    /// The checkpoint this one builds on (file name in the same directory); none: full.
    pub base: Option<String>,
    enrich: EnrichSlice,
    engine: EngineSlice,
}

impl Snapshot {
    /// Window states in it.
    pub fn windows(&self) -> usize {
        self.engine.windows()
    }
}

/// The checkpoint of `partition` of `topic` at `next_offset`, from the job's state at wall
/// time `now`: incremental on top of `base` (the partition's last checkpoint written, file
/// name) when given and linkage knows its changes since, else full.
pub fn snapshot<'a>(
    job: &'a Job,
    topic: &'a str,
    partition: i32,
    next_offset: i64,
    now: std::time::Instant,
    base: Option<&'a str>,
) -> SnapshotRef<'a> {
    let enrich = job.enrichment.snapshot(partition, now, base.is_some());
    let engine = job.engine.snapshot(enrich.brands());
    SnapshotRef {
        topic,
        partition,
        next_offset,
        written_at_ms: chrono::Utc::now().timestamp_millis(),
        base: base.filter(|_| enrich.is_delta()),
        enrich,
        engine,
    }
}

impl SnapshotRef<'_> {
    /// Whether this is an incremental checkpoint.
    pub fn is_delta(&self) -> bool {
        self.base.is_some()
    }
}

/// Adds a checkpoint's state to the job (after [`Job::reset`]).
pub fn restore(job: &mut Job, s: Snapshot, now: std::time::Instant) {
    job.enrichment.restore(s.partition, s.enrich, now);
    job.engine.restore(s.engine);
}

/// Body bytes per chunk of an [`Encoded`] checkpoint.
const CHUNK_BYTES: usize = 1 << 20;

/// A checkpoint in its file form, as chunks of at most [`CHUNK_BYTES`]: the store takes
/// them as one object. A single growing buffer held, while it doubled, the old and the new
/// copy: 52 MB at the heap peak of the 1,000,000-event bench run (heaptrack, 2026-12-04),
/// for a checkpoint of about a third of that.
#[derive(Debug)]
pub struct Encoded {
    chunks: Vec<bytes::Bytes>,
}

impl Encoded {
    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(bytes::Bytes::len).sum()
    }

    /// Whether it is empty (never: it has a header).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file as one buffer (tests, tools).
    pub fn to_vec(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

/// Collects the encoded body in chunks and hashes each chunk once it is full.
///
/// ciborium writes a few bytes at a time; hashing every write copied each piece into the
/// hasher's block buffer first (a profile of the bench, docs/performance-log.md, put
/// `memmove` under SHA-256's `update` at 3.5 % of the process's samples). A full chunk goes
/// to the hasher at once.
struct ChunkWriter {
    done: Vec<bytes::Bytes>,
    current: Vec<u8>,
    digest: Sha256,
    len: u64,
}

impl ChunkWriter {
    fn new(done: Vec<bytes::Bytes>) -> Self {
        ChunkWriter {
            done,
            current: Vec::with_capacity(CHUNK_BYTES),
            digest: Sha256::new(),
            len: 0,
        }
    }

    /// The full chunks, the last partial one, the body's length and its SHA-256.
    fn finish(mut self) -> (Vec<bytes::Bytes>, Vec<u8>, u64, [u8; 32]) {
        self.digest.update(&self.current);
        (
            self.done,
            self.current,
            self.len,
            self.digest.finalize().into(),
        )
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.len += buf.len() as u64;
        let mut rest = buf;
        while !rest.is_empty() {
            let room = CHUNK_BYTES - self.current.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.current.extend_from_slice(now);
            rest = later;
            if self.current.len() == CHUNK_BYTES {
                let full = std::mem::replace(&mut self.current, Vec::with_capacity(CHUNK_BYTES));
                self.digest.update(&full);
                self.done.push(full.into());
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The file form of a checkpoint: header, checksum, CBOR body.
pub fn encode(s: &SnapshotRef<'_>) -> anyhow::Result<Encoded> {
    // The header's place: it is known (length, digest) only once the body is written.
    let mut w = ChunkWriter::new(vec![bytes::Bytes::new()]);
    ciborium::into_writer(s, &mut w).context("internal: encoding a checkpoint")?;
    let (mut chunks, mut current, len, digest) = w.finish();
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(&digest);
    chunks[0] = header.into();
    if !current.is_empty() {
        current.shrink_to_fit();
        chunks.push(current.into());
    }
    Ok(Encoded { chunks })
}

/// Snapshots and encodes the checkpoints of `group` (partition, next offset), each on top of
/// its `bases` entry, the first on this thread and the others on scoped threads. Returns them
/// in `group`'s order, with whether each is incremental.
fn encode_partitions(
    job: &Job,
    topic: &str,
    group: &[(i32, i64)],
    bases: &[Option<(String, usize)>],
    now: std::time::Instant,
) -> Vec<anyhow::Result<(Encoded, bool)>> {
    crate::scoped::on_threads(
        group.iter().zip(bases).collect(),
        |(&(partition, next_offset), base)| {
            let base = base.as_ref().map(|(name, _)| name.as_str());
            let s = snapshot(job, topic, partition, next_offset, now, base);
            Ok((encode(&s)?, s.is_delta()))
        },
    )
}

/// Reads a checkpoint file back, verifying its header and checksum.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, CorruptCheckpoint> {
    let got = bytes.len() as u64;
    if bytes.len() < HEADER_BYTES {
        return Err(CorruptCheckpoint::Truncated {
            expected: HEADER_BYTES as u64,
            got,
        });
    }
    let (magic, rest) = bytes.split_at(8);
    if magic != MAGIC {
        return Err(CorruptCheckpoint::BadMagic);
    }
    let (version, rest) = rest.split_at(4);
    let version = u32::from_le_bytes(
        version
            .try_into()
            .map_err(|_| CorruptCheckpoint::BadMagic)?,
    );
    if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
        return Err(CorruptCheckpoint::Version { found: version });
    }
    let (len, rest) = rest.split_at(8);
    let len = u64::from_le_bytes(len.try_into().map_err(|_| CorruptCheckpoint::BadMagic)?);
    let (sum, body) = rest.split_at(32);
    if body.len() as u64 != len {
        return Err(CorruptCheckpoint::Truncated {
            expected: HEADER_BYTES as u64 + len,
            got,
        });
    }
    if Sha256::digest(body).as_slice() != sum {
        return Err(CorruptCheckpoint::Checksum);
    }
    let s: Snapshot =
        ciborium::from_reader(body).map_err(|e| CorruptCheckpoint::Decode(e.to_string()))?;
    if s.base.is_some() != s.enrich.is_delta() {
        return Err(CorruptCheckpoint::Decode(
            "a base without linkage changes, or changes without a base".into(),
        ));
    }
    Ok(s)
}

/// A checkpoint that was found and could not be used.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// Its path in the store.
    pub path: String,
    /// Why.
    pub reason: CorruptCheckpoint,
}

/// What restoring a partition found.
#[derive(Debug)]
pub struct Found {
    /// The newest good checkpoint, if any, with its path (an incremental one composed with
    /// the chain it builds on).
    pub snapshot: Option<(Snapshot, String)>,
    /// Files read for it: 1 for a full checkpoint, 1 + its chain for an incremental one.
    pub files: usize,
    /// Newer checkpoints that did not verify (moved to quarantine), newest first.
    pub rejected: Vec<Rejected>,
}

/// Where the checkpoints of one consumer group and input topic live.
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    root: StorePath,
    location: String,
    topic: String,
    keep: usize,
    full_every: usize,
    /// Partitions encoded at once ([`CheckpointStore::with_threads`]).
    threads: usize,
    /// Per partition: the last checkpoint this process wrote (file name) and how many deltas
    /// lead to it since the last full one.
    chains: std::collections::HashMap<i32, (String, usize)>,
}

/// One partition's checkpoint as [`CheckpointStore::checkpoint`] wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Its path in the store.
    pub path: String,
    /// Its size.
    pub bytes: usize,
    /// Whether it is incremental.
    pub delta: bool,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointStore({}/{})", self.location, self.root)
    }
}

impl CheckpointStore {
    /// Opens `location` (`checkpoint.location`) for `group` and `topic`, keeping `keep`
    /// checkpoints per partition, one in `full_every` of them full.
    pub fn open(
        location: &str,
        group: &str,
        topic: &str,
        keep: usize,
        full_every: usize,
    ) -> anyhow::Result<Self> {
        let (store, prefix) =
            crate::outputs::parquet::open_store_for("checkpoint.location", location)?;
        Ok(CheckpointStore {
            store,
            root: prefix.clone().join(group).join(topic),
            location: location.to_string(),
            topic: topic.to_string(),
            keep: keep.max(1),
            full_every: full_every.clamp(1, CHAIN_MAX),
            threads: 1,
            chains: std::collections::HashMap::new(),
        })
    }

    /// Encodes up to `threads` partitions' checkpoints at once (`checkpoint.threads`,
    /// resolved; default 1). Each holds its encoded form until it is written.
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The checkpoint this partition's next one builds on, and how many deltas lead to it:
    /// None when the next one is full.
    fn base_of(&self, partition: i32) -> Option<(String, usize)> {
        self.chains
            .get(&partition)
            .filter(|(_, deltas)| deltas + 1 < self.full_every)
            .map(|(name, deltas)| (name.clone(), *deltas))
    }

    /// Writes the checkpoints of `partitions` (each with its next offset) like
    /// [`CheckpointStore::checkpoint`], encoding up to [`CheckpointStore::with_threads`] of
    /// them at once on scoped threads, then writing them in order. Returns those written, and
    /// the first error: the partitions after it are not written.
    pub async fn checkpoint_partitions(
        &mut self,
        job: &mut Job,
        partitions: &[(i32, i64)],
        now: std::time::Instant,
    ) -> (Vec<(i32, i64, Written)>, anyhow::Result<()>) {
        let mut written = Vec::with_capacity(partitions.len());
        for group in partitions.chunks(self.threads) {
            let bases: Vec<Option<(String, usize)>> =
                group.iter().map(|(p, _)| self.base_of(*p)).collect();
            let encoded = encode_partitions(job, &self.topic, group, &bases, now);
            for ((&(p, next), base), e) in group.iter().zip(bases).zip(encoded) {
                let w = match e {
                    Ok((bytes, delta)) => {
                        self.store_encoded(job, p, next, base, bytes, delta).await
                    }
                    Err(e) => Err(e),
                };
                match w {
                    Ok(w) => written.push((p, next, w)),
                    Err(e) => return (written, Err(e)),
                }
            }
        }
        (written, Ok(()))
    }

    /// Writes `partition`'s checkpoint at `next_offset` from `job` (incremental when it can
    /// be, see the module docs), marks the job's state checkpointed, and applies retention.
    /// On an error nothing is marked: the next checkpoint holds these changes too.
    pub async fn checkpoint(
        &mut self,
        job: &mut Job,
        partition: i32,
        next_offset: i64,
        now: std::time::Instant,
    ) -> anyhow::Result<Written> {
        let (mut written, result) = self
            .checkpoint_partitions(job, &[(partition, next_offset)], now)
            .await;
        result?;
        written
            .pop()
            .map(|(_, _, w)| w)
            .context("internal: a checkpoint round of one partition wrote nothing")
    }

    /// Writes an encoded checkpoint of `partition`, marks the job's state checkpointed,
    /// extends or starts the partition's chain and applies retention.
    async fn store_encoded(
        &mut self,
        job: &mut Job,
        partition: i32,
        next_offset: i64,
        base: Option<(String, usize)>,
        bytes: Encoded,
        delta: bool,
    ) -> anyhow::Result<Written> {
        let size = bytes.len();
        let path = self
            .write_file(
                partition,
                next_offset,
                bytes.chunks.into_iter().collect(),
                delta,
            )
            .await?;
        job.enrichment.checkpointed(partition);
        let deltas = match (delta, base) {
            (true, Some((_, d))) => d + 1,
            // The first chain of a partition since the start (or a restore) is shorter by a
            // step that depends on the partition, so that the full checkpoints of different
            // partitions fall in different rounds instead of all in one.
            _ if !self.chains.contains_key(&partition) => {
                usize::try_from(partition.unsigned_abs()).unwrap_or(0) * 11 % self.full_every
            }
            _ => 0,
        };
        if let Some(name) = path.filename() {
            self.chains.insert(partition, (name.to_string(), deltas));
        }
        self.retain(partition).await?;
        Ok(Written {
            path: path.to_string(),
            bytes: size,
            delta,
        })
    }

    /// Forgets which checkpoints this process wrote last: the next of every partition is
    /// full (after a restore or rebalance the state is no longer what they followed).
    pub fn forget_chains(&mut self) {
        self.chains.clear();
    }

    fn dir(&self, partition: i32) -> StorePath {
        self.root.clone().join(format!("p{partition}"))
    }

    /// Writes an encoded checkpoint of `partition` (a full one unless `delta`); returns its
    /// path.
    async fn write_file(
        &self,
        partition: i32,
        next_offset: i64,
        bytes: object_store::PutPayload,
        delta: bool,
    ) -> anyhow::Result<StorePath> {
        let name = format!(
            "{next_offset:020}-{:015}{}",
            chrono::Utc::now().timestamp_millis().max(0),
            if delta { DELTA_SUFFIX } else { FULL_SUFFIX }
        );
        let path = self.dir(partition).join(name);
        self.store
            .put(&path, bytes)
            .await
            .with_context(|| format!("writing checkpoint {path} under {}", self.location))?;
        Ok(path)
    }

    /// Removes the checkpoints of `partition` beyond the newest `checkpoint.keep`, except
    /// those the kept ones build on: back to the full checkpoint under the oldest kept.
    async fn retain(&self, partition: i32) -> anyhow::Result<()> {
        let names = self.list(partition).await?;
        let Some(mut oldest) = self.keep.min(names.len()).checked_sub(1) else {
            return Ok(());
        };
        while oldest + 1 < names.len() && names[oldest].as_ref().ends_with(DELTA_SUFFIX) {
            oldest += 1;
        }
        for old in names.iter().skip(oldest + 1) {
            // Best effort: a leftover old checkpoint is harmless.
            if let Err(e) = self.store.delete(old).await {
                tracing::warn!(path = %old, error = %e, "could not delete an old checkpoint");
            }
        }
        Ok(())
    }

    /// Writes an encoded full checkpoint of `partition` as is (tests, tools), then applies
    /// retention. Returns its path.
    pub async fn write(
        &self,
        partition: i32,
        next_offset: i64,
        bytes: Vec<u8>,
    ) -> anyhow::Result<String> {
        let path = self
            .write_file(partition, next_offset, bytes.into(), false)
            .await?;
        self.retain(partition).await?;
        Ok(path.to_string())
    }

    /// The checkpoints of `partition`, newest first.
    async fn list(&self, partition: i32) -> anyhow::Result<Vec<StorePath>> {
        let dir = self.dir(partition);
        let mut names: Vec<StorePath> = self
            .store
            .list(Some(&dir))
            .try_filter_map(|m| {
                let keep = m.location.parts().count() == dir.parts().count() + 1
                    && m.location.as_ref().ends_with(".ckpt");
                futures::future::ready(Ok(keep.then_some(m.location)))
            })
            .try_collect()
            .await
            .with_context(|| format!("listing checkpoints {dir} under {}", self.location))?;
        names.sort_by(|a, b| b.as_ref().cmp(a.as_ref()));
        Ok(names)
    }

    /// The newest checkpoint of `partition` that verifies. Those newer that do not are
    /// reported and moved to `quarantine/`. An error means the store could not be read (the
    /// caller must not go on as if there were no checkpoint).
    pub async fn latest(&self, partition: i32) -> anyhow::Result<Found> {
        let mut rejected = Vec::new();
        for path in self.list(partition).await? {
            let Some(found) = self.read(&path, partition).await? else {
                // Removed since the listing (another instance's retention): try the next.
                continue;
            };
            let found = match found {
                Ok(s) if s.base.is_some() => self.compose(s, partition).await?,
                other => other.map(|s| (s, 1)),
            };
            match found {
                Ok((s, files)) => {
                    return Ok(Found {
                        snapshot: Some((s, path.to_string())),
                        files,
                        rejected,
                    });
                }
                Err(reason) => {
                    self.quarantine(&path).await;
                    rejected.push(Rejected {
                        path: path.to_string(),
                        reason,
                    });
                }
            }
        }
        Ok(Found {
            snapshot: None,
            files: 0,
            rejected,
        })
    }

    /// Reads and verifies one checkpoint file: `None` when it is not there (any more).
    async fn read(
        &self,
        path: &StorePath,
        partition: i32,
    ) -> anyhow::Result<Option<Result<Snapshot, CorruptCheckpoint>>> {
        let bytes = match self.store.get(path).await {
            Ok(r) => r
                .bytes()
                .await
                .with_context(|| format!("reading checkpoint {path}"))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("reading checkpoint {path} under {}", self.location)));
            }
        };
        Ok(Some(decode(&bytes).and_then(|s| {
            if s.topic != self.topic || s.partition != partition {
                Err(CorruptCheckpoint::Misplaced {
                    topic: s.topic.clone(),
                    partition: s.partition,
                })
            } else {
                Ok(s)
            }
        })))
    }

    /// An incremental checkpoint composed with the chain it builds on, and the files read.
    async fn compose(
        &self,
        mut s: Snapshot,
        partition: i32,
    ) -> anyhow::Result<Result<(Snapshot, usize), CorruptCheckpoint>> {
        let dir = self.dir(partition);
        let mut older = Vec::new();
        let mut next = s.base.clone();
        while let Some(name) = next {
            let path = dir.clone().join(name.as_str());
            let broken = |reason: String| CorruptCheckpoint::BrokenChain {
                base: path.to_string(),
                reason,
            };
            if older.len() >= CHAIN_MAX {
                return Ok(Err(broken(format!(
                    "is more than {CHAIN_MAX} checkpoints away from a full one"
                ))));
            }
            let b = match self.read(&path, partition).await? {
                None => return Ok(Err(broken("is missing".into()))),
                Some(Err(e)) => return Ok(Err(broken(format!("is unreadable: {e}")))),
                Some(Ok(b)) => b,
            };
            next = b.base.clone();
            older.push(b.enrich);
        }
        let files = 1 + older.len();
        older.reverse();
        if let Err(e) = s.enrich.compose(older) {
            return Ok(Err(CorruptCheckpoint::BrokenChain {
                base: s.base.clone().unwrap_or_default(),
                reason: e,
            }));
        }
        s.base = None;
        Ok(Ok((s, files)))
    }

    async fn quarantine(&self, path: &StorePath) {
        let Some(name) = path.filename() else { return };
        let mut parts: Vec<_> = path.parts().collect();
        parts.pop();
        let to = StorePath::from_iter(parts).join("quarantine").join(name);
        if let Err(e) = self.store.rename(path, &to).await {
            tracing::warn!(path = %path, error = %e, "could not move a corrupt checkpoint to quarantine");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> model::config::Config {
        let mut c = model::config::Config::default();
        c.brands.push(model::config::BrandConfig {
            name: "acme".into(),
            accounts: vec!["acme".into()],
            ..Default::default()
        });
        c
    }

    fn encoded(job: &Job, offset: i64) -> Vec<u8> {
        encode(&snapshot(
            job,
            "in",
            0,
            offset,
            std::time::Instant::now(),
            None,
        ))
        .map(|e| e.to_vec())
        .unwrap_or_default()
    }

    /// Generated traffic decoded into `batches` batches of partition 0, with the config of
    /// its brands.
    fn traffic(batches: usize) -> (model::config::Config, Vec<arrow_array::RecordBatch>) {
        use crate::generate::{Generator, GeneratorOptions};
        let opts = GeneratorOptions {
            seed: 3,
            start_micros: 1_767_600_000_000_000,
            ..GeneratorOptions::default()
        };
        let config = model::config::Config {
            brands: Generator::new(opts.clone()).brand_configs(),
            ..model::config::Config::default()
        };
        let decoder = ingest::Decoder::new(ingest::DecodeLimits::from_config(&config.ingest));
        let now = chrono::Utc::now().timestamp_micros();
        let mut out = Vec::new();
        let messages: Vec<_> = Generator::new(opts).take(batches * 500).collect();
        for (c, chunk) in messages.chunks(500).enumerate() {
            let mut b = model::EventBatchBuilder::with_capacity(chunk.len());
            for (i, m) in chunk.iter().enumerate() {
                // Poison messages are rejected: not this test's subject.
                let _ = decoder.decode_into(Some(&m.payload), now, &mut b, 0, (c * 500 + i) as i64);
            }
            out.push(b.finish().unwrap_or_else(|e| panic!("{e}")));
        }
        (config, out)
    }

    /// Generated traffic split by brand over partitions 0 and 1 (as a topic keyed by brand
    /// is), each partition's events decoded into batches of 250, with the config of its
    /// brands.
    fn two_partitions() -> (model::config::Config, [Vec<arrow_array::RecordBatch>; 2]) {
        use crate::generate::{Generator, GeneratorOptions};
        let opts = GeneratorOptions {
            seed: 5,
            start_micros: 1_767_600_000_000_000,
            ..GeneratorOptions::default()
        };
        let mut config = model::config::Config {
            brands: Generator::new(opts.clone()).brand_configs(),
            ..model::config::Config::default()
        };
        // The input spans 5 minutes (20 events/s): a lateness well under that, so that
        // judging against the wrong watermark shows.
        config.windows.allowed_lateness = std::time::Duration::from_secs(20);
        let decoder = ingest::Decoder::new(ingest::DecodeLimits::from_config(&config.ingest));
        let now = chrono::Utc::now().timestamp_micros();
        let mut split: [Vec<_>; 2] = [Vec::new(), Vec::new()];
        for m in Generator::new(opts).take(6_000) {
            let p = m.key.bytes().map(usize::from).sum::<usize>() % 2;
            split[p].push(m);
        }
        let batches = [0, 1].map(|p: i32| {
            split[p as usize]
                .chunks(250)
                .enumerate()
                .map(|(c, chunk)| {
                    let mut b = model::EventBatchBuilder::with_capacity(chunk.len());
                    for (i, m) in chunk.iter().enumerate() {
                        let offset = (c * 250 + i) as i64;
                        let _ = decoder.decode_into(Some(&m.payload), now, &mut b, p, offset);
                    }
                    b.finish().unwrap_or_else(|e| panic!("{e}"))
                })
                .collect::<Vec<_>>()
        });
        (config, batches)
    }

    /// Per window key, the figures of its final record (emission details left out).
    fn finals(records: &[model::WindowRecord]) -> std::collections::BTreeMap<String, String> {
        records
            .iter()
            .filter(|r| r.is_final)
            .map(|r| {
                (
                    format!("{:?}", r.key()),
                    format!(
                        "inbound={} responses={} answered={} broadcasts={} frt={:?} depts={:?}",
                        r.inbound,
                        r.responses,
                        r.answered,
                        r.broadcasts,
                        r.first_response_seconds,
                        r.departments
                    ),
                )
            })
            .collect()
    }

    #[test]
    fn a_body_larger_than_a_chunk_is_split_and_hashed_whole() {
        use std::io::Write;
        let body: Vec<u8> = (0..CHUNK_BYTES * 5 / 2)
            .map(|i| u8::try_from(i * 7 % 251).unwrap_or(0))
            .collect();
        let mut w = ChunkWriter::new(Vec::new());
        // Pieces of odd sizes, some across a chunk's end.
        for piece in body.chunks(CHUNK_BYTES / 3 + 17) {
            w.write_all(piece).unwrap_or_else(|e| panic!("{e}"));
        }
        let (done, current, len, digest) = w.finish();
        assert_eq!(done.len(), 2);
        assert!(done.iter().all(|c| c.len() == CHUNK_BYTES));
        let mut joined = done.concat();
        joined.extend_from_slice(&current);
        assert_eq!(joined, body);
        assert_eq!(len, body.len() as u64);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&body)));
    }

    fn round_trip(job: &Job, partition: i32, offset: i64) -> Snapshot {
        let now = std::time::Instant::now();
        let bytes = encode(&snapshot(job, "in", partition, offset, now, None))
            .unwrap_or_else(|e| panic!("{e:#}"))
            .to_vec();
        decode(&bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A takeover as in the fault test that found it: one instance owned partition 0 and an
    /// assigned partition that never delivers, which held its watermark back all along (its
    /// checkpoint has none); another owned partition 1 alone and got far ahead. When the
    /// second takes both over, partition 0's backlog must be judged against partition 0's
    /// past, not against partition 1's watermark (before the fix its events were late and
    /// its windows' facts were dropped as after-final: 4,056 of 250,380 inbound missing).
    #[tokio::test]
    async fn a_partition_taken_over_from_an_instance_held_back_loses_nothing() {
        let (config, [p0, p1]) = two_partitions();
        assert!(p0.len() >= 4 && p1.len() >= 4, "{} {}", p0.len(), p1.len());
        let job = || Job::new(&config).unwrap_or_else(|e| panic!("{e:#}"));
        let now = std::time::Instant::now();
        let wall = chrono::Utc::now();

        let mut reference = job();
        reference.enrichment.assignment(&[0, 1], &[], &[], now);
        let mut want = Vec::new();
        for (a, b) in p0.iter().zip(&p1) {
            for batch in [a, b] {
                let step = reference.process(batch, now, wall).await;
                want.extend(step.unwrap_or_else(|e| panic!("{e:#}")).records);
            }
        }
        for batch in p0.iter().skip(p1.len()).chain(p1.iter().skip(p0.len())) {
            let step = reference.process(batch, now, wall).await;
            want.extend(step.unwrap_or_else(|e| panic!("{e:#}")).records);
        }
        want.extend(
            reference
                .finish(wall)
                .await
                .unwrap_or_else(|e| panic!("{e:#}"))
                .0,
        );
        let want = finals(&want);
        assert!(want.len() > 10, "{want:?}");

        // The victim: partition 0's first half, partition 7 assigned and silent.
        let half = p0.len() / 2;
        let mut victim = job();
        victim.enrichment.assignment(&[0, 7], &[], &[], now);
        for batch in &p0[..half] {
            let step = victim.process(batch, now, wall).await;
            let step = step.unwrap_or_else(|e| panic!("{e:#}"));
            assert!(step.records.iter().all(|r| !r.is_final));
        }
        assert_eq!(victim.enrichment.watermark(), None, "held back all along");

        // The survivor: partition 1 alone, to its end; then both, restored.
        let mut survivor = job();
        survivor.enrichment.assignment(&[1], &[], &[], now);
        let mut got = Vec::new();
        for batch in &p1 {
            let step = survivor.process(batch, now, wall).await;
            got.extend(step.unwrap_or_else(|e| panic!("{e:#}")).records);
        }
        assert!(survivor.enrichment.watermark().is_some());
        // Both orders of restore: the watermark must not depend on which comes first.
        for first_p0 in [true, false] {
            let mut s = job();
            let mut got = got.clone();
            // (A fresh job stands for `survivor` after its reset: the same state.)
            let p0_ckpt = round_trip(&victim, 0, (half * 250) as i64);
            let p1_ckpt = round_trip(&survivor, 1, (p1.len() * 250) as i64);
            let (a, b) = if first_p0 {
                (p0_ckpt, p1_ckpt)
            } else {
                (p1_ckpt, p0_ckpt)
            };
            s.reset();
            restore(&mut s, a, now);
            restore(&mut s, b, now);
            s.enrichment.assignment(&[0, 1], &[], &[], now);
            for batch in &p0[half..] {
                let step = s.process(batch, now, wall).await;
                got.extend(step.unwrap_or_else(|e| panic!("{e:#}")).records);
            }
            got.extend(s.finish(wall).await.unwrap_or_else(|e| panic!("{e:#}")).0);
            assert_eq!(
                s.enrichment.stats().late,
                0,
                "restored p0 first: {first_p0}"
            );
            let got = finals(&got);
            let diff: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k}\n  want {v}\n  got  {:?}", got.get(k)))
                .collect();
            assert!(
                diff.is_empty() && got.len() == want.len(),
                "restored p0 first: {first_p0}; {} of {} windows differ:\n{}",
                diff.len(),
                want.len(),
                diff.join("\n")
            );
        }
    }

    /// What a restore must give back of linkage: entries, counters and the open inbound
    /// messages (with platform and department, from the remapped tags), sorted.
    fn linkage_view(job: &Job) -> (usize, String, Vec<String>) {
        let (stats, entries) = job.enrichment.link_stats();
        let mut open: Vec<_> = job
            .enrichment
            .open_inbound(usize::MAX)
            .0
            .iter()
            .map(|o| format!("{o:?}"))
            .collect();
        open.sort();
        (entries, format!("{stats:?}"), open)
    }

    #[tokio::test]
    async fn incremental_checkpoints_restore_through_their_chain_and_retention_keeps_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let loc = dir.path().to_string_lossy().to_string();
        let Ok(mut store) = CheckpointStore::open(&loc, "g", "in", 2, 4) else {
            panic!("open")
        };
        let (config, batches) = traffic(7);
        let Ok(mut job) = Job::new(&config) else {
            panic!("job")
        };
        let now = std::time::Instant::now();
        job.enrichment.assignment(&[0], &[], &[], now);
        let wall = chrono::Utc::now();
        let mut kinds = Vec::new();
        let mut sizes = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            if let Err(e) = job.process(b, now, wall).await {
                panic!("{e:#}")
            }
            let w = store
                .checkpoint(&mut job, 0, (i as i64 + 1) * 500, now)
                .await
                .unwrap_or_else(|e| panic!("{e:#}"));
            kinds.push(w.delta);
            sizes.push(w.bytes);
        }
        // One in four full; the deltas are smaller than the full checkpoint before them.
        assert_eq!(kinds, [false, true, true, true, false, true, true]);
        assert!(sizes[5] < sizes[4] && sizes[3] < sizes[4], "{sizes:?}");
        let live = linkage_view(&job);
        assert!(
            live.0 > 1000 && !live.2.is_empty(),
            "state to restore: {live:?}"
        );

        // Retention: the newest two (both deltas) and the full one they build on.
        let Ok(names) = store.list(0).await else {
            panic!("list")
        };
        let names: Vec<String> = names
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names[0].ends_with(DELTA_SUFFIX) && names[1].ends_with(DELTA_SUFFIX));
        assert!(!names[2].ends_with(DELTA_SUFFIX), "{names:?}");

        // The newest restores through the chain: full + two deltas, the same linkage state.
        let found = store.latest(0).await.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(found.files, 3);
        let (s, _) = found.snapshot.unwrap_or_else(|| panic!("no checkpoint"));
        assert_eq!(s.next_offset, 3500);
        let Ok(mut restored) = Job::new(&config) else {
            panic!("job")
        };
        restore(&mut restored, s, now);
        assert_eq!(linkage_view(&restored), live);

        // A missing link: the newest delta is set aside, the one before it (whose chain is
        // whole) is used.
        let middle = dir.path().join("g/in/p0").join(&names[1]);
        if let Err(e) = std::fs::remove_file(&middle) {
            panic!("{e}")
        }
        let found = store.latest(0).await.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(found.rejected.len(), 1);
        assert!(
            matches!(&found.rejected[0].reason, CorruptCheckpoint::BrokenChain { base, .. } if base.ends_with(&names[1])),
            "{:?}",
            found.rejected
        );
        assert_eq!(found.snapshot.map(|(s, _)| s.next_offset), Some(2500));
    }

    /// A rebalance restores partition 1 from its checkpoint while partition 0, also assigned,
    /// has none and is read again from its beginning. Until partition 0's first event, time
    /// alone must not move the watermark to partition 1's: its events would all be late.
    #[tokio::test]
    async fn time_alone_does_not_move_the_watermark_past_a_partition_still_to_be_read() {
        let (config, [p0, p1]) = two_partitions();
        let now = std::time::Instant::now();
        let wall = chrono::Utc::now();
        let mut before = Job::new(&config).unwrap_or_else(|e| panic!("{e:#}"));
        before.enrichment.assignment(&[1], &[], &[], now);
        for b in &p1 {
            if let Err(e) = before.process(b, now, wall).await {
                panic!("{e:#}")
            }
        }
        assert!(
            before.enrichment.watermark().is_some(),
            "partition 1 has a watermark"
        );
        let s = round_trip(&before, 1, 3_000);

        let mut job = Job::new(&config).unwrap_or_else(|e| panic!("{e:#}"));
        job.reset_to(&[0, 1], now);
        job.start_unjudged();
        restore(&mut job, s, now);
        // The pipeline's tick looks every second while no batch arrives; restores can take
        // that long.
        let later = now + std::time::Duration::from_secs(5);
        assert!(
            !job.enrichment.watermark_due(later),
            "time alone moves the watermark past partition 0, which is still to be read"
        );
        let mut late = 0;
        for b in &p0 {
            let step = job.process(b, later, wall).await;
            late += step.unwrap_or_else(|e| panic!("{e:#}")).enriched.late.len();
        }
        assert_eq!(
            late, 0,
            "partition 0's events judged against partition 1's watermark"
        );
    }

    /// Two partitions checkpointed together, full and incremental in turn: encoded on two
    /// threads, they restore to the state they were taken of, as when encoded one by one.
    #[tokio::test]
    async fn partitions_encoded_on_threads_restore_as_when_encoded_one_by_one() {
        let (config, [p0, p1]) = two_partitions();
        let now = std::time::Instant::now();
        let wall = chrono::Utc::now();
        let mut views = Vec::new();
        for threads in [1, 2] {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let loc = dir.path().to_string_lossy().to_string();
            let mut store = CheckpointStore::open(&loc, "g", "in", 5, 3)
                .unwrap_or_else(|e| panic!("{e:#}"))
                .with_threads(threads);
            let mut job = Job::new(&config).unwrap_or_else(|e| panic!("{e:#}"));
            job.enrichment.assignment(&[0, 1], &[], &[], now);
            let mut kinds = Vec::new();
            for (i, (a, b)) in p0.iter().zip(&p1).enumerate() {
                for batch in [a, b] {
                    if let Err(e) = job.process(batch, now, wall).await {
                        panic!("{e:#}")
                    }
                }
                let next = (i as i64 + 1) * 250;
                let (written, result) = store
                    .checkpoint_partitions(&mut job, &[(0, next), (1, next)], now)
                    .await;
                result.unwrap_or_else(|e| panic!("{e:#}"));
                let order: Vec<i32> = written.iter().map(|(p, _, _)| *p).collect();
                assert_eq!(order, [0, 1]);
                kinds.push(written.iter().map(|(_, _, w)| w.delta).collect::<Vec<_>>());
            }
            assert!(kinds.len() >= 6, "{kinds:?}");
            assert!(kinds.iter().any(|k| k == &[true, true]), "{kinds:?}");
            let live = linkage_view(&job);
            assert!(live.0 > 1000, "state to restore: {live:?}");
            let mut restored = Job::new(&config).unwrap_or_else(|e| panic!("{e:#}"));
            for p in [0, 1] {
                let found = store.latest(p).await.unwrap_or_else(|e| panic!("{e:#}"));
                let (s, _) = found
                    .snapshot
                    .unwrap_or_else(|| panic!("no checkpoint of {p}"));
                restore(&mut restored, s, now);
            }
            assert_eq!(linkage_view(&restored), live, "{threads} threads");
            views.push((kinds, live));
        }
        assert_eq!(views[0], views[1]);
    }

    #[test]
    fn a_checkpoint_reads_back_and_damage_is_detected() {
        let Ok(job) = Job::new(&config()) else {
            panic!("job")
        };
        let bytes = encoded(&job, 42);
        let Ok(s) = decode(&bytes) else {
            panic!("decode")
        };
        assert_eq!(
            (s.topic.as_str(), s.partition, s.next_offset),
            ("in", 0, 42)
        );

        let mut flipped = bytes.clone();
        if let Some(b) = flipped.last_mut() {
            *b ^= 0x40;
        }
        assert_eq!(decode(&flipped).err(), Some(CorruptCheckpoint::Checksum));
        let cut = &bytes[..bytes.len() - 3];
        assert!(matches!(
            decode(cut),
            Err(CorruptCheckpoint::Truncated { .. })
        ));
        assert!(matches!(
            decode(&bytes[..10]),
            Err(CorruptCheckpoint::Truncated { .. })
        ));
        assert_eq!(
            decode("not a checkpoint at all, just text. ".repeat(4).as_bytes()).err(),
            Some(CorruptCheckpoint::BadMagic)
        );
        // Another build's format (version 1 kept window state per window, not per pane).
        for other in [1, FORMAT_VERSION + 1] {
            let mut v = bytes.clone();
            v[8..12].copy_from_slice(&other.to_le_bytes());
            assert_eq!(
                decode(&v).err(),
                Some(CorruptCheckpoint::Version { found: other })
            );
        }
    }

    #[tokio::test]
    async fn the_newest_good_checkpoint_wins_and_a_corrupt_one_is_quarantined() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let loc = dir.path().to_string_lossy().to_string();
        let Ok(store) = CheckpointStore::open(&loc, "g", "in", 3, 30) else {
            panic!("open")
        };
        let Ok(job) = Job::new(&config()) else {
            panic!("job")
        };
        for off in [10, 20, 30, 40] {
            store
                .write(0, off, encoded(&job, off))
                .await
                .unwrap_or_default();
        }
        // Retention: the oldest of four is gone.
        let Ok(found) = store.latest(0).await else {
            panic!("latest")
        };
        let (s, newest) = found.snapshot.unwrap_or_else(|| panic!("no checkpoint"));
        assert_eq!(s.next_offset, 40);
        assert!(found.rejected.is_empty());
        // Damage the newest: truncate it in place.
        let file = dir.path().join(newest.trim_start_matches('/'));
        let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap_or_else(|e| panic!("{e}"));
        f.set_len(len / 2).unwrap_or_else(|e| panic!("{e}"));
        let Ok(found) = store.latest(0).await else {
            panic!("latest")
        };
        let (s, _) = found.snapshot.unwrap_or_else(|| panic!("no fallback"));
        assert_eq!(s.next_offset, 30, "falls back to the previous good one");
        assert_eq!(found.rejected.len(), 1);
        assert!(matches!(
            found.rejected[0].reason,
            CorruptCheckpoint::Truncated { .. }
        ));
        assert!(!file.exists(), "the corrupt file is moved out of the way");
        assert!(
            file.parent()
                .map(|p| p.join("quarantine"))
                .is_some_and(|q| q.exists())
        );
        // Another partition's file in this partition's place is refused.
        let other = encode(&snapshot(
            &job,
            "in",
            1,
            50,
            std::time::Instant::now(),
            None,
        ))
        .map(|e| e.to_vec())
        .unwrap_or_default();
        store.write(0, 50, other).await.unwrap_or_default();
        let Ok(found) = store.latest(0).await else {
            panic!("latest")
        };
        assert_eq!(found.snapshot.map(|(s, _)| s.next_offset), Some(30));
        assert!(matches!(
            found.rejected[0].reason,
            CorruptCheckpoint::Misplaced { partition: 1, .. }
        ));
        // No checkpoint at all.
        let Ok(found) = store.latest(7).await else {
            panic!("latest")
        };
        assert!(found.snapshot.is_none() && found.rejected.is_empty());
    }
}
