//! The bounded memory of the validate path: verified tokens, absent ids and principals,
//! with the epoch that keeps a racing load out and the freshness that decides whether any
//! of it may be used.

use super::entry::{Key, Verified, key};
use crate::domain::{Principal, PrincipalId, TenantId, Token, TokenId};
use crate::store::Changed;
use moka::sync::Cache;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Cache sizes and lifetimes.
#[derive(Debug, Clone)]
pub(crate) struct CacheSettings {
    /// Most tokens kept (verified entries).
    pub(crate) capacity: u64,
    /// Safety-net lifetime of an entry.
    pub(crate) ttl: Duration,
    /// Most unknown ids remembered, and for how long.
    pub(crate) negative_capacity: u64,
    pub(crate) negative_ttl: Duration,
    /// How often the change log is read.
    pub(crate) poll_interval: Duration,
    /// Entries are not used when the change log was last read longer ago than this.
    pub(crate) stale_after: Duration,
}

/// How long an id that failed a verification stays suspect.
const SUSPECT_FOR: Duration = Duration::from_secs(600);

/// Key of the principal cache.
fn owner_key(tenant: &TenantId, principal: &str) -> String {
    format!("{tenant}/{principal}")
}

/// What the cache knows of a token id.
pub(crate) enum Lookup {
    Hit(Arc<Verified>),
    /// Verified once, but the row was read longer than the time to live ago: read it again
    /// (the secret cannot have changed, so no Argon2).
    Stale(Arc<Verified>),
    Absent,
    Miss,
}

pub(super) struct ValidationCache {
    tokens: Cache<Key, Arc<Verified>>,
    absent: Cache<Key, ()>,
    /// Ids that failed a verification recently (someone holds a wrong secret for them).
    suspects: Cache<Key, ()>,
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

impl ValidationCache {
    pub(super) fn new(s: &CacheSettings) -> Self {
        Self {
            // No time to live here: a stale entry is refreshed in place (see `Lookup::Stale`),
            // keeping the verified digest, so the safety net costs a row read, not Argon2.
            tokens: Cache::builder().max_capacity(s.capacity).build(),
            absent: Cache::builder()
                .max_capacity(s.negative_capacity)
                .time_to_live(s.negative_ttl)
                .build(),
            suspects: Cache::builder()
                .max_capacity(s.negative_capacity)
                .time_to_live(SUSPECT_FOR)
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

    /// Whether the change log was read recently enough for entries to be used.
    fn is_fresh(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        now.saturating_sub(self.fresh_at_ms.load(Ordering::Relaxed)) <= self.stale_after_ms
    }

    /// Records a successful read of the change log.
    pub(super) fn mark_fresh(&self) {
        self.fresh_at_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The epoch to pass back to the `remember_*` calls of a load that starts now.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(super) fn token(&self, id: &TokenId) -> Lookup {
        if !self.is_fresh() {
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

    pub(super) fn remember_token(&self, epoch: u64, token: &Token, secret: &[u8]) -> Arc<Verified> {
        let tenant = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            tenants
                .entry(token.tenant.as_str().to_owned())
                .or_insert_with(|| Arc::from(token.tenant.as_str()))
                .clone()
        };
        let loaded_at = self.started.elapsed().as_secs() as u32;
        let v = Arc::new(Verified::new(token, tenant, secret, loaded_at));
        if self.epoch() == epoch {
            self.tokens.insert(v.id, v.clone());
        }
        v
    }

    /// Marks `id` as one a wrong secret was presented for.
    pub(super) fn suspect(&self, id: Key) {
        self.suspects.insert(id, ());
    }

    pub(super) fn is_suspect(&self, id: &Key) -> bool {
        self.suspects.contains_key(id)
    }

    pub(super) fn remember_absent(&self, epoch: u64, id: &TokenId) {
        if self.epoch() == epoch {
            self.absent.insert(key(id), ());
        }
    }

    /// `Some(None)`: known to have no such principal.
    pub(super) fn principal(&self, tenant: &TenantId, id: &str) -> Option<Option<Arc<Principal>>> {
        if !self.is_fresh() {
            return None;
        }
        self.principals.get(&owner_key(tenant, id))
    }

    pub(super) fn remember_principal(
        &self,
        epoch: u64,
        tenant: &TenantId,
        id: &PrincipalId,
        p: Option<Principal>,
    ) -> Option<Arc<Principal>> {
        let p = p.map(Arc::new);
        if self.epoch() == epoch {
            self.principals
                .insert(owner_key(tenant, id.as_str()), p.clone());
        }
        p
    }

    /// Forgets everything that `what` may have made wrong.
    pub(super) fn invalidate(&self, what: &Changed) {
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

    /// Entries now: verified tokens, absent ids, principals.
    pub(super) fn entries(&self) -> (u64, u64, u64) {
        (
            self.tokens.entry_count(),
            self.absent.entry_count(),
            self.principals.entry_count(),
        )
    }

    /// Forgets everything (used when the change log could not be followed).
    pub(super) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.tokens.invalidate_all();
        self.absent.invalidate_all();
        self.principals.invalidate_all();
    }
}
