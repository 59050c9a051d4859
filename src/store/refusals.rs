//! Refused uses of known tokens: counted per tenant, token and reason across replicas, and
//! reported as `AUDIT_ACTION_TOKEN_REFUSED` events at most once a minute for each — every
//! write here is one transaction that takes the row's lock, so two replicas never both
//! report the same minute.

use super::codec::micros;
use super::{Result, Store, StoreError};
use crate::domain::{AuditEvent, Reason, Spelled, TenantId, TokenId};
use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Alias, Cond, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, QueryResult};

/// Which refusals a row counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RefusalKey {
    pub(crate) tenant: TenantId,
    pub(crate) token: TokenId,
    pub(crate) reason: Reason,
}

/// What an event reports: how many refusals it stands for, and the last client address
/// seen (empty when none was known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefusalTally {
    pub(crate) count: i64,
    pub(crate) client: String,
}

fn table() -> Alias {
    Alias::new("refusals")
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

/// The row of `key`.
fn of(key: &RefusalKey) -> Cond {
    Cond::all()
        .add(Expr::col(col("tenant_id")).eq(key.tenant.as_str()))
        .add(Expr::col(col("token_id")).eq(key.token.as_str()))
        .add(Expr::col(col("reason")).eq(key.reason.lower_name()))
}

fn tally_of(row: &QueryResult) -> Result<RefusalTally> {
    Ok(RefusalTally {
        count: row.try_get("", "pending")?,
        client: row.try_get("", "client")?,
    })
}

impl Store {
    /// Adds `tally` to the refusals of `key`; when no event was written for them in the
    /// `window` before `now`, writes one, made by `event` from every refusal counted since
    /// the last, and returns it.
    pub(crate) async fn add_refusals(
        &self,
        key: &RefusalKey,
        tally: &RefusalTally,
        now: DateTime<Utc>,
        window: TimeDelta,
        event: impl FnOnce(&RefusalTally) -> AuditEvent,
    ) -> Result<Option<AuditEvent>> {
        let w = self.write().await?;
        let upsert = Query::insert()
            .into_table(table())
            .columns(
                [
                    "tenant_id",
                    "token_id",
                    "reason",
                    "last_event_at",
                    "pending",
                    "client",
                ]
                .map(col),
            )
            .values_panic([
                key.tenant.as_str().into(),
                key.token.as_str().into(),
                key.reason.lower_name().into(),
                Option::<i64>::None.into(),
                tally.count.into(),
                tally.client.clone().into(),
            ])
            .on_conflict(
                OnConflict::columns(["tenant_id", "token_id", "reason"].map(col))
                    .value(
                        col("pending"),
                        Expr::col((table(), col("pending"))).add(tally.count),
                    )
                    .value(
                        col("client"),
                        Expr::cust(
                            "CASE WHEN excluded.client = '' THEN refusals.client \
                             ELSE excluded.client END",
                        ),
                    )
                    .to_owned(),
            )
            .returning(Query::returning().columns(["last_event_at", "pending", "client"].map(col)))
            .to_owned();
        let backend = w.txn.get_database_backend();
        let row = w
            .txn
            .query_one_raw(backend.build(&upsert))
            .await?
            .ok_or_else(|| StoreError::Corrupt("no refusal row returned".into()))?;
        let last: Option<i64> = row.try_get("", "last_event_at")?;
        if last.is_some_and(|at| at > micros(now - window)) {
            w.commit(now, &[]).await?;
            return Ok(None);
        }
        let event = event(&tally_of(&row)?);
        report(w, key, now, event).await
    }

    /// Up to `limit` rows holding refusals not reported yet whose last event is older than
    /// `before`: their minute is over, and no new refusal came to report them.
    pub(crate) async fn unreported_refusals(
        &self,
        before: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<RefusalKey>> {
        let q = Query::select()
            .columns(["tenant_id", "token_id", "reason"].map(col))
            .from(table())
            .and_where(Expr::col(col("pending")).gt(0))
            .and_where(Expr::col(col("last_event_at")).lte(micros(before)))
            .limit(limit)
            .to_owned();
        let conn = self.read().await?;
        let rows = conn
            .query_all_raw(conn.get_database_backend().build(&q))
            .await?;
        rows.iter()
            .filter_map(|r| {
                let tenant: String = r.try_get("", "tenant_id").ok()?;
                let token: String = r.try_get("", "token_id").ok()?;
                let reason: String = r.try_get("", "reason").ok()?;
                Some(Ok(RefusalKey {
                    tenant: TenantId::parse(&tenant).ok()?,
                    token: TokenId::parse(&token).ok()?,
                    reason: Reason::ALL
                        .iter()
                        .copied()
                        .find(|r| r.lower_name() == reason)?,
                }))
            })
            .collect()
    }

    /// Reports the refusals of `key` counted since its last event, if that event is still
    /// older than `before` (no other replica reported them meanwhile): one event made by
    /// `event`, returned.
    pub(crate) async fn report_refusals(
        &self,
        key: &RefusalKey,
        now: DateTime<Utc>,
        before: DateTime<Utc>,
        event: impl FnOnce(&RefusalTally) -> AuditEvent,
    ) -> Result<Option<AuditEvent>> {
        let w = self.write().await?;
        let backend = w.txn.get_database_backend();
        // Taking the row (its lock, until the end of the transaction) only while it is due.
        let take = Query::update()
            .table(table())
            .value(col("last_event_at"), micros(now))
            .cond_where(
                of(key)
                    .add(Expr::col(col("pending")).gt(0))
                    .add(Expr::col(col("last_event_at")).lte(micros(before))),
            )
            .to_owned();
        if w.txn
            .execute_raw(backend.build(&take))
            .await?
            .rows_affected()
            != 1
        {
            w.commit(now, &[]).await?;
            return Ok(None);
        }
        let read = Query::select()
            .columns(["pending", "client"].map(col))
            .from(table())
            .cond_where(of(key))
            .to_owned();
        let row = w
            .txn
            .query_one_raw(backend.build(&read))
            .await?
            .ok_or_else(|| StoreError::Corrupt("refusal row gone".into()))?;
        let event = event(&tally_of(&row)?);
        report(w, key, now, event).await
    }
}

/// Ends write `w` by reporting the refusals of `key` counted so far in `event`: the row
/// starts counting again from 0, its last event now.
async fn report(
    w: super::Write<'_>,
    key: &RefusalKey,
    now: DateTime<Utc>,
    event: AuditEvent,
) -> Result<Option<AuditEvent>> {
    let reset = Query::update()
        .table(table())
        .value(col("last_event_at"), micros(now))
        .value(col("pending"), 0)
        .cond_where(of(key))
        .to_owned();
    w.txn
        .execute_raw(w.txn.get_database_backend().build(&reset))
        .await?;
    w.commit(now, std::slice::from_ref(&event)).await?;
    Ok(Some(event))
}
