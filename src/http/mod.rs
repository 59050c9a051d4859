//! The HTTP listener (`--http-listen`, HTTP/1.1, TLS with the gRPC port's certificate when
//! it has one): the front door for proxies and platforms that speak HTTP.
//!
//! - [`forward_auth`]: `/v1/forward-auth`, for nginx `auth_request`, Caddy `forward_auth`
//!   and Traefik `ForwardAuth`;
//! - [`introspect`]: `POST /oauth2/introspect`, RFC 7662 token introspection;
//! - [`tokenreview`]: `POST /apis/authentication.k8s.io/v1/tokenreviews`, Kubernetes
//!   webhook token authentication;
//! - [`secret_scanning`]: `POST /v1/secret-scanning/reports`, GitHub's secret-scanning
//!   partner reports (with `--secret-scanning-keys`).
//!
//! Requests are bounded (headers, body, the time to send them); a request jeton cannot read
//! is answered 400 with a plain reason, never 500.

mod forward_auth;
mod introspect;
mod secret_scanning;
mod server;
mod tokenreview;

pub(crate) use secret_scanning::Keys as ScanningKeys;
pub(crate) use server::serve;

use crate::domain::Networks;
use crate::usecase::Access;
use axum::Router;
use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use std::sync::Arc;

/// Largest request body read (introspection forms and token reviews are small).
const MAX_BODY: usize = 64 * 1024;

/// What the HTTP handlers share.
#[derive(Clone)]
pub(crate) struct Front {
    pub(crate) access: Access,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub(crate) trusted_proxies: Arc<Networks>,
    /// The keys secret-scanning reports must be signed with; `None`: the endpoint is off.
    pub(crate) scanning: Option<Arc<ScanningKeys>>,
}

impl FromRef<Front> for Access {
    fn from_ref(front: &Front) -> Access {
        front.access.clone()
    }
}

pub(crate) fn router(front: Front) -> Router {
    use axum::extract::DefaultBodyLimit;
    Router::new()
        .route("/v1/forward-auth", any(forward_auth::check))
        .route("/oauth2/introspect", post(introspect::introspect))
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(tokenreview::review),
        )
        .route(
            "/v1/secret-scanning/reports",
            post(secret_scanning::report).layer(DefaultBodyLimit::max(secret_scanning::MAX_REPORT)),
        )
        .fallback(|| async { plain(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(front)
}

/// A plain-text answer.
fn plain(status: StatusCode, reason: &str) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response()
}

/// A JSON answer.
fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The use-case error of a call that could not be answered: 503 when the database is away or
/// Argon2 is saturated, 500 for jeton's own faults.
fn failed(e: crate::usecase::Error) -> Response {
    use crate::usecase::Error;
    match e {
        Error::Unavailable(_) | Error::Busy | Error::Quota(_) => {
            tracing::warn!(error = %crate::telemetry::chain(&e), "front door unavailable");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable; retry later",
            )
        }
        e => {
            tracing::error!(error = %crate::telemetry::chain(&e), "internal error");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}
