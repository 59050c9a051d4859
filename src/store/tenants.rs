//! Tenants: creation with the first admin and token (bootstrap), and the tenant's policy.

use super::codec::{micros, parsed};
use super::entity::tenant;
use super::principals::principal_row;
use super::tokens::token_row;
use super::{Changed, Result, Store, Written};
use crate::domain::{ApiUrl, AuditEvent, DisplayName, Principal, Tenant, TenantId, Token};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

fn tenant_from_row(r: tenant::Model) -> Result<Tenant> {
    Ok(Tenant {
        id: parsed(TenantId::parse(&r.id), "tenant id")?,
        display_name: parsed(DisplayName::parse(&r.display_name), "display name")?,
        api_url: parsed(ApiUrl::parse(&r.api_url), "api url")?,
        max_token_lifetime: r.max_token_lifetime_secs.map(chrono::TimeDelta::seconds),
        revoke_unused_after: r.revoke_unused_after_secs.map(chrono::TimeDelta::seconds),
        require_allowed_cidrs: r.require_allowed_cidrs,
    })
}

impl Store {
    /// Creates a tenant, its first admin and that admin's first token, all or nothing.
    /// `StoreError::Conflict` when the tenant exists.
    pub(crate) async fn create_tenant(
        &self,
        tenant: &Tenant,
        admin: &Principal,
        first_token: &Token,
        secret_hash: &str,
        now: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<Written> {
        let mut w = self.write().await?;
        tenant::ActiveModel {
            id: Set(tenant.id.as_str().to_owned()),
            display_name: Set(tenant.display_name.as_str().to_owned()),
            api_url: Set(tenant.api_url.as_str().to_owned()),
            created_at: Set(micros(now)),
            max_token_lifetime_secs: Set(tenant.max_token_lifetime.map(|d| d.num_seconds())),
            revoke_unused_after_secs: Set(tenant.revoke_unused_after.map(|d| d.num_seconds())),
            require_allowed_cidrs: Set(tenant.require_allowed_cidrs),
        }
        .insert(&w.txn)
        .await?;
        principal_row(admin, now).insert(&w.txn).await?;
        token_row(first_token, secret_hash).insert(&w.txn).await?;
        w.changed(Changed::Principal(admin.tenant.clone(), admin.id.clone()));
        w.changed(Changed::Token(first_token.id.clone()));
        w.commit(now, audit).await
    }

    pub(crate) async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        let row = tenant::Entity::find_by_id(id.as_str())
            .one(&*self.read().await?)
            .await?;
        row.map(tenant_from_row).transpose()
    }

    /// The tenants that have a `revoke_unused_after` policy.
    pub(crate) async fn tenants_retiring_unused(&self) -> Result<Vec<Tenant>> {
        tenant::Entity::find()
            .filter(tenant::Column::RevokeUnusedAfterSecs.is_not_null())
            .all(&*self.read().await?)
            .await?
            .into_iter()
            .map(tenant_from_row)
            .collect()
    }

    /// Replaces a tenant's settings.
    pub(crate) async fn update_tenant(
        &self,
        t: &Tenant,
        now: DateTime<Utc>,
        audit: &[AuditEvent],
    ) -> Result<Written> {
        use tenant::Column as C;
        let w = self.write().await?;
        let res = tenant::Entity::update_many()
            .col_expr(C::DisplayName, Expr::value(t.display_name.as_str()))
            .col_expr(C::ApiUrl, Expr::value(t.api_url.as_str()))
            .col_expr(
                C::MaxTokenLifetimeSecs,
                Expr::value(t.max_token_lifetime.map(|d| d.num_seconds())),
            )
            .col_expr(
                C::RevokeUnusedAfterSecs,
                Expr::value(t.revoke_unused_after.map(|d| d.num_seconds())),
            )
            .col_expr(C::RequireAllowedCidrs, Expr::value(t.require_allowed_cidrs))
            .filter(C::Id.eq(t.id.as_str()))
            .exec(&w.txn)
            .await?;
        if res.rows_affected == 0 {
            return Ok(None);
        }
        w.commit(now, audit).await
    }
}
