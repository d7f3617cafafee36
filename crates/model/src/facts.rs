//! Linked facts: what enrichment learned about events, as the Arrow batches the window
//! aggregation consumes.
//!
//! Enrichment (sentiment, linkage, department routing) and aggregation live in different stage
//! crates that do not know each other; this schema is their contract. One row is one fact:
//!
//! * `event`: an event with its role relative to its brand, at its own time `t`;
//! * `answer`: an inbound message got its first response; `t` is the **inbound message's**
//!   time (response figures belong to the window in which the person spoke), with the
//!   first-response time in calendar and business seconds;
//! * `effect`: the author of an answered inbound message wrote again in the same conversation;
//!   `t` is the inbound message's time, `delta` the change in compound score.
//!
//! Grouping columns (`brand`, `platform`, `stakeholder`, `department`) are those of the event,
//! or for `answer` and `effect` those of the inbound message.

use std::sync::{Arc, OnceLock};

use arrow_array::RecordBatch;
use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder, UInt64Builder,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::ModelError;

/// Column names of [`fact_schema`].
pub mod col {
    #![allow(missing_docs)]
    pub const FACT: &str = "fact";
    pub const BRAND: &str = "brand";
    pub const PLATFORM: &str = "platform";
    pub const STAKEHOLDER: &str = "stakeholder";
    pub const DEPARTMENT: &str = "department";
    pub const T: &str = "t";
    pub const ROLE: &str = "role";
    pub const COMPOUND: &str = "compound";
    pub const TO_BROADCAST: &str = "to_broadcast";
    pub const FOLLOWERS: &str = "followers";
    pub const ROOT: &str = "root";
    pub const TURNS: &str = "turns";
    pub const FRT_SECONDS: &str = "frt_seconds";
    pub const FRT_BUSINESS_SECONDS: &str = "frt_business_seconds";
    pub const DELTA: &str = "delta";
}

/// The kind of a fact row (column `fact`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactKind {
    /// An event with its role.
    Event,
    /// A first response to an inbound message.
    Answer,
    /// A response effect (sentiment change after an answer).
    Effect,
}

impl FactKind {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            FactKind::Event => "event",
            FactKind::Answer => "answer",
            FactKind::Effect => "effect",
        }
    }
}

/// The stakeholder value for authors that did not say (column `stakeholder`).
pub const STAKEHOLDER_UNKNOWN: &str = "unknown";

/// The Arrow schema of fact batches (shared, built once).
pub fn fact_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(col::FACT, DataType::Utf8, false),
                Field::new(col::BRAND, DataType::Utf8, false),
                Field::new(col::PLATFORM, DataType::Utf8, false),
                Field::new(col::STAKEHOLDER, DataType::Utf8, false),
                // Set for inbound messages (and their answers / effects); null otherwise.
                Field::new(col::DEPARTMENT, DataType::Utf8, true),
                // µs since the epoch: the event's time, or the inbound message's for answers.
                Field::new(col::T, DataType::Int64, false),
                // Event facts only: inbound, response, broadcast, follow_up, other.
                Field::new(col::ROLE, DataType::Utf8, true),
                Field::new(col::COMPOUND, DataType::Float64, true),
                Field::new(col::TO_BROADCAST, DataType::Boolean, true),
                Field::new(col::FOLLOWERS, DataType::Int64, true),
                // A 64-bit hash of the conversation root id (thread depth counts conversations).
                Field::new(col::ROOT, DataType::UInt64, true),
                Field::new(col::TURNS, DataType::Int32, true),
                // Answer facts only.
                Field::new(col::FRT_SECONDS, DataType::Float64, true),
                Field::new(col::FRT_BUSINESS_SECONDS, DataType::Float64, true),
                // Effect facts only.
                Field::new(col::DELTA, DataType::Float64, true),
            ]))
        })
        .clone()
}

/// Grouping columns shared by every fact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FactKeys<'a> {
    /// Brand.
    pub brand: &'a str,
    /// Platform.
    pub platform: &'a str,
    /// Stakeholder type of the author (`unknown` when absent).
    pub stakeholder: &'a str,
    /// Department of an inbound message.
    pub department: Option<&'a str>,
}

/// An event fact's own columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventFact<'a> {
    /// Its time, µs.
    pub t: i64,
    /// Its role (`inbound`, `response`, ...).
    pub role: &'a str,
    /// VADER compound.
    pub compound: f64,
    /// A public reply to one of the brand's broadcasts.
    pub to_broadcast: bool,
    /// The author's followers, when known.
    pub followers: Option<i64>,
    /// Hash of the conversation root id.
    pub root: u64,
    /// Speaker changes in the conversation so far.
    pub turns: i32,
}

/// Fills fact batches row by row; [`FactBatchBuilder::finish`] leaves it empty for reuse.
pub struct FactBatchBuilder {
    fact: StringBuilder,
    brand: StringBuilder,
    platform: StringBuilder,
    stakeholder: StringBuilder,
    department: StringBuilder,
    t: Int64Builder,
    role: StringBuilder,
    compound: Float64Builder,
    to_broadcast: BooleanBuilder,
    followers: Int64Builder,
    root: UInt64Builder,
    turns: Int32Builder,
    frt: Float64Builder,
    frt_business: Float64Builder,
    delta: Float64Builder,
    rows: usize,
}

impl Default for FactBatchBuilder {
    fn default() -> Self {
        Self::with_capacity(1024)
    }
}

impl FactBatchBuilder {
    /// A builder with room for `rows` facts.
    pub fn with_capacity(rows: usize) -> Self {
        let s = |b: usize| StringBuilder::with_capacity(rows, rows * b);
        FactBatchBuilder {
            fact: s(6),
            brand: s(12),
            platform: s(8),
            stakeholder: s(8),
            department: s(8),
            t: Int64Builder::with_capacity(rows),
            role: s(8),
            compound: Float64Builder::with_capacity(rows),
            to_broadcast: BooleanBuilder::with_capacity(rows),
            followers: Int64Builder::with_capacity(rows),
            root: UInt64Builder::with_capacity(rows),
            turns: Int32Builder::with_capacity(rows),
            frt: Float64Builder::with_capacity(rows),
            frt_business: Float64Builder::with_capacity(rows),
            delta: Float64Builder::with_capacity(rows),
            rows: 0,
        }
    }

    /// Rows appended since the last finish.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was appended since the last finish.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    fn keys(&mut self, kind: FactKind, k: &FactKeys<'_>, t: i64) {
        self.fact.append_value(kind.as_str());
        self.brand.append_value(k.brand);
        self.platform.append_value(k.platform);
        self.stakeholder.append_value(k.stakeholder);
        self.department.append_option(k.department);
        self.t.append_value(t);
        self.rows += 1;
    }

    /// An event with its role.
    pub fn event(&mut self, k: &FactKeys<'_>, e: &EventFact<'_>) {
        self.keys(FactKind::Event, k, e.t);
        self.role.append_value(e.role);
        self.compound.append_value(e.compound);
        self.to_broadcast.append_value(e.to_broadcast);
        self.followers.append_option(e.followers);
        self.root.append_value(e.root);
        self.turns.append_value(e.turns);
        self.frt.append_null();
        self.frt_business.append_null();
        self.delta.append_null();
    }

    /// A first response to the inbound message created at `inbound_t` with keys `k`.
    pub fn answer(&mut self, k: &FactKeys<'_>, inbound_t: i64, frt_s: f64, frt_business_s: f64) {
        self.keys(FactKind::Answer, k, inbound_t);
        self.no_event_columns();
        self.frt.append_value(frt_s);
        self.frt_business.append_value(frt_business_s);
        self.delta.append_null();
    }

    /// A response effect on the inbound message created at `inbound_t` with keys `k`.
    pub fn effect(&mut self, k: &FactKeys<'_>, inbound_t: i64, delta: f64) {
        self.keys(FactKind::Effect, k, inbound_t);
        self.no_event_columns();
        self.frt.append_null();
        self.frt_business.append_null();
        self.delta.append_value(delta);
    }

    fn no_event_columns(&mut self) {
        self.role.append_null();
        self.compound.append_null();
        self.to_broadcast.append_null();
        self.followers.append_null();
        self.root.append_null();
        self.turns.append_null();
    }

    /// The batch of everything appended so far.
    pub fn finish(&mut self) -> Result<RecordBatch, ModelError> {
        self.rows = 0;
        Ok(RecordBatch::try_new(
            fact_schema(),
            vec![
                Arc::new(self.fact.finish()),
                Arc::new(self.brand.finish()),
                Arc::new(self.platform.finish()),
                Arc::new(self.stakeholder.finish()),
                Arc::new(self.department.finish()),
                Arc::new(self.t.finish()),
                Arc::new(self.role.finish()),
                Arc::new(self.compound.finish()),
                Arc::new(self.to_broadcast.finish()),
                Arc::new(self.followers.finish()),
                Arc::new(self.root.finish()),
                Arc::new(self.turns.finish()),
                Arc::new(self.frt.finish()),
                Arc::new(self.frt_business.finish()),
                Arc::new(self.delta.finish()),
            ],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_every_kind_fit_the_schema() {
        let mut b = FactBatchBuilder::with_capacity(4);
        let k = FactKeys {
            brand: "acme",
            platform: "x",
            stakeholder: "customer",
            department: Some("billing"),
        };
        b.event(
            &k,
            &EventFact {
                t: 1,
                role: "inbound",
                compound: -0.4,
                to_broadcast: false,
                followers: None,
                root: 7,
                turns: 0,
            },
        );
        b.answer(&k, 1, 60.0, 30.0);
        b.effect(&k, 1, 0.5);
        assert_eq!(b.len(), 3);
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 3);
        assert!(b.is_empty());
        assert_eq!(batch.schema(), fact_schema());
    }
}
