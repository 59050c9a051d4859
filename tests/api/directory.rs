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

/// Every audit event the caller of `dir` may read about `target` (all when empty), newest
/// first, walked two at a time so that page tokens are exercised too.
async fn audit_events(dir: &mut Directory, target: &str) -> Vec<proto::AuditEvent> {
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = dir
            .list_audit_events(proto::ListAuditEventsRequest {
                target: target.into(),
                page_size: 2,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        page_token = page.next_page_token;
    }
}

async fn principal_ids(dir: &mut Directory) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = dir
            .list_principals(proto::ListPrincipalsRequest {
                page_size: 1,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.principals.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

/// One tenant's world, for the sealing test: its admin's directory client and the ids that
/// only it has.
struct World {
    tenant: &'static str,
    dir: Directory,
    principals: Vec<&'static str>,
    token_ids: Vec<String>,
}

impl World {
    async fn make(
        app: &TestApp,
        tenant: &'static str,
        admin_id: &'static str,
        admin: String,
        user: &'static str,
    ) -> Self {
        let mut dir = app.directory(&admin).await;
        dir.put_principal(proto::PutPrincipalRequest {
            principal: Some(proto::Principal {
                id: user.into(),
                role: Role::Operator as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
        let mut tokens = app.tokens(&admin).await;
        let kept = tokens
            .generate(generate_req(&format!("{tenant}-kept"), &[]))
            .await
            .unwrap()
            .into_inner();
        let gone = tokens
            .generate(generate_req(&format!("{tenant}-gone"), &[]))
            .await
            .unwrap()
            .into_inner();
        let gone_id = gone.token.unwrap().id;
        tokens
            .revoke(proto::RevokeRequest {
                id: gone_id.clone(),
            })
            .await
            .unwrap();
        let admin_token_id = admin[4..26].to_owned();
        World {
            tenant,
            dir,
            principals: vec![admin_id, user],
            token_ids: vec![admin_token_id, kept.token.unwrap().id, gone_id],
        }
    }

    /// Everything that names this tenant or one of its objects.
    fn names(&self) -> Vec<String> {
        let mut n = vec![self.tenant.to_owned()];
        n.extend(self.principals.iter().map(|p| p.to_string()));
        n.extend(self.token_ids.iter().cloned());
        n
    }
}

/// Rule 8 for the directory and the audit trail: with two tenants, each admin lists only its
/// own principals and audit events, a target or page token of the other tenant yields
/// nothing of it, and UpdateTenant naming the other tenant changes only the caller's.
#[tokio::test]
async fn audit_events_and_principals_are_sealed_per_tenant() {
    let app = TestApp::spawn().await;
    let fabrikam_admin = app.bootstrap_tenant("fabrikam", "root@fabrikam.com").await;
    let mut worlds = [
        World::make(&app, TENANT, ADMIN, app.admin.clone(), "bob@contoso.com").await,
        World::make(
            &app,
            "fabrikam",
            "root@fabrikam.com",
            fabrikam_admin,
            "fred@fabrikam.com",
        )
        .await,
    ];

    for i in 0..2 {
        let other_names = worlds[1 - i].names();
        let other_tenant = worlds[1 - i].tenant;
        let me = &mut worlds[i];
        let events = audit_events(&mut me.dir, "").await;
        // Tenant created, 2 principals created (bootstrap's admin, the user), 3 tokens
        // generated, 1 revoked.
        assert!(events.len() >= 7, "{}: {events:?}", me.tenant);
        for e in &events {
            assert_eq!(e.tenant, me.tenant, "{e:?}");
            for n in &other_names {
                assert!(
                    !e.target.contains(n.as_str())
                        && !e.actor.contains(n.as_str())
                        && !e.detail.contains(n.as_str()),
                    "{}'s trail names {n} of the other tenant: {e:?}",
                    me.tenant
                );
            }
        }
        for own in me.names() {
            assert!(
                events.iter().any(|e| e.target == own),
                "{}'s trail has an event about {own}",
                me.tenant
            );
        }
        let revoked = proto::AuditAction::TokenRevoked as i32;
        assert_eq!(
            events
                .iter()
                .filter(|e| e.action == revoked)
                .map(|e| e.target.clone())
                .collect::<Vec<_>>(),
            [me.token_ids[2].clone()]
        );

        let mut own = me.principals.clone();
        own.sort();
        assert_eq!(
            principal_ids(&mut me.dir).await,
            own,
            "{} lists its own principals only",
            me.tenant
        );

        // Naming the other tenant's objects as the target: nothing, as for an unknown id.
        for n in &other_names {
            assert!(
                audit_events(&mut me.dir, n).await.is_empty(),
                "{} reads events about {n} of {other_tenant}",
                me.tenant
            );
        }
        for own in me.names() {
            assert!(!audit_events(&mut me.dir, &own).await.is_empty());
        }
    }

    // A page token of one tenant's listing is not one of the other's.
    let [contoso, fabrikam] = &mut worlds;
    let contoso_audit_page = contoso
        .dir
        .list_audit_events(proto::ListAuditEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    let contoso_principals_page = contoso
        .dir
        .list_principals(proto::ListPrincipalsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!contoso_audit_page.is_empty() && !contoso_principals_page.is_empty());
    assert_code(
        fabrikam
            .dir
            .list_audit_events(proto::ListAuditEventsRequest {
                page_size: 1,
                page_token: contoso_audit_page,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_code(
        fabrikam
            .dir
            .list_principals(proto::ListPrincipalsRequest {
                page_size: 1,
                page_token: contoso_principals_page,
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );

    // The trusted frontend acting for fabrikam's admin sees fabrikam only.
    let ch = app.frontend_channel(false).await.unwrap();
    let mut portal = proto::directory_service_client::DirectoryServiceClient::with_interceptor(
        ch,
        Meta::default().with("x-jeton-principal", "fabrikam/root@fabrikam.com"),
    );
    let seen = portal
        .list_principals(proto::ListPrincipalsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .principals;
    assert_eq!(
        seen.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["fred@fabrikam.com", "root@fabrikam.com"]
    );
    let trail = portal
        .list_audit_events(proto::ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(!trail.is_empty() && trail.iter().all(|e| e.tenant == "fabrikam"));

    // UpdateTenant naming contoso: the id is ignored, and only fabrikam changes.
    let before = contoso
        .dir
        .get_tenant(proto::GetTenantRequest {})
        .await
        .unwrap()
        .into_inner();
    let updated = fabrikam
        .dir
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(proto::Tenant {
                id: TENANT.into(),
                display_name: "Taken Over".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await;
    // The caller's tenant is the one changed, whatever the request names (the contract:
    // tenant.id is ignored), so the call succeeds — on fabrikam.
    let updated = updated.unwrap().into_inner();
    assert_eq!(updated.id, "fabrikam");
    assert_eq!(updated.display_name, "Taken Over");
    let after = contoso
        .dir
        .get_tenant(proto::GetTenantRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, before, "contoso untouched");
    assert_ne!(after.display_name, "Taken Over");
    let events = audit_events(&mut contoso.dir, "").await;
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|e| e.tenant == TENANT && e.actor != "root@fabrikam.com"),
        "nothing of fabrikam's update in contoso's trail"
    );
}

/// Audit details name enum values as the proto does (`NAMESPACE_LOG_COLLECTOR`,
/// `ROLE_ADMIN`, `ASSIGNMENT_ELIGIBLE`), never in a programming language's own spelling: the
/// trail is read by people and SIEMs for years.
#[tokio::test]
async fn audit_details_spell_enums_as_the_proto_does() {
    let app = TestApp::spawn().await;
    let mut tokens = app.tokens(&app.admin).await;
    let collector = tokens
        .generate(proto::GenerateRequest {
            name: "fluent-bit".into(),
            namespace: proto::Namespace::LogCollector as i32,
            subject: "collector-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap();
    app.put_principal("carol@contoso.com", Role::Admin, Assignment::Eligible)
        .await;
    let mut dir = app.directory(&app.admin).await;
    let generated = audit_events(&mut dir, &collector.id).await;
    let [event] = &generated[..] else {
        panic!("one event for the token: {generated:?}")
    };
    assert!(
        event
            .detail
            .starts_with("namespace=NAMESPACE_LOG_COLLECTOR subject=collector-1 "),
        "{}",
        event.detail
    );
    let put = audit_events(&mut dir, "carol@contoso.com").await;
    let [event] = &put[..] else {
        panic!("one event for the principal: {put:?}")
    };
    assert_eq!(
        event.detail,
        "role=ROLE_ADMIN assignment=ASSIGNMENT_ELIGIBLE"
    );
}
