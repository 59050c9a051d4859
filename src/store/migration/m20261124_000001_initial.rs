//! Tenants, principals and tokens, with the indexes that make `Validate` a primary-key
//! lookup and `List` an index range scan.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_integer_null, text, text_null};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    DisplayName,
    ApiUrl,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Principals {
    Table,
    TenantId,
    Id,
    DisplayName,
    Role,
    Assignment,
    ActivationEnd,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    Id,
    TenantId,
    Namespace,
    Name,
    Subject,
    Creator,
    Scopes,
    SecretHash,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
    RevokedAt,
    RevokedBy,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Tenants::Table)
                .col(text(Tenants::Id).primary_key())
                .col(text(Tenants::DisplayName))
                .col(text(Tenants::ApiUrl))
                .col(big_integer(Tenants::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Principals::Table)
                .col(text(Principals::TenantId))
                .col(text(Principals::Id))
                .col(text(Principals::DisplayName))
                .col(text(Principals::Role))
                .col(text(Principals::Assignment))
                .col(big_integer_null(Principals::ActivationEnd))
                .col(big_integer(Principals::UpdatedAt))
                .primary_key(
                    Index::create()
                        .col(Principals::TenantId)
                        .col(Principals::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Principals::Table, Principals::TenantId)
                        .to(Tenants::Table, Tenants::Id),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Tokens::Table)
                .col(text(Tokens::Id).primary_key())
                .col(text(Tokens::TenantId))
                .col(text(Tokens::Namespace))
                .col(text(Tokens::Name))
                .col(text(Tokens::Subject))
                .col(text(Tokens::Creator))
                .col(text(Tokens::Scopes))
                .col(text(Tokens::SecretHash))
                .col(big_integer(Tokens::CreatedAt))
                .col(big_integer_null(Tokens::LastUsedAt))
                .col(big_integer_null(Tokens::ExpiresAt))
                .col(big_integer_null(Tokens::RevokedAt))
                .col(text_null(Tokens::RevokedBy))
                .foreign_key(
                    ForeignKey::create()
                        .from(Tokens::Table, Tokens::TenantId)
                        .to(Tenants::Table, Tenants::Id),
                )
                .to_owned(),
        )
        .await?;

        // `List` for one tenant and namespace, live tokens, newest first: an index range scan
        // that stops after one page. `revoked_at IS NULL` is an equality on an index column
        // on both engines.
        m.create_index(
            Index::create()
                .name("tokens_by_tenant_namespace")
                .table(Tokens::Table)
                .col(Tokens::TenantId)
                .col(Tokens::Namespace)
                .col(Tokens::RevokedAt)
                .col(Tokens::CreatedAt)
                .col(Tokens::Id)
                .to_owned(),
        )
        .await?;
        // `List` filtered by owner (API) or subject (log collector, SIEM), and the visibility
        // rule of non-admins, which always filters by owner.
        m.create_index(
            Index::create()
                .name("tokens_by_tenant_namespace_subject")
                .table(Tokens::Table)
                .col(Tokens::TenantId)
                .col(Tokens::Namespace)
                .col(Tokens::Subject)
                .col(Tokens::RevokedAt)
                .col(Tokens::CreatedAt)
                .col(Tokens::Id)
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
