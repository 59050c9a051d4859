//! Revocation across replicas: how long after `Revoke` returns on replica A does replica B,
//! busy validating other tokens, answer `REASON_REVOKED` for a token it had cached.

use super::Ctx;
use crate::load::{self, Expect, Lat};
use crate::server::{Server, admin_client};
use jeton::domain::TokenString;
use jeton::grpc::proto::{self, token_service_client::TokenServiceClient};
use jeton_testkit::BoxError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Other tokens B keeps validating meanwhile, and how many calls at once.
const BACKGROUND_TOKENS: usize = 1_000;
const BACKGROUND_INFLIGHT: usize = 8;
/// Revocations land at a random point of this span: more than B's change-log poll (100 ms).
const PHASE_MS: u64 = 200;
const GIVE_UP: Duration = Duration::from_secs(10);

pub async fn run(ctx: &Ctx) -> Result<String, BoxError> {
    let pg = ctx.postgres("replicas").await?;
    let admin = ctx.bootstrap(pg.url())?;
    let revocations = ctx.args.revocations;
    let mut tokens = ctx
        .seed(pg.url(), revocations + BACKGROUND_TOKENS, true, 0)
        .await?;
    let background = Arc::new(tokens.split_off(revocations));
    let victims = tokens;
    let a = ctx.serve(pg.url(), false, &[])?;
    let b = ctx.serve(pg.url(), false, &[])?;
    let bar = ctx.progress.counter(
        BACKGROUND_TOKENS as u64,
        "caching the background tokens on B",
    );
    load::validate_each(&b, &background, 64, Expect::Valid, &bar).await?;
    bar.finish();
    let busy = Background::start(&b, background).await?;
    let delays = measure(ctx, &a, &b, &admin, &victims).await;
    let (calls, took) = busy.stop().await?;
    let delays = delays?;
    a.stop()?;
    b.stop()?;
    drop(pg);
    Ok(format!(
        "## Revocation across replicas\n\n\
         Two `jeton serve` processes, A and B, on one PostgreSQL database (default change-log \
         poll interval, 100 ms; not pinned). B is kept busy validating {BACKGROUND_TOKENS} \
         other cached tokens, {BACKGROUND_INFLIGHT} calls in flight ({:.0} calls/s over the \
         scenario). For each of {revocations} tokens: validate it twice on B (so it is cached \
         there), wait a random delay in [0, {PHASE_MS} ms) so that the revocation lands at a \
         random point of B's poll, revoke it through A, then validate it on B in a loop; the \
         delay runs from `Revoke` returning on A to B's first `REASON_REVOKED`.\n\n\
         | delay | p50 ms | p99 ms | max ms |\n| --- | --- | --- | --- |\n\
         | revocation visible on B | {} | {} | {:.3} |\n",
        calls as f64 / took.as_secs_f64(),
        delays.ms(0.5),
        delays.ms(0.99),
        delays.max_ms(),
    ))
}

/// The delay of each revocation.
async fn measure(
    ctx: &Ctx,
    a: &Server,
    b: &Server,
    admin: &str,
    victims: &[String],
) -> Result<Lat, BoxError> {
    let mut revoker = admin_client(a.channel().await?, admin)?;
    let mut on_b = TokenServiceClient::new(b.channel().await?);
    let bar = ctx
        .progress
        .counter(victims.len() as u64, "revoke on A, wait for B");
    let mut ns = Vec::with_capacity(victims.len());
    for victim in victims {
        let id = TokenString::parse(victim)
            .ok_or("a seeded token does not parse")?
            .id();
        for _ in 0..2 {
            let r = load::validate(&mut on_b, victim).await?;
            if !r.valid {
                return Err(format!(
                    "token not valid on B before its revocation ({:?})",
                    r.reason()
                )
                .into());
            }
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..PHASE_MS))).await;
        revoker
            .revoke(proto::RevokeRequest {
                id: id.as_str().to_owned(),
            })
            .await?;
        let revoked = Instant::now();
        loop {
            let r = load::validate(&mut on_b, victim).await?;
            if r.reason() == proto::Reason::Revoked {
                ns.push(u64::try_from(revoked.elapsed().as_nanos()).unwrap_or(u64::MAX));
                break;
            }
            if revoked.elapsed() > GIVE_UP {
                return Err(format!("revocation not seen on B after {GIVE_UP:?}").into());
            }
        }
        bar.inc(1);
    }
    bar.finish();
    Ok(Lat::new(ns))
}

/// Validate calls on B from background tasks until stopped.
struct Background {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<Result<(), String>>>,
    started: Instant,
}

impl Background {
    async fn start(b: &Server, tokens: Arc<Vec<String>>) -> Result<Self, BoxError> {
        let channel = b.channel().await?;
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks = (0..BACKGROUND_INFLIGHT)
            .map(|slot| {
                let mut client = TokenServiceClient::new(channel.clone());
                let (stop, calls, tokens) = (stop.clone(), calls.clone(), tokens.clone());
                tokio::spawn(async move {
                    let mut i = slot * 7919;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let r = load::validate(&mut client, &tokens[i % tokens.len()]).await?;
                        if !r.valid {
                            return Err(format!("background token invalid ({:?})", r.reason()));
                        }
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        Ok(Self {
            stop,
            calls,
            tasks,
            started: Instant::now(),
        })
    }

    /// Stops the tasks; returns the calls they made and over how long.
    async fn stop(mut self) -> Result<(usize, Duration), BoxError> {
        self.stop.store(true, Ordering::Relaxed);
        for task in std::mem::take(&mut self.tasks) {
            task.await??;
        }
        Ok((self.calls.load(Ordering::Relaxed), self.started.elapsed()))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
