//! Row of `tokens`. `secret_hash` is an Argon2id PHC string; the secret itself is never
//! stored.

use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub namespace: String,
    pub name: String,
    pub subject: String,
    pub creator: String,
    pub scopes: String,
    pub secret_hash: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    pub replaces_id: Option<String>,
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
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
