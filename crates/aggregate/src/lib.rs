//! Event-time windowing for cluetrain.
//!
//! Every engagement figure is computed per brand over event-time windows, half-open
//! `[start, end)` and aligned to the Unix epoch in UTC (see the metrics reference). This crate
//! owns window assignment ([`window`]), business-hours arithmetic ([`business_hours`]),
//! event-time watermarks ([`watermark`]), response-time summaries ([`distribution`]) and the
//! window engine ([`engine`]): DataFusion aggregates each micro-batch of linked facts once and
//! the engine merges the result into window state, emitting revisions as the watermark moves.

pub mod business_hours;
mod current_batch;
pub mod distribution;
pub mod engine;
pub mod error;
pub mod watermark;
pub mod window;

pub use business_hours::{BusinessCalendar, ScheduleError};
pub use distribution::{BacklogBucket, Summary, quantile_linear, summarize};
pub use engine::{EngineConfig, EngineSlice, EngineSliceRef, EngineStats, GroupBy, WindowEngine};
pub use error::AggregateError;
pub use watermark::{PartitionWatermark, WatermarkConfig, Watermarks};
pub use window::{WindowError, WindowSpec};
