//! The pair against real PostgreSQL servers: replication in both modes, a synchronous
//! commit waiting for its standby, kill and promote, and the clean-up.

use super::{PgPair, Replication, alive, children, port_is_free};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement};
use std::time::{Duration, Instant};

async fn connect(url: &str) -> DatabaseConnection {
    super::connect(url).await.expect("connect")
}

async fn execute(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn count(db: &DatabaseConnection) -> Result<i64, sea_orm::DbErr> {
    #[derive(FromQueryResult)]
    struct Count {
        n: i64,
    }
    let row = Count::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT count(*) AS n FROM t",
    ))
    .one(db)
    .await?;
    Ok(row.map_or(0, |r| r.n))
}

/// Waits until the standby has replayed `n` rows of `t` (the table itself arrives by
/// replay too, so errors mean "not yet").
async fn wait_for_rows(db: &DatabaseConnection, n: i64) {
    let start = Instant::now();
    loop {
        if count(db).await.ok() == Some(n) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the standby did not show {n} rows within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn sync_state(primary: &DatabaseConnection) -> Option<String> {
    #[derive(FromQueryResult)]
    struct Row {
        sync_state: Option<String>,
    }
    Row::find_by_statement(Statement::from_string(
        primary.get_database_backend(),
        "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'",
    ))
    .one(primary)
    .await
    .expect("pg_stat_replication")
    .and_then(|r| r.sync_state)
}

async fn start(replication: Replication) -> PgPair {
    let t = Instant::now();
    let pair = PgPair::start(replication).await.unwrap();
    println!("{replication:?} pair started in {:?}", t.elapsed());
    pair
}

#[tokio::test]
async fn a_synchronous_pair_loses_no_acknowledged_commit_through_kill_and_promote() {
    let pair = start(Replication::Synchronous).await;
    assert_ne!(pair.primary_port(), 5432);
    assert_ne!(pair.standby_port(), 5432);
    assert_eq!(
        pair.multi_host_url(),
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/jeton",
            pair.primary_port(),
            pair.standby_port()
        )
    );
    let primary = connect(&pair.primary_url()).await;
    let standby = connect(&pair.standby_url()).await;
    assert_eq!(sync_state(&primary).await.as_deref(), Some("sync"));

    execute(&primary, "CREATE TABLE t (n int PRIMARY KEY)").await;
    execute(&primary, "INSERT INTO t VALUES (1)").await;
    wait_for_rows(&standby, 1).await;
    let refused = standby.execute_unprepared("INSERT INTO t VALUES (0)").await;
    assert!(refused.is_err(), "the standby accepted a write");

    // With the synchronous standby away, a commit waits for it.
    drop(standby);
    pair.stop_standby().await.unwrap();
    assert_eq!(pair.standby_pid(), None);
    let waiting = primary.clone();
    let mut commit =
        tokio::spawn(async move { waiting.execute_unprepared("INSERT INTO t VALUES (2)").await });
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut commit)
            .await
            .is_err(),
        "a commit returned while the synchronous standby was stopped"
    );
    pair.start_standby().await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), commit)
        .await
        .expect("the commit returns once the standby is back")
        .unwrap()
        .unwrap();

    // Acknowledged commits, then the primary dies at once.
    for n in 3..=100 {
        execute(&primary, &format!("INSERT INTO t VALUES ({n})")).await;
    }
    let postmaster = pair.primary_pid().expect("the primary runs");
    let mut killed = children(postmaster);
    assert!(killed.len() >= 4, "a postmaster has children: {killed:?}");
    killed.push(postmaster);
    pair.kill_primary().await.unwrap();
    for pid in killed {
        assert!(
            !alive(pid),
            "process {pid} of the killed primary still runs"
        );
    }
    assert_eq!(pair.primary_pid(), None);
    assert!(port_is_free(pair.primary_port()));
    // A plain TCP connect: sqlx's pool keeps retrying a refused connection until its
    // connect timeout.
    let refused = std::net::TcpStream::connect(("127.0.0.1", pair.primary_port()));
    assert_eq!(
        refused.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "the killed primary's port accepted a connection"
    );

    let promoting = Instant::now();
    pair.promote_standby().await.unwrap();
    println!("promoted in {:?}", promoting.elapsed());
    let promoted = connect(&pair.standby_url()).await;
    assert_eq!(
        count(&promoted).await.unwrap(),
        100,
        "acknowledged commits lost"
    );
    execute(&promoted, "INSERT INTO t VALUES (101)").await;
    assert_eq!(count(&promoted).await.unwrap(), 101);
}

#[tokio::test]
async fn an_asynchronous_pair_streams_without_waiting_and_promotes() {
    let pair = start(Replication::Asynchronous).await;
    let primary = connect(&pair.primary_url()).await;
    assert_eq!(sync_state(&primary).await.as_deref(), Some("async"));
    execute(&primary, "CREATE TABLE t (n int PRIMARY KEY)").await;
    execute(&primary, "INSERT INTO t VALUES (1)").await;
    wait_for_rows(&connect(&pair.standby_url()).await, 1).await;

    // Nothing waits for an asynchronous standby.
    pair.stop_standby().await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        primary.execute_unprepared("INSERT INTO t VALUES (2)"),
    )
    .await
    .expect("a commit waited for an asynchronous standby")
    .unwrap();
    pair.start_standby().await.unwrap();

    pair.kill_primary().await.unwrap();
    pair.promote_standby().await.unwrap();
    let promoted = connect(&pair.standby_url()).await;
    // Row 2 may or may not have reached the standby: asynchronous replication says nothing.
    let before = count(&promoted).await.unwrap();
    assert!((1..=2).contains(&before), "{before} rows");
    execute(&promoted, "INSERT INTO t VALUES (3)").await;
    assert_eq!(count(&promoted).await.unwrap(), before + 1);
}

#[tokio::test]
async fn drop_stops_both_servers_and_removes_everything_even_when_a_test_panics() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let test = tokio::spawn(async move {
        let pair = PgPair::start(Replication::Synchronous).await.unwrap();
        let postmasters = [pair.primary_pid().unwrap(), pair.standby_pid().unwrap()];
        let mut pids = postmasters
            .iter()
            .flat_map(|&p| children(p))
            .collect::<Vec<_>>();
        pids.extend(postmasters);
        *record.lock().unwrap() = Some((
            pair.dir().to_owned(),
            pids,
            [pair.primary_port(), pair.standby_port()],
        ));
        panic!("a failing test holding a pair");
    });
    assert!(test.await.unwrap_err().is_panic());

    let (dir, pids, ports) = seen.lock().unwrap().take().expect("the pair started");
    assert!(!dir.exists(), "{} left behind", dir.display());
    for pid in pids {
        assert!(!alive(pid), "process {pid} left running");
    }
    for port in ports {
        assert!(port_is_free(port), "port {port} still taken");
    }
}
