//! Privileged roles, rotation, expiry policy and the audit trail: the justification of a
//! running activation, the lineage of rotated tokens, the tenant's maximum token lifetime,
//! and the append-only `audit_events` table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, big_integer_null, big_pk_auto, text, text_null};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Tokens {
    Table,
    ReplacesId,
}

#[derive(DeriveIden)]
enum Principals {
    Table,
    ActivationEnd,
    ActivationJustification,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    MaxTokenLifetimeSecs,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Seq,
    TenantId,
    At,
    Actor,
    Action,
    Target,
    Outcome,
    Detail,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        m.alter_table(
            Table::alter()
                .table(Tokens::Table)
                .add_column(text_null(Tokens::ReplacesId))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Principals::Table)
                .add_column(text_null(Principals::ActivationJustification))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Tenants::Table)
                .add_column(big_integer_null(Tenants::MaxTokenLifetimeSecs))
                .to_owned(),
        )
        .await?;
        // The activation sweeper looks for activations that have ended.
        m.create_index(
            Index::create()
                .name("principals_by_activation_end")
                .table(Principals::Table)
                .col(Principals::ActivationEnd)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AuditEvents::Table)
                .col(big_pk_auto(AuditEvents::Seq))
                .col(text(AuditEvents::TenantId))
                .col(big_integer(AuditEvents::At))
                .col(text(AuditEvents::Actor))
                .col(text(AuditEvents::Action))
                .col(text(AuditEvents::Target))
                .col(text(AuditEvents::Outcome))
                .col(text(AuditEvents::Detail))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("audit_by_tenant")
                .table(AuditEvents::Table)
                .col(AuditEvents::TenantId)
                .col(AuditEvents::Seq)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("audit_by_tenant_target")
                .table(AuditEvents::Table)
                .col(AuditEvents::TenantId)
                .col(AuditEvents::Target)
                .col(AuditEvents::Seq)
                .to_owned(),
        )
        .await
    }
}
