//! The real `jeton` binary, logging at `trace`: no secret ever appears in its output.

use crate::helpers::*;
use jeton::grpc::proto::{self, Namespace, token_service_client::TokenServiceClient};
use jeton_testkit::served::Served;
use std::process::Command;

pub const JETON: &str = env!("CARGO_BIN_EXE_jeton");

/// A plaintext connection to a `jeton serve` at `addr`.
pub async fn connect(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Runs the real `jeton` with `args`; it must succeed.
pub fn jeton_ok(args: &[&str]) -> std::process::Output {
    let out = Command::new(JETON).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "jeton {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn bootstrap(db_url: &str, tenant: &str, admin: &str, log_filter: &str) -> (String, String) {
    let out = Command::new(JETON)
        .args(["bootstrap", "--tenant", tenant, "--admin", admin])
        .args(["--argon2-memory-kib", "256", "--argon2-iterations", "1"])
        .env("JETON_DATABASE_URL", db_url)
        .env("JETON_LOG", log_filter)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    (token, String::from_utf8(out.stderr).unwrap())
}

/// Every surface that handles a token — gRPC (Generate, Validate, List, Revoke, a bearer
/// call, RevokeLeaked), Envoy's `Check`, and the HTTP front door (forward-auth,
/// introspection, TokenReview, a signed secret-scanning report) — driven with live, revoked
/// and forged tokens against the real binary logging at `trace`: neither a whole token nor
/// its secret part appears anywhere in what it or `bootstrap` printed.
async fn no_secret_in_logs_at_trace_on(db: &str) {
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    let scanner = crate::leaks::Scanner::new("log-key");
    let (admin, boot_log) = bootstrap(db, TENANT, ADMIN, "trace");
    assert!(admin.starts_with("jta_"));
    let mut cmd = Command::new(JETON);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ])
    .args(["--argon2-memory-kib", "256", "--argon2-iterations", "1"])
    .arg("--secret-scanning-keys")
    .arg(scanner.file.path())
    .env("JETON_DATABASE_URL", db)
    .env("JETON_LOG", "trace");
    let server = Served::start(cmd);
    let http_addr: std::net::SocketAddr = server.http_addr().unwrap().parse().unwrap();

    let channel = connect(server.addr()).await;
    let mut c = TokenServiceClient::with_interceptor(channel.clone(), Meta::bearer(&admin));
    let mut anyone = TokenServiceClient::new(channel.clone());
    let mut envoy = AuthorizationClient::new(channel.clone());
    let mut secrets = vec![admin.clone()];
    // A string of the right shape and checksum for an id that does not exist.
    secrets.push(crate::tokens::forge(&format!(
        "jta_{}{}",
        "Q".repeat(22),
        "z".repeat(43)
    )));
    for ns in [Namespace::Api, Namespace::Siem] {
        let g = c
            .generate(proto::GenerateRequest {
                namespace: ns as i32,
                subject: if ns == Namespace::Siem {
                    "agent".into()
                } else {
                    String::new()
                },
                ..generate_req("logged", &[])
            })
            .await
            .unwrap()
            .into_inner();
        secrets.push(g.secret.clone());
    }
    let forged = secrets[1].clone();
    let (api, siem) = (secrets[2].clone(), secrets[3].clone());
    let route = |ns: Namespace| {
        if ns == Namespace::Api {
            "/v1/forward-auth?namespace=api"
        } else {
            "/v1/forward-auth?namespace=siem"
        }
    };
    // Every door, with a live token, then with the same token revoked, and a forged one.
    for round in 0..2 {
        for (secret, ns) in [
            (&api, Namespace::Api),
            (&siem, Namespace::Siem),
            (&forged, Namespace::Api),
        ] {
            let bearer = format!("Bearer {secret}");
            anyone
                .validate(proto::ValidateRequest {
                    token: secret.clone(),
                    namespace: ns as i32,
                    ..Default::default()
                })
                .await
                .unwrap();
            envoy
                .check(crate::frontdoor::check_request(Some(&bearer), ns, &[]))
                .await
                .unwrap();
            http(
                http_addr,
                "GET",
                route(ns),
                &[("authorization", &bearer)],
                "",
            )
            .await;
            http(
                http_addr,
                "POST",
                "/oauth2/introspect",
                &[
                    ("authorization", &format!("Bearer {admin}")),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                &format!("token={secret}"),
            )
            .await;
            let review = serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": secret},
            })
            .to_string();
            http(
                http_addr,
                "POST",
                "/apis/authentication.k8s.io/v1/tokenreviews",
                &[("content-type", "application/json")],
                &review,
            )
            .await;
            let _ = TokenServiceClient::with_interceptor(channel.clone(), Meta::bearer(secret))
                .list(proto::ListRequest::default())
                .await;
        }
        if round == 0 {
            c.list(proto::ListRequest::default()).await.unwrap();
            // The API token by RevokeLeaked (with the forged string beside it), the SIEM
            // token by a signed secret-scanning report.
            anyone
                .revoke_leaked(proto::RevokeLeakedRequest {
                    tokens: vec![api.clone(), forged.clone()],
                })
                .await
                .unwrap();
            let body = crate::leaks::report_body(&[&siem, &forged]);
            let answer = http(
                http_addr,
                "POST",
                "/v1/secret-scanning/reports",
                &[
                    ("content-type", "application/json"),
                    ("github-public-key-identifier", &scanner.id),
                    ("github-public-key-signature", &scanner.sign(&body)),
                ],
                &body,
            )
            .await;
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
    }
    // And a plain Revoke of a fresh token.
    let g = c
        .generate(generate_req("revoked", &[]))
        .await
        .unwrap()
        .into_inner();
    c.revoke(proto::RevokeRequest {
        id: g.token.unwrap().id,
    })
    .await
    .unwrap();
    secrets.push(g.secret);
    drop(c);
    drop(anyone);
    drop(envoy);
    drop(channel);

    let (status, log) = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}\n{log}");
    assert!(
        log.contains("last-use times flushed"),
        "flushed at shutdown:\n{log}"
    );
    // Trace logging was really on, and saw the front door's requests.
    assert!(log.lines().count() > 50, "{log}");
    assert!(
        log.contains("TRACE") || log.contains("\"level\":\"TRACE\""),
        "{log}"
    );
    assert!(log.contains("secret-scanning report handled"), "{log}");
    for secret in &secrets {
        let secret_part = &secret[26..69];
        for (what, text) in [("serve", &log), ("bootstrap", &boot_log)] {
            assert!(
                !text.contains(secret.as_str()),
                "a whole token appears in the {what} log"
            );
            assert!(
                !text.contains(secret_part),
                "a token's secret part appears in the {what} log"
            );
        }
    }
}

// Multi-threaded: waiting for the child process blocks one thread.
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_logs_at_trace() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("j.db").display());
    no_secret_in_logs_at_trace_on(&db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_logs_at_trace_on_postgres() {
    let pg = jeton_testkit::postgres::PgDatabase::create("jeton_logs")
        .await
        .unwrap();
    no_secret_in_logs_at_trace_on(pg.url()).await;
}
