//! The caller's credential in an `authorization` value, parsed once for every door: the gRPC
//! port's bearer callers, the front door's adapters and introspection.
//!
//! The contract accepts the scheme `Bearer` and, as the product's own API spells it, `Token`
//! (any case), followed by the token.

/// Why an `authorization` value carries no bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadCredential {
    #[error("malformed authorization header")]
    Malformed,
    #[error("authorization scheme must be Bearer or Token")]
    Scheme,
}

/// The token in an `authorization` value: `Bearer <token>` or `Token <token>`.
pub(crate) fn bearer(authorization: &str) -> Result<&str, BadCredential> {
    let (scheme, token) = authorization
        .trim()
        .split_once(' ')
        .ok_or(BadCredential::Malformed)?;
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        Ok(token.trim())
    } else {
        Err(BadCredential::Scheme)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_token_schemes_in_any_case() {
        assert_eq!(bearer("Bearer abc"), Ok("abc"));
        assert_eq!(bearer("token  abc "), Ok("abc"));
        assert_eq!(bearer("BEARER abc"), Ok("abc"));
        assert_eq!(bearer("Basic abc"), Err(BadCredential::Scheme));
        assert_eq!(bearer("Bearer"), Err(BadCredential::Malformed));
        assert_eq!(bearer(""), Err(BadCredential::Malformed));
    }
}
