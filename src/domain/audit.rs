//! The audit trail: what happened, to what, by whom.

use super::TenantId;
use chrono::{DateTime, Utc};

/// The actor recorded for changes that time makes (an activation reaching its end).
pub(crate) const TIME_ACTOR: &str = "jeton";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuditAction {
    TokenGenerated,
    TokenRotated,
    TokenRevoked,
    PrincipalCreated,
    PrincipalChanged,
    PrincipalDeleted,
    RoleActivated,
    RoleDeactivated,
    ActivationExpired,
    TenantCreated,
    TenantChanged,
    TokenLeaked,
    TokenRefused,
}

/// One event. `seq` (its number among every tenant's events, for paging) and `sequence` (its
/// number in its tenant's trail: 1, 2, 3, … with no gap) are 0 until stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditEvent {
    pub(crate) seq: i64,
    pub(crate) sequence: i64,
    pub(crate) tenant: TenantId,
    pub(crate) at: DateTime<Utc>,
    pub(crate) actor: String,
    pub(crate) action: AuditAction,
    pub(crate) target: String,
    pub(crate) outcome: String,
    pub(crate) detail: String,
}

impl AuditEvent {
    /// A successful change by `actor`.
    pub(crate) fn new(
        tenant: &TenantId,
        at: DateTime<Utc>,
        actor: &str,
        action: AuditAction,
        target: &str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            seq: 0,
            sequence: 0,
            tenant: tenant.clone(),
            at,
            actor: actor.to_owned(),
            action,
            target: target.to_owned(),
            outcome: "success".to_owned(),
            detail: detail.into(),
        }
    }
}
