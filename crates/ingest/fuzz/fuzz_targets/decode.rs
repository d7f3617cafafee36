//! Arbitrary bytes as a Kafka message payload through the decoder (`ingest_fuzz::decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ingest_fuzz::decode(data));
