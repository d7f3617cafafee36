//! The output edge: window records, late events and department forwards to Kafka, and window
//! records to Parquet.
//!
//! Kafka outputs are awaited: the pipeline acknowledges a micro-batch only after everything it
//! produced (records, late events, forwards) is delivered. Parquet files are written
//! atomically (each file is one object-store `put`, so a reader never sees half a file).

pub mod kafka;
pub mod parquet;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use model::schema::col;
use serde_json::{Map, Value, json};

/// Row `row` of a decoded (or enriched) event batch as its schema JSON
/// (`schemas/social-event.v1.json`), so that late events and forwarded complaints can be read
/// by anything that reads the input topic.
pub fn event_json(batch: &RecordBatch, row: usize) -> Value {
    let s = |name: &str| -> Option<String> {
        let c = batch.column_by_name(name)?;
        let a = c.as_string_opt::<i32>()?;
        (row < a.len() && a.is_valid(row)).then(|| a.value(row).to_string())
    };
    let created_at = batch
        .column_by_name(col::CREATED_AT)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>().cloned())
        .filter(|a| row < a.len())
        .and_then(|a| chrono::DateTime::<chrono::Utc>::from_timestamp_micros(a.value(row)))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    let is_org = batch
        .column_by_name(col::AUTHOR_IS_ORG)
        .and_then(|c| c.as_boolean_opt().cloned())
        .filter(|a| row < a.len())
        .is_some_and(|a| a.value(row));
    let followers = batch
        .column_by_name(col::AUTHOR_FOLLOWERS)
        .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
        .filter(|a| row < a.len() && a.is_valid(row))
        .map(|a| a.value(row));
    let mut author = Map::new();
    author.insert("id".into(), json!(s(col::AUTHOR_ID)));
    author.insert("is_org".into(), json!(is_org));
    if let Some(h) = s(col::AUTHOR_HANDLE) {
        author.insert("handle".into(), json!(h));
    }
    if let Some(f) = followers {
        author.insert("followers".into(), json!(f));
    }
    if let Some(st) = s(col::AUTHOR_STAKEHOLDER) {
        author.insert("stakeholder".into(), json!(st));
    }
    let mut e = Map::new();
    e.insert("event_id".into(), json!(s(col::EVENT_ID)));
    e.insert("platform".into(), json!(s(col::PLATFORM)));
    e.insert("kind".into(), json!(s(col::KIND)));
    e.insert("created_at".into(), json!(created_at));
    e.insert("brand".into(), json!(s(col::BRAND)));
    e.insert("author".into(), Value::Object(author));
    for (name, key) in [
        (col::CONVERSATION_ID, "conversation_id"),
        (col::IN_REPLY_TO, "in_reply_to"),
        (col::LANG, "lang"),
    ] {
        if let Some(v) = s(name) {
            e.insert(key.into(), json!(v));
        }
    }
    e.insert("text".into(), json!(s(col::TEXT).unwrap_or_default()));
    Value::Object(e)
}
