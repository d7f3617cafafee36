//! The fuzz targets' checks on their seed corpora, with the stable toolchain and no fuzzer.
//!
//! `crates/ingest/fuzz/src/lib.rs` holds the checks the cargo fuzz targets run; this test
//! includes the same file and runs every committed seed (`crates/ingest/fuzz/seeds/<target>/`,
//! minimised crashers among them) through it, so a change that breaks a check, or that makes
//! a seed fail it, shows in `cargo xtask test` and not only in the next fuzz run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    // Read at run time (cargo and nextest set it): a binary reused from a checkout at another path
    // sharing the target directory would otherwise read that checkout's seeds.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 5, "expected seeds in {}", dir.display());
    out
}

fn run_all(target: &str, check: fn(&[u8])) {
    for (path, bytes) in seeds(target) {
        let name = path.display().to_string();
        if let Err(panic) = std::panic::catch_unwind(|| check(&bytes)) {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target} check fails on seed {name}: {msg}");
        }
    }
}

#[test]
fn decode_seeds_pass_the_decode_check() {
    run_all("decode", checks::decode);
}

#[test]
fn twcs_seeds_pass_the_twcs_check() {
    run_all("twcs", checks::twcs);
}

#[test]
fn the_seeds_reach_every_outcome() {
    // Seeds that only hit one branch would leave the others' checks untested here.
    use ingest::twcs::{Index, Item};
    use ingest::{DecodeLimits, Decoder, RejectReason};
    let decoder = Decoder::new(DecodeLimits::schema_only());
    let outcomes: Vec<Option<RejectReason>> = seeds("decode")
        .iter()
        .map(|(_, b)| {
            decoder
                .check(Some(b), checks::NOW_MICROS)
                .err()
                .map(|r| r.reason)
        })
        .collect();
    assert!(
        outcomes.contains(&None),
        "no accepted event among the decode seeds"
    );
    assert!(outcomes.contains(&Some(RejectReason::SchemaViolation)));
    let (mut events, mut malformed, mut unattributable, mut refused) = (0, 0, 0, 0);
    for (_, bytes) in seeds("twcs") {
        let Ok(index) = Index::build(bytes.as_slice()) else {
            refused += 1;
            continue;
        };
        ingest::twcs::replay(bytes.as_slice(), &index, |item| {
            match item {
                Item::Event { .. } => events += 1,
                Item::Malformed { .. } => malformed += 1,
                Item::Unattributable { .. } => unattributable += 1,
            }
            Ok::<(), ingest::twcs::TwcsError>(())
        })
        .unwrap();
    }
    assert!(events > 0 && malformed > 0 && unattributable > 0 && refused > 0);
}
