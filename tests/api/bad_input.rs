//! Malformed input gets a clear answer naming the field, never a panic, and the server keeps
//! serving.

use crate::helpers::*;
use jeton::grpc::proto::{self, Namespace, Reason, Role, token_service_client::TokenServiceClient};
use tonic::Code;

#[tokio::test]
async fn malformed_tokens_are_reason_malformed() {
    let app = TestApp::spawn().await;
    let good = &app.admin;
    let mut broken_checksum = good.clone().into_bytes();
    let last = broken_checksum.len() - 1;
    broken_checksum[last] = if broken_checksum[last] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let cases = [
        String::new(),
        // Far longer than a token, yet under the 64 KiB limit on a request.
        "x".repeat(60 * 1024),
        format!("{}\u{0}\u{7}\n", &good[..72]),
        "jta_\t\r\n".repeat(10),
        String::from_utf8(broken_checksum).unwrap(),
        good.to_uppercase(),
        format!("{good} "),
        format!("Bearer {good}"),
        "jtx_".to_owned() + &good[4..],
        "é".repeat(37) + "a",
    ];
    for bad in &cases {
        let v = app.validate(bad, Namespace::Api, &[]).await;
        assert!(!v.valid, "{}", bad.len());
        assert_eq!(
            reason(&v),
            Reason::Malformed,
            "case of length {}",
            bad.len()
        );
        assert!(v.token.is_none());
    }
    assert!(
        app.validate(good, Namespace::Api, &[]).await.valid,
        "still serving"
    );
}

#[tokio::test]
async fn validate_refuses_broken_requests() {
    let app = TestApp::spawn().await;
    let mut c = proto::token_service_client::TokenServiceClient::new(app.channel().await);
    let r = c
        .validate(proto::ValidateRequest {
            token: app.admin.clone(),
            namespace: 42,
            ..Default::default()
        })
        .await;
    assert_code(r, Code::InvalidArgument, "namespace");
    let r = c
        .validate(proto::ValidateRequest {
            token: app.admin.clone(),
            required_scopes: vec!["root".into()],
            ..Default::default()
        })
        .await;
    assert_code(r, Code::InvalidArgument, "required_scopes");
}

#[tokio::test]
async fn generate_refuses_bad_fields() {
    let app = TestApp::spawn().await;
    let mut admin = app.tokens(&app.admin).await;
    for name in [
        String::new(),
        "   ".into(),
        "x".repeat(10 * 1024),
        "line\nbreak".into(),
        "\u{1b}[31m".into(),
    ] {
        assert_code(
            admin.generate(generate_req(&name, &[])).await,
            Code::InvalidArgument,
            "name",
        );
    }
    assert_code(
        admin.generate(generate_req("ok", &["sudo"])).await,
        Code::InvalidArgument,
        "scopes",
    );
    let r = admin
        .generate(proto::GenerateRequest {
            namespace: 7,
            ..generate_req("ok", &[])
        })
        .await;
    assert_code(r, Code::InvalidArgument, "namespace");
    let r = admin
        .generate(proto::GenerateRequest {
            expire_time: Some(prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            }),
            ..generate_req("ok", &[])
        })
        .await;
    assert_code(r, Code::InvalidArgument, "expire_time");
    let r = admin
        .generate(proto::GenerateRequest {
            expire_time: Some(prost_types::Timestamp {
                seconds: 4_000_000_000,
                nanos: -5,
            }),
            ..generate_req("ok", &[])
        })
        .await;
    assert_code(r, Code::InvalidArgument, "expire_time");
    let r = admin
        .generate(proto::GenerateRequest {
            namespace: Namespace::Siem as i32,
            subject: "bad/agent".into(),
            ..generate_req("ok", &[])
        })
        .await;
    assert_code(r, Code::InvalidArgument, "subject");

    // Nothing was written by any of the refused calls.
    let listed = app
        .list(&app.admin, proto::ListRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn list_refuses_bad_fields_and_coerces_huge_pages() {
    use jeton::domain::Clock;
    let app = TestApp::spawn().await;
    // More tokens than the largest page, so that every page size below is observable: with
    // the bootstrap token alone, any page size would answer one token.
    let seeded = jeton_testkit::seed::seed_tokens(
        &app.db_url,
        &jeton_testkit::seed::Seed {
            tenant: TENANT,
            owner: ADMIN,
            count: 1_020,
            hashed: false,
            expiring_every: 0,
            expires_in: chrono::TimeDelta::zero(),
            now: app.clock.now() - chrono::TimeDelta::seconds(1),
        },
    )
    .await
    .unwrap();
    assert_eq!(seeded.len(), 1_020);
    let mut admin = app.tokens(&app.admin).await;
    let list = |req: proto::ListRequest| {
        let mut admin = admin.clone();
        async move { admin.list(req).await }
    };
    assert_code(
        list(proto::ListRequest {
            page_size: -1,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_size",
    );
    let zero = list(proto::ListRequest {
        page_size: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let zero = zero.into_inner();
    assert_eq!(zero.tokens.len(), 50, "0 means the default page size, 50");
    assert!(!zero.next_page_token.is_empty(), "and more pages follow");
    // AIP-158: above the maximum is coerced to the maximum (1000).
    let huge = list(proto::ListRequest {
        page_size: 1_000_000,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(huge.tokens.len(), 1000);
    assert!(
        !huge.next_page_token.is_empty(),
        "1021 tokens: a page follows"
    );
    let rest = list(proto::ListRequest {
        page_size: i32::MAX,
        page_token: huge.next_page_token,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(rest.tokens.len(), 21, "the bootstrap token and 1020 seeded");
    assert!(rest.next_page_token.is_empty());
    for garbage in [
        "garbage",
        "!!!!",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &"x".repeat(60_000),
    ] {
        let r = list(proto::ListRequest {
            page_token: garbage.into(),
            ..Default::default()
        })
        .await;
        assert_code(r, Code::InvalidArgument, "page_token");
    }
    assert_code(
        list(proto::ListRequest {
            status: 9,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "status",
    );
    assert_code(
        list(proto::ListRequest {
            namespace: -3,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "namespace",
    );
    assert_code(
        list(proto::ListRequest {
            owner: "a\u{0}b".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "owner",
    );
    assert_code(
        admin
            .revoke(proto::RevokeRequest { id: String::new() })
            .await,
        Code::InvalidArgument,
        "id",
    );
    assert_code(
        admin
            .revoke(proto::RevokeRequest {
                id: "../../etc".into(),
            })
            .await,
        Code::InvalidArgument,
        "id",
    );
    assert!(
        app.validate(&app.admin, Namespace::Api, &[]).await.valid,
        "still serving"
    );
}

#[tokio::test]
async fn directory_refuses_bad_fields() {
    let app = TestApp::spawn().await;
    let mut dir = app.directory(&app.admin).await;
    let put = |p: Option<proto::Principal>| {
        let mut dir = dir.clone();
        async move {
            dir.put_principal(proto::PutPrincipalRequest { principal: p })
                .await
        }
    };
    let base = || proto::Principal {
        id: "zoe@contoso.com".into(),
        role: Role::Reader as i32,
        ..Default::default()
    };
    assert_code(put(None).await, Code::InvalidArgument, "principal");
    assert_code(
        put(Some(proto::Principal { role: 42, ..base() })).await,
        Code::InvalidArgument,
        "principal.role",
    );
    assert_code(
        put(Some(proto::Principal { role: 0, ..base() })).await,
        Code::InvalidArgument,
        "principal.role",
    );
    assert_code(
        put(Some(proto::Principal {
            assignment: 9,
            ..base()
        }))
        .await,
        Code::InvalidArgument,
        "principal.assignment",
    );
    assert_code(
        put(Some(proto::Principal {
            id: String::new(),
            ..base()
        }))
        .await,
        Code::InvalidArgument,
        "principal.id",
    );
    assert_code(
        put(Some(proto::Principal {
            id: "x".repeat(10_000),
            ..base()
        }))
        .await,
        Code::InvalidArgument,
        "principal.id",
    );
    assert_code(
        put(Some(proto::Principal {
            tenant: "NOT A SLUG".into(),
            ..base()
        }))
        .await,
        Code::InvalidArgument,
        "principal.tenant",
    );
    assert_code(
        put(Some(proto::Principal {
            display_name: "a\u{8}".into(),
            ..base()
        }))
        .await,
        Code::InvalidArgument,
        "principal.display_name",
    );
    assert_code(
        dir.get_principal(proto::GetPrincipalRequest { id: String::new() })
            .await,
        Code::InvalidArgument,
        "id",
    );
    assert_code(
        dir.list_principals(proto::ListPrincipalsRequest {
            page_size: -5,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_size",
    );
    assert_code(
        dir.list_principals(proto::ListPrincipalsRequest {
            page_token: "zzz".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_token",
    );
    let listed = dir
        .list_principals(proto::ListPrincipalsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.principals.len(), 1, "nothing half-written");
}

/// A request over its service's limit is refused before it is decoded: 64 KiB for the
/// directory, 128 KiB for `TokenService` (whose `RevokeLeaked` carries up to 1000 tokens).
#[tokio::test]
async fn requests_over_the_limit_are_refused() {
    let app = TestApp::spawn().await;
    let r = app
        .directory(&app.admin)
        .await
        .get_principal(proto::GetPrincipalRequest {
            id: "x".repeat(65 * 1024),
        })
        .await;
    assert_code(r, Code::OutOfRange, "65536");
    let r = TokenServiceClient::new(app.channel().await)
        .validate(proto::ValidateRequest {
            token: "x".repeat(129 * 1024),
            ..Default::default()
        })
        .await;
    assert_code(r, Code::OutOfRange, "131072");
    // Under the limit, a long string is merely not a token.
    let v = TokenServiceClient::new(app.channel().await)
        .validate(proto::ValidateRequest {
            token: "x".repeat(100 * 1024),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reason(&v), proto::Reason::Malformed);
}
