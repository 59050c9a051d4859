//! Authorization, in one place: every "may this actor do this to that" of the contract.
//!
//! - **Visibility** (rules 5, 6, 7, 8): [`Actor::visible`] says which tokens of a namespace
//!   an actor sees, as a [`Visible`] that a listing applies as a filter and a single token is
//!   checked against ([`Actor::can_see`]) — one rule for both. What an actor cannot see does
//!   not exist for it (the use case answers `NOT_FOUND`, never `PERMISSION_DENIED`).
//! - **Admin-only namespaces** (rule 7): [`Actor::may_manage`] — log-collector and SIEM tokens
//!   belong to the tenant and only its admins generate, list, rotate and revoke them.
//! - **Rotation by the owner only**: [`Actor::may_rotate`] — the new secret goes to the caller,
//!   so an admin revokes another user's API token but never takes it over.
//! - **Self or admin** for role activations: [`Actor::may_change_activation_of`].
//! - **Admins only** for the directory, the tenant and its audit trail:
//!   [`Actor::may_administer`].
//!
//! Two more answers complete the picture and live beside the rules they belong to: which
//! scopes a new token may carry (`rules::scopes_for_new_token`, rule 2) and what a token
//! grants at use (`rules::judge`, rule 3). `RevokeLeaked` needs no actor at all: holding a
//! token's secret is the right to kill it.

use super::{
    AuditAction, AuditEvent, Namespace, PrincipalId, Scope, ScopeSet, Subject, TenantId, Token,
};
use chrono::{DateTime, Utc};

/// Who is calling jeton, once authenticated, with the scopes they hold now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Actor {
    pub(crate) tenant: TenantId,
    pub(crate) principal: PrincipalId,
    pub(crate) scopes: ScopeSet,
}

/// Why a caller may not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Denied {
    #[error("the caller holds no scope now (role removed, or eligible and not activated)")]
    NoScopes,
    #[error("cannot grant scopes the caller does not hold: {0:?}")]
    Raise(ScopeSet),
    #[error("only admins manage log-collector and SIEM tokens")]
    NotAdmin,
    #[error("only admins list other principals' tokens")]
    OthersTokens,
    #[error("a rotated token's scopes may only narrow: not in the old token: {0:?}")]
    Widen(ScopeSet),
    #[error("an API token is rotated only by its owner (an admin may revoke it)")]
    NotOwner,
    #[error("only admins activate or deactivate another principal's role")]
    NotSelfOrAdmin,
    #[error("{0} is managed by admins only")]
    AdminOnly(&'static str),
    #[error("{0} can be managed only in the caller's tenant")]
    OtherTenant(&'static str),
}

/// The tokens an actor sees in one namespace: those of its tenant, not revoked, and — when
/// `subject` is set — owned by that subject. A listing applies it as a filter; a single token
/// is checked with [`Visible::contains`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Visible {
    pub(crate) tenant: TenantId,
    pub(crate) namespace: Namespace,
    /// `None`: every subject's.
    pub(crate) subject: Option<Subject>,
}

impl Visible {
    pub(crate) fn contains(&self, token: &Token) -> bool {
        token.tenant == self.tenant
            && token.namespace == self.namespace
            && token.revoked_at.is_none()
            && self.subject.as_ref().is_none_or(|s| *s == token.subject)
    }
}

/// Parts of jeton that only a tenant's admins manage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminArea {
    Directory,
    Tenant,
}

impl AdminArea {
    fn name(self) -> &'static str {
        match self {
            AdminArea::Directory => "the directory",
            AdminArea::Tenant => "the tenant",
        }
    }
}

impl Actor {
    /// An audit event of a change this actor made.
    pub(crate) fn event(
        &self,
        at: DateTime<Utc>,
        action: AuditAction,
        target: &str,
        detail: impl Into<String>,
    ) -> AuditEvent {
        AuditEvent::new(
            &self.tenant,
            at,
            self.principal.as_str(),
            action,
            target,
            detail,
        )
    }

    fn is_admin(&self) -> bool {
        self.scopes.contains(Scope::Admin)
    }

    /// Rule 7: log-collector and SIEM tokens are managed by the tenant's admins only; API
    /// tokens by anyone (within what [`Actor::visible`] shows them).
    pub(crate) fn may_manage(&self, namespace: Namespace) -> Result<(), Denied> {
        if namespace == Namespace::Api || self.is_admin() {
            Ok(())
        } else {
            Err(Denied::NotAdmin)
        }
    }

    /// Rules 5, 7 and 8: the tokens of `namespace` this actor sees, narrowed to `owner` when
    /// given. Admins see every token of their tenant; anyone else only their own API tokens,
    /// and asking for another owner's is refused.
    pub(crate) fn visible(
        &self,
        namespace: Namespace,
        owner: Option<Subject>,
    ) -> Result<Visible, Denied> {
        self.may_manage(namespace)?;
        let subject = match (self.is_admin(), owner) {
            (true, owner) => owner,
            (false, None) => Some(self.principal.clone().into()),
            (false, Some(o)) if o.is(&self.principal) => Some(o),
            (false, Some(_)) => return Err(Denied::OthersTokens),
        };
        Ok(Visible {
            tenant: self.tenant.clone(),
            namespace,
            subject,
        })
    }

    /// Whether this actor sees `token` (the rule of [`Actor::visible`], for one token).
    /// Revoke and rotation answer "not found" for a token it does not see.
    pub(crate) fn can_see(&self, token: &Token) -> bool {
        self.visible(token.namespace, None)
            .is_ok_and(|v| v.contains(token))
    }

    /// Rotation of a token this actor sees: the new secret goes to the caller, so an API
    /// token is rotated only by its owner; tenant-owned tokens by the admins who see them.
    pub(crate) fn may_rotate(&self, token: &Token) -> Result<(), Denied> {
        if token.namespace == Namespace::Api && !token.subject.is(&self.principal) {
            return Err(Denied::NotOwner);
        }
        Ok(())
    }

    /// Activating or deactivating `target`'s eligible role: the principal itself, or an admin
    /// of its tenant (an actor only ever names principals of its own tenant).
    pub(crate) fn may_change_activation_of(&self, target: &PrincipalId) -> Result<(), Denied> {
        if self.is_admin() || self.principal == *target {
            Ok(())
        } else {
            Err(Denied::NotSelfOrAdmin)
        }
    }

    /// The directory, the tenant's settings and its audit trail: admins only, and only their
    /// own tenant (`tenant`: the one the request names, when it names one).
    pub(crate) fn may_administer(
        &self,
        area: AdminArea,
        tenant: Option<&TenantId>,
    ) -> Result<(), Denied> {
        if !self.is_admin() {
            return Err(Denied::AdminOnly(area.name()));
        }
        if tenant.is_some_and(|t| *t != self.tenant) {
            return Err(Denied::OtherTenant(area.name()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn actor(who: &str, role: Role) -> Actor {
        Actor {
            tenant: TenantId::parse("contoso").unwrap(),
            principal: PrincipalId::parse(who).unwrap(),
            scopes: role.scopes(),
        }
    }

    fn token(ns: Namespace, subject: &str) -> Token {
        Token::for_tests(ns, subject, Role::Reader.scopes())
    }

    #[test]
    fn visibility_as_a_filter_and_as_a_check() {
        let alice = actor("alice", Role::Reader);
        let bob = actor("bob", Role::Operator);
        let admin = actor("root", Role::Admin);
        let mut t = token(Namespace::Api, "alice");
        assert!(alice.can_see(&t));
        assert!(!bob.can_see(&t));
        assert!(admin.can_see(&t));
        let alice_sub = Some(Subject::parse("alice").unwrap());
        assert_eq!(
            alice.visible(Namespace::Api, None).unwrap().subject,
            alice_sub
        );
        assert_eq!(
            bob.visible(Namespace::Api, alice_sub.clone()),
            Err(Denied::OthersTokens)
        );
        assert_eq!(admin.visible(Namespace::Api, None).unwrap().subject, None);
        assert_eq!(
            admin
                .visible(Namespace::Api, alice_sub.clone())
                .unwrap()
                .subject,
            alice_sub
        );
        let mut other_tenant_admin = admin.clone();
        other_tenant_admin.tenant = TenantId::parse("fabrikam").unwrap();
        assert!(!other_tenant_admin.can_see(&t));
        t.revoked_at = Some(Utc::now());
        assert!(!admin.can_see(&t), "revoked tokens are seen by nobody");
    }

    #[test]
    fn tenant_namespaces_are_for_admins_only() {
        let siem = token(Namespace::Siem, "collector-1");
        let admin = actor("root", Role::Admin);
        let op = actor("collector-1", Role::Operator);
        assert!(admin.can_see(&siem));
        assert!(!op.can_see(&siem), "even one named like the subject");
        assert_eq!(op.may_manage(Namespace::Siem), Err(Denied::NotAdmin));
        assert_eq!(
            op.visible(Namespace::LogCollector, None),
            Err(Denied::NotAdmin)
        );
        assert_eq!(admin.may_rotate(&siem), Ok(()));
    }

    #[test]
    fn api_tokens_are_rotated_by_their_owner_only() {
        let t = token(Namespace::Api, "alice");
        assert_eq!(actor("alice", Role::Reader).may_rotate(&t), Ok(()));
        assert_eq!(
            actor("root", Role::Admin).may_rotate(&t),
            Err(Denied::NotOwner)
        );
    }

    #[test]
    fn activations_are_self_or_admin_and_administration_admin_only() {
        let alice = PrincipalId::parse("alice").unwrap();
        assert_eq!(
            actor("alice", Role::Reader).may_change_activation_of(&alice),
            Ok(())
        );
        assert_eq!(
            actor("bob", Role::Operator).may_change_activation_of(&alice),
            Err(Denied::NotSelfOrAdmin)
        );
        assert_eq!(
            actor("root", Role::Admin).may_change_activation_of(&alice),
            Ok(())
        );
        let fabrikam = TenantId::parse("fabrikam").unwrap();
        let admin = actor("root", Role::Admin);
        assert_eq!(admin.may_administer(AdminArea::Directory, None), Ok(()));
        assert_eq!(
            admin.may_administer(AdminArea::Directory, Some(&fabrikam)),
            Err(Denied::OtherTenant("the directory"))
        );
        assert_eq!(
            actor("bob", Role::Operator).may_administer(AdminArea::Tenant, None),
            Err(Denied::AdminOnly("the tenant"))
        );
    }
}
