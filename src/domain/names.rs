//! Identifiers and free text that callers send, parsed once at the edge. Once one of these
//! values exists it is valid; the edge names the field when parsing fails.

use std::fmt;

/// Why a name, id or text was refused; the edge adds the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters")]
    Control,
    #[error(
        "must not contain invisible formatting characters (bidi controls, zero-width characters, byte-order marks, line or paragraph separators)"
    )]
    Invisible,
    #[error("must not contain '/'")]
    Slash,
    #[error("must match [a-z0-9][a-z0-9-]{{1,62}}")]
    NotASlug,
    #[error("must be 22 base62 characters")]
    NotATokenId,
    #[error("must be an http:// or https:// URL of at most 2048 characters, without spaces")]
    NotAnHttpUrl,
}

/// The rule every free text shares: not blank, at most `max` characters, and displayed as
/// it is — no control characters, and none of the invisible ones that make a text show as
/// another (Unicode format characters such as the right-to-left override U+202E, zero-width
/// characters and the byte-order mark; line and paragraph separators).
fn text(s: &str, max: usize) -> Result<(), NameError> {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    if s.trim().is_empty() {
        Err(NameError::Empty)
    } else if s.chars().count() > max {
        Err(NameError::TooLong(max))
    } else if s.chars().any(char::is_control) {
        Err(NameError::Control)
    } else if s.chars().any(|c| {
        matches!(
            c.general_category(),
            G::Format | G::LineSeparator | G::ParagraphSeparator
        )
    }) {
        Err(NameError::Invisible)
    } else {
        Ok(())
    }
}

/// Declares a newtype over `String` with `as_str`, `Display` and a constructor for values
/// read back from jeton's own memory (which were parsed when they came in).
macro_rules! text_type {
    ($(#[$doc:meta])* $vis:vis $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis struct $name(String);

        impl $name {
            /// A value that was parsed when it entered jeton (read back from its own memory).
            #[allow(dead_code, reason = "only the types kept in the validation cache need it")]
            pub(crate) fn from_parsed(s: &str) -> Self {
                Self(s.to_owned())
            }

            $vis fn as_str(&self) -> &str {
                &self.0
            }

            /// The text itself, for a response that takes it over.
            #[allow(dead_code, reason = "only the types rendered by value need it")]
            pub(crate) fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_type!(
    /// A tenant id: a slug `[a-z0-9][a-z0-9-]{1,62}`.
    pub TenantId
);

impl TenantId {
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
}

text_type!(
    /// A principal id inside a tenant, such as `alice@contoso.com`: 1 to 256 characters, no
    /// control characters, no `/` (the trusted-frontend header separates tenant and id with
    /// it).
    pub PrincipalId
);

impl PrincipalId {
    pub(crate) const MAX: usize = 256;

    pub fn parse(s: &str) -> Result<Self, NameError> {
        text(s, Self::MAX)?;
        if s.contains('/') {
            return Err(NameError::Slash);
        }
        Ok(Self(s.to_owned()))
    }
}

text_type!(
    /// The name a token is recognised by: 1 to 200 characters, no control characters.
    pub(crate) TokenName
);

impl TokenName {
    pub(crate) const MAX: usize = 200;

    pub(crate) fn parse(s: &str) -> Result<Self, NameError> {
        text(s, Self::MAX)?;
        Ok(Self(s.to_owned()))
    }
}

text_type!(
    /// Whom a token belongs to: the owning principal of an `API` token, or the collector or
    /// agent name of a `LOG_COLLECTOR`/`SIEM` token. Same rules as a principal id.
    pub(crate) Subject
);

impl Subject {
    pub(crate) fn parse(s: &str) -> Result<Self, NameError> {
        PrincipalId::parse(s).map(Self::from)
    }

    /// Whether this subject names `p` (an API token's owner).
    pub(crate) fn is(&self, p: &PrincipalId) -> bool {
        self.0 == p.0
    }

    /// The principal this subject names (subjects follow the rules of principal ids).
    pub(crate) fn to_principal(&self) -> PrincipalId {
        PrincipalId(self.0.clone())
    }
}

impl From<PrincipalId> for Subject {
    fn from(p: PrincipalId) -> Self {
        Self(p.0)
    }
}

text_type!(
    /// The name shown for a principal or a tenant: 1 to 256 characters, no control
    /// characters.
    pub DisplayName
);

impl DisplayName {
    pub(crate) const MAX: usize = 256;

    pub fn parse(s: &str) -> Result<Self, NameError> {
        text(s, Self::MAX)?;
        Ok(Self(s.to_owned()))
    }
}

impl From<&PrincipalId> for DisplayName {
    fn from(p: &PrincipalId) -> Self {
        Self(p.0.clone())
    }
}

impl From<&TenantId> for DisplayName {
    fn from(t: &TenantId) -> Self {
        Self(t.0.clone())
    }
}

text_type!(
    /// Why an eligible role is activated: 1 to 1000 characters (surrounding blanks dropped),
    /// no control characters. Stored and written to the audit trail.
    pub(crate) Justification
);

impl Justification {
    pub(crate) const MAX: usize = 1000;

    pub(crate) fn parse(s: &str) -> Result<Self, NameError> {
        let s = s.trim();
        text(s, Self::MAX)?;
        Ok(Self(s.to_owned()))
    }
}

text_type!(
    /// A tenant's API endpoint, handed back with every token: an `http://` or `https://`
    /// URL of at most 2048 characters without control characters or spaces.
    pub ApiUrl
);

impl ApiUrl {
    pub(crate) const MAX: usize = 2048;

    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = (s.starts_with("https://") || s.starts_with("http://"))
            && s.len() <= Self::MAX
            && !s.chars().any(|c| c.is_control() || c.is_whitespace());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::NotAnHttpUrl)
        }
    }

    /// The default endpoint of a tenant that was created without one.
    pub(crate) fn default_for(tenant: &TenantId) -> Self {
        Self(format!("https://{tenant}.api.jeton.example"))
    }
}

text_type!(
    /// What an audit event is about, as a filter: a token id, a principal id or a tenant id
    /// (at most 256 characters, no control characters).
    pub(crate) AuditTarget
);

impl AuditTarget {
    pub(crate) const MAX: usize = 256;

    pub(crate) fn parse(s: &str) -> Result<Self, NameError> {
        text(s, Self::MAX)?;
        Ok(Self(s.to_owned()))
    }
}

text_type!(
    /// Free text a leak report carries (where a secret scanner found a token, and which
    /// scanner): at most 512 characters, under the rule every free text shares.
    pub(crate) ReportText
);

impl ReportText {
    pub(crate) const MAX: usize = 512;

    pub(crate) fn parse(s: &str) -> Result<Self, NameError> {
        text(s, Self::MAX)?;
        Ok(Self(s.to_owned()))
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

    #[test]
    fn text_displays_as_it_is() {
        for spoof in [
            "abc\u{202e}gpj.exe",
            "zero\u{200b}width",
            "\u{feff}bom",
            "line\u{2028}break",
            "para\u{2029}graph",
            "isolate\u{2066}x\u{2069}",
            "joiner\u{200d}",
        ] {
            assert_eq!(
                TokenName::parse(spoof),
                Err(NameError::Invisible),
                "{spoof:?}"
            );
            assert_eq!(
                PrincipalId::parse(spoof),
                Err(NameError::Invisible),
                "{spoof:?}"
            );
            assert_eq!(
                DisplayName::parse(spoof),
                Err(NameError::Invisible),
                "{spoof:?}"
            );
        }
        for fine in ["café", "日本語のトークン", "émoji 🎉 ok", "a-b_c.d@e"] {
            assert!(TokenName::parse(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn free_text() {
        assert_eq!(
            Justification::parse("  incident 42 ").unwrap().as_str(),
            "incident 42"
        );
        assert_eq!(Justification::parse("   "), Err(NameError::Empty));
        assert_eq!(
            Justification::parse(&"j".repeat(1001)),
            Err(NameError::TooLong(1000))
        );
        assert_eq!(
            DisplayName::parse(&"d".repeat(257)),
            Err(NameError::TooLong(256))
        );
        assert_eq!(AuditTarget::parse("a\tb"), Err(NameError::Control));
        assert_eq!(
            ReportText::parse("https://github.com/o/r/blob/\u{202e}txt.exe"),
            Err(NameError::Invisible)
        );
        assert_eq!(
            ReportText::parse(&"x".repeat(513)),
            Err(NameError::TooLong(512))
        );
        assert!(ReportText::parse("https://github.com/o/r/blob/main/.env").is_ok());
        assert!(ApiUrl::parse("https://contoso.example/api").is_ok());
        for bad in ["ftp://x", "https://a b", "contoso.example", ""] {
            assert_eq!(ApiUrl::parse(bad), Err(NameError::NotAnHttpUrl), "{bad}");
        }
    }
}
