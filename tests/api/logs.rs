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

/// `jeton serve` on port 0 with cheap Argon2, on `db_url`, logging at `log_filter`.
pub fn serve(db_url: &str, log_filter: &str) -> Served {
    let mut cmd = Command::new(JETON);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--argon2-memory-kib",
        "256",
        "--argon2-iterations",
        "1",
    ])
    .env("JETON_DATABASE_URL", db_url)
    .env("JETON_LOG", log_filter);
    Served::start(cmd)
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

// Multi-threaded: waiting for the child process blocks one thread.
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_logs_at_trace() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("j.db").display());
    let (admin, boot_log) = bootstrap(&db, TENANT, ADMIN, "trace");
    assert!(admin.starts_with("jta_"));
    let server = serve(&db, "trace");

    let channel = connect(server.addr()).await;
    let mut c = TokenServiceClient::with_interceptor(channel.clone(), Meta::bearer(&admin));
    let mut secrets = vec![admin.clone()];
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
        let v = TokenServiceClient::new(channel.clone())
            .validate(proto::ValidateRequest {
                token: g.secret.clone(),
                namespace: ns as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(v.valid);
        c.list(proto::ListRequest {
            namespace: ns as i32,
            ..Default::default()
        })
        .await
        .unwrap();
        c.revoke(proto::RevokeRequest {
            id: g.token.unwrap().id,
        })
        .await
        .unwrap();
        // A failed validation and a failed call with the revoked token are logged too.
        TokenServiceClient::new(channel.clone())
            .validate(proto::ValidateRequest {
                token: g.secret.clone(),
                namespace: ns as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        let _ = TokenServiceClient::with_interceptor(channel.clone(), Meta::bearer(&g.secret))
            .list(proto::ListRequest::default())
            .await;
        secrets.push(g.secret);
    }
    drop(c);
    drop(channel);

    let (status, log) = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}\n{log}");
    assert!(
        log.contains("last-use times flushed"),
        "flushed at shutdown:\n{log}"
    );
    assert!(log.lines().count() > 20, "trace logging was really on");
    for secret in &secrets {
        let secret_part = &secret[26..69];
        for (what, text) in [("serve", &log), ("bootstrap", &boot_log)] {
            assert!(
                !text.contains(secret_part),
                "a secret appears in the {what} log"
            );
        }
    }
}
