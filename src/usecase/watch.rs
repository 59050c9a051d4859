//! Following a tenant's audit trail (`WatchAuditEvents`): admission (admins only, a bounded
//! number of watchers per tenant) and the reads, in sequence order, that a watcher makes as
//! events commit on any replica.

use super::{Core, Error, Result};
use crate::domain::{Actor, AdminArea, AuditEvent, TenantId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most watchers of one tenant's trail on one server.
pub(crate) const MAX_WATCHERS_PER_TENANT: usize = 16;
/// Most events one read of the trail returns (and so holds in memory per watcher).
const BATCH: u64 = 100;
/// How often an idle watcher looks for events committed on other replicas. Events committed
/// on this server wake it at once.
pub(crate) const WATCH_POLL: Duration = Duration::from_millis(250);

/// The watchers on this server, by tenant.
#[derive(Debug, Default)]
pub(crate) struct Watchers(Mutex<HashMap<TenantId, usize>>);

/// One admitted watcher of a tenant's trail; its place is given back when dropped.
pub(crate) struct AuditWatch {
    core: Arc<Core>,
    watchers: Arc<Watchers>,
    tenant: TenantId,
    /// The last sequence handed out.
    after: i64,
}

impl AuditWatch {
    /// Admits `actor` (an admin) to follow its tenant's trail after `after`, if the tenant
    /// has a free place.
    pub(super) fn admit(
        core: Arc<Core>,
        watchers: Arc<Watchers>,
        actor: &Actor,
        after: i64,
    ) -> Result<Self> {
        actor.may_administer(AdminArea::Tenant, None)?;
        {
            let mut by_tenant = watchers.0.lock().unwrap_or_else(|e| e.into_inner());
            let n = by_tenant.entry(actor.tenant.clone()).or_default();
            if *n >= MAX_WATCHERS_PER_TENANT {
                return Err(Error::Quota(format!(
                    "this tenant already has {MAX_WATCHERS_PER_TENANT} audit streams on this server; close one or retry on another replica"
                )));
            }
            *n += 1;
        }
        Ok(Self {
            core,
            watchers,
            tenant: actor.tenant.clone(),
            after,
        })
    }

    /// The last sequence read (where the watch began, before its first read).
    pub(crate) fn position(&self) -> i64 {
        self.after
    }

    /// Whether `actor` — the watcher's credential resolved again — may still follow this
    /// trail.
    pub(crate) fn still_allowed(&self, actor: &Actor) -> Result<()> {
        actor.may_administer(AdminArea::Tenant, Some(&self.tenant))?;
        Ok(())
    }

    /// The next events in sequence order (at most a batch; none when there is nothing new).
    pub(crate) async fn next(&mut self) -> Result<Vec<AuditEvent>> {
        let events = self
            .core
            .store
            .audit_events_after(&self.tenant, self.after, BATCH)
            .await?;
        if let Some(last) = events.last() {
            self.after = last.sequence;
        }
        Ok(events)
    }

    /// Resolves when this server commits audit events, or after [`WATCH_POLL`].
    pub(crate) async fn more(&self) {
        let _ = tokio::time::timeout(WATCH_POLL, self.core.audit_appended.notified()).await;
    }
}

impl Drop for AuditWatch {
    fn drop(&mut self) {
        let mut by_tenant = self.watchers.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by_tenant.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                by_tenant.remove(&self.tenant);
            }
        }
    }
}
