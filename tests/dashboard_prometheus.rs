//! The Grafana dashboard, proven against a real Prometheus: `cluetrain demo` (embedded broker,
//! generated traffic) serves `/metrics`; Prometheus (Debian's package, installed by
//! `cargo xtask test` if missing, path in `CLUETRAIN_PROMETHEUS`) scrapes it every second;
//! every PromQL expression in deploy/grafana/dashboards/cluetrain.json must parse and return
//! data through Prometheus's HTTP API. The same run checks that every metric documented in
//! docs/prometheus.md is exported and that no label takes a value outside its allowed set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluetrain_tests::cluetrain_bin;
use serde_json::Value;

fn root() -> PathBuf {
    cluetrain_tests::package_dir().join("..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when dropped (also when the test fails).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.0 GET on loopback: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n"
    )
    .ok()?;
    // Bounded: an exposition or query answer of this test is far below 64 MiB.
    const RESPONSE_BYTES_MAX: u64 = 64 << 20;
    let mut raw = Vec::new();
    #[allow(clippy::disallowed_methods)] // bounded by take() just before
    s.take(RESPONSE_BYTES_MAX).read_to_end(&mut raw).ok()?;
    let buf = String::from_utf8(raw).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn prometheus_bin() -> PathBuf {
    match std::env::var_os("CLUETRAIN_PROMETHEUS") {
        Some(p) => p.into(),
        None => panic!(
            "CLUETRAIN_PROMETHEUS is not set: run with `cargo xtask test`, which installs Debian's prometheus package if missing"
        ),
    }
}

/// Every `expr` of the dashboard's panels.
fn dashboard_exprs() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(root().join("deploy/grafana/dashboards/cluetrain.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            assert_eq!(
                t["datasource"]["uid"], "cluetrain-prometheus",
                "panels use the provisioned datasource uid, no ${{DS_...}} placeholders"
            );
            out.push((
                p["title"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert!(out.len() >= 15, "the dashboard has its panels");
    out
}

/// Metric names documented in docs/prometheus.md (first column of its tables): cluetrain's own
/// and the process's (`process_*`).
fn documented_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("docs/prometheus.md")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("cluetrain_") || n.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// Allowed values of each label: the demo's brands (configured) plus `other`, the default
/// department, closed sets of the code.
fn allowed(label: &str, value: &str) -> bool {
    const BRANDS: [&str; 6] = [
        "acme_air",
        "northwind_bank",
        "contoso_mobile",
        "globex_energy",
        "initech_cloud",
        "other",
    ];
    match label {
        "brand" => BRANDS.contains(&value),
        "department" => ["support", "all", ""].contains(&value),
        "platform" => value == "all",
        "age" => ["under_1h", "from_1h_to_4h", "from_4h_to_24h", "over_24h"].contains(&value),
        "window" => value
            .strip_suffix('s')
            .is_some_and(|n| n.parse::<u64>().is_ok()),
        "final" => ["true", "false"].contains(&value),
        "partition" => value.parse::<u32>().is_ok(),
        "le" => value == "+Inf" || value.parse::<f64>().is_ok(),
        "reason" => [
            "invalid_utf8",
            "invalid_json",
            "schema_violation",
            "oversized",
            "timestamp_out_of_range",
            "empty_payload",
        ]
        .contains(&value),
        "trigger" => ["rows", "wait", "end", "shutdown"].contains(&value),
        "result" => ["ok", "error", "restored", "empty", "replayed"].contains(&value),
        "table" => [
            "engagement_windows_live",
            "voices",
            "voice_conversations",
            "open_conversations",
        ]
        .contains(&value),
        "kind" => ["full", "incremental"].contains(&value),
        _ => false,
    }
}

/// (metric family, labels) of every sample in an exposition.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line.split_whitespace().next().unwrap(), ""),
        };
        let mut labels = BTreeMap::new();
        if let Some(end) = rest.find('}') {
            for kv in rest[..end].split("\",").filter(|s| !s.is_empty()) {
                let (k, v) = kv.split_once("=\"").unwrap();
                labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
            }
        }
        out.push((name.to_string(), labels));
    }
    out
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let admin = free_port();
    let prom_port = free_port();
    let tmp = tempfile::tempdir().unwrap();

    // The shipped Prometheus configuration is valid.
    let promtool = prometheus_bin().with_file_name("promtool");
    let out = Command::new(&promtool)
        .args(["check", "config"])
        .arg(root().join("deploy/prometheus/prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let _demo = Guard(
        Command::new(cluetrain_bin())
            .args(["demo", "--duration", "120s", "--plain", "--speedup", "120"])
            .args([
                "--events-per-second",
                "6",
                "--sql-listen",
                "127.0.0.1:0",
                "--admin-listen",
            ])
            .arg(format!("127.0.0.1:{admin}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: cluetrain\n    static_configs:\n      - targets: ['127.0.0.1:{admin}']\n"
        ),
    )
    .unwrap();
    let _prom = Guard(
        Command::new(prometheus_bin())
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // The pipeline becomes ready and its metrics follow the documented contract.
    let deadline = Instant::now() + Duration::from_secs(90);
    let exposition = loop {
        assert!(Instant::now() < deadline, "demo not ready on :{admin}");
        if let Some((200, _)) = get(admin, "/readyz")
            && let Some((200, body)) = get(admin, "/metrics")
            && body.contains("cluetrain_first_response_seconds_bucket")
            && body.contains("cluetrain_kafka_consumer_lag_messages{")
            && body.contains("cluetrain_response_rate{")
            && body.contains("cluetrain_sentiment_shift{")
        {
            break body;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(get(admin, "/livez").map(|r| r.0), Some(200));
    // Every family is declared by a TYPE line (counters without their `_total` suffix), also
    // those that have no series yet (e.g. forwards when no department forwards).
    let exported: BTreeSet<String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let documented = documented_metrics();
    assert!(
        documented.len() >= 30,
        "docs/prometheus.md lists the metrics"
    );
    for m in &documented {
        let base = m.trim_end_matches("_total");
        assert!(
            exported.contains(base),
            "{m} is documented but not exported"
        );
    }
    for m in &exported {
        assert!(
            documented.contains(m) || documented.contains(&format!("{m}_total")),
            "{m} is exported but not documented in docs/prometheus.md"
        );
    }
    for (name, labels) in samples(&exposition) {
        for (k, v) in &labels {
            assert!(
                allowed(k, v),
                "{name}: label {k}={v:?} is outside its allowed set"
            );
        }
    }

    // Prometheus scrapes it; every panel's query parses and returns data.
    let mut pending = dashboard_exprs();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last_error = BTreeMap::new();
    while !pending.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        pending.retain(|(title, expr)| {
            let Some((status, body)) =
                get(prom_port, &format!("/api/v1/query?query={}", encode(expr)))
            else {
                last_error.insert(expr.clone(), "no answer".to_string());
                return true;
            };
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            assert_ne!(status, 400, "{title}: {expr} does not parse: {body}");
            let has_data = v["status"] == "success"
                && v["data"]["result"].as_array().is_some_and(|r| {
                    r.iter()
                        .any(|s| s["value"][1].as_str().is_some_and(|x| x != "NaN"))
                });
            if !has_data {
                last_error.insert(expr.clone(), body);
            }
            !has_data
        });
    }
    assert!(
        pending.is_empty(),
        "queries without data after 90 s: {:#?}",
        pending
            .iter()
            .map(|(t, e)| (t, e, last_error.get(e)))
            .collect::<Vec<_>>()
    );
}
