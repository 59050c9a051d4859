//! Row of `tenants`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenants")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: String,
    pub(crate) display_name: String,
    pub(crate) api_url: String,
    pub(crate) created_at: i64,
    pub(crate) max_token_lifetime_secs: Option<i64>,
    pub(crate) revoke_unused_after_secs: Option<i64>,
    pub(crate) require_allowed_cidrs: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
