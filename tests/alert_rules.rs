//! The alerting rules shipped in deploy/prometheus/: valid for Prometheus (`promtool check
//! rules`), firing when they should and not otherwise (`promtool test rules` on
//! alerts.test.yml), and built only from metrics cluetrain exports (docs/prometheus.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

fn dir() -> PathBuf {
    cluetrain_tests::package_dir().join("../deploy/prometheus")
}

fn promtool() -> PathBuf {
    match std::env::var_os("CLUETRAIN_PROMETHEUS") {
        Some(p) => PathBuf::from(p).with_file_name("promtool"),
        None => panic!(
            "CLUETRAIN_PROMETHEUS is not set: run with `cargo xtask test`, which installs Debian's prometheus package (with promtool) if missing"
        ),
    }
}

fn run(args: &[&str]) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_are_valid_and_fire_as_tested() {
    run(&["check", "rules", "alerts.yml"]);
    run(&["test", "rules", "alerts.test.yml"]);
}

#[test]
fn alert_rules_use_only_documented_metrics() {
    let rules = std::fs::read_to_string(dir().join("alerts.yml")).unwrap();
    let docs =
        std::fs::read_to_string(cluetrain_tests::package_dir().join("../docs/prometheus.md"))
            .unwrap();
    let mut used = Vec::new();
    let mut rest = rules.as_str();
    while let Some(i) = rest.find("cluetrain_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        used.push(name);
    }
    assert!(used.len() >= 7, "{used:?}");
    for name in used {
        // Histograms are documented by their family name; counters with _total.
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} (in alerts.yml) is not a documented metric"
        );
    }
}
