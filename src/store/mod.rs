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
mod codec;
mod entity;
mod migration;
mod principals;
mod tenants;
mod tokens;

pub(crate) use changes::Changed;
pub(crate) use tokens::TokenQuery;

use crate::domain::{AuditEvent, Page};
use chrono::{DateTime, Utc};
use migration::Migrator;
use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    FromQueryResult, QuerySelect, Select, SqlErr, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use std::time::Duration;

/// What went wrong in the store, sorted by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The database cannot be reached now; trying again later may work.
    #[error("database unavailable")]
    Unavailable(#[source] DbErr),
    /// A row with the same key exists.
    #[error("already exists")]
    Conflict,
    /// A stored value does not parse back into a domain type.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("database error")]
    Other(#[source] DbErr),
}

impl From<DbErr> for StoreError {
    fn from(e: DbErr) -> Self {
        if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            return StoreError::Conflict;
        }
        if is_unavailable(&e) {
            StoreError::Unavailable(e)
        } else {
            StoreError::Other(e)
        }
    }
}

/// Whether an error means "the database cannot be reached or is going away" — worth
/// answering `UNAVAILABLE` and retrying — rather than a fault in the statement.
fn is_unavailable(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    match e {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(x)) | DbErr::Query(RuntimeErr::SqlxError(x)) => match x
            .as_ref()
        {
            Sqlx::Io(_)
            | Sqlx::Tls(_)
            | Sqlx::PoolTimedOut
            | Sqlx::PoolClosed
            | Sqlx::WorkerCrashed => true,
            // PostgreSQL classes 08 (connection exception), 57 (operator intervention, e.g.
            // shutdown or a terminated backend), 53 (insufficient resources) and 3D000
            // (database does not exist, as while it is being recreated).
            Sqlx::Database(d) => d.code().is_some_and(|c| {
                c.starts_with("08") || c.starts_with("57") || c.starts_with("53") || c == "3D000"
            }),
            _ => false,
        },
        _ => false,
    }
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a write changed: the rows it appended to the change log, for the writer to drop
/// from its own cache at once. `None`: the write matched nothing and wrote nothing.
pub(crate) type Written = Option<Vec<Changed>>;

/// Connection settings.
#[derive(Debug, Clone)]
pub(crate) struct DbOptions {
    pub(crate) max_connections: u32,
    pub(crate) connect_timeout: Duration,
}

/// The database behind jeton.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    db: DatabaseConnection,
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`).
    pub(crate) async fn connect(url: &str, options: &DbOptions) -> Result<Self> {
        let is_sqlite = url.starts_with("sqlite:");
        let mut url = url.to_owned();
        // SQLITE ONLY: create the file on first start.
        if is_sqlite && !url.contains("mode=") {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("mode=rwc");
        }
        let mut opts = ConnectOptions::new(url);
        opts.max_connections(options.max_connections)
            .connect_timeout(options.connect_timeout)
            .acquire_timeout(options.connect_timeout)
            .sqlx_logging(false);
        let db = sea_orm::Database::connect(opts).await?;
        if is_sqlite {
            // SQLITE ONLY: write-ahead logging lets readers proceed while one writer commits;
            // the setting is stored in the file, so one statement is enough.
            db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
        }
        Ok(Self { db })
    }

    /// Brings the schema up to date.
    pub(crate) async fn migrate(&self) -> Result<()> {
        Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// Starts a write.
    async fn write(&self) -> Result<Write> {
        Ok(Write {
            txn: self.db.begin().await?,
            changes: Vec::new(),
        })
    }
}

/// One write in progress: its transaction and the changes it has made so far.
struct Write {
    txn: DatabaseTransaction,
    changes: Vec<Changed>,
}

impl Write {
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
