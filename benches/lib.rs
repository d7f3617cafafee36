//! Criterion benchmarks for cluetrain, one bench target per pipeline stage.
//!
//! Run them all with `cargo xtask bench` (or `cargo bench -p cluetrain-benches`). Each reports
//! throughput in elements (events or texts) per second on one core, so a regression shows which
//! stage it is in. The inputs come from the deterministic generator, so runs are comparable.
