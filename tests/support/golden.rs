//! The golden-window harness shared by `golden_windows` (the job alone) and `windows_kafka`
//! (the real binary on the real broker): runs a case folder of `tests/data/windows/` through
//! [`Job`] exactly as the pipeline does, one input line per micro-batch.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use cluetrain::job::Job;
use ingest::{DecodeLimits, Decoder};
use model::EventBatchBuilder;
use serde_json::Value;

/// The folder of a golden case.
pub fn case_dir(case: &str) -> PathBuf {
    cases_dir().join(case)
}

/// The wall time of the first line, stamped on records (`emitted_at`); later lines are this
/// plus their `_wall_seconds`, so that outputs are reproducible and `windows.revision_interval`
/// sees time pass as the case says.
const WALL: &str = "2026-06-01T00:00:00Z";

/// `start` plus `offset_s` seconds (to the millisecond).
fn wall_at(start: chrono::DateTime<chrono::Utc>, offset_s: f64) -> chrono::DateTime<chrono::Utc> {
    #[allow(clippy::cast_possible_truncation)] // a case's few seconds
    let ms = (offset_s * 1000.0).round() as i64;
    start + chrono::Duration::milliseconds(ms)
}

/// The folder of all golden cases.
pub fn cases_dir() -> PathBuf {
    crate::package_dir().join("data/windows")
}

/// Runs one case and returns its output lines.
pub async fn run_case(dir: &Path) -> Vec<Value> {
    run_case_restoring(dir, 0).await
}

/// Runs one case; with `restore_every` = *k* > 0, every partition is checkpointed after every
/// input line (through a real [`cluetrain::checkpoint::CheckpointStore`] in a temporary
/// directory, one checkpoint in 4 full, the others incremental), and after every *k*-th line
/// the state is restored from the store into a new job, as after a crash and restart between
/// any two batches: *k* = 1 restores full checkpoints only, *k* = 3 chains of a full one and
/// deltas. The output must not change.
pub async fn run_case_restoring(dir: &Path, restore_every: usize) -> Vec<Value> {
    let config = cluetrain::settings::load(Some(&dir.join("config.toml")))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let input = std::fs::read_to_string(dir.join("input.jsonl")).unwrap();
    run_input_restoring(dir, &config, &input, restore_every, &mut |_| {}).await
}

/// Runs `input` (a case's lines) with `config`; `exported` receives, as text, everything the
/// pipeline would publish or show for it: every window record, late event and forward as
/// JSON, the enriched batch's author columns, what linkage reported (the `voices` table's
/// source) and the open conversations.
pub async fn run_input(
    dir: &Path,
    config: &model::config::Config,
    input: &str,
    exported: &mut dyn FnMut(String),
) -> Vec<Value> {
    run_input_restoring(dir, config, input, 0, exported).await
}

/// [`run_input`], with [`run_case_restoring`]'s checkpoints and restores.
pub async fn run_input_restoring(
    dir: &Path,
    config: &model::config::Config,
    input: &str,
    restore_every: usize,
    exported: &mut dyn FnMut(String),
) -> Vec<Value> {
    let mut job = Job::new(config).unwrap();
    let ck_dir = tempfile::tempdir().unwrap();
    let mut store = cluetrain::checkpoint::CheckpointStore::open(
        &ck_dir.path().to_string_lossy(),
        "golden",
        "input",
        3,
        4,
    )
    .unwrap();
    let decoder = Decoder::new(DecodeLimits::from_config(&config.ingest));
    let wall: chrono::DateTime<chrono::Utc> = WALL.parse().unwrap();
    let base = Instant::now();
    let mut offset_s = 0.0f64;
    let mut out = Vec::new();
    let mut partitions = std::collections::BTreeSet::new();
    for (n, line) in input.lines().enumerate() {
        if restore_every > 0 && !partitions.is_empty() {
            let now = base + Duration::from_secs_f64(offset_s);
            for &p in &partitions {
                store.checkpoint(&mut job, p, n as i64, now).await.unwrap();
            }
            if n % restore_every == 0 {
                job = Job::new(config).unwrap();
                store.forget_chains();
                for &p in &partitions {
                    let found = store.latest(p).await.unwrap();
                    assert!(found.rejected.is_empty(), "{:?}", found.rejected);
                    let (s, _) = found.snapshot.unwrap();
                    assert_eq!(s.next_offset, n as i64);
                    cluetrain::checkpoint::restore(&mut job, s, now);
                }
            }
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{} line {}: {e}", dir.display(), n + 1));
        let partition = i32::try_from(v["_partition"].as_i64().unwrap_or(0)).unwrap();
        partitions.insert(partition);
        if let Some(w) = v["_wall_seconds"].as_f64() {
            offset_s = w;
        }
        if let Some(parts) = assigned(&v) {
            partitions.extend(parts.iter().copied());
            job.enrichment.assignment(
                &parts,
                &[],
                &at_end(&v),
                base + Duration::from_secs_f64(offset_s),
            );
            continue;
        }
        let batch = decode_line(&decoder, dir, line, partition, n);
        let step = job
            .process(
                &batch,
                base + Duration::from_secs_f64(offset_s),
                wall_at(wall, offset_s),
            )
            .await
            .unwrap();
        push_step(&mut out, &step, exported);
        for c in [
            model::schema::col::AUTHOR_ID,
            model::schema::col::AUTHOR_HANDLE,
        ] {
            let column = step.enriched.batch.column_by_name(c).unwrap();
            exported(format!("{:?}", column.as_string::<i32>()));
        }
        exported(format!("{:?}", step.enriched.linked));
        exported(format!("{:?}", job.enrichment.open_inbound(1000).0));
    }
    let (records, forwards) = job.finish(wall_at(wall, offset_s)).await.unwrap();
    push_outputs(&mut out, &records, &[], &forwards, exported);
    exported(format!("{:?}", job.finished_links));
    out
}

/// Runs one case as the pipeline does with `windows.overlap_enrichment` on a backlog: the
/// window engine of each batch on a thread of its own while the next line's batch is
/// enriched ([`Job::aggregate_beside`]), a batch alone where an assignment line comes
/// between. Returns the records, late events and forwards, which must equal
/// [`run_case`]'s.
pub async fn run_case_overlapped(dir: &Path) -> Vec<Value> {
    let config = cluetrain::settings::load(Some(&dir.join("config.toml")))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let input = std::fs::read_to_string(dir.join("input.jsonl")).unwrap();
    let mut job = Job::new(&config).unwrap();
    let decoder = Decoder::new(DecodeLimits::from_config(&config.ingest));
    let wall: chrono::DateTime<chrono::Utc> = WALL.parse().unwrap();
    let base = Instant::now();
    let runtime = tokio::runtime::Handle::current();
    let mut offset_s = 0.0f64;
    let mut out = Vec::new();
    // The batch enriched, waiting for the engine, with its times.
    type Pending = (
        cluetrain::enrichment::Enriched,
        Instant,
        chrono::DateTime<chrono::Utc>,
    );
    let mut pending: Option<Pending> = None;
    let mut overlapped = 0;
    for (n, line) in input.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{} line {}: {e}", dir.display(), n + 1));
        let partition = i32::try_from(v["_partition"].as_i64().unwrap_or(0)).unwrap();
        if let Some(w) = v["_wall_seconds"].as_f64() {
            offset_s = w;
        }
        let now = base + Duration::from_secs_f64(offset_s);
        if let Some(parts) = assigned(&v) {
            if let Some((e, at, w)) = pending.take() {
                let step = job.aggregate(e, at, w).await.unwrap();
                push_step(&mut out, &step, &mut |_| {});
            }
            job.enrichment.assignment(&parts, &[], &at_end(&v), now);
            continue;
        }
        let batch = decode_line(&decoder, dir, line, partition, n);
        let next = match pending.take() {
            None => job.enrich(&batch, now).unwrap().0,
            Some((e, at, w)) => {
                overlapped += 1;
                let (step, next) = job.aggregate_beside(e, at, w, (&batch, now), |_| {}, &runtime);
                push_step(&mut out, &step.unwrap(), &mut |_| {});
                next.unwrap().0
            }
        };
        pending = Some((next, now, wall_at(wall, offset_s)));
    }
    if let Some((e, at, w)) = pending.take() {
        let step = job.aggregate(e, at, w).await.unwrap();
        push_step(&mut out, &step, &mut |_| {});
    }
    assert!(
        overlapped > 0 || input.lines().count() < 3,
        "{}: no batch was overlapped",
        dir.display()
    );
    let (records, forwards) = job.finish(wall_at(wall, offset_s)).await.unwrap();
    push_outputs(&mut out, &records, &[], &forwards, &mut |_| {});
    out
}

/// A step's records, late events and forwards: into the case's output lines, and as text
/// into `exported`.
fn push_step(out: &mut Vec<Value>, step: &cluetrain::job::Step, exported: &mut dyn FnMut(String)) {
    let late: Vec<Value> = step
        .enriched
        .late
        .iter()
        .map(|&row| cluetrain::outputs::event_json(&step.enriched.batch, row))
        .collect();
    push_outputs(out, &step.records, &late, &step.enriched.forwards, exported);
}

/// Window records, late events (as JSON) and forwards, in that order.
fn push_outputs(
    out: &mut Vec<Value>,
    records: &[model::WindowRecord],
    late: &[Value],
    forwards: &[cluetrain::enrichment::Forward],
    exported: &mut dyn FnMut(String),
) {
    for r in records {
        out.push(serde_json::to_value(r).unwrap());
        exported(serde_json::to_string(r).unwrap());
    }
    for e in late {
        out.push(serde_json::json!({"late": e["event_id"]}));
        exported(e.to_string());
    }
    for f in forwards {
        out.push(serde_json::json!({"forward": f.json["event_id"], "topic": f.topic}));
        exported(f.json.to_string());
    }
}

/// The partitions of an assignment line (`_assigned`: the consumer's assignment, as the
/// source reports it with each batch).
fn assigned(v: &Value) -> Option<Vec<i32>> {
    partitions(v, "_assigned")
}

/// The partitions a line with `_assigned` reports at their end (`_at_end`), as the source does.
fn at_end(v: &Value) -> Vec<i32> {
    partitions(v, "_at_end").unwrap_or_default()
}

fn partitions(v: &Value, key: &str) -> Option<Vec<i32>> {
    let parts = v[key].as_array()?;
    Some(
        parts
            .iter()
            .filter_map(|p| i32::try_from(p.as_i64()?).ok())
            .collect(),
    )
}

/// Line `n` of a case as a batch of one event read from `partition` at offset `n`.
fn decode_line(
    decoder: &Decoder,
    dir: &Path,
    line: &str,
    partition: i32,
    n: usize,
) -> arrow_array::RecordBatch {
    let mut b = EventBatchBuilder::with_capacity(1);
    decoder
        .decode_into(
            Some(line.as_bytes()),
            chrono::Utc::now().timestamp_micros(),
            &mut b,
            partition,
            n as i64,
        )
        .unwrap_or_else(|e| panic!("{} line {}: {e:?}", dir.display(), n + 1));
    b.finish().unwrap()
}

/// The final records of a case's expected output, keyed for comparison across runs that
/// batch differently: every field but those that depend on batching (revision, emission time).
pub fn finals(lines: &[Value]) -> Vec<Value> {
    let mut f: Vec<Value> = lines
        .iter()
        .filter(|v| v["final"] == Value::Bool(true))
        .cloned()
        .map(|mut v| {
            let o = v.as_object_mut().unwrap();
            // Revision numbers, emission times and the watermark at emission depend on how
            // events were cut into batches; the figures must not.
            o.remove("revision");
            o.remove("emitted_at");
            o.remove("watermark");
            v
        })
        .collect();
    f.sort_by_key(|v| {
        format!(
            "{}|{}|{}|{}|{}|{}",
            v["brand"],
            v["platform"],
            v["stakeholder"],
            v["department"],
            v["window_start"],
            v["window_seconds"]
        )
    });
    f
}

/// Writes the window records of case `case` as a Parquet history under `location` (two
/// flushes, so revisions land in different files as in a running pipeline). Returns the
/// number of records.
pub async fn write_history(case: &str, location: &Path) -> usize {
    let lines = run_case(&case_dir(case)).await;
    let records: Vec<model::WindowRecord> = lines
        .into_iter()
        .filter(|v| v.get("window_start").is_some())
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    let mut sink = cluetrain::outputs::parquet::ParquetSink::new(
        location.to_str().unwrap(),
        Duration::from_secs(60),
        1000,
    )
    .unwrap();
    sink.push(&records[..1]);
    sink.flush().await.unwrap();
    sink.push(&records[1..]);
    sink.flush().await.unwrap();
    records.len()
}
