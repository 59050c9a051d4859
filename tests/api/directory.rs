//! DirectoryService: admin-only management of principals.

use crate::helpers::*;
use jeton::grpc::proto::{self, Assignment, Role};
use tonic::Code;

#[tokio::test]
async fn admins_manage_principals() {
    let app = TestApp::spawn().await;
    let mut dir = app.directory(&app.admin).await;
    let p = dir
        .put_principal(proto::PutPrincipalRequest {
            principal: Some(proto::Principal {
                id: "bob@contoso.com".into(),
                display_name: "Bob".into(),
                role: Role::Operator as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.tenant, TENANT);
    assert_eq!(
        p.assignment,
        Assignment::Active as i32,
        "unset assignment means active"
    );
    assert!(p.activation_end_time.is_none());
    let got = dir
        .get_principal(proto::GetPrincipalRequest {
            id: "bob@contoso.com".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, p);

    for i in 0..4 {
        app.put_principal(
            &format!("user{i}@contoso.com"),
            Role::Reader,
            Assignment::Eligible,
        )
        .await;
    }
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = dir
            .list_principals(proto::ListPrincipalsRequest {
                page_size: 2,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(r.principals.into_iter().map(|p| p.id));
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    assert_eq!(
        ids,
        [
            ADMIN,
            "bob@contoso.com",
            "user0@contoso.com",
            "user1@contoso.com",
            "user2@contoso.com",
            "user3@contoso.com"
        ]
    );

    dir.delete_principal(proto::DeletePrincipalRequest {
        id: "bob@contoso.com".into(),
    })
    .await
    .unwrap();
    let r = dir
        .get_principal(proto::GetPrincipalRequest {
            id: "bob@contoso.com".into(),
        })
        .await;
    assert_code(r, Code::NotFound, "");
    let r = dir
        .delete_principal(proto::DeletePrincipalRequest {
            id: "bob@contoso.com".into(),
        })
        .await;
    assert_code(r, Code::NotFound, "");
}

#[tokio::test]
async fn non_admins_cannot_touch_the_directory() {
    let app = TestApp::spawn().await;
    let op = app.user("oscar@contoso.com", Role::Operator).await;
    let mut dir = app.directory(&op).await;
    let r = dir
        .put_principal(proto::PutPrincipalRequest {
            principal: Some(proto::Principal {
                id: "oscar@contoso.com".into(),
                role: Role::Admin as i32,
                ..Default::default()
            }),
        })
        .await;
    assert_code(r, Code::PermissionDenied, "admin");
    assert_code(
        dir.list_principals(proto::ListPrincipalsRequest::default())
            .await,
        Code::PermissionDenied,
        "",
    );
    assert_code(
        dir.get_principal(proto::GetPrincipalRequest { id: ADMIN.into() })
            .await,
        Code::PermissionDenied,
        "",
    );
    assert_code(
        dir.delete_principal(proto::DeletePrincipalRequest { id: ADMIN.into() })
            .await,
        Code::PermissionDenied,
        "",
    );
    // An admin's read-only token is not an admin either.
    let ro = app
        .tokens(&app.admin)
        .await
        .generate(generate_req("ro", &["read"]))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let r = app
        .directory(&ro)
        .await
        .list_principals(proto::ListPrincipalsRequest::default())
        .await;
    assert_code(r, Code::PermissionDenied, "");
}
