//! Tokens: issue, rotation, revocation, the validation lookup, listings and last-use times.

use super::codec::{Code, micros, opt_time, parsed, time};
use super::entity::token;
use super::{Changed, Result, Store, Written, fetch_page};
use crate::domain::{
    AuditEvent, LiveAt, Namespace, Networks, Page, PrincipalId, ScopeSet, Subject, TenantId, Token,
    TokenId, TokenName, TokenStatus, Visible,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter,
    QueryOrder,
};

/// Which tokens `List` wants: those the caller sees (`domain::Visible`), newest first.
#[derive(Debug, Clone)]
pub(crate) struct TokenQuery<'a> {
    pub(crate) visible: &'a Visible,
    /// A status and the activity-window cutoff (now − window) it is evaluated against.
    pub(crate) status: Option<(TokenStatus, DateTime<Utc>)>,
    /// Only tokens expiring in `(from, until]`.
    pub(crate) expiring: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Only tokens last used (never used: generated) at or before this time.
    pub(crate) unused_since: Option<DateTime<Utc>>,
    /// Keyset position: only tokens strictly older than `(created_at, id)`.
    pub(crate) after: Option<(DateTime<Utc>, &'a TokenId)>,
    pub(crate) limit: u64,
}

pub(super) fn token_row(t: &Token, secret_hash: &str) -> token::ActiveModel {
    token::ActiveModel {
        id: Set(t.id.as_str().to_owned()),
        tenant_id: Set(t.tenant.as_str().to_owned()),
        namespace: Set(t.namespace.code().to_owned()),
        name: Set(t.name.as_str().to_owned()),
        subject: Set(t.subject.as_str().to_owned()),
        creator: Set(t.creator.as_str().to_owned()),
        scopes: Set(t.scopes.names().join(",")),
        secret_hash: Set(secret_hash.to_owned()),
        created_at: Set(micros(t.created_at)),
        last_used_at: Set(t.last_used_at.map(micros)),
        expires_at: Set(t.expires_at.map(micros)),
        revoked_at: Set(t.revoked_at.map(micros)),
        revoked_by: Set(None),
        replaces_id: Set(t.replaces.as_ref().map(|r| r.as_str().to_owned())),
        allowed_cidrs: Set(t.allowed.to_string()),
    }
}

fn token_from_row(r: token::Model) -> Result<Token> {
    Ok(Token {
        id: parsed(TokenId::parse(&r.id), "token id")?,
        tenant: parsed(TenantId::parse(&r.tenant_id), "tenant id")?,
        namespace: Namespace::decode(&r.namespace)?,
        name: parsed(TokenName::parse(&r.name), "token name")?,
        subject: parsed(Subject::parse(&r.subject), "subject")?,
        creator: parsed(PrincipalId::parse(&r.creator), "creator")?,
        scopes: parsed(
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
        allowed: parsed(
            Networks::parse(r.allowed_cidrs.split(',').filter(|s| !s.is_empty())),
            "allowed networks",
        )?,
    })
}

/// The store's form of `domain::LiveAt`: neither revoked nor expired at that instant.
fn live(at: LiveAt) -> Condition {
    use token::Column as C;
    Condition::all().add(C::RevokedAt.is_null()).add(
        Condition::any()
            .add(C::ExpiresAt.is_null())
            .add(C::ExpiresAt.gt(micros(at.0))),
    )
}

/// The store's form of `domain::Visible`: one tenant and namespace, not revoked, and one
/// subject's when it names one.
fn visible(v: &Visible) -> Condition {
    use token::Column as C;
    let mut c = Condition::all()
        .add(C::TenantId.eq(v.tenant.as_str()))
        .add(C::Namespace.eq(v.namespace.code()))
        .add(C::RevokedAt.is_null());
    if let Some(subject) = &v.subject {
        c = c.add(C::Subject.eq(subject.as_str()));
    }
    c
}

/// Tokens last used at or before `cutoff`, or never used and generated at or before it.
/// `last_used` is the column (the sweeper, which wants its index) or List's expression.
fn unused_since(last_used: SimpleExpr, cutoff: DateTime<Utc>) -> Condition {
    use token::Column as C;
    let cutoff = micros(cutoff);
    Condition::any().add(last_used.clone().lte(cutoff)).add(
        Condition::all()
            .add(last_used.is_null())
            .add(C::CreatedAt.lte(cutoff)),
    )
}

/// The select behind a `List` page: walks a live-token index in creation order and stops
/// after the page. Filters on the last use compare an expression (`last_used_at + 0`), not
/// the column, so that no engine takes the retirement sweeper's last-use index for them and
/// then sorts every matching row: on SQLite that plan read and sorted a third of a
/// million-token table for each page (over a second at 10^6, seen with `jeton-bench`'s List
/// table while fixing it).
fn list_select(q: &TokenQuery<'_>) -> sea_orm::Select<token::Entity> {
    use token::Column as C;
    let last_used = || Expr::col(C::LastUsedAt).add(0);
    let mut find = token::Entity::find().filter(visible(q.visible));
    if let Some((status, cutoff)) = q.status {
        let cutoff = micros(cutoff);
        find = find.filter(match status {
            TokenStatus::Generated => last_used().is_null(),
            TokenStatus::Active => last_used().gte(cutoff),
            TokenStatus::Inactive => last_used().lt(cutoff),
        });
    }
    if let Some((from, until)) = q.expiring {
        find = find
            .filter(C::ExpiresAt.gt(micros(from)))
            .filter(C::ExpiresAt.lte(micros(until)));
    }
    if let Some(cutoff) = q.unused_since {
        find = find.filter(unused_since(last_used(), cutoff));
    }
    if let Some((created, id)) = q.after {
        let created = micros(created);
        find = find.filter(
            Condition::any().add(C::CreatedAt.lt(created)).add(
                Condition::all()
                    .add(C::CreatedAt.eq(created))
                    .add(C::Id.lt(id.as_str())),
            ),
        );
    }
    find.order_by_desc(C::CreatedAt).order_by_desc(C::Id)
}

/// Tokens grouped per statement when last-use times are written.
const LAST_USE_CHUNK: usize = 500;

impl Store {
    /// Stores a new token. Its change row clears every replica's negative cache entry for its
    /// id.
    pub(crate) async fn insert_token(
        &self,
        t: &Token,
        secret_hash: &str,
        audit: &[AuditEvent],
    ) -> Result<Written> {
        let mut w = self.write().await?;
        token_row(t, secret_hash).insert(&w.txn).await?;
        w.changed(Changed::Token(t.id.clone()));
        w.commit(t.created_at, audit).await
    }

    /// Stores `new` and sets the expiry of the live token `old` of the same tenant to
    /// `old_expires_at`, all or nothing; nothing is written if `old` is not live.
    pub(crate) async fn rotate_token(
        &self,
        new: &Token,
        secret_hash: &str,
        old: &TokenId,
        old_expires_at: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<Written> {
        use token::Column as C;
        let mut w = self.write().await?;
        let res = token::Entity::update_many()
            .col_expr(C::ExpiresAt, Expr::value(micros(old_expires_at)))
            .filter(C::Id.eq(old.as_str()))
            .filter(C::TenantId.eq(new.tenant.as_str()))
            .filter(C::RevokedAt.is_null())
            .exec(&w.txn)
            .await?;
        if res.rows_affected == 0 {
            return Ok(None);
        }
        token_row(new, secret_hash).insert(&w.txn).await?;
        w.changed(Changed::Token(old.clone()));
        w.changed(Changed::Token(new.id.clone()));
        w.commit(new.created_at, audit).await
    }

    /// Marks a token of `tenant` that is not revoked yet revoked — when `unused_since` is
    /// given, only if it is still unused since then (a use that reached the database after
    /// it was picked keeps it). Nothing is written if no row matches.
    pub(crate) async fn revoke_token(
        &self,
        tenant: &TenantId,
        id: &TokenId,
        by: &PrincipalId,
        at: DateTime<Utc>,
        unused_since: Option<DateTime<Utc>>,
        audit: &[AuditEvent],
    ) -> Result<Written> {
        use token::Column as C;
        let mut w = self.write().await?;
        let mut update = token::Entity::update_many()
            .col_expr(C::RevokedAt, Expr::value(micros(at)))
            .col_expr(C::RevokedBy, Expr::value(by.as_str()))
            .filter(C::Id.eq(id.as_str()))
            .filter(C::TenantId.eq(tenant.as_str()))
            .filter(C::RevokedAt.is_null());
        if let Some(cutoff) = unused_since {
            update = update.filter(self::unused_since(Expr::col(C::LastUsedAt), cutoff));
        }
        let res = update.exec(&w.txn).await?;
        if res.rows_affected == 0 {
            return Ok(None);
        }
        w.changed(Changed::Token(id.clone()));
        w.commit(at, audit).await
    }

    /// Live tokens of `tenant` last used (never used: generated) at or before `cutoff`, at
    /// most `limit`: the candidates of the retirement sweeper. Reads the last-use index.
    pub(crate) async fn unused_tokens(
        &self,
        tenant: &TenantId,
        cutoff: DateTime<Utc>,
        alive: LiveAt,
        limit: u64,
    ) -> Result<Vec<Token>> {
        use sea_orm::QuerySelect;
        use token::Column as C;
        token::Entity::find()
            .filter(C::TenantId.eq(tenant.as_str()))
            .filter(live(alive))
            .filter(unused_since(Expr::col(C::LastUsedAt), cutoff))
            .limit(limit)
            .all(&*self.read().await?)
            .await?
            .into_iter()
            .map(token_from_row)
            .collect()
    }

    /// A token and its secret hash, by id: the validation lookup.
    pub(crate) async fn token_with_hash(&self, id: &TokenId) -> Result<Option<(Token, String)>> {
        let row = self
            .read_through_failover(|db| Box::pin(token::Entity::find_by_id(id.as_str()).one(db)))
            .await?;
        row.map(|r| {
            let hash = r.secret_hash.clone();
            Ok((token_from_row(r)?, hash))
        })
        .transpose()
    }

    /// A token by id, whatever its tenant or state.
    pub(crate) async fn token(&self, id: &TokenId) -> Result<Option<Token>> {
        Ok(self.token_with_hash(id).await?.map(|(t, _)| t))
    }

    /// How many tokens `subject` holds in `namespace` that are live (`alive`).
    pub(crate) async fn count_tokens_of(
        &self,
        tenant: &TenantId,
        namespace: Namespace,
        subject: &Subject,
        alive: LiveAt,
    ) -> Result<u64> {
        use sea_orm::PaginatorTrait;
        use token::Column as C;
        let n = token::Entity::find()
            .filter(C::TenantId.eq(tenant.as_str()))
            .filter(C::Namespace.eq(namespace.code()))
            .filter(C::Subject.eq(subject.as_str()))
            .filter(live(alive))
            .count(&*self.read().await?)
            .await?;
        Ok(n)
    }

    /// One page of live tokens, newest first.
    pub(crate) async fn list_tokens(&self, q: &TokenQuery<'_>) -> Result<Page<Token>> {
        fetch_page(
            &*self.read().await?,
            list_select(q),
            q.limit,
            token_from_row,
        )
        .await
    }

    /// Writes last-use times: one statement per distinct time and 500 tokens,
    /// `SET last_used_at = t WHERE id IN (…) AND (last_used_at IS NULL OR last_used_at < t)`.
    /// Monotonic: a stored time only ever moves forward, so concurrent flushers (or a late
    /// batch) cannot move it back. Callers group uses by minute, so a flush of a busy replica
    /// is a few statements per minute of uses, not one per token.
    pub(crate) async fn record_last_use(&self, batch: &[(TokenId, DateTime<Utc>)]) -> Result<u64> {
        use token::Column as C;
        let mut by_time: std::collections::BTreeMap<i64, Vec<&str>> = Default::default();
        for (id, at) in batch {
            by_time.entry(micros(*at)).or_default().push(id.as_str());
        }
        let mut written = 0;
        for (at, ids) in by_time {
            for chunk in ids.chunks(LAST_USE_CHUNK) {
                let res = token::Entity::update_many()
                    .col_expr(C::LastUsedAt, Expr::value(at))
                    .filter(C::Id.is_in(chunk.iter().copied()))
                    .filter(
                        Condition::any()
                            .add(C::LastUsedAt.is_null())
                            .add(C::LastUsedAt.lt(at)),
                    )
                    .exec(&*self.conn()?)
                    .await?;
                written += res.rows_affected;
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ConnectionTrait, DbBackend, QueryTrait, Statement};

    /// Every `List` filter on SQLite walks the page's index in creation order: no plan sorts
    /// the matching rows (a "TEMP B-TREE FOR ORDER BY" step), which at 10^6 tokens cost over
    /// a second per page when a status filter took the last-use index.
    #[tokio::test]
    async fn list_pages_are_read_in_index_order_whatever_the_filter() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite_in(dir.path()).await;
        let tenant = TenantId::parse("contoso").unwrap();
        let everyone = Visible {
            tenant: tenant.clone(),
            namespace: Namespace::Api,
            subject: None,
        };
        let alice = Visible {
            subject: Some(Subject::from_parsed("alice")),
            ..everyone.clone()
        };
        let id = TokenId::parse(&"a".repeat(22)).unwrap();
        let now = Utc::now();
        let base = TokenQuery {
            visible: &everyone,
            status: None,
            expiring: None,
            unused_since: None,
            after: None,
            limit: 100,
        };
        let mut queries = vec![base.clone()];
        for status in [
            TokenStatus::Generated,
            TokenStatus::Active,
            TokenStatus::Inactive,
        ] {
            queries.push(TokenQuery {
                status: Some((status, now)),
                ..base.clone()
            });
            queries.push(TokenQuery {
                status: Some((status, now)),
                visible: &alice,
                after: Some((now, &id)),
                ..base.clone()
            });
        }
        queries.push(TokenQuery {
            unused_since: Some(now),
            ..base.clone()
        });
        queries.push(TokenQuery {
            expiring: Some((now, now)),
            ..base.clone()
        });
        for q in &queries {
            let st = list_select(q).build(DbBackend::Sqlite);
            let plan = store
                .conn()
                .unwrap()
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    format!("EXPLAIN QUERY PLAN {}", st.sql),
                    st.values.map(|v| v.0).unwrap_or_default(),
                ))
                .await
                .unwrap();
            let steps: Vec<String> = plan
                .iter()
                .map(|row| row.try_get::<String>("", "detail").unwrap())
                .collect();
            assert!(
                steps.iter().all(|s| !s.contains("TEMP B-TREE")),
                "{q:?}: {steps:?}"
            );
            assert!(
                steps
                    .iter()
                    .any(|s| s.contains("live_tokens_by_tenant_namespace")),
                "{q:?}: {steps:?}"
            );
        }
    }
}
