//! The tracing subscriber. Spans and events never carry secrets: tokens appear in logs only
//! by their public id, and types that hold secrets redact themselves in `Debug`.

use tracing_subscriber::EnvFilter;

/// Installs a formatter on stderr with `filter` (EnvFilter syntax, checked when the setting
/// was read). Idempotent.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
