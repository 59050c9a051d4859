//! Crash safety on each engine: mixed load, `kill -9` at random moments, restart, and
//! everything acknowledged is still there (the driver is `jeton_testkit::crash`).

use crate::helpers::{ADMIN, TENANT};
use crate::logs::{JETON, bootstrap};
use jeton_testkit::postgres::PgDatabase;

async fn survives_kills(db: &str) {
    let (admin, _) = bootstrap(db, TENANT, ADMIN, "warn");
    let run = jeton_testkit::crash::run(JETON.as_ref(), db, &admin, 5)
        .await
        .unwrap();
    eprintln!("{run:?}");
    // Each life of the server ended by SIGKILL, as its exit status says, after the load
    // got writes acknowledged in it — or the check of what survived proves nothing.
    assert_eq!(run.ended_by, [Some(9); 5], "{run:?}");
    assert!(run.writes_per_life.iter().all(|n| *n > 0), "{run:?}");
    assert!(run.revoked >= 3, "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("jeton.db").display());
    survives_kills(&db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9_on_postgres() {
    let pg = PgDatabase::create("jeton_crash").await.unwrap();
    survives_kills(pg.url()).await;
}
