//! `POST /oauth2/introspect`: RFC 7662 token introspection. The caller authenticates with a
//! jeton API token (`authorization: Bearer …`) and sees its own tenant only: a token of
//! another tenant, like any token that is not good now, is exactly `{"active": false}`. The
//! form's `token_type_hint` is accepted and ignored (jeton has one kind of token). An
//! introspection is a validation like any other (a use of the token), in the token's own
//! namespace.

use super::{failed, json, plain};
use crate::gate;
use crate::usecase::Access;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct Form {
    token: Option<String>,
    #[allow(dead_code, reason = "accepted, as RFC 7662 says, and ignored")]
    token_type_hint: Option<String>,
}

pub(super) async fn introspect(
    State(access): State<Access>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(gate::bearer)
        .and_then(crate::domain::TokenString::parse);
    let Some(caller) = caller else {
        return unauthorized();
    };
    let actor = match access
        .authenticate(&caller, Some(peer.ip().to_canonical()))
        .await
    {
        Ok(actor) => actor,
        Err(crate::usecase::Error::Unauthenticated(_)) => return unauthorized(),
        Err(e) => return failed(e),
    };
    let Ok(form) = serde_urlencoded::from_bytes::<Form>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "body: expected a form (token=…)");
    };
    let Some(token) = form.token.filter(|t| !t.is_empty()) else {
        return plain(StatusCode::BAD_REQUEST, "token: required");
    };
    let mut input = gate::input(
        Some(&token),
        crate::domain::Namespace::Api,
        Default::default(),
        // Introspection is not told where the token was presented: a token bound to
        // networks is not active here (fail closed).
        None,
    );
    // The token's own namespace: introspection asks "is it good", not "is it good here".
    if let Some(t) = &input.token {
        input.namespace = t.namespace();
    }
    input.tenant = Some(actor.tenant);
    let v = match access.validate(&input).await {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => return json(StatusCode::OK, &json!({ "active": false })),
        Err(e) => return failed(e),
    };
    let t = &v.token.token;
    let mut body = json!({
        "active": true,
        "scope": v.effective.names().join(" "),
        "sub": t.subject.as_str(),
        "username": t.subject.as_str(),
        "iat": t.created_at.timestamp(),
        "jti": t.id.as_str(),
        "token_type": "Bearer",
        "tenant": t.tenant.as_str(),
        "namespace": crate::domain::Spelled::lower_name(t.namespace),
    });
    if let Some(exp) = t.expires_at {
        body["exp"] = json!(exp.timestamp());
    }
    json(StatusCode::OK, &body)
}

fn unauthorized() -> Response {
    let mut res = plain(
        StatusCode::UNAUTHORIZED,
        "introspection needs authorization: Bearer <a jeton API token>",
    );
    if let Ok(v) = "Bearer realm=\"jeton\"".parse() {
        res.headers_mut().insert("www-authenticate", v);
    }
    res
}
