//! The front door: Envoy external authorization, HTTP forward-auth, RFC 7662 introspection
//! and Kubernetes TokenReview — each a translation of `Validate`'s one decision, checked
//! against `Validate` on one table of cases, and each a use of the token.

use crate::helpers::*;
use chrono::TimeDelta;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, attribute_context,
    authorization_client::AuthorizationClient, check_response::HttpResponse,
};
use jeton::grpc::proto::{self, Assignment, Namespace, Reason, Role};
use std::collections::HashMap;
use std::net::SocketAddr;

/// A server with the HTTP front door, on plaintext.
async fn front_door() -> TestApp {
    TestApp::spawn_with(Transport::Plain, with_http).await
}

fn with_http(s: &mut jeton::config::ServeConfig) {
    s.http_listen = Some("127.0.0.1:0".parse().unwrap());
}

/// What one path answered, in the terms they all share.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// Good, for this token id, subject and (comma-separated) scopes.
    Allowed {
        id: String,
        subject: String,
        scopes: String,
    },
    /// Refused; for the gates, with this HTTP status.
    Refused(u16),
}

fn namespace_name(ns: Namespace) -> &'static str {
    match ns {
        Namespace::LogCollector => "log_collector",
        Namespace::Siem => "siem",
        _ => "api",
    }
}

/// The HTTP status a gate must answer for a reason.
fn gate_status(r: Reason) -> u16 {
    match r {
        Reason::RoleInactive | Reason::InsufficientScope => 403,
        _ => 401,
    }
}

async fn by_validate(app: &TestApp, token: &str, ns: Namespace, required: &[&str]) -> Answer {
    let v = app.validate(token, ns, required).await;
    match v.token {
        Some(t) if v.valid => Answer::Allowed {
            id: t.id,
            subject: t.subject,
            scopes: v.effective_scopes.join(","),
        },
        _ => Answer::Refused(gate_status(reason(&v))),
    }
}

pub fn check_request(
    authorization: Option<&str>,
    ns: Namespace,
    required: &[&str],
) -> CheckRequest {
    let mut headers = HashMap::new();
    if let Some(a) = authorization {
        headers.insert("authorization".to_owned(), a.to_owned());
    }
    headers.insert("x-jeton-tenant".to_owned(), "evil".to_owned());
    headers.insert("x-jeton-principal".to_owned(), "contoso/admin".to_owned());
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: HashMap::from([
                ("jeton.namespace".to_owned(), namespace_name(ns).to_owned()),
                ("jeton.required_scopes".to_owned(), required.join(",")),
            ]),
            ..Default::default()
        }),
    }
}

async fn envoy_check(app: &TestApp, req: CheckRequest) -> CheckResponse {
    AuthorizationClient::new(app.channel().await)
        .check(req)
        .await
        .unwrap()
        .into_inner()
}

async fn by_ext_authz(app: &TestApp, token: &str, ns: Namespace, required: &[&str]) -> Answer {
    let bearer = format!("Bearer {token}");
    let res = envoy_check(app, check_request(Some(&bearer), ns, required)).await;
    match res.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            assert_eq!(res.status.unwrap().code, 0);
            let header = |name: &str| {
                ok.headers
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .find(|h| h.key == name)
                    .map(|h| h.value.clone())
                    .unwrap_or_default()
            };
            assert!(ok.headers_to_remove.contains(&"authorization".to_owned()));
            assert!(
                ok.headers_to_remove
                    .contains(&"x-jeton-principal".to_owned()),
                "client-sent x-jeton-* never pass: {:?}",
                ok.headers_to_remove
            );
            assert_eq!(header("x-jeton-tenant"), TENANT, "overwrites the client's");
            Answer::Allowed {
                id: header("x-jeton-token-id"),
                subject: header("x-jeton-subject"),
                scopes: header("x-jeton-scopes"),
            }
        }
        Some(HttpResponse::DeniedResponse(denied)) => {
            let status = denied.status.unwrap().code as u16;
            assert_eq!(
                res.status.unwrap().code,
                if status == 403 { 7 } else { 16 },
                "the gRPC code matches the HTTP status"
            );
            let www = denied
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .find(|h| h.key == "www-authenticate");
            assert!(www.unwrap().value.starts_with("Bearer"));
            assert!(denied.body.contains("\"reason\""));
            assert!(
                !denied.body.contains(token),
                "the body never echoes the token"
            );
            Answer::Refused(status)
        }
        other => panic!("neither ok nor denied: {other:?}"),
    }
}

async fn by_forward_auth(app: &TestApp, token: &str, ns: Namespace, required: &[&str]) -> Answer {
    let target = format!(
        "/v1/forward-auth?namespace={}&scopes={}",
        namespace_name(ns),
        required.join(",")
    );
    let bearer = format!("Bearer {token}");
    let res = http(
        app.http.unwrap(),
        "GET",
        &target,
        &[("authorization", &bearer), ("x-jeton-tenant", "evil")],
        "",
    )
    .await;
    match res.status {
        200 => {
            assert_eq!(res.header("x-jeton-tenant"), Some(TENANT));
            Answer::Allowed {
                id: res.header("x-jeton-token-id").unwrap().to_owned(),
                subject: res.header("x-jeton-subject").unwrap().to_owned(),
                scopes: res.header("x-jeton-scopes").unwrap().to_owned(),
            }
        }
        s => {
            if s == 401 {
                assert!(
                    res.header("www-authenticate")
                        .unwrap()
                        .starts_with("Bearer")
                );
            }
            assert!(!res.body.contains(token));
            Answer::Refused(s)
        }
    }
}

/// Introspection asks "is it good, in its own namespace", with no scope required.
async fn by_introspection(app: &TestApp, caller: &str, token: &str) -> Option<serde_json::Value> {
    let bearer = format!("Bearer {caller}");
    let res = http(
        app.http.unwrap(),
        "POST",
        "/oauth2/introspect",
        &[
            ("authorization", &bearer),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &format!("token={token}&token_type_hint=access_token"),
    )
    .await;
    assert_eq!(res.status, 200, "{res:?}");
    let v: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    (v["active"] == true).then_some(v)
}

async fn by_token_review(app: &TestApp, token: &str, ns: Namespace) -> Answer {
    let review = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": { "token": token, "audiences": ["https://kubernetes.default.svc"] },
    });
    let res = http(
        app.http.unwrap(),
        "POST",
        &format!(
            "/apis/authentication.k8s.io/v1/tokenreviews?namespace={}",
            namespace_name(ns)
        ),
        &[("content-type", "application/json")],
        &review.to_string(),
    )
    .await;
    assert_eq!(res.status, 200, "{res:?}");
    let v: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    assert_eq!(v["kind"], "TokenReview");
    let status = &v["status"];
    if status["authenticated"] == true {
        let user = &status["user"];
        assert_eq!(user["extra"]["jeton.dev/tenant"][0], TENANT);
        let groups: Vec<String> = user["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().trim_start_matches("jeton:").to_owned())
            .collect();
        Answer::Allowed {
            id: user["uid"].as_str().unwrap().to_owned(),
            subject: user["username"].as_str().unwrap().to_owned(),
            scopes: groups.join(","),
        }
    } else {
        let error = status["error"].as_str().unwrap();
        assert!(!error.contains(token), "the error never echoes the token");
        Answer::Refused(0)
    }
}

/// Tokens of every kind the table needs.
struct Cases {
    admin: String,
    reader: String,
    siem: String,
    revoked: String,
    expired: String,
    inactive: String,
}

async fn cases(app: &TestApp) -> Cases {
    let mut admin = app.tokens(&app.admin).await;
    let reader = app.user("rita@contoso.com", Role::Reader).await;
    let siem = admin
        .generate(proto::GenerateRequest {
            namespace: Namespace::Siem as i32,
            subject: "splunk-1".into(),
            ..generate_req("siem", &["read"])
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let revoked = admin
        .generate(generate_req("revoked", &[]))
        .await
        .unwrap()
        .into_inner();
    admin
        .revoke(proto::RevokeRequest {
            id: revoked.token.unwrap().id,
        })
        .await
        .unwrap();
    let expired = admin
        .generate(proto::GenerateRequest {
            expire_time: Some(app.clock_ts_after(TimeDelta::minutes(5))),
            ..generate_req("expiring", &[])
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let inactive = app.user("eve@contoso.com", Role::Operator).await;
    app.put_principal("eve@contoso.com", Role::Operator, Assignment::Eligible)
        .await;
    app.clock.advance(TimeDelta::minutes(10));
    Cases {
        admin: app.admin.clone(),
        reader,
        siem,
        revoked: revoked.secret,
        expired,
        inactive,
    }
}

#[tokio::test]
async fn every_adapter_agrees_with_validate() {
    // Users get their first token through the portal (TLS, trusted frontend); the adapters
    // are asked on a plaintext replica of the same database.
    let portal = TestApp::spawn().await;
    let c = cases(&portal).await;
    let app = portal.replica_with(Transport::Plain, with_http).await;
    let unknown = crate::tokens::forge(&format!("jta_{}{}", "U".repeat(22), "V".repeat(43)));
    let table: Vec<(&str, &str)> = vec![
        ("admin", &c.admin),
        ("reader", &c.reader),
        ("siem", &c.siem),
        ("revoked", &c.revoked),
        ("expired", &c.expired),
        ("eligible, not activated", &c.inactive),
        ("unknown id", &unknown),
        ("malformed", "jta_not-a-token"),
    ];
    let mut refused_kinds = std::collections::BTreeSet::new();
    for (what, token) in &table {
        for ns in [Namespace::Api, Namespace::Siem] {
            for required in [&[][..], &["read"][..], &["write"][..], &["admin"][..]] {
                let expected = by_validate(&app, token, ns, required).await;
                if let Answer::Refused(s) = expected {
                    refused_kinds.insert(s);
                }
                let here = format!("{what} in {ns:?} needing {required:?}");
                assert_eq!(
                    by_ext_authz(&app, token, ns, required).await,
                    expected,
                    "ext_authz: {here}"
                );
                assert_eq!(
                    by_forward_auth(&app, token, ns, required).await,
                    expected,
                    "forward-auth: {here}"
                );
                if required.is_empty() {
                    let reviewed = by_token_review(&app, token, ns).await;
                    match &expected {
                        Answer::Allowed { .. } => {
                            assert_eq!(reviewed, expected, "TokenReview: {here}")
                        }
                        Answer::Refused(_) => {
                            assert_eq!(reviewed, Answer::Refused(0), "TokenReview: {here}")
                        }
                    }
                }
            }
        }
        // Introspection: the token's own namespace, nothing required.
        let own = if token.starts_with("jts_") {
            Namespace::Siem
        } else {
            Namespace::Api
        };
        let expected = by_validate(&app, token, own, &[]).await;
        let introspected = by_introspection(&app, &app.admin, token).await;
        match expected {
            Answer::Allowed {
                id,
                subject,
                scopes,
            } => {
                let v = introspected.unwrap_or_else(|| panic!("introspection of {what}: inactive"));
                assert_eq!(v["jti"], id);
                assert_eq!(v["sub"], subject);
                assert_eq!(v["scope"], scopes.replace(',', " "));
                assert_eq!(v["tenant"], TENANT);
                assert_eq!(v["namespace"], namespace_name(own));
                assert_eq!(v["token_type"], "Bearer");
            }
            Answer::Refused(_) => assert!(introspected.is_none(), "introspection of {what}"),
        }
    }
    assert_eq!(
        refused_kinds,
        [401, 403].into(),
        "the table has both kinds of refusal"
    );
}

#[tokio::test]
async fn a_gate_with_no_or_a_broken_credential_refuses_and_says_why() {
    let app = front_door().await;
    let res = envoy_check(&app, check_request(None, Namespace::Api, &[])).await;
    let Some(HttpResponse::DeniedResponse(d)) = res.http_response else {
        panic!("denied: {res:?}")
    };
    assert_eq!(d.status.unwrap().code, 401);
    assert!(d.body.contains("missing"), "{}", d.body);
    let basic = envoy_check(
        &app,
        check_request(Some("Basic YWxhZGRpbg=="), Namespace::Api, &[]),
    )
    .await;
    assert!(matches!(
        basic.http_response,
        Some(HttpResponse::DeniedResponse(_))
    ));

    let missing = http(app.http.unwrap(), "POST", "/v1/forward-auth", &[], "").await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("content-type"), Some("application/json"));
    // A route misconfigured in its query: 400 with a plain reason (nginx shows a 500).
    let bearer = format!("Bearer {}", app.admin);
    for target in [
        "/v1/forward-auth?namespace=nope",
        "/v1/forward-auth?scopes=root",
    ] {
        let r = http(
            app.http.unwrap(),
            "GET",
            target,
            &[("authorization", &bearer)],
            "",
        )
        .await;
        assert_eq!(r.status, 400, "{target}");
        assert!(
            r.body.contains("namespace") || r.body.contains("scopes"),
            "{}",
            r.body
        );
    }
    // Envoy: an unknown namespace in the route's extensions fails closed.
    let mut bad = check_request(Some(&bearer), Namespace::Api, &[]);
    bad.attributes
        .as_mut()
        .unwrap()
        .context_extensions
        .insert("jeton.namespace".into(), "nope".into());
    let r = AuthorizationClient::new(app.channel().await)
        .check(bad)
        .await;
    assert_code(r, tonic::Code::InvalidArgument, "jeton.namespace");
}

#[tokio::test]
async fn introspection_sees_only_the_callers_tenant() {
    let app = front_door().await;
    let fabrikam_admin = app.bootstrap_tenant("fabrikam", "boss@fabrikam.com").await;
    assert!(
        by_introspection(&app, &app.admin, &app.admin)
            .await
            .is_some()
    );
    // Another tenant's token is exactly {"active": false} — and is not counted as used.
    let theirs = app.mint(&fabrikam_admin, "theirs").await;
    let bearer = format!("Bearer {}", app.admin);
    let res = http(
        app.http.unwrap(),
        "POST",
        "/oauth2/introspect",
        &[("authorization", &bearer)],
        &format!("token={}", theirs.secret),
    )
    .await;
    assert_eq!(res.body, r#"{"active":false}"#);
    let listed = app
        .list(&fabrikam_admin, proto::ListRequest::default())
        .await
        .unwrap();
    let t = listed.iter().find(|t| t.name == "theirs").unwrap();
    assert_eq!(
        t.status,
        proto::TokenStatus::Generated as i32,
        "another tenant's introspection is not a use"
    );

    // The caller must authenticate: 401, and nothing about the token.
    for headers in [vec![], vec![("authorization", "Bearer jta_garbage")]] {
        let r = http(
            app.http.unwrap(),
            "POST",
            "/oauth2/introspect",
            &headers,
            &format!("token={}", app.admin),
        )
        .await;
        assert_eq!(r.status, 401);
        assert!(!r.body.contains("active"));
    }
    let bearer = format!("Bearer {}", app.admin);
    for body in ["", "token=", "%%%"] {
        let r = http(
            app.http.unwrap(),
            "POST",
            "/oauth2/introspect",
            &[("authorization", &bearer)],
            body,
        )
        .await;
        assert_eq!(r.status, 400, "{body:?}: {r:?}");
    }
}

// Introspection with OAuth client credentials: resource servers such as Apache mod_oauth2
// send only those (the caller's API token as the client secret), never a bearer token.

/// How a resource server presents its credential to the introspection endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    /// `client_secret_basic`: `Authorization: Basic base64(id:secret)`.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form.
    Post,
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// `Authorization: Basic` of an already form-encoded id and secret.
fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// Every byte of `s` as `%XX`: what a client that encodes more than it must would send.
fn percent_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Introspects `token` with `caller` as the client secret, under client id `rs-1`.
async fn introspect_as(app: &TestApp, auth: ClientAuth, caller: &str, token: &str) -> HttpAnswer {
    let addr = app.http.unwrap();
    match auth {
        ClientAuth::Basic => {
            let authorization = basic("rs-1", caller);
            http(
                addr,
                "POST",
                "/oauth2/introspect",
                &[("authorization", &authorization), FORM],
                &format!("token={token}"),
            )
            .await
        }
        ClientAuth::Post => {
            http(
                addr,
                "POST",
                "/oauth2/introspect",
                &[FORM],
                &format!("token={token}&client_id=rs-1&client_secret={caller}"),
            )
            .await
        }
    }
}

#[track_caller]
fn json_of(res: &HttpAnswer) -> serde_json::Value {
    assert_eq!(res.status, 200, "{res:?}");
    serde_json::from_str(&res.body).unwrap_or_else(|e| panic!("{e}: {res:?}"))
}

/// Every `WWW-Authenticate` challenge of an answer.
fn challenges(res: &HttpAnswer) -> Vec<&str> {
    res.headers
        .iter()
        .filter(|(k, _)| k == "www-authenticate")
        .map(|(_, v)| v.as_str())
        .collect()
}

#[tokio::test]
async fn introspection_takes_the_callers_token_as_an_oauth_client_secret() {
    // Arrange
    let app = front_door().await;
    let fabrikam_admin = app.bootstrap_tenant("fabrikam", "boss@fabrikam.com").await;
    let mine = app.mint(&app.admin, "mine").await;
    let mine_id = mine.token.unwrap().id;
    let theirs = app.mint(&fabrikam_admin, "theirs").await;
    let theirs_id = theirs.token.unwrap().id;

    for auth in [ClientAuth::Basic, ClientAuth::Post] {
        // Act and assert: a token of the caller's tenant is active, as with a bearer.
        let v = json_of(&introspect_as(&app, auth, &app.admin, &mine.secret).await);
        assert_eq!(v["active"], true, "{auth:?}: {v}");
        assert_eq!(v["jti"], mine_id.as_str(), "{auth:?}");
        assert_eq!(v["tenant"], TENANT, "{auth:?}");

        // Another tenant's token is exactly inactive: the caller is sealed to its tenant.
        let res = introspect_as(&app, auth, &app.admin, &theirs.secret).await;
        assert_eq!(res.status, 200, "{auth:?}: {res:?}");
        assert_eq!(res.body, r#"{"active":false}"#, "{auth:?}");

        // The tenant is the secret's: fabrikam's admin as the client sees fabrikam's token.
        let v = json_of(&introspect_as(&app, auth, &fabrikam_admin, &theirs.secret).await);
        assert_eq!(v["active"], true, "{auth:?}: {v}");
        assert_eq!(v["jti"], theirs_id.as_str(), "{auth:?}");
        assert_eq!(v["tenant"], "fabrikam", "{auth:?}");
    }

    // client_secret_basic: id and secret are form-urlencoded before base64 (RFC 6749
    // §2.3.1); an id holding a colon arrives as %3A, and a secret may be encoded throughout.
    let authorization = basic("rs+1%3Aeu", &percent_all(&app.admin));
    let res = http(
        app.http.unwrap(),
        "POST",
        "/oauth2/introspect",
        &[("authorization", &authorization), FORM],
        &format!("token={}", mine.secret),
    )
    .await;
    assert_eq!(json_of(&res)["jti"], mine_id.as_str());
    // client_secret_post: the client id is not a credential, and may be left out.
    let res = http(
        app.http.unwrap(),
        "POST",
        "/oauth2/introspect",
        &[FORM],
        &format!("client_secret={}&token={}", app.admin, mine.secret),
    )
    .await;
    assert_eq!(json_of(&res)["jti"], mine_id.as_str());
}

#[tokio::test]
async fn introspection_refuses_a_bad_client_secret_with_a_challenge() {
    // Arrange
    let app = front_door().await;
    let forged = crate::tokens::forge(&format!("jta_{}{}", "F".repeat(22), "G".repeat(43)));
    let doomed = app.mint(&app.admin, "doomed").await;
    app.tokens(&app.admin)
        .await
        .revoke(proto::RevokeRequest {
            id: doomed.token.unwrap().id,
        })
        .await
        .unwrap();
    let target = app.mint(&app.admin, "target").await.secret;

    // Act and assert: a forged, a revoked, or no token at all as the secret is 401.
    for auth in [ClientAuth::Basic, ClientAuth::Post] {
        for (what, caller) in [
            ("forged", forged.as_str()),
            ("revoked", doomed.secret.as_str()),
            ("not a token", "s3cret"),
            ("empty", ""),
        ] {
            let res = introspect_as(&app, auth, caller, &target).await;
            assert_eq!(res.status, 401, "{auth:?}, {what}: {res:?}");
            assert!(!res.body.contains("active"), "{auth:?}, {what}: {res:?}");
            let expected: &[&str] = match auth {
                ClientAuth::Basic => &["Basic realm=\"jeton\""],
                ClientAuth::Post => &["Bearer realm=\"jeton\"", "Basic realm=\"jeton\""],
            };
            assert_eq!(challenges(&res), expected, "{auth:?}, {what}");
        }
    }

    // Basic credentials jeton cannot read are 401 too, even around a live token.
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (what, authorization) in [
        ("not base64", format!("Basic !{}!", app.admin)),
        ("no colon", format!("Basic {}", b64(&app.admin))),
        ("the token as the id", basic(&app.admin, "")),
        (
            "a broken escape",
            basic("rs-1", &format!("{}%zz", app.admin)),
        ),
        ("no credentials", "Basic".to_owned()),
    ] {
        let res = http(
            app.http.unwrap(),
            "POST",
            "/oauth2/introspect",
            &[("authorization", &authorization), FORM],
            &format!("token={target}"),
        )
        .await;
        assert_eq!(res.status, 401, "{what}: {res:?}");
        assert!(!res.body.contains("active"), "{what}: {res:?}");
        assert!(!challenges(&res).is_empty(), "{what}: {res:?}");
    }
}

/// RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request.
/// jeton answers 400 (RFC 6749 §5.2's `invalid_request`) before checking either, even when
/// both hold the same live token, and the token asked about is not validated (not used).
#[tokio::test]
async fn two_client_authentication_methods_at_once_are_a_bad_request() {
    let app = front_door().await;
    let probe = app.mint(&app.admin, "probe").await;
    let probe_id = probe.token.unwrap().id;
    let bearer = format!("Bearer {}", app.admin);
    let basic = basic("rs-1", &app.admin);
    for (what, authorization) in [("bearer", &bearer), ("basic", &basic)] {
        let res = http(
            app.http.unwrap(),
            "POST",
            "/oauth2/introspect",
            &[("authorization", authorization), FORM],
            &format!(
                "token={}&client_id=rs-1&client_secret={}",
                probe.secret, app.admin
            ),
        )
        .await;
        assert_eq!(res.status, 400, "{what} and client_secret_post: {res:?}");
        assert!(res.body.contains("one method"), "{what}: {res:?}");
        assert!(!res.body.contains("active"), "{what}: {res:?}");
    }
    let listed = app
        .list(&app.admin, proto::ListRequest::default())
        .await
        .unwrap();
    let status = listed.iter().find(|t| t.id == probe_id).unwrap().status;
    assert_eq!(
        status,
        proto::TokenStatus::Generated as i32,
        "a refused introspection validates nothing"
    );
}

#[tokio::test]
async fn token_review_refuses_what_is_not_a_token_review() {
    let app = front_door().await;
    let addr = app.http.unwrap();
    let path = "/apis/authentication.k8s.io/v1/tokenreviews";
    for body in [
        "",
        "{",
        r#"{"kind":"Pod","apiVersion":"v1","spec":{"token":"x"}}"#,
        r#"{"kind":"TokenReview"}"#,
    ] {
        let r = http(addr, "POST", path, &[], body).await;
        assert_eq!(r.status, 400, "{body:?}: {r:?}");
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    }
    let r = http(addr, "GET", path, &[], "").await;
    assert_eq!(r.status, 405);
    let r = http(addr, "GET", "/nowhere", &[], "").await;
    assert_eq!(r.status, 404);
    // Bounded: a body over 64 KiB or headers over 16 KiB are refused, not read.
    let big = "x".repeat(70 * 1024);
    let r = http(addr, "POST", path, &[], &big).await;
    assert_eq!(r.status, 413);
    let long = "y".repeat(20 * 1024);
    let r = http(addr, "GET", "/v1/forward-auth", &[("x-long", &long)], "").await;
    assert!((400..500).contains(&r.status), "{}", r.status);
}

#[tokio::test]
async fn a_validation_through_a_gate_is_a_use_of_the_token() {
    let app = front_door().await;
    let mut admin = app.tokens(&app.admin).await;
    let g = admin
        .generate(generate_req("gated", &["read"]))
        .await
        .unwrap()
        .into_inner();
    let id = g.token.unwrap().id;
    let status_of = |tokens: Vec<proto::Token>| {
        tokens
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| t.status)
            .unwrap()
    };
    let before = app
        .list(&app.admin, proto::ListRequest::default())
        .await
        .unwrap();
    assert_eq!(status_of(before), proto::TokenStatus::Generated as i32);
    assert_eq!(
        by_forward_auth(&app, &g.secret, Namespace::Api, &["read"]).await,
        Answer::Allowed {
            id: id.clone(),
            subject: ADMIN.into(),
            scopes: "read".into()
        }
    );
    let after = app
        .list(&app.admin, proto::ListRequest::default())
        .await
        .unwrap();
    assert_eq!(status_of(after), proto::TokenStatus::Active as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_drives_envoy_check_through_reflection() {
    let app = front_door().await;
    let addr = app.addr.to_string();
    let grpcurl = |args: &[&str]| {
        let out = std::process::Command::new("grpcurl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let services = grpcurl(&["-plaintext", &addr, "list"]);
    assert!(
        services.contains("envoy.service.auth.v3.Authorization"),
        "{services}"
    );
    let body = format!(
        r#"{{"attributes":{{"request":{{"http":{{"headers":{{"authorization":"Bearer {}"}}}}}},"context_extensions":{{"jeton.required_scopes":"admin"}}}}}}"#,
        app.admin
    );
    let out = grpcurl(&[
        "-plaintext",
        "-d",
        &body,
        &addr,
        "envoy.service.auth.v3.Authorization/Check",
    ]);
    assert!(
        out.contains("okResponse") && out.contains("x-jeton-subject"),
        "{out}"
    );
    let body =
        r#"{"attributes":{"request":{"http":{"headers":{"authorization":"Bearer jta_x"}}}}}"#;
    let out = grpcurl(&[
        "-plaintext",
        "-d",
        body,
        &addr,
        "envoy.service.auth.v3.Authorization/Check",
    ]);
    assert!(
        out.contains("deniedResponse") && out.contains("Unauthorized"),
        "{out}"
    );
}

/// HTTPS on the front door, with the gRPC port's certificate.
#[tokio::test]
async fn the_http_listener_speaks_tls_with_the_grpc_certificate() {
    let app = TestApp::spawn_with(Transport::Tls, |s| {
        s.http_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let answer = https_get(app.http.unwrap(), "/v1/forward-auth", &app.admin).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-jeton-tenant: contoso")
    );
    // Plaintext to a TLS listener gets nowhere.
    let plain = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        http(app.http.unwrap(), "GET", "/v1/forward-auth", &[], ""),
    )
    .await;
    assert!(plain.is_err() || plain.unwrap().status == 0);
}

async fn https_get(addr: SocketAddr, target: &str, token: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
    let mut roots = RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(pki().ca.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out).await;
    out
}
