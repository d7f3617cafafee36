//! `cluetrain replay` as users run it: the hand-written "Customer Support on Twitter" sample
//! mapped to events (brands, links, kinds, threads), malformed rows reported by line, the JSONL
//! format, header errors, and producing to the real broker keyed by brand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use cluetrain_tests::{brokers, cluetrain_bin, create_topic, read_all, unique};
use rdkafka::Message;
use serde_json::Value;

fn cluetrain() -> Command {
    let mut c = Command::new(cluetrain_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("CLUETRAIN_") {
            c.env_remove(k);
        }
    }
    c.env("CLUETRAIN_LOG__FILTER", "warn");
    c
}

fn sample() -> PathBuf {
    cluetrain_tests::package_dir().join("data/twcs/sample.csv")
}

fn dry_run(format: &str, file: &std::path::Path) -> Output {
    cluetrain()
        .args(["replay", "--format", format, "--dry-run"])
        .arg(file)
        .output()
        .unwrap()
}

fn events(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The last stderr line: the JSON report.
fn report(stderr: &str) -> Value {
    serde_json::from_str(stderr.lines().last().unwrap()).unwrap()
}

/// (kind, brand, in_reply_to, conversation_id, is_org) by event id, computed by hand from the
/// sample, tests/data/twcs/sample.csv.
fn expected() -> BTreeMap<
    &'static str,
    (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
        bool,
    ),
> {
    BTreeMap::from([
        // A company answering a question, and the follow-ups.
        (
            "twcs-101",
            ("mention", "sprintcare", None, "twcs-101", false),
        ),
        (
            "twcs-102",
            ("reply", "sprintcare", Some("twcs-101"), "twcs-101", true),
        ),
        (
            "twcs-103",
            ("reply", "sprintcare", Some("twcs-102"), "twcs-101", false),
        ),
        (
            "twcs-104",
            ("reply", "sprintcare", Some("twcs-103"), "twcs-101", true),
        ),
        // Mentions Delta, answered by AppleSupport: the mention decides.
        ("twcs-201", ("mention", "Delta", None, "twcs-201", false)),
        (
            "twcs-202",
            ("reply", "AppleSupport", Some("twcs-201"), "twcs-201", true),
        ),
        ("twcs-301", ("post", "Delta", None, "twcs-301", true)),
        // A thread with a multi-line question and follow-ups; 404 replies to an inbound tweet.
        (
            "twcs-401",
            ("mention", "AmericanAir", None, "twcs-401", false),
        ),
        (
            "twcs-402",
            ("reply", "AmericanAir", Some("twcs-401"), "twcs-401", true),
        ),
        (
            "twcs-403",
            ("reply", "AmericanAir", Some("twcs-402"), "twcs-401", false),
        ),
        (
            "twcs-404",
            ("reply", "AmericanAir", Some("twcs-403"), "twcs-401", false),
        ),
        // Answered by nobody; the mention matches case-insensitively.
        (
            "twcs-501",
            ("mention", "sprintcare", None, "twcs-501", false),
        ),
        // No mention: the company that answers it.
        (
            "twcs-601",
            ("mention", "AmazonHelp", None, "twcs-601", false),
        ),
        (
            "twcs-602",
            ("reply", "AmazonHelp", Some("twcs-601"), "twcs-601", true),
        ),
        // Replies to a tweet outside the file.
        (
            "twcs-801",
            ("reply", "sprintcare", Some("twcs-800"), "twcs-801", true),
        ),
        // Float-formatted ids.
        (
            "twcs-1001",
            ("reply", "AmazonHelp", Some("twcs-602"), "twcs-601", false),
        ),
    ])
}

#[test]
fn twcs_sample_maps_to_the_hand_computed_events() {
    let out = dry_run("twcs", &sample());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let evs = events(&out);
    let got: BTreeMap<String, _> = evs
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap().to_string(),
                (
                    e["kind"].as_str().unwrap().to_string(),
                    e["brand"].as_str().unwrap().to_string(),
                    e["in_reply_to"].as_str().map(str::to_string),
                    e["conversation_id"].as_str().unwrap().to_string(),
                    e["author"]["is_org"].as_bool().unwrap(),
                ),
            )
        })
        .collect();
    let want: BTreeMap<String, _> = expected()
        .into_iter()
        .map(|(id, (k, b, r, c, o))| {
            (
                id.to_string(),
                (
                    k.to_string(),
                    b.to_string(),
                    r.map(str::to_string),
                    c.to_string(),
                    o,
                ),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(evs.len(), 16, "no duplicates");

    // File order is kept; fields as the schema wants them; every line passes ingest's checks.
    assert_eq!(evs[0]["event_id"], "twcs-101");
    assert_eq!(evs[15]["event_id"], "twcs-1001");
    let q = &evs[0];
    assert_eq!(q["platform"], "x");
    assert_eq!(q["created_at"], "2017-10-31T22:10:47Z");
    assert_eq!(q["author"]["id"], "115712");
    assert_eq!(q["author"]["handle"], "115712");
    assert_eq!(q["author"]["stakeholder"], "customer");
    assert_eq!(q["text"], "@sprintcare my phone has no signal, again");
    assert!(evs[1]["author"].get("stakeholder").is_none());
    let multi = evs.iter().find(|e| e["event_id"] == "twcs-401").unwrap();
    assert_eq!(
        multi["text"],
        "@AmericanAir flight AA100 delayed 3 hours,\nno update at the gate.\n\"Soon\", they say."
    );
    let decoder = ingest::Decoder::new(ingest::DecodeLimits::schema_only());
    for line in String::from_utf8(out.stdout.clone()).unwrap().lines() {
        decoder.check(Some(line.as_bytes()), 0).unwrap();
    }

    // Malformed rows by their starting line (the multi-line record spans lines 9-11), the
    // unattributable tweet, and the report on stderr.
    assert!(
        stderr.contains("line 20: malformed: created_at \"yesterday\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 21: malformed: 3 columns, expected 7"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 22: malformed: tweet_id \"abc\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 18: unattributable: tweet 701"),
        "{stderr}"
    );
    assert_eq!(stderr.matches(": malformed:").count(), 3, "{stderr}");
    assert_eq!(
        report(&stderr),
        serde_json::json!({"rows": 20, "events": 16, "produced": 16, "failed": 0,
                           "malformed": 3, "unattributable": 1})
    );
}

#[test]
fn jsonl_replays_valid_lines_as_is_and_reports_invalid_ones() {
    let twcs = dry_run("twcs", &sample());
    assert!(twcs.status.success());
    let lines: Vec<String> = String::from_utf8(twcs.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut body = String::new();
    body.push_str(&lines[0]);
    body.push_str("\n{\"event_id\": \"x\"}\n\n"); // line 2: no kind etc.; line 3 blank
    body.push_str(&lines[1]);
    body.push_str("\nnot json at all\n"); // line 5
    body.push_str(&lines[2]);
    body.push('\n');
    std::fs::write(&path, &body).unwrap();

    let out = dry_run("jsonl", &path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(got, vec![&lines[0], &lines[1], &lines[2]]);
    assert!(
        stderr.contains("line 2: malformed: schema_violation"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 5: malformed: invalid_json"),
        "{stderr}"
    );
    assert_eq!(
        report(&stderr),
        serde_json::json!({"rows": 5, "events": 3, "produced": 3, "failed": 0,
                           "malformed": 2, "unattributable": 0})
    );
}

#[test]
fn a_wrong_header_is_an_error_naming_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.csv");
    std::fs::write(&path, "id,user,text\n1,2,hello\n").unwrap();
    let out = dry_run("twcs", &path);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "tweet_id, author_id, inbound, created_at, text, response_tweet_id, \
             in_response_to_tweet_id"
        ),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn twcs_sample_is_produced_keyed_by_brand() {
    let topic = unique("replay");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create_topic(&topic, 3));
    let out = cluetrain()
        .args(["replay", "--format", "twcs", "--topic", &topic])
        .arg(sample())
        .env("CLUETRAIN_KAFKA__BOOTSTRAP_SERVERS", brokers())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rep: Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap();
    assert_eq!(rep["produced"], 16, "{rep}");
    assert_eq!(rep["failed"], 0, "{rep}");

    let msgs = read_all(&topic, 16, Duration::from_secs(30));
    assert_eq!(msgs.len(), 16);
    let want = expected();
    let mut partition_of_brand: BTreeMap<String, i32> = BTreeMap::new();
    for m in &msgs {
        let e: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let id = e["event_id"].as_str().unwrap();
        let key = std::str::from_utf8(m.key().unwrap()).unwrap();
        assert_eq!(key, want[id].1, "{id}");
        assert_eq!(e["brand"], key);
        // One brand, one partition: its conversations stay in order.
        let p = *partition_of_brand
            .entry(key.to_string())
            .or_insert(m.partition());
        assert_eq!(p, m.partition(), "{key}");
    }
}

#[test]
fn undelivered_events_are_counted_and_fail_the_run() {
    // Tansu does not create topics: every delivery fails once message.timeout.ms is over.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[kafka.producer_properties]\n\"message.timeout.ms\" = \"1500\"\n",
    )
    .unwrap();
    let out = cluetrain()
        .args(["replay", "--format", "twcs", "--topic", &unique("missing")])
        .arg("--config")
        .arg(&config)
        .arg(sample())
        .env("CLUETRAIN_KAFKA__BOOTSTRAP_SERVERS", brokers())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let rep: Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap();
    assert_eq!(rep["produced"], 0, "{rep}");
    assert_eq!(rep["failed"], 16, "{rep}");
    assert!(stderr.contains("16 events were not delivered"), "{stderr}");
}
