//! Sentiment as Arrow columns: the enrich stage's batch-in, batch-out entry point.
//!
//! Column at a time: one pass over the text column fills five builders, then the batch is
//! reassembled with the new columns appended. The input arrays are shared, not copied.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder};
use arrow_array::{Array, ArrayRef, LargeStringArray, RecordBatch, StringArray, StringViewArray};
use arrow_schema::{DataType, Field, FieldRef, Schema};
use model::schema::col::TEXT;

use super::{Scorer, Scores, col};
use crate::EnrichError;

/// Returns `batch` with the sentiment of its `text` column appended as [`col::NEG`],
/// [`col::NEU`], [`col::POS`], [`col::COMPOUND`] (Float64, non-null) and [`col::LABEL`] (Utf8,
/// non-null: "positive", "neutral" or "negative", see [`super::label`]).
///
/// The text column may be Utf8 (as in `model::event_schema`), LargeUtf8 or Utf8View. A null text
/// (the event schema forbids them) is scored as the empty text: all zeros, "neutral". Schema
/// metadata is kept. Scores on the calling thread; [`append_sentiment_columns_parallel`]
/// spreads a batch over threads.
///
/// # Errors
/// [`EnrichError::MissingColumn`] or [`EnrichError::ColumnType`] if there is no readable text
/// column, [`EnrichError::DuplicateColumn`] if the sentiment columns are already there (all
/// caller errors); [`EnrichError::Arrow`] if Arrow rejects the result (a bug here).
pub fn append_sentiment_columns(batch: &RecordBatch) -> Result<RecordBatch, EnrichError> {
    append_sentiment_columns_parallel(batch, 1)
}

/// Rows per thread below which [`append_sentiment_columns_parallel`] uses fewer threads:
/// starting a thread costs tens of µs, scoring a text ~10 µs, so below this a thread does not
/// pay for itself.
pub const PARALLEL_ROWS_MIN: usize = 256;

/// [`append_sentiment_columns`] with the texts split into up to `threads` contiguous ranges,
/// each scored on its own (scoped) thread with its own [`Scorer`]; the columns are the same,
/// row for row, whatever `threads` is (VADER scores each text on its own). `threads` 0 or 1,
/// or a batch under 2 × [`PARALLEL_ROWS_MIN`] rows, scores on the calling thread.
///
/// # Errors
/// As [`append_sentiment_columns`].
pub fn append_sentiment_columns_parallel(
    batch: &RecordBatch,
    threads: usize,
) -> Result<RecordBatch, EnrichError> {
    let schema = batch.schema();
    for name in col::ALL {
        if schema.column_with_name(name).is_some() {
            return Err(EnrichError::DuplicateColumn { column: name });
        }
    }
    let text = batch
        .column_by_name(TEXT)
        .ok_or(EnrichError::MissingColumn { column: TEXT })?;
    let rows = batch.num_rows();
    let any = text.as_any();
    let columns = if let Some(texts) = any.downcast_ref::<StringArray>() {
        score_rows(rows, threads, |i| texts.is_valid(i).then(|| texts.value(i)))
    } else if let Some(texts) = any.downcast_ref::<LargeStringArray>() {
        score_rows(rows, threads, |i| texts.is_valid(i).then(|| texts.value(i)))
    } else if let Some(texts) = any.downcast_ref::<StringViewArray>() {
        score_rows(rows, threads, |i| texts.is_valid(i).then(|| texts.value(i)))
    } else {
        return Err(EnrichError::ColumnType {
            column: TEXT,
            found: text.data_type().clone(),
            expected: "Utf8, LargeUtf8 or Utf8View",
        });
    };

    let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    for (name, array) in col::ALL.into_iter().zip(columns.finish()) {
        fields.push(Arc::new(Field::new(name, array.data_type().clone(), false)));
        arrays.push(array);
    }
    let schema = Schema::new_with_metadata(fields, schema.metadata().clone());
    Ok(RecordBatch::try_new(Arc::new(schema), arrays)?)
}

/// Scores rows `0..rows` (`text(i)` is row i's text) into the five columns, on up to
/// `threads` threads.
fn score_rows<'a, F>(rows: usize, threads: usize, text: F) -> SentimentBuilders
where
    F: Fn(usize) -> Option<&'a str> + Sync,
{
    let threads = threads.min(rows / PARALLEL_ROWS_MIN).max(1);
    let mut columns = SentimentBuilders::with_capacity(rows);
    if threads == 1 {
        let mut scorer = Scorer::new();
        (0..rows).for_each(|i| columns.append(scorer.score(text(i).unwrap_or(""))));
        return columns;
    }
    let chunk = rows.div_ceil(threads);
    let text = &text;
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..rows)
            .step_by(chunk)
            .map(|from| {
                s.spawn(move || {
                    let mut scorer = Scorer::new();
                    (from..(from + chunk).min(rows))
                        .map(|i| scorer.score(text(i).unwrap_or("")))
                        .collect::<Vec<Scores>>()
                })
            })
            .collect();
        // In row order: the ranges are contiguous and were spawned in order.
        for part in parts {
            match part.join() {
                Ok(scores) => scores.into_iter().for_each(|sc| columns.append(sc)),
                // A panic while scoring is a bug in the scorer: raise it here, as the
                // single-threaded path would.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    columns
}

/// The five output columns under construction.
struct SentimentBuilders {
    neg: Float64Builder,
    neu: Float64Builder,
    pos: Float64Builder,
    compound: Float64Builder,
    label: StringBuilder,
}

impl SentimentBuilders {
    fn with_capacity(rows: usize) -> Self {
        SentimentBuilders {
            neg: Float64Builder::with_capacity(rows),
            neu: Float64Builder::with_capacity(rows),
            pos: Float64Builder::with_capacity(rows),
            compound: Float64Builder::with_capacity(rows),
            // "positive"/"negative" are 8 bytes, "neutral" 7.
            label: StringBuilder::with_capacity(rows, rows * 8),
        }
    }

    #[inline]
    fn append(&mut self, s: Scores) {
        self.neg.append_value(s.neg);
        self.neu.append_value(s.neu);
        self.pos.append_value(s.pos);
        self.compound.append_value(s.compound);
        self.label.append_value(s.label().as_str());
    }

    /// The arrays in [`col::ALL`] order.
    fn finish(mut self) -> [ArrayRef; 5] {
        [
            Arc::new(self.neg.finish()),
            Arc::new(self.neu.finish()),
            Arc::new(self.pos.finish()),
            Arc::new(self.compound.finish()),
            Arc::new(self.label.finish()),
        ]
    }
}

/// The Arrow type of each added column, in [`col::ALL`] order (for schema declarations).
pub fn sentiment_fields() -> [Field; 5] {
    [
        Field::new(col::NEG, DataType::Float64, false),
        Field::new(col::NEU, DataType::Float64, false),
        Field::new(col::POS, DataType::Float64, false),
        Field::new(col::COMPOUND, DataType::Float64, false),
        Field::new(col::LABEL, DataType::Utf8, false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int32Array};
    use std::collections::HashMap;

    fn batch(texts: ArrayRef) -> RecordBatch {
        let schema = Schema::new_with_metadata(
            vec![
                Field::new("id", DataType::Int32, false),
                Field::new(TEXT, texts.data_type().clone(), true),
            ],
            HashMap::from([("k".to_string(), "v".to_string())]),
        );
        let ids = Int32Array::from_iter_values(0..i32::try_from(texts.len()).unwrap());
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(ids), texts]).unwrap()
    }

    fn f64s(b: &RecordBatch, name: &str) -> Vec<f64> {
        let a = b.column_by_name(name).unwrap();
        a.as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    #[test]
    fn appends_five_columns() {
        let texts: ArrayRef = Arc::new(StringArray::from(vec![
            Some("The book was good."),
            Some("Today SUX!"),
            Some("the sky"),
            None,
        ]));
        let out = append_sentiment_columns(&batch(texts)).unwrap();
        assert_eq!(out.num_columns(), 7);
        assert_eq!(out.num_rows(), 4);
        assert_eq!(
            out.schema().metadata().get("k").map(String::as_str),
            Some("v")
        );
        assert_eq!(f64s(&out, col::NEG), [0.0, 0.779, 0.0, 0.0]);
        assert_eq!(f64s(&out, col::NEU), [0.508, 0.221, 1.0, 0.0]);
        assert_eq!(f64s(&out, col::POS), [0.492, 0.0, 0.0, 0.0]);
        assert_eq!(f64s(&out, col::COMPOUND), [0.4404, -0.5461, 0.0, 0.0]);
        let labels = out.column_by_name(col::LABEL).unwrap();
        let labels = labels.as_any().downcast_ref::<StringArray>().unwrap();
        let labels: Vec<&str> = labels.iter().map(Option::unwrap).collect();
        assert_eq!(labels, ["positive", "negative", "neutral", "neutral"]);
        for (field, expected) in out.schema().fields()[2..].iter().zip(sentiment_fields()) {
            assert_eq!(field.as_ref(), &expected);
        }
    }

    #[test]
    fn threads_change_nothing_but_who_scores() {
        // Varied texts (emoji, negation, caps, empty, null) over a batch big enough to be split
        // into 1, 2, 3 and 8 ranges, including a last range shorter than the others.
        let pool = [
            Some("The book was good."),
            Some("Today SUX!"),
            Some("not bad at all 😀"),
            Some(""),
            None,
            Some("The service was NOT great, but the staff were kind :)"),
            Some("worst. support. ever!!!"),
        ];
        let rows = PARALLEL_ROWS_MIN * 8 + 3;
        let texts: ArrayRef = Arc::new(StringArray::from(
            (0..rows).map(|i| pool[i % pool.len()]).collect::<Vec<_>>(),
        ));
        let b = batch(texts);
        let serial = append_sentiment_columns(&b).unwrap();
        for threads in [0, 2, 3, 8, 64] {
            let par = append_sentiment_columns_parallel(&b, threads).unwrap();
            assert_eq!(par, serial, "{threads} threads");
        }
        assert_eq!(f64s(&serial, col::COMPOUND)[..2], [0.4404, -0.5461]);
    }

    #[test]
    fn large_and_view_strings() {
        let large: ArrayRef = Arc::new(LargeStringArray::from(vec!["The book was good."]));
        let view: ArrayRef = Arc::new(StringViewArray::from(vec!["The book was good."]));
        for texts in [large, view] {
            let out = append_sentiment_columns(&batch(texts)).unwrap();
            assert_eq!(f64s(&out, col::COMPOUND), [0.4404]);
        }
    }

    #[test]
    fn caller_errors() {
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![1]));
        assert!(matches!(
            append_sentiment_columns(&batch(ints)),
            Err(EnrichError::ColumnType { column: TEXT, .. })
        ));
        let schema = Schema::new(vec![Field::new("other", DataType::Utf8, false)]);
        let other: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        let no_text = RecordBatch::try_new(Arc::new(schema), vec![other]).unwrap();
        assert!(matches!(
            append_sentiment_columns(&no_text),
            Err(EnrichError::MissingColumn { column: TEXT })
        ));
        let texts: ArrayRef = Arc::new(StringArray::from(vec!["good"]));
        let once = append_sentiment_columns(&batch(texts)).unwrap();
        assert!(matches!(
            append_sentiment_columns(&once),
            Err(EnrichError::DuplicateColumn { column: col::NEG })
        ));
    }

    #[test]
    fn empty_batch() {
        let texts: ArrayRef = Arc::new(StringArray::from(Vec::<&str>::new()));
        let out = append_sentiment_columns(&batch(texts)).unwrap();
        assert_eq!(out.num_rows(), 0);
        assert_eq!(out.num_columns(), 7);
    }
}
