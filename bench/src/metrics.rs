//! The server's Prometheus counters, when it has them: cache lookups by result and Argon2
//! computations. Kept apart so that wiring them up touches this file only.
//!
//! A `jeton serve` whose `--help` lists [`FLAG`] is started with [`SERVE_ARGS`]; it is
//! expected to log a line containing "metrics listening" with `addr=HOST:PORT` (or
//! `"addr":"HOST:PORT"` in JSON), and to answer `GET /metrics` in the text format. Anything
//! missing makes every figure that needs the counters "n/a"; the run goes on.

use jeton_testkit::BoxError;
use jeton_testkit::served::Served;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

pub const FLAG: &str = "--metrics-listen";
/// Appended to `jeton serve` when it knows [`FLAG`].
pub const SERVE_ARGS: [&str; 2] = [FLAG, "127.0.0.1:0"];

const LOOKUPS: &str = "jeton_cache_lookups_total";
const ARGON2: &str = "jeton_argon2_computations_total";

/// Whether `jeton serve` has [`FLAG`].
pub fn supported(jeton: &Path) -> bool {
    std::process::Command::new(jeton)
        .args(["serve", "--help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(FLAG))
}

/// Counter values at one moment (or, after a subtraction, over a window).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    pub hit: f64,
    pub miss: f64,
    pub stale: f64,
    pub absent: f64,
    pub argon2: f64,
}

impl Counters {
    pub fn lookups(&self) -> f64 {
        self.hit + self.miss + self.stale + self.absent
    }

    /// Hits per lookup, `None` without lookups.
    pub fn hit_rate(&self) -> Option<f64> {
        (self.lookups() > 0.0).then(|| self.hit / self.lookups())
    }

    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            hit: self.hit - earlier.hit,
            miss: self.miss - earlier.miss,
            stale: self.stale - earlier.stale,
            absent: self.absent - earlier.absent,
            argon2: self.argon2 - earlier.argon2,
        }
    }

    pub fn plus(&self, other: &Self) -> Self {
        Self {
            hit: self.hit + other.hit,
            miss: self.miss + other.miss,
            stale: self.stale + other.stale,
            absent: self.absent + other.absent,
            argon2: self.argon2 + other.argon2,
        }
    }
}

/// The metrics address `served` logged, waiting up to 5 s for the line.
pub fn wait_for_addr(served: &Served) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(addr) = addr_in_log(&served.log()) {
            return Some(addr);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The address of the first "metrics listening" line of `log`.
fn addr_in_log(log: &str) -> Option<String> {
    logged_addr(log, "metrics listening")
}

/// The address on the first line of `log` that contains `what` ("http listening", …).
pub fn logged_addr(log: &str, what: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains(what))?;
    let addr = match line.split("\"addr\":\"").nth(1) {
        Some(rest) => rest.split('"').next()?,
        None => line.split("addr=").nth(1)?.split_whitespace().next()?,
    };
    // `addr = ?Some(a)` logs "Some(a)".
    let addr = addr.trim_matches(|c| c == '"' || c == ',');
    let addr = addr
        .strip_prefix("Some(")
        .and_then(|a| a.strip_suffix(')'))
        .unwrap_or(addr);
    (!addr.is_empty() && addr != "None").then(|| addr.to_owned())
}

/// Reads `http://addr/metrics` and sums the counters.
pub fn scrape(addr: &str) -> Result<Counters, BoxError> {
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| format!("no address for {addr}"))?;
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("metrics: no HTTP header")?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("metrics: {status}").into());
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(parse(&body))
}

/// The body of a chunked HTTP/1.1 response.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or_default().trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sums the counters in a Prometheus text exposition: lookups by their `result` label,
/// Argon2 computations over all labels.
pub fn parse(text: &str) -> Counters {
    let mut c = Counters::default();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = match line.find('}') {
            Some(end) => (&line[..=end], line[end + 1..].trim()),
            None => match line.split_once(char::is_whitespace) {
                Some((name, value)) => (name, value.trim()),
                None => continue,
            },
        };
        let Some(value) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        match name {
            ARGON2 => c.argon2 += value,
            LOOKUPS => match label(labels, "result") {
                Some("hit") => c.hit += value,
                Some("miss") => c.miss += value,
                Some("stale") => c.stale += value,
                Some("absent") => c.absent += value,
                _ => {}
            },
            _ => {}
        }
    }
    c
}

/// The value of label `key` in `a="x",b="y"}`.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels
        .trim_end_matches('}')
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_counters() {
        let text = "# HELP jeton_cache_lookups_total Lookups.\n\
                    # TYPE jeton_cache_lookups_total counter\n\
                    jeton_cache_lookups_total{result=\"hit\"} 90\n\
                    jeton_cache_lookups_total{kind=\"token\",result=\"miss\"} 7\n\
                    jeton_cache_lookups_total{result=\"stale\"} 2 1700000000000\n\
                    jeton_cache_lookups_total{result=\"absent\"} 1\n\
                    jeton_argon2_computations_total{op=\"verify\"} 7\n\
                    jeton_argon2_computations_total{op=\"hash\"} 3\n\
                    jeton_other_total 5\n";
        let c = parse(text);
        assert_eq!(
            c,
            Counters {
                hit: 90.0,
                miss: 7.0,
                stale: 2.0,
                absent: 1.0,
                argon2: 10.0
            }
        );
        assert_eq!(c.hit_rate(), Some(0.9));
        assert_eq!(parse("jeton_argon2_computations_total 4\n").argon2, 4.0);
    }

    #[test]
    fn finds_the_address_in_the_log() {
        let text = "x INFO jeton::app: jeton listening addr=127.0.0.1:5\n\
                    x INFO jeton::metrics: metrics listening addr=127.0.0.1:9 path=/metrics\n";
        assert_eq!(addr_in_log(text).as_deref(), Some("127.0.0.1:9"));
        let json = r#"{"fields":{"message":"metrics listening","addr":"127.0.0.1:7"}}"#;
        assert_eq!(addr_in_log(json).as_deref(), Some("127.0.0.1:7"));
        assert_eq!(addr_in_log("jeton listening addr=127.0.0.1:5\n"), None);
        let debug = "x INFO jeton::app: metrics listening addr=Some(127.0.0.1:8)\n";
        assert_eq!(addr_in_log(debug).as_deref(), Some("127.0.0.1:8"));
        let json = r#"{"fields":{"message":"metrics listening","addr":"Some(127.0.0.1:4)"}}"#;
        assert_eq!(addr_in_log(json).as_deref(), Some("127.0.0.1:4"));
    }

    #[test]
    fn reads_a_chunked_body() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
