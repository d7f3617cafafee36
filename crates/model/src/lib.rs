//! The shared contract of cluetrain.
//!
//! Every stage of the pipeline (ingest, enrich, aggregate) speaks in the types defined here and
//! nothing else: a [`SocialEvent`] is what arrives on Kafka (its JSON form is
//! `schemas/social-event.v1.json`), and an Arrow `RecordBatch` with [`schema::event_schema`] is
//! what flows between stages. Stage crates never import each other; they meet in this crate.
//!
//! ```
//! use model::{EventBatchBuilder, SocialEvent};
//!
//! let json = r#"{"event_id":"e1","platform":"x","kind":"mention","created_at":"2026-01-05T10:00:00Z",
//!   "brand":"acme","author":{"id":"u1","is_org":false},"text":"@acme my order is late :("}"#;
//! let event: SocialEvent = serde_json::from_str(json).unwrap();
//! let mut builder = EventBatchBuilder::with_capacity(1);
//! let micros = event.created_at_micros().unwrap();
//! builder.append(&event.as_ref_with_time(micros), 0, 42);
//! let batch = builder.finish().unwrap();
//! assert_eq!(batch.num_rows(), 1);
//! ```

pub mod config;
pub mod event;
pub mod facts;
pub mod schema;
pub mod window_record;

pub use event::{AuthorRef, EventKind, EventRef, SocialAuthor, SocialEvent, Stakeholder};
pub use facts::{FactBatchBuilder, fact_schema};
pub use schema::{EventBatchBuilder, event_schema};
pub use window_record::{WindowKey, WindowRecord};

/// Errors of the model crate. Both are programmer errors on our side (internal), never caused by
/// input data: input is validated before it reaches a builder.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Arrow refused to assemble a batch (column lengths disagree): a bug in a builder.
    #[error("internal: could not assemble an Arrow batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}
