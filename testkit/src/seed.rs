//! Many tokens written straight into a migrated jeton database, in the schema's own columns.

use crate::BoxError;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use chrono::{DateTime, TimeDelta, Utc};
use jeton::domain::{Namespace, TokenString};
use sea_orm::{ConnectionTrait, Statement, TransactionTrait, Value};

/// How seeded tokens look in `List`: every third never used, every third used at `now`,
/// every third 30 days before; created one microsecond apart, the last at `now`.
pub struct Seed<'a> {
    pub tenant: &'a str,
    pub owner: &'a str,
    pub count: usize,
    /// Hash each secret (so the tokens validate); otherwise all share one hash (for
    /// listings, where nobody validates them).
    pub hashed: bool,
    /// Every n-th token expires in `expires_in` (for `List`'s `expire_within`); 0: none does.
    pub expiring_every: usize,
    pub expires_in: TimeDelta,
    pub now: DateTime<Utc>,
}

/// Rows per INSERT statement.
const ROWS: usize = 500;

/// Writes the tokens of `seed` into the database at `url`; returns their token strings.
pub async fn seed_tokens(url: &str, seed: &Seed<'_>) -> Result<Vec<String>, BoxError> {
    // The cheapest Argon2id parameters: the seeded tokens must verify, not cost.
    let argon = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(8, 1, 1, None).map_err(|e| e.to_string())?,
    );
    let hash = |secret: &[u8]| -> Result<String, BoxError> {
        Ok(argon
            .hash_password(secret)
            .map_err(|e| e.to_string())?
            .to_string())
    };
    let shared = hash(b"not a real secret")?;
    let db = sea_orm::Database::connect(url).await?;
    let backend = db.get_database_backend();
    let placeholder = |i: usize| match backend {
        sea_orm::DatabaseBackend::Postgres => format!("${i}"),
        _ => "?".to_owned(),
    };
    let mut strings = Vec::with_capacity(seed.count);
    let now_us = seed.now.timestamp_micros();
    let txn = db.begin().await?;
    let mut start = 0;
    while start < seed.count {
        let end = (start + ROWS).min(seed.count);
        let mut values: Vec<Value> = Vec::with_capacity((end - start) * 10);
        let mut rows = Vec::with_capacity(end - start);
        for i in start..end {
            let s = TokenString::generate(Namespace::Api)?;
            let last_used: Option<i64> = match i % 3 {
                0 => None,
                1 => Some(now_us),
                _ => Some((seed.now - TimeDelta::days(30)).timestamp_micros()),
            };
            let expires: Option<i64> = (seed.expiring_every > 0 && i % seed.expiring_every == 0)
                .then(|| (seed.now + seed.expires_in).timestamp_micros());
            let secret_hash = if seed.hashed {
                hash(s.secret())?
            } else {
                shared.clone()
            };
            let n = values.len();
            rows.push(format!(
                "({}, {}, 'API', {}, {}, {}, 'read,write,admin', {}, {}, {}, {})",
                placeholder(n + 1),
                placeholder(n + 2),
                placeholder(n + 3),
                placeholder(n + 4),
                placeholder(n + 5),
                placeholder(n + 6),
                placeholder(n + 7),
                placeholder(n + 8),
                placeholder(n + 9),
            ));
            values.extend([
                s.id().as_str().into(),
                seed.tenant.into(),
                format!("seed-{i}").into(),
                seed.owner.into(),
                seed.owner.into(),
                secret_hash.into(),
                (now_us - (seed.count - i) as i64).into(),
                last_used.into(),
                expires.into(),
            ]);
            strings.push(s.expose().to_owned());
        }
        let sql = format!(
            "INSERT INTO tokens (id, tenant_id, namespace, name, subject, creator, scopes, \
             secret_hash, created_at, last_used_at, expires_at) VALUES {}",
            rows.join(", ")
        );
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        start = end;
    }
    txn.commit().await?;
    db.close().await?;
    Ok(strings)
}
