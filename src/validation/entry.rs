//! The compact cache entry of a verified token.

use crate::domain::{
    Namespace, Networks, PrincipalId, ScopeSet, Subject, TenantId, Token, TokenId, TokenName,
};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::sync::Arc;
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

/// A token whose secret was verified once, kept compact: with a million of them cached,
/// every byte counts. Strings share one allocation, the tenant id is shared by all tokens of
/// the tenant, times are plain microseconds.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(super) id: Key,
    namespace: Namespace,
    scopes: ScopeSet,
    tenant: Arc<str>,
    /// name, subject and creator, one after the other.
    text: Box<str>,
    name_len: u16,
    subject_len: u16,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    replaces: Option<Key>,
    /// The networks it is bound to, if any (most tokens are bound to none).
    allowed: Option<Box<Networks>>,
    digest: [u8; 32],
    /// When the row was read, on the cache's clock (ms).
    pub(super) loaded_at: u64,
}

fn at(m: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(m).unwrap_or_default()
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
            tenant,
            text: format!("{name}{subject}{}", token.creator.as_str()).into_boxed_str(),
            name_len: name.len() as u16,
            subject_len: subject.len() as u16,
            created_at: token.created_at.timestamp_micros(),
            expires_at: token.expires_at.map(|t| t.timestamp_micros()),
            revoked_at: token.revoked_at.map(|t| t.timestamp_micros()),
            replaces: token.replaces.as_ref().map(key),
            allowed: (!token.allowed.is_empty()).then(|| Box::new(token.allowed.clone())),
            digest: digest(secret),
            loaded_at,
        }
    }

    /// Whether `secret` is the secret this entry was verified with. Constant-time.
    pub(crate) fn matches(&self, secret: &[u8]) -> bool {
        digest(secret).ct_eq(&self.digest).into()
    }

    /// The token as read from the store (its last use is not kept here).
    pub(crate) fn token(&self) -> Token {
        let (name, rest) = self.text.split_at(self.name_len as usize);
        let (subject, creator) = rest.split_at(self.subject_len as usize);
        Token {
            id: id_of(&self.id),
            tenant: TenantId::from_parsed(&self.tenant),
            namespace: self.namespace,
            name: TokenName::from_parsed(name),
            subject: Subject::from_parsed(subject),
            creator: PrincipalId::from_parsed(creator),
            scopes: self.scopes,
            created_at: at(self.created_at),
            last_used_at: None,
            expires_at: self.expires_at.map(at),
            revoked_at: self.revoked_at.map(at),
            replaces: self.replaces.as_ref().map(id_of),
            allowed: self.allowed.as_deref().cloned().unwrap_or_default(),
        }
    }
}
