//! Per-event enrichment: Arrow batches of decoded events in, the same batches with added
//! columns out.
//!
//! The first enrichment is sentiment ([`sentiment`]): an exact, allocation-free
//! implementation of VADER 3.3.2 (Hutto & Gilbert, ICWSM 2014), the standard for short social
//! text. [`sentiment::append_sentiment_columns`] adds its scores and label to a batch;
//! [`sentiment::Scorer`] scores single texts; [`sentiment::score_lines`] is the engine of the
//! `cluetrain sentiment` command. Its output is checked against the Python reference on
//! thousands of texts (`tests/vader_oracle.rs`). [`linkage`] decides each event's role relative to its
//! brand (inbound, response, broadcast, follow-up, other), links replies to their parents (also
//! when they arrive first) and reports first responses and response effects.
//!
//! [`pseudonym`] replaces author ids and handles by keyed HMAC-SHA-256 pseudonyms before
//! anything else sees them (when `privacy.pseudonymise_user_ids` is on).
//!
//! Enrichment never talks to Kafka, HTTP or files: the binary wires it between ingest and
//! aggregate. Errors ([`EnrichError`]) only arise from batches that do not have the event
//! schema, i.e. from wiring mistakes, never from the text itself.

pub mod departments;
pub mod error;
pub mod linkage;
pub mod pseudonym;
pub mod sentiment;

pub use error::EnrichError;
