//! Schema migrations, applied by `jeton serve` on start and by `jeton migrate`.
//!
//! Times are stored as microseconds since the Unix epoch in 64-bit integers: the same type,
//! the same ordering and the same comparisons on SQLite and PostgreSQL (and on
//! PostgreSQL-compatible distributed engines), with no text formats to keep in step.

use sea_orm_migration::prelude::*;

mod m20261124_000001_initial;
mod m20261124_000002_changes;
mod m20261124_000003_roles_rotation_audit;
mod m20261124_000004_partial_list_indexes;
mod m20261126_000005_networks_retirement;
mod m20261207_000006_audit_sequence;
mod m20261207_000007_refusals;

pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_initial::Migration),
            Box::new(m20261124_000002_changes::Migration),
            Box::new(m20261124_000003_roles_rotation_audit::Migration),
            Box::new(m20261124_000004_partial_list_indexes::Migration),
            Box::new(m20261126_000005_networks_retirement::Migration),
            Box::new(m20261207_000006_audit_sequence::Migration),
            Box::new(m20261207_000007_refusals::Migration),
        ]
    }
}
