//! The decisions of the contract's rules 2, 3, 6, 7 and 9 (`docs/contract.md`), as functions
//! of plain values: which scopes a new or rotated token carries, whether a token is live, and
//! what it grants at use. Who may do what to which object is `authz`.

use super::{Actor, Denied, Namespace, Principal, Reason, ScopeSet, Token};
use chrono::{DateTime, TimeDelta, Utc};
use std::net::IpAddr;

/// Longest grace period of a rotation.
pub(crate) const MAX_GRACE: TimeDelta = TimeDelta::days(7);

/// The scopes of a token that rotates `old`: the old token's, or `requested` if it only
/// narrows them; and, for API tokens, never more than the rotating caller holds now.
pub(crate) fn rotated_scopes(
    actor: &Actor,
    old: &Token,
    requested: ScopeSet,
) -> Result<ScopeSet, Denied> {
    let scopes = if requested.is_empty() {
        old.scopes
    } else {
        requested
    };
    if !scopes.is_subset_of(old.scopes) {
        return Err(Denied::Widen(ScopeSet::of(
            &scopes
                .iter()
                .filter(|s| !old.scopes.contains(*s))
                .collect::<Vec<_>>(),
        )));
    }
    scopes_for_new_token(actor, old.namespace, scopes)
}

/// When an activation of `target`'s eligible role asked for `duration` at `now` ends:
/// extending a running activation never shortens it. The caller checks who asks
/// (`Actor::may_change_activation_of`) and the bounds of `duration`.
pub(crate) fn activation_end(
    target: &Principal,
    duration: TimeDelta,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let end = now + duration;
    match target.current_activation_end(now) {
        Some(running) if running > end => running,
        _ => end,
    }
}

/// Rule 2 (and 7): the scopes of a new token. Empty `requested` means every scope the caller
/// holds; asking for more than the caller holds is refused. Log-collector and SIEM tokens
/// belong to the tenant and only admins create them.
pub(crate) fn scopes_for_new_token(
    actor: &Actor,
    namespace: Namespace,
    requested: ScopeSet,
) -> Result<ScopeSet, Denied> {
    actor.may_manage(namespace)?;
    if actor.scopes.is_empty() {
        return Err(Denied::NoScopes);
    }
    if requested.is_empty() {
        return Ok(actor.scopes);
    }
    if !requested.is_subset_of(actor.scopes) {
        return Err(Denied::Raise(ScopeSet::of(
            &requested
                .iter()
                .filter(|s| !actor.scopes.contains(*s))
                .collect::<Vec<_>>(),
        )));
    }
    Ok(requested)
}

/// Live tokens at an instant — neither revoked (rule 6) nor expired (rule 9) — as a filter
/// that a store applies to its rows as well as a check of one token. The rule of [`live`]
/// without the client's address, which no stored row knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LiveAt(pub(crate) DateTime<Utc>);

impl LiveAt {
    /// Whether `token` is live at this instant, and if not, why.
    pub(crate) fn check(self, token: &Token) -> Result<(), Reason> {
        if token.revoked_at.is_some() {
            Err(Reason::Revoked)
        } else if token.is_expired_at(self.0) {
            Err(Reason::Expired)
        } else {
            Ok(())
        }
    }

    pub(crate) fn holds(self, token: &Token) -> bool {
        self.check(token).is_ok()
    }
}

/// Whether `token` may be used at `now` by a client at `client`: live (neither revoked nor
/// expired) and, if bound to networks, presented from inside one of them — never without an
/// address to check (fail closed). `Validate`, the adapters and bearer authentication all
/// ask this; revocation is said before expiry, and both before the address.
pub(crate) fn live(
    token: &Token,
    now: DateTime<Utc>,
    client: Option<IpAddr>,
) -> Result<(), Reason> {
    LiveAt(now).check(token)?;
    if token.allowed.is_empty() || client.is_some_and(|a| token.allowed.contains(a)) {
        Ok(())
    } else {
        Err(Reason::AddressNotAllowed)
    }
}

/// Rules 3, 6, 7 and 9 (and network binding) for a token whose secret has already been
/// verified: what it grants at `now` in `namespace` to a client at `client`, given its owner
/// as stored now (`None` when the owner was removed; ignored for tenant-owned namespaces).
pub(crate) fn judge(
    token: &Token,
    owner: Option<&Principal>,
    namespace: Namespace,
    required: ScopeSet,
    client: Option<IpAddr>,
    now: DateTime<Utc>,
) -> Result<ScopeSet, Reason> {
    if token.namespace != namespace {
        return Err(Reason::WrongNamespace);
    }
    live(token, now, client)?;
    let effective = match token.namespace {
        // Tenant-owned tokens do not lapse with anybody's role.
        Namespace::LogCollector | Namespace::Siem => token.scopes,
        Namespace::Api => {
            let held = owner.map_or(ScopeSet::EMPTY, |p| p.scopes_at(now));
            if held.is_empty() {
                return Err(Reason::RoleInactive);
            }
            token.scopes.intersect(held)
        }
    };
    if effective.is_empty() || !required.is_subset_of(effective) {
        return Err(Reason::InsufficientScope);
    }
    Ok(effective)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Assignment, Networks, PrincipalId, Role, Scope, TenantId};
    use chrono::TimeDelta;

    fn actor(scopes: ScopeSet) -> Actor {
        Actor {
            tenant: TenantId::parse("contoso").unwrap(),
            principal: PrincipalId::parse("alice").unwrap(),
            scopes,
        }
    }

    fn token(ns: Namespace, scopes: ScopeSet) -> Token {
        Token::for_tests(ns, "alice", scopes)
    }

    fn owner(role: Role) -> Principal {
        Principal {
            tenant: TenantId::parse("contoso").unwrap(),
            id: PrincipalId::parse("alice").unwrap(),
            display_name: crate::domain::DisplayName::parse("Alice").unwrap(),
            role,
            assignment: Assignment::Active,
            activation_end: None,
        }
    }

    #[test]
    fn new_token_scopes_never_exceed_the_issuer() {
        let reader = actor(Role::Reader.scopes());
        let write = ScopeSet::of(&[Scope::Write]);
        assert_eq!(
            scopes_for_new_token(&reader, Namespace::Api, ScopeSet::EMPTY),
            Ok(Role::Reader.scopes())
        );
        assert_eq!(
            scopes_for_new_token(&reader, Namespace::Api, write),
            Err(Denied::Raise(write))
        );
        assert_eq!(
            scopes_for_new_token(&reader, Namespace::Siem, ScopeSet::EMPTY),
            Err(Denied::NotAdmin)
        );
        assert_eq!(
            scopes_for_new_token(&actor(ScopeSet::EMPTY), Namespace::Api, ScopeSet::EMPTY),
            Err(Denied::NoScopes)
        );
    }

    #[test]
    fn judge_narrows_to_the_owner_now() {
        let now = Utc::now();
        let t = token(Namespace::Api, Role::Operator.scopes());
        let op = owner(Role::Operator);
        let rd = owner(Role::Reader);
        let read = ScopeSet::of(&[Scope::Read]);
        let write = ScopeSet::of(&[Scope::Write]);
        assert_eq!(
            judge(&t, Some(&op), Namespace::Api, write, None, now),
            Ok(Role::Operator.scopes())
        );
        assert_eq!(
            judge(&t, Some(&rd), Namespace::Api, ScopeSet::EMPTY, None, now),
            Ok(read)
        );
        assert_eq!(
            judge(&t, Some(&rd), Namespace::Api, write, None, now),
            Err(Reason::InsufficientScope)
        );
        assert_eq!(
            judge(&t, None, Namespace::Api, read, None, now),
            Err(Reason::RoleInactive)
        );
        assert_eq!(
            judge(&t, Some(&op), Namespace::Siem, read, None, now),
            Err(Reason::WrongNamespace)
        );
        let mut expiring = t.clone();
        expiring.expires_at = Some(now);
        assert_eq!(
            judge(&expiring, Some(&op), Namespace::Api, read, None, now),
            Err(Reason::Expired)
        );
        let mut revoked = t.clone();
        revoked.revoked_at = Some(now - TimeDelta::seconds(1));
        assert_eq!(
            judge(&revoked, Some(&op), Namespace::Api, read, None, now),
            Err(Reason::Revoked)
        );
    }

    #[test]
    fn a_bound_token_needs_an_address_inside_its_networks() {
        let now = Utc::now();
        let mut t = token(Namespace::LogCollector, Role::Reader.scopes());
        t.allowed = Networks::parse(["203.0.113.0/24", "2001:db8::/32"]).unwrap();
        let judged = |t: &Token, client: Option<&str>| {
            judge(
                t,
                None,
                Namespace::LogCollector,
                ScopeSet::EMPTY,
                client.map(|c| c.parse().unwrap()),
                now,
            )
        };
        assert!(judged(&t, Some("203.0.113.7")).is_ok());
        assert!(judged(&t, Some("2001:db8::7")).is_ok());
        assert_eq!(
            judged(&t, Some("198.51.100.1")),
            Err(Reason::AddressNotAllowed)
        );
        assert_eq!(
            judged(&t, None),
            Err(Reason::AddressNotAllowed),
            "fails closed"
        );
        // Revocation and expiry are said first.
        t.revoked_at = Some(now);
        assert_eq!(judged(&t, None), Err(Reason::Revoked));
    }

    #[test]
    fn tenant_tokens_ignore_principals() {
        let t = token(Namespace::Siem, Role::Reader.scopes());
        assert_eq!(
            judge(&t, None, Namespace::Siem, ScopeSet::EMPTY, None, Utc::now()),
            Ok(Role::Reader.scopes())
        );
    }
}
