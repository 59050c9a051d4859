//! Seeding for `jeton-bench`: bulk-creates tokens straight in the database, which would take
//! hours through `Generate` (one Argon2 hash each at production cost). Not part of the
//! service; hidden from the documentation.

use crate::config::DatabaseUrl;
use crate::domain::{Namespace, PrincipalId, ScopeSet, TenantId, Token, TokenName, TokenString};
use crate::hashing::{HashSettings, Hasher, Pepper};
use crate::store::{DbOptions, Store};
use chrono::{DateTime, TimeDelta, Utc};

/// How seeded tokens look in `List`: every third never used, every third used just now,
/// every third used 30 days ago.
pub async fn seed_tokens(
    url: &DatabaseUrl,
    tenant: &str,
    owner: &str,
    count: usize,
    hashed: bool,
    now: DateTime<Utc>,
) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    let store = Store::connect(url.expose(), &DbOptions::default()).await?;
    let tenant = TenantId::parse(tenant)?;
    let owner = PrincipalId::parse(owner)?;
    // The cheapest Argon2id parameters: the seeded tokens must verify, not cost.
    let hasher = Hasher::new(
        &HashSettings {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
            ..HashSettings::default()
        },
        Pepper::default(),
    )?;
    let shared = hasher.hash(b"not a real secret".to_vec()).await?;
    let mut strings = Vec::with_capacity(count);
    let mut rows = Vec::with_capacity(count.min(10_000));
    for i in 0..count {
        let s = TokenString::generate(Namespace::Api)?;
        let hash = if hashed {
            hasher.hash(s.secret().to_vec()).await?
        } else {
            shared.clone()
        };
        let token = Token {
            id: s.id(),
            tenant: tenant.clone(),
            namespace: Namespace::Api,
            name: TokenName::parse(&format!("seed-{i}"))?,
            subject: owner.clone().into(),
            creator: owner.clone(),
            scopes: ScopeSet::ALL,
            created_at: now - TimeDelta::microseconds((count - i) as i64),
            last_used_at: match i % 3 {
                0 => None,
                1 => Some(now),
                _ => Some(now - TimeDelta::days(30)),
            },
            expires_at: None,
            revoked_at: None,
            replaces: None,
        };
        rows.push((token, hash));
        strings.push(s.expose().to_owned());
        if rows.len() == 10_000 {
            store.insert_tokens_bulk(&rows, 1000).await?;
            rows.clear();
        }
    }
    store.insert_tokens_bulk(&rows, 1000).await?;
    Ok(strings)
}

/// Time for one Argon2id computation with the default (production) parameters: the pure
/// cost of a verification, in memory allocated (and faulted in) beforehand — the floor that
/// a cold `Validate` is compared with.
pub fn argon2_verify_once() -> std::time::Duration {
    use argon2::{Argon2, Block};
    let d = HashSettings::default();
    let params =
        argon2::Params::new(d.memory_kib, d.iterations, d.parallelism, None).unwrap_or_default();
    let mut blocks = vec![Block::default(); params.block_count()];
    let a = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    let secret = b"0123456789012345678901234567890123456789012";
    // Warm the memory once, then time one run.
    let _ = a.hash_password_into_with_memory(secret, b"saltsaltsaltsalt", &mut out, &mut blocks);
    let start = std::time::Instant::now();
    let _ = a.hash_password_into_with_memory(secret, b"saltsaltsaltsalt", &mut out, &mut blocks);
    start.elapsed()
}

/// Creates (or drops, with `create = false`) a PostgreSQL database named `name` on the server
/// of `admin_url`.
pub async fn pg_database(
    admin_url: &str,
    name: &str,
    create: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let sql = if create {
        format!("CREATE DATABASE {name}")
    } else {
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    };
    Store::admin_statement(admin_url, &sql).await?;
    Ok(())
}

/// Rows of `tokens` updated so far on the PostgreSQL database at `url`.
pub async fn pg_token_updates(url: &str) -> Result<i64, Box<dyn std::error::Error + Send + Sync>> {
    let store = Store::connect(url, &DbOptions::default()).await?;
    Ok(store.token_updates().await?)
}
