//! The bounded memory of the validate path: verified tokens, absent ids and principals,
//! with the epoch that keeps a racing load out and the freshness that decides whether any
//! of it may be used.
//!
//! Each map is a `quick_cache` (sharded, CLOCK-PRO-like eviction: a hit is a read lock and
//! a flag, with no access-order list to maintain), keyed by the fixed-size token id or, for
//! principals, by a key looked up without formatting a string. Lifetimes are judged here,
//! against [`Ticker`], a monotonic clock that tests can move.

use super::entry::{Key, Verified, key};
use crate::domain::{Principal, PrincipalId, TenantId, Token, TokenId};
use crate::store::Changed;
use quick_cache::Equivalent;
use quick_cache::sync::Cache;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
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
    /// `--stale-if-error`: while no database host answers at all, entries are still used
    /// until the last read of the change log is this old (zero: never).
    pub(crate) stale_if_error: Duration,
}

/// How long an id that failed a verification stays suspect.
const SUSPECT_FOR: Duration = Duration::from_secs(600);

/// Epoch slots: an invalidation keeps out only the loads whose key falls in its slot, so a
/// stream of writes elsewhere in the fleet does not keep every first validation from being
/// cached (each uncached one would pay Argon2 again).
const EPOCH_SLOTS: usize = 1024;

/// A monotonic clock in milliseconds: the process's, or one a test moves by hand.
#[derive(Debug, Clone)]
pub(crate) enum Ticker {
    Real(Instant),
    #[cfg(test)]
    Manual(Arc<AtomicU64>),
}

impl Ticker {
    pub(crate) fn real() -> Self {
        Ticker::Real(Instant::now())
    }

    /// A clock at 0 that moves only when `advance` is called on it.
    #[cfg(test)]
    pub(crate) fn manual() -> Self {
        Ticker::Manual(Arc::default())
    }

    #[cfg(test)]
    pub(crate) fn advance(&self, by: Duration) {
        match self {
            Ticker::Manual(ms) => {
                ms.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
            }
            Ticker::Real(_) => panic!("the real clock cannot be moved"),
        }
    }

    fn ms(&self) -> u64 {
        match self {
            Ticker::Real(start) => start.elapsed().as_millis() as u64,
            #[cfg(test)]
            Ticker::Manual(ms) => ms.load(Ordering::SeqCst),
        }
    }
}

/// Key of the principal cache: tenant and principal id.
#[derive(Debug, Hash, PartialEq, Eq)]
struct OwnerKey {
    tenant: Box<str>,
    principal: Box<str>,
}

/// The same key, borrowed: what a lookup hashes (identically) without allocating.
#[derive(Hash)]
struct OwnerRef<'a> {
    tenant: &'a str,
    principal: &'a str,
}

impl Equivalent<OwnerKey> for OwnerRef<'_> {
    fn equivalent(&self, k: &OwnerKey) -> bool {
        *k.tenant == *self.tenant && *k.principal == *self.principal
    }
}

fn owner<'a>(tenant: &'a TenantId, principal: &'a str) -> OwnerRef<'a> {
    OwnerRef {
        tenant: tenant.as_str(),
        principal,
    }
}

impl OwnerRef<'_> {
    fn owned(&self) -> OwnerKey {
        OwnerKey {
            tenant: self.tenant.into(),
            principal: self.principal.into(),
        }
    }
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
    /// Ids with no row, and when (ms) that was read.
    absent: Cache<Key, u64>,
    /// Ids that failed a verification recently (someone holds a wrong secret for them), and
    /// when (ms).
    suspects: Cache<Key, u64>,
    /// Principals (or their absence), and when (ms) they were read.
    principals: Cache<OwnerKey, (Option<Arc<Principal>>, u64)>,
    /// One shared copy of each tenant id.
    tenants: std::sync::Mutex<HashMap<String, Arc<str>>>,
    /// Bumped by every invalidation of a key in the slot; see [`Self::token_epoch`].
    epochs: Box<[AtomicU64]>,
    slot_of: foldhash::fast::FixedState,
    ticker: Ticker,
    /// `ticker` ms of the last successful read of the change log.
    fresh_at_ms: AtomicU64,
    stale_after_ms: u64,
    stale_if_error_ms: u64,
    /// Whether the follower found no database host answering at its last read.
    cut_off: std::sync::atomic::AtomicBool,
    /// When an answer past the trust window was last logged (at most one line a second).
    stale_logged_ms: AtomicU64,
    ttl_ms: u64,
    negative_ttl_ms: u64,
}

impl std::fmt::Debug for ValidationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidationCache")
            .field("tokens", &self.tokens.len())
            .field("principals", &self.principals.len())
            .finish_non_exhaustive()
    }
}

fn capacity(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX).max(1)
}

impl ValidationCache {
    pub(super) fn new(s: &CacheSettings, ticker: Ticker) -> Self {
        let fresh_at_ms = AtomicU64::new(ticker.ms());
        Self {
            // No time to live here: a stale entry is refreshed in place (see `Lookup::Stale`),
            // keeping the verified digest, so the safety net costs a row read, not Argon2.
            tokens: Cache::new(capacity(s.capacity)),
            absent: Cache::new(capacity(s.negative_capacity)),
            suspects: Cache::new(capacity(s.negative_capacity)),
            principals: Cache::new(capacity(s.capacity)),
            tenants: std::sync::Mutex::default(),
            epochs: (0..EPOCH_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            slot_of: foldhash::fast::FixedState::default(),
            ticker,
            // Counted from creation: a cache whose follower never reads the log stops being
            // used `stale_after` after it was made.
            fresh_at_ms,
            stale_after_ms: s.stale_after.as_millis() as u64,
            stale_if_error_ms: s.stale_if_error.as_millis() as u64,
            cut_off: std::sync::atomic::AtomicBool::new(false),
            stale_logged_ms: AtomicU64::new(0),
            ttl_ms: (s.ttl.as_millis() as u64).max(1),
            negative_ttl_ms: s.negative_ttl.as_millis() as u64,
        }
    }

    /// Milliseconds on the cache's clock.
    fn now_ms(&self) -> u64 {
        self.ticker.ms()
    }

    /// Whether the change log was read recently enough for entries to be used — or, past
    /// that, whether `--stale-if-error` lets them be used because no database host answers
    /// at all. `answer`: this lookup is the answer to a call (counted and logged when stale).
    fn is_fresh(&self, now: u64, answer: bool) -> bool {
        let age = now.saturating_sub(self.fresh_at_ms.load(Ordering::Relaxed));
        age <= self.stale_after_ms || self.stale_allowed(now, age, answer)
    }

    #[cold]
    fn stale_allowed(&self, now: u64, age: u64, answer: bool) -> bool {
        if age > self.stale_if_error_ms || !self.cut_off.load(Ordering::Relaxed) {
            return false;
        }
        if answer {
            if let Some(m) = crate::metrics::get() {
                m.stale_answers.increment(1);
            }
            let logged = self.stale_logged_ms.load(Ordering::Relaxed);
            if now.saturating_sub(logged) >= 1000
                && self
                    .stale_logged_ms
                    .compare_exchange(logged, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    last_read_ms_ago = age,
                    "no database host answers: answering from the cache (--stale-if-error)"
                );
            }
        }
        true
    }

    /// Whether the follower's last read found no database host answering at all.
    pub(super) fn cut_off(&self, cut: bool) {
        self.cut_off.store(cut, Ordering::Relaxed);
    }

    /// The moment a read of the change log begins, on the cache's clock.
    pub(super) fn read_begins(&self) -> u64 {
        self.now_ms()
    }

    /// Records that every change committed before `began` (from [`Self::read_begins`]) has
    /// been applied. The trust window runs from when that read began, not from when it
    /// ended: a slow read must not stretch it, so whatever the load, an answer from memory is
    /// never older than `stale_after`.
    pub(super) fn mark_fresh(&self, began: u64) {
        self.fresh_at_ms.fetch_max(began, Ordering::Relaxed);
    }

    fn slot(&self, of: impl Hash) -> &AtomicU64 {
        &self.epochs[self.slot_of.hash_one(of) as usize % EPOCH_SLOTS]
    }

    /// The epoch of `id`'s slot, to pass back to `remember_token` or `remember_absent` by a
    /// load of `id` that starts now: if an invalidation in the slot comes in between, the
    /// load's result is not kept.
    pub(super) fn token_epoch(&self, id: &TokenId) -> u64 {
        self.slot(key(id)).load(Ordering::SeqCst)
    }

    /// The same for a load of a principal.
    pub(super) fn principal_epoch(&self, tenant: &TenantId, id: &str) -> u64 {
        self.slot(owner(tenant, id)).load(Ordering::SeqCst)
    }

    /// Keeps what a load found, unless an invalidation of its slot came since it started
    /// (`epoch`). Checked again after the insert: an invalidation between the check and the
    /// insert would otherwise have removed nothing and left the old answer behind.
    fn keep<K, Q, V>(&self, map: &Cache<K, V>, k: &Q, epoch: u64, entry: impl FnOnce() -> (K, V))
    where
        K: Eq + Hash,
        V: Clone,
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let slot = self.slot(k);
        if slot.load(Ordering::SeqCst) != epoch {
            return;
        }
        let (key, value) = entry();
        map.insert(key, value);
        if slot.load(Ordering::SeqCst) != epoch {
            map.remove(k);
        }
    }

    pub(super) fn token(&self, id: &TokenId) -> Lookup {
        let now = self.now_ms();
        if !self.is_fresh(now, true) {
            return Lookup::Miss;
        }
        let k = key(id);
        if let Some(v) = self.tokens.get(&k) {
            if now.saturating_sub(v.loaded_at) >= self.ttl_ms {
                Lookup::Stale(v)
            } else {
                Lookup::Hit(v)
            }
        } else if self
            .absent
            .get(&k)
            .is_some_and(|at| now.saturating_sub(at) < self.negative_ttl_ms)
        {
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
        let v = Arc::new(Verified::new(token, tenant, secret, self.now_ms()));
        let k = v.id;
        self.keep(&self.tokens, &k, epoch, || (k, v.clone()));
        v
    }

    /// Marks `id` as one a wrong secret was presented for.
    pub(super) fn suspect(&self, id: Key) {
        self.suspects.insert(id, self.now_ms());
    }

    pub(super) fn is_suspect(&self, id: &Key) -> bool {
        let now = self.now_ms();
        self.suspects
            .get(id)
            .is_some_and(|at| now.saturating_sub(at) < SUSPECT_FOR.as_millis() as u64)
    }

    pub(super) fn remember_absent(&self, epoch: u64, id: &TokenId) {
        let k = key(id);
        self.keep(&self.absent, &k, epoch, || (k, self.now_ms()));
    }

    /// `Some(None)`: known to have no such principal.
    pub(super) fn principal(&self, tenant: &TenantId, id: &str) -> Option<Option<Arc<Principal>>> {
        let now = self.now_ms();
        if !self.is_fresh(now, false) {
            return None;
        }
        self.principals
            .get(&owner(tenant, id))
            .filter(|(_, at)| now.saturating_sub(*at) < self.ttl_ms)
            .map(|(p, _)| p)
    }

    pub(super) fn remember_principal(
        &self,
        epoch: u64,
        tenant: &TenantId,
        id: &PrincipalId,
        p: Option<Principal>,
    ) -> Option<Arc<Principal>> {
        let p = p.map(Arc::new);
        let k = owner(tenant, id.as_str());
        self.keep(&self.principals, &k, epoch, || {
            (k.owned(), (p.clone(), self.now_ms()))
        });
        p
    }

    /// Forgets everything that `what` may have made wrong.
    /// The slot's epoch is bumped first, so that a load under way does not keep (or does
    /// not leave behind) what it read before the change.
    pub(super) fn invalidate(&self, what: &Changed) {
        match what {
            Changed::Token(id) => {
                let k = key(id);
                self.slot(k).fetch_add(1, Ordering::SeqCst);
                self.tokens.remove(&k);
                self.absent.remove(&k);
            }
            Changed::Principal(tenant, principal) => {
                let k = owner(tenant, principal.as_str());
                self.slot(&k).fetch_add(1, Ordering::SeqCst);
                self.principals.remove(&k);
            }
        }
    }

    /// Entries now: verified tokens, absent ids, principals.
    pub(super) fn entries(&self) -> (u64, u64, u64) {
        (
            self.tokens.len() as u64,
            self.absent.len() as u64,
            self.principals.len() as u64,
        )
    }
}

#[cfg(test)]
impl CacheSettings {
    /// Small sizes with the product's lifetimes and one-second trust window.
    pub(super) fn for_tests() -> Self {
        CacheSettings {
            capacity: 100,
            ttl: Duration::from_secs(60),
            negative_capacity: 100,
            negative_ttl: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            stale_after: Duration::from_secs(1),
            stale_if_error: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> TokenId {
        TokenId::parse(&c.to_string().repeat(22)).unwrap()
    }

    /// Lifetimes on the injected clock: no sleeping, and exact edges.
    #[test]
    fn absent_ids_suspects_and_trust_expire_on_the_cache_clock() {
        let ticker = Ticker::manual();
        let c = ValidationCache::new(&CacheSettings::for_tests(), ticker.clone());
        let (a, b) = (id('a'), id('b'));
        c.remember_absent(c.token_epoch(&a), &a);
        c.suspect(key(&b));
        assert!(matches!(c.token(&a), Lookup::Absent));
        assert!(c.is_suspect(&key(&b)));
        // The trust window: without a read of the change log for over `stale_after`, nothing
        // cached is used.
        let began = c.read_begins();
        ticker.advance(Duration::from_millis(1001));
        assert!(matches!(c.token(&a), Lookup::Miss), "not trusted any more");
        c.mark_fresh(began);
        assert!(
            matches!(c.token(&a), Lookup::Miss),
            "a read that began over `stale_after` ago renews nothing"
        );
        c.mark_fresh(c.read_begins());
        assert!(matches!(c.token(&a), Lookup::Absent), "trusted again");
        c.mark_fresh(began);
        assert!(matches!(c.token(&a), Lookup::Absent), "never moved back");
        ticker.advance(Duration::from_secs(4));
        c.mark_fresh(c.read_begins());
        assert!(matches!(c.token(&a), Lookup::Miss), "absent for 5 s only");
        assert!(c.is_suspect(&key(&b)));
        ticker.advance(SUSPECT_FOR);
        assert!(!c.is_suspect(&key(&b)), "suspect for 10 minutes");
    }

    /// An invalidation during a load keeps the load's result out; principals are found by a
    /// borrowed key and forgotten by it.
    #[test]
    fn an_invalidation_races_a_load_out_and_principal_keys_match_borrowed() {
        let c = ValidationCache::new(&CacheSettings::for_tests(), Ticker::manual());
        let tenant = TenantId::parse("contoso").unwrap();
        let alice = PrincipalId::parse("alice").unwrap();
        let before = c.principal_epoch(&tenant, "alice");
        c.invalidate(&Changed::Principal(tenant.clone(), alice.clone()));
        c.remember_principal(before, &tenant, &alice, None);
        assert!(c.principal(&tenant, "alice").is_none(), "raced: not cached");
        c.remember_principal(c.principal_epoch(&tenant, "alice"), &tenant, &alice, None);
        assert!(matches!(c.principal(&tenant, "alice"), Some(None)));
        assert!(
            c.principal(&TenantId::parse("fabrikam").unwrap(), "alice")
                .is_none()
        );
        c.invalidate(&Changed::Principal(tenant.clone(), alice));
        assert!(c.principal(&tenant, "alice").is_none());
    }

    /// An invalidation keeps out the loads of its own slot only: writes elsewhere do not stop
    /// first validations from being cached. One that lands between a load's check and its
    /// insert leaves nothing behind.
    #[test]
    fn invalidations_keep_out_loads_of_their_slot_only() {
        let c = ValidationCache::new(&CacheSettings::for_tests(), Ticker::manual());
        // Two ids in different slots.
        let a = id('a');
        let b = (b'b'..=b'z')
            .map(|ch| id(ch as char))
            .find(|b| !std::ptr::eq(c.slot(key(b)), c.slot(key(&a))))
            .unwrap();
        let (ea, eb) = (c.token_epoch(&a), c.token_epoch(&b));
        c.invalidate(&Changed::Token(b.clone()));
        c.remember_absent(ea, &a);
        c.remember_absent(eb, &b);
        assert!(
            matches!(c.token(&a), Lookup::Absent),
            "another slot's write"
        );
        assert!(matches!(c.token(&b), Lookup::Miss), "raced: not kept");

        let k = key(&b);
        let eb = c.token_epoch(&b);
        c.keep(&c.absent, &k, eb, || {
            // An invalidation after the check, before the insert.
            c.invalidate(&Changed::Token(b.clone()));
            (k, c.now_ms())
        });
        assert!(
            matches!(c.token(&b), Lookup::Miss),
            "removed after the insert"
        );
    }

    /// `--stale-if-error`: past the trust window, entries are used only while the follower
    /// finds no database host at all, and only until the last complete read is that old;
    /// with the default (zero), never.
    #[test]
    fn stale_if_error_serves_only_while_cut_off_and_within_its_bound() {
        let ticker = Ticker::manual();
        let settings = CacheSettings {
            stale_if_error: Duration::from_secs(30),
            ..CacheSettings::for_tests()
        };
        let c = ValidationCache::new(&settings, ticker.clone());
        let a = id('a');
        c.remember_absent(c.token_epoch(&a), &a);
        ticker.advance(Duration::from_secs(2));
        assert!(
            matches!(c.token(&a), Lookup::Miss),
            "reachable: fail closed"
        );
        c.cut_off(true);
        assert!(
            matches!(c.token(&a), Lookup::Absent),
            "cut off: from memory"
        );
        ticker.advance(Duration::from_millis(28_001));
        assert!(matches!(c.token(&a), Lookup::Miss), "not past the bound");
        let closed = ValidationCache::new(&CacheSettings::for_tests(), ticker.clone());
        closed.remember_absent(closed.token_epoch(&a), &a);
        ticker.advance(Duration::from_secs(2));
        closed.cut_off(true);
        assert!(matches!(closed.token(&a), Lookup::Miss), "0s: never");
    }
}
