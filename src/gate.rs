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

use crate::domain::{Namespace, Networks, Reason, ScopeSet, Spelled, TokenString};
use crate::usecase::{ValidateInput, Validated};
use std::net::{IpAddr, SocketAddr};

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

/// The token in an `authorization` header value (`domain::bearer`); the adapters treat
/// any other credential as none at all.
pub(crate) fn bearer(authorization: &str) -> Option<&str> {
    crate::domain::bearer(authorization).ok()
}

/// What to validate: the presented string (if any), in `namespace`, needing `required`,
/// from a client at `client` (when the adapter knows it).
pub(crate) fn input(
    presented: Option<&str>,
    namespace: Namespace,
    required: ScopeSet,
    client: Option<IpAddr>,
) -> ValidateInput {
    ValidateInput {
        token: presented
            .filter(|t| t.len() <= MAX_TOKEN)
            .and_then(TokenString::parse),
        namespace,
        required,
        tenant: None,
        client,
    }
}

/// The address of the client behind a request that reached jeton from `peer`. From a
/// trusted proxy, `X-Forwarded-For` (its values in order) is read from the right, skipping
/// the trusted proxies it passed through: the first address that is not one of them is the
/// client's (all of them trusted: the leftmost). From anyone else the header is ignored and
/// the peer is the client. An entry that is not an address ends the walk with no answer:
/// fail closed.
pub(crate) fn client_address(
    peer: IpAddr,
    forwarded_for: &[&str],
    trusted: &Networks,
) -> Option<IpAddr> {
    if !trusted.contains(peer) {
        return Some(peer.to_canonical());
    }
    let mut client = peer;
    for entry in forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rev()
    {
        let addr = entry
            .parse::<IpAddr>()
            .ok()
            .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
        client = addr;
        if !trusted.contains(addr) {
            break;
        }
    }
    Some(client.to_canonical())
}

/// A namespace as routes name it: `api`, `log_collector`, `siem`, or the proto's name (any
/// case, `-` or `_`); empty means `api`.
pub(crate) fn namespace(name: &str) -> Option<Namespace> {
    if name.trim().is_empty() {
        Some(Namespace::Api)
    } else {
        Namespace::from_name(name)
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

impl Verdict {
    /// For a request that carried no token at all.
    pub(crate) fn missing() -> Self {
        Self::deny(Reason::Malformed, "missing")
    }

    fn deny(reason: Reason, name: &str) -> Self {
        let (status, error) = match reason {
            Reason::RoleInactive | Reason::InsufficientScope => (403, "insufficient_scope"),
            // A good token, from where it may not be used: forbidden, and retrying with the
            // same token from here cannot help.
            Reason::AddressNotAllowed => (403, "invalid_token"),
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
            Err(r) => Verdict::deny(r, r.lower_name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_settings() {
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

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let trusted = Networks::parse(["10.0.0.0/8", "::1"]).unwrap();
        // Untrusted peer: its header is ignored, whatever it says.
        assert_eq!(
            client_address(ip("203.0.113.5"), &["198.51.100.1"], &trusted),
            Some(ip("203.0.113.5"))
        );
        // Trusted peer: the rightmost address that is not a trusted proxy.
        assert_eq!(
            client_address(
                ip("10.0.0.2"),
                &["198.51.100.9, 192.0.2.7", "10.0.0.3"],
                &trusted
            ),
            Some(ip("192.0.2.7"))
        );
        // A port, IPv6, and a trusted peer with no header (it is the client).
        assert_eq!(
            client_address(ip("::1"), &["[2001:db8::5]:443"], &trusted),
            Some(ip("2001:db8::5"))
        );
        assert_eq!(client_address(ip("::1"), &[], &trusted), Some(ip("::1")));
        // Garbage in the part that is read: no answer, and a bound token fails closed.
        assert_eq!(client_address(ip("10.0.0.2"), &["unknown"], &trusted), None);
        // IPv4 seen as IPv6.
        assert_eq!(
            client_address(ip("::ffff:203.0.113.5"), &[], &trusted),
            Some(ip("203.0.113.5"))
        );
    }
}
