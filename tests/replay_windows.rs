//! `cluetrain replay --format twcs` of the small sample, then `cluetrain run --until-end`:
//! the window records' response rates and first-response times equal figures computed by
//! hand from tests/data/twcs/sample.csv (the way an analyst tries cluetrain on history).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use cluetrain_tests::{brokers, cluetrain_bin, create_topic, read_all, unique};
use rdkafka::Message;
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    cluetrain_tests::package_dir().join("data/twcs").join(name)
}

fn env(c: &mut Command, input: &str, windows: &str, late: &str, dead: &str) {
    c.env("CLUETRAIN_KAFKA__BOOTSTRAP_SERVERS", brokers())
        .env("CLUETRAIN_KAFKA__INPUT_TOPIC", input)
        .env("CLUETRAIN_KAFKA__DEAD_LETTER_TOPIC", dead)
        .env("CLUETRAIN_KAFKA__GROUP_ID", unique("replay-win"))
        .env("CLUETRAIN_OUTPUTS__WINDOWS_TOPIC", windows)
        .env("CLUETRAIN_OUTPUTS__LATE_EVENTS_TOPIC", late)
        .env("CLUETRAIN_INGEST__BATCH_WAIT_MAX", "100ms")
        .env("CLUETRAIN_LOG__FILTER", "warn")
        .env("CLUETRAIN_ADMIN__LISTEN", "127.0.0.1:0")
        .env("CLUETRAIN_SQL__LISTEN", "127.0.0.1:0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_history_gives_hand_checkable_windows() {
    let (input, windows, late, dead) = (
        unique("twcs-in"),
        unique("twcs-win"),
        unique("twcs-late"),
        unique("twcs-dlq"),
    );
    for t in [&input, &windows, &late, &dead] {
        create_topic(t, 1).await;
    }
    let mut replay = Command::new(cluetrain_bin());
    replay
        .args(["replay", "--format", "twcs", "--config"])
        .arg(data("windows.toml"))
        .arg(data("sample.csv"));
    env(&mut replay, &input, &windows, &late, &dead);
    let out = replay.output().unwrap();
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = Command::new(cluetrain_bin());
    run.args(["run", "--until-end", "--config"])
        .arg(data("windows.toml"));
    env(&mut run, &input, &windows, &late, &dead);
    let out = run.output().unwrap();
    assert!(
        out.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["late_events"], 0, "the lateness covers the sample");
    let n = usize::try_from(summary["window_records"].as_u64().unwrap()).unwrap();
    let records: Vec<Value> = read_all(&windows, n, Duration::from_secs(30))
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
        .collect();
    assert_eq!(records.len(), n);
    let final_of = |brand: &str, start: &str| -> Value {
        let f: Vec<&Value> = records
            .iter()
            .filter(|r| r["brand"] == brand && r["window_start"] == start && r["final"] == true)
            .collect();
        assert_eq!(
            f.len(),
            1,
            "one final record for {brand} {start}: {records:#?}"
        );
        f[0].clone()
    };
    // sprintcare, 22:00-23:00 on 31 Oct 2017: 101 (22:10:47) answered by 102 (22:14:20) in
    // 213 s; 103 (22:20:01, the customer's reply) answered by 104 (22:25:30) in 329 s.
    let s = final_of("sprintcare", "2017-10-31T22:00:00Z");
    assert_eq!(s["inbound"], 2);
    assert_eq!(s["answered"], 2);
    assert_eq!(s["response_rate"], 1.0);
    let frt = &s["first_response_seconds"];
    assert_eq!(frt["median"], 271.0, "(213 + 329) / 2");
    let p90 = frt["p90"].as_f64().unwrap();
    assert!(
        (p90 - 317.4).abs() < 1e-9,
        "213 + 0.9 × 116 = 317.4, got {p90}"
    );
    assert_eq!(s["reply_share"], 1.0, "two responses, no broadcast");
    // AmericanAir, 08:00-09:00 on 1 Nov: 401 answered by 402 five minutes later.
    let a = final_of("AmericanAir", "2017-11-01T08:00:00Z");
    assert_eq!(
        (a["inbound"].as_u64(), a["answered"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(a["first_response_seconds"]["median"], 300.0);
    // ...and 09:00-10:00: the customer's two follow-ups (403, 404) went unanswered.
    let a9 = final_of("AmericanAir", "2017-11-01T09:00:00Z");
    assert_eq!(a9["inbound"], 2);
    assert_eq!(a9["answered"], 0);
    assert_eq!(a9["backlog"]["expired_unanswered"], 2);
    // AmazonHelp, 11:00-12:00: 601 answered after 20 min, 1001 (11:45) not answered.
    let z = final_of("AmazonHelp", "2017-11-01T11:00:00Z");
    assert_eq!(z["inbound"], 2);
    assert_eq!(z["response_rate"], 0.5);
    assert_eq!(z["first_response_seconds"]["median"], 1200.0);
}
