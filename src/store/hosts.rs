//! The hosts of a PostgreSQL URL in libpq's multi-host form,
//! `postgres://USER[:PASSWORD]@HOST1[:PORT1],HOST2[:PORT2]/DB[?PARAMS]`: each becomes a
//! single-host URL of its own, because the driver underneath (sqlx) takes one host, and
//! jeton keeps one pool per host to find the writable one itself.

use std::fmt;

/// One host of a database URL: where it is (for logs and errors, never with a password) and
/// the single-host URL to connect to it (which may hold the password: not `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HostUrl {
    /// `host:port`, as written (IPv6 in brackets).
    pub(crate) label: String,
    url: String,
}

impl HostUrl {
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl fmt::Debug for HostUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostUrl")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// Parameters jeton decides for itself and removes: which host to write to is found by
/// asking each (`pg_is_in_recovery()`), not by libpq's session attributes.
const DROPPED_PARAMS: [&str; 2] = ["target_session_attrs", "load_balance_hosts"];

/// Splits `url` into one URL per host, in order. A URL with one host gives one. Errors name
/// what is wrong, never the password.
pub(crate) fn split(url: &str) -> Result<Vec<HostUrl>, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected postgres://USER@HOST[:PORT][,HOST[:PORT]…]/DB")?;
    if scheme != "postgres" && scheme != "postgresql" {
        return Err(format!("unknown scheme {scheme:?}"));
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let query: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|kv| {
            !kv.is_empty()
                && !DROPPED_PARAMS
                    .iter()
                    .any(|d| kv.split('=').next() == Some(*d))
        })
        .collect();
    let mut out = Vec::new();
    for host in hosts.split(',') {
        let label = host_and_port(host)?;
        let mut url = format!("{scheme}://");
        if let Some(u) = userinfo {
            url.push_str(u);
            url.push('@');
        }
        url.push_str(&label);
        url.push_str(path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        out.push(HostUrl { label, url });
    }
    Ok(out)
}

/// `host[:port]` with the port made explicit (5432 by default); IPv6 in brackets.
fn host_and_port(host: &str) -> Result<String, String> {
    let host = host.trim();
    if host.is_empty() {
        return Err("a host is empty (two commas, or a comma at either end)".into());
    }
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{host:?}: an IPv6 address needs its closing ']'"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{host:?}: expected :PORT after ']'"))?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n.to_owned(), Some(p)),
            None => (host.to_owned(), None),
        }
    };
    if name.is_empty() || name == "[]" {
        return Err(format!("{host:?}: no host name"));
    }
    let port: u16 = match port {
        None => 5432,
        Some(p) => p
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{host:?}: the port must be a number from 1 to 65535"))?,
    };
    Ok(format!("{name}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(s: &str) -> Vec<String> {
        split(s)
            .unwrap()
            .iter()
            .map(|h| h.url().to_owned())
            .collect()
    }

    #[test]
    fn one_url_per_host_in_order() {
        assert_eq!(
            urls("postgres://jeton:s3cret@db1:5433,db2,[::1]:6000/jeton?sslmode=disable"),
            [
                "postgres://jeton:s3cret@db1:5433/jeton?sslmode=disable",
                "postgres://jeton:s3cret@db2:5432/jeton?sslmode=disable",
                "postgres://jeton:s3cret@[::1]:6000/jeton?sslmode=disable",
            ]
        );
        assert_eq!(
            urls("postgresql://u@h/db"),
            ["postgresql://u@h:5432/db"],
            "one host is one URL"
        );
        assert_eq!(
            urls("postgres://u@h1,h2/db?target_session_attrs=read-write&application_name=x"),
            [
                "postgres://u@h1:5432/db?application_name=x",
                "postgres://u@h2:5432/db?application_name=x"
            ],
            "jeton finds the writable host itself"
        );
        let labels: Vec<_> = split("postgres://u:p@a:1,b/db")
            .unwrap()
            .into_iter()
            .map(|h| h.label)
            .collect();
        assert_eq!(labels, ["a:1", "b:5432"]);
    }

    #[test]
    fn refusals_name_the_host_never_the_password() {
        for bad in [
            "postgres://u:pw@a,,b/db",
            "postgres://u:pw@a:0/db",
            "postgres://u:pw@a:port/db",
            "postgres://u:pw@[::1/db",
            "postgres://u:pw@/db",
            "mysql://u:pw@a/db",
        ] {
            let e = split(bad).unwrap_err();
            assert!(!e.contains("pw"), "{bad}: {e}");
        }
        let h = &split("postgres://u:hunter2@a/db").unwrap()[0];
        assert!(!format!("{h:?}").contains("hunter2"));
    }
}
