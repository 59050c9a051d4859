//! The directory: principals of a tenant (admins only) and activations of eligible roles
//! (the principal itself, or an admin), plus the sweeper that records activations that ended
//! by time.

use super::{Core, Error, Result};
use crate::background::{Rounds, Task};
use crate::domain::{
    Actor, AdminArea, Assignment, AuditAction, AuditEvent, DisplayName, Justification, Page,
    Principal, PrincipalId, Role, Spelled, TIME_ACTOR, TenantId, activation_end,
};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;

/// A principal to create or replace, already parsed. `None` stands for a field left empty.
#[derive(Debug)]
pub(crate) struct PrincipalInput {
    /// Empty: the caller's tenant.
    pub(crate) tenant: Option<TenantId>,
    pub(crate) id: PrincipalId,
    /// Empty: the id.
    pub(crate) display_name: Option<DisplayName>,
    pub(crate) role: Role,
    pub(crate) assignment: Assignment,
}

/// Which principals to list: ordered by id, after `after`, at most `limit`.
#[derive(Debug)]
pub(crate) struct PrincipalQuery {
    pub(crate) after: Option<PrincipalId>,
    pub(crate) limit: u64,
}

/// What `ActivateRole` was asked for, already parsed.
#[derive(Debug)]
pub(crate) struct ActivateInput {
    pub(crate) id: PrincipalId,
    pub(crate) duration: TimeDelta,
    pub(crate) justification: Justification,
}

/// Most ended activations recorded in one round of the sweeper.
const SWEEP_BATCH: u64 = 100;

const NO_SUCH_PRINCIPAL: Error = Error::NotFound("no such principal");

fn require_admin(actor: &Actor) -> Result<()> {
    Ok(actor.may_administer(AdminArea::Directory, None)?)
}

/// The audit event of a principal created or replaced.
pub(super) fn principal_event(
    p: &Principal,
    now: DateTime<Utc>,
    actor: &str,
    action: AuditAction,
) -> AuditEvent {
    AuditEvent::new(
        &p.tenant,
        now,
        actor,
        action,
        p.id.as_str(),
        format!(
            "role={} assignment={}",
            p.role.proto_name(),
            p.assignment.proto_name()
        ),
    )
}

#[derive(Clone)]
pub(crate) struct Directory {
    core: Arc<Core>,
}

impl Directory {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Creates or replaces a principal of the actor's tenant. An eligible principal keeps a
    /// running activation across a replace.
    pub(crate) async fn put_principal(
        &self,
        actor: &Actor,
        input: PrincipalInput,
    ) -> Result<Principal> {
        actor.may_administer(AdminArea::Directory, input.tenant.as_ref())?;
        let core = &self.core;
        let tenant = actor.tenant.clone();
        let existing = core.store.principal(&tenant, &input.id).await?;
        let action = if existing.is_some() {
            AuditAction::PrincipalChanged
        } else {
            AuditAction::PrincipalCreated
        };
        let p = Principal {
            display_name: input
                .display_name
                .unwrap_or_else(|| DisplayName::from(&input.id)),
            activation_end: match (input.assignment, existing) {
                (Assignment::Eligible, Some(old)) => old.activation_end,
                _ => None,
            },
            tenant,
            id: input.id,
            role: input.role,
            assignment: input.assignment,
        };
        let now = core.now();
        let audit = [principal_event(&p, now, actor.principal.as_str(), action)];
        let write = core.store.put_principal(&p, now, &audit);
        core.commit(&audit, write, NO_SUCH_PRINCIPAL).await?;
        Ok(self.core.shown(p))
    }

    pub(crate) async fn get_principal(&self, actor: &Actor, id: &PrincipalId) -> Result<Principal> {
        require_admin(actor)?;
        self.core
            .store
            .principal(&actor.tenant, id)
            .await?
            .map(|p| self.core.shown(p))
            .ok_or(NO_SUCH_PRINCIPAL)
    }

    /// One page of the tenant's principals, by id.
    pub(crate) async fn list_principals(
        &self,
        actor: &Actor,
        q: &PrincipalQuery,
    ) -> Result<Page<Principal>> {
        require_admin(actor)?;
        let page = self
            .core
            .store
            .principals(&actor.tenant, q.after.as_ref(), q.limit)
            .await?;
        Ok(Page {
            items: page.items.into_iter().map(|p| self.core.shown(p)).collect(),
            more: page.more,
        })
    }

    pub(crate) async fn delete_principal(&self, actor: &Actor, id: &PrincipalId) -> Result<()> {
        require_admin(actor)?;
        let core = &self.core;
        let now = core.now();
        let audit = [actor.event(now, AuditAction::PrincipalDeleted, id.as_str(), "")];
        let write = core.store.delete_principal(&actor.tenant, id, now, &audit);
        core.commit(&audit, write, NO_SUCH_PRINCIPAL).await
    }

    /// Activates the eligible role of `input.id` (self or admin) for a bounded time,
    /// extending a running activation.
    pub(crate) async fn activate_role(
        &self,
        actor: &Actor,
        input: ActivateInput,
    ) -> Result<Principal> {
        let core = &self.core;
        let max = core.policy.max_activation;
        if input.duration <= TimeDelta::zero() {
            return Err(Error::invalid("duration", "must be positive"));
        }
        if input.duration > max {
            return Err(Error::invalid(
                "duration",
                format!(
                    "must be at most {}",
                    humantime::format_duration(max.to_std().unwrap_or_default())
                ),
            ));
        }
        let mut target = self.role_target(actor, &input.id).await?;
        let now = core.now();
        let end = activation_end(&target, input.duration, now);
        let audit = [actor.event(
            now,
            AuditAction::RoleActivated,
            input.id.as_str(),
            format!(
                "until={} justification={}",
                end.to_rfc3339(),
                input.justification
            ),
        )];
        let write = core.store.set_activation(
            &actor.tenant,
            &input.id,
            Some((end, &input.justification)),
            None,
            now,
            &audit,
        );
        core.commit(&audit, write, NO_SUCH_PRINCIPAL).await?;
        target.activation_end = Some(end);
        Ok(self.core.shown(target))
    }

    /// Ends the activation of `id` at once (self or admin). Without a running activation,
    /// changes and records nothing.
    pub(crate) async fn deactivate_role(
        &self,
        actor: &Actor,
        id: &PrincipalId,
    ) -> Result<Principal> {
        let core = &self.core;
        let mut target = self.role_target(actor, id).await?;
        let now = core.now();
        if target.current_activation_end(now).is_none() {
            return Ok(self.core.shown(target));
        }
        let audit = [actor.event(now, AuditAction::RoleDeactivated, id.as_str(), "")];
        let write = core
            .store
            .set_activation(&actor.tenant, id, None, None, now, &audit);
        core.commit(&audit, write, NO_SUCH_PRINCIPAL).await?;
        target.activation_end = None;
        Ok(self.core.shown(target))
    }

    /// The eligible principal whose activation `actor` wants to change: itself, or anyone of
    /// its tenant for an admin.
    async fn role_target(&self, actor: &Actor, id: &PrincipalId) -> Result<Principal> {
        actor.may_change_activation_of(id)?;
        let target = self
            .core
            .store
            .principal(&actor.tenant, id)
            .await?
            .ok_or(NO_SUCH_PRINCIPAL)?;
        if target.assignment == Assignment::Active {
            return Err(Error::FailedPrecondition(
                "the role is permanent (ASSIGNMENT_ACTIVE): there is nothing to activate",
            ));
        }
        Ok(target)
    }

    /// Starts recording activations that ended by time (one audit event each, whichever
    /// replica gets there first) every `every`, until the returned task is stopped.
    pub(crate) fn start_sweeping(&self, every: Duration, rounds: Rounds) -> Task {
        let directory = self.clone();
        Task::every_counted("activation sweeper", every, rounds, move || {
            let directory = directory.clone();
            async move {
                if let Err(e) = directory.record_ended_activations(SWEEP_BATCH).await {
                    tracing::warn!(error = %e, "recording ended activations failed; will retry");
                }
            }
        })
    }

    /// One round of the activation sweeper: clears at most `limit` activations that ended by
    /// time, each through the commit path of every write, with one
    /// `AUDIT_ACTION_ACTIVATION_EXPIRED` event by "jeton" at the moment it ended. Another
    /// replica recording the same end first leaves nothing to do. Returns how many it
    /// recorded.
    async fn record_ended_activations(&self, limit: u64) -> Result<u64> {
        let core = &self.core;
        let now = core.now();
        let mut recorded = 0;
        for p in core.store.ended_activations(now, limit).await? {
            let Some(end) = p.activation_end else {
                continue;
            };
            let audit = [AuditEvent::new(
                &p.tenant,
                end,
                TIME_ACTOR,
                AuditAction::ActivationExpired,
                p.id.as_str(),
                "",
            )];
            let write = core
                .store
                .set_activation(&p.tenant, &p.id, None, Some(end), now, &audit);
            match core.commit(&audit, write, NO_SUCH_PRINCIPAL).await {
                Ok(()) => recorded += 1,
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(recorded)
    }
}
