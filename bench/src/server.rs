//! The servers under test: `jeton serve` processes started through testkit's [`Served`]
//! (possibly behind `taskset`), tenants made with `jeton bootstrap`, and clients.

use crate::metrics::{self, Counters};
use jeton::grpc::proto::token_service_client::TokenServiceClient;
use jeton_testkit::BoxError;
use jeton_testkit::served::Served;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

pub const TENANT: &str = "bench";
pub const ADMIN: &str = "admin@bench.test";

/// The server binary, next to this one.
pub fn jeton_binary() -> Result<PathBuf, BoxError> {
    let path = std::env::current_exe()?.with_file_name("jeton");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build the server next to the benchmark with \
             `cargo build --release --workspace`",
            path.display()
        )
        .into())
    }
}

/// Creates tenant [`TENANT`] with first admin [`ADMIN`] on `db`; returns the admin's token.
pub fn bootstrap(jeton: &Path, db: &str) -> Result<String, BoxError> {
    let out = Command::new(jeton)
        .args(["bootstrap", "--tenant", TENANT, "--admin", ADMIN])
        .args(["--database-url", db])
        .env("JETON_LOG", "warn")
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "jeton bootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let token = String::from_utf8(out.stdout)?.trim().to_owned();
    if token.is_empty() {
        return Err("jeton bootstrap printed no token".into());
    }
    Ok(token)
}

/// How to start one `jeton serve`.
pub struct Launch<'a> {
    pub jeton: &'a Path,
    pub db: &'a str,
    /// `taskset -c CORE` in front of it.
    pub core: Option<u32>,
    pub args: Vec<String>,
    /// Also serve the metrics (when the binary can).
    pub metrics: bool,
}

/// A running `jeton serve`; stopped (SIGTERM, then waited for) when dropped.
pub struct Server {
    served: Served,
    metrics: Option<String>,
    /// When it started listening (close to when its background tasks started).
    pub started: Instant,
}

impl Server {
    pub fn start(launch: Launch<'_>) -> Result<Self, BoxError> {
        let mut cmd = match launch.core {
            Some(core) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", &core.to_string()]).arg(launch.jeton);
                cmd
            }
            None => Command::new(launch.jeton),
        };
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            launch.db,
        ])
        .args(&launch.args)
        // Info from jeton's own modules only: the listening lines, a few per run.
        .env("JETON_LOG", "warn,jeton=info");
        if launch.metrics {
            cmd.args(metrics::SERVE_ARGS);
        }
        // Served::start panics when the server does not start; make that this run's error.
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Served::start(cmd)))
            .map_err(|panic| {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                format!("jeton serve did not start: {why}")
            })?;
        let started = Instant::now();
        let metrics = if launch.metrics {
            metrics::wait_for_addr(&served)
        } else {
            None
        };
        Ok(Self {
            served,
            metrics,
            started,
        })
    }

    pub async fn channel(&self) -> Result<Channel, BoxError> {
        Ok(
            Endpoint::from_shared(format!("http://{}", self.served.addr()))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        )
    }

    /// Everything it has logged so far (its stderr).
    pub fn log(&self) -> String {
        self.served.log()
    }

    /// User + system CPU time of the server so far.
    pub fn cpu(&self) -> Duration {
        self.served.cpu()
    }

    /// Resident memory, bytes.
    pub fn rss(&self) -> u64 {
        self.served.rss()
    }

    /// The HTTP front door's address, when started with `--http-listen`.
    pub fn http_addr(&self) -> Option<String> {
        metrics::logged_addr(&self.served.log(), "http listening")
    }

    pub fn has_metrics(&self) -> bool {
        self.metrics.is_some()
    }

    /// The counters now; `None` when the server has no metrics or the scrape failed.
    pub fn counters(&self) -> Option<Counters> {
        metrics::scrape(self.metrics.as_deref()?).ok()
    }

    /// Waits `at_least`, then until the server used under 2 % of a core over one second
    /// (at most a minute more): background work such as a last-use flush is done.
    pub async fn settle(&self, at_least: Duration) {
        tokio::time::sleep(at_least).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let before = self.cpu();
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.cpu().saturating_sub(before) <= Duration::from_millis(20) {
                return;
            }
        }
    }

    /// SIGTERM, and waits for it to exit; fails unless it exited cleanly.
    pub fn stop(self) -> Result<(), BoxError> {
        let (status, log) = self.served.terminate();
        if status.success() {
            Ok(())
        } else {
            Err(format!("jeton serve exited with {status}:\n{log}").into())
        }
    }
}

/// Adds `authorization: Bearer …` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type AdminClient = TokenServiceClient<InterceptedService<Channel, Bearer>>;

/// A TokenService client that calls as the holder of `token`.
pub fn admin_client(channel: Channel, token: &str) -> Result<AdminClient, BoxError> {
    let bearer = Bearer(format!("Bearer {token}").parse()?);
    Ok(TokenServiceClient::with_interceptor(channel, bearer))
}
