//! The process's own metrics on `/metrics`: resident memory and CPU time, and the allocator's
//! live and resident bytes.

use crate::resources;

/// `process_*` metrics (the names Prometheus' client libraries use for them, so dashboards
/// made for other services read them too) and the allocator's figures, read at each scrape.
///
/// Resident memory alone cannot tell state that grows from memory the allocator keeps after it
/// was freed; `cluetrain_allocator_allocated_bytes` (live allocations) against
/// `cluetrain_allocator_resident_bytes` (what the allocator holds in RAM) can. The allocator
/// figures need jemalloc's statistics (the binary's default `jemalloc` feature); without it
/// they are absent.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        if let Some(u) = resources::current() {
            let rss = ConstGauge::new(i64::try_from(u.rss_bytes).unwrap_or(i64::MAX));
            rss.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size of the process (VmRSS)",
                None,
                rss.metric_type(),
            )?)?;
            let cpu = ConstCounter::new(u.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time of every thread of the process, seconds",
                None,
                cpu.metric_type(),
            )?)?;
        }
        if let Some(a) = allocator() {
            for (name, help, value) in [
                (
                    "cluetrain_allocator_allocated_bytes",
                    "Bytes in live heap allocations (jemalloc stats.allocated): the state the \
                     process keeps",
                    a.allocated,
                ),
                (
                    "cluetrain_allocator_resident_bytes",
                    "Bytes of physical memory the allocator holds (jemalloc stats.resident): \
                     live allocations plus what it keeps after they were freed",
                    a.resident,
                ),
            ] {
                let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

/// The allocator's figures, bytes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Allocator {
    /// In live allocations.
    pub allocated: u64,
    /// Physical memory the allocator holds (pages of live allocations, its metadata, and freed
    /// pages not yet returned to the system).
    pub resident: u64,
}

/// jemalloc's statistics, refreshed (its epoch advanced) first; `None` without jemalloc.
#[cfg(all(feature = "jemalloc", target_os = "linux"))]
pub fn allocator() -> Option<Allocator> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    Some(Allocator {
        allocated: u64::try_from(stats::allocated::read().ok()?).ok()?,
        resident: u64::try_from(stats::resident::read().ok()?).ok()?,
    })
}

/// jemalloc's statistics; this build has no jemalloc.
#[cfg(not(all(feature = "jemalloc", target_os = "linux")))]
pub fn allocator() -> Option<Allocator> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_exposed() {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        if cfg!(target_os = "linux") {
            let rss: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
                .unwrap_or_else(|| panic!("no resident memory in:\n{text}"))
                .parse()
                .unwrap();
            assert!(rss > 0.0, "{text}");
            assert!(
                text.contains("# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total "),
                "{text}"
            );
        }
        // With jemalloc linked (not necessarily this test binary's global allocator), its
        // figures are there and consistent.
        if let Some(a) = allocator() {
            assert!(a.resident > 0, "{a:?}");
            assert!(
                text.contains("cluetrain_allocator_resident_bytes "),
                "{text}"
            );
            assert!(
                text.contains("cluetrain_allocator_allocated_bytes "),
                "{text}"
            );
        }
    }
}
