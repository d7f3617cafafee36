//! Hostile input through the whole pipeline on the real broker: a large, varied corpus of
//! malformed messages (invalid UTF-8, truncated and deeply nested JSON, huge strings and
//! numbers, wrong types, missing fields, timestamps far in the future or past, control
//! characters, oversized and empty messages, random bytes) mixed with valid traffic and
//! duplicates. The pipeline never stops; every message is either an event or a dead letter
//! with the reason its kind calls for; the counts add up, and the valid traffic still makes
//! its windows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation)] // test data: small counts and byte noise

use std::collections::HashMap;
use std::time::Duration;

use cluetrain::pipeline::{self, Observers};
use cluetrain_tests::{
    Outgoing, committed, config, create_topic, generated, header, produce, read_all, unique,
};
use ingest::dead_letter::header as dlq;
use ingest::source::RunMode;
use rdkafka::Message;
use serde_json::{Value, json};

/// A small deterministic generator (xorshift64*), so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Kinds of hostile message, and the reasons each may be rejected for (empty: accepted).
const KINDS: &[(&str, &[&str])] = &[
    ("invalid_utf8", &["invalid_utf8"]),
    ("truncated", &["invalid_json"]),
    ("deeply_nested", &["invalid_json", "schema_violation"]),
    ("huge_string", &["oversized"]),
    ("huge_number", &["invalid_json", "schema_violation"]),
    ("wrong_type", &["schema_violation"]),
    ("missing_field", &["schema_violation"]),
    ("far_future", &["timestamp_out_of_range"]),
    ("far_past", &["timestamp_out_of_range"]),
    ("raw_control_char", &["invalid_json"]),
    ("escaped_control_char", &[]),
    ("not_an_object", &["invalid_json", "schema_violation"]),
    (
        "random_bytes",
        &["invalid_utf8", "invalid_json", "schema_violation"],
    ),
    ("empty", &["empty_payload"]),
    ("tombstone", &["empty_payload"]),
    ("oversized", &["oversized"]),
    ("duplicate", &[]),
];

fn hostile(kind: &str, valid: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(valid).unwrap();
    let text = |v: &Value| serde_json::to_vec(v).unwrap();
    Some(match kind {
        "invalid_utf8" => {
            let mut b = valid.to_vec();
            let at = b.len() / 2;
            b.insert(at, 0xFF);
            b
        }
        "truncated" => valid[..1 + rng.below(valid.len() - 1)].to_vec(),
        "deeply_nested" => {
            let depth = 1_000 + rng.below(30_000); // under ingest.message_bytes_max
            let mut b = b"{\"event_id\":".to_vec();
            b.extend(std::iter::repeat_n(b'[', depth));
            b.extend(std::iter::repeat_n(b']', depth));
            b.push(b'}');
            b
        }
        "huge_string" => {
            v["text"] = json!("a".repeat(70_000 + rng.below(20_000)));
            text(&v)
        }
        "huge_number" => {
            // A number no f64 or i64 holds, where the schema wants the follower count.
            v["author"]["followers"] = json!(123_456_789);
            String::from_utf8(text(&v))
                .unwrap()
                .replace("123456789", "1e400")
                .into_bytes()
        }
        "wrong_type" => {
            match rng.below(3) {
                0 => v["created_at"] = json!(12345),
                1 => v["kind"] = json!(5),
                _ => v["author"] = json!("someone"),
            }
            text(&v)
        }
        "missing_field" => {
            let field = ["event_id", "created_at", "kind", "brand"][rng.below(4)];
            v.as_object_mut().unwrap().remove(field);
            text(&v)
        }
        "far_future" => {
            v["created_at"] = json!("9999-01-01T00:00:00Z");
            text(&v)
        }
        "far_past" => {
            v["created_at"] = json!("1971-01-01T00:00:00Z");
            text(&v)
        }
        "raw_control_char" => {
            v["text"] = json!("PLACEHOLDER");
            let s = String::from_utf8(text(&v)).unwrap();
            s.replace("PLACEHOLDER", "bell\u{7}here").into_bytes()
        }
        "escaped_control_char" => {
            v["text"] = json!("bell\u{7} nul\u{0} tab\t line\nfeed");
            v["event_id"] = json!(format!("esc-{}", rng.next()));
            text(&v)
        }
        "not_an_object" => match rng.below(4) {
            0 => b"[]".to_vec(),
            1 => b"\"a string\"".to_vec(),
            2 => b"null".to_vec(),
            _ => b"42".to_vec(),
        },
        "random_bytes" => (0..1 + rng.below(300)).map(|_| rng.next() as u8).collect(),
        "empty" => Vec::new(),
        "tombstone" => return None,
        "oversized" => vec![b' '; 70_000],
        "duplicate" => valid.to_vec(),
        other => panic!("unknown kind {other}"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_message_is_an_event_or_a_dead_letter_with_its_reason() {
    let topic = unique("hostile-in");
    let dead = unique("hostile-dlq");
    create_topic(&topic, 2).await;
    create_topic(&dead, 1).await;
    let valid = generated(31, 1_500);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // (message, kind): valid traffic with a hostile message after every second one.
    let mut corpus: Vec<(Outgoing, &str)> = Vec::new();
    for (i, (m, _)) in valid.iter().enumerate() {
        corpus.push((m.clone(), "valid"));
        if i % 2 == 1 {
            let (kind, _) = KINDS[rng.below(KINDS.len())];
            let payload = m.payload.as_deref().unwrap();
            let mut h = Outgoing::new("acme_air", Vec::new());
            h.key = m.key.clone();
            h.payload = hostile(kind, payload, &mut rng);
            h.headers = vec![("hostile-kind".into(), kind.as_bytes().to_vec())];
            corpus.push((h, kind));
        }
    }
    let hostile_count = corpus.iter().filter(|(_, k)| *k != "valid").count();
    assert!(hostile_count >= 700);
    for (kind, _) in KINDS {
        assert!(
            corpus.iter().any(|(_, k)| k == kind),
            "the corpus has {kind}"
        );
    }
    let msgs: Vec<Outgoing> = corpus.iter().map(|(m, _)| m.clone()).collect();
    let coords = produce(&topic, &msgs).await;

    let mut cfg = config(&topic, &dead);
    cfg.ingest.message_bytes_max = 65_536;
    cfg.brands = cluetrain::generate::Generator::new(Default::default()).brand_configs();
    let observers = Observers::default();
    let report = pipeline::run(
        &cfg,
        RunMode::UntilEnd,
        observers.clone(),
        std::future::pending(),
    )
    .await
    .unwrap();

    let accepted: usize = corpus
        .iter()
        .filter(|(_, k)| *k == "valid" || KINDS.iter().any(|(n, r)| n == k && r.is_empty()))
        .count();
    assert_eq!(
        report.events + report.dead_letters,
        corpus.len() as u64,
        "every message is accounted for: {report:?}"
    );
    assert_eq!(report.events, accepted as u64, "{report:?}");
    assert!(
        report.final_records > 0,
        "the valid traffic made its windows"
    );

    // Each rejected message is on the dead-letter topic with a reason its kind allows.
    let letters = read_all(&dead, report.dead_letters as usize, Duration::from_secs(60));
    assert_eq!(letters.len() as u64, report.dead_letters);
    let by_coord: HashMap<(i32, i64), &str> = coords
        .iter()
        .zip(&corpus)
        .map(|(c, (_, k))| (*c, *k))
        .collect();
    let mut per_kind: HashMap<&str, usize> = HashMap::new();
    for l in &letters {
        let p: i32 = header(l, dlq::SOURCE_PARTITION).unwrap().parse().unwrap();
        let o: i64 = header(l, dlq::SOURCE_OFFSET).unwrap().parse().unwrap();
        let kind = by_coord[&(p, o)];
        let reason = header(l, dlq::REASON).unwrap();
        let allowed = KINDS.iter().find(|(n, _)| *n == kind).map(|(_, r)| *r);
        assert!(
            allowed.is_some_and(|r| r.contains(&reason.as_str())),
            "{kind} at {p}/{o} rejected as {reason}: {:?} {}",
            header(l, dlq::DETAIL),
            String::from_utf8_lossy(l.payload().unwrap_or_default())
        );
        assert!(header(l, dlq::DETAIL).is_some_and(|d| !d.is_empty()));
        *per_kind.entry(kind).or_default() += 1;
    }
    for (kind, reasons) in KINDS {
        let sent = corpus.iter().filter(|(_, k)| k == kind).count();
        let rejected = per_kind.get(kind).copied().unwrap_or(0);
        let expected = if reasons.is_empty() { 0 } else { sent };
        assert_eq!(rejected, expected, "{kind}: {sent} sent");
    }
    // Everything was acknowledged: nothing is read twice.
    let total: i64 = committed(&cfg.kafka.group_id, &topic, 2).values().sum();
    assert_eq!(total, corpus.len() as i64);
}
