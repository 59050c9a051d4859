//! Domain answers into responses.

use super::page::{Cursor, Pager};
use super::proto;
use crate::domain::{
    Assignment, AuditAction, AuditEvent, Namespace, Page, Principal, Reason, Role, ScopeSet,
    Tenant, TokenId, TokenStatus, TokenView,
};
use crate::usecase::{Generated, Validated};
use chrono::{DateTime, TimeDelta, Utc};
use prost_types::{Duration, Timestamp};

fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn duration(d: TimeDelta) -> Duration {
    Duration {
        seconds: d.num_seconds(),
        nanos: d.subsec_nanos(),
    }
}

fn scope_names(s: ScopeSet) -> Vec<String> {
    s.names().into_iter().map(str::to_owned).collect()
}

impl From<Namespace> for proto::Namespace {
    fn from(ns: Namespace) -> Self {
        match ns {
            Namespace::Api => proto::Namespace::Api,
            Namespace::LogCollector => proto::Namespace::LogCollector,
            Namespace::Siem => proto::Namespace::Siem,
        }
    }
}

impl From<TokenStatus> for proto::TokenStatus {
    fn from(s: TokenStatus) -> Self {
        match s {
            TokenStatus::Generated => proto::TokenStatus::Generated,
            TokenStatus::Active => proto::TokenStatus::Active,
            TokenStatus::Inactive => proto::TokenStatus::Inactive,
        }
    }
}

impl From<Reason> for proto::Reason {
    fn from(r: Reason) -> Self {
        match r {
            Reason::Malformed => proto::Reason::Malformed,
            Reason::NotFound => proto::Reason::NotFound,
            Reason::Revoked => proto::Reason::Revoked,
            Reason::Expired => proto::Reason::Expired,
            Reason::WrongNamespace => proto::Reason::WrongNamespace,
            Reason::RoleInactive => proto::Reason::RoleInactive,
            Reason::InsufficientScope => proto::Reason::InsufficientScope,
            Reason::AddressNotAllowed => proto::Reason::AddressNotAllowed,
        }
    }
}

impl From<&TokenView> for proto::Token {
    fn from(v: &TokenView) -> Self {
        v.clone().into()
    }
}

/// By value: the token's strings move into the response (the validate path renders one per
/// call).
impl From<TokenView> for proto::Token {
    fn from(v: TokenView) -> Self {
        let t = v.token;
        proto::Token {
            namespace: proto::Namespace::from(t.namespace) as i32,
            scopes: scope_names(t.scopes),
            create_time: Some(timestamp(t.created_at)),
            last_use_time: t.last_used_at.map(timestamp),
            expire_time: t.expires_at.map(timestamp),
            status: proto::TokenStatus::from(v.status) as i32,
            replaces_id: t.replaces.map(TokenId::into_string).unwrap_or_default(),
            allowed_cidrs: if t.allowed.is_empty() {
                Vec::new()
            } else {
                t.allowed.names()
            },
            id: t.id.into_string(),
            tenant: t.tenant.into_string(),
            name: t.name.into_string(),
            subject: t.subject.into_string(),
            creator: t.creator.into_string(),
        }
    }
}

impl From<Generated> for proto::GenerateResponse {
    fn from(g: Generated) -> Self {
        proto::GenerateResponse {
            token: Some((&g.token).into()),
            secret: g.string.expose().to_owned(),
            api_url: g.api_url,
            expire_time_clamped: g.expiry_clamped,
        }
    }
}

impl From<Result<Validated, Reason>> for proto::ValidateResponse {
    fn from(verdict: Result<Validated, Reason>) -> Self {
        match verdict {
            Ok(v) => proto::ValidateResponse {
                valid: true,
                reason: proto::Reason::Unspecified as i32,
                effective_scopes: scope_names(v.effective),
                token: Some(v.token.into()),
            },
            Err(reason) => proto::ValidateResponse {
                valid: false,
                reason: proto::Reason::from(reason) as i32,
                token: None,
                effective_scopes: Vec::new(),
            },
        }
    }
}

/// A page of tokens and the token of the next one.
pub(super) fn token_page(page: Page<TokenView>, pager: &Pager) -> proto::ListResponse {
    let last = page.items.last().map(|v| Cursor {
        created_micros: v.token.created_at.timestamp_micros(),
        key: v.token.id.as_str().to_owned(),
    });
    proto::ListResponse {
        next_page_token: pager.next(page.more, last),
        tokens: page.items.iter().map(Into::into).collect(),
    }
}

impl From<Role> for proto::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => proto::Role::Admin,
            Role::Operator => proto::Role::Operator,
            Role::Reader => proto::Role::Reader,
        }
    }
}

impl From<Assignment> for proto::Assignment {
    fn from(a: Assignment) -> Self {
        match a {
            Assignment::Active => proto::Assignment::Active,
            Assignment::Eligible => proto::Assignment::Eligible,
        }
    }
}

/// A principal as shown: `activation_end` is set only while an activation runs (the use
/// cases clear it otherwise).
impl From<&Principal> for proto::Principal {
    fn from(p: &Principal) -> Self {
        proto::Principal {
            tenant: p.tenant.as_str().to_owned(),
            id: p.id.as_str().to_owned(),
            display_name: p.display_name.as_str().to_owned(),
            role: proto::Role::from(p.role) as i32,
            assignment: proto::Assignment::from(p.assignment) as i32,
            activation_end_time: p.activation_end.map(timestamp),
        }
    }
}

pub(super) fn principal_page(
    page: Page<Principal>,
    pager: &Pager,
) -> proto::ListPrincipalsResponse {
    let last = page.items.last().map(|p| Cursor {
        created_micros: 0,
        key: p.id.as_str().to_owned(),
    });
    proto::ListPrincipalsResponse {
        next_page_token: pager.next(page.more, last),
        principals: page.items.iter().map(Into::into).collect(),
    }
}

impl From<&Tenant> for proto::Tenant {
    fn from(t: &Tenant) -> Self {
        proto::Tenant {
            id: t.id.as_str().to_owned(),
            display_name: t.display_name.as_str().to_owned(),
            api_url: t.api_url.as_str().to_owned(),
            max_token_lifetime: t.max_token_lifetime.map(duration),
            revoke_unused_after: t.revoke_unused_after.map(duration),
            require_allowed_cidrs: t.require_allowed_cidrs,
        }
    }
}

impl From<AuditAction> for proto::AuditAction {
    fn from(a: AuditAction) -> Self {
        use AuditAction as A;
        match a {
            A::TokenGenerated => proto::AuditAction::TokenGenerated,
            A::TokenRotated => proto::AuditAction::TokenRotated,
            A::TokenRevoked => proto::AuditAction::TokenRevoked,
            A::PrincipalCreated => proto::AuditAction::PrincipalCreated,
            A::PrincipalChanged => proto::AuditAction::PrincipalChanged,
            A::PrincipalDeleted => proto::AuditAction::PrincipalDeleted,
            A::RoleActivated => proto::AuditAction::RoleActivated,
            A::RoleDeactivated => proto::AuditAction::RoleDeactivated,
            A::ActivationExpired => proto::AuditAction::ActivationExpired,
            A::TenantCreated => proto::AuditAction::TenantCreated,
            A::TenantChanged => proto::AuditAction::TenantChanged,
            A::TokenLeaked => proto::AuditAction::TokenLeaked,
            A::TokenRefused => proto::AuditAction::TokenRefused,
        }
    }
}

impl From<&AuditEvent> for proto::AuditEvent {
    fn from(e: &AuditEvent) -> Self {
        proto::AuditEvent {
            id: e.seq.to_string(),
            sequence: e.sequence,
            tenant: e.tenant.as_str().to_owned(),
            event_time: Some(timestamp(e.at)),
            actor: e.actor.clone(),
            action: proto::AuditAction::from(e.action) as i32,
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            detail: e.detail.clone(),
        }
    }
}

pub(super) fn audit_page(page: Page<AuditEvent>, pager: &Pager) -> proto::ListAuditEventsResponse {
    let last = page.items.last().map(|e| Cursor {
        created_micros: e.seq,
        key: String::new(),
    });
    proto::ListAuditEventsResponse {
        next_page_token: pager.next(page.more, last),
        events: page.items.iter().map(Into::into).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Spelled;

    /// The domain's spelling tables name each value as protobuf does, so audit details,
    /// labels and routes derived from them agree with what clients read through the API.
    #[test]
    fn the_domain_spells_every_enum_as_the_proto_does() {
        for &v in Namespace::ALL {
            assert_eq!(proto::Namespace::from(v).as_str_name(), v.proto_name());
        }
        for &v in Reason::ALL {
            assert_eq!(proto::Reason::from(v).as_str_name(), v.proto_name());
        }
        for &v in TokenStatus::ALL {
            assert_eq!(proto::TokenStatus::from(v).as_str_name(), v.proto_name());
        }
        for &v in AuditAction::ALL {
            assert_eq!(proto::AuditAction::from(v).as_str_name(), v.proto_name());
        }
        for &v in Role::ALL {
            assert_eq!(proto::Role::from(v).as_str_name(), v.proto_name());
        }
        for &v in Assignment::ALL {
            assert_eq!(proto::Assignment::from(v).as_str_name(), v.proto_name());
        }
    }
}
