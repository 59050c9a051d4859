//! Who may call: bearer tokens and trusted frontends over mTLS.

use crate::helpers::*;
use jeton::grpc::proto::{self, Namespace, Role, token_service_client::TokenServiceClient};
use tonic::Code;

async fn list_with(
    app: &TestApp,
    meta: Meta,
) -> Result<tonic::Response<proto::ListResponse>, tonic::Status> {
    app.tokens_with(meta)
        .await
        .list(proto::ListRequest::default())
        .await
}

#[tokio::test]
async fn bearer_credentials() {
    let app = TestApp::spawn().await;
    assert_code(
        list_with(&app, Meta::default()).await,
        Code::Unauthenticated,
        "missing",
    );
    for header in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer garbage",
        "Bearer  ",
        &app.admin,
    ] {
        let r = list_with(&app, Meta::default().with("authorization", header)).await;
        assert_code(r, Code::Unauthenticated, "");
    }
    assert!(
        list_with(
            &app,
            Meta::default().with("authorization", format!("Token {}", app.admin))
        )
        .await
        .is_ok()
    );
    assert!(
        list_with(
            &app,
            Meta::default().with("authorization", format!("bearer {}", app.admin))
        )
        .await
        .is_ok()
    );
    assert!(list_with(&app, Meta::bearer(&app.admin)).await.is_ok());

    // Revoked: refused.
    let t = app.mint(&app.admin, "soon revoked").await;
    app.tokens(&app.admin)
        .await
        .revoke(proto::RevokeRequest {
            id: t.token.unwrap().id,
        })
        .await
        .unwrap();
    assert_code(
        list_with(&app, Meta::bearer(&t.secret)).await,
        Code::Unauthenticated,
        "",
    );
}

#[tokio::test]
async fn principal_header_is_ignored_without_a_client_certificate() {
    let app = TestApp::spawn().await;
    // No bearer, header only: nobody.
    let only_header = Meta::default().with("x-jeton-principal", format!("{TENANT}/{ADMIN}"));
    assert_code(
        list_with(&app, only_header).await,
        Code::Unauthenticated,
        "",
    );

    // A reader's bearer plus a header naming the admin: still the reader.
    let reader = app.user("rita@contoso.com", Role::Reader).await;
    let both = Meta::bearer(&reader).with("x-jeton-principal", format!("{TENANT}/{ADMIN}"));
    let mut c = app.tokens_with(both).await;
    let r = c
        .list(proto::ListRequest {
            namespace: Namespace::Siem as i32,
            ..Default::default()
        })
        .await;
    assert_code(r, Code::PermissionDenied, "");
    let mine = c
        .list(proto::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    // Rita holds exactly one token (from `app.user`), and it is all she sees: an empty
    // listing would pass the `all` below whoever the caller was taken for.
    assert_eq!(mine.tokens.len(), 1, "{mine:?}");
    assert!(mine.tokens.iter().all(|t| t.subject == "rita@contoso.com"));
    assert_eq!(mine.tokens[0].name, "first");

    // Same on a plaintext server, where no client can present a certificate.
    let plain = TestApp::spawn_with(Transport::Plain, |_| {}).await;
    let r = list_with(
        &plain,
        Meta::default().with("x-jeton-principal", format!("{TENANT}/{ADMIN}")),
    )
    .await;
    assert_code(r, Code::Unauthenticated, "");
}

#[tokio::test]
async fn principal_header_is_honoured_with_a_trusted_certificate() {
    let app = TestApp::spawn().await;
    let mut portal = app.portal(TENANT, ADMIN).await;
    let listed = portal
        .list(proto::ListRequest {
            namespace: Namespace::Siem as i32,
            ..Default::default()
        })
        .await;
    assert!(listed.is_ok(), "acting as the admin: {listed:?}");
    let t = portal
        .generate(generate_req("from the portal", &[]))
        .await
        .unwrap()
        .into_inner();
    let token = t.token.unwrap();
    assert_eq!(token.subject, ADMIN);
    assert_eq!(token.scopes, ["read", "write", "admin"]);

    // The stored role applies: an operator acting through the portal cannot list SIEM tokens.
    app.put_principal(
        "oscar@contoso.com",
        Role::Operator,
        proto::Assignment::Active,
    )
    .await;
    let r = app
        .portal(TENANT, "oscar@contoso.com")
        .await
        .list(proto::ListRequest {
            namespace: Namespace::Siem as i32,
            ..Default::default()
        })
        .await;
    assert_code(r, Code::PermissionDenied, "");

    // Unknown principals and malformed headers are refused.
    for bad in [
        format!("{TENANT}/nobody@contoso.com"),
        "no-slash".into(),
        "UPPER/x".into(),
        format!("fabrikam/{ADMIN}"),
    ] {
        let ch = app.frontend_channel(false).await.unwrap();
        let r = TokenServiceClient::with_interceptor(
            ch,
            Meta::default().with("x-jeton-principal", bad),
        )
        .list(proto::ListRequest::default())
        .await;
        assert_code(r, Code::Unauthenticated, "");
    }

    // A trusted connection without the header is an ordinary bearer caller.
    let ch = app.frontend_channel(false).await.unwrap();
    let r = TokenServiceClient::with_interceptor(ch, Meta::bearer(&app.admin))
        .list(proto::ListRequest::default())
        .await;
    assert!(r.is_ok());
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let app = TestApp::spawn().await;
    let r = async {
        let ch = app.frontend_channel(true).await?;
        let mut c = TokenServiceClient::with_interceptor(
            ch,
            Meta::default().with("x-jeton-principal", format!("{TENANT}/{ADMIN}")),
        );
        Ok::<_, Box<dyn std::error::Error>>(c.list(proto::ListRequest::default()).await?)
    }
    .await;
    // Refused by the TLS layer, with an alert about the certificate — not by anything
    // else that could fail the call (a missing credential, a bad header).
    let Err(e) = r else {
        panic!("an untrusted client certificate was accepted")
    };
    let mut chain = format!("{e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        chain.push_str(&format!(" / {s}"));
        source = s.source();
    }
    eprintln!("{chain}");
    assert!(
        chain.contains("UnknownCA") || chain.contains("BadCertificate"),
        "not a TLS refusal of the certificate: {chain}"
    );
    assert!(app.validate(&app.admin, Namespace::Api, &[]).await.valid);
}

#[tokio::test]
async fn validate_needs_no_credential() {
    let app = TestApp::spawn().await;
    let v = app.validate(&app.admin, Namespace::Api, &["admin"]).await;
    assert!(v.valid);
    assert_eq!(v.token.unwrap().subject, ADMIN);
}
