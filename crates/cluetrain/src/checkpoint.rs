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

/// The checkpoint format this build writes and reads. 2 (2026-12-02): window state per spec
/// pane; a version 1 file (state per window) is quarantined like any unreadable one, and the
/// partition starts over from its committed offset without state (README, "Upgrading").
pub const FORMAT_VERSION: u32 = 2;
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
    #[error("format version {found}, this build reads {FORMAT_VERSION}")]
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
/// time `now`.
pub fn snapshot<'a>(
    job: &'a Job,
    topic: &'a str,
    partition: i32,
    next_offset: i64,
    now: std::time::Instant,
) -> SnapshotRef<'a> {
    let enrich = job.enrichment.snapshot(partition, now);
    let engine = job.engine.snapshot(enrich.brands());
    SnapshotRef {
        topic,
        partition,
        next_offset,
        written_at_ms: chrono::Utc::now().timestamp_millis(),
        enrich,
        engine,
    }
}

/// Adds a checkpoint's state to the job (after [`Job::reset`]).
pub fn restore(job: &mut Job, s: Snapshot, now: std::time::Instant) {
    job.enrichment.restore(s.partition, s.enrich, now);
    job.engine.restore(s.engine);
}

/// The file form of a checkpoint: header, checksum, CBOR body.
pub fn encode(s: &SnapshotRef<'_>) -> anyhow::Result<Vec<u8>> {
    // One buffer: the body is encoded after room for the header, which is filled in once
    // the body's length and digest are known (a body and a copy of it were two buffers the
    // size of the state).
    let mut out = vec![0u8; HEADER_BYTES];
    ciborium::into_writer(s, &mut out).context("internal: encoding a checkpoint")?;
    let body_len = (out.len() - HEADER_BYTES) as u64;
    let digest = Sha256::digest(&out[HEADER_BYTES..]);
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&body_len.to_le_bytes());
    header.extend_from_slice(&digest);
    out[..HEADER_BYTES].copy_from_slice(&header);
    Ok(out)
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
    if version != FORMAT_VERSION {
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
    ciborium::from_reader(body).map_err(|e| CorruptCheckpoint::Decode(e.to_string()))
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
    /// The newest good checkpoint, if any, with its path.
    pub snapshot: Option<(Snapshot, String)>,
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
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointStore({}/{})", self.location, self.root)
    }
}

impl CheckpointStore {
    /// Opens `location` (`checkpoint.location`) for `group` and `topic`, keeping `keep`
    /// checkpoints per partition.
    pub fn open(location: &str, group: &str, topic: &str, keep: usize) -> anyhow::Result<Self> {
        let (store, prefix) =
            crate::outputs::parquet::open_store_for("checkpoint.location", location)?;
        Ok(CheckpointStore {
            store,
            root: prefix.clone().join(group).join(topic),
            location: location.to_string(),
            topic: topic.to_string(),
            keep: keep.max(1),
        })
    }

    fn dir(&self, partition: i32) -> StorePath {
        self.root.clone().join(format!("p{partition}"))
    }

    /// Writes one partition's checkpoint, then removes those beyond `checkpoint.keep`.
    /// Returns the path written.
    pub async fn write(
        &self,
        partition: i32,
        next_offset: i64,
        bytes: Vec<u8>,
    ) -> anyhow::Result<String> {
        let name = format!(
            "{next_offset:020}-{:015}.ckpt",
            chrono::Utc::now().timestamp_millis().max(0)
        );
        let path = self.dir(partition).join(name);
        self.store
            .put(&path, bytes.into())
            .await
            .with_context(|| format!("writing checkpoint {path} under {}", self.location))?;
        let mut names = self.list(partition).await?;
        for old in names.split_off(self.keep.min(names.len())) {
            // Best effort: a leftover old checkpoint is harmless.
            if let Err(e) = self.store.delete(&old).await {
                tracing::warn!(path = %old, error = %e, "could not delete an old checkpoint");
            }
        }
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
            let bytes = match self.store.get(&path).await {
                Ok(r) => r
                    .bytes()
                    .await
                    .with_context(|| format!("reading checkpoint {path}"))?,
                // Removed since the listing (another instance's retention): try the next.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("reading checkpoint {path} under {}", self.location)));
                }
            };
            let found = decode(&bytes).and_then(|s| {
                if s.topic != self.topic || s.partition != partition {
                    Err(CorruptCheckpoint::Misplaced {
                        topic: s.topic.clone(),
                        partition: s.partition,
                    })
                } else {
                    Ok(s)
                }
            });
            match found {
                Ok(s) => {
                    return Ok(Found {
                        snapshot: Some((s, path.to_string())),
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
            rejected,
        })
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
        encode(&snapshot(job, "in", 0, offset, std::time::Instant::now())).unwrap_or_default()
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
        let Ok(store) = CheckpointStore::open(&loc, "g", "in", 3) else {
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
        let other =
            encode(&snapshot(&job, "in", 1, 50, std::time::Instant::now())).unwrap_or_default();
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
