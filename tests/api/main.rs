//! Black-box tests: a real jeton server on port 0, a real SQLite file per test, real TLS,
//! and real gRPC clients (plus the real `jeton` binary and `grpcurl` where that is the
//! subject). One binary with modules, so the crate is linked once.

mod audit_stream;
mod bad_input;
mod connections;
mod crash;
mod credentials;
mod deploy;
mod directory;
mod failover;
mod frontdoor;
mod helpers;
mod leaks;
mod limits;
mod logs;
mod matrix;
mod operability;
mod operators;
mod proxies;
mod roles;
mod scaleout;
mod startup;
mod storage;
mod tokens;
