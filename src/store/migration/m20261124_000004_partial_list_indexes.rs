//! `List` indexes that hold live tokens only.
//!
//! The first indexes put `revoked_at` before `created_at`. SQLite treats `revoked_at IS NULL`
//! as an equality and walks the index in `created_at` order, but PostgreSQL does not: it
//! read every live row of the tenant and sorted them (372 ms for a page at 10⁶ tokens, in
//! `jeton-bench`). Partial indexes `WHERE revoked_at IS NULL` on
//! `(tenant, namespace[, subject], created_at, id)` give both engines (and PostgreSQL-
//! compatible distributed engines) an ordered range scan that stops after one page.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Tokens {
    Table,
    TenantId,
    Namespace,
    Subject,
    CreatedAt,
    Id,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for old in [
            "tokens_by_tenant_namespace",
            "tokens_by_tenant_namespace_subject",
        ] {
            m.drop_index(Index::drop().name(old).table(Tokens::Table).to_owned())
                .await?;
        }
        m.create_index(
            Index::create()
                .name("live_tokens_by_tenant_namespace")
                .table(Tokens::Table)
                .col(Tokens::TenantId)
                .col(Tokens::Namespace)
                .col(Tokens::CreatedAt)
                .col(Tokens::Id)
                .and_where(Expr::col(Tokens::RevokedAt).is_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("live_tokens_by_tenant_namespace_subject")
                .table(Tokens::Table)
                .col(Tokens::TenantId)
                .col(Tokens::Namespace)
                .col(Tokens::Subject)
                .col(Tokens::CreatedAt)
                .col(Tokens::Id)
                .and_where(Expr::col(Tokens::RevokedAt).is_null())
                .to_owned(),
        )
        .await
    }
}
