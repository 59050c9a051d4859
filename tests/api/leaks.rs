//! Leaked and misplaced tokens: GitHub secret-scanning reports, revoke-by-value, tokens bound
//! to networks (through `Validate`, ext_authz, forward-auth and bearer calls), and the
//! retirement of unused tokens by two replicas at once.

use crate::helpers::*;
use base64::Engine;
use chrono::TimeDelta;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, attribute_context, authorization_client::AuthorizationClient,
    check_response::HttpResponse,
};
use jeton::grpc::proto::{self, AuditAction, Namespace, Reason};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tonic::Code;

// ---------------------------------------------------------------------------------------
// Secret-scanning reports

/// A signing key of our own, published under `id` in a key file as GitHub publishes its.
pub struct Scanner {
    pub id: String,
    key: SigningKey,
    pub file: tempfile::NamedTempFile,
}

impl Scanner {
    pub fn new(id: &str) -> Self {
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        let key = loop {
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            if let Ok(k) = SigningKey::from_slice(&bytes) {
                break k;
            }
        };
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let list = serde_json::json!({
            "public_keys": [
                {"key_identifier": "an-old-key", "key": pem, "is_current": false},
                {"key_identifier": id, "key": pem, "is_current": true},
            ]
        });
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), list.to_string()).unwrap();
        Self {
            id: id.to_owned(),
            key,
            file,
        }
    }

    pub fn sign(&self, body: &str) -> String {
        let sig: Signature = self.key.sign(body.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }
}

/// A server with the HTTP listener and secret scanning on, trusting `scanner`'s keys.
async fn scanning(scanner: &Scanner) -> TestApp {
    let path = scanner.file.path().to_owned();
    TestApp::spawn_with(Transport::Plain, move |s| {
        s.http_listen = Some("127.0.0.1:0".parse().unwrap());
        s.secret_scanning_keys = Some(path);
    })
    .await
}

pub fn report_body(tokens: &[&str]) -> String {
    serde_json::Value::Array(
        tokens
            .iter()
            .map(|t| {
                serde_json::json!({
                    "token": t,
                    "type": "jeton_api_token",
                    "url": "https://github.com/octo/leaky/blob/main/.env",
                    "source": "content",
                })
            })
            .collect(),
    )
    .to_string()
}

async fn post_report(app: &TestApp, key_id: &str, signature: &str, body: &str) -> HttpAnswer {
    http(
        app.http.unwrap(),
        "POST",
        "/v1/secret-scanning/reports",
        &[
            ("content-type", "application/json"),
            ("github-public-key-identifier", key_id),
            ("github-public-key-signature", signature),
        ],
        body,
    )
    .await
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The feedback labels of an answer, by token hash.
fn labels(answer: &HttpAnswer) -> HashMap<String, String> {
    let v: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["token_type"], "jeton_api_token");
            (
                e["token_hash"].as_str().unwrap().to_owned(),
                e["label"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Audit events of `tenant` (through its admin `bearer`) with `action` on `target`.
async fn events(
    app: &TestApp,
    bearer: &str,
    target: &str,
    action: AuditAction,
) -> Vec<proto::AuditEvent> {
    app.audit_events(bearer, target)
        .await
        .into_iter()
        .filter(|e| e.action() == action)
        .collect()
}

/// Sets the admin's tenant to retire tokens left unused for a day.
async fn retire_after_a_day(app: &TestApp) -> proto::Tenant {
    app.directory(&app.admin)
        .await
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(proto::Tenant {
                revoke_unused_after: Some(prost_types::Duration {
                    seconds: 86_400,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["revoke_unused_after".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn valid_on(app: &TestApp, token: &str) -> proto::ValidateResponse {
    app.validate(token, Namespace::Api, &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_report_revokes_live_tokens_everywhere_and_labels_each_string() {
    let scanner = Scanner::new("key-2026");
    let a = scanning(&scanner).await;
    let b = a.replica().await;
    let leaked = a.mint(&a.admin, "leaked").await;
    let leaked_id = leaked.token.as_ref().unwrap().id.clone();
    let other = a.mint(&a.admin, "kept").await;
    let revoked = a.mint(&a.admin, "revoked already").await;
    a.tokens(&a.admin)
        .await
        .revoke(proto::RevokeRequest {
            id: revoked.token.unwrap().id,
        })
        .await
        .unwrap();
    // Another tenant's token: leaks are global.
    let fabrikam_admin = a.bootstrap_tenant("fabrikam", "root@fabrikam.com").await;
    let foreign = a.mint(&fabrikam_admin, "foreign").await;
    let foreign_id = foreign.token.as_ref().unwrap().id.clone();
    // A string with a real id and a forged secret: someone published it to get the token
    // killed; its secret did not leak.
    let forged = crate::tokens::forge(&format!("{}{}", &other.secret[..26], "A".repeat(43)));
    for t in [&leaked.secret, &other.secret, &foreign.secret] {
        assert!(valid_on(&b, t).await.valid, "cached on replica B");
    }

    let body = report_body(&[
        &leaked.secret,
        &revoked.secret,
        &foreign.secret,
        &forged,
        "ghp_not_ours_at_all",
        "jta_malformed",
    ]);
    let answer = post_report(&a, &scanner.id, &scanner.sign(&body), &body).await;
    let acknowledged = Instant::now();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let got = labels(&answer);
    let expect = [
        (&leaked.secret, "true_positive"),
        (&revoked.secret, "false_positive"),
        (&foreign.secret, "true_positive"),
        (&forged, "false_positive"),
    ];
    for (t, label) in expect {
        assert_eq!(got[&sha256_hex(t)], label);
    }
    assert_eq!(got[&sha256_hex("ghp_not_ours_at_all")], "false_positive");
    assert_eq!(got[&sha256_hex("jta_malformed")], "false_positive");
    assert!(
        !answer.body.contains(&leaked.secret),
        "the answer carries hashes only"
    );

    // Revoked on the replica that got the report at once, on the other within a second.
    assert_eq!(reason(&valid_on(&a, &leaked.secret).await), Reason::Revoked);
    within_propagation(
        "the leaked tokens' revocation on replica B",
        acknowledged,
        || async {
            reason(&valid_on(&b, &leaked.secret).await) == Reason::Revoked
                && reason(&valid_on(&b, &foreign.secret).await) == Reason::Revoked
        },
    )
    .await;
    assert!(
        valid_on(&b, &other.secret).await.valid,
        "a forged secret revokes nothing"
    );

    // Audited in the owner's tenant, with the report's url and source, never the token.
    let ours = events(&a, &a.admin, &leaked_id, AuditAction::TokenLeaked).await;
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].actor, "jeton");
    assert!(
        ours[0]
            .detail
            .contains("https://github.com/octo/leaky/blob/main/.env")
    );
    assert!(ours[0].detail.contains("content"));
    assert!(!ours[0].detail.contains(&leaked.secret[4..]));
    let theirs = events(&a, &fabrikam_admin, &foreign_id, AuditAction::TokenLeaked).await;
    assert_eq!(
        theirs.len(),
        1,
        "the foreign token's event is in its own tenant"
    );
    assert!(
        events(&a, &a.admin, &foreign_id, AuditAction::TokenLeaked)
            .await
            .is_empty(),
        "and not in the tenant that happens to share the server"
    );

    // The same report again: nothing left to revoke, no second event.
    let again = post_report(&a, &scanner.id, &scanner.sign(&body), &body).await;
    assert_eq!(again.status, 200);
    assert!(labels(&again).values().all(|l| l == "false_positive"));
    assert_eq!(
        events(&a, &a.admin, &leaked_id, AuditAction::TokenLeaked)
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_that_does_not_verify_is_401_and_revokes_nothing() {
    let scanner = Scanner::new("key-2026");
    let impostor = Scanner::new("key-2026");
    let app = scanning(&scanner).await;
    let t = app.mint(&app.admin, "victim").await;
    let body = report_body(&[&t.secret]);
    let tampered = body.replace("content", "commit");
    let cases = [
        (
            "tampered body",
            scanner.id.clone(),
            scanner.sign(&body),
            tampered.clone(),
        ),
        (
            "unknown key id",
            "key-1999".to_owned(),
            scanner.sign(&body),
            body.clone(),
        ),
        (
            "another key's signature",
            scanner.id.clone(),
            impostor.sign(&body),
            body.clone(),
        ),
        (
            "garbage signature",
            scanner.id.clone(),
            "bm90IGEgc2lnbmF0dXJl".to_owned(),
            body.clone(),
        ),
        (
            "no signature",
            scanner.id.clone(),
            String::new(),
            body.clone(),
        ),
    ];
    for (what, id, sig, body) in cases {
        let answer = post_report(&app, &id, &sig, &body).await;
        assert_eq!(answer.status, 401, "{what}: {}", answer.body);
    }
    assert!(valid_on(&app, &t.secret).await.valid, "nothing was revoked");
    // Signed but not a report: 400, still nothing revoked.
    let answer = post_report(&app, &scanner.id, &scanner.sign("{}"), "{}").await;
    assert_eq!(answer.status, 400);
    assert!(valid_on(&app, &t.secret).await.valid);
    // Signed, but a field breaks the rule of every free text (here a right-to-left
    // override, which makes a text show as another in the audit trail): 400 naming the
    // item and field, and the whole report is refused — the first item's token too.
    let other = app.mint(&app.admin, "bystander").await;
    let spoofed = serde_json::json!([
        {"token": other.secret, "type": "jeton_api_token", "url": "https://github.com/o/r", "source": "content"},
        {"token": t.secret, "type": "jeton_api_token", "url": "https://github.com/o/r/\u{202e}txt.exe", "source": "content"},
    ])
    .to_string();
    let answer = post_report(&app, &scanner.id, &scanner.sign(&spoofed), &spoofed).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body.starts_with("[1].url: "), "{}", answer.body);
    assert!(valid_on(&app, &t.secret).await.valid);
    assert!(valid_on(&app, &other.secret).await.valid);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_keys_the_report_endpoint_is_off() {
    let app = TestApp::spawn_with(Transport::Plain, |s| {
        s.http_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let answer = post_report(&app, "k", "s", "[]").await;
    assert_eq!(answer.status, 404);
    assert!(answer.body.contains("--secret-scanning-keys"));
}

// ---------------------------------------------------------------------------------------
// Revoke by value

#[tokio::test(flavor = "multi_thread")]
async fn whoever_holds_a_token_may_revoke_it_and_learns_nothing_else() {
    let app = TestApp::spawn().await;
    let live = app.mint(&app.admin, "live").await;
    let live_id = live.token.as_ref().unwrap().id.clone();
    let kept = app.mint(&app.admin, "kept").await;
    let dead = app.mint(&app.admin, "dead").await;
    app.tokens(&app.admin)
        .await
        .revoke(proto::RevokeRequest {
            id: dead.token.as_ref().unwrap().id.clone(),
        })
        .await
        .unwrap();
    let fabrikam = app.bootstrap_tenant("fabrikam", "root@fabrikam.com").await;
    let foreign = app.mint(&fabrikam, "foreign").await;
    let forged = crate::tokens::forge(&format!("{}{}", &kept.secret[..26], "B".repeat(43)));
    let mut anyone = proto::token_service_client::TokenServiceClient::new(app.channel().await);
    let strings = vec![
        live.secret.clone(),
        dead.secret.clone(),
        foreign.secret.clone(),
        forged,
        "not a token".to_owned(),
        "x".repeat(5000),
        String::new(),
    ];
    // No credential at all, and the same empty answer whatever the strings.
    let answer = anyone
        .revoke_leaked(proto::RevokeLeakedRequest { tokens: strings })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer, proto::RevokeLeakedResponse {});
    assert_eq!(reason(&valid_on(&app, &live.secret).await), Reason::Revoked);
    assert_eq!(
        reason(&valid_on(&app, &foreign.secret).await),
        Reason::Revoked
    );
    assert!(
        valid_on(&app, &kept.secret).await.valid,
        "a forged secret revokes nothing"
    );
    let e = events(&app, &app.admin, &live_id, AuditAction::TokenLeaked).await;
    assert_eq!(e.len(), 1);
    assert!(
        e[0].detail.starts_with("RevokeLeaked from 127.0.0.1"),
        "{}",
        e[0].detail
    );
    let dead_id = dead.token.unwrap().id;
    assert!(
        events(&app, &app.admin, &dead_id, AuditAction::TokenLeaked)
            .await
            .is_empty(),
        "an already revoked token gets no second event"
    );
    // Nothing to revoke is the same answer.
    let answer = anyone
        .revoke_leaked(proto::RevokeLeakedRequest {
            tokens: vec!["nothing".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer, proto::RevokeLeakedResponse {});
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_leaked_is_bounded_per_call_and_per_address() {
    let app = TestApp::spawn().await;
    let mut anyone = proto::token_service_client::TokenServiceClient::new(app.channel().await);
    let junk = |n: usize| proto::RevokeLeakedRequest {
        tokens: (0..n).map(|i| format!("junk-{i}")).collect(),
    };
    assert_code(
        anyone.revoke_leaked(junk(1001)).await,
        Code::InvalidArgument,
        "tokens",
    );
    // 600 strings of token length, then 600 more: the address's budget of 1000 a minute
    // takes the first 400 of the second call, which says so (and is charged for those only).
    let forged = |n: usize| proto::RevokeLeakedRequest {
        tokens: (0..n)
            .map(|_| crate::tokens::forge(&"C".repeat(65)))
            .collect(),
    };
    anyone.revoke_leaked(forged(600)).await.unwrap();
    let partial = anyone.revoke_leaked(forged(600)).await.unwrap_err();
    assert_eq!(partial.code(), Code::ResourceExhausted, "{partial:?}");
    assert!(
        partial
            .message()
            .contains("the first 400 of 600 strings were processed"),
        "{}",
        partial.message()
    );
    let spent = anyone.revoke_leaked(junk(10)).await.unwrap_err();
    assert_eq!(spent.code(), Code::ResourceExhausted);
    assert!(
        spent.message().contains("nothing was processed"),
        "{}",
        spent.message()
    );
}

/// A call at the documented maximum — a thousand live tokens, none of them cached, so a
/// thousand Argon2 verifications — revokes them all, however long that takes against the
/// database's timeout: the call is bounded per string, not as a whole.
#[tokio::test(flavor = "multi_thread")]
async fn revoke_leaked_revokes_its_full_maximum_of_live_tokens() {
    // A few milliseconds per Argon2 computation, and a database timeout the thousand
    // verifications exceed several times over — yet long enough that one string's own
    // database work never reaches it on a loaded CI machine (300 ms did once, on
    // PostgreSQL, while other builds ran).
    let timeout = Duration::from_secs(1);
    let app = TestApp::spawn_with(Transport::Plain, |s| {
        s.max_tokens_per_owner = 2000;
        s.hash.memory_kib = 4096;
        s.db.connect_timeout = timeout;
    })
    .await;
    let mut issuer = app.tokens(&app.admin).await;
    let mut minted = Vec::with_capacity(1000);
    for i in 0..1000 {
        let g = issuer
            .generate(generate_req(&format!("leaky-{i}"), &[]))
            .await
            .unwrap()
            .into_inner();
        minted.push(g.secret);
    }
    // Another replica on the same database: nothing of these tokens is in its cache.
    let fresh = app
        .replica_with(Transport::Plain, |s| s.db.connect_timeout = timeout)
        .await;
    let started = Instant::now();
    proto::token_service_client::TokenServiceClient::new(fresh.channel().await)
        .revoke_leaked(proto::RevokeLeakedRequest {
            tokens: minted.clone(),
        })
        .await
        .unwrap();
    let took = started.elapsed();
    let revoked = crate::storage::number(
        &app.db_url,
        "SELECT COUNT(*) FROM tokens WHERE name LIKE 'leaky-%' AND revoked_at IS NOT NULL",
    )
    .await;
    assert_eq!(revoked, 1000, "after {took:?}");
    assert!(
        took > timeout,
        "the call outlasted the database timeout it used to be cut by ({took:?})"
    );
}

// ---------------------------------------------------------------------------------------
// Tokens bound to networks

fn bound_req(name: &str, ns: Namespace, cidrs: &[&str]) -> proto::GenerateRequest {
    proto::GenerateRequest {
        name: name.to_owned(),
        namespace: ns as i32,
        subject: if ns == Namespace::Api {
            String::new()
        } else {
            "collector-7".to_owned()
        },
        allowed_cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    }
}

async fn validate_from(
    app: &TestApp,
    token: &str,
    ns: Namespace,
    client: &str,
) -> proto::ValidateResponse {
    proto::token_service_client::TokenServiceClient::new(app.channel().await)
        .validate(proto::ValidateRequest {
            token: token.to_owned(),
            namespace: ns as i32,
            client_address: client.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// What Envoy's `Check` answers for `token` from a downstream client at `client`: the HTTP
/// status it would give.
async fn envoy_from(app: &TestApp, token: &str, client: Option<&str>) -> u16 {
    let source = client.map(|c| attribute_context::Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: c.to_owned(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(40_000)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    });
    let req = CheckRequest {
        attributes: Some(AttributeContext {
            source,
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    headers: HashMap::from([(
                        "authorization".to_owned(),
                        format!("Bearer {token}"),
                    )]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: HashMap::from([(
                "jeton.namespace".to_owned(),
                "log_collector".to_owned(),
            )]),
            ..Default::default()
        }),
    };
    let res = AuthorizationClient::new(app.channel().await)
        .check(req)
        .await
        .unwrap()
        .into_inner();
    match res.http_response {
        Some(HttpResponse::OkResponse(_)) => 200,
        Some(HttpResponse::DeniedResponse(d)) => d.status.unwrap().code as u16,
        other => panic!("{other:?}"),
    }
}

/// Forward-auth for `token` in log_collector, from this test (127.0.0.1 or ::1) to `addr`,
/// with these `X-Forwarded-For` values.
async fn forward_auth_from(
    addr: std::net::SocketAddr,
    token: &str,
    forwarded: &[&str],
) -> HttpAnswer {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("authorization", bearer.as_str())];
    for f in forwarded {
        headers.push(("x-forwarded-for", f));
    }
    http(
        addr,
        "GET",
        "/v1/forward-auth?namespace=log_collector",
        &headers,
        "",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bound_token_validates_only_from_its_networks_through_validate_and_envoy() {
    let app = TestApp::spawn().await;
    let t = app
        .tokens(&app.admin)
        .await
        .generate(bound_req(
            "collector",
            Namespace::LogCollector,
            &["203.0.113.0/24", "2001:db8:7::/48"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        t.token.as_ref().unwrap().allowed_cidrs,
        ["203.0.113.0/24", "2001:db8:7::/48"]
    );
    let ns = Namespace::LogCollector;
    for inside in ["203.0.113.9", "2001:db8:7::1", "::ffff:203.0.113.10"] {
        assert!(
            validate_from(&app, &t.secret, ns, inside).await.valid,
            "{inside}"
        );
        assert_eq!(
            envoy_from(&app, &t.secret, Some(inside)).await,
            200,
            "{inside}"
        );
    }
    for outside in ["198.51.100.1", "2001:db8:8::1"] {
        let v = validate_from(&app, &t.secret, ns, outside).await;
        assert_eq!(reason(&v), Reason::AddressNotAllowed, "{outside}");
        assert_eq!(
            envoy_from(&app, &t.secret, Some(outside)).await,
            403,
            "{outside}"
        );
    }
    // No address to check: fails closed.
    assert_eq!(
        reason(&validate_from(&app, &t.secret, ns, "").await),
        Reason::AddressNotAllowed
    );
    assert_eq!(envoy_from(&app, &t.secret, None).await, 403);
    // A bad address is the caller's mistake, named.
    assert_code(
        proto::token_service_client::TokenServiceClient::new(app.channel().await)
            .validate(proto::ValidateRequest {
                token: t.secret.clone(),
                namespace: ns as i32,
                client_address: "203.0.113.0/24".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "client_address",
    );
    // An unbound token needs no address.
    let free = app
        .tokens(&app.admin)
        .await
        .generate(bound_req("free", ns, &[]))
        .await
        .unwrap()
        .into_inner();
    assert!(validate_from(&app, &free.secret, ns, "").await.valid);
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_believes_x_forwarded_for_only_from_trusted_proxies() {
    let trusting = TestApp::spawn_with(Transport::Plain, |s| {
        s.http_listen = Some("127.0.0.1:0".parse().unwrap());
        s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let t = trusting
        .tokens(&trusting.admin)
        .await
        .generate(bound_req(
            "behind nginx",
            Namespace::LogCollector,
            &["203.0.113.0/24", "2001:db8::/32"],
        ))
        .await
        .unwrap()
        .into_inner();
    let addr = trusting.http.unwrap();
    // From a trusted proxy: the client it names.
    assert_eq!(
        forward_auth_from(addr, &t.secret, &["203.0.113.5"])
            .await
            .status,
        200
    );
    assert_eq!(
        forward_auth_from(addr, &t.secret, &["2001:db8::5"])
            .await
            .status,
        200
    );
    // The rightmost address that is not a trusted proxy: a client cannot prepend its way in.
    assert_eq!(
        forward_auth_from(addr, &t.secret, &["203.0.113.5, 198.51.100.7"])
            .await
            .status,
        403
    );
    let denied = forward_auth_from(addr, &t.secret, &["198.51.100.7"]).await;
    assert_eq!(denied.status, 403);
    assert!(
        denied.body.contains("address_not_allowed"),
        "{}",
        denied.body
    );
    assert!(!denied.body.contains(&t.secret));

    // The same header from a peer that is not a trusted proxy is ignored: the peer
    // (127.0.0.1) is the client, and it is not in the token's networks.
    let untrusting = trusting
        .replica_with(Transport::Plain, |s| {
            s.http_listen = Some("127.0.0.1:0".parse().unwrap());
            s.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        })
        .await;
    let spoofed = forward_auth_from(untrusting.http.unwrap(), &t.secret, &["203.0.113.5"]).await;
    assert_eq!(
        spoofed.status, 403,
        "a spoofed X-Forwarded-For gets nowhere"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_over_ipv6_sees_the_ipv6_peer() {
    // No skip: a machine without an IPv6 loopback fails here (`.ci/run` gives `lo` its
    // `::1` when it lacks one).
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        panic!(
            "this test needs ::1 on the loopback interface ({e}): `ip -6 addr add ::1/128 dev lo`"
        );
    }
    let app = TestApp::spawn_with(Transport::Plain, |s| {
        s.http_listen = Some("[::1]:0".parse().unwrap());
    })
    .await;
    let mut tokens = app.tokens(&app.admin).await;
    let mut secrets = Vec::new();
    for cidrs in [["::1"], ["127.0.0.1"]] {
        let req = bound_req("v6", Namespace::LogCollector, &cidrs);
        secrets.push(tokens.generate(req).await.unwrap().into_inner().secret);
    }
    let (v6, v4) = (&secrets[0], &secrets[1]);
    let addr = app.http.unwrap();
    assert_eq!(forward_auth_from(addr, v6, &[]).await.status, 200);
    assert_eq!(forward_auth_from(addr, v4, &[]).await.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bound_api_token_calls_jeton_only_from_its_networks() {
    let app = TestApp::spawn().await;
    let mut admin = app.tokens(&app.admin).await;
    let here = admin
        .generate(bound_req("here", Namespace::Api, &["127.0.0.0/8", "::1"]))
        .await
        .unwrap()
        .into_inner();
    let elsewhere = admin
        .generate(bound_req("elsewhere", Namespace::Api, &["192.0.2.0/24"]))
        .await
        .unwrap()
        .into_inner();
    // The test's connection comes from 127.0.0.1.
    app.tokens(&here.secret)
        .await
        .list(proto::ListRequest::default())
        .await
        .unwrap();
    assert_code(
        app.tokens(&elsewhere.secret)
            .await
            .list(proto::ListRequest::default())
            .await,
        Code::Unauthenticated,
        "",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn networks_are_listed_kept_on_rotation_and_required_by_policy() {
    let app = TestApp::spawn().await;
    let mut admin = app.tokens(&app.admin).await;
    let t = admin
        .generate(bound_req(
            "siem",
            Namespace::Siem,
            &["10.1.2.3/16", "2001:db8::1"],
        ))
        .await
        .unwrap()
        .into_inner();
    let listed = admin
        .list(proto::ListRequest {
            namespace: Namespace::Siem as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.tokens[0].allowed_cidrs,
        ["10.1.0.0/16", "2001:db8::1/128"]
    );
    // Rotation keeps them, and refuses to change them.
    let id = t.token.unwrap().id;
    let rotated = admin
        .generate(proto::GenerateRequest {
            rotate_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rotated.token.unwrap().allowed_cidrs,
        ["10.1.0.0/16", "2001:db8::1/128"]
    );
    assert_code(
        admin
            .generate(proto::GenerateRequest {
                rotate_id: id,
                allowed_cidrs: vec!["0.0.0.0/0".into()],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "allowed_cidrs",
    );
    // Bad networks, named.
    for bad in [["10.0.0.0/33"], ["example.com"]] {
        assert_code(
            admin
                .generate(bound_req("bad", Namespace::Siem, &bad))
                .await,
            Code::InvalidArgument,
            "allowed_cidrs",
        );
    }
    let too_many: Vec<String> = (0..33).map(|i| format!("10.0.{i}.0/24")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    assert_code(
        admin
            .generate(bound_req("many", Namespace::Siem, &too_many))
            .await,
        Code::InvalidArgument,
        "allowed_cidrs",
    );
    // The tenant's policy: collector and SIEM tokens must be bound; API tokens need not.
    app.directory(&app.admin)
        .await
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(proto::Tenant {
                require_allowed_cidrs: true,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["require_allowed_cidrs".into()],
            }),
        })
        .await
        .unwrap();
    assert_code(
        admin
            .generate(bound_req("unbound", Namespace::LogCollector, &[]))
            .await,
        Code::InvalidArgument,
        "allowed_cidrs",
    );
    admin
        .generate(bound_req("bound", Namespace::LogCollector, &["10.0.0.0/8"]))
        .await
        .unwrap();
    admin
        .generate(bound_req("api", Namespace::Api, &[]))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Retirement of unused tokens

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_retire_each_unused_token_once() {
    let sweep = |s: &mut jeton::config::ServeConfig| {
        s.retirement_sweep_interval = Duration::from_millis(20);
    };
    let a = TestApp::spawn_with(Transport::Tls, sweep).await;
    let b = a.replica_with(Transport::Tls, sweep).await;
    let mut dir = a.directory(&a.admin).await;
    // Refusals first: under a day, or not whole seconds.
    for bad in [
        prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        },
        prost_types::Duration {
            seconds: 86_400,
            nanos: 5,
        },
        prost_types::Duration {
            seconds: -86_400,
            nanos: 0,
        },
    ] {
        assert_code(
            dir.update_tenant(proto::UpdateTenantRequest {
                tenant: Some(proto::Tenant {
                    revoke_unused_after: Some(bad),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["revoke_unused_after".into()],
                }),
            })
            .await,
            Code::InvalidArgument,
            "tenant.revoke_unused_after",
        );
    }
    let tenant = retire_after_a_day(&a).await;
    assert_eq!(tenant.revoke_unused_after.unwrap().seconds, 86_400);

    // t0: the admin's token (used by every call above: never stale) and five new ones.
    let mut never_used = Vec::new();
    for i in 0..3 {
        never_used.push(a.mint(&a.admin, &format!("idle-{i}")).await);
    }
    let used = a.mint(&a.admin, "used").await;
    let used_late = a.mint(&a.admin, "used-late").await;
    a.clock.advance(TimeDelta::hours(12));
    assert!(valid_on(&a, &used.secret).await.valid);
    // t0+12h: within 13 hours the policy retires the never-used ones, not the one just used.
    let due: Vec<String> = a
        .tokens(&a.admin)
        .await
        .list(proto::ListRequest {
            retire_within: Some(prost_types::Duration {
                seconds: 13 * 3600,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .into_iter()
        .map(|t| t.name)
        .collect();
    for name in ["idle-0", "idle-1", "idle-2", "used-late"] {
        assert!(due.contains(&name.to_owned()), "{name} in {due:?}");
    }
    assert!(!due.contains(&"used".to_owned()), "{due:?}");
    // Used through replica B only, late; B writes its uses when it lists (and every flush
    // interval; a token is retired only after the policy's time plus that interval, here
    // the tests' hour).
    a.clock.advance(TimeDelta::hours(11));
    assert!(valid_on(&b, &used_late.secret).await.valid);
    b.tokens(&b.admin)
        .await
        .list(proto::ListRequest::default())
        .await
        .unwrap();
    // t0+25h: both replicas sweep, every 20 ms; the never-used tokens are a day and an hour
    // old.
    a.clock.advance(TimeDelta::hours(2));
    // Watched through List, which does not use them (a validation would be a use, and keep
    // them alive).
    let start = Instant::now();
    loop {
        let listed = a
            .list(&a.admin, proto::ListRequest::default())
            .await
            .unwrap();
        if !listed.iter().any(|t| t.name.starts_with("idle-")) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "not retired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in &never_used {
        assert_eq!(reason(&valid_on(&a, &t.secret).await), Reason::Revoked);
        assert_eq!(reason(&valid_on(&b, &t.secret).await), Reason::Revoked);
    }
    // Both replicas have swept again since: nothing is revoked twice.
    after_a_full_sweep([a.sweeps.retirement.clone(), b.sweeps.retirement.clone()]).await;
    assert!(valid_on(&a, &used.secret).await.valid, "used 13 hours ago");
    assert!(
        valid_on(&a, &used_late.secret).await.valid,
        "used 2 hours ago, on B"
    );
    assert!(valid_on(&a, &a.admin).await.valid);
    for t in &never_used {
        let id = &t.token.as_ref().unwrap().id;
        let e = events(&a, &a.admin, id, AuditAction::TokenRevoked).await;
        assert_eq!(e.len(), 1, "one revocation event for {id}: {e:?}");
        assert_eq!(e[0].actor, "jeton");
        assert!(
            e[0].detail.contains("revoke_unused_after=86400s"),
            "{}",
            e[0].detail
        );
    }
}

/// The sweeper leaves alone a token with a use this replica holds in memory, and does not
/// write that use out: last-use times are written by the flush alone (every flush interval,
/// before a List, at shutdown), so a sweep every minute does not make every pending use a
/// database write every minute.
///
/// The database is read directly rather than through a second replica: a replica's sweep
/// trusts that no use is held anywhere for longer than the flush interval, which the test
/// clock's jumps break on purpose here, so a second replica would rightly retire the token.
#[tokio::test(flavor = "multi_thread")]
async fn a_use_held_in_memory_keeps_its_token_from_retirement_without_a_write() {
    let a = TestApp::spawn_with(Transport::Tls, |s| {
        s.retirement_sweep_interval = Duration::from_millis(20);
    })
    .await;
    retire_after_a_day(&a).await;
    let held = a.mint(&a.admin, "held").await;
    let id = &held.token.as_ref().unwrap().id;
    let stored = |condition: &str| {
        let sql = format!("SELECT COUNT(*) FROM tokens WHERE id = '{id}' AND {condition}");
        let url = a.db_url.clone();
        async move { crate::storage::number(&url, &sql).await }
    };
    // Used on A shortly before the policy's day (plus the tests' hour of flush interval)
    // is up; then, by the database, it has not been used for more than a day and an hour.
    a.clock.advance(TimeDelta::minutes(24 * 60 + 30));
    assert!(valid_on(&a, &held.secret).await.valid);
    a.clock.advance(TimeDelta::minutes(90));
    // A whole round of the sweeper has seen the token due by the database since.
    after_a_full_sweep([a.sweeps.retirement.clone()]).await;
    assert!(valid_on(&a, &held.secret).await.valid, "retired");
    assert_eq!(stored("revoked_at IS NULL").await, 1, "retired");
    assert_eq!(
        stored("last_used_at IS NOT NULL").await,
        0,
        "written by a sweep"
    );
    // A's List writes it.
    assert!(a.last_use_of("held").await.is_some());
    assert_eq!(stored("last_used_at IS NOT NULL").await, 1, "not flushed");
}
