//! The compact cache entry of a verified token.

use crate::domain::{
    Namespace, Networks, PrincipalId, ScopeSet, Subject, TenantId, Token, TokenId, TokenName,
};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use subtle::ConstantTimeEq;

/// Length of a token id, the cache key.
pub(super) const ID_LEN: usize = 22;

/// A token id as a fixed-size key.
pub(super) type Key = [u8; ID_LEN];

pub(super) fn key(id: &TokenId) -> Key {
    let mut k = [0u8; ID_LEN];
    let b = id.as_str().as_bytes();
    let n = b.len().min(ID_LEN);
    k[..n].copy_from_slice(&b[..n]);
    k
}

/// SHA-256 of a secret: what a cached entry keeps to recognise the secret it verified.
pub(super) fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Bytes of name, subject and creator kept inside the entry; longer ones go to the heap.
const INLINE: usize = 46;

/// A token's name, subject and creator, one after the other: inside the entry when they are
/// short (most are: no allocation of their own), else in one heap string.
#[derive(Debug)]
enum Text {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Text {
    fn new(parts: [&str; 3]) -> Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > INLINE {
            return Text::Heap(parts.concat().into_boxed_str());
        }
        let mut bytes = [0u8; INLINE];
        let mut at = 0;
        for p in parts {
            bytes[at..at + p.len()].copy_from_slice(p.as_bytes());
            at += p.len();
        }
        Text::Inline {
            len: len as u8,
            bytes,
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Valid UTF-8: concatenated `&str`s.
            Text::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Text::Heap(s) => s,
        }
    }
}

/// An absent time.
const NEVER: i64 = i64::MIN;

fn micros(t: Option<DateTime<Utc>>) -> i64 {
    t.map_or(NEVER, |t| t.timestamp_micros())
}

fn at(m: i64) -> Option<DateTime<Utc>> {
    (m != NEVER).then(|| DateTime::from_timestamp_micros(m).unwrap_or_default())
}

/// A token whose secret was verified once, kept compact: with a million of them cached,
/// every byte counts. Short strings live inside the entry, the tenant id is shared by all
/// tokens of the tenant, times are plain microseconds with a sentinel for "none", and what
/// most tokens lack (a predecessor, networks) is a null pointer.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(super) id: Key,
    namespace: Namespace,
    scopes: ScopeSet,
    name_len: u16,
    subject_len: u16,
    tenant: Arc<str>,
    text: Text,
    created_at: i64,
    expires_at: i64,
    revoked_at: i64,
    replaces: Option<Box<Key>>,
    /// The networks it is bound to, if any (most tokens are bound to none).
    allowed: Option<Box<Networks>>,
    digest: [u8; 32],
    /// When the row was read, on the cache's clock (ms).
    pub(super) loaded_at: u64,
    /// The newest minute a use of this entry was recorded for (see [`Self::first_use_in`]).
    used_minute: AtomicI64,
}

fn id_of(k: &Key) -> TokenId {
    TokenId::from_parsed(std::str::from_utf8(k).unwrap_or_default())
}

impl Verified {
    pub(super) fn new(token: &Token, tenant: Arc<str>, secret: &[u8], loaded_at: u64) -> Self {
        let (name, subject) = (token.name.as_str(), token.subject.as_str());
        Self {
            id: key(&token.id),
            namespace: token.namespace,
            scopes: token.scopes,
            name_len: name.len() as u16,
            subject_len: subject.len() as u16,
            tenant,
            text: Text::new([name, subject, token.creator.as_str()]),
            created_at: token.created_at.timestamp_micros(),
            expires_at: micros(token.expires_at),
            revoked_at: micros(token.revoked_at),
            replaces: token.replaces.as_ref().map(|r| Box::new(key(r))),
            allowed: (!token.allowed.is_empty()).then(|| Box::new(token.allowed.clone())),
            digest: digest(secret),
            loaded_at,
            used_minute: AtomicI64::new(NEVER),
        }
    }

    /// Whether `secret` is the secret this entry was verified with. Constant-time.
    pub(crate) fn matches(&self, secret: &[u8]) -> bool {
        digest(secret).ct_eq(&self.digest).into()
    }

    /// Whether a use in `minute` is the first this entry sees in that minute: only then
    /// does it need recording, since stored last-use times are kept to the minute. A token
    /// validated thousands of times a minute touches the last-use buffer once.
    pub(crate) fn first_use_in(&self, minute: i64) -> bool {
        // A plain load first: the usual answer ("already recorded") then writes nothing, so
        // cores validating one token do not take its cache line from each other.
        self.used_minute.load(Ordering::Relaxed) < minute
            && self.used_minute.fetch_max(minute, Ordering::Relaxed) < minute
    }

    /// The token as read from the store (its last use is not kept here).
    pub(crate) fn token(&self) -> Token {
        let text = self.text.as_str();
        let (name, rest) = text.split_at(usize::from(self.name_len));
        let (subject, creator) = rest.split_at(usize::from(self.subject_len));
        Token {
            id: id_of(&self.id),
            tenant: TenantId::from_parsed(&self.tenant),
            namespace: self.namespace,
            name: TokenName::from_parsed(name),
            subject: Subject::from_parsed(subject),
            creator: PrincipalId::from_parsed(creator),
            scopes: self.scopes,
            created_at: at(self.created_at).unwrap_or_default(),
            last_used_at: None,
            expires_at: at(self.expires_at),
            revoked_at: at(self.revoked_at),
            replaces: self.replaces.as_deref().map(id_of),
            allowed: self.allowed.as_deref().cloned().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TokenString;

    fn token(name: &str, subject: &str, creator: &str) -> Token {
        let now = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let id = TokenString::generate(Namespace::Siem).unwrap().id();
        Token {
            id,
            tenant: TenantId::parse("contoso").unwrap(),
            namespace: Namespace::Siem,
            name: TokenName::parse(name).unwrap(),
            subject: Subject::from_parsed(subject),
            creator: PrincipalId::parse(creator).unwrap(),
            scopes: ScopeSet::ALL,
            created_at: now,
            last_used_at: None,
            expires_at: Some(now + chrono::TimeDelta::days(7)),
            revoked_at: None,
            replaces: Some(TokenString::generate(Namespace::Siem).unwrap().id()),
            allowed: Networks::parse(["10.0.0.0/8"]).unwrap(),
        }
    }

    /// What goes in comes out, whether the strings fit inside the entry or not, multi-byte
    /// characters included.
    #[test]
    fn an_entry_gives_back_the_token_it_was_made_from() {
        let long = "é".repeat(200);
        for t in [
            token("collector", "siem", "alice"),
            token("n", "s", "a"),
            token(&"n".repeat(44), "s", "a"),
            token(&"n".repeat(45), "s", "a"),
            token(&long, &long, "bob"),
        ] {
            let v = Verified::new(&t, Arc::from("contoso"), b"secret", 0);
            assert_eq!(v.token(), t);
            let inline =
                t.name.as_str().len() + t.subject.as_str().len() + t.creator.as_str().len()
                    <= INLINE;
            assert_eq!(matches!(v.text, Text::Inline { .. }), inline);
        }
        let mut bare = token("x", "y", "z");
        (bare.expires_at, bare.replaces, bare.allowed) = (None, None, Networks::default());
        let v = Verified::new(&bare, Arc::from("contoso"), b"secret", 0);
        assert_eq!(v.token(), bare);
        assert!(v.matches(b"secret") && !v.matches(b"secreT"));
    }

    /// A use is recorded once per minute per entry, and never for an older minute.
    #[test]
    fn only_the_first_use_in_a_minute_is_recorded() {
        let v = Verified::new(&token("a", "b", "c"), Arc::from("contoso"), b"s", 0);
        assert!(v.first_use_in(100));
        assert!(!v.first_use_in(100));
        assert!(!v.first_use_in(99));
        assert!(v.first_use_in(101));
    }

    /// The entry stays small: the memory target is 512 bytes per cached token, bookkeeping
    /// of the maps included.
    #[test]
    fn an_entry_is_compact() {
        assert!(
            std::mem::size_of::<Verified>() <= 192,
            "{}",
            std::mem::size_of::<Verified>()
        );
    }
}
