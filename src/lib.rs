//! jeton: a gRPC service that issues, lists, revokes and validates API tokens for a
//! multi-tenant security product. The contract is `docs/contract.md`; the map of this crate
//! is `ARCHITECTURE.md`.
//!
//! # Layout
//!
//! - [`cli`] runs a parsed command line; `main.rs` only hands over to it.
//! - [`config`] every setting declared once: flag, `JETON_*` variable, TOML key, default.
//! - [`app`] wires the store, the validate path, the use cases and the gRPC services, and
//!   serves on a bound listener until a shutdown future resolves.
//! - [`telemetry`] the tracing subscriber.
//! - [`domain`] the rules: token format, names, scopes, roles, status, visibility. No I/O.
//! - `usecase` the use cases by what they serve: tokens, access, directory, tenant.
//! - `validation` the validate path: cache, single flight, stale refresh, change-log follower.
//! - `store` the only code that names SeaORM: one `impl Store` block per aggregate.
//! - [`grpc`] the only code that names protobuf types and `tonic::Status`.
//! - `http` the HTTP listener: forward-auth, RFC 7662 introspection, Kubernetes TokenReview.
//! - `gate` the front door's one decision, shared by every proxy adapter.
//! - `hashing` Argon2id on the blocking pool, bounded.
//! - `last_use` write-behind of last-use times.
//! - `background` tasks that stop with the server.
//! - `net` connections bounded: a cap per port, a handshake deadline, an accept loop that
//!   backs off.
//! - `readiness` whether the database answers; the health service follows it.
//! - `metrics` Prometheus metrics, off unless `--metrics-listen` is given.

pub mod app;
mod background;
pub mod cli;
pub mod config;
pub mod domain;
mod gate;
pub mod grpc;
mod hashing;
mod http;
mod last_use;
mod metrics;
mod net;
mod readiness;
mod store;
pub mod telemetry;
mod usecase;
mod validation;
