//! The tracing subscriber. Spans and events never carry secrets: tokens appear in logs only
//! by their public id, and types that hold secrets redact themselves in `Debug`.

use tracing_subscriber::EnvFilter;

/// Default filter: sqlx logs every statement at INFO, which is noise.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Installs a formatter on stderr with `filter` (EnvFilter syntax). Idempotent.
pub fn init(filter: Option<&str>) {
    let filter = EnvFilter::try_new(filter.unwrap_or(DEFAULT_FILTER))
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
