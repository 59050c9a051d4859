//! Every limit SECURITY.md promises, seen at the API: what a caller gets at the limit and
//! beyond it — the Argon2 queue, the pacing of answers that find no token, the suspect lane,
//! connections at once, and request and header sizes on both ports.

use crate::helpers::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use jeton::grpc::proto::{self, Namespace, token_service_client::TokenServiceClient};
use std::time::{Duration, Instant};
use tonic::Code;

/// A random string with a jeton token's shape and checksum, for an id that does not exist.
fn stranger() -> String {
    const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 65];
    rand::fill(&mut bytes);
    let body: String = bytes.iter().map(|b| A[*b as usize % 62] as char).collect();
    crate::tokens::forge(&format!("jta_{body}"))
}

/// `--argon2-max-concurrent` and `--argon2-queue-timeout`: a computation that cannot get a
/// slot in time is `RESOURCE_EXHAUSTED` at the gRPC edge, saying why — never a hang or an
/// `INTERNAL` — and the calls that got a slot succeed.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_argon2_queue_is_resource_exhausted_at_the_edge() {
    let app = TestApp::spawn_with(Transport::Plain, |s| {
        s.argon2_max_concurrent = Some(1);
        s.argon2_queue_timeout = Duration::from_millis(20);
        // Tens of milliseconds per hash: longer than the queue timeout.
        s.hash.memory_kib = 32 * 1024;
        s.hash.iterations = 3;
        s.max_tokens_per_owner = 1000;
    })
    .await;
    let calls = (0..8).map(|i| {
        let app = &app;
        async move {
            app.tokens(&app.admin)
                .await
                .generate(generate_req(&format!("busy-{i}"), &[]))
                .await
        }
    });
    let mut ok = 0;
    let mut busy = 0;
    for r in futures_util::future::join_all(calls).await {
        match r {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                assert!(s.message().contains("retry shortly"), "{}", s.message());
                busy += 1;
            }
        }
    }
    assert!(ok >= 1, "the call holding the slot succeeded");
    assert!(
        busy >= 1,
        "at least one call found the queue full ({ok} ok)"
    );
}

/// Beyond 1000 a second, answers that find no token wait 200–400 ms — while a valid, cached
/// token validated in the same seconds is answered at once (pacing never touches it).
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_unknown_tokens_is_paced_and_valid_tokens_are_not() {
    let app = TestApp::spawn_with(Transport::Plain, |_| {}).await;
    let legit = app.mint(&app.admin, "legit").await.secret;
    assert!(app.validate(&legit, Namespace::Api, &[]).await.valid);
    let channel = app.channel().await;
    let flood_for = Duration::from_millis(1500);
    let start = Instant::now();
    let flooders = (0..64).map(|_| {
        let mut c = TokenServiceClient::new(channel.clone());
        tokio::spawn(async move {
            let mut slow = Vec::new();
            while start.elapsed() < flood_for {
                let t = Instant::now();
                let v = c
                    .validate(proto::ValidateRequest {
                        token: stranger(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(reason(&v), proto::Reason::NotFound);
                slow.push(t.elapsed());
            }
            slow
        })
    });
    let flooders: Vec<_> = flooders.collect();
    let mut legit_client = TokenServiceClient::new(channel.clone());
    let mut legit_took = Vec::new();
    while start.elapsed() < flood_for {
        let t = Instant::now();
        let v = legit_client
            .validate(proto::ValidateRequest {
                token: legit.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(v.valid);
        legit_took.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut strangers = Vec::new();
    for f in flooders {
        strangers.extend(f.await.unwrap());
    }
    let paced = strangers
        .iter()
        .filter(|d| **d >= Duration::from_millis(200))
        .count();
    legit_took.sort();
    let median = legit_took[legit_took.len() / 2];
    eprintln!(
        "{} unknown tokens, {paced} paced; {} valid answers, median {median:?}, slowest {:?}",
        strangers.len(),
        legit_took.len(),
        legit_took.last()
    );
    assert!(
        paced > 0,
        "a flood of {} never met the pacing",
        strangers.len()
    );
    // Paced answers wait at least 200 ms by design; a valid answer never does.
    assert!(median < Duration::from_millis(50), "{median:?}");
    let waited = legit_took
        .iter()
        .filter(|d| **d >= Duration::from_millis(200))
        .count();
    assert!(
        waited * 20 <= legit_took.len(),
        "{waited} of {} valid answers waited as long as a paced one",
        legit_took.len()
    );
}

/// Wrong secrets for real, uncached ids make those ids suspect: their verifications share at
/// most half of the Argon2 slots, so the first validations of other tokens go on beside a
/// flood of them — none refused for a full queue.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_wrong_secrets_leaves_slots_for_other_tokens() {
    let app = TestApp::spawn_with(Transport::Plain, |s| {
        s.argon2_max_concurrent = Some(2);
        s.argon2_queue_timeout = Duration::from_secs(2);
        s.hash.memory_kib = 8 * 1024;
        s.max_tokens_per_owner = 1000;
    })
    .await;
    let mut issuer = app.tokens(&app.admin).await;
    let mut targets = Vec::new();
    let mut legit = Vec::new();
    for i in 0..20 {
        let g = issuer
            .generate(generate_req(&format!("t{i}"), &[]))
            .await
            .unwrap()
            .into_inner();
        if i < 4 {
            targets.push(g.token.unwrap().id);
        } else {
            legit.push(g.secret);
        }
    }
    // A replica that has cached none of them.
    let fresh = app
        .replica_with(Transport::Plain, |s| {
            s.argon2_max_concurrent = Some(2);
            s.argon2_queue_timeout = Duration::from_secs(2);
        })
        .await;
    let channel = fresh.channel().await;
    let stop_at = Instant::now() + Duration::from_secs(3);
    let attackers: Vec<_> = (0..16)
        .map(|i| {
            let id = targets[i % targets.len()].clone();
            let mut c = TokenServiceClient::new(channel.clone());
            tokio::spawn(async move {
                while Instant::now() < stop_at {
                    let mut bytes = [0u8; 43];
                    rand::fill(&mut bytes);
                    let secret: String = bytes
                        .iter()
                        .map(|b| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"[*b as usize % 26]))
                        .collect();
                    let wrong = crate::tokens::forge(&format!("jta_{id}{secret}"));
                    let r = c
                        .validate(proto::ValidateRequest {
                            token: wrong,
                            ..Default::default()
                        })
                        .await;
                    match r {
                        Ok(v) => assert!(!v.into_inner().valid),
                        Err(s) => assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}"),
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Each legitimate token's first validation on this replica needs an Argon2 slot.
    let mut c = TokenServiceClient::new(channel.clone());
    for secret in &legit {
        let v = c
            .validate(proto::ValidateRequest {
                token: secret.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("a first validation was refused beside the flood: {s:?}"))
            .into_inner();
        assert!(v.valid);
    }
    for a in attackers {
        a.await.unwrap();
    }
}

/// `--max-connections`: beyond the limit, a connection waits in the kernel's backlog until
/// a place frees — on the gRPC port and on the HTTP port alike — and is then served.
#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_limit_wait_for_a_place() {
    let app = TestApp::spawn_with(Transport::Plain, |s| {
        s.connection_limit = 2;
        s.handshake_timeout = Duration::from_secs(30);
        s.http_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let legit = app.mint(&app.admin, "legit").await.secret;
    for (port, addr) in [("gRPC", app.addr), ("HTTP", app.http.unwrap())] {
        // Two silent connections take both places (the helpers' channels are closed).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let silent: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ask = || async {
            match port {
                "gRPC" => app.validate(&legit, Namespace::Api, &[]).await.valid,
                _ => {
                    let bearer = format!("Bearer {legit}");
                    http(
                        addr,
                        "GET",
                        "/v1/forward-auth",
                        &[("authorization", &bearer)],
                        "",
                    )
                    .await
                    .status
                        == 200
                }
            }
        };
        assert!(
            tokio::time::timeout(Duration::from_millis(700), ask())
                .await
                .is_err(),
            "{port}: a third connection was served while two held both places"
        );
        drop(silent);
        let served = tokio::time::timeout(Duration::from_secs(5), ask())
            .await
            .unwrap_or_else(|_| panic!("{port}: not served once a place freed"));
        assert!(served, "{port}");
    }
}

/// Header and body limits on the HTTP port (16 KiB of headers: 431; 64 KiB of body: 413),
/// the gRPC port's header list, and Envoy `Check`'s 256 KiB: each refused before any work,
/// and the server goes on.
#[tokio::test(flavor = "multi_thread")]
async fn requests_and_headers_over_their_limits_are_refused_on_both_ports() {
    let app = TestApp::spawn_with(Transport::Plain, |s| {
        s.http_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let http_addr = app.http.unwrap();
    let legit = app.mint(&app.admin, "legit").await.secret;
    let bearer = format!("Bearer {legit}");
    let big = "x".repeat(17 * 1024);
    let r = http(
        http_addr,
        "GET",
        "/v1/forward-auth",
        &[("authorization", &bearer), ("x-padding", &big)],
        "",
    )
    .await;
    assert_eq!(r.status, 431, "{r:?}");
    let body = format!("token={}", "x".repeat(65 * 1024));
    let r = http(
        http_addr,
        "POST",
        "/oauth2/introspect",
        &[
            ("authorization", &bearer),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &body,
    )
    .await;
    assert_eq!(r.status, 413, "{r:?}");
    // Under the limits, the same requests are answered.
    let r = http(
        http_addr,
        "GET",
        "/v1/forward-auth",
        &[
            ("authorization", &bearer),
            ("x-padding", &"x".repeat(8 * 1024)),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");

    // Envoy Check: over 256 KiB is OUT_OF_RANGE, before decoding.
    let mut check = crate::frontdoor::check_request(Some(&bearer), Namespace::Api, &[]);
    if let Some(http) = check
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.body = "x".repeat(257 * 1024);
    }
    let r = AuthorizationClient::new(app.channel().await)
        .check(check)
        .await;
    assert_code(r, Code::OutOfRange, "262144");

    // gRPC metadata: a header list over 16 KiB is refused with HTTP 431 before the call is
    // routed (tonic clients see it as UNKNOWN, "mapped from HTTP status code 431"); under
    // it, the call is served.
    let app = &app;
    let list = |padding: usize| {
        let meta = Meta::bearer(&legit).with("x-padding", "x".repeat(padding));
        async move {
            app.tokens_with(meta)
                .await
                .list(proto::ListRequest::default())
                .await
        }
    };
    let e = list(20 * 1024)
        .await
        .expect_err("a 20 KiB header list was served");
    assert!(e.message().contains("431"), "{e:?}");
    list(12 * 1024).await.unwrap();
    assert!(app.validate(&legit, Namespace::Api, &[]).await.valid);
}
