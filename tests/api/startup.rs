//! Processes that start together on an empty database: two replicas of `jeton serve`, or
//! `serve` and `bootstrap` run back to back, as an orchestrator or a deploy script starts
//! them. Each brings the schema up to date on start; only one may run the migrations at a
//! time, and the others must find the schema made, not fail on a half-made one.

use crate::helpers::*;
use crate::logs::JETON;
use jeton_testkit::postgres::PgDatabase;
use jeton_testkit::served::Served;
use std::process::{Child, Command, Output, Stdio};

/// Trials per engine and pair: without a lock one start of a pair fails in nearly every
/// trial; a handful makes a regression fail every run.
const TRIALS: usize = 6;

/// An empty database of `engine`: its URL, and what keeps it alive.
async fn empty_database(
    engine: DbEngine,
    dir: &tempfile::TempDir,
    trial: usize,
) -> (String, Option<PgDatabase>) {
    match engine {
        DbEngine::Sqlite => (
            format!(
                "sqlite://{}",
                dir.path().join(format!("j{trial}.db")).display()
            ),
            None,
        ),
        DbEngine::Postgres => {
            let db = PgDatabase::create("jeton_start")
                .await
                .expect("PostgreSQL reachable");
            (db.url().to_owned(), Some(db))
        }
    }
}

/// `jeton serve` on port 0 on `db_url`, started (not yet listening), its log piped.
fn spawn_serve(db_url: &str) -> Child {
    Command::new(JETON)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--argon2-memory-kib", "256", "--argon2-iterations", "1"])
        .env("JETON_DATABASE_URL", db_url)
        .env("JETON_LOG_FORMAT", "pretty")
        .env("JETON_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `jeton bootstrap` of the test tenant on `db_url`, started.
fn spawn_bootstrap(db_url: &str) -> Child {
    Command::new(JETON)
        .args(["bootstrap", "--tenant", TENANT, "--admin", ADMIN])
        .args(["--argon2-memory-kib", "256", "--argon2-iterations", "1"])
        .env("JETON_DATABASE_URL", db_url)
        .env("JETON_LOG_FORMAT", "pretty")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a started `jeton serve` to listen (or panics with its log), then stops it; it
/// must stop cleanly.
fn listens_then_stops(child: Child, what: &str) {
    let served = Served::adopt(child);
    let (status, log) = served.terminate();
    assert!(status.success(), "{what}: {log}");
}

fn succeeded(out: Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two replicas started at the same moment on an empty database both come up.
async fn two_replicas_start_together(engine: DbEngine) {
    let dir = tempfile::tempdir().unwrap();
    for trial in 0..TRIALS {
        let (url, _db) = empty_database(engine, &dir, trial).await;
        let (a, b) = (spawn_serve(&url), spawn_serve(&url));
        let waiting = std::thread::spawn(move || listens_then_stops(b, "the second replica"));
        listens_then_stops(a, "the first replica");
        if let Err(panic) = waiting.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// `serve` and `bootstrap`, back to back on an empty database: both succeed, and the
/// bootstrap's token is valid on the server.
async fn serve_and_bootstrap_back_to_back(engine: DbEngine) {
    let dir = tempfile::tempdir().unwrap();
    for trial in 0..TRIALS {
        let (url, _db) = empty_database(engine, &dir, trial).await;
        let serve = spawn_serve(&url);
        let bootstrap = spawn_bootstrap(&url);
        let served = Served::adopt(serve);
        let boot = bootstrap.wait_with_output().unwrap();
        let token = String::from_utf8_lossy(&boot.stdout).trim().to_owned();
        succeeded(boot, "bootstrap");
        let valid = jeton::grpc::proto::token_service_client::TokenServiceClient::new(
            crate::logs::connect(served.addr()).await,
        )
        .validate(jeton::grpc::proto::ValidateRequest {
            token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .valid;
        assert!(valid, "the bootstrap token is valid");
        let (status, log) = served.terminate();
        assert!(status.success(), "serve: {log}");
    }
}

// Multi-threaded: waiting for child processes blocks threads.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_start_together_on_an_empty_sqlite_file() {
    two_replicas_start_together(DbEngine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_start_together_on_an_empty_postgres_database() {
    two_replicas_start_together(DbEngine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_and_bootstrap_back_to_back_on_an_empty_sqlite_file() {
    serve_and_bootstrap_back_to_back(DbEngine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_and_bootstrap_back_to_back_on_an_empty_postgres_database() {
    serve_and_bootstrap_back_to_back(DbEngine::Postgres).await;
}

/// A migration that fails says which one, and what the database said; and it leaves the
/// database as it found it (the migrations run in one transaction).
async fn a_failed_migration_names_itself_and_the_cause(engine: DbEngine) {
    let dir = tempfile::tempdir().unwrap();
    let (url, _db) = empty_database(engine, &dir, 0).await;
    // A table of jeton's name that jeton did not make.
    let url = match engine {
        DbEngine::Sqlite => format!("{url}?mode=rwc"),
        DbEngine::Postgres => url,
    };
    crate::storage::execute(&url, "CREATE TABLE tenants (x INTEGER)").await;
    let out = Command::new(JETON)
        .args(["migrate", "--database-url", &url])
        .env("JETON_LOG_FORMAT", "pretty")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("migration m20261124_000001_initial failed")
            && err.contains("\"tenants\" already exists"),
        "{err}"
    );
    let tables = match engine {
        DbEngine::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE name = 'seaql_migrations'",
        DbEngine::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'seaql_migrations'"
        }
    };
    assert_eq!(
        crate::storage::number(&url, tables).await,
        0,
        "nothing of the failed migration is left"
    );
}

#[tokio::test]
async fn a_failed_migration_names_itself_and_the_cause_on_sqlite() {
    a_failed_migration_names_itself_and_the_cause(DbEngine::Sqlite).await;
}

#[tokio::test]
async fn a_failed_migration_names_itself_and_the_cause_on_postgres() {
    a_failed_migration_names_itself_and_the_cause(DbEngine::Postgres).await;
}
