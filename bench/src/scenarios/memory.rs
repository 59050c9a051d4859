//! The server's memory:
//!
//! - per cached token: its resident memory before and after caching `--big` tokens, with the
//!   last-use buffer flushed and the pool open in both measurements;
//! - under concurrent `Generate`: its resident memory while 4, then 16 clients loop
//!   `Generate` + `Revoke` at production Argon2 cost (19 MiB of working memory per hash),
//!   and once the load has stopped — the figure `deploy/`'s memory limits are sized from.

use super::{Ctx, flags};
use crate::load::{self, Expect};
use crate::report::table;
use crate::server::{AdminClient, Server, admin_client};
use jeton::domain::{Namespace, TokenString};
use jeton::grpc::proto;
use jeton_testkit::BoxError;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// Concurrent clients of each row of the `Generate` memory table.
const GENERATE_CLIENTS: [usize; 2] = [4, 16];
/// How long each row's clients loop.
const GENERATE_WINDOW: Duration = Duration::from_secs(30);
/// How often resident memory is read during the loops.
const RSS_EVERY: Duration = Duration::from_millis(50);
/// Idle time after the loops before the last reading: longer than tokio's blocking threads
/// live without work (10 s), so memory they alone held is gone.
const AFTER: Duration = Duration::from_secs(12);
/// Argon2 computations at once, as `deploy/kubernetes/configmap.yaml` sets them.
const ARGON2_SLOTS: u32 = 2;

/// One row: resident memory around a window of concurrent `Generate` + `Revoke` loops.
struct GenerateRow {
    clients: usize,
    loops: usize,
    idle: u64,
    peak: u64,
    after: u64,
}

/// Resident memory while clients loop `Generate` + `Revoke` (one Argon2 hash per loop), on a
/// fresh server per row.
pub async fn under_generate(ctx: &Ctx) -> Result<String, BoxError> {
    let mut rows = Vec::new();
    for (i, clients) in GENERATE_CLIENTS.into_iter().enumerate() {
        let db = ctx.sqlite(&format!("generate-memory-{i}.db"));
        let admin = ctx.bootstrap(&db)?;
        // Not pinned: a replica with two cores, as deploy/ gives it; production Argon2 cost.
        let server = ctx.serve(
            &db,
            false,
            &flags(&[("--argon2-max-concurrent", ARGON2_SLOTS.to_string())]),
        )?;
        let client = admin_client(server.channel().await?, &admin)?;
        // The admin's token, validated once, is then cached: every loop hashes once.
        generate_and_revoke(&mut client.clone()).await?;
        let spinner = ctx.progress.spinner("waiting for the server to be idle");
        server.settle(Duration::from_secs(2)).await;
        spinner.finish();
        let idle = server.rss();
        let (loops, peak) = loop_generate(ctx, &server, &client, clients).await?;
        let spinner = ctx
            .progress
            .spinner(format!("{}s idle after the load", AFTER.as_secs()));
        tokio::time::sleep(AFTER).await;
        spinner.finish();
        let after = server.rss();
        server.stop()?;
        rows.push(GenerateRow {
            clients,
            loops,
            idle,
            peak,
            after,
        });
    }
    let mib = |b: u64| format!("{:.1}", b as f64 / 1_048_576.0);
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.clients.to_string(),
                format!(
                    "{} ({:.0}/s)",
                    r.loops,
                    r.loops as f64 / GENERATE_WINDOW.as_secs_f64()
                ),
                mib(r.idle),
                format!("**{}**", mib(r.peak)),
                mib(r.after),
            ]
        })
        .collect();
    let worst = rows.iter().map(|r| r.peak.max(r.after)).max().unwrap_or(0);
    Ok(format!(
        "## Memory under concurrent `Generate`\n\n\
         One server per row (SQLite, production Argon2id cost: m=19456 KiB, t=2, p=1; \
         `--argon2-max-concurrent {ARGON2_SLOTS}`, as `deploy/kubernetes/configmap.yaml` sets \
         it; not pinned: two cores, as `deploy/` gives a replica). Each client loops \
         `Generate` then `Revoke` of the token it made, one call at a time, as the admin \
         (whose token is cached after the first call), so every loop costs one Argon2 hash \
         and the owner's live tokens stay under the quota. Resident memory (`VmRSS`) is read \
         once the server is idle before the load, every {} ms during {} s of loops (the \
         peak), and after {} s without calls.\n\n{}\n\
         Highest reading: **{} MiB**.\n",
        RSS_EVERY.as_millis(),
        GENERATE_WINDOW.as_secs(),
        AFTER.as_secs(),
        table(
            &[
                "clients",
                "loops (Generate + Revoke)",
                "RSS idle before, MiB",
                "RSS peak during, MiB",
                "RSS after, MiB",
            ],
            &body,
        ),
        mib(worst),
    ))
}

/// One `Generate`, then `Revoke` of the token it made.
async fn generate_and_revoke(client: &mut AdminClient) -> Result<(), String> {
    let made = client
        .generate(proto::GenerateRequest {
            name: "bench-memory".into(),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("Generate failed: {e}"))?
        .into_inner();
    let id = made
        .token
        .map(|t| t.id)
        .ok_or("Generate returned no token")?;
    client
        .revoke(proto::RevokeRequest { id })
        .await
        .map_err(|e| format!("Revoke failed: {e}"))?;
    Ok(())
}

/// `clients` loops of [`generate_and_revoke`] for [`GENERATE_WINDOW`]; returns the loops
/// done and the highest resident memory read meanwhile.
async fn loop_generate(
    ctx: &Ctx,
    server: &Server,
    client: &AdminClient,
    clients: usize,
) -> Result<(usize, u64), BoxError> {
    let spinner = ctx.progress.spinner(format!(
        "{clients} clients looping Generate + Revoke for {} s",
        GENERATE_WINDOW.as_secs()
    ));
    let loops = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicU64::new(server.rss()));
    let until = Instant::now() + GENERATE_WINDOW;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (mut client, loops) = (client.clone(), loops.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    generate_and_revoke(&mut client).await?;
                    loops.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    while Instant::now() < until {
        tokio::time::sleep(RSS_EVERY).await;
        peak.fetch_max(server.rss(), Ordering::Relaxed);
    }
    for task in tasks {
        task.await??;
    }
    peak.fetch_max(server.rss(), Ordering::Relaxed);
    spinner.finish();
    Ok((loops.load(Ordering::Relaxed), peak.load(Ordering::Relaxed)))
}
