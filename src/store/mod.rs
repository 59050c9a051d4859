//! Persistence: the only module that names `sea_orm`. Queries are named for their intent and
//! take and return domain types; rows never leave this module. One `impl Store` block per
//! aggregate: [`tokens`], [`principals`], [`tenants`], [`changes`] (the change log) and
//! [`audit`] (the audit trail).
//!
//! Every write runs in one transaction that ends with [`Write::commit`]: the change-log rows
//! that make every replica's cache drop what the write changed, and the write's audit
//! events, are appended in that same transaction. A write that matches nothing returns
//! `None` and writes nothing.
//!
//! The SQL is engine-neutral, built by SeaORM, except where marked `SQLITE ONLY` or
//! `POSTGRESQL ONLY`.

mod audit;
mod changes;
mod cluster;
mod codec;
mod entity;
mod hosts;
mod migration;
mod principals;
mod refusals;
mod tenants;
mod tokens;

pub(crate) use changes::Changed;
pub(crate) use cluster::Roles;
pub(crate) use refusals::{RefusalKey, RefusalTally};
pub(crate) use tokens::TokenQuery;

use crate::domain::{AuditEvent, Page};
use chrono::{DateTime, Utc};
use migration::Migrator;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, FromQueryResult,
    QuerySelect, Select, SqlErr, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use std::time::Duration;

/// What went wrong in the store, sorted by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The database cannot be reached now, or its schema is missing; trying again later
    /// may work.
    #[error("database unavailable")]
    Unavailable(#[source] DbErr),
    /// The database could not be opened at all.
    #[error("cannot open {target}")]
    Connect {
        target: String,
        #[source]
        source: sea_orm::sqlx::Error,
    },
    /// No host of the database takes writes now (its primary is gone and no standby has been
    /// promoted yet), or none holds every acknowledged change: trying again shortly works.
    #[error("the database is failing over: no host of {0} takes this now")]
    FailingOver(String),
    /// A row with the same key exists.
    #[error("already exists")]
    Conflict,
    /// A stored value does not parse back into a domain type.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A migration of the schema failed; `source` is what the database said.
    #[error("migration {name} failed")]
    Migration {
        name: String,
        #[source]
        source: DbErr,
    },
    /// Any other database error.
    #[error("database error")]
    Other(#[source] DbErr),
}

impl StoreError {
    /// Whether trying again later may work (the database is away, not the request wrong).
    pub(crate) fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Connect { .. } | StoreError::FailingOver(_)
        )
    }
}

impl From<DbErr> for StoreError {
    fn from(e: DbErr) -> Self {
        if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            return StoreError::Conflict;
        }
        let unavailable = is_unavailable(&e);
        if let Some(m) = crate::metrics::get() {
            if unavailable {
                m.db_unavailable.increment(1);
            } else {
                m.db_errors.increment(1);
            }
        }
        if unavailable {
            trouble::seen();
            StoreError::Unavailable(e)
        } else {
            StoreError::Other(e)
        }
    }
}

/// Whether an error means "the database cannot be reached, is going away, or has lost its
/// schema" — worth answering `UNAVAILABLE` and retrying — rather than a fault in the
/// statement.
fn is_unavailable(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    match e {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(x)) | DbErr::Query(RuntimeErr::SqlxError(x)) => {
            match x.as_ref() {
                Sqlx::Io(_)
                | Sqlx::Tls(_)
                | Sqlx::PoolTimedOut
                | Sqlx::PoolClosed
                | Sqlx::WorkerCrashed => true,
                // PostgreSQL classes 08 (connection exception), 57 (operator intervention, e.g.
                // shutdown or a terminated backend), 53 (insufficient resources), 3D000
                // (database does not exist, as while it is being recreated), 42P01 (no such
                // table: a database re-created empty) and 25006 (a write reached a host that
                // takes none now: a primary being demoted, or a promoted standby that
                // pg_auto_failover keeps read-only until its old primary is fenced). SQLite:
                // no such table.
                Sqlx::Database(d) => {
                    d.code().is_some_and(|c| {
                        c.starts_with("08")
                            || c.starts_with("57")
                            || c.starts_with("53")
                            || c == "3D000"
                            || c == "42P01"
                            || c == "25006"
                    }) || d.message().starts_with("no such table")
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// A process-wide signal that some query found the database away, so that health checks
/// look again at once instead of at their next tick.
pub(crate) mod trouble {
    use std::sync::LazyLock;
    use tokio::sync::Notify;

    static SEEN: LazyLock<Notify> = LazyLock::new(Notify::new);

    pub(super) fn seen() {
        SEEN.notify_waiters();
    }

    /// Resolves at the next query that finds the database away.
    pub(crate) async fn next() {
        SEEN.notified().await;
    }
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a write changed: the rows it appended to the change log, for the writer to drop
/// from its own cache at once. `None`: the write matched nothing and wrote nothing.
pub(crate) type Written = Option<Vec<Changed>>;

/// Connection settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct DbOptions {
    pub(crate) max_connections: u32,
    pub(crate) connect_timeout: Duration,
    /// SQLite: create the database file when there is none (otherwise an error).
    pub(crate) create: bool,
    /// PostgreSQL: more hosts jeton may read from (`--database-read-url`), never writes to.
    pub(crate) read_url: Option<String>,
}

/// The database behind jeton: one host (SQLite, or one PostgreSQL server), or the hosts of
/// a replicated PostgreSQL, of which the store finds the writable one (see `cluster`).
#[derive(Debug, Clone)]
pub(crate) struct Store {
    cluster: std::sync::Arc<cluster::Cluster>,
    engine: Engine,
    /// Operations using (or waiting for) a connection now.
    in_flight: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

/// The connection pool, counted as in use while this lives (see [`Store::pool`]).
struct Conn<'a> {
    db: &'a DatabaseConnection,
    in_flight: &'a std::sync::atomic::AtomicU32,
}

impl std::ops::Deref for Conn<'_> {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        self.db
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        self.in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Which kind of database, for what differs between them.
#[derive(Debug, Clone, Copy)]
enum Engine {
    Sqlite,
    Postgres,
}

/// Key of the PostgreSQL advisory lock that migrations take: any number no other program on
/// the database uses ("jeton" in ASCII, then 1).
const MIGRATION_LOCK: i64 = 0x6a65_746f_6e00_0001;

/// Whether SQLite said the database is locked by another connection (`SQLITE_BUSY`).
fn is_busy(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(x))
        | DbErr::Query(RuntimeErr::SqlxError(x))
        | DbErr::Conn(RuntimeErr::SqlxError(x)) => sqlite_busy(x),
        _ => false,
    }
}

/// Whether SQLite answered SQLITE_BUSY (another connection holds the lock it needs).
fn sqlite_busy(e: &sea_orm::sqlx::Error) -> bool {
    // Extended codes (SQLITE_BUSY_RECOVERY, …) keep SQLITE_BUSY in their low byte.
    matches!(e, sea_orm::sqlx::Error::Database(d)
        if d.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 5))
}

/// How long a read of the change log on a standby waits for it to apply what it received.
const REPLAY_WAIT: Duration = Duration::from_millis(200);

/// How long a read waits for the read host (`--database-read-url`) to apply what the primary
/// had written when the read began, before it goes to the primary instead.
const READER_WAIT: Duration = Duration::from_millis(50);

/// How long reads leave the read host alone after it was found behind or away.
const READER_REST: Duration = Duration::from_secs(1);

/// Where a read meant for the read host went, for the metric
/// `jeton_database_reads_total{host}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadWent {
    /// To the read host, caught up.
    ReadHost,
    /// To the primary: the read host had not caught up in time.
    Behind,
    /// To the primary: the read host did not answer.
    Away,
}

impl ReadWent {
    /// The metric's label values, in the variants' order.
    pub(crate) const LABELS: [&'static str; 3] = [
        "read_host",
        "primary_read_host_behind",
        "primary_read_host_away",
    ];
}

/// Whether `reader`, a standby, applies within `within` everything `primary` had written when
/// this was called: its WAL flush position. A commit is visible on the primary only once it
/// is flushed (with `synchronous_commit` at `on` or above, as jeton's guarantees need), so
/// every visible commit ends at or before it; and unlike the insert position, which points
/// past the page header when the last record ends on a page boundary or the WAL switched
/// segments, a standby that has applied everything reaches it on an idle primary.
async fn caught_up_with(
    primary: &DatabaseConnection,
    reader: &DatabaseConnection,
    within: Duration,
) -> std::result::Result<bool, DbErr> {
    let position: Option<String> = primary
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_current_wal_flush_lsn()::text AS lsn",
        ))
        .await?
        .and_then(|r| r.try_get("", "lsn").ok());
    match position {
        Some(position) => replayed(reader, &position, within).await,
        None => Ok(false),
    }
}

/// Whether the standby `db` has applied the write-ahead log up to `position`, waiting at most
/// `within` for it to.
async fn replayed(
    db: &DatabaseConnection,
    position: &str,
    within: Duration,
) -> std::result::Result<bool, DbErr> {
    let started = std::time::Instant::now();
    loop {
        let applied: bool = db
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT COALESCE(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) AS done",
                [position.into()],
            ))
            .await?
            .and_then(|r| r.try_get("", "done").ok())
            .unwrap_or(false);
        if applied || started.elapsed() > within {
            return Ok(applied);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// How long a read that found its host away waits for the hosts' roles to change (a
/// standby found complete, or promoted) before it fails: the probes run every 200 ms, and
/// at once when a query finds a host away.
const FAILOVER_WAIT: Duration = Duration::from_secs(2);

/// Opens one connection to the server `opts` names and closes it, so that a server that
/// cannot be reached is reported with its cause (a pool would only say it timed out).
async fn check_first_connection(
    opts: &sea_orm::sqlx::postgres::PgConnectOptions,
    timeout: Duration,
) -> Result<()> {
    use sea_orm::sqlx::ConnectOptions as _;
    let target = format!(
        "PostgreSQL database {:?} at {}:{} as user {:?}",
        opts.get_database().unwrap_or(opts.get_username()),
        opts.get_host(),
        opts.get_port(),
        opts.get_username()
    );
    match tokio::time::timeout(timeout, opts.connect()).await {
        Ok(Ok(conn)) => {
            let _ = sea_orm::sqlx::Connection::close(conn).await;
            Ok(())
        }
        Ok(Err(source)) => Err(StoreError::Connect { target, source }),
        Err(_) => Err(StoreError::Connect {
            target,
            source: sea_orm::sqlx::Error::PoolTimedOut,
        }),
    }
}

/// The name of the newest migration: the schema jeton expects.
fn current_schema() -> String {
    Migrator::migrations()
        .last()
        .map(|m| m.name().to_owned())
        .unwrap_or_default()
}

impl Store {
    fn new(cluster: cluster::Cluster, engine: Engine) -> Self {
        Self {
            cluster: std::sync::Arc::new(cluster),
            engine,
            in_flight: std::sync::Arc::default(),
        }
    }

    fn counted<'a>(&'a self, db: &'a DatabaseConnection) -> Conn<'a> {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Conn {
            db,
            in_flight: &self.in_flight,
        }
    }

    /// The primary's pool, for one operation (a write, or a read that must see what this
    /// replica just wrote): hold it (a temporary in the statement is enough) while the
    /// operation runs.
    fn conn(&self) -> Result<Conn<'_>> {
        Ok(self.counted(&self.cluster.primary()?.db))
    }

    /// The pool of a host that holds every acknowledged change: the primary, or while there
    /// is none a synchronous standby.
    fn complete(&self) -> Result<Conn<'_>> {
        Ok(self.counted(&self.cluster.complete()?.db))
    }

    /// The pool for one read that must see every change acknowledged before it began (a
    /// token's or a principal's row at its first validation, `List`, the directory): the
    /// read host (`--database-read-url`) once it has applied everything the primary had
    /// written when this was called — so a token that `Generate` returned on any replica
    /// is found there — else the complete host. A read host that has not caught up within
    /// [`READER_WAIT`], or does not answer, is left alone for [`READER_REST`]. The primary
    /// still answers one query per read, for its position in the write-ahead log: no table
    /// is read there.
    async fn read(&self) -> Result<Conn<'_>> {
        if let Some((primary, reader)) = self.cluster.primary_and_reader() {
            let caught_up = tokio::time::timeout(
                READER_WAIT + Duration::from_millis(200),
                caught_up_with(&primary.db, &reader.db, READER_WAIT),
            )
            .await;
            let went = if matches!(caught_up, Ok(Ok(true))) {
                ReadWent::ReadHost
            } else {
                self.cluster.rest_reader(READER_REST);
                match caught_up {
                    Ok(Ok(_)) => ReadWent::Behind,
                    _ => ReadWent::Away,
                }
            };
            if let Some(m) = crate::metrics::get() {
                m.read_host[went as usize].increment(1);
            }
            if went == ReadWent::ReadHost {
                return Ok(self.counted(&reader.db));
            }
        }
        self.complete()
    }

    /// Which host does what now.
    pub(crate) fn roles(&self) -> Roles {
        self.cluster.roles()
    }

    /// Whether some database host answers: with one host, whether `error` (a failed read)
    /// left it answering; with several, whether the last probe reached any.
    pub(crate) fn reachable_after(&self, error: &StoreError) -> bool {
        if self.cluster.hosts.len() > 1 {
            self.cluster.roles().reachable
        } else {
            !error.is_unavailable()
        }
    }

    /// Waits (at most [`REPLAY_WAIT`]) until the host reads go to has applied all the
    /// changes it had received when this was called: `true` at once on a primary; on a
    /// synchronous standby, whose commits are acknowledged once it has *flushed* them (with
    /// `synchronous_commit = on`), `true` once it has also applied them, so that a read made
    /// after this sees every change acknowledged before it began. `false` if it had not in
    /// time.
    pub(crate) async fn settle_reads(&self) -> Result<bool> {
        let roles = self.cluster.roles();
        if roles.complete.is_none() || roles.complete == roles.primary {
            return Ok(true);
        }
        let conn = self.complete()?;
        let received: Option<String> = conn
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT pg_last_wal_receive_lsn()::text AS lsn",
            ))
            .await?
            .and_then(|r| r.try_get("", "lsn").ok());
        let Some(received) = received else {
            return Ok(false);
        };
        Ok(replayed(&conn, &received, REPLAY_WAIT).await?)
    }

    /// Runs `read` on the host reads go to ([`Store::read`]), and again on the next one when
    /// that host goes away under it (see [`ThroughFailover`]): a read waiting on a dead
    /// primary is given up as soon as the probes move reads elsewhere, instead of waiting for
    /// its pool's connect timeout. For the reads of a first validation.
    async fn read_through_failover<T>(
        &self,
        read: impl for<'c> Fn(
            &'c DatabaseConnection,
        )
            -> futures_util::future::BoxFuture<'c, std::result::Result<T, DbErr>>,
    ) -> Result<T> {
        self.read_watching_hosts(read, true).await
    }

    /// Runs `read` on the complete host — the primary, or during a failover the synchronous
    /// standby; never a read host — and fails at once (`FailingOver`) if the probes move the
    /// complete host before it ends: for the change-log follower, which must take its
    /// position again on the new host (and wait for it to apply what it received) rather
    /// than read on there as if nothing happened, and for the audit trail's watchers. Not a
    /// read host: an asynchronous standby may already show a commit that the synchronous one
    /// lacks and that a failover loses — and whose change number, or audit sequence, the
    /// promoted standby then hands out again to another change, which a reader that took
    /// the lost one for seen would skip.
    async fn read_on_complete_host<T>(
        &self,
        read: impl for<'c> Fn(
            &'c DatabaseConnection,
        )
            -> futures_util::future::BoxFuture<'c, std::result::Result<T, DbErr>>,
    ) -> Result<T> {
        self.read_watching_hosts(read, false).await
    }

    async fn read_watching_hosts<T>(
        &self,
        read: impl for<'c> Fn(
            &'c DatabaseConnection,
        )
            -> futures_util::future::BoxFuture<'c, std::result::Result<T, DbErr>>,
        try_elsewhere: bool,
    ) -> Result<T> {
        let mut failover = self.through_failover();
        // A read that may go elsewhere also leaves a read host found away.
        failover.reader_too = try_elsewhere;
        loop {
            let conn = if try_elsewhere {
                self.read().await?
            } else {
                self.complete()?
            };
            let Some(result) = failover.race(read(&conn)).await else {
                if try_elsewhere {
                    continue;
                }
                return Err(self.cluster.failing_over());
            };
            if !try_elsewhere {
                return Ok(result?);
            }
            match result {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let e = StoreError::from(e);
                    if !failover.again(&e).await {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// For a read that should be tried once more when its host goes away: see
    /// [`ThroughFailover`].
    fn through_failover(&self) -> ThroughFailover {
        let mut roles = self.cluster.subscribe();
        roles.borrow_and_update();
        ThroughFailover {
            roles,
            several: self.cluster.hosts.len() > 1,
            tried: false,
            reader_too: false,
        }
    }

    /// Follows the roles of the hosts as they change.
    pub(crate) fn watch_roles(&self) -> tokio::sync::watch::Receiver<Roles> {
        self.cluster.subscribe()
    }

    /// With several PostgreSQL hosts, starts asking every host what it is (see
    /// `cluster`), until the returned task is stopped; `None` with one database (SQLite's
    /// file, or one server), which is the primary whatever happens to it.
    pub(crate) fn start_probing(&self) -> Option<crate::background::Task> {
        (self.cluster.hosts.len() > 1).then(|| self.cluster.clone().start_probing())
    }

    /// The database's one pool, for what runs where the schema is made (SQLite's file, or
    /// the PostgreSQL primary).
    fn primary_db(&self) -> Result<&DatabaseConnection> {
        Ok(&self.cluster.primary()?.db)
    }

    /// Connects to `url` (`sqlite://…` or `postgres://…`). The pool is made here from the
    /// parsed options, so no connect span ever prints the URL (and its password).
    pub(crate) async fn connect(url: &str, options: &DbOptions) -> Result<Self> {
        use sea_orm::sqlx::ConnectOptions as _;
        use sea_orm::sqlx::{pool::PoolOptions, sqlite};
        let connect_error = |target: String| move |source| StoreError::Connect { target, source };
        if url.starts_with("sqlite:") {
            let opts: sqlite::SqliteConnectOptions = url
                .parse()
                .map_err(connect_error("the SQLite database".into()))?;
            let path = opts.get_filename().to_owned();
            let target = format!("SQLite database {}", path.display());
            // SQLITE ONLY: created on first start; write-ahead logging lets readers proceed
            // while one writer commits.
            let opts = opts
                .create_if_missing(options.create)
                .journal_mode(sqlite::SqliteJournalMode::Wal)
                .disable_statement_logging();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && !dir.is_dir()
            {
                let missing = format!("directory {} does not exist", dir.display());
                return Err(StoreError::Connect {
                    target,
                    source: sea_orm::sqlx::Error::Configuration(missing.into()),
                });
            }
            // SQLITE ONLY: another process opening the same new file — switching it to
            // write-ahead logging, or migrating it — holds its lock for a moment; the first
            // connection waits for it within the connect timeout.
            let started = std::time::Instant::now();
            let pool = loop {
                let pool = PoolOptions::<sea_orm::sqlx::Sqlite>::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(options.connect_timeout)
                    .connect_with(opts.clone())
                    .await;
                match pool {
                    Ok(pool) => break pool,
                    Err(e) if sqlite_busy(&e) && started.elapsed() < options.connect_timeout => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => return Err(connect_error(target)(e)),
                }
            };
            let host = cluster::Host {
                label: path.display().to_string(),
                db: DatabaseConnection::from(pool),
                writable: true,
            };
            Ok(Self::new(cluster::Cluster::single(host), Engine::Sqlite))
        } else {
            Self::connect_postgres(url, options).await
        }
    }

    /// PostgreSQL: one pool per host of `url` (and of `options.read_url`). With one host,
    /// it is the database, as a single server always is; with several, they are probed
    /// until one is found writable, within the connect timeout.
    async fn connect_postgres(url: &str, options: &DbOptions) -> Result<Self> {
        use sea_orm::sqlx::ConnectOptions as _;
        use sea_orm::sqlx::{pool::PoolOptions, postgres};
        let config = |what: &str, why: String| StoreError::Connect {
            target: what.to_owned(),
            source: sea_orm::sqlx::Error::Configuration(why.into()),
        };
        let listed = hosts::split(url).map_err(|e| config("the PostgreSQL database", e))?;
        let read = match &options.read_url {
            Some(r) => hosts::split(r).map_err(|e| config("--database-read-url", e))?,
            None => Vec::new(),
        };
        let writable = listed.len();
        let mut hosts = Vec::new();
        for (i, h) in listed.into_iter().chain(read).enumerate() {
            let opts: postgres::PgConnectOptions =
                h.url().parse().map_err(|source| StoreError::Connect {
                    target: format!("PostgreSQL host {}", h.label),
                    source,
                })?;
            let opts = opts.disable_statement_logging();
            if i == 0 && writable == 1 && options.read_url.is_none() {
                // One server: one connection first, to report what went wrong (the pool
                // would only say it timed out).
                check_first_connection(&opts, options.connect_timeout).await?;
            }
            let pool = PoolOptions::<sea_orm::sqlx::Postgres>::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.connect_timeout)
                .connect_lazy_with(opts);
            hosts.push(cluster::Host {
                label: h.label,
                db: DatabaseConnection::from(pool),
                writable: i < writable,
            });
        }
        if hosts.len() == 1 {
            let host = hosts
                .pop()
                .ok_or_else(|| config("the PostgreSQL database", "no host".into()))?;
            return Ok(Self::new(cluster::Cluster::single(host), Engine::Postgres));
        }
        let labels: Vec<String> = hosts.iter().map(|h| h.label.clone()).collect();
        let cluster = cluster::Cluster::new(hosts, Roles::default());
        let started = std::time::Instant::now();
        while cluster.probe().await.primary.is_none() {
            if started.elapsed() > options.connect_timeout {
                return Err(config(
                    &format!("PostgreSQL hosts {}", labels.join(", ")),
                    format!(
                        "none of them answered as a writable primary (not in recovery) within {}",
                        humantime::format_duration(options.connect_timeout)
                    ),
                ));
            }
            tokio::time::sleep(cluster::PROBE_EVERY).await;
        }
        Ok(Self::new(cluster, Engine::Postgres))
    }

    /// Brings the schema up to date. Processes that start together on one database (replicas,
    /// `serve` beside `bootstrap`) take turns: every migration runs in one transaction that
    /// first takes a lock the other migrating processes wait for, so the next one finds the
    /// schema made and has nothing to do, instead of failing on tables the first one is
    /// creating. A failure names the migration and keeps what the database said.
    pub(crate) async fn migrate(&self) -> Result<()> {
        let txn = self.begin_migrating().await?;
        let pending: Vec<String> = Migrator::get_pending_migrations(&txn)
            .await?
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        for name in &pending {
            Migrator::up(&txn, Some(1))
                .await
                .map_err(|source| StoreError::Migration {
                    name: name.clone(),
                    source,
                })?;
        }
        txn.commit().await?;
        if !pending.is_empty() {
            tracing::info!(applied = pending.len(), schema = %current_schema(), "database schema brought up to date");
        }
        Ok(())
    }

    /// The transaction migrations run in, holding the lock that makes migrating processes
    /// take turns. The lock belongs to this transaction's one connection and ends with it
    /// (commit, rollback, or a connection that dies), so a crashed process never leaves it
    /// held.
    async fn begin_migrating(&self) -> Result<DatabaseTransaction> {
        use sea_orm::{SqliteTransactionMode, Statement, TransactionOptions};
        let mut waited = false;
        let mut wait = |why: &str| {
            if !std::mem::replace(&mut waited, true) {
                tracing::info!("{why}; waiting for it to finish");
            }
        };
        match self.engine {
            // SQLITE ONLY: `BEGIN IMMEDIATE` takes the database's write lock at once, so a
            // second process waits at its own BEGIN (for the busy timeout, then again)
            // rather than reading a schema that is being made.
            Engine::Sqlite => loop {
                let immediate = TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..TransactionOptions::default()
                };
                match self.primary_db()?.begin_with_options(immediate).await {
                    Ok(txn) => return Ok(txn),
                    Err(e) if is_busy(&e) => wait("another process is writing the database"),
                    Err(e) => return Err(e.into()),
                }
            },
            // POSTGRESQL ONLY: a transaction-level advisory lock on a key of jeton's own.
            Engine::Postgres => {
                let txn = self.primary_db()?.begin().await?;
                let lock = |function: &str| {
                    Statement::from_sql_and_values(
                        sea_orm::DbBackend::Postgres,
                        format!("SELECT {function}($1) AS locked"),
                        [MIGRATION_LOCK.into()],
                    )
                };
                let got = txn
                    .query_one_raw(lock("pg_try_advisory_xact_lock"))
                    .await?
                    .and_then(|row| row.try_get::<bool>("", "locked").ok());
                if got != Some(true) {
                    wait("another process is migrating the database");
                    txn.execute_raw(lock("pg_advisory_xact_lock")).await?;
                }
                Ok(txn)
            }
        }
    }

    /// A cheap check that the database answers and holds jeton's current schema.
    pub(crate) async fn check(&self) -> Result<()> {
        use sea_orm::{FromQueryResult, Statement};
        #[derive(FromQueryResult)]
        struct Row {
            version: String,
        }
        // The host reads go to: a replica that can answer validations is ready, whether or
        // not a primary takes writes now (`roles` says that).
        let conn = self.complete()?;
        let row = Row::find_by_statement(Statement::from_string(
            conn.get_database_backend(),
            "SELECT version FROM seaql_migrations ORDER BY version DESC LIMIT 1",
        ))
        .one(&*conn)
        .await?;
        match row {
            Some(r) if r.version == current_schema() => Ok(()),
            other => Err(StoreError::Unavailable(DbErr::Custom(format!(
                "the database holds schema {:?}, not jeton's {:?}: run `jeton migrate`",
                other.map(|r| r.version),
                current_schema()
            )))),
        }
    }

    /// The pool now: connections in use, connections idle, and operations waiting for a
    /// connection (those in progress beyond the connections in use).
    /// The pools of every host are counted together.
    pub(crate) fn pool(&self) -> (u32, u32, u32) {
        let (size, idle) = self
            .cluster
            .hosts
            .iter()
            .map(|h| match &self.engine {
                Engine::Sqlite => {
                    let p = h.db.get_sqlite_connection_pool();
                    (p.size(), p.num_idle())
                }
                Engine::Postgres => {
                    let p = h.db.get_postgres_connection_pool();
                    (p.size(), p.num_idle())
                }
            })
            .fold((0u32, 0usize), |(s, i), (ps, pi)| (s + ps, i + pi));
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        let in_use = size - idle;
        let operations = self.in_flight.load(std::sync::atomic::Ordering::Relaxed);
        (in_use, idle, operations.saturating_sub(in_use))
    }

    /// Ends the store's life cleanly. SQLITE ONLY: folds the write-ahead log back into the
    /// database file, so that the file alone is a complete copy.
    pub(crate) async fn close(&self) -> Result<()> {
        if matches!(self.engine, Engine::Sqlite) {
            self.primary_db()?
                .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await?;
        }
        Ok(())
    }

    /// A consistent copy of the whole database, taken while it serves. SQLITE ONLY
    /// (`VACUUM INTO`); `None` for PostgreSQL, whose own tool (`pg_dump`) does it better.
    pub(crate) async fn backup(&self, to: &std::path::Path) -> Result<Option<()>> {
        match &self.engine {
            Engine::Sqlite => {
                let target = to.to_string_lossy().replace('\'', "\'\'");
                self.primary_db()?
                    .execute_unprepared(&format!("VACUUM INTO '{target}'"))
                    .await?;
                Ok(Some(()))
            }
            Engine::Postgres => Ok(None),
        }
    }

    /// Whether no tenant exists yet (a database that needs `jeton bootstrap`).
    pub(crate) async fn is_empty(&self) -> Result<bool> {
        use sea_orm::PaginatorTrait;
        Ok(entity::tenant::Entity::find().count(&*self.conn()?).await? == 0)
    }

    /// Starts a write.
    async fn write(&self) -> Result<Write<'_>> {
        let conn = self.conn()?;
        Ok(Write {
            txn: conn.begin().await?,
            changes: Vec::new(),
            _conn: conn,
        })
    }
}

/// A read under way when its host goes away (the primary dies) is tried once more on the
/// host that takes its place, once the probes have found it (within [`FAILOVER_WAIT`]),
/// instead of failing: `Validate` goes on through a failover. A read still waiting on a
/// host when the probes move reads elsewhere is given up and tried on the new host at once
/// (a pool keeps retrying a dead server until its acquire timeout).
struct ThroughFailover {
    roles: tokio::sync::watch::Receiver<Roles>,
    several: bool,
    tried: bool,
    /// Also give a read up when the read host changes (not only the complete host).
    reader_too: bool,
}

impl ThroughFailover {
    /// Runs `read`, unless the host reads go to changes first (then `None`).
    async fn race<T>(
        &mut self,
        read: impl std::future::Future<Output = std::result::Result<T, DbErr>>,
    ) -> Option<std::result::Result<T, DbErr>> {
        if !self.several || self.tried {
            return Some(read.await);
        }
        let hosts = |r: &Roles, reader: bool| (r.complete, reader.then_some(r.reader));
        let from = hosts(&self.roles.borrow_and_update(), self.reader_too);
        tokio::pin!(read);
        loop {
            tokio::select! {
                r = &mut read => return Some(r),
                changed = self.roles.changed() => {
                    if changed.is_err() {
                        return Some(read.await);
                    }
                    if hosts(&self.roles.borrow_and_update(), self.reader_too) != from {
                        self.tried = true;
                        return None;
                    }
                }
            }
        }
    }

    /// Whether to try again after `error`: the first time a read finds its host away, once
    /// the hosts' roles have changed.
    async fn again(&mut self, error: &StoreError) -> bool {
        if self.tried || !self.several || !error.is_unavailable() {
            return false;
        }
        self.tried = true;
        matches!(
            tokio::time::timeout(FAILOVER_WAIT, self.roles.changed()).await,
            Ok(Ok(()))
        )
    }
}

/// One write in progress: its transaction and the changes it has made so far.
struct Write<'a> {
    txn: DatabaseTransaction,
    changes: Vec<Changed>,
    _conn: Conn<'a>,
}

impl Write<'_> {
    /// Notes a change that every replica's cache must see.
    fn changed(&mut self, what: Changed) {
        self.changes.push(what);
    }

    /// Ends the write: appends its change-log rows and `audit` events, then commits — all in
    /// the write's own transaction, so a change is never visible without its invalidation
    /// and its audit record. Returns the changes for the writer's own cache.
    async fn commit(self, at: DateTime<Utc>, audit: &[AuditEvent]) -> Result<Written> {
        changes::append(&self.txn, &self.changes, at).await?;
        audit::append(&self.txn, audit).await?;
        self.txn.commit().await?;
        Ok(Some(self.changes))
    }
}

/// Runs `select` for one page of at most `limit` rows: fetches one more row than asked, to
/// tell whether another page follows.
async fn fetch_page<E, T>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    limit: u64,
    row: impl Fn(E::Model) -> Result<T>,
) -> Result<Page<T>>
where
    E: EntityTrait,
    E::Model: FromQueryResult + Send + Sync,
{
    let rows = select.limit(limit + 1).all(db).await?;
    let more = rows.len() as u64 > limit;
    let items = rows
        .into_iter()
        .take(limit as usize)
        .map(row)
        .collect::<Result<_>>()?;
    Ok(Page { items, more })
}

#[cfg(test)]
impl Store {
    /// A new, migrated SQLite database in `dir`, for unit tests.
    pub(crate) async fn sqlite_in(dir: &std::path::Path) -> Store {
        let url = format!("sqlite://{}", dir.join("j.db").display());
        let options = DbOptions {
            max_connections: 2,
            connect_timeout: std::time::Duration::from_secs(5),
            create: true,
            read_url: None,
        };
        let store = Store::connect(&url, &options).await.unwrap();
        store.migrate().await.unwrap();
        store
    }
}
