//! Event-time windowing for cluetrain.
//!
//! Every engagement figure is computed per brand over event-time windows, half-open
//! `[start, end)` and aligned to the Unix epoch in UTC (see the metrics reference). This crate
//! owns window assignment ([`window`]) business-hours arithmetic ([`business_hours`]) and event-time watermarks ([`watermark`]); the DataFusion aggregation that merges each micro-batch
//! into window state builds on it.

pub mod business_hours;
pub mod distribution;
pub mod watermark;
pub mod window;

pub use business_hours::{BusinessCalendar, ScheduleError};
pub use distribution::{BacklogBucket, Summary, quantile_linear, summarize};
pub use watermark::{WatermarkConfig, Watermarks};
pub use window::{WindowError, WindowSpec};
