//! What jeton's black-box tests and its benchmark share, kept out of the product:
//!
//! - [`served`]: a real `jeton serve` process on port 0, its address read from its log;
//! - [`postgres`]: PostgreSQL databases created for one test or run, and dropped after;
//! - [`pgpair`]: a PostgreSQL primary and its streaming standby of their own, to kill and
//!   promote in failover tests;
//! - [`seed`]: many tokens written straight into a database, which would take hours
//!   through `Generate` at production Argon2 cost;
//! - [`crash`]: mixed load on a real server killed with SIGKILL at random moments, and the
//!   check that every acknowledged write survived.

pub mod crash;
pub mod pgpair;
pub mod postgres;
pub mod seed;
pub mod served;

/// Any error, for set-up code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
