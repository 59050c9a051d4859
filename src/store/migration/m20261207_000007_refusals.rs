//! Refused uses of known tokens: one row per tenant, token and reason, holding when the last
//! `AUDIT_ACTION_TOKEN_REFUSED` event for it was written and how many refusals have been seen
//! since, so that replicas together write at most one event per token and reason a minute.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_integer_null, text};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Refusals {
    Table,
    TenantId,
    TokenId,
    Reason,
    LastEventAt,
    Pending,
    Client,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Refusals::Table)
                .col(text(Refusals::TenantId))
                .col(text(Refusals::TokenId))
                .col(text(Refusals::Reason))
                .col(big_integer_null(Refusals::LastEventAt))
                .col(big_integer(Refusals::Pending))
                .col(text(Refusals::Client))
                .primary_key(
                    Index::create()
                        .col(Refusals::TenantId)
                        .col(Refusals::TokenId)
                        .col(Refusals::Reason),
                )
                .to_owned(),
        )
        .await?;
        // The sweep for refusals not yet reported once their minute is over.
        m.create_index(
            Index::create()
                .name("refusals_by_last_event")
                .table(Refusals::Table)
                .col(Refusals::LastEventAt)
                .to_owned(),
        )
        .await
    }
}
