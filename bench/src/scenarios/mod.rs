//! The scenarios, one per module, each a function of the shared [`Ctx`] that returns its
//! section of the report (a `##` heading, what is measured and how, the figures).

mod cold;
mod crash;
mod failover;
mod flood;
mod gate;
mod instrumentation;
mod last_use;
mod list;
mod memory;
mod propagation;
mod validate;

use crate::progress::Progress;
use crate::server::{self, Launch, Server};
use crate::{Args, Pinning};
use chrono::{TimeDelta, Utc};
use jeton_testkit::BoxError;
use jeton_testkit::postgres::PgDatabase;
use jeton_testkit::seed::{Seed, seed_tokens};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Cached Validate against an empty RPC
    Validate,
    /// Cold Validate against Argon2 alone; Generate
    Cold,
    /// List against table size, both engines
    List,
    /// Memory per cached token
    Memory,
    /// Memory under concurrent Generate
    GenerateMemory,
    /// Revocation across replicas
    Propagation,
    /// Database writes of last-use times
    LastUse,
    /// Cached Validate with and without metrics
    Instrumentation,
    /// Legitimate calls under a flood of invalid tokens
    Flood,
    /// Acknowledged writes across kill -9, both engines
    Crash,
    /// nginx in front of a service: unguarded, a free authorizer, jeton (needs nginx, wrk)
    Gate,
    /// Validate and writes through a PostgreSQL kill and promote (runs its own primary and
    /// standby; needs PostgreSQL's server programs, see testkit's pgpair)
    Failover,
}

impl Scenario {
    pub const ALL: [Scenario; 12] = [
        Scenario::Validate,
        Scenario::Instrumentation,
        Scenario::Cold,
        Scenario::Flood,
        Scenario::List,
        Scenario::Memory,
        Scenario::GenerateMemory,
        Scenario::Propagation,
        Scenario::LastUse,
        Scenario::Crash,
        Scenario::Gate,
        Scenario::Failover,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Scenario::Validate => "Cached `Validate` against an empty RPC",
            Scenario::Cold => "Cold `Validate` and `Generate` at production Argon2 cost",
            Scenario::List => "`List`, one page of 100, against table size",
            Scenario::Memory => "Memory per cached token",
            Scenario::GenerateMemory => "Memory under concurrent `Generate`",
            Scenario::Propagation => "Revocation across replicas",
            Scenario::LastUse => "Database writes for 10^6 validations of one token",
            Scenario::Instrumentation => "The cost of metrics on cached `Validate`",
            Scenario::Flood => "Legitimate calls under a flood of invalid tokens",
            Scenario::Crash => "Acknowledged writes across `kill -9`",
            Scenario::Gate => "The gate: nginx in front of a service, unguarded, free, jeton",
            Scenario::Failover => "Through a database failover",
        }
    }

    pub fn uses_postgres(self) -> bool {
        matches!(
            self,
            Scenario::List | Scenario::Propagation | Scenario::LastUse | Scenario::Crash
        )
    }
}

pub async fn run(scenario: Scenario, ctx: &Ctx) -> Result<String, BoxError> {
    match scenario {
        Scenario::Validate => validate::run(ctx).await,
        Scenario::Cold => cold::run(ctx).await,
        Scenario::List => list::run(ctx).await,
        Scenario::Memory => memory::run(ctx).await,
        Scenario::GenerateMemory => memory::under_generate(ctx).await,
        Scenario::Propagation => propagation::run(ctx).await,
        Scenario::LastUse => last_use::run(ctx).await,
        Scenario::Instrumentation => instrumentation::run(ctx).await,
        Scenario::Flood => flood::run(ctx).await,
        Scenario::Crash => crash::run(ctx).await,
        Scenario::Gate => gate::run(ctx).await,
        Scenario::Failover => failover::run(ctx).await,
    }
}

/// What every scenario shares.
pub struct Ctx {
    pub args: Args,
    pub jeton: PathBuf,
    pub pinning: Pinning,
    /// SQLite files live here for the run.
    pub dir: TempDir,
    pub progress: Progress,
    /// Whether `jeton serve` can expose its counters.
    pub metrics: bool,
    /// Whether files (the plot) are written: only when the report is.
    pub write_files: bool,
}

/// Tokens written per call of testkit's seeder, a multiple of 3 and 100 so that its
/// every-third and every-hundredth patterns run on unbroken across calls.
const SEED_CHUNK: usize = 30_000;

impl Ctx {
    pub fn new(
        args: Args,
        jeton: PathBuf,
        pinning: Pinning,
        metrics: bool,
        write_files: bool,
    ) -> Result<Self, BoxError> {
        Ok(Self {
            args,
            jeton,
            pinning,
            dir: tempfile::Builder::new().prefix("jeton-bench").tempdir()?,
            progress: Progress::new(),
            metrics,
            write_files,
        })
    }

    pub fn sqlite(&self, name: &str) -> String {
        format!("sqlite://{}", self.dir.path().join(name).display())
    }

    /// A PostgreSQL database `jeton_bench_<name>` on `--pg-url`, replacing any leftover of an
    /// earlier run; dropped when the value is.
    pub async fn postgres(&self, name: &str) -> Result<PgDatabase, BoxError> {
        PgDatabase::create_on(&self.args.pg_url, &format!("jeton_bench_{name}")).await
    }

    /// Migrates `db` and creates the tenant; returns its admin's token.
    pub fn bootstrap(&self, db: &str) -> Result<String, BoxError> {
        server::bootstrap(&self.jeton, db)
    }

    /// Starts `jeton serve` on `db` with `args`, on the server core when `pinned` (and
    /// pinning works here), with metrics when it has them.
    pub fn serve(&self, db: &str, pinned: bool, args: &[String]) -> Result<Server, BoxError> {
        self.serve_with_metrics(db, pinned, args, self.metrics)
    }

    /// [`Ctx::serve`], with metrics on or off.
    pub fn serve_with_metrics(
        &self,
        db: &str,
        pinned: bool,
        args: &[String],
        metrics: bool,
    ) -> Result<Server, BoxError> {
        Server::start(Launch {
            jeton: &self.jeton,
            db,
            core: self.pinning.server_core().filter(|_| pinned),
            args: args.to_vec(),
            metrics: metrics && self.metrics,
        })
    }

    /// Writes `count` tokens of the bench tenant's admin into `db` (testkit's [`Seed`]:
    /// a third never used, a third used now, a third 30 days ago; every
    /// `expiring_every`-th expiring in 3 days), created one microsecond apart, the last now.
    pub async fn seed(
        &self,
        db: &str,
        count: usize,
        hashed: bool,
        expiring_every: usize,
    ) -> Result<Vec<String>, BoxError> {
        let what = if hashed { "hashed " } else { "" };
        let bar = self
            .progress
            .counter(count as u64, format!("seeding {count} {what}tokens"));
        let end = Utc::now();
        let mut tokens = Vec::with_capacity(count);
        while tokens.len() < count {
            let n = SEED_CHUNK.min(count - tokens.len());
            let after = count - tokens.len() - n;
            let seed = Seed {
                tenant: server::TENANT,
                owner: server::ADMIN,
                count: n,
                hashed,
                expiring_every,
                expires_in: TimeDelta::days(3),
                now: end - TimeDelta::microseconds(after as i64),
            };
            tokens.extend(seed_tokens(db, &seed).await?);
            bar.inc(n as u64);
        }
        bar.finish();
        Ok(tokens)
    }

    /// Where the plot goes, and how the report links it; `None` when nothing is written.
    pub fn plot_target(&self) -> Option<(PathBuf, String)> {
        self.file_target(&self.args.plot)
    }

    /// Where a file the report links goes (`path`), and the link, relative to the report;
    /// `None` when nothing is written.
    pub fn file_target(&self, path: &Path) -> Option<(PathBuf, String)> {
        if !self.write_files {
            return None;
        }
        let path = path.to_path_buf();
        let base = self
            .args
            .out
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new(""));
        let link = path
            .strip_prefix(base)
            .unwrap_or(&path)
            .display()
            .to_string();
        Some((path, link))
    }
}

/// `flag value` as owned strings, for [`Ctx::serve`].
pub fn flags(pairs: &[(&str, String)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(f, v)| [(*f).to_owned(), v.clone()])
        .collect()
}
