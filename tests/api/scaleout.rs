//! Several replicas on one database: caches invalidated everywhere within the deadline,
//! last-use times that never go backwards, and an unreachable database answered promptly.

use crate::helpers::*;
use chrono::TimeDelta;
use jeton::grpc::proto::{self, Assignment, Namespace, Reason, Role};
use std::time::{Duration, Instant};
use tonic::Code;

/// docs/contract.md: every change reaches every replica's cache within one second.
const DEADLINE: Duration = Duration::from_secs(1);

/// Polls `check` until it holds; returns how long that took, failing past the deadline.
async fn within_deadline<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn revocation_reaches_the_other_replica_within_a_second() {
    let a = TestApp::spawn().await;
    let b = a.replica().await;
    let t = a
        .tokens(&a.admin)
        .await
        .generate(generate_req("agent", &[]))
        .await
        .unwrap()
        .into_inner();
    // Both replicas have it cached.
    for _ in 0..3 {
        assert!(a.validate(&t.secret, Namespace::Api, &[]).await.valid);
        assert!(b.validate(&t.secret, Namespace::Api, &[]).await.valid);
    }
    a.tokens(&a.admin)
        .await
        .revoke(proto::RevokeRequest {
            id: t.token.unwrap().id,
        })
        .await
        .unwrap();
    let v = a.validate(&t.secret, Namespace::Api, &[]).await;
    assert_eq!(
        reason(&v),
        Reason::Revoked,
        "the revoking replica: the very next call"
    );
    let took = within_deadline("revocation on replica B", || async {
        reason(&b.validate(&t.secret, Namespace::Api, &[]).await) == Reason::Revoked
    })
    .await;
    eprintln!("revocation visible on the other replica after {took:?}");
    // And a bearer call through B with it is refused too.
    assert_code(
        b.tokens(&t.secret)
            .await
            .list(proto::ListRequest::default())
            .await,
        Code::Unauthenticated,
        "",
    );
}

#[tokio::test]
async fn demotion_on_one_replica_narrows_cached_tokens_on_another() {
    let a = TestApp::spawn().await;
    let b = a.replica().await;
    let op = a.user("oscar@contoso.com", Role::Operator).await;
    assert_eq!(
        b.validate(&op, Namespace::Api, &[]).await.effective_scopes,
        ["read", "write"]
    );
    assert_eq!(
        b.validate(&op, Namespace::Api, &[]).await.effective_scopes,
        ["read", "write"]
    );

    a.put_principal("oscar@contoso.com", Role::Reader, Assignment::Active)
        .await;
    assert_eq!(
        a.validate(&op, Namespace::Api, &[]).await.effective_scopes,
        ["read"]
    );
    within_deadline("demotion on replica B", || async {
        b.validate(&op, Namespace::Api, &[]).await.effective_scopes == ["read"]
    })
    .await;

    a.directory(&a.admin)
        .await
        .delete_principal(proto::DeletePrincipalRequest {
            id: "oscar@contoso.com".into(),
        })
        .await
        .unwrap();
    within_deadline("removal on replica B", || async {
        reason(&b.validate(&op, Namespace::Api, &[]).await) == Reason::RoleInactive
    })
    .await;
}

#[tokio::test]
async fn cached_tokens_still_expire_on_time() {
    let a = TestApp::spawn().await;
    let t = a
        .tokens(&a.admin)
        .await
        .generate(proto::GenerateRequest {
            expire_time: Some(a.clock_ts_after(TimeDelta::minutes(10))),
            ..generate_req("short", &[])
        })
        .await
        .unwrap()
        .into_inner();
    assert!(a.validate(&t.secret, Namespace::Api, &[]).await.valid);
    assert!(
        a.validate(&t.secret, Namespace::Api, &[]).await.valid,
        "now from the cache"
    );
    a.clock.advance(TimeDelta::minutes(10));
    let v = a.validate(&t.secret, Namespace::Api, &[]).await;
    assert_eq!(
        reason(&v),
        Reason::Expired,
        "no event needed: entries are judged against the clock"
    );
}

#[tokio::test]
async fn a_wrong_secret_for_a_cached_token_is_still_not_found() {
    let a = TestApp::spawn().await;
    assert!(a.validate(&a.admin, Namespace::Api, &[]).await.valid);
    let id = &a.admin[4..26];
    let forged = crate::tokens::forge(&format!("jta_{id}{}", "B".repeat(43)));
    let v = a.validate(&forged, Namespace::Api, &[]).await;
    assert_eq!((v.valid, reason(&v)), (false, Reason::NotFound));
    assert!(
        a.validate(&a.admin, Namespace::Api, &[]).await.valid,
        "the real entry is untouched"
    );
}

#[tokio::test]
async fn last_use_never_moves_backwards_across_replicas() {
    let a = TestApp::spawn().await;
    let b = a.replica().await;
    let t = a
        .tokens(&a.admin)
        .await
        .generate(generate_req("agent", &[]))
        .await
        .unwrap()
        .into_inner();
    // A sees an older use, B a newer one; B flushes first, then A.
    assert!(a.validate(&t.secret, Namespace::Api, &[]).await.valid);
    let older = a.clock_now_ts();
    a.clock.advance(TimeDelta::minutes(3));
    assert!(b.validate(&t.secret, Namespace::Api, &[]).await.valid);
    let newer = a.clock_now_ts();
    assert_ne!(older, newer);
    assert_eq!(
        last_use(&b).await,
        Some(newer),
        "List on B flushed B's newer time"
    );
    assert_eq!(
        last_use(&a).await,
        Some(newer),
        "A's older time did not overwrite it"
    );
}

async fn last_use(app: &TestApp) -> Option<prost_types::Timestamp> {
    let listed = app
        .list(&app.admin, proto::ListRequest::default())
        .await
        .unwrap();
    listed
        .into_iter()
        .find(|x| x.name == "agent")
        .unwrap()
        .last_use_time
}

/// PostgreSQL only, whatever `JETON_TEST_ENGINE` says: the database is cut off by closing a
/// TCP proxy in front of it, and an SQLite file inside the process cannot be.
#[tokio::test]
async fn an_unreachable_database_is_unavailable_promptly_and_recovery_is_automatic_on_postgres() {
    let proxy = Proxy::start().await;
    let app = TestApp::spawn_on(DbEngine::Postgres, Transport::Tls, |s| {
        proxy.route(s);
        s.db.connect_timeout = Duration::from_millis(500);
    })
    .await;
    let mut admin = app.tokens(&app.admin).await;
    admin.list(proto::ListRequest::default()).await.unwrap();

    proxy.cut();
    let start = Instant::now();
    let r = admin.list(proto::ListRequest::default()).await;
    assert_code(r, Code::Unavailable, "");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "promptly: {:?}",
        start.elapsed()
    );
    let fresh = crate::tokens::forge(&format!("jta_{}{}", "Q".repeat(22), "A".repeat(43)));
    let r = proto::token_service_client::TokenServiceClient::new(app.channel().await)
        .validate(proto::ValidateRequest {
            token: fresh,
            ..Default::default()
        })
        .await;
    assert_code(r, Code::Unavailable, "");

    proxy.restore().await;
    let start = Instant::now();
    loop {
        if admin.list(proto::ListRequest::default()).await.is_ok() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revocations_through_two_replicas_all_arrive_everywhere() {
    let a = TestApp::spawn().await;
    let b = a.replica().await;
    let mut tokens = Vec::new();
    for i in 0..20 {
        let t = a
            .tokens(&a.admin)
            .await
            .generate(generate_req(&format!("t{i}"), &[]))
            .await
            .unwrap()
            .into_inner();
        tokens.push((t.token.unwrap().id, t.secret));
    }
    for (_, secret) in &tokens {
        assert!(a.validate(secret, Namespace::Api, &[]).await.valid);
        assert!(b.validate(secret, Namespace::Api, &[]).await.valid);
    }
    // Two writers at once: half the revocations through each replica, all in flight together.
    let mut calls = Vec::new();
    for (i, (id, _)) in tokens.iter().enumerate() {
        let mut client = if i % 2 == 0 {
            a.tokens(&a.admin).await
        } else {
            b.tokens(&a.admin).await
        };
        let id = id.clone();
        calls.push(tokio::spawn(async move {
            client.revoke(proto::RevokeRequest { id }).await
        }));
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
    for (_, secret) in &tokens {
        for app in [&a, &b] {
            within_deadline("every revocation on every replica", || async {
                reason(&app.validate(secret, Namespace::Api, &[]).await) == Reason::Revoked
            })
            .await;
        }
    }
}
