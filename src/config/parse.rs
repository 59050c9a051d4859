//! Value parsers of the settings: each refuses a bad value with a reason (clap names the
//! setting).

use super::DatabaseUrl;
use crate::domain::NameError;
use std::time::Duration;

/// Longest duration any setting accepts.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A duration such as `500ms`, `60s`, `7d`, `1h 30m`.
pub(super) fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}: expected a duration such as 500ms, 60s, 8h or 7d"))?;
    if d > MAX_DURATION {
        return Err("must be at most 100 years".into());
    }
    Ok(d)
}

/// A duration greater than zero.
pub(super) fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        Duration::ZERO => Err("must be greater than zero".into()),
        d => Ok(d),
    }
}

/// How often replicas read the change log: more than zero, and at most 200 ms, so that five
/// polls fit in the one second within which every change reaches every replica (the
/// contract's promise holds for every setting, not only the default).
pub(super) fn poll_interval(s: &str) -> Result<Duration, String> {
    match positive_duration(s)? {
        d if d > crate::validation::MAX_POLL_INTERVAL => Err(format!(
            "must be at most {} (five polls within the one second a change may take to reach every replica)",
            humantime::format_duration(crate::validation::MAX_POLL_INTERVAL)
        )),
        d => Ok(d),
    }
}

/// A network in CIDR notation, or one address.
pub(super) fn network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is neither a network (10.0.0.0/8) nor an address"))
}

pub(super) fn database_url(s: &str) -> Result<DatabaseUrl, String> {
    let known = ["sqlite:", "postgres://", "postgresql://"];
    if known.iter().any(|k| s.starts_with(k)) {
        Ok(DatabaseUrl(s.to_owned()))
    } else {
        Err("expected sqlite://PATH or postgres://USER[:PASSWORD]@HOST[:PORT]/DB".into())
    }
}

/// A `postgres://` URL (one host or several, libpq's form).
pub(super) fn postgres_url(s: &str) -> Result<DatabaseUrl, String> {
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(DatabaseUrl(s.to_owned()))
    } else {
        Err("expected postgres://USER[:PASSWORD]@HOST[:PORT][,HOST[:PORT]…]/DB".into())
    }
}

/// A filter in tracing's `EnvFilter` syntax.
pub(super) fn log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("{e}: expected e.g. \"info\" or \"debug,sqlx=warn\""))
}

/// A domain value parsed by `parse`.
pub(super) fn domain<T: 'static>(
    parse: fn(&str) -> Result<T, NameError>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |s| parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(duration("0s").unwrap(), Duration::ZERO);
        assert!(positive_duration("0s").is_err());
        assert!(
            duration("seven days")
                .unwrap_err()
                .contains("expected a duration")
        );
        assert!(duration("1000y").is_err());
    }

    #[test]
    fn urls_and_filters() {
        assert!(database_url("sqlite://jeton.db").is_ok());
        assert!(database_url("postgres://u@h/db").is_ok());
        assert!(database_url("mysql://u@h/db").is_err());
        assert!(log_filter("debug,sqlx=warn").is_ok());
        assert!(log_filter("not a [filter").is_err());
    }
}
