//! Fault tests: the real binary on the real broker, killed, taken over, cut off from a broker
//! that restarts, restored from a damaged checkpoint. Each must give the same final window
//! records as an uninterrupted run over the same input: no event lost, none counted twice.
//!
//! Window records are upserts: per window key, a final record supersedes every other, and all
//! final records of a key must carry the same figures (a replay after a crash may emit a final
//! again, never a different one). Revisions, emission times and the watermark at emission are
//! left out of the comparison: they depend on how the input was cut into batches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluetrain_tests::golden::finals;
use cluetrain_tests::{cluetrain_bin, create_topic_on, generated, produce_on_with, unique};
use rdkafka::Message;
use serde_json::Value;

/// Input events per test: enough that a run takes a few seconds in a debug build.
const EVENTS: usize = 24_000;
const PARTITIONS: i32 = 4;

type Mock = rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

struct Topics<'m> {
    brokers: String,
    /// The embedded librdkafka mock cluster the brokers belong to, if any (its topics are
    /// made through it: it has no CreateTopics).
    mock: Option<&'m Mock>,
    input: String,
    dead: String,
    late: String,
}

impl Topics<'_> {
    async fn create(&self, name: &str, partitions: i32) {
        match self.mock {
            Some(m) => m
                .create_topic(name, partitions, 1)
                .unwrap_or_else(|e| panic!("mock topic {name}: {e}")),
            None => create_topic_on(&self.brokers, name, partitions).await,
        }
    }
}

async fn topics<'m>(brokers: &str, mock: Option<&'m Mock>) -> Topics<'m> {
    let t = Topics {
        brokers: brokers.to_string(),
        mock,
        input: unique("fault-in"),
        dead: unique("fault-dlq"),
        late: unique("fault-late"),
    };
    t.create(&t.input, PARTITIONS).await;
    t.create(&t.dead, 1).await;
    t.create(&t.late, 1).await;
    t
}

async fn produce_input(t: &Topics<'_>) {
    let msgs: Vec<_> = generated(7, EVENTS).into_iter().map(|(m, _)| m).collect();
    // Order does not matter here (every run reads the same topic): five requests in flight.
    produce_on_with(&t.brokers, &t.input, &msgs, 5).await;
}

/// One pipeline's settings: its group, its windows topic, its checkpoint directory.
#[derive(Clone)]
struct Instance<'a> {
    t: &'a Topics<'a>,
    group: String,
    windows: String,
    checkpoints: std::path::PathBuf,
    /// Rows per micro-batch: small batches stretch a run over more batches, checkpoints and
    /// commits, so that a kill lands in the middle of the stream.
    batch_rows: usize,
    /// The consumer's `session.timeout.ms`: short, so that a dead instance's partitions go
    /// to the survivor within seconds.
    session_timeout_ms: u32,
}

impl Instance<'_> {
    /// Another instance of the same consumer group, windows topic and checkpoint store (a
    /// second process of one deployment).
    fn sibling(&self) -> Self {
        self.clone()
    }

    fn command(&self, until_end: bool) -> Command {
        let mut c = Command::new(cluetrain_bin());
        c.arg("run");
        if until_end {
            c.arg("--until-end");
        }
        c.env("CLUETRAIN_KAFKA__BOOTSTRAP_SERVERS", &self.t.brokers)
            .env("CLUETRAIN_KAFKA__INPUT_TOPIC", &self.t.input)
            .env("CLUETRAIN_KAFKA__DEAD_LETTER_TOPIC", &self.t.dead)
            .env("CLUETRAIN_KAFKA__GROUP_ID", &self.group)
            .env(
                "CLUETRAIN_KAFKA__CONSUMER_PROPERTIES__SESSION_TIMEOUT_MS",
                self.session_timeout_ms.to_string(),
            )
            .env(
                "CLUETRAIN_KAFKA__CONSUMER_PROPERTIES__HEARTBEAT_INTERVAL_MS",
                "1000",
            )
            .env("CLUETRAIN_OUTPUTS__WINDOWS_TOPIC", &self.windows)
            .env("CLUETRAIN_OUTPUTS__LATE_EVENTS_TOPIC", &self.t.late)
            .env("CLUETRAIN_OUTPUTS__PARQUET_LOCATION", "")
            .env("CLUETRAIN_CHECKPOINT__LOCATION", &self.checkpoints)
            .env("CLUETRAIN_CHECKPOINT__INTERVAL", "300ms")
            .env(
                "CLUETRAIN_INGEST__BATCH_ROWS_MAX",
                self.batch_rows.to_string(),
            )
            .env("CLUETRAIN_INGEST__BATCH_WAIT_MAX", "100ms")
            .env("CLUETRAIN_INGEST__EVENT_TIME_FUTURE_MAX", "3650d")
            .env(
                "CLUETRAIN_LOG__FILTER",
                std::env::var("FAULTS_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("CLUETRAIN_ADMIN__LISTEN", "127.0.0.1:0")
            .env("CLUETRAIN_SQL__LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped());
        c
    }

    /// Starts it; its log (stderr) goes to a new file beside its checkpoints, whose path is
    /// returned (a pipe nobody reads would fill and stall it).
    fn spawn(&self, until_end: bool) -> (Child, std::path::PathBuf) {
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self
            .checkpoints
            .with_file_name(format!("{}-run{n}.log", self.group));
        let file = std::fs::File::create(&log).unwrap();
        let child = self.command(until_end).stderr(file).spawn().unwrap();
        (child, log)
    }

    /// Runs `--until-end` to completion; returns its summary and its log.
    fn run_to_end(&self) -> (Value, String) {
        let (mut child, log) = self.spawn(true);
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                let stderr = read_log(&log);
                assert!(
                    status.success(),
                    "cluetrain run exited with {status}\nstdout: {stdout}\nstderr: {stderr}"
                );
                let last = stdout.lines().last().unwrap_or_default();
                return (serde_json::from_str(last).unwrap(), stderr);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("cluetrain run --until-end did not finish in 240 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn instance<'a>(t: &'a Topics<'a>, dir: &std::path::Path, name: &str) -> Instance<'a> {
    Instance {
        t,
        group: unique(&format!("fault-{name}")),
        windows: String::new(),
        checkpoints: dir.join(name),
        batch_rows: 1000,
        session_timeout_ms: 6_000,
    }
}

async fn with_windows<'a>(mut i: Instance<'a>) -> Instance<'a> {
    i.windows = unique("fault-win");
    i.t.create(&i.windows, 2).await;
    i
}

/// A run's log, up to 64 MiB.
fn read_log(path: &std::path::Path) -> String {
    let mut s = String::new();
    #[allow(clippy::disallowed_methods)] // bounded by take() just before
    std::fs::File::open(path)
        .unwrap()
        .take(64 << 20)
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// A test's directory (checkpoints, run logs): removed when the test passes, kept and named
/// on stderr when it fails, so that the logs of the runs can be read.
struct TestDir(Option<tempfile::TempDir>);

impl TestDir {
    fn new() -> Self {
        TestDir(Some(
            tempfile::Builder::new()
                .prefix("faults-")
                .tempdir()
                .unwrap(),
        ))
    }

    fn path(&self) -> &std::path::Path {
        self.0
            .as_ref()
            .map_or(std::path::Path::new("."), |d| d.path())
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(d) = self.0.take()
        {
            eprintln!(
                "the runs' logs and checkpoints are kept in {}",
                d.keep().display()
            );
        }
    }
}

/// Waits until `log` contains `needle`; fails if `child` exits or `timeout` passes first.
fn wait_for_log(child: &mut Child, log: &std::path::Path, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !read_log(log).contains(needle) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run exited before \"{needle}\":\n{}",
            read_log(log)
        );
        assert!(
            Instant::now() < deadline,
            "no \"{needle}\" in {timeout:?}:\n{}",
            read_log(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every record on `topic`, read until nothing new arrives for `quiet`.
fn read_quiet(brokers: &str, topic: &str, quiet: Duration) -> Vec<Value> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("fault-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    // Assigned, not subscribed: no group join to wait for (on the mock cluster a join takes
    // longer than `quiet`), and every partition from its beginning.
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
                last = Instant::now();
            }
            Some(Err(e)) => eprintln!("reader: {e}"),
            None => {}
        }
    }
    out
}

fn key(v: &Value) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}",
        v["brand"],
        v["platform"],
        v["stakeholder"],
        v["department"],
        v["window_start"],
        v["window_seconds"]
    )
}

/// Per window key, its final figures. Fails if a key has two different finals, or none.
fn final_figures(records: &[Value], what: &str) -> BTreeMap<String, Value> {
    let mut by_key: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in records {
        by_key.entry(key(r)).or_default().push(r.clone());
    }
    let mut out = BTreeMap::new();
    for (k, rs) in by_key {
        let fin = finals(&rs);
        assert!(!fin.is_empty(), "{what}: window {k} has no final record");
        assert!(
            fin.windows(2).all(|w| w[0] == w[1]),
            "{what}: window {k} has final records that differ:\n{}",
            fin.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        out.insert(k, fin[0].clone());
    }
    out
}

fn assert_same(got: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>, what: &str) {
    let inbound = |m: &BTreeMap<String, Value>| -> i64 {
        m.values().map(|v| v["inbound"].as_i64().unwrap_or(0)).sum()
    };
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: the same windows; {} missing: {missing:?}; {} extra: {extra:?}",
        missing.len(),
        extra.len()
    );
    assert_eq!(
        inbound(got),
        inbound(want),
        "{what}: inbound messages in all"
    );
    for (k, w) in want {
        assert_eq!(
            &got[k], w,
            "{what}: window {k} (got left, uninterrupted right)"
        );
    }
}

/// The reference: one uninterrupted run over the input.
async fn reference(t: &Topics<'_>, dir: &std::path::Path) -> BTreeMap<String, Value> {
    let r = with_windows(instance(t, dir, "reference")).await;
    let (summary, _) = r.run_to_end();
    assert_eq!(
        summary["late_events"], 0,
        "the input has no late events: {summary}"
    );
    let records = read_quiet(&t.brokers, &r.windows, Duration::from_secs(3));
    assert_eq!(
        records.len() as u64,
        summary["window_records"].as_u64().unwrap(),
        "every record of the reference run is on its topic"
    );
    final_figures(&records, "reference")
}

/// Where every test here starts: its topics, the generated input on them, and the final
/// figures of one uninterrupted reference run (its checkpoints under `dir`).
async fn input_and_reference<'m>(
    brokers: &str,
    mock: Option<&'m Mock>,
    dir: &std::path::Path,
) -> (Topics<'m>, BTreeMap<String, Value>) {
    let t = topics(brokers, mock).await;
    produce_input(&t).await;
    let want = reference(&t, dir).await;
    (t, want)
}

/// The checkpoint files of a partition, newest first.
fn checkpoint_files(dir: &std::path::Path, partition: i32) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = walk(dir)
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "ckpt")
                && p.parent()
                    .and_then(|d| d.file_name())
                    .is_some_and(|n| n == format!("p{partition}").as_str())
        })
        .collect();
    files.sort_by(|a, b| b.file_name().cmp(&a.file_name()));
    files
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A small deterministic generator for kill times (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_then_restart_gives_the_uninterrupted_result() {
    let brokers = cluetrain_tests::brokers();
    let dir = TestDir::new();
    let (t, want) = input_and_reference(&brokers, None, dir.path()).await;

    let mut victim = with_windows(instance(&t, dir.path(), "victim")).await;
    victim.batch_rows = 200;
    let mut rng = Rng(0x00c1_7e7a_1d00_0009);
    let mut killed = 0;
    let mut finished_early = false;
    for round in 0..5 {
        let (mut child, log) = victim.spawn(true);
        // Round 0 dies early, during startup or restore; the others at a random moment of
        // the processing, counted from the assignment (a restarted member waits for the
        // group to drop its killed predecessor, up to the session timeout, before it gets
        // partitions: a clock started at spawn would kill every run before it does anything).
        let at = if round == 0 {
            rng.millis(200, 1_000)
        } else {
            wait_for_log(
                &mut child,
                &log,
                "partitions assigned",
                Duration::from_secs(60),
            );
            // At most 1.2 s: the restored run finishes the rest of this input in a few
            // seconds now, and a later draw of up to 3 s once let it end before its third
            // kill (the assertion below wants three).
            rng.millis(300, 1_200)
        };
        std::thread::sleep(at);
        if child.try_wait().unwrap().is_some() {
            finished_early = true;
            break;
        }
        child.kill().unwrap(); // SIGKILL: no shutdown, no final checkpoint, no commit
        child.wait().unwrap();
        killed += 1;
        eprintln!("round {round}: killed after {at:?}");
    }
    assert!(
        killed >= 3,
        "the run was killed at least three times ({killed})"
    );
    // (d) Damage the newest checkpoint of the partition with the most of them: the restart
    // must say so and fall back. (Not a fixed partition: the kills come at random moments,
    // and on a loaded machine the killed runs got as far as checkpointing one partition only,
    // partition 3 in a CI run: "the killed runs wrote checkpoints" of partition 0 then failed.)
    let files = (0..PARTITIONS)
        .map(|p| checkpoint_files(&victim.checkpoints, p))
        .max_by_key(Vec::len)
        .unwrap_or_default();
    assert!(!files.is_empty(), "the killed runs wrote checkpoints");
    let newest = files[0].clone();
    let len = std::fs::metadata(&newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (summary, log) = victim.run_to_end();
    assert!(
        log.contains("corrupt checkpoint set aside") && log.contains("truncated"),
        "the damaged checkpoint is reported with its reason:\n{log}"
    );
    assert!(
        !newest.exists(),
        "the damaged checkpoint is moved out of the way"
    );
    assert!(
        log.contains("partition restored from its checkpoint"),
        "the restart restored from checkpoints:\n{log}"
    );
    assert_eq!(summary["late_events"], 0, "{summary}");
    let got = final_figures(
        &read_quiet(&brokers, &victim.windows, Duration::from_secs(3)),
        "after kill -9",
    );
    assert_same(&got, &want, "kill -9 and restart");
    eprintln!(
        "killed {killed} times (finished early: {finished_early}); {} windows equal",
        want.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_whose_every_checkpoint_is_corrupt_is_read_again_from_its_beginning() {
    let brokers = cluetrain_tests::brokers();
    let dir = TestDir::new();
    let (t, want) = input_and_reference(&brokers, None, dir.path()).await;

    // A complete run: its checkpoints (the last one at shutdown) and committed offsets cover
    // every partition to its end.
    let mut i = with_windows(instance(&t, dir.path(), "replay")).await;
    i.run_to_end();
    let files = checkpoint_files(&i.checkpoints, 0);
    assert!(
        !files.is_empty(),
        "the run wrote checkpoints of partition 0"
    );
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    }
    // The next run of the group, onto a fresh windows topic: partition 0 has no good state
    // left, so it must be read again from offset 0, not started empty at its committed end.
    i.windows = unique("fault-win");
    t.create(&i.windows, 2).await;
    let (summary, log) = i.run_to_end();
    assert!(
        log.contains("no usable checkpoint: the partition is read again from its beginning"),
        "the run says partition 0 is replayed:\n{log}"
    );
    assert!(
        log.contains("partition restored from its checkpoint"),
        "the other partitions restore from theirs:\n{log}"
    );
    assert_eq!(
        summary["late_events"], 0,
        "{summary}\nthe run's log:\n{log}"
    );
    let got = final_figures(
        &read_quiet(&brokers, &i.windows, Duration::from_secs(3)),
        "after replay",
    );
    // Brands are keyed to partitions: the brands of partition 0 get every window again, each
    // with the figures of the uninterrupted run.
    let brands: std::collections::BTreeSet<String> = got
        .values()
        .filter_map(|v| v["brand"].as_str().map(str::to_string))
        .collect();
    assert!(
        !brands.is_empty(),
        "partition 0's brands get their windows again"
    );
    let want_p0: BTreeMap<String, Value> = want
        .iter()
        .filter(|(_, v)| v["brand"].as_str().is_some_and(|b| brands.contains(b)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_same(&got, &want_p0, "partition 0 replayed");
    eprintln!(
        "replayed brands {brands:?}: {} windows equal",
        want_p0.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_survivor_takes_over_a_killed_instances_partitions() {
    // On librdkafka's mock cluster, not Tansu: Tansu 0.6.0 drops a member whose session
    // expired but keeps the group's assignment (a known member that rejoins with unchanged
    // metadata is answered from the stored assignment, coordinator/group/administrator.rs),
    // so a dead member's partitions stay orphaned until the membership changes otherwise.
    // The mock coordinator expires sessions and re-assigns as Kafka does.
    let mock = Mock::new(1).unwrap();
    let brokers = mock.bootstrap_servers();
    let dir = TestDir::new();
    let (t, want) = input_and_reference(&brokers, Some(&mock), dir.path()).await;

    // Two instances of one group share the partitions and one checkpoint store.
    let mut a = with_windows(instance(&t, dir.path(), "pair")).await;
    a.batch_rows = 200;
    let b = a.sibling();
    let (mut survivor, survivor_log) = a.spawn(false);
    wait_for_log(
        &mut survivor,
        &survivor_log,
        "partitions assigned",
        Duration::from_secs(60),
    );
    let (mut victim, victim_log) = b.spawn(false);
    // The group rebalances onto both; the newcomer dies mid-stream, with work done since its
    // last checkpoint and offsets not yet committed.
    wait_for_log(
        &mut victim,
        &victim_log,
        "partition starts at its checkpoint",
        Duration::from_secs(60),
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the second instance is still running"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
    let first_log = read_log(&victim_log);
    let mut second = survivor;
    let second_log = survivor_log;
    // The survivor gets every partition after the session timeout and reads to the end.
    let ends = cluetrain_tests::end_offsets_on(&brokers, &t.input, PARTITIONS);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let committed = cluetrain_tests::committed_on(&brokers, &a.group, &t.input, PARTITIONS);
        // An empty partition has nothing to commit.
        if ends
            .iter()
            .all(|(p, end)| committed.get(p).copied().unwrap_or(0) == *end)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivor did not commit every partition's end in 120 s: {committed:?} vs {ends:?}"
        );
        assert!(second.try_wait().unwrap().is_none(), "the survivor exited");
        std::thread::sleep(Duration::from_millis(500));
    }
    // A clean stop (final checkpoint), then a bounded run of the group closes every window.
    cluetrain_tests::terminate(&mut second);
    let second_log = read_log(&second_log);
    assert!(
        second_log.contains("partitions assigned")
            && second_log
                .matches("partition restored from its checkpoint")
                .count()
                >= 2,
        "the survivor restored partitions from checkpoints:\n{second_log}"
    );
    // The input has no late events: a partition taken over is judged against its own past,
    // not against the watermark of the partitions the survivor kept (ARCHITECTURE.md).
    let stopped = second_log
        .lines()
        .filter(|l| l.contains("pipeline stopped"))
        .collect::<Vec<_>>();
    assert!(
        stopped.len() == 1 && stopped[0].contains(" late_events=0 "),
        "the survivor judged no event late: {stopped:?}"
    );
    let (summary, _) = a.run_to_end();
    assert_eq!(summary["late_events"], 0, "{summary}");
    let got = final_figures(
        &read_quiet(&brokers, &a.windows, Duration::from_secs(3)),
        "after takeover",
    );
    assert_same(&got, &want, "takeover");
    assert!(
        first_log.contains("partitions assigned"),
        "the killed instance had partitions:\n{first_log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_with_durable_storage_changes_nothing() {
    let tansu = match std::env::var_os("CLUETRAIN_TANSU") {
        Some(p) => std::path::PathBuf::from(p),
        None => panic!("CLUETRAIN_TANSU is not set: run the tests with `cargo xtask test`"),
    };
    let dir = TestDir::new();
    let db = dir.path().join("tansu.db");
    let mut broker = cluetrain_tests::DurableBroker::start(&tansu, &db);
    let brokers = broker.address.clone();
    let (t, want) = input_and_reference(&brokers, None, dir.path()).await;

    let mut victim = with_windows(instance(&t, dir.path(), "restart")).await;
    // The session outlives the outage. Tansu 0.6.0 restores the group from its storage, but a
    // member that has to join again after its session expired across the restart is handed an
    // empty assignment (the expired member's stored one is kept: docs/scaling.md), and nobody
    // reads the input. Kafka's default session (45 s) rides out the 3 s outage here.
    victim.session_timeout_ms = 45_000;
    let (mut child, log) = victim.spawn(true);
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running when the broker goes"
    );
    broker.kill();
    std::thread::sleep(Duration::from_secs(3));
    broker.restart();
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            // Killed, or it outlives the test and holds its ports and files.
            let _ = child.kill();
            panic!(
                "the run did not finish after the broker came back; its log: {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "the run survives the broker restart: {status}\n{stdout}\n{}",
        read_log(&log)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(summary["late_events"], 0, "{summary}");
    let got = final_figures(
        &read_quiet(&brokers, &victim.windows, Duration::from_secs(3)),
        "after broker restart",
    );
    assert_same(&got, &want, "broker restart");
}
