//! How domain values are spelled in columns: one codec for every enum, and the time format.
//!
//! Times are `i64` microseconds since the Unix epoch, so that ordering and comparison are
//! identical on SQLite and PostgreSQL, with no text format to keep in step.

use super::{Result, StoreError};
use crate::domain::{Assignment, AuditAction, Namespace, Role};
use chrono::{DateTime, Utc};

/// A domain enum stored as text: each variant and its spelling, listed once.
pub(super) trait Code: Copy + PartialEq + 'static {
    /// What the column holds, for error messages.
    const WHAT: &'static str;
    const CODES: &'static [(Self, &'static str)];

    fn code(self) -> &'static str {
        Self::CODES
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("", |(_, c)| c)
    }

    fn decode(s: &str) -> Result<Self> {
        Self::CODES
            .iter()
            .find(|(_, c)| *c == s)
            .map(|(v, _)| *v)
            .ok_or_else(|| StoreError::Corrupt(format!("{} {s:?}", Self::WHAT)))
    }
}

impl Code for Namespace {
    const WHAT: &'static str = "namespace";
    const CODES: &'static [(Self, &'static str)] = &[
        (Namespace::Api, "API"),
        (Namespace::LogCollector, "LOG_COLLECTOR"),
        (Namespace::Siem, "SIEM"),
    ];
}

impl Code for Role {
    const WHAT: &'static str = "role";
    const CODES: &'static [(Self, &'static str)] = &[
        (Role::Admin, "admin"),
        (Role::Operator, "operator"),
        (Role::Reader, "reader"),
    ];
}

impl Code for Assignment {
    const WHAT: &'static str = "assignment";
    const CODES: &'static [(Self, &'static str)] = &[
        (Assignment::Active, "active"),
        (Assignment::Eligible, "eligible"),
    ];
}

impl Code for AuditAction {
    const WHAT: &'static str = "audit action";
    const CODES: &'static [(Self, &'static str)] = &[
        (AuditAction::TokenGenerated, "token_generated"),
        (AuditAction::TokenRotated, "token_rotated"),
        (AuditAction::TokenRevoked, "token_revoked"),
        (AuditAction::PrincipalCreated, "principal_created"),
        (AuditAction::PrincipalChanged, "principal_changed"),
        (AuditAction::PrincipalDeleted, "principal_deleted"),
        (AuditAction::RoleActivated, "role_activated"),
        (AuditAction::RoleDeactivated, "role_deactivated"),
        (AuditAction::ActivationExpired, "activation_expired"),
        (AuditAction::TenantCreated, "tenant_created"),
        (AuditAction::TenantChanged, "tenant_changed"),
        (AuditAction::TokenLeaked, "token_leaked"),
    ];
}

/// A stored value that must parse back into a domain type.
pub(super) fn parsed<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T> {
    r.map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(super) fn time(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("time out of range: {micros}")))
}

pub(super) fn opt_time(micros: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    micros.map(time).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Code + std::fmt::Debug>() {
        for (v, c) in T::CODES {
            assert_eq!(v.code(), *c);
            assert_eq!(T::decode(c).unwrap(), *v);
        }
        assert!(T::decode("nonsense").is_err());
    }

    #[test]
    fn every_code_round_trips() {
        round_trip::<Namespace>();
        round_trip::<Role>();
        round_trip::<Assignment>();
        round_trip::<AuditAction>();
        assert_eq!(AuditAction::CODES.len(), AuditAction::ALL.len());
    }
}
