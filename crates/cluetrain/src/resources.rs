//! What this process has used so far: CPU seconds and peak resident memory, for the summary a
//! bounded run prints (`cluetrain run --until-end`), for `/metrics`
//! ([`crate::process_metrics`]) and for the end-to-end bench (which compiles this file in).
//!
//! Read from `/proc/self` (Linux) rather than `getrusage`, which needs `unsafe` (forbidden in
//! this workspace); elsewhere the figures are absent.

use std::path::Path;

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat`: the kernel's `USER_HZ`, fixed
/// at 100 on every architecture Linux exports to user space (`sysconf(_SC_CLK_TCK)`).
pub const USER_HZ: f64 = 100.0;

/// A process's resource use.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Usage {
    /// User plus system CPU time of every thread, in seconds.
    pub cpu_seconds: f64,
    /// Peak resident set size (`VmHWM`), in bytes.
    pub peak_rss_bytes: u64,
    /// Current resident set size (`VmRSS`), in bytes.
    pub rss_bytes: u64,
}

/// This process's use so far; `None` where `/proc` is not there.
pub fn current() -> Option<Usage> {
    of(Path::new("/proc/self"))
}

/// The use of the process whose `/proc` directory is `dir` (e.g. `/proc/1234`).
pub fn of(dir: &Path) -> Option<Usage> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    Some(Usage {
        cpu_seconds: cpu_seconds(&stat)?,
        peak_rss_bytes: status_kib(&status, "VmHWM:")? * 1024,
        rss_bytes: status_kib(&status, "VmRSS:")? * 1024,
    })
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds. The command name
/// (field 2) is in parentheses and may contain spaces: fields are counted after its `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // After ")": field 3 (state) is the first; utime is field 14, the 12th from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)] // clock ticks, far below 2^52
    Some((utime + stime) as f64 / USER_HZ)
}

/// The value in KiB of a `Key:   123 kB` line of `/proc/<pid>/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_the_name() {
        let stat = "1234 (tokio rt) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tcluetrain\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(204_800));
        assert_eq!(status_kib(status, "VmRSS:"), Some(102_400));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_on_linux() {
        if cfg!(target_os = "linux") {
            let u = current().unwrap();
            assert!(u.peak_rss_bytes >= u.rss_bytes && u.rss_bytes > 0, "{u:?}");
        }
    }
}
