//! The window pipeline end to end on the real broker: golden inputs are produced to a topic,
//! `cluetrain run --until-end` (the real binary) consumes them, and the final window records
//! on the output topic and in the Parquet files must equal the golden expectations; late
//! events and forwarded complaints must reach their topics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use cluetrain_tests::golden::{case_dir, finals, run_case};
use cluetrain_tests::{brokers, cluetrain_bin, create_topic, read_all, unique};
use rdkafka::Message;
use serde_json::Value;

struct Topics {
    input: String,
    dead: String,
    windows: String,
    late: String,
    forward: String,
}

/// Input partitions a case needs: one more than its highest `_partition`. No empty input
/// partition: a bounded run believes an empty partition's end only after it settles
/// (`ingest::source`), so with one, whether an early event is late would depend on timing.
fn case_partitions(case: &str) -> i32 {
    let input = std::fs::read_to_string(case_dir(case).join("input.jsonl")).unwrap();
    input
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["_partition"].as_i64())
        .max()
        .map_or(1, |m| i32::try_from(m).unwrap() + 1)
}

async fn topics(input_partitions: i32) -> Topics {
    let t = Topics {
        input: unique("win-in"),
        dead: unique("win-dlq"),
        windows: unique("win-out"),
        late: unique("win-late"),
        forward: unique("win-billing"),
    };
    for (name, partitions) in [
        (&t.input, input_partitions),
        (&t.dead, 1),
        (&t.windows, 2),
        (&t.late, 1),
        (&t.forward, 1),
    ] {
        create_topic(name, partitions).await;
    }
    t
}

/// Produces a case's input lines keyed by brand, each to its `_partition`, in file order.
async fn produce_case(case: &str, topic: &str) {
    let input = std::fs::read_to_string(case_dir(case).join("input.jsonl")).unwrap();
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    for line in input
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let v: Value = serde_json::from_str(line).unwrap();
        // Control lines (`_assigned`, `_end`, ...) drive the golden harness, not the broker.
        if v.get("event_id").is_none() && v.get("brand").is_none() {
            continue;
        }
        let partition = i32::try_from(v["_partition"].as_i64().unwrap_or(0)).unwrap();
        let brand = v["brand"].as_str().unwrap().to_string();
        let rec = rdkafka::producer::FutureRecord::to(topic)
            .key(brand.as_bytes())
            .payload(line.as_bytes())
            .partition(partition);
        producer
            .send(rec, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

/// `cluetrain run` on a case's configuration and topics, bounded (`--until-end`) or not.
fn command(case: &str, t: &Topics, parquet: &std::path::Path, until_end: bool) -> Command {
    let mut c = Command::new(cluetrain_bin());
    c.arg("run");
    if until_end {
        c.arg("--until-end");
    }
    c.arg("--config")
        .arg(case_dir(case).join("config.toml"))
        .env("CLUETRAIN_KAFKA__BOOTSTRAP_SERVERS", brokers())
        .env("CLUETRAIN_KAFKA__INPUT_TOPIC", &t.input)
        .env("CLUETRAIN_KAFKA__DEAD_LETTER_TOPIC", &t.dead)
        .env("CLUETRAIN_KAFKA__GROUP_ID", unique("win-group"))
        .env("CLUETRAIN_OUTPUTS__WINDOWS_TOPIC", &t.windows)
        .env("CLUETRAIN_OUTPUTS__LATE_EVENTS_TOPIC", &t.late)
        .env("CLUETRAIN_OUTPUTS__PARQUET_LOCATION", parquet)
        // Checkpoints beside the Parquet output, in the test's temporary directory, not in
        // the working directory (`tests/`).
        .env(
            "CLUETRAIN_CHECKPOINT__LOCATION",
            parquet.join("checkpoints"),
        )
        .env("CLUETRAIN_INGEST__BATCH_WAIT_MAX", "100ms")
        .env("CLUETRAIN_INGEST__EVENT_TIME_FUTURE_MAX", "3650d")
        .env("CLUETRAIN_LOG__FILTER", "warn")
        .env("CLUETRAIN_ADMIN__LISTEN", "127.0.0.1:0")
        .env("CLUETRAIN_SQL__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let config = std::fs::read_to_string(case_dir(case).join("config.toml")).unwrap();
    if config.contains("billing = ") {
        c.env(
            "CLUETRAIN_DEPARTMENTS__FORWARD_NEGATIVE__BILLING",
            &t.forward,
        );
    }
    c
}

/// Runs `cluetrain run --until-end` on a case; returns its summary line.
fn run_binary(case: &str, t: &Topics, parquet: &std::path::Path) -> Value {
    let mut child = command(case, t, parquet, true).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                status.success(),
                "{case}: cluetrain run exited with {status}\nstdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let last = stdout.lines().last().unwrap_or_default();
            return serde_json::from_str(last).unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{case}: cluetrain run --until-end did not finish in 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Latest revision per window key.
fn latest(records: Vec<Value>) -> Vec<Value> {
    let mut by_key: BTreeMap<String, Value> = BTreeMap::new();
    for r in records {
        let key = format!(
            "{}|{}|{}|{}|{}|{}",
            r["brand"],
            r["platform"],
            r["stakeholder"],
            r["department"],
            r["window_start"],
            r["window_seconds"]
        );
        let newer = by_key
            .get(&key)
            .is_none_or(|old| old["revision"].as_u64() < r["revision"].as_u64());
        if newer {
            by_key.insert(key, r);
        }
    }
    by_key.into_values().collect()
}

fn parquet_batches(dir: &std::path::Path) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let Ok(dates) = std::fs::read_dir(dir) else {
        return out;
    };
    for date in dates {
        let date = date.unwrap().path();
        assert!(
            date.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("date="),
            "partition folders are date=YYYY-MM-DD: {}",
            date.display()
        );
        for f in std::fs::read_dir(&date).unwrap() {
            let f = f.unwrap().path();
            assert_eq!(
                f.extension().and_then(|e| e.to_str()),
                Some("parquet"),
                "only complete .parquet files are visible: {}",
                f.display()
            );
            let file = std::fs::File::open(&f).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
            for b in reader {
                out.push(b.unwrap());
            }
        }
    }
    out
}

async fn check_case(case: &str) {
    let expected = run_case(&case_dir(case)).await;
    let t = topics(case_partitions(case)).await;
    produce_case(case, &t.input).await;
    let tmp = tempfile::tempdir().unwrap();
    let summary = run_binary(case, &t, tmp.path());
    let n = usize::try_from(summary["window_records"].as_u64().unwrap()).unwrap();
    let records: Vec<Value> = read_all(&t.windows, n, Duration::from_secs(30))
        .iter()
        .map(|m| {
            assert!(m.key().is_some(), "window records are keyed by brand");
            serde_json::from_slice(m.payload().unwrap()).unwrap()
        })
        .collect();
    assert_eq!(
        records.len(),
        n,
        "{case}: every emitted record is on the topic"
    );
    let latest = latest(records);
    assert!(
        latest.iter().all(|r| r["final"] == true),
        "{case}: after --until-end every window's latest revision is final"
    );
    assert_eq!(
        finals(&latest),
        finals(&expected),
        "{case}: topic vs golden"
    );

    // Late events and forwarded complaints.
    let late_expected: Vec<Value> = expected
        .iter()
        .filter_map(|v| v.get("late").cloned())
        .collect();
    let late: Vec<Value> = read_all(&t.late, late_expected.len(), Duration::from_secs(10))
        .iter()
        .map(|m| serde_json::from_slice::<Value>(m.payload().unwrap()).unwrap()["event_id"].clone())
        .collect();
    assert_eq!(late, late_expected, "{case}: late events on their topic");
    let fwd_expected: Vec<Value> = expected
        .iter()
        .filter_map(|v| v.get("forward").cloned())
        .collect();
    let fwd: Vec<Value> = read_all(&t.forward, fwd_expected.len(), Duration::from_secs(10))
        .iter()
        .map(|m| serde_json::from_slice::<Value>(m.payload().unwrap()).unwrap()["event_id"].clone())
        .collect();
    assert_eq!(fwd, fwd_expected, "{case}: forwarded complaints");

    // Parquet: the final rows carry the same figures.
    let batches = parquet_batches(&tmp.path().join("engagement_windows"));
    let mut rows = Vec::new();
    for b in &batches {
        let fin = b.column_by_name("final").unwrap().as_boolean();
        let brand = b.column_by_name("brand").unwrap().as_string::<i32>();
        let start = b
            .column_by_name("window_start")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        let inbound = b
            .column_by_name("inbound")
            .unwrap()
            .as_primitive::<Int64Type>();
        let answered = b
            .column_by_name("answered")
            .unwrap()
            .as_primitive::<Int64Type>();
        let median = b
            .column_by_name("first_response_median_seconds")
            .unwrap()
            .as_primitive::<arrow_array::types::Float64Type>();
        for i in 0..b.num_rows() {
            if fin.value(i) {
                rows.push((
                    brand.value(i).to_string(),
                    start.value(i),
                    inbound.value(i),
                    answered.value(i),
                    median.is_valid(i).then(|| median.value(i)),
                ));
            }
        }
    }
    rows.sort_by_key(|a| (a.0.clone(), a.1));
    let mut want: Vec<_> = finals(&expected)
        .iter()
        .map(|r| {
            (
                r["brand"].as_str().unwrap().to_string(),
                chrono::DateTime::parse_from_rfc3339(r["window_start"].as_str().unwrap())
                    .unwrap()
                    .timestamp_micros(),
                r["inbound"].as_i64().unwrap(),
                r["answered"].as_i64().unwrap(),
                r["first_response_seconds"]["median"].as_f64(),
            )
        })
        .collect();
    want.sort_by_key(|a| (a.0.clone(), a.1));
    assert_eq!(rows, want, "{case}: Parquet finals vs golden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_case_on_the_broker_matches_the_golden_finals() {
    check_case("basic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_on_the_broker_reach_the_late_topic() {
    check_case("late_events").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_and_revisions_on_the_broker_match_the_golden_finals() {
    check_case("out_of_order").await;
    check_case("answer_after_close").await;
    check_case("reply_before_parent").await;
}

/// A continuous run (no `--until-end`) that starts beside an empty input partition: the source
/// finds that partition at its end, so the first windows close once
/// `linkage.empty_partition_timeout` (5 s) has passed, not after `linkage.idle_timeout` (10 min
/// in this case), and with no more input arriving. Before, a cold start held every
/// window for the idle timeout, with everything read meanwhile in the reorder buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_run_beside_an_empty_partition_closes_windows_before_the_idle_timeout() {
    // Every event of this case is on partition 0; the topic has a partition 1 with nothing.
    let case = "silent_partition";
    let t = topics(2).await;
    produce_case(case, &t.input).await;
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("stderr.log");
    let mut child = command(case, &t, tmp.path(), false)
        .env(
            "CLUETRAIN_LOG__FILTER",
            "info,cluetrain::pipeline=debug,ingest::source=debug",
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let records = read_all(&t.windows, 1, Duration::from_secs(120));
    let _ = child.kill();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        records.len(),
        1,
        "no window record within 120 s: the empty partition held the watermark back \
         (idle_timeout 10 min)\nstderr: {stderr}"
    );
    let r: Value = serde_json::from_slice(records[0].payload().unwrap()).unwrap();
    assert_eq!(r["window_start"], "2026-03-02T10:00:00Z", "{r}");
    assert_eq!(
        (&r["inbound"], &r["answered"], &r["final"]),
        (&Value::from(1), &Value::from(1), &Value::from(false)),
        "the 10:00 window closed by the watermark (m2 at 11:30), not by an end of input: {r}"
    );
    assert!(
        stderr.contains("partition empty at its end"),
        "the log says why the watermark moved\nstderr: {stderr}"
    );
    // All input is read in the first second; the empty partition holds the watermark for
    // `empty_partition_timeout` (5 s) after that, when no batch comes any more: the pipeline's
    // heartbeat is what closes the window.
    assert!(
        stderr.contains("time moved the watermark with no batch"),
        "closed by a heartbeat, with no batch arriving\nstderr: {stderr}"
    );
}
