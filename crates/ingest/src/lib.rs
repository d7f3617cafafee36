//! Kafka ingest: the edge where bytes from the input topic become Arrow batches.
//!
//! ```text
//!  input topic ──► [Source thread: poll ─► decode ─► EventBatchBuilder] ──► IngestBatch queue
//!                          ▲                    │ bad input                      (bounded)
//!                          │ acks (offsets)     ▼                                    │
//!                          └──────────── pipeline ◄── Rejected ──► DeadLetterSink ◄──┘
//! ```
//!
//! * [`decode`] turns one message payload into a validated event or a [`decode::Reject`] with a
//!   reason. It never panics, whatever the bytes.
//! * [`source`] runs an rdkafka consumer-group member on its own thread and closes micro-batches
//!   by row count or wait time ([`model::config::IngestConfig`]). Offsets are stored only when the
//!   pipeline acknowledges a batch whose results are durable, and committed from those stored
//!   offsets: auto-commit can never run ahead of processing.
//! * [`dead_letter`] produces rejected messages, original bytes and headers plus the reason and
//!   the source coordinates, to the dead-letter topic; a batch is acknowledged only after its
//!   dead letters are delivered, so bad input is never lost either.
//! * [`metrics`] counts all of it (Prometheus, via `prometheus-client`).
//! * [`twcs`] reads the "Customer Support on Twitter" CSV into events, for `cluetrain replay`:
//!   the other way events enter the pipeline, and light enough to fuzz (see its docs).

mod align;
pub mod dead_letter;
pub mod decode;
pub mod error;
pub mod kafka;
pub mod metrics;
pub mod source;
pub mod twcs;

pub use dead_letter::DeadLetterSink;
pub use decode::{DecodeLimits, Decoder, Reject, RejectReason};
pub use error::IngestError;
pub use metrics::IngestMetrics;
pub use source::{
    Acker, IngestBatch, PartitionOffset, Rejected, RunMode, SourceHandle, SourceSummary,
};
