//! Through a database failover: a real PostgreSQL primary and standby of the test's own
//! (`jeton_testkit::pgpair`), two jeton replicas on the multi-host URL under a continuous
//! `Validate` load, the primary killed with SIGKILL, the standby promoted a second later.
//!
//! With synchronous replication (docs/contract.md, "Through a database failover"): no
//! `Validate` of a token that was good fails, cached or not, on either replica; a revocation
//! acknowledged before the kill is never undone; writes are `UNAVAILABLE` ("failing over")
//! until the promote and work again within a second of it; nothing is ever `INTERNAL`.
//! With asynchronous replication the test records what happens (no standby holds every
//! acknowledged change, so validations fail closed until the promote) and checks only that
//! nothing is `INTERNAL` and that service comes back.

use crate::helpers::*;
use jeton::grpc::proto::{self, Namespace, Reason, token_service_client::TokenServiceClient};
use jeton_testkit::pgpair::{PgPair, Replication};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tonic::Code;

/// What a load loop saw.
#[derive(Debug, Default)]
struct Seen {
    calls: AtomicUsize,
    /// Answers other than "valid" for a token that was good, or errors.
    failed: AtomicUsize,
    /// `INTERNAL` or `UNKNOWN`: never allowed.
    internal: AtomicUsize,
    /// The revoked token answered valid: never allowed.
    revived: AtomicUsize,
}

/// Validates `good` tokens round-robin (each must be valid) and the `revoked` one (which
/// must never be) on `app` until `stop`.
fn load(
    channel: tonic::transport::Channel,
    good: Arc<Vec<String>>,
    revoked: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut c = TokenServiceClient::new(channel);
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let (token, must_be_valid) = if i.is_multiple_of(10) {
                (revoked.clone(), false)
            } else {
                (good[i % good.len()].clone(), true)
            };
            let r = c
                .validate(proto::ValidateRequest {
                    token,
                    namespace: Namespace::Api as i32,
                    ..Default::default()
                })
                .await;
            seen.calls.fetch_add(1, Ordering::Relaxed);
            match r {
                Ok(v) => {
                    let v = v.into_inner();
                    if must_be_valid && !v.valid {
                        seen.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    if !must_be_valid && v.valid {
                        seen.revived.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(s) => {
                    if matches!(s.code(), Code::Internal | Code::Unknown) {
                        seen.internal.fetch_add(1, Ordering::Relaxed);
                    }
                    if must_be_valid {
                        seen.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

async fn through_a_failover(replication: Replication) {
    let pair = PgPair::start(replication).await.unwrap();
    let a = TestApp::spawn_on_url(pair.multi_host_url(), Transport::Plain, |_| {}).await;
    let b = a.replica_with(Transport::Plain, |_| {}).await;
    // Tokens validated before the failover (cached on both replicas), tokens never validated
    // (their first validation comes during the failover), and one revoked before the kill.
    let mut cached = Vec::new();
    let mut uncached = Vec::new();
    for i in 0..20 {
        let t = a.mint(&a.admin, &format!("t{i}")).await.secret;
        if i < 10 {
            assert!(a.validate(&t, Namespace::Api, &[]).await.valid);
            assert!(b.validate(&t, Namespace::Api, &[]).await.valid);
            cached.push(t);
        } else {
            uncached.push(t);
        }
    }
    let revoked = a.mint(&a.admin, "leaked").await;
    for app in [&a, &b] {
        assert!(
            app.validate(&revoked.secret, Namespace::Api, &[])
                .await
                .valid
        );
    }
    a.tokens(&a.admin)
        .await
        .revoke(proto::RevokeRequest {
            id: revoked.token.unwrap().id,
        })
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let good = Arc::new(cached.clone());
    let mut loads = Vec::new();
    for app in [&a, &b] {
        for _ in 0..2 {
            loads.push(load(
                app.channel().await,
                good.clone(),
                revoked.secret.clone(),
                stop.clone(),
                seen.clone(),
            ));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = seen.calls.load(Ordering::Relaxed);

    // The primary dies; a second later the standby is promoted.
    pair.kill_primary().await.unwrap();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // First validations during the failover, on both replicas.
    let mut first_failed = 0;
    for (i, t) in uncached.iter().enumerate() {
        let app = if i % 2 == 0 { &a } else { &b };
        let r = TokenServiceClient::new(app.channel().await)
            .validate(proto::ValidateRequest {
                token: t.clone(),
                ..Default::default()
            })
            .await;
        match r {
            Ok(v) if v.get_ref().valid => {}
            other => {
                first_failed += 1;
                if let Err(s) = &other {
                    assert!(!matches!(s.code(), Code::Internal | Code::Unknown), "{s:?}");
                }
            }
        }
    }
    // A write while no host takes writes: UNAVAILABLE, saying why.
    let during = a
        .tokens(&a.admin)
        .await
        .generate(generate_req("during", &[]))
        .await;
    let write_during = format!("{during:?}");
    if let Err(s) = &during {
        assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    }
    // Health says what works: validations (the service) on a replica that cannot write.
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let health_during = (
        a.health("jeton.v1.TokenService").await.ok(),
        a.health("writes").await.ok(),
    );
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(killed.elapsed())).await;
    pair.promote_standby().await.unwrap();
    let promoted = Instant::now();
    // Writes come back: the first Generate that succeeds, on each replica.
    let mut writes_back = Vec::new();
    for app in [&a, &b] {
        let mut tokens = app.tokens(&app.admin).await;
        loop {
            match tokens.generate(generate_req("after", &[])).await {
                Ok(_) => break,
                Err(s) => {
                    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                    assert!(
                        promoted.elapsed() < Duration::from_secs(10),
                        "writes never came back: {s:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        writes_back.push(promoted.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.await.unwrap();
    }
    let calls = seen.calls.load(Ordering::Relaxed);
    let failed = seen.failed.load(Ordering::Relaxed);
    let internal = seen.internal.load(Ordering::Relaxed);
    let revived = seen.revived.load(Ordering::Relaxed);
    eprintln!(
        "{replication:?}: {calls} Validates ({before} before the kill), {failed} failed, \
         {internal} INTERNAL, revoked token valid {revived} times; first validations during \
         the failover: {first_failed} of {} failed; a write during it: {write_during}; \
         writes back {writes_back:?} after the promote",
        uncached.len()
    );
    assert_eq!(internal, 0, "no INTERNAL, ever");
    eprintln!("health during the failover (TokenService, writes): {health_during:?}");
    assert_ne!(
        health_during.1,
        Some(serving),
        "no host takes writes during the failover"
    );
    // After it, writes are said to work again (readiness checks every second).
    let back = Instant::now();
    while a.health("writes").await.ok() != Some(serving) {
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "health never said writes work again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match replication {
        Replication::Synchronous => {
            assert_eq!(
                health_during.0,
                Some(serving),
                "a replica that validates stays in rotation"
            );
            assert_eq!(failed, 0, "a good token failed during the failover");
            assert_eq!(
                first_failed, 0,
                "a first validation failed during the failover"
            );
            assert_eq!(revived, 0, "an acknowledged revocation was undone");
            assert!(during.is_err(), "a write succeeded with no primary");
            for took in &writes_back {
                assert!(
                    *took < Duration::from_secs(1),
                    "writes came back {took:?} after the promote"
                );
            }
        }
        Replication::Asynchronous => {}
    }
    // Everything is served again, on both replicas.
    for app in [&a, &b] {
        for t in cached.iter().chain(&uncached) {
            assert!(app.validate(t, Namespace::Api, &[]).await.valid);
        }
        if replication == Replication::Synchronous {
            assert_eq!(
                reason(&app.validate(&revoked.secret, Namespace::Api, &[]).await),
                Reason::Revoked
            );
        }
    }
    drop(pair);
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_goes_on_through_a_failover_with_synchronous_replication_on_postgres() {
    through_a_failover(Replication::Synchronous).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_failover_with_asynchronous_replication_does_on_postgres() {
    through_a_failover(Replication::Asynchronous).await;
}

/// The series of `jeton_database_reads_total` for reads that went to `host`.
fn reads_to(metrics: &std::collections::BTreeMap<String, f64>, host: &str) -> f64 {
    metrics
        .get(&format!("jeton_database_reads_total{{host=\"{host}\"}}"))
        .copied()
        .unwrap_or(0.0)
}

/// `pairs` times: a token generated on one replica is at once valid on the other, and in the
/// caller's `List` there every tenth time. Returns the misses.
async fn generate_then_validate(a: &TestApp, b: &TestApp, pairs: usize, tag: &str) -> usize {
    let mut misses = 0;
    for i in 0..pairs {
        let (on, other) = if i % 2 == 0 { (a, b) } else { (b, a) };
        let minted = on.mint(&on.admin, &format!("{tag}{i}")).await;
        if !other
            .validate(&minted.secret, Namespace::Api, &[])
            .await
            .valid
        {
            misses += 1;
        }
        if i % 10 == 0 {
            let id = minted.token.unwrap().id;
            let listed = other
                .list(&other.admin, proto::ListRequest::default())
                .await
                .unwrap();
            if !listed.iter().any(|t| t.id == id) {
                misses += 1;
            }
        }
    }
    misses
}

/// `--database-read-url` names a standby (asynchronous, so it lags): reads go there once it
/// has applied what the primary had written when they began, else to the primary. Either way
/// a token that `Generate` returned on one replica validates at once on the other and is in
/// the caller's `List` there — with the standby keeping up (reads served by it), and with its
/// replay paused (reads served by the primary).
#[tokio::test(flavor = "multi_thread")]
async fn a_lagging_read_host_never_hides_a_write_on_postgres() {
    let pair = PgPair::start(Replication::Asynchronous).await.unwrap();
    let read_url = jeton::config::ServeConfig::with_database(&pair.standby_url())
        .unwrap()
        .db
        .url;
    let tweak = |s: &mut jeton::config::ServeConfig| {
        s.database_read_url = Some(read_url.clone());
        s.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        s.max_tokens_per_owner = 10_000;
    };
    let a = TestApp::spawn_on_url(pair.primary_url(), Transport::Plain, tweak).await;
    let b = a.replica_with(Transport::Plain, tweak).await;
    let metrics = a.metrics.unwrap().to_string();
    // The probes find the read host; the followers start reading the change log there.
    let found = Instant::now();
    while reads_to(&scrape(&metrics), "read_host") == 0.0 {
        assert!(
            found.elapsed() < Duration::from_secs(10),
            "no read went to the read host"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 2 × 500 pairs: every List stays within one page of 1000.
    const PAIRS: usize = 500;
    let before = scrape(&metrics);
    let misses = generate_then_validate(&a, &b, PAIRS, "keeping-up").await;
    let after = scrape(&metrics);
    let served = reads_to(&after, "read_host") - reads_to(&before, "read_host");
    let behind = reads_to(&after, "primary_read_host_behind")
        - reads_to(&before, "primary_read_host_behind");
    eprintln!(
        "standby keeping up: {misses} misses in {PAIRS} pairs; reads on the read host \
         {served}, on the primary because it was behind {behind}"
    );
    assert_eq!(misses, 0, "a write was missed on a read host keeping up");
    assert!(
        served >= (PAIRS / 2) as f64,
        "first validations went to the read host: {served} reads there for {PAIRS} pairs"
    );

    // The standby stops applying what it receives: every read finds it behind.
    jeton_testkit::postgres::statement(&pair.standby_url(), "SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let before = scrape(&metrics);
    let misses = generate_then_validate(&a, &b, PAIRS, "lagging").await;
    let after = scrape(&metrics);
    let behind = reads_to(&after, "primary_read_host_behind")
        - reads_to(&before, "primary_read_host_behind");
    eprintln!(
        "standby paused: {misses} misses in {PAIRS} pairs; reads sent to the primary because \
         it was behind: {behind}"
    );
    assert_eq!(misses, 0, "a write was missed with the read host lagging");
    assert!(behind > 0.0, "the read host was never found behind");

    // Replay resumes: reads go back to the read host.
    jeton_testkit::postgres::statement(&pair.standby_url(), "SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    let resumed = scrape(&metrics);
    let back = Instant::now();
    while reads_to(&scrape(&metrics), "read_host") == reads_to(&resumed, "read_host") {
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "reads never went back to the read host"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((a, b));
    drop(pair);
}
