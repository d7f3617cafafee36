//! Event-time windowing for cluetrain.
//!
//! Every engagement figure is computed per brand over event-time windows, half-open
//! `[start, end)` and aligned to the Unix epoch in UTC (see the metrics reference). This crate
//! owns window assignment ([`window`]); the DataFusion aggregation that merges each micro-batch
//! into window state builds on it.

pub mod window;

pub use window::{WindowError, WindowSpec};
