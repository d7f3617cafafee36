//! The event contract: every example in `schemas/examples/` is judged the same way by the JSON
//! Schema (with the `jsonschema` crate, formats asserted) and by cluetrain's decoder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use ingest::{DecodeLimits, Decoder};

fn root() -> PathBuf {
    cluetrain_tests::package_dir().join("..")
}

fn schema() -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("schemas/social-event.v1.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn examples(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("schemas/examples").join(kind);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() >= 5, "expected examples in {}", dir.display());
    out
}

#[test]
fn the_schema_is_valid_draft_2020_12_and_documents_every_field() {
    let s = schema();
    jsonschema::meta::validate(&s).expect("valid JSON Schema");
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    fn walk(path: &str, v: &serde_json::Value) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (name, p) in props {
                let desc = p.get("description").and_then(|d| d.as_str()).unwrap_or("");
                assert!(desc.len() > 20, "{path}{name} needs a real description");
                walk(&format!("{path}{name}."), p);
            }
        }
    }
    walk("", &s);
}

#[test]
fn schema_and_decoder_accept_exactly_the_valid_examples() {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema())
        .unwrap();
    let decoder = Decoder::new(DecodeLimits::schema_only());
    for (name, bytes) in examples("valid") {
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "schema rejects valid/{name}: {errors:?}");
        decoder
            .check(Some(&bytes), 0)
            .unwrap_or_else(|e| panic!("decoder rejects valid/{name}: {e:?}"));
    }
    for (name, bytes) in examples("invalid") {
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(!validator.is_valid(&json), "schema accepts invalid/{name}");
        let err = decoder
            .check(Some(&bytes), 0)
            .expect_err(&format!("decoder accepts invalid/{name}"));
        assert_eq!(
            err.reason,
            ingest::RejectReason::SchemaViolation,
            "invalid/{name}: {err:?}"
        );
    }
}

#[test]
fn generated_events_follow_the_schema() {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema())
        .unwrap();
    for m in cluetrain::generate::Generator::new(Default::default()).take(2000) {
        let json: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{json}: {errors:?}");
    }
}

#[test]
fn the_window_record_schema_is_valid_draft_2020_12() {
    let text = std::fs::read_to_string(root().join("schemas/engagement-window.v1.json")).unwrap();
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::meta::validate(&s).expect("valid JSON Schema");
}

/// Every window record of the golden cases (the serde form the pipeline publishes) follows
/// the published schema, and a record missing a required field or with a wrong type does not.
#[test]
fn window_records_follow_their_schema() {
    let text = std::fs::read_to_string(root().join("schemas/engagement-window.v1.json")).unwrap();
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&s)
        .unwrap();
    let dir = root().join("tests/data/windows");
    let mut checked = 0;
    for case in std::fs::read_dir(&dir).unwrap() {
        let path = case.unwrap().path().join("expected.jsonl");
        let Ok(lines) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in lines.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v.get("window_start").is_none() {
                continue;
            }
            let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            checked += 1;
            let mut missing = v.clone();
            missing.as_object_mut().unwrap().remove("closed");
            assert!(
                !validator.is_valid(&missing),
                "a record without `closed` is refused"
            );
            let mut wrong = v.clone();
            wrong["inbound"] = serde_json::json!("five");
            assert!(
                !validator.is_valid(&wrong),
                "a non-integer count is refused"
            );
        }
    }
    assert!(checked >= 20, "golden records checked: {checked}");
}
