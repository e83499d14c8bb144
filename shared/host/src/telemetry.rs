//! Logging set-up, in one place: `tracing` to stderr, filtered by `RUST_LOG` or the config's `log`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call (tests run many services in one process) is a no-op.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .try_init();
}
