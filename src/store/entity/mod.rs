//! SeaORM entities: rows as the database holds them. Only `store` sees these; it converts
//! them to domain types before anything leaves the module.

pub(crate) mod audit_event;
pub(crate) mod change;
pub(crate) mod principal;
pub(crate) mod tenant;
pub(crate) mod token;
