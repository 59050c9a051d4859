//! Scopes and sets of scopes. A set is a bit mask: intersection and subset tests are one
//! instruction, which matters on the validate hot path.

use std::fmt;

/// One right a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub(crate) const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Admin => 4,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

/// A scope name that is not one of `read`, `write`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope (expected read, write or admin)")]
pub(crate) struct UnknownScope;

impl std::str::FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            _ => Err(UnknownScope),
        }
    }
}

/// A set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ScopeSet(u8);

impl ScopeSet {
    pub(crate) const EMPTY: ScopeSet = ScopeSet(0);
    pub(crate) const ALL: ScopeSet = ScopeSet(7);

    /// Parses scope names; duplicates are allowed and collapse.
    pub(crate) fn parse<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, UnknownScope> {
        names
            .into_iter()
            .try_fold(Self::EMPTY, |set, n| Ok(set.with(n.parse()?)))
    }

    pub(crate) fn of(scopes: &[Scope]) -> Self {
        scopes.iter().fold(Self::EMPTY, |set, s| set.with(*s))
    }

    pub(crate) fn with(self, s: Scope) -> Self {
        Self(self.0 | s.bit())
    }

    pub(crate) fn contains(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn is_subset_of(self, other: ScopeSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub(crate) fn intersect(self, other: ScopeSet) -> Self {
        Self(self.0 & other.0)
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Names in canonical order (read, write, admin).
    pub(crate) fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_set_algebra() {
        let rw = ScopeSet::parse(["read", "write", "read"]).unwrap();
        assert_eq!(rw.names(), ["read", "write"]);
        assert!(ScopeSet::parse(["Read"]).is_err());
        assert!(ScopeSet::parse([""]).is_err());
        let r = ScopeSet::of(&[Scope::Read]);
        assert!(r.is_subset_of(rw));
        assert!(!rw.is_subset_of(r));
        assert!(ScopeSet::EMPTY.is_subset_of(r));
        assert_eq!(
            rw.intersect(ScopeSet::of(&[Scope::Write, Scope::Admin]))
                .names(),
            ["write"]
        );
        assert_eq!(ScopeSet::ALL.names(), ["read", "write", "admin"]);
    }
}
