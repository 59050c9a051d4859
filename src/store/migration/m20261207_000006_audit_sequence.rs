//! The audit trail's per-tenant sequence: `audit_events.sequence` numbers each tenant's
//! events 1, 2, 3, … with no gap, and `audit_sequences` holds each tenant's last number,
//! taken (and locked) by the write that appends events, in its own transaction. Existing
//! trails are numbered here, in the order they were written.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, text};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    TenantId,
    Sequence,
}

#[derive(DeriveIden)]
enum AuditSequences {
    Table,
    TenantId,
    Last,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(AuditEvents::Table)
                .add_column(big_integer(AuditEvents::Sequence).default(0))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AuditSequences::Table)
                .col(text(AuditSequences::TenantId).primary_key())
                .col(big_integer(AuditSequences::Last))
                .to_owned(),
        )
        .await?;
        // The events written so far, numbered per tenant in the order of their global number
        // (`seq`, the order they were written in), in one pass; then each tenant's last
        // number. Both statements are the same SQL on SQLite (3.33 and later: UPDATE … FROM)
        // and PostgreSQL.
        let db = m.get_connection();
        db.execute_unprepared(
            "UPDATE audit_events SET sequence = numbered.n \
             FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY tenant_id ORDER BY seq) AS n \
                   FROM audit_events) AS numbered \
             WHERE audit_events.seq = numbered.seq",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO audit_sequences (tenant_id, last) \
             SELECT tenant_id, MAX(sequence) FROM audit_events GROUP BY tenant_id",
        )
        .await?;
        // No number twice in a tenant, whatever a writer does; and the index a follower of
        // the trail (everything after sequence N) reads.
        m.create_index(
            Index::create()
                .name("audit_by_tenant_sequence")
                .table(AuditEvents::Table)
                .col(AuditEvents::TenantId)
                .col(AuditEvents::Sequence)
                .unique()
                .to_owned(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::Migrator;
    use sea_orm::{ConnectionTrait, Statement};
    use sea_orm_migration::MigratorTrait;

    /// A trail written before this migration is numbered per tenant in the order it was
    /// written, and each tenant's count of events is its last number.
    #[tokio::test]
    async fn existing_trails_are_numbered_per_tenant_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("j.db").display());
        let db = sea_orm::Database::connect(&url).await.unwrap();
        Migrator::up(&db, Some(5)).await.unwrap();
        for tenant in ["b", "a", "b", "b", "a"] {
            db.execute_unprepared(&format!(
                "INSERT INTO audit_events (tenant_id, at, actor, action, target, outcome, detail) \
                 VALUES ('{tenant}', 0, 'x', 'token_generated', 't', 'success', '')"
            ))
            .await
            .unwrap();
        }
        Migrator::up(&db, None).await.unwrap();
        let rows = |sql: &str| {
            let db = &db;
            let sql = sql.to_owned();
            async move {
                db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r.try_get_by_index::<String>(0).unwrap(),
                            r.try_get_by_index::<i64>(1).unwrap(),
                        )
                    })
                    .collect::<Vec<_>>()
            }
        };
        let s = |t: &str, n: i64| (t.to_owned(), n);
        assert_eq!(
            rows("SELECT tenant_id, sequence FROM audit_events ORDER BY seq").await,
            [s("b", 1), s("a", 1), s("b", 2), s("b", 3), s("a", 2)]
        );
        assert_eq!(
            rows("SELECT tenant_id, last FROM audit_sequences ORDER BY tenant_id").await,
            [s("a", 2), s("b", 3)]
        );
    }
}
