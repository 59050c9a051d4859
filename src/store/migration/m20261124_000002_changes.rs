//! The change log that replicas follow to invalidate their validation caches.
//!
//! Every write that can make a cached answer wrong (revocation, new token, principal change
//! or removal) appends a row here in the same transaction. Rows are numbered by an
//! auto-increment key; because numbers are handed out at insert and not at commit, followers
//! track gaps (see `cache.rs`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_pk_auto, text};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Changes {
    Table,
    Seq,
    Kind,
    TenantId,
    Key,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Changes::Table)
                .col(big_pk_auto(Changes::Seq))
                .col(text(Changes::Kind))
                .col(text(Changes::TenantId))
                .col(text(Changes::Key))
                .col(big_integer(Changes::At))
                .to_owned(),
        )
        .await?;
        // Pruning old rows.
        m.create_index(
            Index::create()
                .name("changes_by_time")
                .table(Changes::Table)
                .col(Changes::At)
                .to_owned(),
        )
        .await
    }
}
