//! The `cluetrain` binary as users run it: configuration errors, a bounded run against the
//! real broker, graceful shutdown on SIGTERM, deterministic generation, and the demo.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluetrain_tests::{
    Outgoing, brokers, cluetrain_bin, committed, create_topic, generated, produce, read_all, unique,
};
use rdkafka::Message;

fn cluetrain() -> Command {
    let mut c = Command::new(cluetrain_bin());
    // Keep the developer's own CLUETRAIN_* settings out of the tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("CLUETRAIN_") {
            c.env_remove(k);
        }
    }
    c.env("CLUETRAIN_LOG__FILTER", "info");
    c
}

/// `cluetrain config --check --config PATH` succeeds.
fn assert_config_valid(path: &std::path::Path) {
    let out = cluetrain()
        .args(["config", "--check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kafka_env(c: &mut Command, input: &str, dead: &str, group: &str) {
    c.env("CLUETRAIN_KAFKA__BOOTSTRAP_SERVERS", brokers())
        .env("CLUETRAIN_KAFKA__INPUT_TOPIC", input)
        .env("CLUETRAIN_KAFKA__DEAD_LETTER_TOPIC", dead)
        .env("CLUETRAIN_KAFKA__GROUP_ID", group)
        .env("CLUETRAIN_INGEST__BATCH_WAIT_MAX", "100ms")
        .env("CLUETRAIN_INGEST__EVENT_TIME_FUTURE_MAX", "3650d")
        .env("CLUETRAIN_OUTPUTS__PARQUET_LOCATION", "")
        .env("CLUETRAIN_ADMIN__LISTEN", "127.0.0.1:0")
        .env("CLUETRAIN_SQL__LISTEN", "127.0.0.1:0")
        // Checkpoints on, as deployed, but not in the default `cluetrain-checkpoints` of the
        // working directory (the tests' crate directory: they ended up committed).
        .env(
            "CLUETRAIN_CHECKPOINT__LOCATION",
            std::env::temp_dir().join(format!("cluetrain-cli-checkpoints-{group}")),
        );
}

#[test]
fn default_config_prints_and_validates() {
    let out = cluetrain()
        .args(["config", "--print-default"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    assert_config_valid(&path);
}

#[test]
fn bad_config_names_the_key_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[ingest]\nbatch_rows_max = 0\n[kafka.properties]\n\"enable.auto.commit\" = \"true\"\n",
    )
    .unwrap();
    let out = cluetrain()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ingest.batch_rows_max"), "{err}");
    assert!(err.contains("enable.auto.commit"), "{err}");
    let out = cluetrain()
        .args(["run"])
        .env("CLUETRAIN_INGEST__BATCH_WAIT_MAX", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CLUETRAIN_INGEST__BATCH_WAIT_MAX"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_end_processes_everything_and_exits_zero() {
    let (input, dead, group) = (unique("in"), unique("dlq"), unique("group"));
    create_topic(&input, 4).await;
    create_topic(&dead, 1).await;
    let mut msgs: Vec<Outgoing> = generated(5, 300).into_iter().map(|(m, _)| m).collect();
    for i in 0..5 {
        msgs.insert(i * 50, Outgoing::new("acme_air", format!("{{broken {i}")));
    }
    produce(&input, &msgs).await;
    let mut c = cluetrain();
    c.args(["run", "--until-end"]);
    kafka_env(&mut c, &input, &dead, &group);
    let out = tokio::task::spawn_blocking(move || c.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["events"], 300);
    assert_eq!(report["dead_letters"], 5);
    let total: i64 = committed(&group, &input, 4).values().sum();
    assert_eq!(total, 305, "every offset committed");
    assert_eq!(read_all(&dead, 5, Duration::from_secs(20)).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_commits() {
    let (input, dead, group) = (unique("in"), unique("dlq"), unique("group"));
    create_topic(&input, 2).await;
    create_topic(&dead, 1).await;
    let msgs: Vec<Outgoing> = generated(9, 400).into_iter().map(|(m, _)| m).collect();
    produce(&input, &msgs).await;
    let mut c = cluetrain();
    c.arg("run").stderr(Stdio::piped()).stdout(Stdio::piped());
    kafka_env(&mut c, &input, &dead, &group);
    // Only the shutdown commit can make offsets visible within this test.
    c.env("CLUETRAIN_KAFKA__COMMIT_INTERVAL", "1h");
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut started = false;
    while !started && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            started |= l.contains("pipeline started");
        }
    }
    assert!(started, "pipeline started within 30s");
    // Let it consume everything, then ask it to stop.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        committed(&group, &input, 2).is_empty(),
        "nothing committed before shutdown (interval 1h)"
    );
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "cluetrain did not exit within 30s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let total: i64 = committed(&group, &input, 2).values().sum();
    assert_eq!(total, 400, "shutdown committed every processed offset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_is_deterministic_by_seed() {
    let (a, b) = (unique("gen"), unique("gen"));
    create_topic(&a, 1).await;
    create_topic(&b, 1).await;
    for topic in [&a, &b] {
        let out = cluetrain()
            .args([
                "generate",
                "--count",
                "300",
                "--seed",
                "42",
                "--start",
                "2026-01-05T10:00:00Z",
                "--topic",
                topic,
            ])
            .env("CLUETRAIN_KAFKA__BOOTSTRAP_SERVERS", brokers())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ra = read_all(&a, 300, Duration::from_secs(20));
    let rb = read_all(&b, 300, Duration::from_secs(20));
    assert_eq!(ra.len(), 300);
    let payloads = |v: &[rdkafka::message::OwnedMessage]| {
        v.iter()
            .map(|m| m.payload().unwrap().to_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(payloads(&ra), payloads(&rb));
    let keys: std::collections::HashSet<_> = ra.iter().map(|m| m.key().unwrap().to_vec()).collect();
    assert!(keys.len() >= 3, "keyed by brand");
}

#[test]
fn demo_runs_with_nothing_installed_and_stops_cleanly() {
    let out = cluetrain()
        .args([
            "demo",
            "--duration",
            "8s",
            "--plain",
            "--admin-listen",
            "127.0.0.1:0",
            "--sql-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("stopped cleanly"))
        .expect("final line");
    let decoded: u64 = line
        .split(", ")
        .find_map(|p| p.strip_suffix(" events decoded"))
        .and_then(|n| n.parse().ok())
        .expect("decoded count");
    assert!(decoded > 100, "{line}");
    assert!(stdout.contains("acme_air"), "per-brand table: {stdout}");
}

#[test]
fn shipped_example_config_is_valid() {
    let path = cluetrain_tests::package_dir().join("../deploy/cluetrain.example.toml");
    assert_config_valid(&path);
}

#[test]
fn sentiment_streams_tsv_and_keeps_line_alignment() {
    use std::io::Write;
    let mut child = cluetrain()
        .arg("sentiment")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = b"I love this :)\n".to_vec();
    input.extend_from_slice(b"broken \xff line\n");
    input.extend_from_slice(b"The service is NOT good!!!\r\n\nno newline at end");
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "some lines failed");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "one output line per input line: {stdout:?}");
    let compound = |l: &str| l.split('\t').nth(3).unwrap().parse::<f64>().unwrap();
    assert!(compound(lines[0]) > 0.5, "{}", lines[0]);
    assert_eq!(lines[1], "", "invalid UTF-8 gives an empty line");
    assert!(compound(lines[2]) < -0.3, "{}", lines[2]);
    assert_eq!(
        lines[3], "0.0\t0.0\t0.0\t0.0",
        "empty text scores like the reference"
    );
    assert_eq!(lines[4].split('\t').count(), 4);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
}
