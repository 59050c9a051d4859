//! A `jeton serve` child process, started on port 0: its bound address is read from the
//! "jeton listening" log line, and everything it logs is kept.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Served {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Starts `cmd` (a `jeton serve … --listen 127.0.0.1:0`, possibly behind a wrapper such
    /// as `taskset`) with its output captured, and waits until it listens.
    pub fn start(mut cmd: Command) -> Self {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start jeton serve");
        Self::adopt(child)
    }

    /// Takes over a started `jeton serve` whose stderr is piped, and waits until it listens.
    pub fn adopt(mut child: Child) -> Self {
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("jeton listening") {
                    let _ = tx.send(listening_addr(&line));
                }
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("server did not start:\n{}", log.lock().unwrap()));
        Self {
            child,
            addr,
            log,
            reader: Some(reader),
        }
    }

    /// `host:port` the server listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `host:port` of the HTTP front door (`--http-listen`), from its "http listening" line
    /// (logged before the gRPC port's, so present once the server has started).
    pub fn http_addr(&self) -> Option<String> {
        self.log()
            .lines()
            .find(|l| l.contains("http listening"))
            .map(listening_addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The log once `ready` holds for it: lines are read by another thread, so a line the
    /// server has written may not be here yet. Panics with the log after `within`.
    pub fn log_when(&self, within: Duration, ready: impl Fn(&str) -> bool) -> String {
        let start = std::time::Instant::now();
        loop {
            let log = self.log();
            if ready(&log) {
                return log;
            }
            assert!(
                start.elapsed() < within,
                "the awaited line was not logged within {within:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// User + system CPU time of the process so far (Linux).
    pub fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
        Duration::from_millis(ticks * 10) // USER_HZ = 100 on Linux
    }

    /// Resident memory in bytes (Linux).
    pub fn rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the process.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status();
    }

    /// Sends SIGTERM, waits, and returns the exit status and everything it printed.
    pub fn terminate(self) -> (ExitStatus, String) {
        self.signal("TERM");
        self.wait()
    }

    /// Waits for the process to end; returns the exit status and everything it printed.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().expect("wait for jeton serve");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        (status, format!("{}{stdout}", self.log()))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal("TERM");
            let _ = self.child.wait();
        }
    }
}

/// The address in a "jeton listening" line, in the text format (`addr=…`) or JSON
/// (`"addr":"…"`).
fn listening_addr(line: &str) -> String {
    if let Some(rest) = line.split("\"addr\":\"").nth(1) {
        return rest.split('"').next().unwrap_or_default().to_owned();
    }
    line.split("addr=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_address_in_both_formats() {
        assert_eq!(
            super::listening_addr(
                "2026 INFO jeton::app: jeton listening addr=127.0.0.1:5 tls=false"
            ),
            "127.0.0.1:5"
        );
        assert_eq!(
            super::listening_addr(
                r#"{"fields":{"message":"jeton listening","addr":"127.0.0.1:6"}}"#
            ),
            "127.0.0.1:6"
        );
    }
}
