//! What an operator relies on: health that follows the database, calls that fail fast and
//! clearly, a drain that says NOT_SERVING, metrics, logs without passwords, dev mode, start-up
//! errors that name their cause, and a database file (or backup) that is complete.

use crate::helpers::*;
use crate::logs::{JETON, bootstrap, connect, jeton_ok};
use jeton::grpc::proto::{self, Namespace, token_service_client::TokenServiceClient};
use jeton_testkit::served::Served;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::Code;

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

/// Waits until `service`'s health is `want`; returns how long that took.
async fn health_becomes(app: &TestApp, service: &str, want: i32, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if app.health(service).await.ok() == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "health of {service:?} not {want} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The health entries that follow the database.
const READY: [&str; 3] = ["", "jeton.v1.TokenService", "jeton.v1.DirectoryService"];

#[tokio::test]
async fn health_follows_a_database_cut_both_ways_on_postgres() {
    let proxy = Proxy::start().await;
    let app = TestApp::spawn_on(DbEngine::Postgres, Transport::Plain, |s| proxy.route(s)).await;
    for s in READY {
        assert_eq!(app.health(s).await.unwrap(), SERVING, "{s:?} at start");
    }

    proxy.cut();
    let took = health_becomes(
        &app,
        "jeton.v1.TokenService",
        NOT_SERVING,
        Duration::from_secs(5),
    )
    .await;
    for s in READY {
        assert_eq!(app.health(s).await.unwrap(), NOT_SERVING, "{s:?} while cut");
    }
    assert_eq!(
        app.health("liveness").await.unwrap(),
        SERVING,
        "the process itself is alive"
    );
    let r = app
        .tokens(&app.admin)
        .await
        .list(proto::ListRequest::default())
        .await;
    assert_code(r, Code::Unavailable, "");

    proxy.restore().await;
    health_becomes(
        &app,
        "jeton.v1.TokenService",
        SERVING,
        Duration::from_secs(15),
    )
    .await;
    for s in READY {
        assert_eq!(app.health(s).await.unwrap(), SERVING, "{s:?} after the cut");
    }
    assert!(took < Duration::from_secs(5), "NOT_SERVING after {took:?}");
}

#[tokio::test]
async fn health_follows_a_database_dropped_and_recreated_empty_on_postgres() {
    let app = TestApp::spawn_on(DbEngine::Postgres, Transport::Plain, |_| {}).await;
    let db = app.pg_database().unwrap();
    let admin_url = jeton_testkit::postgres::admin_url();
    let (name, url) = (db.name().to_owned(), db.url().to_owned());
    jeton_testkit::postgres::statement(&admin_url, &format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
    jeton_testkit::postgres::statement(&admin_url, &format!("CREATE DATABASE {name}"))
        .await
        .unwrap();

    health_becomes(
        &app,
        "jeton.v1.TokenService",
        NOT_SERVING,
        Duration::from_secs(5),
    )
    .await;
    // Every call that needs the database says it is unavailable, none is INTERNAL.
    let mut tokens = app.tokens(&app.admin).await;
    let generated = tokens.generate(generate_req("x", &[])).await;
    assert_code(generated, Code::Unavailable, "");
    let listed = tokens.list(proto::ListRequest::default()).await;
    assert_code(listed, Code::Unavailable, "");
    let fresh = crate::tokens::forge(&format!("jta_{}{}", "R".repeat(22), "B".repeat(43)));
    let validated = TokenServiceClient::new(app.channel().await)
        .validate(proto::ValidateRequest {
            token: fresh,
            ..Default::default()
        })
        .await;
    assert_code(validated, Code::Unavailable, "");

    // An operator restores the schema: the replica serves again by itself.
    jeton_ok(&["migrate", "--database-url", &url]);
    health_becomes(
        &app,
        "jeton.v1.TokenService",
        SERVING,
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test]
async fn a_blackholed_database_is_unavailable_within_the_timeout_on_postgres() {
    let timeout = Duration::from_secs(2);
    let proxy = Proxy::start().await;
    let app = TestApp::spawn_on(DbEngine::Postgres, Transport::Plain, |s| {
        proxy.route(s);
        s.db.connect_timeout = timeout;
    })
    .await;
    let mut admin = app.tokens(&app.admin).await;
    admin.list(proto::ListRequest::default()).await.unwrap();

    proxy.blackhole();
    for _ in 0..2 {
        let start = Instant::now();
        let r = admin.list(proto::ListRequest::default()).await;
        let took = start.elapsed();
        assert_code(r, Code::Unavailable, "");
        // A second of slack for a busy machine: a blackholed connection left to itself
        // hangs for minutes.
        assert!(
            took <= timeout + Duration::from_secs(1),
            "answered after {took:?}, the timeout is {timeout:?}"
        );
    }
    health_becomes(
        &app,
        "jeton.v1.TokenService",
        NOT_SERVING,
        Duration::from_secs(5),
    )
    .await;

    proxy.unblock().await;
    health_becomes(
        &app,
        "jeton.v1.TokenService",
        SERVING,
        Duration::from_secs(15),
    )
    .await;
    admin.list(proto::ListRequest::default()).await.unwrap();
}

#[tokio::test]
async fn health_says_not_serving_while_draining() {
    let mut app = TestApp::spawn_with(Transport::Plain, |s| {
        s.shutdown_delay = Duration::from_secs(4);
    })
    .await;
    assert_eq!(app.health("jeton.v1.TokenService").await.unwrap(), SERVING);

    app.signal_stop();
    // Well inside the delay, whatever the machine's load.
    health_becomes(
        &app,
        "jeton.v1.TokenService",
        NOT_SERVING,
        Duration::from_millis(2500),
    )
    .await;
    assert_eq!(app.health("").await.unwrap(), NOT_SERVING);
    // Calls are still served while load balancers take notice.
    let v = app.validate(&app.admin, Namespace::Api, &[]).await;
    assert!(v.valid, "served during the delay");
    assert!(!app.is_stopped());

    let start = Instant::now();
    while !app.is_stopped() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "stops after the delay"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

/// The address logged on the line that contains `what`.
fn logged_addr(log: &str, what: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no {what:?} in:\n{log}"));
    let rest = line
        .split("\"addr\":\"")
        .nth(1)
        .map(|r| r.split('"').next().unwrap_or_default())
        .or_else(|| {
            line.split("addr=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
        });
    rest.unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_happened_and_carry_no_request_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("j.db").display());
    let (admin, _) = bootstrap(&db, TENANT, ADMIN, "warn");
    let mut cmd = Command::new(JETON);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ])
    .args(["--argon2-memory-kib", "256", "--argon2-iterations", "1"])
    .env("JETON_DATABASE_URL", &db)
    .env("JETON_LOG", "info")
    .env("JETON_LOG_FORMAT", "json");
    let server = Served::start(cmd);
    let metrics = logged_addr(&server.log(), "metrics listening");
    let channel = connect(server.addr()).await;
    let before = scrape(&metrics);

    let mut anyone = TokenServiceClient::new(channel.clone());
    let validate = |token: &str| proto::ValidateRequest {
        token: token.into(),
        ..Default::default()
    };
    for _ in 0..3 {
        assert!(
            anyone
                .validate(validate(&admin))
                .await
                .unwrap()
                .into_inner()
                .valid
        );
    }
    for _ in 0..2 {
        anyone.validate(validate("jta_not-a-token")).await.unwrap();
    }
    let mut bearer = TokenServiceClient::with_interceptor(channel.clone(), Meta::bearer(&admin));
    let g = bearer
        .generate(generate_req("metered", &[]))
        .await
        .unwrap()
        .into_inner();
    let refused = anyone.list(proto::ListRequest::default()).await;
    assert_code(refused, Code::Unauthenticated, "");
    let after = scrape(&metrics);
    let forged = crate::tokens::forge(&format!("jta_{}{}", "F".repeat(22), "G".repeat(43)));
    let mut stranger = TokenServiceClient::with_interceptor(channel.clone(), Meta::bearer(&forged));
    let r = stranger.list(proto::ListRequest::default()).await;
    assert_code(r, Code::Unauthenticated, "");

    // Refused calls leave a line at info: method, peer, reason — never the credential.
    let log = server.log_when(Duration::from_secs(5), |log| {
        log.matches("request refused").count() >= 2
    });
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("request refused"))
        .collect();
    assert_eq!(refused.len(), 2, "{log}");
    assert!(
        refused[0].contains("TokenService/List")
            && refused[0].contains("UNAUTHENTICATED")
            && refused[0].contains("missing credential")
            && refused[0].contains("127.0.0.1"),
        "{}",
        refused[0]
    );
    assert!(
        refused[1].contains("invalid bearer token"),
        "{}",
        refused[1]
    );
    assert!(!log.contains(&forged[26..69]) && !log.contains(&admin[26..69]));

    let m = |method: &str, code: &str| {
        format!(
            "jeton_rpc_requests_total{{method=\"jeton.v1.TokenService/{method}\",code=\"{code}\"}}"
        )
    };
    assert_eq!(delta(&before, &after, &m("Validate", "OK")), 5.0);
    assert_eq!(delta(&before, &after, &m("Generate", "OK")), 1.0);
    assert_eq!(delta(&before, &after, &m("List", "UNAUTHENTICATED")), 1.0);
    let v = |outcome: &str| {
        format!("jeton_validations_total{{namespace=\"api\",outcome=\"{outcome}\"}}")
    };
    assert_eq!(delta(&before, &after, &v("valid")), 3.0);
    assert_eq!(delta(&before, &after, &v("malformed")), 2.0);
    assert_eq!(
        delta(
            &before,
            &after,
            "jeton_argon2_computations_total{kind=\"hash\"}"
        ),
        1.0,
        "one token generated"
    );
    assert_eq!(
        delta(
            &before,
            &after,
            "jeton_argon2_computations_total{kind=\"verify\"}"
        ),
        1.0,
        "the admin token verified once, then cached"
    );
    assert!(delta(&before, &after, "jeton_cache_lookups_total{result=\"hit\"}") >= 3.0);
    assert_eq!(after.get("jeton_database_up"), Some(&1.0));
    assert!(after.contains_key(
        "jeton_rpc_duration_seconds_bucket{method=\"jeton.v1.TokenService/Validate\",le=\"0.001\"}"
    ));
    for name in [
        "jeton_cache_entries{cache=\"tokens\"}",
        "jeton_db_pool_connections{state=\"idle\"}",
        "jeton_db_pool_waiting",
        "jeton_last_use_pending",
        "jeton_change_log_last_poll_timestamp_seconds",
        "jeton_build_info{version=\"0.1.0\"}",
    ] {
        assert!(after.contains_key(name), "{name} is exported");
    }

    // No label value came from a request: no token, id, tenant or principal anywhere.
    let text: String = after.keys().cloned().collect::<Vec<_>>().join("\n");
    let id = g.token.unwrap().id;
    for secret in [
        admin.as_str(),
        &g.secret,
        &id,
        &admin[4..26],
        TENANT,
        ADMIN,
        "metered",
    ] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_database_password_in_logs_at_trace_on_postgres() {
    const PASSWORD: &str = "Pw-in-the-URL-7f3a";
    let db = jeton_testkit::postgres::PgDatabase::create("jeton_pw")
        .await
        .unwrap();
    // Trust authentication ignores the password, but every layer sees it in the URL.
    let url = db
        .url()
        .replace("postgres@", &format!("postgres:{PASSWORD}@"));
    assert!(url.contains(PASSWORD));
    let migrate = Command::new(JETON)
        .args(["migrate", "--database-url", &url])
        .env("JETON_LOG", "trace")
        .output()
        .unwrap();
    assert!(migrate.status.success());
    let (admin, boot_log) = bootstrap(&url, TENANT, ADMIN, "trace");
    let mut cmd = Command::new(JETON);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--argon2-memory-kib", "256", "--argon2-iterations", "1"])
        .env("JETON_DATABASE_URL", &url)
        .env("JETON_LOG", "trace");
    let server = Served::start(cmd);
    let channel = connect(server.addr()).await;
    let mut bearer = TokenServiceClient::with_interceptor(channel, Meta::bearer(&admin));
    bearer.list(proto::ListRequest::default()).await.unwrap();
    let (status, serve_log) = server.terminate();
    assert!(status.success());
    let failed = Command::new(JETON)
        .args(["migrate", "--database-url", &url.replace(":5432/", ":1/")])
        .env("JETON_LOG", "trace")
        .output()
        .unwrap();
    assert!(!failed.status.success());
    for (what, text, lines) in [
        (
            "migrate",
            String::from_utf8_lossy(&migrate.stderr).into_owned(),
            10,
        ),
        ("bootstrap", boot_log, 10),
        ("serve", serve_log, 10),
        (
            "a failed start",
            String::from_utf8_lossy(&failed.stderr).into_owned(),
            1,
        ),
    ] {
        assert!(
            text.lines().count() >= lines,
            "{what} logged at trace:\n{text}"
        );
        assert!(
            !text.contains(PASSWORD),
            "the password appears in the {what} log"
        );
    }
}

#[test]
fn dev_mode_prints_a_token_that_validates() {
    use std::io::{BufRead, BufReader};
    /// Kills the server when the test fails half-way, so that no server outlives it.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new(JETON)
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--argon2-memory-kib",
            "256",
        ])
        .env_remove("JETON_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut child = Reaped(child);
    let mut token = None;
    let mut validate_command = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(t) = line.trim().strip_prefix("export TOKEN=") {
            token = Some(t.to_owned());
        }
        if line.contains("TokenService/Validate") {
            validate_command = Some(line.trim().to_owned());
        }
        if line.contains(" list") {
            break;
        }
    }
    let token = token.expect("a token printed");
    let command = validate_command.expect("a ready-to-paste Validate command");
    assert!(command.contains(&token));
    // The printed command, run as printed.
    let out = Command::new("bash")
        .args(["-c", &command])
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("\"valid\": true"),
        "{answer}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(answer.contains("\"tenant\": \"dev\""), "{answer}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn start_up_failures_name_their_cause_and_the_port_is_bound_first() {
    let refused = Command::new(JETON)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db-connect-timeout",
            "2s",
        ])
        .args(["--database-url", "postgres://jeton@127.0.0.1:1/jeton"])
        .env("JETON_LOG_FORMAT", "pretty")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("127.0.0.1:1") && err.contains("\"jeton\""),
        "names the server: {err}"
    );
    assert!(err.contains("refused"), "says what happened: {err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/j.db");
    let out = Command::new(JETON)
        .args([
            "migrate",
            "--database-url",
            &format!("sqlite://{}", missing.display()),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let db = dir.path().join("never.db");
    let out = Command::new(JETON)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &format!("sqlite://{}", db.display())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&port.to_string()));
    assert!(
        !db.exists(),
        "the port is bound before the database is touched"
    );
}

/// Validates `tokens` against the server at `addr`; all must be valid.
async fn all_valid(addr: &str, tokens: &[String]) {
    let channel = connect(addr).await;
    let mut c = TokenServiceClient::new(channel);
    for t in tokens {
        let v = c
            .validate(proto::ValidateRequest {
                token: t.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(v.valid, "{:?}", v.reason);
    }
}

/// `n` new tokens of the bearer's.
async fn generate_many(bearer: &mut Tokens, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let g = bearer
            .generate(generate_req(&format!("t{i}"), &[]))
            .await
            .unwrap();
        out.push(g.into_inner().secret);
    }
    out
}

fn serve_sqlite(path: &std::path::Path) -> Served {
    let mut cmd = Command::new(JETON);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--argon2-memory-kib", "256", "--argon2-iterations", "1"])
        .env("JETON_DATABASE_URL", format!("sqlite://{}", path.display()));
    Served::start(cmd)
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_clean_stop_the_sqlite_file_alone_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jeton.db");
    let (admin, _) = bootstrap(
        &format!("sqlite://{}", path.display()),
        TENANT,
        ADMIN,
        "warn",
    );
    let server = serve_sqlite(&path);
    let channel = connect(server.addr()).await;
    let mut bearer = TokenServiceClient::with_interceptor(channel, Meta::bearer(&admin));
    let mut tokens = vec![admin.clone()];
    tokens.extend(generate_many(&mut bearer, 5).await);
    let (status, _) = server.terminate();
    assert!(status.success());

    // Copy the database file alone, as an operator backing up "the file" would.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(&path, copy.path().join("jeton.db")).unwrap();
    let restored = serve_sqlite(&copy.path().join("jeton.db"));
    all_valid(restored.addr(), &tokens).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_under_load_restores_into_a_server_that_validates_the_same_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jeton.db");
    let url = format!("sqlite://{}", path.display());
    let (admin, _) = bootstrap(&url, TENANT, ADMIN, "warn");
    let server = serve_sqlite(&path);
    let channel = connect(server.addr()).await;
    let mut bearer = TokenServiceClient::with_interceptor(channel.clone(), Meta::bearer(&admin));
    let mut before = vec![admin.clone()];
    before.extend(generate_many(&mut bearer, 20).await);
    // Load while the backup runs: validations, and more tokens being written.
    let load = {
        let (mut b, mut v, tokens) = (
            bearer.clone(),
            TokenServiceClient::new(channel.clone()),
            before.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0;
            loop {
                let _ = v
                    .validate(proto::ValidateRequest {
                        token: tokens[i % tokens.len()].clone(),
                        ..Default::default()
                    })
                    .await;
                let _ = b.generate(generate_req(&format!("during-{i}"), &[])).await;
                i += 1;
                // Steady load, not a CPU hog: other tests share these two cores.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let backup = dir.path().join("backup.db");
    let out = Command::new(JETON)
        .args(["backup", "--database-url", &url, "--output"])
        .arg(&backup)
        .output()
        .unwrap();
    load.abort();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = Command::new(JETON)
        .args(["backup", "--database-url", &url, "--output"])
        .arg(&backup)
        .output()
        .unwrap();
    assert!(!again.status.success(), "never overwrites a file");
    drop(server);

    // Restore as the README says: the backup becomes the database file of a new server.
    let restore = tempfile::tempdir().unwrap();
    std::fs::copy(&backup, restore.path().join("jeton.db")).unwrap();
    let restored = serve_sqlite(&restore.path().join("jeton.db"));
    all_valid(restored.addr(), &before).await;
}

#[test]
fn backup_of_postgresql_says_to_use_pg_dump() {
    let out = Command::new(JETON)
        .args([
            "backup",
            "--database-url",
            &jeton_testkit::postgres::admin_url(),
            "--output",
            "/tmp/never",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
}
