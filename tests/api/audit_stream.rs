//! `DirectoryService/WatchAuditEvents` and `AuditEvent.sequence` (docs/contract.md, rule 13
//! and "Audit stream to SIEMs"): a receiver given only `after_sequence` and the stream can
//! prove it has every event — in order, no gap, whichever replica committed it — and resume
//! where it stopped; the stream ends cleanly, saying where to resume, when the server shuts
//! down or the caller may no longer watch.

use crate::helpers::*;
use jeton::grpc::proto;
use std::time::{Duration, Instant};
use tonic::{Code, Streaming};

/// Opens a stream of `app`'s tenant's trail after `after`, as `bearer`.
async fn watch(
    app: &TestApp,
    bearer: &str,
    after: i64,
) -> Result<Streaming<proto::AuditEvent>, tonic::Status> {
    Ok(app
        .directory(bearer)
        .await
        .watch_audit_events(proto::WatchAuditEventsRequest {
            after_sequence: after,
        })
        .await?
        .into_inner())
}

/// The next message of `s`, within `within`.
async fn next(
    s: &mut Streaming<proto::AuditEvent>,
    within: Duration,
) -> Result<Option<proto::AuditEvent>, tonic::Status> {
    tokio::time::timeout(within, s.message())
        .await
        .expect("the stream said something in time")
}

/// Reads `s` until it has sequence `until`, checking each is the one after the last.
async fn read_up_to(s: &mut Streaming<proto::AuditEvent>, from: i64, until: i64) {
    let mut last = from;
    while last < until {
        let e = next(s, Duration::from_secs(10)).await.unwrap().unwrap();
        assert_eq!(e.sequence, last + 1, "in order, no gap: {e:?}");
        last = e.sequence;
    }
}

/// The tenant's newest sequence, through `ListAuditEvents`.
async fn newest(app: &TestApp) -> i64 {
    app.directory(&app.admin)
        .await
        .list_audit_events(proto::ListAuditEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events[0]
        .sequence
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_gets_every_event_in_order_from_either_replica_and_resumes() {
    let a = TestApp::spawn_with(Transport::Plain, |_| {}).await;
    let b = a.replica_with(Transport::Plain, |_| {}).await;
    let start = newest(&a).await;
    assert!(start >= 1, "bootstrap wrote events");
    let mut s = watch(&a, &a.admin, 0).await.unwrap();
    read_up_to(&mut s, 0, start).await;
    // Writes on the other replica arrive within a second each.
    for i in 0..5 {
        let committed = Instant::now();
        b.mint(&b.admin, &format!("from-b-{i}")).await;
        let e = next(&mut s, Duration::from_secs(5)).await.unwrap().unwrap();
        assert_eq!(e.sequence, start + 1 + i);
        assert_eq!(e.action, proto::AuditAction::TokenGenerated as i32);
        assert!(
            committed.elapsed() < Duration::from_secs(1),
            "an event of another replica took {:?}",
            committed.elapsed()
        );
    }
    // Resumed from any sequence: the events after it, again, in order.
    let mut again = watch(&b, &b.admin, start + 2).await.unwrap();
    read_up_to(&mut again, start + 2, start + 5).await;
}

/// Concurrent writers on two replicas; one watcher sees 1, 2, 3, … with no gap.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_on_two_replicas_reach_one_watcher_without_a_gap() {
    let tweak = |s: &mut jeton::config::ServeConfig| s.max_tokens_per_owner = 10_000;
    let a = TestApp::spawn_with(Transport::Plain, tweak).await;
    let b = a.replica_with(Transport::Plain, tweak).await;
    let start = newest(&a).await;
    let mut s = watch(&a, &a.admin, start).await.unwrap();
    let mut writers = Vec::new();
    for app in [&a, &b] {
        for w in 0..3 {
            let mut tokens = app.tokens(&app.admin).await;
            writers.push(tokio::spawn(async move {
                for i in 0..20 {
                    tokens
                        .generate(generate_req(&format!("w{w}-{i}"), &[]))
                        .await
                        .unwrap();
                }
            }));
        }
    }
    read_up_to(&mut s, start, start + 120).await;
    for w in writers {
        w.await.unwrap();
    }
}

#[tokio::test]
async fn a_watch_is_for_admins_with_a_valid_position() {
    let app = TestApp::spawn().await;
    let reader = app.user("reader@contoso.com", proto::Role::Reader).await;
    let denied = watch(&app, &reader, 0).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let bad = watch(&app, &app.admin, -1).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().starts_with("after_sequence:"), "{bad:?}");
    // Past the end: nothing yet, then the next event.
    let end = newest(&app).await;
    let mut s = watch(&app, &app.admin, end).await.unwrap();
    app.mint(&app.admin, "next").await;
    let e = next(&mut s, Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(e.sequence, end + 1);
}

/// At most 16 streams per tenant on a server; a stream that closes gives its place back.
#[tokio::test(flavor = "multi_thread")]
async fn streams_per_tenant_are_capped() {
    let app = TestApp::spawn_with(Transport::Plain, |_| {}).await;
    let mut open = Vec::new();
    for _ in 0..16 {
        open.push(watch(&app, &app.admin, 0).await.unwrap());
    }
    let refused = watch(&app, &app.admin, 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    drop(open.pop());
    let again = Instant::now();
    loop {
        match watch(&app, &app.admin, 0).await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted);
                assert!(
                    again.elapsed() < Duration::from_secs(5),
                    "the place never came back"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The caller's token revoked: the stream ends with UNAUTHENTICATED within about a second.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_credential_ends_the_stream() {
    let app = TestApp::spawn_with(Transport::Plain, |_| {}).await;
    let second = app.mint(&app.admin, "siem-admin").await;
    let end = newest(&app).await;
    let mut s = watch(&app, &second.secret, end).await.unwrap();
    app.tokens(&app.admin)
        .await
        .revoke(proto::RevokeRequest {
            id: second.token.unwrap().id,
        })
        .await
        .unwrap();
    // The revocation is an event: delivered, then the stream ends.
    let revoked = next(&mut s, Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(revoked.action, proto::AuditAction::TokenRevoked as i32);
    let ended = next(&mut s, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
}

/// A shutdown ends every stream at once (not at the end of the drain) with UNAVAILABLE and
/// the sequence to resume from — the last one the client received.
#[tokio::test(flavor = "multi_thread")]
async fn a_draining_server_ends_streams_saying_where_to_resume() {
    let mut app = TestApp::spawn_with(Transport::Plain, |s| {
        s.shutdown_delay = Duration::from_secs(3);
    })
    .await;
    let end = newest(&app).await;
    let mut s = watch(&app, &app.admin, 0).await.unwrap();
    read_up_to(&mut s, 0, end).await;
    let signalled = Instant::now();
    app.signal_stop();
    let ended = next(&mut s, Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert!(
        ended
            .message()
            .ends_with(&format!("resume with after_sequence={end}")),
        "{ended:?}"
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "ended at the signal, not after the drain: {:?}",
        signalled.elapsed()
    );
    app.stop().await;
}

/// grpcurl drives the stream through reflection, as the README shows.
#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_follows_the_trail() {
    let app = TestApp::spawn_with(Transport::Plain, |_| {}).await;
    let end = newest(&app).await;
    let addr = app.addr.to_string();
    let admin = app.admin.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("grpcurl")
            .args([
                "-plaintext",
                "-max-time",
                "3",
                "-H",
                &format!("authorization: Bearer {admin}"),
                "-d",
                r#"{"after_sequence": 0}"#,
                &addr,
                "jeton.v1.DirectoryService/WatchAuditEvents",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for n in 1..=end {
        assert!(
            stdout.contains(&format!("\"sequence\": \"{n}\"")),
            "sequence {n} in {stdout}"
        );
    }
}

/// The `AUDIT_ACTION_TOKEN_REFUSED` events about token `id`, oldest first.
async fn refusals_of(app: &TestApp, id: &str) -> Vec<proto::AuditEvent> {
    let mut events = app.audit_events(&app.admin, id).await;
    events.retain(|e| e.action == proto::AuditAction::TokenRefused as i32);
    events.reverse();
    events
}

/// Waits (at most 10 s) until token `id` has `n` refusal events, and returns them.
async fn refusal_events(app: &TestApp, id: &str, n: usize) -> Vec<proto::AuditEvent> {
    let started = Instant::now();
    loop {
        let events = refusals_of(app, id).await;
        if events.len() >= n {
            return events;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{n} refusal events of {id} expected, found {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `key=value` of an event's detail.
fn detail<'a>(e: &'a proto::AuditEvent, key: &str) -> &'a str {
    e.detail
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key} in {:?}", e.detail))
}

async fn validate_from(app: &TestApp, token: &str, ns: Namespace, client: &str) -> bool {
    use jeton::grpc::proto::token_service_client::TokenServiceClient;
    TokenServiceClient::new(app.channel().await)
        .validate(proto::ValidateRequest {
            token: token.to_owned(),
            namespace: ns as i32,
            client_address: client.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .valid
}

use jeton::grpc::proto::Namespace;

/// A revoked token presented ten times on two replicas: one event for the first minute
/// (with the client address and the count it stands for), the rest reported once the
/// minute is over — at most one event per token and reason a minute, and every refusal
/// counted once. Valid answers write nothing.
#[tokio::test(flavor = "multi_thread")]
async fn refused_uses_of_a_known_token_are_events_at_most_once_a_minute() {
    let a = TestApp::spawn_with(Transport::Plain, |_| {}).await;
    let b = a.replica_with(Transport::Plain, |_| {}).await;
    let good = a.mint(&a.admin, "good").await;
    for _ in 0..5 {
        assert!(validate_from(&a, &good.secret, Namespace::Api, "203.0.113.7").await);
    }
    let t = a.mint(&a.admin, "leaked").await;
    let id = t.token.unwrap().id;
    a.tokens(&a.admin)
        .await
        .revoke(proto::RevokeRequest { id: id.clone() })
        .await
        .unwrap();
    for app in [&a, &b] {
        for _ in 0..5 {
            assert!(!validate_from(app, &t.secret, Namespace::Api, "203.0.113.7").await);
        }
    }
    let first = refusal_events(&a, &id, 1).await;
    let e = &first[0];
    assert_eq!(e.outcome, "failure");
    assert_eq!(e.actor, "jeton");
    assert_eq!(detail(e, "reason"), "REASON_REVOKED");
    assert_eq!(detail(e, "client"), "203.0.113.7");
    // Both replicas' rounds run (every second); nothing more this minute.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(refusals_of(&a, &id).await.len(), 1, "one event a minute");
    // The minute ends: what was not reported yet is, once.
    a.clock.advance(chrono::TimeDelta::seconds(61));
    let counted = if detail(e, "count") == "10" {
        vec![10]
    } else {
        let both = refusal_events(&a, &id, 2).await;
        both.iter()
            .map(|e| detail(e, "count").parse::<i64>().unwrap())
            .collect()
    };
    assert_eq!(
        counted.iter().sum::<i64>(),
        10,
        "every refusal counted once: {counted:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(refusals_of(&a, &id).await.len(), counted.len());
    // The good token's valid answers wrote nothing.
    assert!(refusals_of(&a, &good.token.unwrap().id).await.is_empty());
}

/// A wrong secret for a real id, the wrong namespace, and a revoked token as a bearer are
/// events; a string naming an id that does not exist is not (a stranger cannot write to the
/// trail).
#[tokio::test(flavor = "multi_thread")]
async fn wrong_secrets_namespaces_and_bearers_are_events_strangers_are_not() {
    let app = TestApp::spawn_with(Transport::Plain, |_| {}).await;
    let t = app.mint(&app.admin, "target").await;
    let id = t.token.unwrap().id;
    let forged = crate::tokens::forge(&format!("jta_{id}{}", "A".repeat(43)));
    assert!(!validate_from(&app, &forged, Namespace::Api, "").await);
    // The wrong namespace is recorded for a token the replica has seen (the string is
    // refused before any lookup).
    assert!(validate_from(&app, &t.secret, Namespace::Api, "").await);
    assert!(!validate_from(&app, &t.secret, Namespace::Siem, "198.51.100.1").await);
    let stranger = crate::tokens::forge(&format!("jta_{}{}", "Z".repeat(22), "A".repeat(43)));
    assert!(!validate_from(&app, &stranger, Namespace::Api, "").await);
    let events = refusal_events(&app, &id, 2).await;
    let reasons: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (detail(e, "reason"), detail(e, "client")))
        .collect();
    assert!(
        reasons.contains(&("REASON_NOT_FOUND", "unknown")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.detail.contains("cause=wrong_secret"))
    );
    assert!(
        reasons.contains(&("REASON_WRONG_NAMESPACE", "198.51.100.1")),
        "{events:?}"
    );
    // A revoked token as a bearer of a call to jeton itself.
    let caller = app.mint(&app.admin, "caller").await;
    let caller_id = caller.token.unwrap().id;
    app.tokens(&app.admin)
        .await
        .revoke(proto::RevokeRequest {
            id: caller_id.clone(),
        })
        .await
        .unwrap();
    let denied = app
        .tokens(&caller.secret)
        .await
        .list(proto::ListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    let bearer = refusal_events(&app, &caller_id, 1).await;
    assert_eq!(detail(&bearer[0], "reason"), "REASON_REVOKED");
    // Nothing about the stranger's id, anywhere in the trail.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(refusals_of(&app, &"Z".repeat(22)).await.is_empty());
}
