//! Identifiers and names that callers send, parsed once at the edge.

use std::fmt;

/// Why a name or id was refused; the service layer adds the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters")]
    Control,
    #[error("must not contain '/'")]
    Slash,
    #[error("must match [a-z0-9][a-z0-9-]{{1,62}}")]
    NotASlug,
    #[error("must be 22 base62 characters")]
    NotATokenId,
}

/// A tenant id: a slug `[a-z0-9][a-z0-9-]{1,62}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// A value that was parsed before (read back from jeton's own memory).
    pub(crate) fn trusted(s: &str) -> Self {
        Self(s.to_owned())
    }

    pub fn parse(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
        let valid = (2..=63).contains(&b.len())
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter().all(ok_char);
        if s.is_empty() {
            Err(NameError::Empty)
        } else if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::NotASlug)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks the rules shared by free-text names: not empty, bounded, printable.
fn text(s: &str, max: usize) -> Result<(), NameError> {
    if s.trim().is_empty() {
        Err(NameError::Empty)
    } else if s.chars().count() > max {
        Err(NameError::TooLong(max))
    } else if s.chars().any(char::is_control) {
        Err(NameError::Control)
    } else {
        Ok(())
    }
}

/// A principal id inside a tenant, such as `alice@contoso.com`: 1 to 256 characters, no
/// control characters, no `/` (the trusted-frontend header separates tenant and id with it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrincipalId(String);

impl PrincipalId {
    /// A value that was parsed before (read back from jeton's own memory).
    pub(crate) fn trusted(s: &str) -> Self {
        Self(s.to_owned())
    }

    pub const MAX: usize = 256;

    pub fn parse(s: &str) -> Result<Self, NameError> {
        text(s, Self::MAX)?;
        if s.contains('/') {
            return Err(NameError::Slash);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name a token is recognised by: 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

impl TokenName {
    /// A value that was parsed before (read back from jeton's own memory).
    pub(crate) fn trusted(s: &str) -> Self {
        Self(s.to_owned())
    }

    pub const MAX: usize = 200;

    pub fn parse(s: &str) -> Result<Self, NameError> {
        text(s, Self::MAX)?;
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whom a token belongs to: the owning principal of an `API` token, or the collector or
/// agent name of a `LOG_COLLECTOR`/`SIEM` token. Same rules as a principal id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject(String);

impl Subject {
    /// A value that was parsed before (read back from jeton's own memory).
    pub(crate) fn trusted(s: &str) -> Self {
        Self(s.to_owned())
    }

    pub fn parse(s: &str) -> Result<Self, NameError> {
        PrincipalId::parse(s).map(Self::from)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<PrincipalId> for Subject {
    fn from(p: PrincipalId) -> Self {
        Self(p.0)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_slugs() {
        assert!(TenantId::parse("contoso").is_ok());
        assert!(TenantId::parse("a1-b").is_ok());
        assert!(TenantId::parse(&"a".repeat(63)).is_ok());
        assert_eq!(TenantId::parse(""), Err(NameError::Empty));
        for bad in ["a", "-ab", "Contoso", "a_b", "ab/c", &"a".repeat(64)] {
            assert_eq!(TenantId::parse(bad), Err(NameError::NotASlug), "{bad}");
        }
    }

    #[test]
    fn token_names() {
        assert!(TokenName::parse("ci deploy key").is_ok());
        assert!(TokenName::parse(&"é".repeat(200)).is_ok());
        assert_eq!(TokenName::parse(" "), Err(NameError::Empty));
        assert_eq!(
            TokenName::parse(&"x".repeat(201)),
            Err(NameError::TooLong(200))
        );
        assert_eq!(TokenName::parse("a\nb"), Err(NameError::Control));
    }

    #[test]
    fn principal_ids() {
        assert!(PrincipalId::parse("alice@contoso.com").is_ok());
        assert_eq!(PrincipalId::parse("a/b"), Err(NameError::Slash));
        assert_eq!(PrincipalId::parse("a\0"), Err(NameError::Control));
    }
}
