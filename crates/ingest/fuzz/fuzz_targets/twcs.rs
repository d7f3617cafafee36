//! Arbitrary bytes as a twcs CSV file through both replay passes (`ingest_fuzz::twcs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingest_fuzz::twcs(data));
