//! `/v1/forward-auth` (any method): the front door for nginx `auth_request`, Caddy
//! `forward_auth` and Traefik `ForwardAuth`. The proxy forwards the client's `authorization`
//! header; the auth URL's query chooses the namespace and the scopes the route needs
//! (`?namespace=api|log_collector|siem&scopes=read,write`), so one jeton serves many routes.
//! 200 with the `X-Jeton-*` identity headers for the proxy to copy upstream; 401/403 otherwise
//! (nginx turns any other status into a 500, so a route misconfigured in its query is 400).

use super::{Front, failed, plain};
use crate::gate::{self, Verdict};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Deserialize)]
pub(super) struct Route {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    scopes: String,
}

pub(super) async fn check(
    State(front): State<Front>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Ok(route) = serde_urlencoded::from_str::<Route>(query.as_deref().unwrap_or_default())
    else {
        return plain(
            StatusCode::BAD_REQUEST,
            "query: expected namespace= and scopes=",
        );
    };
    let Some(namespace) = gate::namespace(&route.namespace) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "namespace: expected api, log_collector or siem",
        );
    };
    let Some(required) = gate::scopes(&route.scopes) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "scopes: expected read, write, admin",
        );
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(gate::bearer);
    // The client behind the proxy: X-Forwarded-For only from a trusted proxy.
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let client = gate::client_address(peer.ip(), &forwarded, &front.trusted_proxies);
    let verdict = match token {
        None => Verdict::missing(),
        Some(t) => match front
            .access
            .validate(&gate::input(Some(t), namespace, required, client))
            .await
        {
            Ok(outcome) => outcome.into(),
            Err(e) => return failed(e),
        },
    };
    answer(verdict)
}

/// The verdict as an HTTP answer.
pub(super) fn answer(verdict: Verdict) -> Response {
    match verdict {
        Verdict::Allow { headers } => {
            let mut res = StatusCode::OK.into_response();
            for (name, value) in headers {
                if let Ok(v) = value.parse() {
                    res.headers_mut().insert(name, v);
                }
            }
            res
        }
        Verdict::Deny {
            status,
            www_authenticate,
            body,
        } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED),
            [
                ("www-authenticate", www_authenticate),
                ("content-type", "application/json".to_owned()),
            ],
            body,
        )
            .into_response(),
    }
}
