//! The token string format, token metadata, and the status a token is in.
//!
//! A token string is `<prefix>_<id><secret><crc>`:
//! - `prefix`: `jta` (API), `jtl` (log collector) or `jts` (SIEM);
//! - `id`: 22 base62 characters (≈131 bits), the public id that `List` shows and `Revoke`
//!   takes, so that validation is a primary-key lookup;
//! - `secret`: 43 base62 characters drawn uniformly from the OS CSPRNG (43·log2 62 ≈ 256.03
//!   bits);
//! - `crc`: CRC32 of everything before it (prefix and `_` included), as 6 base62 digits,
//!   most significant first.
//!
//! 75 characters in all, matching `jt[als]_[0-9A-Za-z]{71}`.

use super::{NameError, PrincipalId, ScopeSet, Subject, TenantId, TokenName};
use chrono::{DateTime, TimeDelta, Utc};
use rand::TryRng;
use std::fmt;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PREFIX_LEN: usize = 4; // "jta_"
const ID_LEN: usize = 22;
const SECRET_LEN: usize = 43;
const CRC_LEN: usize = 6;
/// Length of every token string.
pub const TOKEN_LEN: usize = PREFIX_LEN + ID_LEN + SECRET_LEN + CRC_LEN;

/// The family a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    Api,
    LogCollector,
    Siem,
}

impl Namespace {
    fn prefix(self) -> &'static str {
        match self {
            Namespace::Api => "jta_",
            Namespace::LogCollector => "jtl_",
            Namespace::Siem => "jts_",
        }
    }

    fn from_prefix(p: &[u8]) -> Option<Self> {
        match p {
            b"jta_" => Some(Namespace::Api),
            b"jtl_" => Some(Namespace::LogCollector),
            b"jts_" => Some(Namespace::Siem),
            _ => None,
        }
    }
}

/// The public id of a token: 22 base62 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(String);

impl TokenId {
    /// A value that was parsed when it entered jeton (read back from its own memory).
    pub(crate) fn from_parsed(s: &str) -> Self {
        Self(s.to_owned())
    }

    /// The id itself, for a response that takes it over.
    pub(crate) fn into_string(self) -> String {
        self.0
    }

    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            Err(NameError::Empty)
        } else if s.len() == ID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::NotATokenId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string that has the shape and checksum of a jeton token. Holds the secret: its `Debug`
/// shows only the namespace and the public id.
#[derive(Clone)]
pub struct TokenString {
    whole: String,
    namespace: Namespace,
}

impl TokenString {
    /// Parses a presented token. Fails, without any I/O, on a wrong length, alphabet,
    /// prefix or checksum.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != TOKEN_LEN {
            return None;
        }
        let namespace = Namespace::from_prefix(&b[..PREFIX_LEN])?;
        if !b[PREFIX_LEN..].iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let (body, crc) = b.split_at(TOKEN_LEN - CRC_LEN);
        if encode_crc(crc32fast::hash(body)) != crc {
            return None;
        }
        Some(Self {
            whole: s.to_owned(),
            namespace,
        })
    }

    /// Generates a fresh token in `namespace` from the OS CSPRNG.
    pub fn generate(namespace: Namespace) -> Result<Self, rand::rngs::SysError> {
        let mut whole = String::with_capacity(TOKEN_LEN);
        whole.push_str(namespace.prefix());
        random_base62(ID_LEN + SECRET_LEN, &mut whole)?;
        let crc = encode_crc(crc32fast::hash(whole.as_bytes()));
        whole.extend(crc.iter().map(|&c| c as char));
        Ok(Self { whole, namespace })
    }

    pub fn namespace(&self) -> Namespace {
        self.namespace
    }

    pub fn id(&self) -> TokenId {
        TokenId(self.whole[PREFIX_LEN..PREFIX_LEN + ID_LEN].to_owned())
    }

    /// The secret part, which is what the store keeps a hash of.
    pub fn secret(&self) -> &[u8] {
        &self.whole.as_bytes()[PREFIX_LEN + ID_LEN..TOKEN_LEN - CRC_LEN]
    }

    /// The whole token string; handed to the caller exactly once, at generation.
    pub fn expose(&self) -> &str {
        &self.whole
    }
}

impl fmt::Debug for TokenString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenString")
            .field("namespace", &self.namespace)
            .field("id", &self.id())
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn encode_crc(mut crc: u32) -> [u8; CRC_LEN] {
    let mut out = [b'0'; CRC_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(crc % 62) as usize];
        crc /= 62;
    }
    out
}

/// Appends `n` characters drawn uniformly from the base62 alphabet. Rejection sampling:
/// bytes ≥ 248 (= 4·62) are dropped so that `byte % 62` has no bias.
fn random_base62(n: usize, out: &mut String) -> Result<(), rand::rngs::SysError> {
    let mut buf = [0u8; 128];
    let mut left = n;
    while left > 0 {
        rand::rngs::SysRng.try_fill_bytes(&mut buf)?;
        for &b in buf.iter().filter(|&&b| b < 248).take(left) {
            out.push(ALPHABET[(b % 62) as usize] as char);
            left -= 1;
        }
    }
    Ok(())
}

/// A token's metadata as stored (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) id: TokenId,
    pub(crate) tenant: TenantId,
    pub(crate) namespace: Namespace,
    pub(crate) name: TokenName,
    pub(crate) subject: Subject,
    pub(crate) creator: PrincipalId,
    pub(crate) scopes: ScopeSet,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) last_used_at: Option<DateTime<Utc>>,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    pub(crate) revoked_at: Option<DateTime<Utc>>,
    /// The token this one replaced by rotation.
    pub(crate) replaces: Option<TokenId>,
    /// The networks it validates from; empty: any.
    pub(crate) allowed: super::Networks,
}

impl Token {
    pub(crate) fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|end| now >= end)
    }

    /// A live token of tenant `contoso` owned by `subject`, for the domain's unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(namespace: Namespace, subject: &str, scopes: ScopeSet) -> Self {
        Token {
            id: TokenId::parse("0123456789abcdefghijkl").unwrap(),
            tenant: TenantId::parse("contoso").unwrap(),
            namespace,
            name: TokenName::parse("t").unwrap(),
            subject: Subject::parse(subject).unwrap(),
            creator: PrincipalId::parse("alice").unwrap(),
            scopes,
            created_at: Utc::now(),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
            replaces: None,
            allowed: super::Networks::default(),
        }
    }
}

/// A token as shown to a caller: its metadata and its status at the time of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenView {
    pub(crate) token: Token,
    pub(crate) status: TokenStatus,
}

/// A token just generated: its metadata and the string shown once.
#[derive(Debug)]
pub(crate) struct GeneratedToken {
    pub(crate) token: Token,
    pub(crate) string: TokenString,
}

/// How recently a token was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenStatus {
    Generated,
    Active,
    Inactive,
}

/// Rule 4: never used → `Generated`; used within `window` of `now` → `Active`; otherwise
/// `Inactive`. The store evaluates the same rule in SQL for the `List` filter.
pub(crate) fn status_of(
    last_used: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    window: TimeDelta,
) -> TokenStatus {
    match last_used {
        None => TokenStatus::Generated,
        Some(t) if t >= now - window => TokenStatus::Active,
        Some(_) => TokenStatus::Inactive,
    }
}

/// Why a presented token is not good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reason {
    Malformed,
    NotFound,
    Revoked,
    Expired,
    WrongNamespace,
    RoleInactive,
    InsufficientScope,
    AddressNotAllowed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_back() {
        for ns in [Namespace::Api, Namespace::LogCollector, Namespace::Siem] {
            let t = TokenString::generate(ns).unwrap();
            assert_eq!(t.expose().len(), TOKEN_LEN);
            let parsed = TokenString::parse(t.expose()).unwrap();
            assert_eq!(parsed.namespace(), ns);
            assert_eq!(parsed.id(), t.id());
            assert_eq!(parsed.secret(), t.secret());
            assert_eq!(t.secret().len(), SECRET_LEN);
        }
    }

    #[test]
    fn any_single_change_is_malformed() {
        let t = TokenString::generate(Namespace::Api).unwrap();
        let s = t.expose();
        for i in 0..s.len() {
            let mut b = s.as_bytes().to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(b).unwrap();
            assert!(TokenString::parse(&changed).is_none(), "position {i}");
        }
        assert!(TokenString::parse("").is_none());
        assert!(TokenString::parse(&s[..TOKEN_LEN - 1]).is_none());
        assert!(TokenString::parse(&format!("{s}0")).is_none());
        assert!(TokenString::parse(&"é".repeat(TOKEN_LEN / 2)).is_none());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = TokenString::generate(Namespace::Siem).unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains(t.expose()));
        assert!(!shown.contains(std::str::from_utf8(t.secret()).unwrap()));
    }

    #[test]
    fn crc_is_fixed_width() {
        assert_eq!(&encode_crc(0), b"000000");
        assert_eq!(&encode_crc(u32::MAX), b"4gfFC3");
    }

    #[test]
    fn status_follows_last_use_and_window() {
        let now = Utc::now();
        let week = TimeDelta::days(7);
        assert_eq!(status_of(None, now, week), TokenStatus::Generated);
        assert_eq!(status_of(Some(now - week), now, week), TokenStatus::Active);
        assert_eq!(
            status_of(Some(now - week - TimeDelta::seconds(1)), now, week),
            TokenStatus::Inactive
        );
    }
}
