//! jeton: a gRPC service that issues, lists, revokes and validates API tokens for a
//! multi-tenant security product. See DESIGN.md for the contract and ARCHITECTURE.md for the
//! map of this crate.
//!
//! # Layout
//!
//! - [`app`] wires the store, hasher, engine and gRPC services and serves on a bound
//!   listener until a shutdown future resolves.
//! - [`config`] the command line and typed settings (defaults < TOML < env < flags).
//! - [`telemetry`] the tracing subscriber.
//! - [`domain`] the rules: token format, scopes, roles, status, visibility. No I/O.
//! - `engine` the use cases (generate, list, revoke, validate, directory) over the domain,
//!   the store, the hasher and the last-use buffer.
//! - `store` the only code that names SeaORM: entities, migrations, intent-named queries.
//! - [`service`] the only code that names protobuf types and `tonic::Status`.
//! - `auth` who is calling: bearer token or trusted frontend.
//! - `hashing` Argon2id on the blocking pool, bounded.
//! - `last_use` write-behind of last-use times.
//! - [`cli`] runs a parsed command line.

pub mod app;
mod auth;
#[doc(hidden)]
pub mod bench_support;
mod cache;
pub mod cli;
pub mod config;
pub mod domain;
mod engine;
mod hashing;
mod last_use;
pub mod service;
mod store;
pub mod telemetry;
