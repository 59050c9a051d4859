//! Network binding and retirement of unused tokens: the networks a token validates from,
//! and the tenant's `revoke_unused_after` and `require_allowed_cidrs` policies, with an index
//! that lets the retirement sweeper find a tenant's live tokens by last use.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer_null, boolean, text};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Tokens {
    Table,
    TenantId,
    AllowedCidrs,
    LastUsedAt,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    RevokeUnusedAfterSecs,
    RequireAllowedCidrs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        m.alter_table(
            Table::alter()
                .table(Tokens::Table)
                // Comma-separated CIDR networks; empty: any address.
                .add_column(text(Tokens::AllowedCidrs).default(""))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Tenants::Table)
                .add_column(big_integer_null(Tenants::RevokeUnusedAfterSecs))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Tenants::Table)
                .add_column(boolean(Tenants::RequireAllowedCidrs).default(false))
                .to_owned(),
        )
        .await?;
        // The retirement sweeper: a tenant's live tokens, least recently used first.
        m.create_index(
            Index::create()
                .name("live_tokens_by_tenant_last_use")
                .table(Tokens::Table)
                .col(Tokens::TenantId)
                .col(Tokens::LastUsedAt)
                .col(Tokens::CreatedAt)
                .and_where(Expr::col(Tokens::RevokedAt).is_null())
                .to_owned(),
        )
        .await
    }
}
