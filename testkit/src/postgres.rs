//! PostgreSQL databases made for one test or one benchmark run, and dropped after.

use crate::BoxError;
use sea_orm::ConnectionTrait;

/// The server to make databases on: `JETON_TEST_POSTGRES_URL`, by default
/// `postgres://postgres@127.0.0.1:5432/postgres` (the machine's, trust auth).
pub fn admin_url() -> String {
    std::env::var("JETON_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own on the server of `admin`, dropped (with its connections) when this
/// is dropped.
pub struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// Creates a database named `<prefix>_<random>` on [`admin_url`].
    pub async fn create(prefix: &str) -> Result<Self, BoxError> {
        Self::create_on(&admin_url(), &format!("{prefix}_{:016x}", random())).await
    }

    /// Creates (replacing any leftover of) database `name` on the server of `admin`.
    pub async fn create_on(admin: &str, name: &str) -> Result<Self, BoxError> {
        statement(
            admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await?;
        statement(admin, &format!("CREATE DATABASE {name}")).await?;
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        Ok(Self {
            admin: admin.to_owned(),
            name: name.to_owned(),
            url: format!("{base}/{name}"),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, sql) = (
            self.admin.clone(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        // Drop may run inside an async runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                let _ = rt.block_on(statement(&admin, &sql));
            }
        })
        .join();
    }
}

/// Runs one statement on the server of `url`.
pub async fn statement(url: &str, sql: &str) -> Result<(), BoxError> {
    let db = sea_orm::Database::connect(url).await?;
    db.execute_unprepared(sql).await?;
    db.close().await?;
    Ok(())
}

/// Rows updated in `tokens` of the database at `url` since its statistics were reset
/// (`pg_stat_user_tables.n_tup_upd`).
pub async fn token_updates(url: &str) -> Result<i64, BoxError> {
    use sea_orm::{FromQueryResult, Statement};
    #[derive(FromQueryResult)]
    struct Row {
        n: i64,
    }
    let db = sea_orm::Database::connect(url).await?;
    db.execute_unprepared("SELECT pg_stat_clear_snapshot()")
        .await?;
    let row = Row::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT n_tup_upd::bigint AS n FROM pg_stat_user_tables WHERE relname = 'tokens'",
    ))
    .one(&db)
    .await?;
    db.close().await?;
    Ok(row.map_or(0, |r| r.n))
}

fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
