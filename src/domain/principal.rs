//! Tenants, principals, roles and the scopes a role grants at a given moment.

use super::{ApiUrl, DisplayName, PrincipalId, Scope, ScopeSet, TenantId};
use chrono::{DateTime, Utc};

/// One customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tenant {
    pub(crate) id: TenantId,
    pub(crate) display_name: DisplayName,
    /// Tenant-specific endpoint handed back with every generated token.
    pub(crate) api_url: ApiUrl,
    /// Longest lifetime of a new token, if the tenant sets one.
    pub(crate) max_token_lifetime: Option<chrono::TimeDelta>,
    /// Tokens unused this long (never used: since generation) are revoked by jeton.
    pub(crate) revoke_unused_after: Option<chrono::TimeDelta>,
    /// Whether log-collector and SIEM tokens must be bound to networks.
    pub(crate) require_allowed_cidrs: bool,
}

impl Tenant {
    /// The expiry a new token gets when `asked` for at `now`, and whether it was clamped to
    /// the tenant's maximum lifetime.
    pub(crate) fn clamp_expiry(
        &self,
        asked: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> (Option<DateTime<Utc>>, bool) {
        match (self.max_token_lifetime, asked) {
            (Some(max), None) => (Some(now + max), true),
            (Some(max), Some(t)) if t > now + max => (Some(now + max), true),
            (_, asked) => (asked, false),
        }
    }

    /// The tenant's `revoke_unused_after` policy at `now`: tokens last used (never used:
    /// generated) at or before the returned instant are due for retirement. `margin` is how
    /// much longer than the policy a token is left (the time a use seen by another replica
    /// may take to reach the database). `None`: the tenant retires nothing.
    pub(crate) fn unused_cutoff(
        &self,
        now: DateTime<Utc>,
        margin: chrono::TimeDelta,
    ) -> Option<DateTime<Utc>> {
        self.revoke_unused_after.map(|after| now - after - margin)
    }
}

/// A role and the scopes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Admin,
    Operator,
    Reader,
}

impl Role {
    pub(crate) fn scopes(self) -> ScopeSet {
        match self {
            Role::Admin => ScopeSet::ALL,
            Role::Operator => ScopeSet::of(&[Scope::Read, Scope::Write]),
            Role::Reader => ScopeSet::of(&[Scope::Read]),
        }
    }
}

/// Whether a role is held permanently or must be activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Assignment {
    Active,
    Eligible,
}

/// A user inside a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub(crate) tenant: TenantId,
    pub(crate) id: PrincipalId,
    pub(crate) display_name: DisplayName,
    pub(crate) role: Role,
    pub(crate) assignment: Assignment,
    /// End of the current activation of an eligible role; `None` when not activated.
    pub(crate) activation_end: Option<DateTime<Utc>>,
}

impl Principal {
    /// The scopes the principal holds at `now`: its role's, if the assignment is active or
    /// an eligible role is activated until after `now`; none otherwise.
    pub(crate) fn scopes_at(&self, now: DateTime<Utc>) -> ScopeSet {
        match self.assignment {
            Assignment::Active => self.role.scopes(),
            Assignment::Eligible => match self.activation_end {
                Some(end) if now < end => self.role.scopes(),
                _ => ScopeSet::EMPTY,
            },
        }
    }

    /// The activation end reported to callers: only while an eligible role is activated.
    pub(crate) fn current_activation_end(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match (self.assignment, self.activation_end) {
            (Assignment::Eligible, Some(end)) if now < end => Some(end),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn principal(assignment: Assignment, end: Option<DateTime<Utc>>) -> Principal {
        Principal {
            tenant: TenantId::parse("contoso").unwrap(),
            id: PrincipalId::parse("alice").unwrap(),
            display_name: DisplayName::parse("Alice").unwrap(),
            role: Role::Operator,
            assignment,
            activation_end: end,
        }
    }

    #[test]
    fn eligible_grants_only_while_activated() {
        let now = Utc::now();
        let hour = TimeDelta::hours(1);
        assert_eq!(
            principal(Assignment::Active, None).scopes_at(now),
            Role::Operator.scopes()
        );
        assert!(
            principal(Assignment::Eligible, None)
                .scopes_at(now)
                .is_empty()
        );
        let p = principal(Assignment::Eligible, Some(now + hour));
        assert_eq!(p.scopes_at(now), Role::Operator.scopes());
        assert!(p.scopes_at(now + hour).is_empty());
        assert_eq!(p.current_activation_end(now), Some(now + hour));
        assert_eq!(p.current_activation_end(now + hour), None);
    }
}
