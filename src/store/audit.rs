//! The audit trail: append-only, written in the transaction of the change it records.

use super::codec::{Code, micros, parsed, time};
use super::entity::audit_event;
use super::{Result, Store, fetch_page};
use crate::domain::{AuditAction, AuditEvent, AuditTarget, Page, TenantId};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};

/// Appends `events` inside the transaction `txn` of the change they record.
pub(super) async fn append(txn: &impl ConnectionTrait, events: &[AuditEvent]) -> Result<()> {
    for e in events {
        audit_event::ActiveModel {
            seq: sea_orm::ActiveValue::NotSet,
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
        fetch_page(&*self.read().await?, q.order_by_desc(C::Seq), limit, |r| {
            Ok(AuditEvent {
                seq: r.seq,
                tenant: parsed(TenantId::parse(&r.tenant_id), "tenant id")?,
                at: time(r.at)?,
                actor: r.actor,
                action: AuditAction::decode(&r.action)?,
                target: r.target,
                outcome: r.outcome,
                detail: r.detail,
            })
        })
        .await
    }
}
