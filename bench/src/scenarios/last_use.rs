//! Database writes caused by 10^6 validations of one token: row updates of `tokens` in
//! PostgreSQL's statistics, around a replica that validates it for several flush intervals.

use super::{Ctx, flags};
use crate::load::{self, Call, Load};
use jeton_testkit::BoxError;
use jeton_testkit::postgres::token_updates;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FLUSH: Duration = Duration::from_secs(10);
const VALIDATIONS: usize = 1_000_000;
/// Flush intervals the load lasts at least.
const INTERVALS: u32 = 3;
/// PostgreSQL publishes a backend's table statistics up to 10 s late.
const STATS_DELAY: Duration = Duration::from_secs(11);
const WINDOW: Duration = Duration::from_secs(5);

pub async fn run(ctx: &Ctx) -> Result<String, BoxError> {
    // A database of its own: no other replica can write last-use times into it.
    let pg = ctx.postgres("last_use").await?;
    ctx.bootstrap(pg.url())?;
    let token = Arc::new(ctx.seed(pg.url(), 1, true, 0).await?);
    let c = ctx.serve(
        pg.url(),
        true,
        &flags(&[("--last-use-flush-interval", format!("{}s", FLUSH.as_secs()))]),
    )?;
    let spinner = ctx
        .progress
        .spinner("waiting for PostgreSQL's statistics (baseline)");
    tokio::time::sleep(STATS_DELAY).await;
    let updates0 = token_updates(pg.url()).await?;
    spinner.finish();

    let bar = ctx
        .progress
        .counter(VALIDATIONS as u64, "validating one token, 4 conns × 64");
    let (wall0, start) = (chrono::Utc::now(), Instant::now());
    let mut done = 0;
    while done < VALIDATIONS || start.elapsed() < FLUSH * INTERVALS {
        let load = Load {
            call: Call::Validate,
            tokens: &token,
            conns: 4,
            inflight: 64,
            warmup: Duration::ZERO,
            window: WINDOW,
        };
        let w = load::run(&c, &load).await?;
        done += w.calls;
        bar.set_position(done.min(VALIDATIONS) as u64);
    }
    let (wall1, end) = (chrono::Utc::now(), Instant::now());
    bar.finish();
    let flushes = ticks(c.started, start, end);
    c.stop()?; // SIGTERM: the shutdown flush

    let spinner = ctx
        .progress
        .spinner("waiting for PostgreSQL's statistics (final)");
    tokio::time::sleep(STATS_DELAY).await;
    let updates = token_updates(pg.url()).await? - updates0;
    spinner.finish();
    drop(pg);
    let minutes = wall1.timestamp() / 60 - wall0.timestamp() / 60 + 1;
    Ok(format!(
        "## Database writes for 10^6 validations of one token\n\n\
         One replica on a PostgreSQL database of its own (so no other replica writes to it), \
         `--last-use-flush-interval {}s`, validates one token, 4 connections × 64 in flight, \
         until it has done at least {VALIDATIONS} validations and {INTERVALS} flush \
         intervals have passed; then it gets SIGTERM, which flushes once more. Row updates \
         of `tokens` are read from `pg_stat_user_tables.n_tup_upd`, {}s after the server \
         started and {}s after it stopped (PostgreSQL publishes them up to 10 s late).\n\n\
         | validations | seconds | flushes during the load | minutes in which it was used | row updates of `tokens` |\n\
         | --- | --- | --- | --- | --- |\n\
         | {done} | {:.1} | {flushes} + 1 at shutdown | {minutes} | **{updates}** |\n\n\
         A flush writes a token's last use truncated to the minute, and only where the \
         stored time is older, so only the first flush that carries a new minute updates \
         the row: the expected count is at most the minutes in which the token was used \
         ({minutes}), however many validations and flushes there were.\n",
        FLUSH.as_secs(),
        STATS_DELAY.as_secs(),
        STATS_DELAY.as_secs(),
        (end - start).as_secs_f64(),
    ))
}

/// Flush ticks (every [`FLUSH`] from `started`) within `[from, to]`.
fn ticks(started: Instant, from: Instant, to: Instant) -> u64 {
    let f = FLUSH.as_secs_f64();
    let first = ((from - started).as_secs_f64() / f).ceil().max(1.0);
    let last = ((to - started).as_secs_f64() / f).floor();
    (last - first + 1.0).max(0.0) as u64
}
