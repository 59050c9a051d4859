//! The validate hot path: bounded memory of verified tokens and of principals, invalidated by
//! every change that can make a cached answer wrong.
//!
//! - **Tokens** (`tokens`): id → the token row and the SHA-256 digest of the secret that was
//!   verified with Argon2 when it was loaded. A hit costs one map lookup and one
//!   constant-time comparison of digests; Argon2 is paid once per token per entry lifetime.
//!   Entries hold the row as read (revoked and expired tokens too, so repeated use of a dead
//!   token is cheap) and are judged against the clock on every hit: expiry needs no event.
//! - **Absent ids** (`absent`): ids with no row, kept briefly in a cache of their own so a flood
//!   of random ids neither reaches the database each time nor evicts real entries.
//! - **Principals** (`principals`): the owner of API tokens, including "no such principal",
//!   judged against the clock on every hit: an activation reaching its end needs no event.
//!
//! Every write that can change an answer appends to the database's change log in the same
//! transaction. The replica that made the write invalidates its own entries before it
//! answers; [`follow`] applies everyone's changes here within a poll interval. As a safety
//! net, a token entry older than the time to live is refreshed by re-reading its row (keeping
//! the verified digest: a secret never changes, so no Argon2), and principal entries expire
//! after it. If the change log cannot be read for longer
//! than `stale_after`, cached entries are not trusted (every validation goes to the database)
//! until it can again — a replica cut off from the log must not keep answering from memory.
//!
//! A load that raced with an invalidation is not cached: every invalidation bumps an epoch,
//! and a loader inserts only if the epoch it read before going to the database is unchanged.

use crate::domain::{
    Namespace, Principal, PrincipalId, ScopeSet, Subject, TenantId, Token, TokenId, TokenName,
};
use crate::store::{Changed, Store};
use chrono::{DateTime, Utc};
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Cache sizes and lifetimes.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Most tokens kept (verified entries).
    pub capacity: u64,
    /// Safety-net lifetime of an entry.
    pub ttl: Duration,
    /// Most unknown ids remembered, and for how long.
    pub negative_capacity: u64,
    pub negative_ttl: Duration,
    /// How often the change log is read.
    pub poll_interval: Duration,
    /// Entries are not trusted when the change log was last read longer ago than this.
    pub stale_after: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            capacity: 1_000_000,
            ttl: Duration::from_secs(60),
            negative_capacity: 100_000,
            negative_ttl: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            stale_after: Duration::from_secs(1),
        }
    }
}

/// A token whose secret was verified once, kept compact: with a million of them cached,
/// every byte counts. Strings share one allocation, the tenant id is shared by all tokens of
/// the tenant, times are plain microseconds.
#[derive(Debug)]
pub struct Verified {
    id: [u8; 22],
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
    replaces: Option<[u8; 22]>,
    digest: [u8; 32],
    /// Seconds since the cache started when the row was read.
    loaded_at: u32,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn at(m: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(m).unwrap_or_default()
}

impl Verified {
    /// Whether `secret` is the secret this entry was verified with. Constant-time.
    pub fn matches(&self, secret: &[u8]) -> bool {
        digest(secret).ct_eq(&self.digest).into()
    }

    /// The token as read from the store (its last use is not kept here).
    pub fn token(&self) -> Token {
        let (name, rest) = self.text.split_at(self.name_len as usize);
        let (subject, creator) = rest.split_at(self.subject_len as usize);
        Token {
            id: TokenId::trusted(std::str::from_utf8(&self.id).unwrap_or_default()),
            tenant: TenantId::trusted(&self.tenant),
            namespace: self.namespace,
            name: TokenName::trusted(name),
            subject: Subject::trusted(subject),
            creator: PrincipalId::trusted(creator),
            scopes: self.scopes,
            created_at: at(self.created_at),
            last_used_at: None,
            expires_at: self.expires_at.map(at),
            revoked_at: self.revoked_at.map(at),
            replaces: self
                .replaces
                .as_ref()
                .map(|r| TokenId::trusted(std::str::from_utf8(r).unwrap_or_default())),
        }
    }
}

pub fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Key of the principal cache.
pub fn owner_key(tenant: &TenantId, principal: &str) -> String {
    format!("{tenant}/{principal}")
}

/// What the cache knows of a token id.
pub enum Lookup {
    Hit(Arc<Verified>),
    /// Verified once, but the row was read longer than the time to live ago: read it again
    /// (the secret cannot have changed, so no Argon2).
    Stale(Arc<Verified>),
    Absent,
    Miss,
}

pub struct ValidationCache {
    tokens: Cache<[u8; 22], Arc<Verified>>,
    absent: Cache<[u8; 22], ()>,
    principals: Cache<String, Option<Arc<Principal>>>,
    /// One shared copy of each tenant id.
    tenants: std::sync::Mutex<HashMap<String, Arc<str>>>,
    epoch: AtomicU64,
    started: Instant,
    /// Milliseconds since `started` of the last successful read of the change log.
    fresh_at_ms: AtomicU64,
    stale_after_ms: u64,
    ttl_secs: u64,
}

impl std::fmt::Debug for ValidationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidationCache")
            .field("tokens", &self.tokens.entry_count())
            .field("principals", &self.principals.entry_count())
            .finish_non_exhaustive()
    }
}

fn key(id: &TokenId) -> [u8; 22] {
    let mut k = [0u8; 22];
    let b = id.as_str().as_bytes();
    k[..b.len().min(22)].copy_from_slice(&b[..b.len().min(22)]);
    k
}

impl ValidationCache {
    pub fn new(s: &CacheSettings) -> Self {
        Self {
            // No time to live here: a stale entry is refreshed in place (see `Lookup::Stale`),
            // keeping the verified digest, so the safety net costs a row read, not Argon2.
            tokens: Cache::builder().max_capacity(s.capacity).build(),
            absent: Cache::builder()
                .max_capacity(s.negative_capacity)
                .time_to_live(s.negative_ttl)
                .build(),
            principals: Cache::builder()
                .max_capacity(s.capacity)
                .time_to_live(s.ttl)
                .build(),
            tenants: std::sync::Mutex::default(),
            epoch: AtomicU64::new(0),
            started: Instant::now(),
            fresh_at_ms: AtomicU64::new(0),
            stale_after_ms: s.stale_after.as_millis() as u64,
            ttl_secs: s.ttl.as_secs().max(1),
        }
    }

    fn trusted(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        now.saturating_sub(self.fresh_at_ms.load(Ordering::Relaxed)) <= self.stale_after_ms
    }

    /// Records a successful read of the change log.
    pub fn mark_fresh(&self) {
        self.fresh_at_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The epoch to pass back to the `remember_*` calls of a load that starts now.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn token(&self, id: &TokenId) -> Lookup {
        if !self.trusted() {
            return Lookup::Miss;
        }
        let k = key(id);
        if let Some(v) = self.tokens.get(&k) {
            let age = (self.started.elapsed().as_secs() as u32).saturating_sub(v.loaded_at);
            if u64::from(age) >= self.ttl_secs {
                Lookup::Stale(v)
            } else {
                Lookup::Hit(v)
            }
        } else if self.absent.contains_key(&k) {
            Lookup::Absent
        } else {
            Lookup::Miss
        }
    }

    pub fn remember_token(&self, epoch: u64, token: &Token, secret: &[u8]) -> Arc<Verified> {
        let tenant = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            tenants
                .entry(token.tenant.as_str().to_owned())
                .or_insert_with(|| Arc::from(token.tenant.as_str()))
                .clone()
        };
        let (name, subject) = (token.name.as_str(), token.subject.as_str());
        let v = Arc::new(Verified {
            id: key(&token.id),
            namespace: token.namespace,
            scopes: token.scopes,
            tenant,
            text: format!("{name}{subject}{}", token.creator.as_str()).into_boxed_str(),
            name_len: name.len() as u16,
            subject_len: subject.len() as u16,
            created_at: micros(token.created_at),
            expires_at: token.expires_at.map(micros),
            revoked_at: token.revoked_at.map(micros),
            replaces: token.replaces.as_ref().map(key),
            digest: digest(secret),
            loaded_at: self.started.elapsed().as_secs() as u32,
        });
        if self.epoch() == epoch {
            self.tokens.insert(v.id, v.clone());
        }
        v
    }

    pub fn remember_absent(&self, epoch: u64, id: &TokenId) {
        if self.epoch() == epoch {
            self.absent.insert(key(id), ());
        }
    }

    /// `Some(None)`: known to have no such principal.
    pub fn principal(&self, key: &str) -> Option<Option<Arc<Principal>>> {
        if !self.trusted() {
            return None;
        }
        self.principals.get(key)
    }

    pub fn remember_principal(
        &self,
        epoch: u64,
        key: String,
        p: Option<Principal>,
    ) -> Option<Arc<Principal>> {
        let p = p.map(Arc::new);
        if self.epoch() == epoch {
            self.principals.insert(key, p.clone());
        }
        p
    }

    /// Forgets everything that `what` may have made wrong.
    pub fn invalidate(&self, what: &Changed) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        match what {
            Changed::Token(id) => {
                let k = key(id);
                self.tokens.invalidate(&k);
                self.absent.invalidate(&k);
            }
            Changed::Principal(tenant, principal) => {
                self.principals
                    .invalidate(&*owner_key(tenant, principal.as_str()));
            }
        }
    }

    /// Forgets everything (used when the change log could not be followed).
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.tokens.invalidate_all();
        self.absent.invalidate_all();
        self.principals.invalidate_all();
    }

    pub fn token_count(&self) -> u64 {
        self.tokens.run_pending_tasks();
        self.tokens.entry_count()
    }
}

/// How long a hole in the change-log numbering is waited for before it is taken for a
/// rolled-back transaction. Longer than any write transaction of jeton's can stay open.
const GAP_PATIENCE: Duration = Duration::from_secs(10);
/// Change-log rows older than this are deleted.
const KEEP_CHANGES: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Position of a follower in the change log.
///
/// Numbers are handed out at insert, not at commit: a transaction that took number 7 can
/// commit after the one that took 8. Reading "after the highest number seen" would skip 7
/// for ever. So the follower keeps a `floor` below which everything was applied, applies any
/// row above it that it has not seen yet, and moves the floor only over contiguous numbers —
/// or over a hole that stayed open for `GAP_PATIENCE` (a rolled-back transaction leaves one).
#[derive(Debug, Default)]
pub struct Cursor {
    floor: i64,
    seen: BTreeSet<i64>,
    holes: HashMap<i64, Instant>,
}

impl Cursor {
    pub fn at(floor: i64) -> Self {
        Self {
            floor,
            ..Self::default()
        }
    }

    pub fn floor(&self) -> i64 {
        self.floor
    }

    /// Whether `seq` is new (and records it as seen).
    pub fn admit(&mut self, seq: i64) -> bool {
        seq > self.floor && self.seen.insert(seq)
    }

    /// Moves the floor over what is contiguous or given up on.
    pub fn advance(&mut self, now: Instant) {
        while let Some(&first) = self.seen.first() {
            let next = self.floor + 1;
            if first == next {
                self.seen.remove(&first);
                self.floor = next;
                self.holes.remove(&next);
            } else {
                let since = *self.holes.entry(next).or_insert(now);
                if now.duration_since(since) >= GAP_PATIENCE {
                    self.holes.remove(&next);
                    self.floor = next;
                } else {
                    break;
                }
            }
        }
    }
}

/// Follows the change log for ever, applying every change to `cache`.
pub async fn follow(store: Store, cache: Arc<ValidationCache>, every: Duration) {
    let mut cursor = loop {
        match store.last_change().await {
            Ok(seq) => {
                cache.mark_fresh();
                break Cursor::at(seq);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the change log yet");
                tokio::time::sleep(every).await;
            }
        }
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = Instant::now();
    let mut failing = false;
    loop {
        tick.tick().await;
        match store.changes_after(cursor.floor(), 10_000).await {
            Ok(rows) => {
                for row in rows {
                    if cursor.admit(row.seq)
                        && let Some(what) = row.what
                    {
                        cache.invalidate(&what);
                    }
                }
                cursor.advance(Instant::now());
                cache.mark_fresh();
                if failing {
                    tracing::info!("following the change log again");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read the change log; cached answers are not trusted until it can");
                    failing = true;
                }
                cache.clear();
            }
        }
        if last_prune.elapsed() > Duration::from_secs(60) {
            last_prune = Instant::now();
            if let Err(e) = store.prune_changes(chrono::Utc::now() - KEEP_CHANGES).await {
                tracing::debug!(error = %e, "pruning the change log failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_waits_for_late_commits() {
        let t0 = Instant::now();
        let mut c = Cursor::at(5);
        // 7 commits before 6.
        assert!(c.admit(7));
        c.advance(t0);
        assert_eq!(c.floor(), 5, "6 may still commit");
        assert!(!c.admit(7), "7 is not applied twice");
        assert!(c.admit(6));
        c.advance(t0);
        assert_eq!(c.floor(), 7);
        assert!(!c.admit(6));
    }

    #[test]
    fn cursor_gives_up_on_a_hole_after_a_while() {
        let t0 = Instant::now();
        let mut c = Cursor::at(0);
        assert!(c.admit(2));
        c.advance(t0);
        assert_eq!(c.floor(), 0);
        c.advance(t0 + GAP_PATIENCE);
        assert_eq!(c.floor(), 2, "1 was rolled back");
    }
}
