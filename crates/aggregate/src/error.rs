//! Errors of the aggregation stage.

/// What went wrong while aggregating. Every variant is internal (a bug on our side, not
/// caused by input data: facts are validated before they get here) and not worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// DataFusion refused or failed a query over a micro-batch.
    #[error("internal: window aggregation query failed: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// A query result lacked a column or had an unexpected type.
    #[error("internal: window aggregation result has no column {0:?} of the expected type")]
    Column(&'static str),
    /// A window spec that the configuration check should have refused.
    #[error("configuration: {0}")]
    Window(#[from] crate::window::WindowError),
}
