//! The real `jeton` binary, logging at `trace`: no secret ever appears in its output.

use crate::helpers::*;
use jeton::service::proto::{self, Namespace, token_service_client::TokenServiceClient};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub const JETON: &str = env!("CARGO_BIN_EXE_jeton");

/// `jeton serve` on port 0 with its output captured; the bound address is read from the
/// "jeton listening" log line.
pub struct Served {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    pub fn start(db_url: &str, log_filter: &str) -> Self {
        let child = Command::new(JETON)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--argon2-memory-kib",
                "256",
                "--argon2-iterations",
                "1",
            ])
            .env("JETON_DATABASE_URL", db_url)
            .env("JETON_LOG", log_filter)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start jeton serve");
        Self::adopt(child)
    }

    /// Takes over a started `jeton serve` whose stderr is piped.
    pub fn adopt(mut child: Child) -> Self {
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("jeton listening") {
                    let addr = line
                        .split("addr=")
                        .nth(1)
                        .and_then(|s| s.split_whitespace().next());
                    let _ = tx.send(addr.unwrap_or_default().to_owned());
                }
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("server did not start:\n{}", log.lock().unwrap()));
        Self {
            child,
            addr,
            log,
            reader: Some(reader),
        }
    }

    /// Sends SIGTERM, waits, and returns the exit status and everything it printed.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout).unwrap();
        }
        let log = self.log.lock().unwrap().clone();
        (status, format!("{log}{stdout}"))
    }
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
    let server = Served::start(&db, "trace");

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
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
