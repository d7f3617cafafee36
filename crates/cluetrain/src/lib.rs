//! The `cluetrain` binary's library: CLI, configuration loading, wiring of the stages, the
//! traffic generator, file replay and the demo.
//!
//! The stage crates (`ingest`, `enrich`, `aggregate`) do not know each other; this crate is
//! the only place they meet ([`pipeline`]). Kafka security, HTTP and files stay at the edges.

pub mod admin;
pub mod checkpoint;
pub mod cli;
pub mod demo;
pub mod enrichment;
pub mod generate;
pub mod job;
pub mod kafka_sink;
pub mod live_tables;
pub mod metrics;
pub mod outputs;
pub mod pipeline;
pub mod privacy;
pub mod process_metrics;
pub mod replay;
pub mod resources;
mod scoped;
pub mod settings;
pub mod sql;
pub mod sql_limits;
pub mod sql_server;
pub mod stats;
pub mod telemetry;
