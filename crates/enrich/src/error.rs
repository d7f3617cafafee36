//! Errors of the enrich stage, each saying whose fault it is.
//!
//! Enrichment runs on batches that ingest built with `model::event_schema`, so a missing or
//! mistyped column is a wiring bug in the caller (the batch came from somewhere else), and an
//! Arrow error while assembling the output is a bug here. Bad *data* never errors: any text,
//! even empty or odd, gets a score.

use arrow_schema::{ArrowError, DataType};

/// Why an enrichment could not be applied to a batch.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// The batch has no column of that name. Caller's fault: enrichment expects batches with
    /// `model::event_schema` (or at least its text column).
    #[error("batch has no `{column}` column (caller error: enrich expects event batches)")]
    MissingColumn {
        /// The column that was looked for.
        column: &'static str,
    },
    /// The column exists with a type we cannot read. Caller's fault, as above.
    #[error("column `{column}` is {found}, expected {expected} (caller error: not an event batch)")]
    ColumnType {
        /// The column.
        column: &'static str,
        /// The type it has.
        found: DataType,
        /// The type(s) we accept.
        expected: &'static str,
    },
    /// A column we would add is already there. Caller's fault: the batch was enriched twice.
    #[error("batch already has a `{column}` column (caller error: enriched twice?)")]
    DuplicateColumn {
        /// The clashing column name.
        column: &'static str,
    },
    /// The pseudonymisation key is too short to be secret. User's fault: configure a longer
    /// key (see `privacy.hmac_key_env`); retrying does not help.
    #[error(
        "the HMAC key has {bytes} bytes; at least {min} are required (generate one with `openssl rand -hex 32`)"
    )]
    KeyTooShort {
        /// Length of the key given.
        bytes: usize,
        /// The minimum.
        min: usize,
    },
    /// Arrow refused the output batch. Our fault: the added columns should always fit.
    #[error("internal error assembling the enriched batch: {0}")]
    Arrow(#[from] ArrowError),
}
