//! Persistence: the only module that names `sea_orm`. Queries are named for their intent and
//! take and return domain types; rows never leave this module.
//!
//! Everything here is engine-neutral SQL built by SeaORM, except in [`Store::connect`], the
//! one marked place that speaks to SQLite specifically.

mod entity;
mod migration;

use crate::domain::{
    Assignment, AuditAction, AuditEvent, Namespace, Principal, PrincipalId, Role, ScopeSet,
    Subject, TIME_ACTOR, Tenant, TenantId, Token, TokenId, TokenName, TokenStatus,
};
use chrono::{DateTime, Utc};
use entity::{audit_event, change, principal, tenant, token};
use migration::Migrator;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectOptions, ConnectionTrait,
    DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use std::time::Duration;

/// What went wrong in the store, sorted by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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

/// A change that can make a cached validation answer wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// A token was created, revoked or otherwise changed.
    Token(TokenId),
    /// A principal was created, changed or removed.
    Principal(TenantId, PrincipalId),
}

/// One row of the change log.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub seq: i64,
    /// `None` for a row that does not parse (skipped by the follower).
    pub what: Option<Changed>,
}

/// Ends a write: appends the change-log rows (`changes`, so that every replica's cache drops
/// what they name) and the audit events of the write, then commits — all in the write's own
/// transaction, so a change is never visible without its invalidation and its audit record.
async fn commit_with(
    txn: DatabaseTransaction,
    changes: &[Changed],
    at: DateTime<Utc>,
    audit: &[AuditEvent],
) -> Result<()> {
    for what in changes {
        let (kind, tenant, key) = match what {
            Changed::Token(id) => ("token", "", id.as_str()),
            Changed::Principal(t, p) => ("principal", t.as_str(), p.as_str()),
        };
        change::ActiveModel {
            seq: sea_orm::ActiveValue::NotSet,
            kind: Set(kind.to_owned()),
            tenant_id: Set(tenant.to_owned()),
            key: Set(key.to_owned()),
            at: Set(at.timestamp_micros()),
        }
        .insert(&txn)
        .await?;
    }
    for e in audit {
        audit_event::ActiveModel {
            seq: sea_orm::ActiveValue::NotSet,
            tenant_id: Set(e.tenant.as_str().to_owned()),
            at: Set(e.at.timestamp_micros()),
            actor: Set(e.actor.clone()),
            action: Set(e.action.as_str().to_owned()),
            target: Set(e.target.clone()),
            outcome: Set(e.outcome.clone()),
            detail: Set(e.detail.clone()),
        }
        .insert(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Which tokens `List` wants: one tenant and namespace, live tokens only, newest first.
#[derive(Debug, Clone)]
pub struct TokenQuery<'a> {
    pub tenant: &'a TenantId,
    pub namespace: Namespace,
    pub subject: Option<&'a str>,
    /// A status and the activity-window cutoff (now − window) it is evaluated against.
    pub status: Option<(TokenStatus, DateTime<Utc>)>,
    /// Only tokens expiring in `(from, until]`.
    pub expiring: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Keyset position: only tokens strictly older than `(created_at, id)`.
    pub after: Option<(DateTime<Utc>, &'a str)>,
    pub limit: u64,
}

/// The database behind jeton.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`).
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Self> {
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
    pub async fn migrate(&self) -> Result<()> {
        Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// Creates a tenant, its first admin and that admin's first token, all or nothing.
    pub async fn create_tenant(
        &self,
        tenant: &Tenant,
        admin: &Principal,
        first_token: &Token,
        secret_hash: &str,
        now: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<()> {
        let txn = self.db.begin().await?;
        tenant::ActiveModel {
            id: Set(tenant.id.as_str().to_owned()),
            display_name: Set(tenant.display_name.clone()),
            api_url: Set(tenant.api_url.clone()),
            created_at: Set(now.timestamp_micros()),
            max_token_lifetime_secs: Set(tenant.max_token_lifetime.map(|d| d.num_seconds())),
        }
        .insert(&txn)
        .await?;
        principal_row(admin, now).insert(&txn).await?;
        token_row(first_token, secret_hash).insert(&txn).await?;
        commit_with(
            txn,
            &[
                Changed::Principal(admin.tenant.clone(), admin.id.clone()),
                Changed::Token(first_token.id.clone()),
            ],
            now,
            audit,
        )
        .await?;
        Ok(())
    }

    pub async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        let row = tenant::Entity::find_by_id(id.as_str())
            .one(&self.db)
            .await?;
        row.map(|r| {
            Ok(Tenant {
                id: parse(TenantId::parse(&r.id), "tenant id")?,
                display_name: r.display_name,
                api_url: r.api_url,
                max_token_lifetime: r.max_token_lifetime_secs.map(chrono::TimeDelta::seconds),
            })
        })
        .transpose()
    }

    /// Creates or replaces a principal.
    pub async fn put_principal(
        &self,
        p: &Principal,
        now: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<()> {
        let row = principal_row(p, now);
        let txn = self.db.begin().await?;
        principal::Entity::insert(row)
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([
                    principal::Column::TenantId,
                    principal::Column::Id,
                ])
                .update_columns([
                    principal::Column::DisplayName,
                    principal::Column::Role,
                    principal::Column::Assignment,
                    principal::Column::ActivationEnd,
                    principal::Column::ActivationJustification,
                    principal::Column::UpdatedAt,
                ])
                .to_owned(),
            )
            .exec(&txn)
            .await?;
        commit_with(
            txn,
            &[Changed::Principal(p.tenant.clone(), p.id.clone())],
            now,
            audit,
        )
        .await?;
        Ok(())
    }

    pub async fn principal(&self, tenant: &TenantId, id: &str) -> Result<Option<Principal>> {
        let row = principal::Entity::find_by_id((tenant.as_str().to_owned(), id.to_owned()))
            .one(&self.db)
            .await?;
        row.map(principal_from_row).transpose()
    }

    /// Principals of a tenant ordered by id, after `after` if given.
    pub async fn principals(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Principal>> {
        let mut q =
            principal::Entity::find().filter(principal::Column::TenantId.eq(tenant.as_str()));
        if let Some(after) = after {
            q = q.filter(principal::Column::Id.gt(after));
        }
        let rows = q
            .order_by_asc(principal::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        rows.into_iter().map(principal_from_row).collect()
    }

    /// Removes a principal; false if there was none.
    pub async fn delete_principal(
        &self,
        tenant: &TenantId,
        id: &PrincipalId,
        now: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<bool> {
        let txn = self.db.begin().await?;
        let res =
            principal::Entity::delete_by_id((tenant.as_str().to_owned(), id.as_str().to_owned()))
                .exec(&txn)
                .await?;
        if res.rows_affected == 0 {
            return Ok(false);
        }
        commit_with(
            txn,
            &[Changed::Principal(tenant.clone(), id.clone())],
            now,
            audit,
        )
        .await?;
        Ok(true)
    }

    /// Stores a new token. Its change row clears every replica's negative cache entry for its
    /// id.
    pub async fn insert_token(
        &self,
        t: &Token,
        secret_hash: &str,
        audit: &[AuditEvent],
    ) -> Result<()> {
        let txn = self.db.begin().await?;
        token_row(t, secret_hash).insert(&txn).await?;
        commit_with(txn, &[Changed::Token(t.id.clone())], t.created_at, audit).await?;
        Ok(())
    }

    /// Stores `new` and sets the expiry of the live token `old` of the same tenant to
    /// `old_expires_at`, all or nothing; false (and nothing written) if `old` is not live.
    pub async fn rotate_token(
        &self,
        new: &Token,
        secret_hash: &str,
        old: &TokenId,
        old_expires_at: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<bool> {
        use token::Column as C;
        let txn = self.db.begin().await?;
        let res = token::Entity::update_many()
            .col_expr(C::ExpiresAt, Expr::value(old_expires_at.timestamp_micros()))
            .filter(C::Id.eq(old.as_str()))
            .filter(C::TenantId.eq(new.tenant.as_str()))
            .filter(C::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Ok(false);
        }
        token_row(new, secret_hash).insert(&txn).await?;
        commit_with(
            txn,
            &[Changed::Token(old.clone()), Changed::Token(new.id.clone())],
            new.created_at,
            audit,
        )
        .await?;
        Ok(true)
    }

    /// Sets (or, with `None`, ends) the activation of an eligible principal; false if there is
    /// no such eligible principal.
    pub async fn set_activation(
        &self,
        tenant: &TenantId,
        id: &PrincipalId,
        end: Option<DateTime<Utc>>,
        justification: Option<&str>,
        now: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<bool> {
        use principal::Column as C;
        let txn = self.db.begin().await?;
        let res = principal::Entity::update_many()
            .col_expr(
                C::ActivationEnd,
                Expr::value(end.map(|t| t.timestamp_micros())),
            )
            .col_expr(
                C::ActivationJustification,
                Expr::value(justification.map(str::to_owned)),
            )
            .col_expr(C::UpdatedAt, Expr::value(now.timestamp_micros()))
            .filter(C::TenantId.eq(tenant.as_str()))
            .filter(C::Id.eq(id.as_str()))
            .filter(C::Assignment.eq("eligible"))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Ok(false);
        }
        commit_with(
            txn,
            &[Changed::Principal(tenant.clone(), id.clone())],
            now,
            audit,
        )
        .await?;
        Ok(true)
    }

    /// Records activations that have reached their end (at most `limit`): clears them and
    /// writes one `activation_expired` event each. Safe to run on every replica at once: the
    /// conditional update lets exactly one of them record a given expiry.
    pub async fn expire_activations(&self, now: DateTime<Utc>, limit: u64) -> Result<u64> {
        use principal::Column as C;
        let ended = principal::Entity::find()
            .filter(C::ActivationEnd.lte(now.timestamp_micros()))
            .limit(limit)
            .all(&self.db)
            .await?;
        let mut recorded = 0;
        for p in ended {
            let Some(end_micros) = p.activation_end else {
                continue;
            };
            let end = time(end_micros)?;
            let tenant = parse(TenantId::parse(&p.tenant_id), "tenant id")?;
            let id = parse(PrincipalId::parse(&p.id), "principal id")?;
            let txn = self.db.begin().await?;
            let res = principal::Entity::update_many()
                .col_expr(C::ActivationEnd, Expr::value(Option::<i64>::None))
                .col_expr(
                    C::ActivationJustification,
                    Expr::value(Option::<String>::None),
                )
                .filter(C::TenantId.eq(tenant.as_str()))
                .filter(C::Id.eq(id.as_str()))
                .filter(C::ActivationEnd.eq(end_micros))
                .exec(&txn)
                .await?;
            if res.rows_affected == 1 {
                let event = AuditEvent::new(
                    &tenant,
                    end,
                    TIME_ACTOR,
                    AuditAction::ActivationExpired,
                    id.as_str(),
                    "",
                );
                let changed = [Changed::Principal(tenant.clone(), id.clone())];
                commit_with(txn, &changed, now, &[event]).await?;
                recorded += 1;
            }
        }
        Ok(recorded)
    }

    /// Replaces a tenant's settings.
    pub async fn update_tenant(
        &self,
        t: &Tenant,
        now: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<bool> {
        use tenant::Column as C;
        let txn = self.db.begin().await?;
        let res = tenant::Entity::update_many()
            .col_expr(C::DisplayName, Expr::value(t.display_name.clone()))
            .col_expr(C::ApiUrl, Expr::value(t.api_url.clone()))
            .col_expr(
                C::MaxTokenLifetimeSecs,
                Expr::value(t.max_token_lifetime.map(|d| d.num_seconds())),
            )
            .filter(C::Id.eq(t.id.as_str()))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Ok(false);
        }
        commit_with(txn, &[], now, audit).await?;
        Ok(true)
    }

    /// A tenant's audit events, newest first, below `before` if given.
    pub async fn audit_events(
        &self,
        tenant: &TenantId,
        target: Option<&str>,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>> {
        use audit_event::Column as C;
        let mut q = audit_event::Entity::find().filter(C::TenantId.eq(tenant.as_str()));
        if let Some(t) = target {
            q = q.filter(C::Target.eq(t));
        }
        if let Some(b) = before {
            q = q.filter(C::Seq.lt(b));
        }
        let rows = q.order_by_desc(C::Seq).limit(limit).all(&self.db).await?;
        rows.into_iter()
            .map(|r| {
                Ok(AuditEvent {
                    seq: r.seq,
                    tenant: parse(TenantId::parse(&r.tenant_id), "tenant id")?,
                    at: time(r.at)?,
                    actor: r.actor,
                    action: AuditAction::parse(&r.action).ok_or_else(|| {
                        StoreError::Corrupt(format!("audit action {:?}", r.action))
                    })?,
                    target: r.target,
                    outcome: r.outcome,
                    detail: r.detail,
                })
            })
            .collect()
    }

    /// Stores many tokens at once (benchmark seeding), in transactions of `chunk` rows.
    pub async fn insert_tokens_bulk(&self, rows: &[(Token, String)], chunk: usize) -> Result<()> {
        for part in rows.chunks(chunk.max(1)) {
            let txn = self.db.begin().await?;
            token::Entity::insert_many(part.iter().map(|(t, h)| token_row(t, h)))
                .exec(&txn)
                .await?;
            txn.commit().await?;
        }
        Ok(())
    }

    /// A token and its secret hash, by id: the validation lookup.
    pub async fn token_with_hash(&self, id: &TokenId) -> Result<Option<(Token, String)>> {
        let row = token::Entity::find_by_id(id.as_str()).one(&self.db).await?;
        row.map(|r| {
            let hash = r.secret_hash.clone();
            Ok((token_from_row(r)?, hash))
        })
        .transpose()
    }

    /// A token by id, whatever its tenant or state.
    pub async fn token(&self, id: &TokenId) -> Result<Option<Token>> {
        Ok(self.token_with_hash(id).await?.map(|(t, _)| t))
    }

    /// One page of live tokens, newest first.
    pub async fn list_tokens(&self, q: &TokenQuery<'_>) -> Result<Vec<Token>> {
        use token::Column as C;
        let mut find = token::Entity::find()
            .filter(C::TenantId.eq(q.tenant.as_str()))
            .filter(C::Namespace.eq(namespace_str(q.namespace)))
            .filter(C::RevokedAt.is_null());
        if let Some(subject) = q.subject {
            find = find.filter(C::Subject.eq(subject));
        }
        if let Some((status, cutoff)) = q.status {
            let cutoff = cutoff.timestamp_micros();
            find = find.filter(match status {
                TokenStatus::Generated => C::LastUsedAt.is_null(),
                TokenStatus::Active => C::LastUsedAt.gte(cutoff),
                TokenStatus::Inactive => C::LastUsedAt.lt(cutoff),
            });
        }
        if let Some((from, until)) = q.expiring {
            find = find
                .filter(C::ExpiresAt.gt(from.timestamp_micros()))
                .filter(C::ExpiresAt.lte(until.timestamp_micros()));
        }
        if let Some((created, id)) = q.after {
            let created = created.timestamp_micros();
            find = find.filter(
                Condition::any().add(C::CreatedAt.lt(created)).add(
                    Condition::all()
                        .add(C::CreatedAt.eq(created))
                        .add(C::Id.lt(id)),
                ),
            );
        }
        let rows = find
            .order_by_desc(C::CreatedAt)
            .order_by_desc(C::Id)
            .limit(q.limit)
            .all(&self.db)
            .await?;
        rows.into_iter().map(token_from_row).collect()
    }

    /// Marks a live token of `tenant` revoked; false if there was no such live token.
    pub async fn revoke_token(
        &self,
        tenant: &TenantId,
        id: &TokenId,
        by: &PrincipalId,
        at: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<bool> {
        use token::Column as C;
        let txn = self.db.begin().await?;
        let res = token::Entity::update_many()
            .col_expr(C::RevokedAt, Expr::value(at.timestamp_micros()))
            .col_expr(C::RevokedBy, Expr::value(by.as_str()))
            .filter(C::Id.eq(id.as_str()))
            .filter(C::TenantId.eq(tenant.as_str()))
            .filter(C::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Ok(false);
        }
        commit_with(txn, &[Changed::Token(id.clone())], at, audit).await?;
        Ok(true)
    }

    /// Change-log rows numbered above `floor`, in order.
    pub async fn changes_after(&self, floor: i64, limit: u64) -> Result<Vec<ChangeRow>> {
        let rows = change::Entity::find()
            .filter(change::Column::Seq.gt(floor))
            .order_by_asc(change::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ChangeRow {
                seq: r.seq,
                what: match r.kind.as_str() {
                    "token" => TokenId::parse(&r.key).ok().map(Changed::Token),
                    "principal" => TenantId::parse(&r.tenant_id)
                        .ok()
                        .zip(PrincipalId::parse(&r.key).ok())
                        .map(|(t, p)| Changed::Principal(t, p)),
                    _ => None,
                },
            })
            .collect())
    }

    /// The highest change number so far (0 when there is none).
    pub async fn last_change(&self) -> Result<i64> {
        let row = change::Entity::find()
            .order_by_desc(change::Column::Seq)
            .one(&self.db)
            .await?;
        Ok(row.map_or(0, |r| r.seq))
    }

    /// Deletes change-log rows older than `before`; every replica has long applied them.
    pub async fn prune_changes(&self, before: DateTime<Utc>) -> Result<u64> {
        let res = change::Entity::delete_many()
            .filter(change::Column::At.lt(before.timestamp_micros()))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected)
    }

    /// Writes last-use times: one statement per distinct time and 500 tokens,
    /// `SET last_used_at = t WHERE id IN (…) AND (last_used_at IS NULL OR last_used_at < t)`.
    /// Monotonic: a stored time only ever moves forward, so concurrent flushers (or a late
    /// batch) cannot move it back. Callers group uses by minute, so a flush of a busy replica
    /// is a few statements per minute of uses, not one per token.
    pub async fn record_last_use(&self, batch: &[(TokenId, DateTime<Utc>)]) -> Result<u64> {
        use token::Column as C;
        let mut by_time: std::collections::BTreeMap<i64, Vec<&str>> = Default::default();
        for (id, at) in batch {
            by_time
                .entry(at.timestamp_micros())
                .or_default()
                .push(id.as_str());
        }
        let mut written = 0;
        for (at, ids) in by_time {
            for chunk in ids.chunks(500) {
                let res = token::Entity::update_many()
                    .col_expr(C::LastUsedAt, Expr::value(at))
                    .filter(C::Id.is_in(chunk.iter().copied()))
                    .filter(
                        Condition::any()
                            .add(C::LastUsedAt.is_null())
                            .add(C::LastUsedAt.lt(at)),
                    )
                    .exec(&self.db)
                    .await?;
                written += res.rows_affected;
            }
        }
        Ok(written)
    }

    /// Runs one statement on a database server outside any jeton schema (benchmark set-up:
    /// `CREATE DATABASE`, `DROP DATABASE`).
    pub async fn admin_statement(url: &str, sql: &str) -> Result<()> {
        let db = sea_orm::Database::connect(url).await?;
        db.execute_unprepared(sql).await?;
        db.close().await?;
        Ok(())
    }

    /// Rows updated in `tokens` since the statistics were reset (PostgreSQL only; the
    /// benchmark counts last-use writes with it).
    pub async fn token_updates(&self) -> Result<i64> {
        use sea_orm::{FromQueryResult, Statement};
        #[derive(FromQueryResult)]
        struct Row {
            n: i64,
        }
        self.db
            .execute_unprepared("SELECT pg_stat_clear_snapshot()")
            .await?;
        let row = Row::find_by_statement(Statement::from_string(
            self.db.get_database_backend(),
            "SELECT n_tup_upd::bigint AS n FROM pg_stat_user_tables WHERE relname = 'tokens'",
        ))
        .one(&self.db)
        .await?;
        Ok(row.map_or(0, |r| r.n))
    }

    /// Cheap round trip used by the health check.
    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await?;
        Ok(())
    }
}

fn parse<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T> {
    r.map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn time(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("time out of range: {micros}")))
}

fn opt_time(micros: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    micros.map(time).transpose()
}

fn namespace_str(ns: Namespace) -> &'static str {
    match ns {
        Namespace::Api => "API",
        Namespace::LogCollector => "LOG_COLLECTOR",
        Namespace::Siem => "SIEM",
    }
}

fn namespace_from(s: &str) -> Result<Namespace> {
    match s {
        "API" => Ok(Namespace::Api),
        "LOG_COLLECTOR" => Ok(Namespace::LogCollector),
        "SIEM" => Ok(Namespace::Siem),
        other => Err(StoreError::Corrupt(format!("namespace {other:?}"))),
    }
}

fn role_str(r: Role) -> &'static str {
    match r {
        Role::Admin => "admin",
        Role::Operator => "operator",
        Role::Reader => "reader",
    }
}

fn role_from(s: &str) -> Result<Role> {
    match s {
        "admin" => Ok(Role::Admin),
        "operator" => Ok(Role::Operator),
        "reader" => Ok(Role::Reader),
        other => Err(StoreError::Corrupt(format!("role {other:?}"))),
    }
}

fn principal_row(p: &Principal, now: DateTime<Utc>) -> principal::ActiveModel {
    principal::ActiveModel {
        tenant_id: Set(p.tenant.as_str().to_owned()),
        id: Set(p.id.as_str().to_owned()),
        display_name: Set(p.display_name.clone()),
        role: Set(role_str(p.role).to_owned()),
        assignment: Set(match p.assignment {
            Assignment::Active => "active",
            Assignment::Eligible => "eligible",
        }
        .to_owned()),
        activation_end: Set(p.activation_end.map(|t| t.timestamp_micros())),
        activation_justification: Set(None),
        updated_at: Set(now.timestamp_micros()),
    }
}

fn principal_from_row(r: principal::Model) -> Result<Principal> {
    Ok(Principal {
        tenant: parse(TenantId::parse(&r.tenant_id), "tenant id")?,
        id: parse(PrincipalId::parse(&r.id), "principal id")?,
        display_name: r.display_name,
        role: role_from(&r.role)?,
        assignment: match r.assignment.as_str() {
            "active" => Assignment::Active,
            "eligible" => Assignment::Eligible,
            other => return Err(StoreError::Corrupt(format!("assignment {other:?}"))),
        },
        activation_end: opt_time(r.activation_end)?,
    })
}

fn token_row(t: &Token, secret_hash: &str) -> token::ActiveModel {
    token::ActiveModel {
        id: Set(t.id.as_str().to_owned()),
        tenant_id: Set(t.tenant.as_str().to_owned()),
        namespace: Set(namespace_str(t.namespace).to_owned()),
        name: Set(t.name.as_str().to_owned()),
        subject: Set(t.subject.as_str().to_owned()),
        creator: Set(t.creator.as_str().to_owned()),
        scopes: Set(t.scopes.names().join(",")),
        secret_hash: Set(secret_hash.to_owned()),
        created_at: Set(t.created_at.timestamp_micros()),
        last_used_at: Set(t.last_used_at.map(|x| x.timestamp_micros())),
        expires_at: Set(t.expires_at.map(|x| x.timestamp_micros())),
        revoked_at: Set(t.revoked_at.map(|x| x.timestamp_micros())),
        revoked_by: Set(None),
        replaces_id: Set(t.replaces.as_ref().map(|r| r.as_str().to_owned())),
    }
}

fn token_from_row(r: token::Model) -> Result<Token> {
    Ok(Token {
        id: parse(TokenId::parse(&r.id), "token id")?,
        tenant: parse(TenantId::parse(&r.tenant_id), "tenant id")?,
        namespace: namespace_from(&r.namespace)?,
        name: parse(TokenName::parse(&r.name), "token name")?,
        subject: parse(Subject::parse(&r.subject), "subject")?,
        creator: parse(PrincipalId::parse(&r.creator), "creator")?,
        scopes: parse(
            ScopeSet::parse(r.scopes.split(',').filter(|s| !s.is_empty())),
            "scopes",
        )?,
        created_at: time(r.created_at)?,
        last_used_at: opt_time(r.last_used_at)?,
        expires_at: opt_time(r.expires_at)?,
        revoked_at: opt_time(r.revoked_at)?,
        replaces: r
            .replaces_id
            .as_deref()
            .and_then(|r| TokenId::parse(r).ok()),
    })
}
