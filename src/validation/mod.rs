//! The validate path: whether a presented token string is a stored token with the right
//! secret, answered from memory whenever the answer cannot be wrong.
//!
//! - **Verified tokens**: id → the token row and the SHA-256 digest of the secret that
//!   passed Argon2 ([`entry`]). A hit costs one map lookup and one constant-time comparison
//!   of digests; Argon2 is paid once per token per entry lifetime. Entries hold the row as
//!   read (revoked and expired tokens too, so repeated use of a dead token is cheap) and the
//!   caller judges them against the clock on every use: expiry needs no event.
//! - **Absent ids**: ids with no row, kept briefly in a cache of their own so that a flood of
//!   random ids neither reaches the database each time nor evicts real entries.
//! - **Principals**: the owners of API tokens, including "no such principal", judged
//!   against the clock on every use: an activation reaching its end needs no event.
//! - **One at a time per id**: concurrent first validations of one id take turns: the first
//!   caches what it verified, and a second with the same secret is then a hit; with another
//!   secret, it verifies in its own turn. An unknown id costs a database read, no Argon2 (ids
//!   are public); a wrong secret marks the id suspect for a while, and suspect ids verify in
//!   a lane that holds at most half of the Argon2 slots.
//! - **Pacing**: beyond a thousand a second, answers that find no token wait before they
//!   are given ([`pacer`]), so that callers who hold no token cannot keep the server busy.
//! - **Stale refresh**: an entry older than the time to live is refreshed by re-reading its
//!   row, keeping the verified digest (a secret never changes, so no Argon2).
//! - **Invalidation**: every write that can change an answer appends to the database's
//!   change log in its own transaction; the writer drops its entries before it answers
//!   ([`Validator::invalidate`]), and the [`follower`] applies everyone's changes here within
//!   a poll interval. A replica that cannot read the log for `stale_after` uses no entry.
//!   A load that raced with an invalidation is not cached: every invalidation bumps the epoch
//!   of its key's slot (one of 1024), and a load keeps its result only if its slot's epoch
//!   is the one it read before going to the database, checked before and after the insert.
//!
//! Nothing here decides whether a token is good: that is the domain's `judge`.

mod cache;
mod entry;
mod follower;
mod pacer;

pub(crate) use cache::CacheSettings;

/// How long a replica trusts its cache after the start of its last read of the change log
/// that caught up: the contract's "every change reaches every replica within one second".
pub(crate) const TRUST_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest `--change-poll-interval`: five polls fit in [`TRUST_WINDOW`], so a replica
/// whose reads succeed never distrusts its cache between two of them.
pub(crate) const MAX_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);
pub(crate) use entry::Verified;

use crate::background::Task;
use crate::domain::{Namespace, Principal, Token, TokenId, TokenString};
use crate::hashing::{HashError, Hasher, Lane};
use crate::metrics::CacheLookup;
use crate::store::{Changed, Store, StoreError};
use cache::{Lookup, ValidationCache};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a token could not be looked up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// The turn of one id: held while its first validation runs.
type Turn = Arc<tokio::sync::Mutex<()>>;

/// The validate path of one replica. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Validator {
    store: Store,
    hasher: Hasher,
    cache: Arc<ValidationCache>,
    /// First validations in progress, by token id.
    inflight: Arc<Mutex<HashMap<entry::Key, Turn>>>,
    pacer: Arc<pacer::Pacer>,
    poll_interval: std::time::Duration,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Validator {
    pub(crate) fn new(store: Store, hasher: Hasher, settings: &CacheSettings) -> Self {
        Self {
            store,
            hasher,
            cache: Arc::new(ValidationCache::new(settings, cache::Ticker::real())),
            inflight: Arc::default(),
            pacer: Arc::default(),
            poll_interval: settings.poll_interval,
        }
    }

    /// Starts following the change log; until it has read the log once, no entry is used.
    pub(crate) fn follow_changes(&self) -> Task {
        follower::start(self.store.clone(), self.cache.clone(), self.poll_interval)
    }

    /// Entries in the caches: verified tokens, absent ids, principals.
    pub(crate) fn entries(&self) -> (u64, u64, u64) {
        self.cache.entries()
    }

    /// Drops what a write made on this replica may have made wrong, before it answers.
    pub(crate) fn invalidate(&self, what: &Changed) {
        self.cache.invalidate(what);
    }

    /// The verified entry behind a presented token string, or `None` when there is no such
    /// token or the secret is wrong (indistinguishable on purpose). Revoked and expired tokens
    /// are returned too: the caller judges.
    /// Beyond a thousand a second, "none" answers are paced ([`pacer`]).
    pub(crate) async fn verified(
        &self,
        presented: &TokenString,
    ) -> Result<Option<Arc<Verified>>, LookupError> {
        let found = self.find(presented).await?;
        if found.is_none()
            && let Some(wait) = self.pacer.no_token(std::time::Instant::now())
        {
            if let Some(m) = crate::metrics::get() {
                m.paced.increment(1);
            }
            tokio::time::sleep(wait).await;
        }
        Ok(found)
    }

    async fn find(&self, presented: &TokenString) -> Result<Option<Arc<Verified>>, LookupError> {
        let id = presented.id();
        let lookup = self.cache.token(&id);
        if let Some(m) = crate::metrics::get() {
            m.cache_lookup(match &lookup {
                Lookup::Hit(_) => CacheLookup::Hit,
                Lookup::Stale(_) => CacheLookup::Stale,
                Lookup::Absent => CacheLookup::Absent,
                Lookup::Miss => CacheLookup::Miss,
            });
        }
        match lookup {
            Lookup::Hit(v) => return Ok(v.matches(presented.secret()).then_some(v)),
            Lookup::Stale(v) => {
                if !v.matches(presented.secret()) {
                    return Ok(None);
                }
                // Verified before; only the row may have changed. Rows are never deleted.
                let epoch = self.cache.token_epoch(&id);
                let row = self.store.token(&id).await?;
                return Ok(row.map(|t| self.cache.remember_token(epoch, &t, presented.secret())));
            }
            Lookup::Absent => return Ok(None),
            Lookup::Miss => {}
        }
        // One first validation per id at a time: a second caller with the same secret finds
        // the entry the first one cached; one with another secret waits its turn.
        let key = entry::key(&id);
        let turn = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            inflight.entry(key).or_default().clone()
        };
        let outcome = {
            let _turn = turn.lock().await;
            match self.cache.token(&id) {
                Lookup::Hit(v) => Ok(v.matches(presented.secret()).then_some(v)),
                Lookup::Absent => Ok(None),
                Lookup::Stale(_) | Lookup::Miss => self.load(presented).await,
            }
        };
        {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            // The map's own reference and ours: nobody else waits for this id.
            if inflight
                .get(&key)
                .is_some_and(|t| Arc::ptr_eq(t, &turn) && Arc::strong_count(t) == 2)
            {
                inflight.remove(&key);
            }
        }
        outcome
    }

    /// The slow path of [`Self::verified`]: one database read, and one Argon2 verification
    /// for an id that exists (an unknown id costs none: ids are public). An id whose
    /// verification failed recently verifies in the suspect lane, which can hold at most half
    /// of the Argon2 slots.
    async fn load(&self, presented: &TokenString) -> Result<Option<Arc<Verified>>, LookupError> {
        let id = presented.id();
        let epoch = self.cache.token_epoch(&id);
        let Some((token, hash)) = self.store.token_with_hash(&id).await? else {
            self.cache.remember_absent(epoch, &id);
            return Ok(None);
        };
        let key = entry::key(&id);
        let lane = if self.cache.is_suspect(&key) {
            Lane::Suspect
        } else {
            Lane::Normal
        };
        let good = self
            .hasher
            .verify(presented.secret().to_vec(), hash, lane)
            .await?;
        if !good {
            self.cache.suspect(key);
            return Ok(None);
        }
        Ok((token.namespace == presented.namespace())
            .then(|| self.cache.remember_token(epoch, &token, presented.secret())))
    }

    /// The tenant of token `id` as far as this replica's cache knows, without asking the
    /// database: `Some(Some(tenant))` for a token it holds, `Some(None)` for an id it knows
    /// does not exist, `None` when it cannot tell.
    pub(crate) fn cached_tenant(&self, id: &TokenId) -> Option<Option<crate::domain::TenantId>> {
        match self.cache.token(id) {
            Lookup::Hit(v) | Lookup::Stale(v) => Some(Some(v.token().tenant)),
            Lookup::Absent => Some(None),
            Lookup::Miss => None,
        }
    }

    /// The owner of an API token as stored now; tenant tokens have none.
    pub(crate) async fn owner(&self, token: &Token) -> Result<Option<Arc<Principal>>, StoreError> {
        if token.namespace != Namespace::Api {
            return Ok(None);
        }
        let tenant = &token.tenant;
        if let Some(p) = self.cache.principal(tenant, token.subject.as_str()) {
            return Ok(p);
        }
        let id = token.subject.to_principal();
        let epoch = self.cache.principal_epoch(tenant, id.as_str());
        let p = self.store.principal(tenant, &id).await?;
        Ok(self.cache.remember_principal(epoch, tenant, &id, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ApiUrl, DisplayName, PrincipalId, ScopeSet, Tenant, TenantId, TokenName};
    use crate::hashing::HashSettings;
    use crate::store::DbOptions;
    use chrono::Utc;
    use std::time::Duration;

    fn settings() -> CacheSettings {
        CacheSettings {
            capacity: 1000,
            negative_capacity: 1000,
            poll_interval: Duration::from_millis(20),
            ..CacheSettings::for_tests()
        }
    }

    fn hasher() -> Hasher {
        let cheap = HashSettings {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 2,
            queue_timeout: Duration::from_secs(2),
        };
        Hasher::new(&cheap, crate::hashing::Pepper::default()).unwrap()
    }

    async fn store(url: &str) -> Store {
        let options = DbOptions {
            max_connections: 4,
            connect_timeout: Duration::from_secs(5),
            create: true,
            read_url: None,
        };
        let store = Store::connect(url, &options).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// A replica's validate path, following the change log; the task runs until the test
    /// ends.
    async fn replica(url: &str, cache: CacheSettings) -> (Validator, Task) {
        let v = Validator::new(store(url).await, hasher(), &cache);
        let follower = v.follow_changes();
        (v, follower)
    }

    fn contoso() -> Tenant {
        let id = TenantId::parse("contoso").unwrap();
        Tenant {
            display_name: DisplayName::from(&id),
            api_url: ApiUrl::default_for(&id),
            max_token_lifetime: None,
            revoke_unused_after: None,
            require_allowed_cidrs: false,
            id,
        }
    }

    /// A tenant, its admin and one token of theirs, written through `url`'s store; the token
    /// string.
    async fn bootstrap(url: &str) -> TokenString {
        let alice = PrincipalId::parse("alice").unwrap();
        let admin = crate::domain::Principal {
            tenant: contoso().id,
            id: alice.clone(),
            display_name: DisplayName::from(&alice),
            role: crate::domain::Role::Admin,
            assignment: crate::domain::Assignment::Active,
            activation_end: None,
        };
        let string = TokenString::generate(Namespace::Api).unwrap();
        let hash = hasher().hash(string.secret().to_vec()).await.unwrap();
        let now = Utc::now();
        store(url)
            .await
            .create_tenant(&contoso(), &admin, &token(&string, now), &hash, now, &[])
            .await
            .unwrap();
        string
    }

    /// An admin API token of alice's with the id inside `string`.
    fn token(string: &TokenString, now: chrono::DateTime<Utc>) -> Token {
        Token {
            id: string.id(),
            tenant: TenantId::parse("contoso").unwrap(),
            namespace: Namespace::Api,
            name: TokenName::parse("late").unwrap(),
            subject: PrincipalId::parse("alice").unwrap().into(),
            creator: PrincipalId::parse("alice").unwrap(),
            scopes: ScopeSet::ALL,
            created_at: now,
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
            replaces: None,
            allowed: Default::default(),
        }
    }

    /// Lets the followers apply the change rows written so far before a test caches
    /// anything.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    /// The database of one test, on either engine, kept (and then dropped) with the test: a
    /// temporary SQLite file, or a PostgreSQL database of its own (`JETON_TEST_POSTGRES_URL`,
    /// by default the machine's server on 127.0.0.1:5432).
    enum TestDb {
        Sqlite {
            _dir: tempfile::TempDir,
            url: String,
        },
        Postgres(jeton_testkit::postgres::PgDatabase),
    }

    impl TestDb {
        fn sqlite() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("j.db").display());
            TestDb::Sqlite { _dir: dir, url }
        }

        async fn postgres() -> Self {
            TestDb::Postgres(
                jeton_testkit::postgres::PgDatabase::create("jeton_unit")
                    .await
                    .expect("PostgreSQL reachable"),
            )
        }

        fn url(&self) -> &str {
            match self {
                TestDb::Sqlite { url, .. } => url,
                TestDb::Postgres(db) => db.url(),
            }
        }
    }

    /// A miss for an id is remembered, but a token created with that id just afterwards —
    /// on another replica — is found within the change-log deadline.
    #[tokio::test]
    async fn the_negative_cache_does_not_hide_a_token_created_after_a_miss() {
        the_negative_cache_does_not_hide_a_token_created_after_a_miss_on(TestDb::sqlite()).await;
    }

    #[tokio::test]
    async fn the_negative_cache_does_not_hide_a_token_created_after_a_miss_on_postgres() {
        the_negative_cache_does_not_hide_a_token_created_after_a_miss_on(TestDb::postgres().await)
            .await;
    }

    async fn the_negative_cache_does_not_hide_a_token_created_after_a_miss_on(db: TestDb) {
        let url = db.url().to_owned();
        bootstrap(&url).await;
        let (b, _follower) = replica(&url, settings()).await;
        settle().await;

        let string = TokenString::generate(Namespace::Api).unwrap();
        assert!(b.verified(&string).await.unwrap().is_none());
        assert!(
            matches!(b.cache.token(&string.id()), Lookup::Absent),
            "the miss is cached"
        );

        // Replica A stores a token with exactly that id.
        let a = store(&url).await;
        let hash = hasher().hash(string.secret().to_vec()).await.unwrap();
        a.insert_token(&token(&string, Utc::now()), &hash, &[])
            .await
            .unwrap();

        let start = std::time::Instant::now();
        while b.verified(&string).await.unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "still hidden after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// An id that does not exist costs a database read and no Argon2; a wrong secret for an
    /// id that does makes it suspect.
    #[tokio::test]
    async fn unknown_ids_cost_no_argon2_and_wrong_secrets_make_an_id_suspect() {
        unknown_ids_cost_no_argon2_and_wrong_secrets_make_an_id_suspect_on(TestDb::sqlite()).await;
    }

    #[tokio::test]
    async fn unknown_ids_cost_no_argon2_and_wrong_secrets_make_an_id_suspect_on_postgres() {
        unknown_ids_cost_no_argon2_and_wrong_secrets_make_an_id_suspect_on(
            TestDb::postgres().await,
        )
        .await;
    }

    async fn unknown_ids_cost_no_argon2_and_wrong_secrets_make_an_id_suspect_on(db: TestDb) {
        let url = db.url().to_owned();
        let real = bootstrap(&url).await;
        let (v, _follower) = replica(&url, settings()).await;
        settle().await;
        let unknown = TokenString::generate(Namespace::Api).unwrap();
        assert!(v.verified(&unknown).await.unwrap().is_none());
        assert_eq!(v.hasher.verifications(), 0, "no Argon2 for an unknown id");

        let forged = forge_secret(&real);
        assert!(v.verified(&forged).await.unwrap().is_none());
        assert_eq!(v.hasher.verifications(), 1);
        assert!(v.cache.is_suspect(&entry::key(&real.id())));
        assert!(
            v.verified(&real).await.unwrap().is_some(),
            "the right secret still works"
        );
    }

    /// `t` with another secret (and a checksum that matches it).
    fn forge_secret(t: &TokenString) -> TokenString {
        let s = t.expose();
        let body = format!("{}{}", &s[..26], "Z".repeat(43));
        let crc = crc32fast::hash(body.as_bytes());
        let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut digits = [b'0'; 6];
        let mut c = crc;
        for d in digits.iter_mut().rev() {
            *d = alphabet[(c % 62) as usize];
            c /= 62;
        }
        TokenString::parse(&format!("{body}{}", std::str::from_utf8(&digits).unwrap())).unwrap()
    }

    /// Concurrent first validations of one token share one Argon2 verification.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_validations_share_one_verification() {
        concurrent_first_validations_share_one_verification_on(TestDb::sqlite()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_validations_share_one_verification_on_postgres() {
        concurrent_first_validations_share_one_verification_on(TestDb::postgres().await).await;
    }

    async fn concurrent_first_validations_share_one_verification_on(db: TestDb) {
        let url = db.url().to_owned();
        let string = bootstrap(&url).await;
        let (v, _follower) = replica(&url, settings()).await;
        settle().await;
        let before = v.hasher.verifications();
        let mut calls = Vec::new();
        for _ in 0..16 {
            let (v, s) = (v.clone(), string.clone());
            calls.push(tokio::spawn(async move { v.verified(&s).await }));
        }
        for c in calls {
            assert!(c.await.unwrap().unwrap().is_some());
        }
        assert_eq!(v.hasher.verifications() - before, 1);
    }

    /// The cache's time to live re-reads the row but does not pay Argon2 again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_entry_is_refreshed_without_argon2() {
        a_stale_entry_is_refreshed_without_argon2_on(TestDb::sqlite()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_entry_is_refreshed_without_argon2_on_postgres() {
        a_stale_entry_is_refreshed_without_argon2_on(TestDb::postgres().await).await;
    }

    async fn a_stale_entry_is_refreshed_without_argon2_on(db: TestDb) {
        let url = db.url().to_owned();
        let string = bootstrap(&url).await;
        let short = CacheSettings {
            ttl: Duration::from_secs(1),
            ..settings()
        };
        let (v, _follower) = replica(&url, short).await;
        settle().await;
        assert!(v.verified(&string).await.unwrap().is_some());
        let verified = v.hasher.verifications();
        // The time to live is measured on the real clock; this is the one wait in the suite.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(matches!(v.cache.token(&string.id()), Lookup::Stale(_)));
        assert!(v.verified(&string).await.unwrap().is_some());
        assert!(
            matches!(v.cache.token(&string.id()), Lookup::Hit(_)),
            "refreshed"
        );
        assert_eq!(
            v.hasher.verifications(),
            verified,
            "no Argon2 for a refresh"
        );
    }
}
