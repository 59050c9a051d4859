//! The gRPC edge: the only module that names generated protobuf types and `tonic::Status`.
//! [`auth`] says who is calling, [`parse`] turns requests into use-case inputs (every
//! refusal names its field), the handlers ([`tokens`], [`directory`]) make one use-case call
//! each, [`render`] turns answers into responses, [`status`] maps errors to status codes in
//! one place, and [`server`] registers everything that is served. Around every call,
//! [`observe`] counts and logs it and [`deadline`] bounds the ones that wait on the
//! database; [`health`] keeps the health service in step with the replica's readiness.

mod auth;
mod deadline;
mod decode;
mod directory;
mod envoy;
mod health;
mod observe;
mod page;
mod parse;
mod render;
mod server;
mod status;
mod tokens;

pub(crate) use health::start_reporting;
pub(crate) use server::{layers, services};

/// Code generated from `proto/jeton/v1/jeton.proto`: messages, clients and servers.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("jeton.v1");

    /// Encoded descriptors of jeton's protos, for server reflection.
    pub(crate) const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("jeton_descriptor");

    /// Encoded descriptors of Envoy's external authorization service, for server reflection.
    pub(crate) const ENVOY_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("envoy_descriptor");
}
