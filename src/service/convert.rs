//! Conversions between protobuf messages and domain types.

use super::proto;
use crate::domain::{
    Assignment, NameError, Namespace, Principal, PrincipalId, Reason, Role, ScopeSet, Token,
    TokenStatus,
};
use crate::engine::{Engine, Error};
use chrono::{DateTime, Utc};
use prost_types::Timestamp;

pub(crate) fn field<T>(field: &'static str, r: Result<T, NameError>) -> Result<T, Error> {
    r.map_err(|e| Error::invalid(field, e))
}

/// A namespace from the wire; unset means `API`.
pub(crate) fn namespace(field: &'static str, v: i32) -> Result<Namespace, Error> {
    match proto::Namespace::try_from(v) {
        Ok(proto::Namespace::Unspecified | proto::Namespace::Api) => Ok(Namespace::Api),
        Ok(proto::Namespace::LogCollector) => Ok(Namespace::LogCollector),
        Ok(proto::Namespace::Siem) => Ok(Namespace::Siem),
        Err(_) => Err(Error::invalid(
            field,
            format!("unknown namespace value {v}"),
        )),
    }
}

pub(crate) fn namespace_to(ns: Namespace) -> proto::Namespace {
    match ns {
        Namespace::Api => proto::Namespace::Api,
        Namespace::LogCollector => proto::Namespace::LogCollector,
        Namespace::Siem => proto::Namespace::Siem,
    }
}

/// A status filter from the wire; unset means no filter.
pub(crate) fn status_filter(v: i32) -> Result<Option<TokenStatus>, Error> {
    match proto::TokenStatus::try_from(v) {
        Ok(proto::TokenStatus::Unspecified) => Ok(None),
        Ok(proto::TokenStatus::Generated) => Ok(Some(TokenStatus::Generated)),
        Ok(proto::TokenStatus::Active) => Ok(Some(TokenStatus::Active)),
        Ok(proto::TokenStatus::Inactive) => Ok(Some(TokenStatus::Inactive)),
        Err(_) => Err(Error::invalid(
            "status",
            format!("unknown status value {v}"),
        )),
    }
}

fn status_to(s: TokenStatus) -> proto::TokenStatus {
    match s {
        TokenStatus::Generated => proto::TokenStatus::Generated,
        TokenStatus::Active => proto::TokenStatus::Active,
        TokenStatus::Inactive => proto::TokenStatus::Inactive,
    }
}

pub(crate) fn reason_to(r: Reason) -> proto::Reason {
    match r {
        Reason::Malformed => proto::Reason::Malformed,
        Reason::NotFound => proto::Reason::NotFound,
        Reason::Revoked => proto::Reason::Revoked,
        Reason::Expired => proto::Reason::Expired,
        Reason::WrongNamespace => proto::Reason::WrongNamespace,
        Reason::RoleInactive => proto::Reason::RoleInactive,
        Reason::InsufficientScope => proto::Reason::InsufficientScope,
    }
}

pub(crate) fn scopes(field: &'static str, names: &[String]) -> Result<ScopeSet, Error> {
    ScopeSet::parse(names.iter().map(String::as_str)).map_err(|e| Error::invalid(field, e))
}

pub(crate) fn scope_names(s: ScopeSet) -> Vec<String> {
    s.names().into_iter().map(str::to_owned).collect()
}

/// A timestamp from the wire, checked for range and truncated to microseconds.
pub(crate) fn time(field: &'static str, t: &Timestamp) -> Result<DateTime<Utc>, Error> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Error::invalid(field, "nanos must be in 0..1e9"));
    }
    // Up to the end of year 9999, as google.protobuf.Timestamp documents.
    if !(0..=253_402_300_799).contains(&t.seconds) {
        return Err(Error::invalid(field, "must be between 1970 and 9999"));
    }
    DateTime::from_timestamp(t.seconds, (t.nanos / 1000) as u32 * 1000)
        .ok_or_else(|| Error::invalid(field, "out of range"))
}

pub(crate) fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub(crate) fn token_to(engine: &Engine, t: &Token) -> proto::Token {
    proto::Token {
        id: t.id.as_str().to_owned(),
        tenant: t.tenant.as_str().to_owned(),
        namespace: namespace_to(t.namespace) as i32,
        name: t.name.as_str().to_owned(),
        subject: t.subject.as_str().to_owned(),
        creator: t.creator.as_str().to_owned(),
        scopes: scope_names(t.scopes),
        create_time: Some(timestamp(t.created_at)),
        last_use_time: t.last_used_at.map(timestamp),
        expire_time: t.expires_at.map(timestamp),
        status: status_to(engine.status(t)) as i32,
        replaces_id: t
            .replaces
            .as_ref()
            .map_or_else(String::new, |r| r.as_str().to_owned()),
    }
}

pub(crate) fn role(field: &'static str, v: i32) -> Result<Role, Error> {
    match proto::Role::try_from(v) {
        Ok(proto::Role::Admin) => Ok(Role::Admin),
        Ok(proto::Role::Operator) => Ok(Role::Operator),
        Ok(proto::Role::Reader) => Ok(Role::Reader),
        Ok(proto::Role::Unspecified) => Err(Error::invalid(field, "a role is required")),
        Err(_) => Err(Error::invalid(field, format!("unknown role value {v}"))),
    }
}

pub(crate) fn assignment(field: &'static str, v: i32) -> Result<Assignment, Error> {
    match proto::Assignment::try_from(v) {
        Ok(proto::Assignment::Unspecified | proto::Assignment::Active) => Ok(Assignment::Active),
        Ok(proto::Assignment::Eligible) => Ok(Assignment::Eligible),
        Err(_) => Err(Error::invalid(
            field,
            format!("unknown assignment value {v}"),
        )),
    }
}

pub(crate) fn principal_to(p: &Principal, now: DateTime<Utc>) -> proto::Principal {
    proto::Principal {
        tenant: p.tenant.as_str().to_owned(),
        id: p.id.as_str().to_owned(),
        display_name: p.display_name.clone(),
        role: match p.role {
            Role::Admin => proto::Role::Admin,
            Role::Operator => proto::Role::Operator,
            Role::Reader => proto::Role::Reader,
        } as i32,
        assignment: match p.assignment {
            Assignment::Active => proto::Assignment::Active,
            Assignment::Eligible => proto::Assignment::Eligible,
        } as i32,
        activation_end_time: p.current_activation_end(now).map(timestamp),
    }
}

pub(crate) fn principal_id(field: &'static str, s: &str) -> Result<PrincipalId, Error> {
    self::field(field, PrincipalId::parse(s))
}

/// A namespace from the wire where "unset" must stay distinguishable.
pub(crate) fn namespace_opt(field: &'static str, v: i32) -> Result<Option<Namespace>, Error> {
    if v == proto::Namespace::Unspecified as i32 {
        Ok(None)
    } else {
        namespace(field, v).map(Some)
    }
}

/// A duration from the wire, checked for range and sign (microsecond precision).
pub(crate) fn duration(
    field: &'static str,
    d: &prost_types::Duration,
) -> Result<chrono::TimeDelta, Error> {
    // google.protobuf.Duration: ±10000 years, nanos of the same sign as seconds.
    if d.seconds.abs() > 315_576_000_000
        || d.nanos.abs() >= 1_000_000_000
        || (d.seconds > 0 && d.nanos < 0)
        || (d.seconds < 0 && d.nanos > 0)
    {
        return Err(Error::invalid(field, "not a valid duration"));
    }
    Ok(chrono::TimeDelta::seconds(d.seconds)
        + chrono::TimeDelta::microseconds(i64::from(d.nanos / 1000)))
}

pub(crate) fn duration_to(d: chrono::TimeDelta) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.num_seconds(),
        nanos: (d.subsec_nanos()),
    }
}

pub(crate) fn tenant_to(t: &crate::domain::Tenant) -> proto::Tenant {
    proto::Tenant {
        id: t.id.as_str().to_owned(),
        display_name: t.display_name.clone(),
        api_url: t.api_url.clone(),
        max_token_lifetime: t.max_token_lifetime.map(duration_to),
    }
}

pub(crate) fn audit_to(e: &crate::domain::AuditEvent) -> proto::AuditEvent {
    use crate::domain::AuditAction as A;
    proto::AuditEvent {
        id: e.seq.to_string(),
        tenant: e.tenant.as_str().to_owned(),
        event_time: Some(timestamp(e.at)),
        actor: e.actor.clone(),
        action: match e.action {
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
        } as i32,
        target: e.target.clone(),
        outcome: e.outcome.clone(),
        detail: e.detail.clone(),
    }
}
