//! Principals: the directory, and activations of eligible roles.

use super::codec::{Code, micros, opt_time, parsed};
use super::entity::principal;
use super::{Changed, Result, Store, Written, fetch_page};
use crate::domain::{
    Assignment, AuditEvent, DisplayName, Justification, Page, Principal, PrincipalId, Role,
    TenantId,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

pub(super) fn principal_row(p: &Principal, now: DateTime<Utc>) -> principal::ActiveModel {
    principal::ActiveModel {
        tenant_id: Set(p.tenant.as_str().to_owned()),
        id: Set(p.id.as_str().to_owned()),
        display_name: Set(p.display_name.as_str().to_owned()),
        role: Set(p.role.code().to_owned()),
        assignment: Set(p.assignment.code().to_owned()),
        activation_end: Set(p.activation_end.map(micros)),
        activation_justification: Set(None),
        updated_at: Set(micros(now)),
    }
}

fn principal_from_row(r: principal::Model) -> Result<Principal> {
    Ok(Principal {
        tenant: parsed(TenantId::parse(&r.tenant_id), "tenant id")?,
        id: parsed(PrincipalId::parse(&r.id), "principal id")?,
        display_name: parsed(DisplayName::parse(&r.display_name), "display name")?,
        role: Role::decode(&r.role)?,
        assignment: Assignment::decode(&r.assignment)?,
        activation_end: opt_time(r.activation_end)?,
    })
}

fn key(tenant: &TenantId, id: &PrincipalId) -> (String, String) {
    (tenant.as_str().to_owned(), id.as_str().to_owned())
}

impl Store {
    /// Creates or replaces a principal.
    pub(crate) async fn put_principal(
        &self,
        p: &Principal,
        now: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<Written> {
        use principal::Column as C;
        let mut w = self.write().await?;
        principal::Entity::insert(principal_row(p, now))
            .on_conflict(
                OnConflict::columns([C::TenantId, C::Id])
                    .update_columns([
                        C::DisplayName,
                        C::Role,
                        C::Assignment,
                        C::ActivationEnd,
                        C::ActivationJustification,
                        C::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec(&w.txn)
            .await?;
        w.changed(Changed::Principal(p.tenant.clone(), p.id.clone()));
        w.commit(now, audit).await
    }

    pub(crate) async fn principal(
        &self,
        tenant: &TenantId,
        id: &PrincipalId,
    ) -> Result<Option<Principal>> {
        let key = key(tenant, id);
        let row = self
            .read_through_failover(|db| {
                Box::pin(principal::Entity::find_by_id(key.clone()).one(db))
            })
            .await?;
        row.map(principal_from_row).transpose()
    }

    /// One page of a tenant's principals ordered by id, after `after` if given.
    pub(crate) async fn principals(
        &self,
        tenant: &TenantId,
        after: Option<&PrincipalId>,
        limit: u64,
    ) -> Result<Page<Principal>> {
        use principal::Column as C;
        let mut q = principal::Entity::find().filter(C::TenantId.eq(tenant.as_str()));
        if let Some(after) = after {
            q = q.filter(C::Id.gt(after.as_str()));
        }
        fetch_page(
            &*self.read().await?,
            q.order_by_asc(C::Id),
            limit,
            principal_from_row,
        )
        .await
    }

    /// Removes a principal.
    pub(crate) async fn delete_principal(
        &self,
        tenant: &TenantId,
        id: &PrincipalId,
        now: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<Written> {
        let mut w = self.write().await?;
        let res = principal::Entity::delete_by_id(key(tenant, id))
            .exec(&w.txn)
            .await?;
        if res.rows_affected == 0 {
            return Ok(None);
        }
        w.changed(Changed::Principal(tenant.clone(), id.clone()));
        w.commit(now, audit).await
    }

    /// Sets (or, with `None`, ends) the activation of an eligible principal — when
    /// `ending_at` is given, only if its activation still ends then (so that of several
    /// replicas recording the same end, one does). Nothing is written if no row matches.
    pub(crate) async fn set_activation(
        &self,
        tenant: &TenantId,
        id: &PrincipalId,
        activation: Option<(DateTime<Utc>, &Justification)>,
        ending_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<Written> {
        use principal::Column as C;
        let mut w = self.write().await?;
        let mut update = principal::Entity::update_many()
            .col_expr(
                C::ActivationEnd,
                Expr::value(activation.map(|(end, _)| micros(end))),
            )
            .col_expr(
                C::ActivationJustification,
                Expr::value(activation.map(|(_, why)| why.as_str().to_owned())),
            )
            .col_expr(C::UpdatedAt, Expr::value(micros(now)))
            .filter(C::TenantId.eq(tenant.as_str()))
            .filter(C::Id.eq(id.as_str()))
            .filter(C::Assignment.eq(Assignment::Eligible.code()));
        if let Some(end) = ending_at {
            update = update.filter(C::ActivationEnd.eq(micros(end)));
        }
        let res = update.exec(&w.txn).await?;
        if res.rows_affected == 0 {
            return Ok(None);
        }
        w.changed(Changed::Principal(tenant.clone(), id.clone()));
        w.commit(now, audit).await
    }

    /// Principals whose activation ended at or before `now` and is still recorded (at most
    /// `limit`): the candidates of the activation sweeper.
    pub(crate) async fn ended_activations(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Principal>> {
        use principal::Column as C;
        principal::Entity::find()
            .filter(C::ActivationEnd.lte(micros(now)))
            .limit(limit)
            .all(&*self.read().await?)
            .await?
            .into_iter()
            .map(principal_from_row)
            .collect()
    }
}
