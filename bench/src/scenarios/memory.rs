//! Memory per cached token: the server's resident memory before and after caching `--big`
//! tokens, with the last-use buffer flushed and the pool open in both measurements.

use super::{Ctx, flags};
use crate::load::{self, Expect};
use crate::server::Server;
use jeton::domain::{Namespace, TokenString};
use jeton::grpc::proto;
use jeton_testkit::BoxError;
use std::sync::Arc;
use std::time::Duration;

const FLUSH: Duration = Duration::from_secs(1);
/// Waited beyond the flush interval before reading memory (then until the server is idle).
const MARGIN: Duration = Duration::from_secs(2);
/// Unknown ids validated to open the pool: the absent-id cache keeps them for 5 s.
const ABSENT: usize = 640;
const INFLIGHT: usize = 64;
/// How much faster the second pass must be to count, without metrics, as served from cache.
const CACHED_SPEEDUP: f64 = 1.5;

pub async fn run(ctx: &Ctx) -> Result<String, BoxError> {
    let n = ctx.args.big.max(2);
    let db = ctx.sqlite("memory.db");
    ctx.bootstrap(&db)?;
    let tokens = Arc::new(ctx.seed(&db, n, true, 0).await?);
    let server = ctx.serve(
        &db,
        true,
        &flags(&[
            ("--cache-capacity", (2 * n).to_string()),
            ("--cache-ttl", "1h".into()),
            ("--last-use-flush-interval", humantime(FLUSH)),
        ]),
    )?;
    open_pool(ctx, &server, &tokens[0]).await?;
    let spinner = ctx.progress.spinner("waiting for the server to be idle");
    // Also outlives the absent-id cache (5 s).
    server
        .settle(Duration::from_secs(6).max(FLUSH + MARGIN))
        .await;
    spinner.finish();
    let rss0 = server.rss();
    let (first, second, check) = cache_all(ctx, &server, &tokens).await?;
    let spinner = ctx.progress.spinner("waiting for the last-use flush");
    server.settle(FLUSH + MARGIN).await;
    spinner.finish();
    let rss1 = server.rss();
    server.stop()?;
    let cached = n - 1;
    let per = rss1.saturating_sub(rss0) as f64 / cached as f64;
    Ok(format!(
        "## Memory per cached token\n\n\
         One server (SQLite, `--cache-capacity {}`, `--cache-ttl 1h`, \
         `--last-use-flush-interval {}`). Before the first reading it validates {ABSENT} \
         unknown token ids, {INFLIGHT} in flight, so that the database pool opens its \
         connections (concurrent first uses of one token share one read, so one token \
         would not open them), then one real token {INFLIGHT} times at once; so the pool \
         and the first entry are in both readings. Then all {n} tokens are validated, \
         {INFLIGHT} in flight ({first:.1} s), and all again ({second:.1} s): {check} Each \
         reading of the resident memory (`VmRSS`) follows a wait of more than the flush \
         interval and until the server is idle, so the last-use buffer has been written and \
         emptied.\n\n\
         RSS before: {:.1} MiB; after caching {cached} more tokens: {:.1} MiB. **{per:.0} \
         bytes per cached token** (token row, digest, cache bookkeeping).\n",
        2 * n,
        humantime(FLUSH),
        rss0 as f64 / 1_048_576.0,
        rss1 as f64 / 1_048_576.0,
        first = first.as_secs_f64(),
        second = second.as_secs_f64(),
    ))
}

/// Opens the database pool (unknown ids, concurrently) and caches `one`.
async fn open_pool(ctx: &Ctx, server: &Server, one: &str) -> Result<(), BoxError> {
    let absent = (0..ABSENT)
        .map(|_| TokenString::generate(Namespace::Api).map(|t| t.expose().to_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    let bar = ctx.progress.counter(
        (ABSENT + INFLIGHT) as u64,
        "opening the pool: unknown ids, then one token",
    );
    let expect = Expect::Invalid(proto::Reason::NotFound);
    load::validate_each(server, &Arc::new(absent), INFLIGHT, expect, &bar).await?;
    let one = Arc::new(vec![one.to_owned(); INFLIGHT]);
    load::validate_each(server, &one, INFLIGHT, Expect::Valid, &bar).await?;
    bar.finish();
    Ok(())
}

/// Validates every token twice; returns both durations and the sentence that says how the
/// second pass was checked to come from the cache.
async fn cache_all(
    ctx: &Ctx,
    server: &Server,
    tokens: &Arc<Vec<String>>,
) -> Result<(Duration, Duration, String), BoxError> {
    let n = tokens.len() as u64;
    let bar = ctx.progress.counter(n, "first pass: every token");
    let first = load::validate_each(server, tokens, INFLIGHT, Expect::Valid, &bar).await?;
    bar.finish();
    let before = server.counters();
    let bar = ctx.progress.counter(n, "second pass: every token");
    let second = load::validate_each(server, tokens, INFLIGHT, Expect::Valid, &bar).await?;
    bar.finish();
    let check = match before.zip(server.counters()) {
        Some((b, a)) => {
            let d = a.since(&b);
            if d.argon2 > 0.0 || d.hit < n as f64 {
                return Err(format!(
                    "not every token stayed cached: the second pass computed {} Argon2 hashes \
                     and had {} hits for {n} tokens",
                    d.argon2, d.hit
                )
                .into());
            }
            "the server's counters show the second pass all cache hits, with no Argon2 \
             computation."
                .to_owned()
        }
        None => {
            let speedup = first.as_secs_f64() / second.as_secs_f64().max(f64::MIN_POSITIVE);
            if speedup >= CACHED_SPEEDUP {
                format!(
                    "without server metrics, the second pass being {speedup:.1} times faster \
                     is taken as all served from the cache (not counted)."
                )
            } else {
                format!(
                    "**not confirmed** that all were cached: without server metrics only the \
                     speed of the second pass can tell, and it was only {speedup:.1} times \
                     faster."
                )
            }
        }
    };
    Ok((first, second, check))
}

fn humantime(d: Duration) -> String {
    format!("{}s", d.as_secs())
}
