//! The front door: what every proxy adapter (Envoy external authorization, HTTP
//! forward-auth) answers, in wire-neutral terms. Each adapter only reads its request into a
//! [`ValidateInput`] and writes this [`Verdict`] out, so no adapter can disagree with
//! `Validate`: the decision is `Access::validate`'s, and a validation through an adapter is a
//! use of the token like any other.
//!
//! - Allowed: the identity headers [`TENANT`], [`SUBJECT`], [`TOKEN_ID`], [`SCOPES`] are set
//!   for the upstream (replacing anything the client sent), and `authorization` is removed.
//! - Denied: 401 with `WWW-Authenticate: Bearer` for a missing, malformed, unknown, revoked or
//!   expired token, or one of another namespace; 403 for a role that is not active now or
//!   scopes that are not enough. The JSON body names the reason, never the token.

use crate::domain::{Namespace, Reason, ScopeSet, TokenString};
use crate::usecase::{ValidateInput, Validated};

pub(crate) const TENANT: &str = "x-jeton-tenant";
pub(crate) const SUBJECT: &str = "x-jeton-subject";
pub(crate) const TOKEN_ID: &str = "x-jeton-token-id";
pub(crate) const SCOPES: &str = "x-jeton-scopes";
/// The identity headers, as set upstream.
pub(crate) const IDENTITY: [&str; 4] = [TENANT, SUBJECT, TOKEN_ID, SCOPES];
/// Every header jeton sets upstream starts with this; the client's are dropped.
pub(crate) const PREFIX: &str = "x-jeton-";

/// Longest token string looked at; anything longer is malformed without parsing.
pub(crate) const MAX_TOKEN: usize = 4096;

/// The token in an `authorization` header value: `Bearer <token>` or `Token <token>`.
pub(crate) fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| token.trim())
}

/// What to validate: the presented string (if any), in `namespace`, needing `required`.
pub(crate) fn input(
    presented: Option<&str>,
    namespace: Namespace,
    required: ScopeSet,
) -> ValidateInput {
    ValidateInput {
        token: presented
            .filter(|t| t.len() <= MAX_TOKEN)
            .and_then(TokenString::parse),
        namespace,
        required,
        tenant: None,
    }
}

/// A namespace as routes name it: `api`, `log_collector`, `siem` (any case, `-` or `_`).
pub(crate) fn namespace(name: &str) -> Option<Namespace> {
    match name.trim().to_ascii_lowercase().replace('-', "_").as_str() {
        "" | "api" | "namespace_api" => Some(Namespace::Api),
        "log_collector" | "namespace_log_collector" => Some(Namespace::LogCollector),
        "siem" | "namespace_siem" => Some(Namespace::Siem),
        _ => None,
    }
}

/// The name of a namespace, as routes write it.
pub(crate) fn namespace_name(ns: Namespace) -> &'static str {
    match ns {
        Namespace::Api => "api",
        Namespace::LogCollector => "log_collector",
        Namespace::Siem => "siem",
    }
}

/// Scopes as routes list them: comma-separated, blanks ignored.
pub(crate) fn scopes(list: &str) -> Option<ScopeSet> {
    ScopeSet::parse(list.split(',').map(str::trim).filter(|s| !s.is_empty())).ok()
}

/// What an adapter answers.
#[derive(Debug)]
pub(crate) enum Verdict {
    Allow {
        /// Identity headers for the upstream, lower-case names.
        headers: [(&'static str, String); 4],
    },
    Deny {
        /// 401 or 403.
        status: u16,
        www_authenticate: String,
        /// `{"error": …, "reason": …}`.
        body: String,
    },
}

/// The wire name of a reason.
pub(crate) fn reason_name(r: Reason) -> &'static str {
    match r {
        Reason::Malformed => "malformed",
        Reason::NotFound => "not_found",
        Reason::Revoked => "revoked",
        Reason::Expired => "expired",
        Reason::WrongNamespace => "wrong_namespace",
        Reason::RoleInactive => "role_inactive",
        Reason::InsufficientScope => "insufficient_scope",
    }
}

impl Verdict {
    /// For a request that carried no token at all.
    pub(crate) fn missing() -> Self {
        Self::deny(Reason::Malformed, "missing")
    }

    fn deny(reason: Reason, name: &str) -> Self {
        let (status, error) = match reason {
            Reason::RoleInactive | Reason::InsufficientScope => (403, "insufficient_scope"),
            _ => (401, "invalid_token"),
        };
        Verdict::Deny {
            status,
            www_authenticate: format!("Bearer realm=\"jeton\", error=\"{error}\""),
            body: format!("{{\"error\":\"{error}\",\"reason\":\"{name}\"}}"),
        }
    }
}

impl From<Result<Validated, Reason>> for Verdict {
    fn from(outcome: Result<Validated, Reason>) -> Self {
        match outcome {
            Ok(v) => {
                let t = &v.token.token;
                Verdict::Allow {
                    headers: [
                        (TENANT, t.tenant.as_str().to_owned()),
                        (SUBJECT, t.subject.as_str().to_owned()),
                        (TOKEN_ID, t.id.as_str().to_owned()),
                        (SCOPES, v.effective.names().join(",")),
                    ],
                }
            }
            Err(r) => Verdict::deny(r, reason_name(r)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_schemes_and_route_settings() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("token  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(namespace("LOG-COLLECTOR"), Some(Namespace::LogCollector));
        assert_eq!(namespace(""), Some(Namespace::Api));
        assert_eq!(namespace("other"), None);
        assert_eq!(
            scopes("read, write").map(|s| s.names()),
            Some(vec!["read", "write"])
        );
        assert_eq!(scopes(""), Some(ScopeSet::EMPTY));
        assert_eq!(scopes("read,root"), None);
    }

    #[test]
    fn denials_name_the_reason_and_the_status() {
        let Verdict::Deny {
            status,
            body,
            www_authenticate,
        } = Verdict::from(Err(Reason::Revoked))
        else {
            panic!("denied")
        };
        assert_eq!(status, 401);
        assert!(www_authenticate.starts_with("Bearer"));
        assert_eq!(body, r#"{"error":"invalid_token","reason":"revoked"}"#);
        let Verdict::Deny { status, .. } = Verdict::from(Err(Reason::InsufficientScope)) else {
            panic!("denied")
        };
        assert_eq!(status, 403);
    }
}
