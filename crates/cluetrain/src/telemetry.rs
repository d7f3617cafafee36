//! Logging setup: tracing with an env filter, text or JSON lines on stderr.

use model::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.filter`.
pub fn init(log: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v)
            .map_err(|e| anyhow::anyhow!("RUST_LOG={v:?} is not a valid filter: {e}"))?,
        _ => EnvFilter::try_new(&log.filter).map_err(|e| {
            anyhow::anyhow!(
                "log.filter = {:?} is not a valid filter ({e}); try \"info\"",
                log.filter
            )
        })?,
    };
    // Colours only on a terminal: a log file or a container's log stream gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests, demo after run) keeps the first subscriber.
    let _ = result;
    Ok(())
}
