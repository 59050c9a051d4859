//! The change log: one row per change that can make a cached validation answer wrong,
//! appended in the transaction of the change and read by every replica's follower.

use super::codec::micros;
use super::entity::change;
use super::{Result, Store};
use crate::domain::{PrincipalId, TenantId, TokenId};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

/// A change that can make a cached validation answer wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Changed {
    /// A token was created, revoked or otherwise changed.
    Token(TokenId),
    /// A principal was created, changed or removed.
    Principal(TenantId, PrincipalId),
}

/// One row of the change log.
#[derive(Debug, Clone)]
pub(crate) struct ChangeRow {
    pub(crate) seq: i64,
    /// When the change was made (the writer's clock, microseconds since the epoch).
    pub(crate) at_micros: i64,
    /// `None` for a row that does not parse (skipped by the follower).
    pub(crate) what: Option<Changed>,
}

const TOKEN: &str = "token";
const PRINCIPAL: &str = "principal";

/// Appends `changes` inside the transaction `txn` of the write that made them.
pub(super) async fn append(
    txn: &impl ConnectionTrait,
    changes: &[Changed],
    at: DateTime<Utc>,
) -> Result<()> {
    for what in changes {
        let (kind, tenant, key) = match what {
            Changed::Token(id) => (TOKEN, "", id.as_str()),
            Changed::Principal(t, p) => (PRINCIPAL, t.as_str(), p.as_str()),
        };
        change::ActiveModel {
            seq: sea_orm::ActiveValue::NotSet,
            kind: Set(kind.to_owned()),
            tenant_id: Set(tenant.to_owned()),
            key: Set(key.to_owned()),
            at: Set(micros(at)),
        }
        .insert(txn)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Change-log rows numbered above `floor`, in order.
    pub(crate) async fn changes_after(&self, floor: i64, limit: u64) -> Result<Vec<ChangeRow>> {
        let rows = self
            .read_on_complete_host(|db| {
                Box::pin(
                    change::Entity::find()
                        .filter(change::Column::Seq.gt(floor))
                        .order_by_asc(change::Column::Seq)
                        .limit(limit)
                        .all(db),
                )
            })
            .await?;
        Ok(rows.into_iter().map(change_row).collect())
    }

    /// The changes whose numbers fall in `ranges` (inclusive), oldest first, at most
    /// `limit`: what has appeared in a follower's holes.
    pub(crate) async fn changes_in(
        &self,
        ranges: &[(i64, i64)],
        limit: u64,
    ) -> Result<Vec<ChangeRow>> {
        let mut any = sea_orm::Condition::any();
        for &(start, end) in ranges {
            any = any.add(change::Column::Seq.between(start, end));
        }
        let rows = self
            .read_on_complete_host(|db| {
                Box::pin(
                    change::Entity::find()
                        .filter(any.clone())
                        .order_by_asc(change::Column::Seq)
                        .limit(limit)
                        .all(db),
                )
            })
            .await?;
        Ok(rows.into_iter().map(change_row).collect())
    }

    /// The highest change number so far (0 when there is none).
    pub(crate) async fn last_change(&self) -> Result<i64> {
        let row = self
            .read_on_complete_host(|db| {
                Box::pin(
                    change::Entity::find()
                        .order_by_desc(change::Column::Seq)
                        .one(db),
                )
            })
            .await?;
        Ok(row.map_or(0, |r| r.seq))
    }

    /// Deletes change-log rows older than `before`; every replica has long applied them.
    pub(crate) async fn prune_changes(&self, before: DateTime<Utc>) -> Result<u64> {
        let res = change::Entity::delete_many()
            .filter(change::Column::At.lt(micros(before)))
            .exec(&*self.conn()?)
            .await?;
        Ok(res.rows_affected)
    }
}

fn change_row(r: change::Model) -> ChangeRow {
    ChangeRow {
        seq: r.seq,
        at_micros: r.at,
        what: match r.kind.as_str() {
            TOKEN => TokenId::parse(&r.key).ok().map(Changed::Token),
            PRINCIPAL => TenantId::parse(&r.tenant_id)
                .ok()
                .zip(PrincipalId::parse(&r.key).ok())
                .map(|(t, p)| Changed::Principal(t, p)),
            _ => None,
        },
    }
}

#[cfg(test)]
impl Store {
    /// Appends `n` changes of one token that does not exist, in one statement: a burst of
    /// writes made elsewhere, as a follower sees it.
    pub(crate) async fn append_burst(&self, n: u64) -> Result<()> {
        let sql = format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO changes (kind, tenant_id, key, at) \
             SELECT '{TOKEN}', '', 'BBBBBBBBBBBBBBBBBBBBBB', 0 FROM n"
        );
        self.conn()?.execute_unprepared(&sql).await?;
        Ok(())
    }
}
