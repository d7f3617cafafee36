//! SQL for analysts over the Postgres wire protocol, with the real `psql` client against
//! `cluetrain run`: password authentication, the analyst queries of the README, and the
//! lock-down (every statement that writes, creates or touches files is refused; no file is
//! left behind).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cluetrain_tests::golden::write_history;
use cluetrain_tests::{brokers, cluetrain_bin, create_topic, unique};

const PASSWORD: &str = "analyst-s3cret";

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cluetrain run` on `input` serving SQL on a free loopback port with `password`;
/// `configure` adds the test's own arguments and settings. Returns the process and the port.
fn start_run(input: &str, password: &str, configure: impl FnOnce(&mut Command)) -> (Guard, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = Command::new(cluetrain_bin());
    c.arg("run");
    configure(&mut c);
    c.env("CLUETRAIN_KAFKA__BOOTSTRAP_SERVERS", brokers())
        .env("CLUETRAIN_KAFKA__INPUT_TOPIC", input)
        .env("CLUETRAIN_KAFKA__GROUP_ID", unique("psql-group"))
        .env("CLUETRAIN_ADMIN__LISTEN", "127.0.0.1:0")
        .env("CLUETRAIN_SQL__LISTEN", format!("127.0.0.1:{port}"))
        .env("CLUETRAIN_SQL__PASSWORD", password)
        .env("CLUETRAIN_LOG__FILTER", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    (Guard(c.spawn().unwrap()), port)
}

fn psql(port: u16, password: &str, sql: &str) -> Output {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "cluetrain",
            "-d",
            "cluetrain",
        ])
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap()
}

fn rows(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysts_query_with_psql_and_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_history("basic", &data).await;
    let input = unique("psql-in");
    create_topic(&input, 1).await;
    let (_run, port) = start_run(&input, PASSWORD, |c| {
        c.env("CLUETRAIN_OUTPUTS__PARQUET_LOCATION", &data);
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = psql(port, PASSWORD, "SELECT 1");
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SQL server did not come up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // A wrong password is refused.
    let out = psql(port, "wrong", "SELECT 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The analyst queries (figures hand-checked in tests/data/windows/README.md).
    assert_eq!(
        rows(&psql(
            port,
            PASSWORD,
            "SELECT brand, round(avg(response_rate), 2) AS rate FROM engagement_windows \
             WHERE window_seconds = 3600 GROUP BY brand ORDER BY rate DESC"
        )),
        vec!["acme|0.2"],
        "top brands by response rate: (0.4 + 0.0) / 2"
    );
    let trend = rows(&psql(
        port,
        PASSWORD,
        "SELECT window_start, first_response_median_seconds, revision FROM engagement_windows \
         ORDER BY window_start",
    ));
    assert_eq!(trend.len(), 2, "first-response trend: {trend:?}");
    let first: Vec<&str> = trend[0].split('|').collect();
    assert!(
        first[0].contains("2026-03-02") && first[0].contains("10:00:00"),
        "{trend:?}"
    );
    assert_eq!(first[1].parse::<f64>().ok(), Some(1500.0), "{trend:?}");
    assert_eq!(first[2], "2", "latest revision per window: {trend:?}");
    let second: Vec<&str> = trend[1].split('|').collect();
    assert!(
        second[0].contains("11:00:00") && second[1].is_empty(),
        "{trend:?}"
    );
    assert_eq!(
        rows(&psql(
            port,
            PASSWORD,
            "SELECT department, sum(inbound - answered) AS waiting \
             FROM engagement_window_departments GROUP BY department ORDER BY department"
        )),
        vec!["billing|0", "support|4"],
        "backlog by department"
    );
    assert_eq!(
        rows(&psql(
            port,
            PASSWORD,
            "SELECT count(*) FROM engagement_window_revisions"
        )),
        vec!["3"]
    );

    // Locked down.
    let target = dir.path().join("copied.csv");
    for statement in [
        "INSERT INTO engagement_window_revisions SELECT * FROM engagement_window_revisions"
            .to_string(),
        "UPDATE engagement_window_revisions SET inbound = 0".to_string(),
        "DELETE FROM engagement_window_revisions".to_string(),
        "DROP VIEW engagement_windows".to_string(),
        "CREATE TABLE t AS SELECT 1".to_string(),
        // Hive syntax, which the Postgres dialect parses as an external table.
        "CREATE EXTERNAL TABLE passwd (line VARCHAR) STORED AS TEXTFILE LOCATION '/etc/passwd'"
            .to_string(),
        format!(
            "COPY (SELECT * FROM engagement_windows) TO '{}'",
            target.display()
        ),
        "SET datafusion.execution.batch_size = 1".to_string(),
    ] {
        let out = psql(port, PASSWORD, &statement);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{statement}: must be refused");
        assert!(stderr.contains("read-only"), "{statement}: {stderr}");
    }
    // DataFusion's own syntax does not even parse in the Postgres dialect: refused as well.
    let out = psql(
        port,
        PASSWORD,
        "CREATE EXTERNAL TABLE passwd2 (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'",
    );
    assert!(
        !out.status.success(),
        "DataFusion-syntax CREATE EXTERNAL TABLE refused"
    );
    let out = psql(
        port,
        PASSWORD,
        &format!(
            "COPY (SELECT * FROM engagement_windows) TO '{}' STORED AS CSV",
            target.display()
        ),
    );
    assert!(!out.status.success(), "DataFusion-syntax COPY TO refused");
    assert!(!target.exists(), "COPY TO wrote no file");
    assert_eq!(
        rows(&psql(
            port,
            PASSWORD,
            "SELECT count(*) FROM engagement_windows"
        )),
        vec!["2"],
        "the history is untouched"
    );
}

/// The running pipeline's own tables: windows before any Parquet exists, late events, dead
/// letters (no payload), messages still waiting for an answer, and who converses with a brand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tables_show_what_the_running_pipeline_knows() {
    use cluetrain_tests::golden::case_dir;
    use cluetrain_tests::{Outgoing, produce};
    let input = unique("psql-live-in");
    create_topic(&input, 1).await;
    // The late_events case: m1 and m3 in the 10:00 window (m3 within the lateness), t1 and t2
    // move the watermark to 11:39, m4 arrives 40 minutes behind it: late. Plus one poison message.
    let case = case_dir("late_events");
    let mut msgs: Vec<Outgoing> = std::fs::read_to_string(case.join("input.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| Outgoing::new("acme", l.as_bytes().to_vec()))
        .collect();
    msgs.push(Outgoing::new("acme", b"{not json".to_vec()));
    produce(&input, &msgs).await;
    let (_run, port) = start_run(&input, PASSWORD, |c| {
        c.arg("--config");
        c.arg(case.join("config.toml"));
        c.env("CLUETRAIN_INGEST__EVENT_TIME_FUTURE_MAX", "3650d");
        c.env("CLUETRAIN_OUTPUTS__PARQUET_LOCATION", "");
        c.env("CLUETRAIN_SQL__REFRESH_INTERVAL", "100ms");
        c.env("CLUETRAIN_SQL__ROWS_MAX", "5");
        c.env("CLUETRAIN_SQL__QUERY_TIMEOUT", "3s");
    });
    // Until every message is processed (the late event and the dead letter are the last) and
    // the open conversations are refreshed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = psql(
            port,
            PASSWORD,
            "SELECT (SELECT count(*) FROM late_events) || '/' || \
             (SELECT sum(messages) FROM dead_letter_counts) || '/' || \
             (SELECT count(*) FROM open_conversations)",
        );
        // open_conversations is refreshed every 100 ms: wait for the refresh after the input.
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1/1/3" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pipeline did not process the input within 60s: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let q = |sql: &str| rows(&psql(port, PASSWORD, sql));
    // No Parquet at all: the 10:00 window comes from memory, at its latest revision.
    // (Its revision depends on how the input was batched: m3 is within the lateness.)
    let windows = q("SELECT brand, window_start, inbound, closed FROM engagement_windows");
    assert_eq!(windows.len(), 1, "{windows:?}");
    assert!(
        windows[0].starts_with("acme|2026-03-02 10:00:00") && windows[0].ends_with("|2|t"),
        "{windows:?}"
    );
    assert_eq!(
        q("SELECT event_id, CAST(behind_watermark_seconds AS BIGINT) FROM late_events"),
        vec!["m4|2400"],
        "m4 (10:59) arrived behind the 11:39 watermark"
    );
    assert_eq!(
        q("SELECT reason, topic, payload_bytes, kafka_offset FROM dead_letters"),
        vec![format!("invalid_json|{input}|9|5")]
    );
    assert_eq!(
        q("SELECT reason, messages FROM dead_letter_counts WHERE messages > 0"),
        vec!["invalid_json|1"]
    );
    // Nobody answered: every linked inbound message waits, the oldest first, aged at the
    // 11:39 watermark. (t2, 11:40, waits in the reorder buffer for the watermark to pass it.)
    assert_eq!(
        q("SELECT event_id, department, CAST(age_seconds AS BIGINT) FROM open_conversations"),
        vec!["m1|support|5340", "m3|support|2460", "t1|support|2040"]
    );
    let voices = q("SELECT author_id, conversations, turns, rank FROM voices \
                    WHERE brand = 'acme' AND day = DATE '2026-03-02' ORDER BY rank");
    assert_eq!(
        voices,
        vec!["u1|1|1|1", "u2|1|1|2", "u3|1|1|3"],
        "ties ranked by author id"
    );
    // Every query is capped (sql.rows_max = 5) and stopped at sql.query_timeout (3 s).
    assert_eq!(
        q("SELECT x FROM unnest(range(1, 1000)) AS t(x)").len(),
        5,
        "rows_max caps what a query returns"
    );
    let started = Instant::now();
    let out = psql(
        port,
        PASSWORD,
        "SELECT count(*) FROM unnest(range(1, 200000)) AS a(x) \
         CROSS JOIN unnest(range(1, 200000)) AS b(y)",
    );
    assert!(
        !out.status.success(),
        "a 4e10-row join cannot finish in 3 s"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sql.query_timeout"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopped near the timeout, not run to the end"
    );
    // The live tables are read-only like the rest.
    let out = psql(port, PASSWORD, "DELETE FROM open_conversations");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
}

/// With no password configured (allowed on loopback only), psql connects without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_on_loopback_means_no_prompt() {
    let input = unique("psql-trust-in");
    create_topic(&input, 1).await;
    let (_run, port) = start_run(&input, "", |c| {
        c.env("CLUETRAIN_OUTPUTS__PARQUET_LOCATION", "");
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = psql(port, "", "SELECT count(*) FROM dead_letter_counts");
        if out.status.success() {
            assert_eq!(rows(&out), vec!["6"], "one row per reject reason");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection without a password: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
