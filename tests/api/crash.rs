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
    assert_eq!(run.kills, 5);
    // The load got real work acknowledged between kills, or the check proves nothing.
    assert!(run.generated >= 10, "{run:?}");
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
