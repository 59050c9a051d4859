//! The audit trail: append-only, written in the transaction of the change it records.

use super::codec::{Code, micros, parsed, time};
use super::entity::audit_event;
use super::{Result, Store, StoreError, fetch_page};
use crate::domain::{AuditAction, AuditEvent, AuditTarget, Page, TenantId};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};

/// Appends `events` inside the transaction `txn` of the change they record, numbering each
/// tenant's events on from its last number. Taking the numbers locks the tenant's row of
/// `audit_sequences` until `txn` ends, so the writes of one tenant commit in the order of
/// their numbers, on every replica: a number is visible only once every lower one is, and a
/// write that rolls back gives its numbers back.
pub(super) async fn append(txn: &impl ConnectionTrait, events: &[AuditEvent]) -> Result<()> {
    // Tenants in a fixed order, so that two writes never wait for each other's rows.
    let mut tenants: Vec<&TenantId> = events.iter().map(|e| &e.tenant).collect();
    tenants.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    tenants.dedup();
    let mut next = std::collections::HashMap::new();
    for tenant in tenants {
        let n = events.iter().filter(|e| &e.tenant == tenant).count() as i64;
        let last = take_sequence(txn, tenant, n).await?;
        next.insert(tenant.as_str(), last - n + 1);
    }
    for e in events {
        let sequence = next
            .get_mut(e.tenant.as_str())
            .map(|n| {
                *n += 1;
                *n - 1
            })
            .ok_or_else(|| StoreError::Corrupt("audit event without a sequence".into()))?;
        audit_event::ActiveModel {
            seq: sea_orm::ActiveValue::NotSet,
            sequence: Set(sequence),
            tenant_id: Set(e.tenant.as_str().to_owned()),
            at: Set(micros(e.at)),
            actor: Set(e.actor.clone()),
            action: Set(e.action.code().to_owned()),
            target: Set(e.target.clone()),
            outcome: Set(e.outcome.clone()),
            detail: Set(e.detail.clone()),
        }
        .insert(txn)
        .await?;
    }
    Ok(())
}

/// Adds `n` to `tenant`'s last audit sequence (starting from 0 for its first event) and
/// returns the new last one; the row stays locked until the transaction ends.
async fn take_sequence(txn: &impl ConnectionTrait, tenant: &TenantId, n: i64) -> Result<i64> {
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
    let table = Alias::new("audit_sequences");
    let last = Alias::new("last");
    let insert = Query::insert()
        .into_table(table.clone())
        .columns([Alias::new("tenant_id"), last.clone()])
        .values_panic([tenant.as_str().into(), n.into()])
        .on_conflict(
            OnConflict::column(Alias::new("tenant_id"))
                .value(last.clone(), Expr::col((table, last.clone())).add(n))
                .to_owned(),
        )
        .returning_col(last)
        .to_owned();
    let row = txn
        .query_one_raw(txn.get_database_backend().build(&insert))
        .await?
        .ok_or_else(|| StoreError::Corrupt("no audit sequence returned".into()))?;
    Ok(row.try_get::<i64>("", "last")?)
}

impl Store {
    /// One page of a tenant's audit events, newest first, below `before` if given.
    pub(crate) async fn audit_events(
        &self,
        tenant: &TenantId,
        target: Option<&AuditTarget>,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Page<AuditEvent>> {
        use audit_event::Column as C;
        let mut q = audit_event::Entity::find().filter(C::TenantId.eq(tenant.as_str()));
        if let Some(t) = target {
            q = q.filter(C::Target.eq(t.as_str()));
        }
        if let Some(b) = before {
            q = q.filter(C::Seq.lt(b));
        }
        fetch_page(&*self.read().await?, q.order_by_desc(C::Seq), limit, event).await
    }

    /// At most `limit` of a tenant's audit events with a sequence above `after`, in order.
    pub(crate) async fn audit_events_after(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: u64,
    ) -> Result<Vec<AuditEvent>> {
        use audit_event::Column as C;
        use sea_orm::QuerySelect;
        // On the complete host: see `Store::read_on_complete_host`.
        self.read_on_complete_host(|db| {
            Box::pin(
                audit_event::Entity::find()
                    .filter(C::TenantId.eq(tenant.as_str()))
                    .filter(C::Sequence.gt(after))
                    .order_by_asc(C::Sequence)
                    .limit(limit)
                    .all(db),
            )
        })
        .await?
        .into_iter()
        .map(event)
        .collect()
    }
}

fn event(r: audit_event::Model) -> Result<AuditEvent> {
    Ok(AuditEvent {
        seq: r.seq,
        sequence: r.sequence,
        tenant: parsed(TenantId::parse(&r.tenant_id), "tenant id")?,
        at: time(r.at)?,
        actor: r.actor,
        action: AuditAction::decode(&r.action)?,
        target: r.target,
        outcome: r.outcome,
        detail: r.detail,
    })
}
