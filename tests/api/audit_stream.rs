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
