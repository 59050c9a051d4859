//! The audit trail: what happened, to what, by whom.

use super::TenantId;
use chrono::{DateTime, Utc};

/// The actor recorded for changes that time makes (an activation reaching its end).
pub const TIME_ACTOR: &str = "jeton";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
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
}

impl AuditAction {
    pub const ALL: [AuditAction; 11] = [
        AuditAction::TokenGenerated,
        AuditAction::TokenRotated,
        AuditAction::TokenRevoked,
        AuditAction::PrincipalCreated,
        AuditAction::PrincipalChanged,
        AuditAction::PrincipalDeleted,
        AuditAction::RoleActivated,
        AuditAction::RoleDeactivated,
        AuditAction::ActivationExpired,
        AuditAction::TenantCreated,
        AuditAction::TenantChanged,
    ];
}

/// One event. `seq` is 0 until stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub seq: i64,
    pub tenant: TenantId,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: AuditAction,
    pub target: String,
    pub outcome: String,
    pub detail: String,
}

impl AuditEvent {
    /// A successful change by `actor`.
    pub fn new(
        tenant: &TenantId,
        at: DateTime<Utc>,
        actor: &str,
        action: AuditAction,
        target: &str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            seq: 0,
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
