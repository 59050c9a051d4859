//! Requests into use-case inputs: every field parsed into its domain type once, every
//! refusal an `INVALID_ARGUMENT` naming the field. Listings are parsed in the context of the
//! caller, to whom their page tokens are bound.

use super::page::{Pager, not_ours, page_size};
use super::proto;
use crate::domain::{
    Actor, ApiUrl, Assignment, AuditTarget, DisplayName, Justification, MAX_GRACE, NameError,
    Namespace, Networks, PrincipalId, Role, ScopeSet, Subject, TenantId, TokenId, TokenName,
    TokenStatus,
};
use crate::usecase::{
    ActivateInput, AuditQuery, Error, GenerateInput, ListInput, PrincipalInput, PrincipalQuery,
    Rotation, TenantUpdate, ValidateInput,
};
use chrono::{DateTime, TimeDelta, Utc};
use prost_types::{Duration, Timestamp};

type Result<T> = std::result::Result<T, Error>;

fn field<T>(field: &'static str, r: std::result::Result<T, NameError>) -> Result<T> {
    r.map_err(|e| Error::invalid(field, e))
}

/// An optional text field: empty means `None`.
fn optional<T>(
    name: &'static str,
    s: &str,
    parse: impl FnOnce(&str) -> std::result::Result<T, NameError>,
) -> Result<Option<T>> {
    if s.is_empty() {
        Ok(None)
    } else {
        field(name, parse(s)).map(Some)
    }
}

/// `WatchAuditEventsRequest.after_sequence`: a sequence the caller has, 0 for none.
pub(super) fn after_sequence(n: i64) -> Result<i64> {
    if n < 0 {
        return Err(Error::invalid(
            "after_sequence",
            "must be at least 0 (0: from the first event)",
        ));
    }
    Ok(n)
}

pub(super) fn token_id(name: &'static str, s: &str) -> Result<TokenId> {
    field(name, TokenId::parse(s))
}

pub(super) fn principal_id(name: &'static str, s: &str) -> Result<PrincipalId> {
    field(name, PrincipalId::parse(s))
}

/// A namespace where "unset" must stay distinguishable.
fn namespace_opt(name: &'static str, v: i32) -> Result<Option<Namespace>> {
    match proto::Namespace::try_from(v) {
        Ok(proto::Namespace::Unspecified) => Ok(None),
        Ok(proto::Namespace::Api) => Ok(Some(Namespace::Api)),
        Ok(proto::Namespace::LogCollector) => Ok(Some(Namespace::LogCollector)),
        Ok(proto::Namespace::Siem) => Ok(Some(Namespace::Siem)),
        Err(_) => Err(Error::invalid(name, format!("unknown namespace value {v}"))),
    }
}

/// A namespace; unset means `API`.
fn namespace(name: &'static str, v: i32) -> Result<Namespace> {
    Ok(namespace_opt(name, v)?.unwrap_or(Namespace::Api))
}

/// A status filter; unset means no filter.
fn status_filter(v: i32) -> Result<Option<TokenStatus>> {
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

fn role(name: &'static str, v: i32) -> Result<Role> {
    match proto::Role::try_from(v) {
        Ok(proto::Role::Admin) => Ok(Role::Admin),
        Ok(proto::Role::Operator) => Ok(Role::Operator),
        Ok(proto::Role::Reader) => Ok(Role::Reader),
        Ok(proto::Role::Unspecified) => Err(Error::invalid(name, "a role is required")),
        Err(_) => Err(Error::invalid(name, format!("unknown role value {v}"))),
    }
}

/// An assignment; unset means `ACTIVE`.
fn assignment(name: &'static str, v: i32) -> Result<Assignment> {
    match proto::Assignment::try_from(v) {
        Ok(proto::Assignment::Unspecified | proto::Assignment::Active) => Ok(Assignment::Active),
        Ok(proto::Assignment::Eligible) => Ok(Assignment::Eligible),
        Err(_) => Err(Error::invalid(
            name,
            format!("unknown assignment value {v}"),
        )),
    }
}

fn scopes(name: &'static str, names: &[String]) -> Result<ScopeSet> {
    ScopeSet::parse(names.iter().map(String::as_str)).map_err(|e| Error::invalid(name, e))
}

/// A timestamp, checked for range and truncated to microseconds.
fn time(name: &'static str, t: &Timestamp) -> Result<DateTime<Utc>> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Error::invalid(name, "nanos must be in 0..1e9"));
    }
    // Up to the end of year 9999, as google.protobuf.Timestamp documents.
    if !(0..=253_402_300_799).contains(&t.seconds) {
        return Err(Error::invalid(name, "must be between 1970 and 9999"));
    }
    DateTime::from_timestamp(t.seconds, (t.nanos / 1000) as u32 * 1000)
        .ok_or_else(|| Error::invalid(name, "out of range"))
}

/// A duration, checked for range and sign (microsecond precision).
fn duration(name: &'static str, d: &Duration) -> Result<TimeDelta> {
    // google.protobuf.Duration: ±10000 years, nanos of the same sign as seconds. Checked
    // before any arithmetic: `unsigned_abs` cannot overflow, even for i64::MIN.
    if d.seconds.unsigned_abs() > 315_576_000_000
        || d.nanos.unsigned_abs() >= 1_000_000_000
        || (d.seconds > 0 && d.nanos < 0)
        || (d.seconds < 0 && d.nanos > 0)
    {
        return Err(Error::invalid(name, "not a valid duration"));
    }
    Ok(TimeDelta::seconds(d.seconds) + TimeDelta::microseconds(i64::from(d.nanos / 1000)))
}

/// A positive duration, or none.
fn positive(name: &'static str, d: Option<&Duration>) -> Result<Option<TimeDelta>> {
    let Some(d) = d else { return Ok(None) };
    let d = duration(name, d)?;
    if d <= TimeDelta::zero() {
        return Err(Error::invalid(name, "must be positive"));
    }
    Ok(Some(d))
}

/// An IP address written by a caller; empty means none.
fn address(name: &'static str, s: &str) -> Result<Option<std::net::IpAddr>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.trim()
        .parse::<std::net::IpAddr>()
        .map(|a| Some(a.to_canonical()))
        .map_err(|_| Error::invalid(name, "must be an IPv4 or IPv6 address"))
}

impl TryFrom<proto::GenerateRequest> for GenerateInput {
    type Error = Error;

    fn try_from(r: proto::GenerateRequest) -> Result<Self> {
        let rotate = match r.rotate_id.as_str() {
            "" if r.grace_period.is_some() => {
                return Err(Error::invalid("grace_period", "only with rotate_id"));
            }
            "" => None,
            id => {
                let grace = match &r.grace_period {
                    Some(d) => duration("grace_period", d)?,
                    None => TimeDelta::zero(),
                };
                if grace < TimeDelta::zero() || grace > MAX_GRACE {
                    return Err(Error::invalid(
                        "grace_period",
                        "must be between 0 and 7 days",
                    ));
                }
                Some(Rotation {
                    old: token_id("rotate_id", id)?,
                    grace,
                })
            }
        };
        Ok(GenerateInput {
            name: optional("name", &r.name, TokenName::parse)?,
            namespace: namespace_opt("namespace", r.namespace)?,
            rotate,
            scopes: scopes("scopes", &r.scopes)?,
            subject: optional("subject", &r.subject, Subject::parse)?,
            expires_at: r
                .expire_time
                .as_ref()
                .map(|t| time("expire_time", t))
                .transpose()?,
            allowed: Networks::parse(r.allowed_cidrs.iter().map(String::as_str))
                .map_err(|e| Error::invalid("allowed_cidrs", e))?,
        })
    }
}

/// A listing request, parsed: its input and the pager of its page tokens.
#[derive(Debug)]
pub(super) struct Listing<I> {
    pub(crate) input: I,
    pub(crate) pager: Pager,
}

impl TryFrom<(proto::ListRequest, &Actor)> for Listing<ListInput> {
    type Error = Error;

    fn try_from((r, actor): (proto::ListRequest, &Actor)) -> Result<Self> {
        // Every filter, and who asks: a page token carries on only the listing it came from.
        let spelled = |d: &Option<Duration>| {
            d.as_ref()
                .map(|d| format!("{}.{:09}", d.seconds, d.nanos))
                .unwrap_or_default()
        };
        let pager = Pager::new(format!(
            "{}|{}|{}|{}|{}|{}|{}",
            r.namespace,
            r.status,
            r.owner,
            spelled(&r.expire_within),
            spelled(&r.retire_within),
            actor.tenant,
            actor.principal
        ));
        let after = pager
            .decode(&r.page_token)?
            .map(|c| {
                let t = DateTime::from_timestamp_micros(c.created_micros);
                let id = TokenId::parse(&c.key).ok();
                t.zip(id).ok_or_else(not_ours)
            })
            .transpose()?;
        let input = ListInput {
            namespace: namespace("namespace", r.namespace)?,
            status: status_filter(r.status)?,
            owner: optional("owner", &r.owner, Subject::parse)?,
            limit: page_size(r.page_size)?,
            after,
            expire_within: positive("expire_within", r.expire_within.as_ref())?,
            retire_within: positive("retire_within", r.retire_within.as_ref())?,
        };
        Ok(Listing { input, pager })
    }
}

impl TryFrom<proto::ValidateRequest> for ValidateInput {
    type Error = Error;

    fn try_from(r: proto::ValidateRequest) -> Result<Self> {
        let namespace = namespace("namespace", r.namespace)?;
        let required = scopes("required_scopes", &r.required_scopes)?;
        let client = address("client_address", &r.client_address)?;
        Ok(crate::gate::input(
            Some(&r.token),
            namespace,
            required,
            client,
        ))
    }
}

impl TryFrom<proto::PutPrincipalRequest> for PrincipalInput {
    type Error = Error;

    fn try_from(r: proto::PutPrincipalRequest) -> Result<Self> {
        let p = r
            .principal
            .ok_or_else(|| Error::invalid("principal", "is required"))?;
        Ok(PrincipalInput {
            tenant: optional("principal.tenant", &p.tenant, TenantId::parse)?,
            id: principal_id("principal.id", &p.id)?,
            display_name: optional(
                "principal.display_name",
                &p.display_name,
                DisplayName::parse,
            )?,
            role: role("principal.role", p.role)?,
            assignment: assignment("principal.assignment", p.assignment)?,
        })
    }
}

impl TryFrom<(proto::ListPrincipalsRequest, &Actor)> for Listing<PrincipalQuery> {
    type Error = Error;

    fn try_from((r, actor): (proto::ListPrincipalsRequest, &Actor)) -> Result<Self> {
        let pager = Pager::new(format!("principals|{}", actor.tenant));
        let limit = page_size(r.page_size)?;
        let after = pager
            .decode(&r.page_token)?
            .map(|c| PrincipalId::parse(&c.key).map_err(|_| not_ours()))
            .transpose()?;
        Ok(Listing {
            input: PrincipalQuery { after, limit },
            pager,
        })
    }
}

impl TryFrom<proto::ActivateRoleRequest> for ActivateInput {
    type Error = Error;

    fn try_from(r: proto::ActivateRoleRequest) -> Result<Self> {
        Ok(ActivateInput {
            id: principal_id("id", &r.id)?,
            duration: r
                .duration
                .as_ref()
                .ok_or_else(|| Error::invalid("duration", "is required"))
                .and_then(|d| duration("duration", d))?,
            justification: field("justification", Justification::parse(&r.justification))?,
        })
    }
}

/// The fields an empty `update_mask` stands for.
const TENANT_FIELDS: [&str; 5] = [
    "display_name",
    "api_url",
    "max_token_lifetime",
    "revoke_unused_after",
    "require_allowed_cidrs",
];

/// The shortest `revoke_unused_after`: last-use times are written behind (seconds to
/// minutes), so a shorter policy could retire a token in use.
const MIN_UNUSED: TimeDelta = TimeDelta::days(1);

/// A tenant's retirement policy: unset or zero removes it; otherwise whole seconds, at least
/// one day.
fn retirement(d: Option<&Duration>) -> Result<Option<TimeDelta>> {
    const FIELD: &str = "tenant.revoke_unused_after";
    let Some(d) = d else { return Ok(None) };
    let after = duration(FIELD, d)?;
    if d.seconds == 0 && d.nanos == 0 {
        return Ok(None);
    }
    if d.nanos != 0 || after < MIN_UNUSED {
        return Err(Error::invalid(
            FIELD,
            "must be a whole number of seconds, at least one day (or 0 for none)",
        ));
    }
    Ok(Some(after))
}

/// A tenant's cap on token lifetimes: unset or zero removes it; anything else must be a
/// whole number of seconds, at least one — a value that would be rounded to "no cap" is
/// refused rather than honoured as its opposite.
fn lifetime_cap(d: Option<&Duration>) -> Result<Option<TimeDelta>> {
    const FIELD: &str = "tenant.max_token_lifetime";
    let Some(d) = d else { return Ok(None) };
    let cap = duration(FIELD, d)?;
    if cap < TimeDelta::zero() {
        return Err(Error::invalid(FIELD, "must not be negative"));
    }
    if d.seconds == 0 && d.nanos == 0 {
        return Ok(None);
    }
    if d.nanos != 0 || d.seconds < 1 {
        return Err(Error::invalid(
            FIELD,
            "must be a whole number of seconds, at least 1s (or 0 for no cap)",
        ));
    }
    Ok(Some(cap))
}

impl TryFrom<proto::UpdateTenantRequest> for TenantUpdate {
    type Error = Error;

    fn try_from(r: proto::UpdateTenantRequest) -> Result<Self> {
        let t = r
            .tenant
            .ok_or_else(|| Error::invalid("tenant", "is required"))?;
        let paths: Vec<String> = match r.update_mask {
            Some(m) if !m.paths.is_empty() => m.paths,
            _ => TENANT_FIELDS.map(String::from).to_vec(),
        };
        let mut update = TenantUpdate::default();
        for path in paths {
            match path.as_str() {
                "display_name" => {
                    update.display_name = Some(field(
                        "tenant.display_name",
                        DisplayName::parse(&t.display_name),
                    )?);
                }
                "api_url" => {
                    update.api_url = Some(field("tenant.api_url", ApiUrl::parse(&t.api_url))?);
                }
                "max_token_lifetime" => {
                    update.max_token_lifetime = Some(lifetime_cap(t.max_token_lifetime.as_ref())?);
                }
                "revoke_unused_after" => {
                    update.revoke_unused_after = Some(retirement(t.revoke_unused_after.as_ref())?);
                }
                "require_allowed_cidrs" => {
                    update.require_allowed_cidrs = Some(t.require_allowed_cidrs);
                }
                other => {
                    return Err(Error::invalid(
                        "update_mask",
                        format!("unknown or immutable field {other:?}"),
                    ));
                }
            }
        }
        Ok(update)
    }
}

impl TryFrom<(proto::ListAuditEventsRequest, &Actor)> for Listing<AuditQuery> {
    type Error = Error;

    fn try_from((r, actor): (proto::ListAuditEventsRequest, &Actor)) -> Result<Self> {
        let pager = Pager::new(format!("audit|{}|{}", actor.tenant, r.target));
        let limit = page_size(r.page_size)?;
        let target = optional("target", &r.target, AuditTarget::parse)?;
        let before = pager.decode(&r.page_token)?.map(|c| c.created_micros);
        Ok(Listing {
            input: AuditQuery {
                target,
                before,
                limit,
            },
            pager,
        })
    }
}

#[cfg(test)]
mod tests {
    //! No request, however odd its numbers and strings, makes a converter panic: each either
    //! parses or is refused with INVALID_ARGUMENT naming a field.

    use super::*;
    use crate::domain::TokenString;
    use proptest::prelude::*;

    /// Numbers with their extremes over-represented.
    fn int64() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0),
            Just(-1),
            Just(315_576_000_001),
            Just(253_402_300_800),
            any::<i64>()
        ]
    }

    fn int32() -> impl Strategy<Value = i32> {
        prop_oneof![
            Just(i32::MIN),
            Just(i32::MAX),
            Just(0),
            Just(-1),
            Just(999_999_999),
            Just(1_000_000_000),
            any::<i32>()
        ]
    }

    fn durations() -> impl Strategy<Value = Option<Duration>> {
        proptest::option::of(
            (int64(), int32()).prop_map(|(seconds, nanos)| Duration { seconds, nanos }),
        )
    }

    fn timestamp() -> impl Strategy<Value = Option<Timestamp>> {
        proptest::option::of(
            (int64(), int32()).prop_map(|(seconds, nanos)| Timestamp { seconds, nanos }),
        )
    }

    /// Strings: anything, and things that almost parse.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-z0-9@._/-]{0,30}",
            "jt[als]_[0-9A-Za-z]{71}",
            "[0-9A-Za-z]{22}",
            Just(String::new()),
            Just("x".repeat(5000)),
        ]
    }

    /// Addresses and networks, well formed or not, of both families.
    fn network() -> impl Strategy<Value = String> {
        prop_oneof![
            "(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}(/[0-9]{1,3})?",
            "[0-9a-f:]{2,39}(/[0-9]{1,3})?",
            text(),
        ]
    }

    fn actor() -> Actor {
        Actor {
            tenant: TenantId::parse("contoso").unwrap(),
            principal: PrincipalId::parse("alice").unwrap(),
            scopes: ScopeSet::ALL,
        }
    }

    /// A refusal names a field.
    fn named<T>(r: Result<T>) {
        if let Err(Error::InvalidArgument { field, .. }) = &r {
            assert!(!field.is_empty());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn generate(name in text(), ns in int32(), scopes in proptest::collection::vec(text(), 0..4),
                    subject in text(), expire in timestamp(), rotate in text(), grace in durations(),
                    cidrs in proptest::collection::vec(network(), 0..4)) {
            named(GenerateInput::try_from(proto::GenerateRequest {
                name, namespace: ns, scopes, subject, expire_time: expire, rotate_id: rotate,
                grace_period: grace, allowed_cidrs: cidrs,
            }));
        }

        #[test]
        fn list(ns in int32(), status in int32(), owner in text(), size in int32(),
                page in text(), within in durations(), retire in durations()) {
            named(Listing::<ListInput>::try_from((proto::ListRequest {
                namespace: ns, status, owner, page_size: size, page_token: page,
                expire_within: within, retire_within: retire,
            }, &actor())));
        }

        #[test]
        fn validate(token in text(), ns in int32(), scopes in proptest::collection::vec(text(), 0..4),
                    client in network()) {
            named(ValidateInput::try_from(proto::ValidateRequest {
                token, namespace: ns, required_scopes: scopes, client_address: client,
            }));
        }

        #[test]
        fn principals(tenant in text(), id in text(), display in text(), role in int32(),
                      assignment in int32(), size in int32(), page in text()) {
            named(PrincipalInput::try_from(proto::PutPrincipalRequest {
                principal: Some(proto::Principal {
                    tenant, id, display_name: display, role, assignment,
                    activation_end_time: None,
                }),
            }));
            named(Listing::<PrincipalQuery>::try_from((proto::ListPrincipalsRequest {
                page_size: size, page_token: page,
            }, &actor())));
        }

        #[test]
        fn activate(id in text(), d in durations(), why in text()) {
            named(ActivateInput::try_from(proto::ActivateRoleRequest {
                id, duration: d, justification: why,
            }));
        }

        #[test]
        fn tenant_and_audit(display in text(), url in text(), max in durations(),
                            unused in durations(), require in any::<bool>(),
                            paths in proptest::collection::vec(text(), 0..4),
                            target in text(), size in int32(), page in text()) {
            named(TenantUpdate::try_from(proto::UpdateTenantRequest {
                tenant: Some(proto::Tenant {
                    id: String::new(), display_name: display, api_url: url,
                    max_token_lifetime: max, revoke_unused_after: unused,
                    require_allowed_cidrs: require,
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            }));
            named(Listing::<AuditQuery>::try_from((proto::ListAuditEventsRequest {
                target, page_size: size, page_token: page,
            }, &actor())));
        }

        #[test]
        fn token_strings(s in text()) {
            if let Some(t) = TokenString::parse(&s) {
                prop_assert_eq!(t.expose(), s.as_str());
            }
        }
    }

    /// The range oracles: what the contract (and google.protobuf's own types) allow, written
    /// out independently of the parsers, so that a converter that accepted an out-of-range
    /// number, refused an in-range one, or changed a value on the way fails.
    const MAX_DURATION_SECONDS: i64 = 315_576_000_000;
    const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

    /// A google.protobuf.Duration that is well formed, as micros (truncated toward zero).
    fn duration_oracle(d: &Duration) -> Option<i64> {
        let nanos_ok = (-999_999_999..=999_999_999).contains(&d.nanos)
            && !(d.seconds > 0 && d.nanos < 0)
            && !(d.seconds < 0 && d.nanos > 0);
        ((-MAX_DURATION_SECONDS..=MAX_DURATION_SECONDS).contains(&d.seconds) && nanos_ok)
            .then(|| d.seconds * 1_000_000 + i64::from(d.nanos / 1000))
    }

    /// Asserts that `r` is a refusal naming `field`.
    fn refused<T: std::fmt::Debug>(
        r: Result<T>,
        want: &str,
    ) -> std::result::Result<(), TestCaseError> {
        match r {
            Err(Error::InvalidArgument { field, .. }) => {
                prop_assert_eq!(field, want);
                Ok(())
            }
            other => Err(TestCaseError::fail(format!(
                "expected {want} refused, got {other:?}"
            ))),
        }
    }

    const ID: &str = "0123456789ABCDEFGHIJKL";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn page_sizes_against_their_oracle(size in int32()) {
            let r = Listing::<ListInput>::try_from((proto::ListRequest {
                page_size: size, ..Default::default()
            }, &actor()));
            match size {
                n if n < 0 => refused(r, "page_size")?,
                0 => prop_assert_eq!(r.unwrap().input.limit, 50),
                n => prop_assert_eq!(r.unwrap().input.limit, (n as u64).min(1000)),
            }
            let r = Listing::<PrincipalQuery>::try_from((proto::ListPrincipalsRequest {
                page_size: size, page_token: String::new(),
            }, &actor()));
            match size {
                n if n < 0 => refused(r, "page_size")?,
                0 => prop_assert_eq!(r.unwrap().input.limit, 50),
                n => prop_assert_eq!(r.unwrap().input.limit, (n as u64).min(1000)),
            }
        }

        #[test]
        fn enum_values_against_their_oracle(ns in int32(), status in int32()) {
            let r = Listing::<ListInput>::try_from((proto::ListRequest {
                namespace: ns, status, ..Default::default()
            }, &actor()));
            match (ns, status) {
                (0..=3, 0..=3) => {
                    let input = r.unwrap().input;
                    let want_ns = [Namespace::Api, Namespace::Api, Namespace::LogCollector, Namespace::Siem];
                    prop_assert_eq!(input.namespace, want_ns[ns as usize]);
                    let want_status = [None, Some(TokenStatus::Generated), Some(TokenStatus::Active), Some(TokenStatus::Inactive)];
                    prop_assert_eq!(input.status, want_status[status as usize]);
                }
                (0..=3, _) => refused(r, "status")?,
                _ => refused(r, "namespace")?,
            }
        }

        #[test]
        fn expire_times_against_their_oracle(seconds in int64(), nanos in int32()) {
            let r = GenerateInput::try_from(proto::GenerateRequest {
                name: "n".into(),
                expire_time: Some(Timestamp { seconds, nanos }),
                ..Default::default()
            });
            if (0..=MAX_TIMESTAMP_SECONDS).contains(&seconds) && (0..1_000_000_000).contains(&nanos) {
                let at = r.unwrap().expires_at.unwrap();
                prop_assert_eq!(at.timestamp(), seconds);
                prop_assert_eq!(at.timestamp_subsec_micros() as i32, nanos / 1000);
            } else {
                refused(r, "expire_time")?;
            }
        }

        #[test]
        fn grace_periods_against_their_oracle(seconds in prop_oneof![int64(), 0..=604_801i64], nanos in int32()) {
            let d = Duration { seconds, nanos };
            let r = GenerateInput::try_from(proto::GenerateRequest {
                rotate_id: ID.into(),
                grace_period: Some(d),
                ..Default::default()
            });
            match duration_oracle(&d) {
                Some(micros) if (0..=7 * 86_400 * 1_000_000).contains(&micros) => {
                    let rotation = r.unwrap().rotate.unwrap();
                    prop_assert_eq!(rotation.grace.num_microseconds(), Some(micros));
                }
                _ => refused(r, "grace_period")?,
            }
        }

        #[test]
        fn listing_windows_against_their_oracle(seconds in int64(), nanos in int32()) {
            let d = Duration { seconds, nanos };
            let r = Listing::<ListInput>::try_from((proto::ListRequest {
                expire_within: Some(d), ..Default::default()
            }, &actor()));
            match duration_oracle(&d) {
                Some(micros) if micros > 0 => {
                    let within = r.unwrap().input.expire_within.unwrap();
                    prop_assert_eq!(within.num_microseconds(), Some(micros));
                }
                _ => refused(r, "expire_within")?,
            }
        }

        #[test]
        fn activation_durations_against_their_oracle(seconds in int64(), nanos in int32()) {
            let d = Duration { seconds, nanos };
            let r = ActivateInput::try_from(proto::ActivateRoleRequest {
                id: "alice".into(), duration: Some(d), justification: "why".into(),
            });
            // The bounds (positive, at most the server's maximum) are the use case's, which
            // knows the maximum; the edge refuses what is not a duration at all.
            match duration_oracle(&d) {
                Some(micros) => prop_assert_eq!(r.unwrap().duration.num_microseconds(), Some(micros)),
                None => refused(r, "duration")?,
            }
        }
    }

    /// A page token carries on only the listing it came from: another `expire_within` (or
    /// none) is another listing.
    #[test]
    fn a_page_token_is_bound_to_expire_within() {
        let list = |within: Option<i64>, page_token: String| {
            Listing::<ListInput>::try_from((
                proto::ListRequest {
                    expire_within: within.map(|seconds| Duration { seconds, nanos: 0 }),
                    page_token,
                    ..Default::default()
                },
                &actor(),
            ))
        };
        let cursor = crate::grpc::page::Cursor {
            created_micros: 1_700_000_000_000_000,
            key: "0123456789ABCDEFGHIJKL".into(),
        };
        let token = list(Some(3600), String::new())
            .unwrap()
            .pager
            .next(true, Some(cursor));
        assert!(list(Some(3600), token.clone()).is_ok());
        for other in [Some(7200), None] {
            assert!(matches!(
                list(other, token.clone()),
                Err(Error::InvalidArgument {
                    field: "page_token",
                    ..
                })
            ));
        }
    }

    /// Regressions found by the properties (kept as plain tests).
    #[test]
    fn the_most_negative_duration_is_refused_not_a_panic() {
        let min = Duration {
            seconds: i64::MIN,
            nanos: 0,
        };
        assert!(duration("d", &min).is_err());
        let r = Listing::<ListInput>::try_from((
            proto::ListRequest {
                expire_within: Some(min),
                ..Default::default()
            },
            &actor(),
        ));
        assert!(matches!(
            r,
            Err(Error::InvalidArgument {
                field: "expire_within",
                ..
            })
        ));
    }

    #[test]
    fn a_lifetime_cap_that_would_round_to_none_is_refused() {
        let cap = |seconds, nanos| {
            TenantUpdate::try_from(proto::UpdateTenantRequest {
                tenant: Some(proto::Tenant {
                    max_token_lifetime: Some(Duration { seconds, nanos }),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["max_token_lifetime".into()],
                }),
            })
            .map(|u| u.max_token_lifetime)
        };
        assert!(cap(0, 1).is_err(), "1 ns");
        assert!(cap(1, 500).is_err(), "a fraction");
        assert_eq!(cap(0, 0).unwrap(), Some(None), "zero: no cap");
        assert_eq!(cap(60, 0).unwrap(), Some(Some(TimeDelta::seconds(60))));
    }
}
