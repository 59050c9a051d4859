//! Tenants: creation with a first admin (`jeton bootstrap`), the tenant's policy
//! (`GetTenant`, `UpdateTenant`) and its audit trail.

use super::directory::principal_event;
use super::tokens::{NewToken, generated_event, mint};
use super::watch::{AuditWatch, Watchers};
use super::{Core, Error, Result};
use crate::domain::{
    Actor, AdminArea, ApiUrl, Assignment, AuditAction, AuditEvent, AuditTarget, DisplayName,
    GeneratedToken, Namespace, Page, Principal, PrincipalId, Role, Tenant, TokenName,
};
use crate::hashing::Hasher;
use crate::store::{Store, StoreError};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;

/// Changes to a tenant; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub(crate) struct TenantUpdate {
    pub(crate) display_name: Option<DisplayName>,
    pub(crate) api_url: Option<ApiUrl>,
    /// `Some(None)` removes the cap.
    pub(crate) max_token_lifetime: Option<Option<TimeDelta>>,
    /// `Some(None)` removes the policy.
    pub(crate) revoke_unused_after: Option<Option<TimeDelta>>,
    pub(crate) require_allowed_cidrs: Option<bool>,
}

/// Which audit events to list.
#[derive(Debug)]
pub(crate) struct AuditQuery {
    pub(crate) target: Option<AuditTarget>,
    /// Keyset position: only events numbered below this.
    pub(crate) before: Option<i64>,
    pub(crate) limit: u64,
}

/// Creates `tenant` with its first admin and returns that admin's first token.
pub(crate) async fn bootstrap(
    store: &Store,
    hasher: &Hasher,
    now: DateTime<Utc>,
    tenant: Tenant,
    admin: PrincipalId,
) -> Result<GeneratedToken> {
    let principal = Principal {
        tenant: tenant.id.clone(),
        display_name: DisplayName::from(&admin),
        id: admin.clone(),
        role: Role::Admin,
        assignment: Assignment::Active,
        activation_end: None,
    };
    let new = NewToken {
        tenant: tenant.id.clone(),
        namespace: Namespace::Api,
        name: TokenName::parse("bootstrap").map_err(Error::internal)?,
        subject: admin.clone().into(),
        creator: admin.clone(),
        scopes: Role::Admin.scopes(),
        expires_at: None,
        replaces: None,
        allowed: Default::default(),
    };
    let (generated, hash) = mint(hasher, new, now).await?;
    let audit = [
        AuditEvent::new(
            &tenant.id,
            now,
            admin.as_str(),
            AuditAction::TenantCreated,
            tenant.id.as_str(),
            "",
        ),
        principal_event(
            &principal,
            now,
            admin.as_str(),
            AuditAction::PrincipalCreated,
        ),
        generated_event(&generated.token, now),
    ];
    match store
        .create_tenant(&tenant, &principal, &generated.token, &hash, now, &audit)
        .await
    {
        Err(StoreError::Conflict) => Err(Error::AlreadyExists("tenant already exists")),
        other => other.map(drop).map_err(Error::from),
    }?;
    Ok(generated)
}

const TENANT_GONE: Error = Error::Unauthenticated("the caller's tenant no longer exists");

fn require_admin(actor: &Actor) -> Result<()> {
    Ok(actor.may_administer(AdminArea::Tenant, None)?)
}

#[derive(Clone)]
pub(crate) struct Tenants {
    core: Arc<Core>,
    watchers: Arc<Watchers>,
}

impl Tenants {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            watchers: Arc::default(),
        }
    }

    /// Starts following the caller's tenant's audit trail after sequence `after` (admins
    /// only; a bounded number of watchers per tenant).
    pub(crate) fn watch_audit_events(&self, actor: &Actor, after: i64) -> Result<AuditWatch> {
        AuditWatch::admit(self.core.clone(), self.watchers.clone(), actor, after)
    }

    /// The caller's tenant (admins only).
    pub(crate) async fn get(&self, actor: &Actor) -> Result<Tenant> {
        require_admin(actor)?;
        self.core
            .store
            .tenant(&actor.tenant)
            .await?
            .ok_or(TENANT_GONE)
    }

    /// Changes the caller's tenant (admins only).
    pub(crate) async fn update(&self, actor: &Actor, update: TenantUpdate) -> Result<Tenant> {
        let mut tenant = self.get(actor).await?;
        if let Some(d) = update.display_name {
            tenant.display_name = d;
        }
        if let Some(u) = update.api_url {
            tenant.api_url = u;
        }
        if let Some(m) = update.max_token_lifetime {
            tenant.max_token_lifetime = m;
        }
        if let Some(r) = update.revoke_unused_after {
            tenant.revoke_unused_after = r;
        }
        if let Some(r) = update.require_allowed_cidrs {
            tenant.require_allowed_cidrs = r;
        }
        let secs =
            |d: Option<TimeDelta>| d.map_or("none".to_owned(), |d| format!("{}s", d.num_seconds()));
        let core = &self.core;
        let now = core.now();
        let audit = [actor.event(
            now,
            AuditAction::TenantChanged,
            actor.tenant.as_str(),
            format!(
                "display_name={:?} api_url={:?} max_token_lifetime={} revoke_unused_after={} require_allowed_cidrs={}",
                tenant.display_name.as_str(),
                tenant.api_url.as_str(),
                secs(tenant.max_token_lifetime),
                secs(tenant.revoke_unused_after),
                tenant.require_allowed_cidrs,
            ),
        )];
        let write = core.store.update_tenant(&tenant, now, &audit);
        core.commit(&audit, write, TENANT_GONE).await?;
        Ok(tenant)
    }

    /// One page of the tenant's audit trail, newest first (admins only).
    pub(crate) async fn audit_events(
        &self,
        actor: &Actor,
        q: &AuditQuery,
    ) -> Result<Page<AuditEvent>> {
        require_admin(actor)?;
        Ok(self
            .core
            .store
            .audit_events(&actor.tenant, q.target.as_ref(), q.before, q.limit)
            .await?)
    }
}
