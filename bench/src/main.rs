//! `jeton-bench`: measures jeton against its targets and writes `BENCHMARKS.md`.
//!
//! Every figure comes from real `jeton serve` processes (the `jeton` binary next to this one)
//! on loopback, over real databases: SQLite files in a temporary directory, databases it
//! creates (and drops) on the PostgreSQL server given by `--pg-url`, and for the failover
//! scenario a PostgreSQL primary and standby of its own (testkit's `pgpair`). Run it from a
//! release build: `cargo build --release --workspace && target/release/jeton-bench`.
//!
//! One scenario per module of [`scenarios`]; each returns its section of the report, which
//! [`report`] puts under one header naming the commit, the machine and the date.

mod load;
mod metrics;
mod plot;
mod progress;
mod report;
mod scenarios;
mod server;

use clap::Parser;
use jeton_testkit::BoxError;
use scenarios::{Ctx, Scenario};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

#[derive(Debug, Parser)]
#[command(
    name = "jeton-bench",
    about = "Benchmarks jeton (the `jeton` binary next to this one) and writes BENCHMARKS.md"
)]
pub struct Args {
    /// PostgreSQL server to create the benchmark's databases on (dropped afterwards)
    #[arg(long, default_value_t = jeton_testkit::postgres::admin_url())]
    pub pg_url: String,
    /// Seconds per measurement window
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// Windows of each call per row of the Validate table; the table shows their medians
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeats: u32,
    /// Largest table for the List benchmark, and the tokens cached for the memory figure
    #[arg(long, default_value_t = 1_000_000, value_parser = at_least_one)]
    pub big: usize,
    /// Tokens in the store for the Validate table
    #[arg(long, default_value_t = 100_000, value_parser = at_least_one)]
    pub tokens: usize,
    /// Revocations measured for the propagation figure
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    pub revocations: usize,
    /// Where to write the report [default: BENCHMARKS.md when every scenario runs; a run of
    /// a subset (--only, --only-validate) writes a file only when this is given]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run only the cached-Validate table (for experiments; prints it, writes nothing)
    #[arg(long, conflicts_with_all = ["only", "out"])]
    pub only_validate: bool,
    /// Scenarios to run, comma-separated, in the report's order [default: all]
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SCENARIO,...")]
    pub only: Vec<Scenario>,
    /// Extra flag for the `jeton serve` of the Validate table (repeatable), e.g.
    /// `--serve-arg=--change-poll-interval=1s`
    #[arg(long, allow_hyphen_values = true, value_name = "FLAG")]
    pub serve_arg: Vec<String>,
    /// Where to write the latency plot (SVG), when the Validate table runs and a report is
    /// written
    #[arg(long, default_value = "docs/validate-latency.svg")]
    pub plot: PathBuf,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl Args {
    /// The scenarios to run, in the report's order.
    fn plan(&self) -> Vec<Scenario> {
        if self.only_validate {
            return vec![Scenario::Validate];
        }
        if self.only.is_empty() {
            return Scenario::ALL.to_vec();
        }
        Scenario::ALL
            .into_iter()
            .filter(|s| self.only.contains(s))
            .collect()
    }

    /// Where the report goes: the given file, BENCHMARKS.md for a full run, else nowhere.
    fn destination(&self, full: bool) -> Option<PathBuf> {
        self.out
            .clone()
            .or_else(|| full.then(|| PathBuf::from("BENCHMARKS.md")))
    }
}

/// The load generator (this process) on core 1, every server under test on core 0 — on a
/// machine with at least two cores and `taskset`.
#[derive(Debug, Clone, Copy)]
pub struct Pinning {
    pub pinned: bool,
}

impl Pinning {
    const SERVER_CORE: u32 = 0;
    const BENCH_CORE: u32 = 1;

    /// Pins this process (and so every thread it starts) to [`Self::BENCH_CORE`].
    fn apply() -> Self {
        let pinned = report::cores() >= 2
            && Command::new("taskset")
                .args([
                    "-cp",
                    &Self::BENCH_CORE.to_string(),
                    &std::process::id().to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        Self { pinned }
    }

    /// The core to start a pinned server on, if pinning works here.
    pub fn server_core(self) -> Option<u32> {
        self.pinned.then_some(Self::SERVER_CORE)
    }

    fn workers(self) -> usize {
        if self.pinned { 1 } else { 2 }
    }

    pub fn describe(self) -> &'static str {
        if self.pinned {
            "Servers under test are pinned to core 0 (`taskset -c 0 jeton serve …`) unless a \
             section says otherwise; the load generator (this process, one tokio worker) to \
             core 1."
        } else {
            "Nothing is pinned (fewer than two cores, or no `taskset`): the load generator and \
             the servers share the cores."
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jeton-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn start(args: Args) -> Result<(), BoxError> {
    let jeton = server::jeton_binary()?;
    let pinning = Pinning::apply();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(pinning.workers())
        .enable_all()
        .build()?;
    rt.block_on(run(args, jeton, pinning))
}

async fn run(args: Args, jeton: PathBuf, pinning: Pinning) -> Result<(), BoxError> {
    let plan = args.plan();
    let out = args.destination(plan.len() == Scenario::ALL.len());
    if plan.iter().any(|s| s.uses_postgres()) {
        jeton_testkit::postgres::statement(&args.pg_url, "SELECT 1")
            .await
            .map_err(|e| format!("PostgreSQL at --pg-url is not usable: {e}"))?;
    }
    let metrics = metrics::supported(&jeton);
    let mut report = report::Report::begin(pinning, metrics);
    let ctx = Ctx::new(args, jeton, pinning, metrics, out.is_some())?;
    let mut failed = Vec::new();
    for (i, &scenario) in plan.iter().enumerate() {
        ctx.progress.scenario(i + 1, plan.len(), scenario.title());
        match scenarios::run(scenario, &ctx).await {
            Ok(section) => report.push(section),
            Err(e) => {
                ctx.progress
                    .println(&format!("{} failed: {e}", scenario.title()));
                report.push(format!(
                    "## {}\n\nNot measured: the scenario failed ({e}).\n",
                    scenario.title()
                ));
                failed.push(scenario.title());
            }
        }
    }
    let doc = report.render();
    if let Some(out) = &out {
        std::fs::write(out, &doc).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        ctx.progress
            .println(&format!("report written to {}", out.display()));
    }
    println!("{doc}");
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")).into())
    }
}
