//! What the gRPC port serves: jeton's two services, Envoy's external authorization, the
//! standard health service and server reflection (v1, and v1alpha for grpcurl 1.8).

use super::deadline::DeadlineLayer;
use super::decode::DecodeErrorLayer;
use super::directory::DirectoryApi;
use super::envoy::EnvoyAuthz;
use super::observe::ObserveLayer;
use super::proto::{
    self, directory_service_server::DirectoryServiceServer,
    token_service_server::TokenServiceServer,
};
use super::tokens::TokenApi;
use crate::usecase::UseCases;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;
use tower::layer::util::{Identity, Stack};

/// Largest request of jeton's own services: far above any valid one (1000 scopes, names of
/// 200 characters…), far below tonic's 4 MiB default.
pub(crate) const MAX_REQUEST: usize = 64 * 1024;
/// Largest `TokenService` request: `RevokeLeaked` carries up to 1000 token strings (78 KB).
pub(crate) const MAX_TOKEN_REQUEST: usize = 128 * 1024;
/// Largest Envoy `Check`: it carries the client's headers, which proxies allow up to tens of
/// KiB.
pub(crate) const MAX_CHECK: usize = 256 * 1024;

/// The services of one server, ready to be served, and the reporter of their health.
pub(crate) async fn services(
    cases: &UseCases,
    db_deadline: std::time::Duration,
    state: tokio::sync::watch::Receiver<crate::readiness::State>,
) -> Result<(Routes, HealthReporter), tonic_reflection::server::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<TokenServiceServer<TokenApi>>().await;
    health
        .set_serving::<DirectoryServiceServer<DirectoryApi>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(proto::ENVOY_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let tokens = TokenApi::new(cases.tokens.clone(), cases.access.clone(), db_deadline);
    let directory = DirectoryApi {
        directory: cases.directory.clone(),
        tenants: cases.tenants.clone(),
        access: cases.access.clone(),
        state,
    };
    let envoy = EnvoyAuthz {
        access: cases.access.clone(),
    };
    let routes = Routes::new(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(TokenServiceServer::new(tokens).max_decoding_message_size(MAX_TOKEN_REQUEST))
        .add_service(DirectoryServiceServer::new(directory).max_decoding_message_size(MAX_REQUEST))
        .add_service(AuthorizationServer::new(envoy).max_decoding_message_size(MAX_CHECK));
    Ok((routes, health))
}

/// The layers around every call, outermost first.
type Layers = Stack<DeadlineLayer, Stack<DecodeErrorLayer, Stack<ObserveLayer, Identity>>>;

/// What wraps every call: observed (metrics, logs) outermost, so that it sees the final code;
/// then decode failures made `INVALID_ARGUMENT`; then bounded by the database's timeout.
pub(crate) fn layers(deadline: std::time::Duration) -> Layers {
    tower::ServiceBuilder::new()
        .layer(ObserveLayer)
        .layer(DecodeErrorLayer)
        .layer(DeadlineLayer { deadline })
        .into_inner()
}
