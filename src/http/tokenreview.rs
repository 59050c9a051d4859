//! `POST /apis/authentication.k8s.io/v1/tokenreviews`: Kubernetes webhook token
//! authentication. The API server posts a `TokenReview`; jeton answers whether the token is
//! good now, and who it is: `user.username` = the token's subject, `user.uid` = its id,
//! `user.groups` = `jeton:<scope>` for each scope it grants now, `user.extra` = its tenant and
//! namespace. `error` says why not, never with the token. The namespace is the webhook URL's
//! `?namespace=` (default `api`); `spec.audiences` are ignored (jeton tokens have no
//! audience), so the answer names none.

use super::{failed, json, plain};
use crate::gate;
use crate::usecase::Access;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

const API_VERSION: &str = "authentication.k8s.io/v1";

#[derive(Debug, Deserialize)]
pub(super) struct Route {
    #[serde(default)]
    namespace: String,
}

#[derive(Debug, Deserialize)]
struct Review {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    spec: Spec,
}

#[derive(Debug, Deserialize)]
struct Spec {
    token: String,
}

pub(super) async fn review(
    State(access): State<Access>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let namespace = serde_urlencoded::from_str::<Route>(query.as_deref().unwrap_or_default())
        .ok()
        .and_then(|r| gate::namespace(&r.namespace));
    let Some(namespace) = namespace else {
        return plain(
            StatusCode::BAD_REQUEST,
            "namespace: expected api, log_collector or siem",
        );
    };
    let review: Review = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                &format!("body: not a TokenReview ({})", e.classify_name()),
            );
        }
    };
    if review.kind != "TokenReview" || !review.api_version.starts_with("authentication.k8s.io/") {
        return plain(
            StatusCode::BAD_REQUEST,
            "body: expected kind TokenReview of authentication.k8s.io",
        );
    }
    // The API server does not say where the token came from: a token bound to networks
    // is not authenticated here (fail closed).
    let input = gate::input(
        Some(&review.spec.token),
        namespace,
        Default::default(),
        None,
    );
    let status = match access.validate(&input).await {
        Ok(Ok(v)) => {
            let t = &v.token.token;
            json!({
                "authenticated": true,
                "user": {
                    "username": t.subject.as_str(),
                    "uid": t.id.as_str(),
                    "groups": v.effective.names().iter().map(|s| format!("jeton:{s}")).collect::<Vec<_>>(),
                    "extra": {
                        "jeton.dev/tenant": [t.tenant.as_str()],
                        "jeton.dev/namespace": [crate::domain::Spelled::lower_name(t.namespace)],
                    },
                },
            })
        }
        Ok(Err(reason)) => json!({
            "authenticated": false,
            "error": format!("token rejected: {}", crate::domain::Spelled::lower_name(reason)),
        }),
        Err(e) => return failed(e),
    };
    json(
        StatusCode::OK,
        &json!({ "apiVersion": API_VERSION, "kind": "TokenReview", "status": status }),
    )
}

/// serde_json's error kinds, named without the input.
trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "missing or mistyped fields",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}
