//! `cluetrain sql` over a Parquet history: the analyst's view of the golden `basic` case
//! (latest revision per window, every revision, departments), and the lock-down: statements
//! that write, create or read other files are refused and leave nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use cluetrain_tests::cluetrain_bin;
use cluetrain_tests::golden::write_history;

fn sql(config: &Path, format: &str, query: &str) -> Output {
    Command::new(cluetrain_bin())
        .args(["sql", "--format", format, "--config"])
        .arg(config)
        .arg(query)
        .output()
        .unwrap()
}

fn history() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = rt.block_on(write_history("basic", &dir.path().join("data")));
    assert_eq!(n, 3, "basic: two revisions of 10:00, one of 11:00");
    let config = dir.path().join("cluetrain.toml");
    std::fs::write(
        &config,
        format!(
            "[outputs]\nparquet_location = {:?}\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    (dir, config)
}

#[test]
fn analysts_read_the_latest_revision_of_every_window() {
    let (_dir, config) = history();
    let out = sql(
        &config,
        "csv",
        "SELECT brand, window_start, revision, final, inbound, answered, response_rate, \
         first_response_median_seconds, first_response_p90_seconds, backlog_expired_unanswered \
         FROM engagement_windows ORDER BY window_start",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows.len(), 3, "header + one row per window: {stdout}");
    // The 10:00 window's final revision (2): hand-checked in tests/data/windows/README.md.
    assert!(
        rows[1].starts_with("acme,2026-03-02T10:00:00Z,2,true,5,2,0.4,1500.0,1740.0,3"),
        "{}",
        rows[1]
    );
    assert!(
        rows[2].starts_with("acme,2026-03-02T11:00:00Z,1,true,1,0,0.0,,,1"),
        "{}",
        rows[2]
    );

    // Every revision stays queryable.
    let out = sql(
        &config,
        "json",
        "SELECT count(*) AS n FROM engagement_window_revisions",
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"n":3}"#);

    // Departments: billing got the refund complaint and answered it in 30 minutes.
    let out = sql(
        &config,
        "csv",
        "SELECT department, inbound, negative_inbound, answered, first_response_median_seconds \
         FROM engagement_window_departments WHERE window_start = '2026-03-02T10:00:00Z' \
         ORDER BY department",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec![
            "department,inbound,negative_inbound,answered,first_response_median_seconds",
            "billing,1,1,1,1800.0",
            "support,4,1,1,1200.0",
        ]
    );

    // A table for people.
    let out = sql(
        &config,
        "table",
        "SELECT brand, inbound FROM engagement_windows LIMIT 1",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("| brand | inbound |"));
}

#[test]
fn statements_that_write_or_touch_files_are_refused() {
    let (dir, config) = history();
    let target = dir.path().join("stolen.csv");
    for statement in [
        "INSERT INTO engagement_window_revisions SELECT * FROM engagement_window_revisions"
            .to_string(),
        "DROP VIEW engagement_windows".to_string(),
        "CREATE TABLE t AS SELECT 1".to_string(),
        format!(
            "CREATE EXTERNAL TABLE passwd (line VARCHAR) STORED AS CSV LOCATION '{}'",
            "/etc/passwd"
        ),
        format!(
            "COPY (SELECT * FROM engagement_windows) TO '{}' STORED AS CSV",
            target.display()
        ),
        "SET datafusion.execution.batch_size = 1".to_string(),
        "DELETE FROM engagement_window_revisions".to_string(),
    ] {
        let out = sql(&config, "csv", &statement);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(65),
            "{statement}: must be refused; stdout {} stderr {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(stderr.contains("error"), "{statement}: {stderr}");
    }
    assert!(!target.exists(), "COPY TO wrote no file");
    // The history is untouched.
    let out = sql(
        &config,
        "json",
        "SELECT count(*) AS n FROM engagement_windows",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"n":2}"#);
}
