//! `POST /oauth2/introspect`: RFC 7662 token introspection. The caller authenticates with a
//! jeton API token and sees its own tenant only: a token of another tenant, like any token
//! that is not good now, is exactly `{"active": false}`. The form's `token_type_hint` is
//! accepted and ignored (jeton has one kind of token). An introspection is a validation like
//! any other (a use of the token), in the token's own namespace.
//!
//! The caller's token is read in one of three ways, because resource servers differ: as a
//! bearer token (`Authorization: Bearer …`, what mod_auth_openidc and authlib send), or as
//! the *secret* of OAuth client authentication (RFC 6749 §2.3.1), which is all Apache's
//! mod_oauth2 sends — `client_secret_basic` (`Authorization: Basic base64(id:secret)`, id and
//! secret each form-urlencoded before base64) or `client_secret_post` (form fields
//! `client_id`, `client_secret` beside `token`). The client id is not a credential: any
//! value, or none, is accepted and ignored; the token alone says who calls.
//!
//! RFC 6749 §2.3 says a client MUST NOT use more than one method in a request: an
//! `Authorization` header (of any scheme) together with a `client_secret` field is refused
//! with 400 before either is checked (RFC 6749 §5.2 calls that `invalid_request`), so jeton
//! never has to choose which of two identities to believe. A missing credential, one that
//! cannot be read (a scheme jeton does not know, Basic that is not base64 or has no colon)
//! or a token that is not live is 401 with a `WWW-Authenticate` challenge for the scheme the
//! caller tried (both schemes when it tried none, or the form).

use super::{failed, json, plain};
use crate::domain::TokenString;
use crate::gate;
use crate::usecase::Access;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

/// The form. No `Debug`: it holds secrets (`token`, `client_secret`). `client_id` is not
/// read at all (serde skips unknown fields).
#[derive(Deserialize)]
struct Form {
    token: Option<String>,
    #[allow(dead_code, reason = "accepted, as RFC 7662 says, and ignored")]
    token_type_hint: Option<String>,
    client_secret: Option<String>,
}

/// How the caller presented its token, for the challenge of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Bearer,
    /// `client_secret_basic`.
    Basic,
    /// `client_secret_post`, no credential, or an `Authorization` scheme jeton does not read.
    Other,
}

pub(super) async fn introspect(
    State(access): State<Access>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The form first: with client_secret_post, the credential is in it.
    let Ok(form) = serde_urlencoded::from_bytes::<Form>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "body: expected a form (token=…)");
    };
    let (method, caller) = match (headers.get("authorization"), form.client_secret.as_deref()) {
        (Some(_), Some(_)) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "client authentication: one method per request (RFC 6749 section 2.3), not \
                 both an authorization header and client_secret",
            );
        }
        (Some(header), None) => from_header(header),
        (None, Some(secret)) => (Method::Other, TokenString::parse(secret)),
        (None, None) => (Method::Other, None),
    };
    let Some(caller) = caller else {
        return unauthorized(method);
    };
    let actor = match access
        .authenticate(&caller, Some(peer.ip().to_canonical()))
        .await
    {
        Ok(actor) => actor,
        Err(crate::usecase::Error::Unauthenticated(_)) => return unauthorized(method),
        Err(e) => return failed(e),
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

/// The caller's token from an `Authorization` header: a bearer token, or the secret of
/// `client_secret_basic`; `None` when it holds no token jeton can read.
fn from_header(header: &HeaderValue) -> (Method, Option<TokenString>) {
    let Ok(value) = header.to_str() else {
        return (Method::Other, None);
    };
    if let Some(token) = gate::bearer(value) {
        return (Method::Bearer, TokenString::parse(token));
    }
    match value.trim().split_once(' ') {
        Some((scheme, credentials)) if scheme.eq_ignore_ascii_case("basic") => (
            Method::Basic,
            basic_secret(credentials).and_then(|s| TokenString::parse(&s)),
        ),
        _ => (Method::Other, None),
    }
}

/// The secret of `client_secret_basic` credentials (`base64(form(id) ":" form(secret))`,
/// RFC 6749 §2.3.1); `None` when they are not base64, have no colon, or a part is not
/// form-urlencoded UTF-8. The id is dropped: it is not a credential.
fn basic_secret(credentials: &str) -> Option<String> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let decoded = std::str::from_utf8(&decoded).ok()?;
    // The id is encoded, so its own colons are `%3A`: the first colon ends it.
    let (id, secret) = decoded.split_once(':')?;
    form_decode(id)?;
    form_decode(secret)
}

/// One `application/x-www-form-urlencoded` value decoded: `+` is a space, `%XX` a byte;
/// `None` for a broken escape or bytes that are not UTF-8.
fn form_decode(s: &str) -> Option<String> {
    let hex = |b: Option<u8>| char::from(b?).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let high = hex(bytes.next())?;
                let low = hex(bytes.next())?;
                u8::try_from(high * 16 + low).ok()?
            }
            b => b,
        });
    }
    String::from_utf8(out).ok()
}

/// 401 with a challenge for the scheme the caller tried, or for both it may use.
fn unauthorized(method: Method) -> Response {
    let mut res = plain(
        StatusCode::UNAUTHORIZED,
        "introspection needs a live jeton API token: authorization: Bearer <token>, or the \
         token as the OAuth client secret (client_secret_basic or client_secret_post)",
    );
    let challenges: &[&str] = match method {
        Method::Bearer => &["Bearer realm=\"jeton\""],
        Method::Basic => &["Basic realm=\"jeton\""],
        Method::Other => &["Bearer realm=\"jeton\"", "Basic realm=\"jeton\""],
    };
    for challenge in challenges {
        res.headers_mut()
            .append("www-authenticate", HeaderValue::from_static(challenge));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn basic_credentials_are_form_decoded_and_the_id_dropped() {
        assert_eq!(basic_secret(&b64("rs0:s3cret")).as_deref(), Some("s3cret"));
        // RFC 6749 §2.3.1: each part encoded before base64, a colon in the id as %3A.
        assert_eq!(
            basic_secret(&b64("my+rs%3A1:a%2Bb%25c+d")).as_deref(),
            Some("a+b%c d")
        );
        assert_eq!(
            basic_secret(&b64(":only-secret")).as_deref(),
            Some("only-secret")
        );
        // The secret may hold colons (encoded or not): only the first colon splits.
        assert_eq!(basic_secret(&b64("id:a:b")).as_deref(), Some("a:b"));
    }

    #[test]
    fn unreadable_basic_credentials_give_no_secret() {
        for bad in [
            "!!!not base64".to_owned(),
            b64("no colon at all"),
            b64("id:bad%zzescape"),
            b64("id:truncated%4"),
            b64("bad%id:secret"),
            base64::engine::general_purpose::STANDARD.encode([b'i', b':', 0xff, 0xfe]),
            b64("id:%FF"),
        ] {
            assert_eq!(basic_secret(&bad), None, "{bad}");
        }
    }

    #[test]
    fn the_header_names_the_method_for_the_challenge() {
        let header = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(from_header(&header("Bearer x")).0, Method::Bearer);
        assert_eq!(from_header(&header("basic eDp5")).0, Method::Basic);
        assert_eq!(from_header(&header("Digest x")).0, Method::Other);
        assert!(
            from_header(&header("Basic eDp5")).1.is_none(),
            "x:y is no token"
        );
    }
}
