//! Row of `tokens`. `secret_hash` is an Argon2id PHC string; the secret itself is never
//! stored.

use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tokens")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: String,
    pub(crate) tenant_id: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) subject: String,
    pub(crate) creator: String,
    pub(crate) scopes: String,
    pub(crate) secret_hash: String,
    pub(crate) created_at: i64,
    pub(crate) last_used_at: Option<i64>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) revoked_at: Option<i64>,
    pub(crate) revoked_by: Option<String>,
    pub(crate) replaces_id: Option<String>,
    pub(crate) allowed_cidrs: String,
}

// By hand, so that a row in a log line never carries even the hash.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("token::Model")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
