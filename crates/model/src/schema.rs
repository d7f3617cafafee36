//! The Arrow schema of decoded events, and the builder that fills it.
//!
//! Column names flatten the JSON (`author.id` becomes `author_id`) so that SQL over the batches
//! needs no struct access. Two columns are not in the JSON: `kafka_partition` and
//! `kafka_offset`, which say where the event came from; later stages key state by partition and
//! checkpoints by offset.

use std::sync::{Arc, OnceLock};

use arrow_array::RecordBatch;
use arrow_array::builder::{
    BooleanBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::{EventRef, ModelError};

/// Column names of [`event_schema`], in order. Use these instead of string literals.
pub mod col {
    #![allow(missing_docs)]
    pub const EVENT_ID: &str = "event_id";
    pub const PLATFORM: &str = "platform";
    pub const KIND: &str = "kind";
    pub const CREATED_AT: &str = "created_at";
    pub const BRAND: &str = "brand";
    pub const AUTHOR_ID: &str = "author_id";
    pub const AUTHOR_HANDLE: &str = "author_handle";
    pub const AUTHOR_IS_ORG: &str = "author_is_org";
    pub const AUTHOR_FOLLOWERS: &str = "author_followers";
    pub const AUTHOR_STAKEHOLDER: &str = "author_stakeholder";
    pub const CONVERSATION_ID: &str = "conversation_id";
    pub const IN_REPLY_TO: &str = "in_reply_to";
    pub const TEXT: &str = "text";
    pub const LANG: &str = "lang";
    pub const KAFKA_PARTITION: &str = "kafka_partition";
    pub const KAFKA_OFFSET: &str = "kafka_offset";
}

/// The time zone of every timestamp column: event times are UTC instants.
pub const TIMESTAMP_TZ: &str = "UTC";

/// The Arrow schema of a batch of decoded events (shared, built once).
pub fn event_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(col::EVENT_ID, DataType::Utf8, false),
                Field::new(col::PLATFORM, DataType::Utf8, false),
                Field::new(col::KIND, DataType::Utf8, false),
                Field::new(
                    col::CREATED_AT,
                    DataType::Timestamp(TimeUnit::Microsecond, Some(TIMESTAMP_TZ.into())),
                    false,
                ),
                Field::new(col::BRAND, DataType::Utf8, false),
                Field::new(col::AUTHOR_ID, DataType::Utf8, false),
                Field::new(col::AUTHOR_HANDLE, DataType::Utf8, true),
                Field::new(col::AUTHOR_IS_ORG, DataType::Boolean, false),
                // Int64, not UInt64: Postgres clients and most BI tools have no unsigned types.
                Field::new(col::AUTHOR_FOLLOWERS, DataType::Int64, true),
                Field::new(col::AUTHOR_STAKEHOLDER, DataType::Utf8, true),
                Field::new(col::CONVERSATION_ID, DataType::Utf8, true),
                Field::new(col::IN_REPLY_TO, DataType::Utf8, true),
                Field::new(col::TEXT, DataType::Utf8, false),
                Field::new(col::LANG, DataType::Utf8, true),
                Field::new(col::KAFKA_PARTITION, DataType::Int32, false),
                Field::new(col::KAFKA_OFFSET, DataType::Int64, false),
            ]))
        })
        .clone()
}

/// Appends validated events column by column and finishes them into a `RecordBatch`.
///
/// Reusable: [`EventBatchBuilder::finish`] leaves it empty and ready for the next batch.
pub struct EventBatchBuilder {
    event_id: StringBuilder,
    platform: StringBuilder,
    kind: StringBuilder,
    created_at: TimestampMicrosecondBuilder,
    brand: StringBuilder,
    author_id: StringBuilder,
    author_handle: StringBuilder,
    author_is_org: BooleanBuilder,
    author_followers: Int64Builder,
    author_stakeholder: StringBuilder,
    conversation_id: StringBuilder,
    in_reply_to: StringBuilder,
    text: StringBuilder,
    lang: StringBuilder,
    kafka_partition: Int32Builder,
    kafka_offset: Int64Builder,
    rows: usize,
}

impl EventBatchBuilder {
    /// A builder with room for `rows` events before it reallocates.
    pub fn with_capacity(rows: usize) -> Self {
        let s = |bytes_per_row: usize| StringBuilder::with_capacity(rows, rows * bytes_per_row);
        EventBatchBuilder {
            event_id: s(24),
            platform: s(8),
            kind: s(8),
            created_at: TimestampMicrosecondBuilder::with_capacity(rows)
                .with_timezone(TIMESTAMP_TZ),
            brand: s(12),
            author_id: s(16),
            author_handle: s(16),
            author_is_org: BooleanBuilder::with_capacity(rows),
            author_followers: Int64Builder::with_capacity(rows),
            author_stakeholder: s(8),
            conversation_id: s(24),
            in_reply_to: s(24),
            text: s(120),
            lang: s(2),
            kafka_partition: Int32Builder::with_capacity(rows),
            kafka_offset: Int64Builder::with_capacity(rows),
            rows: 0,
        }
    }

    /// The event time (µs) of the last event appended since the last
    /// [`EventBatchBuilder::finish`].
    pub fn last_created_at(&self) -> Option<i64> {
        self.created_at.values_slice().last().copied()
    }

    /// Rows appended since the last [`EventBatchBuilder::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when nothing was appended since the last finish.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one event read from `partition` at `offset`.
    pub fn append(&mut self, e: &EventRef<'_>, partition: i32, offset: i64) {
        self.event_id.append_value(e.event_id);
        self.platform.append_value(e.platform);
        self.kind.append_value(e.kind.as_str());
        self.created_at.append_value(e.created_at_micros);
        self.brand.append_value(e.brand);
        self.author_id.append_value(e.author.id);
        self.author_handle.append_option(e.author.handle);
        self.author_is_org.append_value(e.author.is_org);
        // Follower counts above i64::MAX do not exist; saturate rather than wrap.
        self.author_followers.append_option(
            e.author
                .followers
                .map(|f| i64::try_from(f).unwrap_or(i64::MAX)),
        );
        self.author_stakeholder
            .append_option(e.author.stakeholder.map(|s| s.as_str()));
        self.conversation_id.append_option(e.conversation_id);
        self.in_reply_to.append_option(e.in_reply_to);
        self.text.append_value(e.text);
        self.lang.append_option(e.lang);
        self.kafka_partition.append_value(partition);
        self.kafka_offset.append_value(offset);
        self.rows += 1;
    }

    /// Finishes the appended rows into a batch with [`event_schema`] and resets the builder.
    pub fn finish(&mut self) -> Result<RecordBatch, ModelError> {
        self.rows = 0;
        let columns: Vec<arrow_array::ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.platform.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.created_at.finish()),
            Arc::new(self.brand.finish()),
            Arc::new(self.author_id.finish()),
            Arc::new(self.author_handle.finish()),
            Arc::new(self.author_is_org.finish()),
            Arc::new(self.author_followers.finish()),
            Arc::new(self.author_stakeholder.finish()),
            Arc::new(self.conversation_id.finish()),
            Arc::new(self.in_reply_to.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.lang.finish()),
            Arc::new(self.kafka_partition.finish()),
            Arc::new(self.kafka_offset.finish()),
        ];
        Ok(RecordBatch::try_new(event_schema(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthorRef, EventKind, Stakeholder};
    use arrow_array::cast::AsArray;

    fn event(id: &str) -> EventRef<'_> {
        EventRef {
            event_id: id,
            platform: "x",
            kind: EventKind::Reply,
            created_at_micros: 1_700_000_000_000_000,
            brand: "acme",
            author: AuthorRef {
                id: "u1",
                handle: Some("jo"),
                is_org: false,
                followers: Some(u64::MAX),
                stakeholder: Some(Stakeholder::Press),
            },
            conversation_id: None,
            in_reply_to: Some("p1"),
            text: "hello",
            lang: None,
        }
    }

    #[test]
    fn builder_fills_every_column_and_resets() {
        let mut b = EventBatchBuilder::with_capacity(2);
        b.append(&event("a"), 3, 10);
        b.append(&event("b"), 3, 11);
        let batch = b.finish().unwrap();
        assert_eq!(batch.schema(), event_schema());
        assert_eq!(batch.num_rows(), 2);
        let ids = batch.column(0).as_string::<i32>();
        assert_eq!(ids.value(1), "b");
        let followers = batch
            .column_by_name(col::AUTHOR_FOLLOWERS)
            .unwrap()
            .as_primitive::<arrow_array::types::Int64Type>();
        assert_eq!(
            followers.value(0),
            i64::MAX,
            "u64 followers saturate instead of wrapping"
        );
        let stake = batch
            .column_by_name(col::AUTHOR_STAKEHOLDER)
            .unwrap()
            .as_string::<i32>();
        assert_eq!(stake.value(0), "press");
        assert!(
            batch
                .column_by_name(col::CONVERSATION_ID)
                .unwrap()
                .is_null(0)
        );
        assert!(b.is_empty());
        assert_eq!(b.finish().unwrap().num_rows(), 0);
    }
}
