//! The rules of docs/contract.md, each through the real API.

use crate::helpers::*;
use chrono::TimeDelta;
use jeton::grpc::proto::{self, Assignment, Namespace, Reason, Role, TokenStatus};
use tonic::Code;

fn list_req(ns: Namespace, status: TokenStatus, owner: &str) -> proto::ListRequest {
    proto::ListRequest {
        namespace: ns as i32,
        status: status as i32,
        owner: owner.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_secret_is_returned_once_and_never_listed() {
    let app = TestApp::spawn().await;
    let resp = app
        .tokens(&app.admin)
        .await
        .generate(generate_req("ci", &["read"]))
        .await
        .unwrap()
        .into_inner();
    let token = resp.token.clone().unwrap();
    assert!(resp.secret.starts_with("jta_"));
    assert!(
        resp.secret.contains(&token.id),
        "the id is embedded in the token"
    );
    assert_eq!(resp.api_url, "https://contoso.api.test");
    assert_eq!(token.scopes, ["read"]);
    assert_eq!(token.subject, ADMIN);

    let listed = app
        .list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Unspecified, ""),
        )
        .await
        .unwrap();
    assert!(ids(&listed).contains(&token.id));
    let everything = format!("{listed:?}");
    assert!(!everything.contains(&resp.secret));
    assert!(
        !everything.contains(&resp.secret[26..69]),
        "not even the secret part"
    );

    let v = app.validate(&resp.secret, Namespace::Api, &[]).await;
    assert!(v.valid);
    assert!(!format!("{v:?}").contains(&resp.secret));
}

#[tokio::test]
async fn scopes_are_inherited_never_raised() {
    let app = TestApp::spawn().await;
    let reader = app.user("rita@contoso.com", Role::Reader).await;
    let mut as_reader = app.tokens(&reader).await;
    assert_code(
        as_reader.generate(generate_req("w", &["write"])).await,
        Code::PermissionDenied,
        "write",
    );
    assert_code(
        as_reader
            .generate(generate_req("rw", &["read", "write"]))
            .await,
        Code::PermissionDenied,
        "",
    );
    let t = as_reader
        .generate(generate_req("r", &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        t.token.unwrap().scopes,
        ["read"],
        "empty scopes: everything the issuer holds"
    );

    // A token can mint only tokens with equal or fewer scopes than itself.
    let admin_read_only = app
        .tokens(&app.admin)
        .await
        .generate(generate_req("ro", &["read"]))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let mut ro = app.tokens(&admin_read_only).await;
    assert_code(
        ro.generate(generate_req("x", &["admin"])).await,
        Code::PermissionDenied,
        "",
    );
    let child = ro
        .generate(generate_req("child", &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(child.token.unwrap().scopes, ["read"]);
}

#[tokio::test]
async fn privileges_are_evaluated_at_use() {
    let app = TestApp::spawn().await;
    let op = app.user("oscar@contoso.com", Role::Operator).await;
    let v = app.validate(&op, Namespace::Api, &["write"]).await;
    assert!(v.valid);
    assert_eq!(v.effective_scopes, ["read", "write"]);

    // Demoted: the token narrows at once.
    app.put_principal("oscar@contoso.com", Role::Reader, Assignment::Active)
        .await;
    let v = app.validate(&op, Namespace::Api, &[]).await;
    assert!(v.valid);
    assert_eq!(v.effective_scopes, ["read"]);
    assert_eq!(
        v.token.unwrap().scopes,
        ["read", "write"],
        "the token itself is unchanged"
    );
    let v = app.validate(&op, Namespace::Api, &["write"]).await;
    assert_eq!((v.valid, reason(&v)), (false, Reason::InsufficientScope));

    // Removed: the token stops.
    app.directory(&app.admin)
        .await
        .delete_principal(proto::DeletePrincipalRequest {
            id: "oscar@contoso.com".into(),
        })
        .await
        .unwrap();
    let v = app.validate(&op, Namespace::Api, &[]).await;
    assert_eq!((v.valid, reason(&v)), (false, Reason::RoleInactive));
    assert_code(
        app.tokens(&op)
            .await
            .list(proto::ListRequest::default())
            .await,
        Code::Unauthenticated,
        "",
    );

    // Eligible and not activated: grants nothing. Active again: works again, no re-issue.
    app.put_principal("oscar@contoso.com", Role::Operator, Assignment::Eligible)
        .await;
    let v = app.validate(&op, Namespace::Api, &[]).await;
    assert_eq!((v.valid, reason(&v)), (false, Reason::RoleInactive));
    app.put_principal("oscar@contoso.com", Role::Operator, Assignment::Active)
        .await;
    let v = app.validate(&op, Namespace::Api, &["write"]).await;
    assert!(v.valid);
}

#[tokio::test]
async fn eligible_principal_can_issue_nothing() {
    let app = TestApp::spawn().await;
    app.put_principal("eve@contoso.com", Role::Admin, Assignment::Eligible)
        .await;
    let r = app
        .portal(TENANT, "eve@contoso.com")
        .await
        .generate(generate_req("x", &[]))
        .await;
    assert_code(r, Code::PermissionDenied, "");
}

#[tokio::test]
async fn status_moves_from_generated_to_active_to_inactive() {
    let app = TestApp::spawn().await;
    let t = app
        .tokens(&app.admin)
        .await
        .generate(generate_req("collector", &["read"]))
        .await
        .unwrap()
        .into_inner();
    let id = t.token.unwrap().id;
    let status_of = |tokens: &[proto::Token]| {
        let t = tokens.iter().find(|t| t.id == id).expect("listed");
        TokenStatus::try_from(t.status).unwrap()
    };
    let in_filter = |tokens: &[proto::Token]| ids(tokens).contains(&id);

    let all = app
        .list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Unspecified, ""),
        )
        .await
        .unwrap();
    assert_eq!(status_of(&all), TokenStatus::Generated);
    assert!(
        all.iter()
            .find(|x| x.id == id)
            .unwrap()
            .last_use_time
            .is_none()
    );
    assert!(in_filter(
        &app.list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Generated, "")
        )
        .await
        .unwrap()
    ));
    assert!(!in_filter(
        &app.list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Active, "")
        )
        .await
        .unwrap()
    ));

    app.clock.advance(TimeDelta::hours(1));
    assert!(app.validate(&t.secret, Namespace::Api, &[]).await.valid);
    let used_at = app.clock_now_ts();
    let all = app
        .list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Unspecified, ""),
        )
        .await
        .unwrap();
    assert_eq!(status_of(&all), TokenStatus::Active);
    assert_eq!(
        all.iter().find(|x| x.id == id).unwrap().last_use_time,
        Some(used_at)
    );
    assert!(in_filter(
        &app.list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Active, "")
        )
        .await
        .unwrap()
    ));
    assert!(!in_filter(
        &app.list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Generated, "")
        )
        .await
        .unwrap()
    ));

    // Exactly at the edge of the 7-day window: still active; one second later: inactive.
    app.clock.advance(TimeDelta::days(7));
    let all = app
        .list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Active, ""),
        )
        .await
        .unwrap();
    assert!(in_filter(&all));
    app.clock.advance(TimeDelta::seconds(1));
    let inactive = app
        .list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Inactive, ""),
        )
        .await
        .unwrap();
    assert!(in_filter(&inactive));
    assert_eq!(status_of(&inactive), TokenStatus::Inactive);
    assert!(!in_filter(
        &app.list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Active, "")
        )
        .await
        .unwrap()
    ));
}

#[tokio::test]
async fn activity_window_is_configurable() {
    let app = TestApp::spawn_with(Transport::Tls, |s| {
        s.activity_window = std::time::Duration::from_secs(3600);
    })
    .await;
    let t = app.mint(&app.admin, "agent").await;
    assert!(app.validate(&t.secret, Namespace::Api, &[]).await.valid);
    app.clock.advance(TimeDelta::minutes(61));
    // (Listing with the admin token uses it, so only the agent's token is inactive.)
    let inactive = app
        .list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Inactive, ""),
        )
        .await
        .unwrap();
    assert_eq!(ids(&inactive), [t.token.unwrap().id]);
}

#[tokio::test]
async fn admins_see_all_others_see_their_own() {
    let app = TestApp::spawn().await;
    let bob = app.user("bob@contoso.com", Role::Operator).await;
    let carol = app.user("carol@contoso.com", Role::Reader).await;
    let all = |bearer: String, owner: &'static str| {
        let app = &app;
        async move {
            app.list(
                &bearer,
                list_req(Namespace::Api, TokenStatus::Unspecified, owner),
            )
            .await
        }
    };

    let seen_by_admin = all(app.admin.clone(), "").await.unwrap();
    let owners: std::collections::BTreeSet<_> =
        seen_by_admin.iter().map(|t| t.subject.clone()).collect();
    assert_eq!(
        owners.into_iter().collect::<Vec<_>>(),
        [ADMIN, "bob@contoso.com", "carol@contoso.com"]
    );

    let seen_by_bob = all(bob.clone(), "").await.unwrap();
    assert_eq!(seen_by_bob.len(), 1);
    assert!(seen_by_bob.iter().all(|t| t.subject == "bob@contoso.com"));
    assert_eq!(all(bob.clone(), "bob@contoso.com").await.unwrap().len(), 1);
    assert_code(
        all(bob.clone(), "carol@contoso.com").await,
        Code::PermissionDenied,
        "",
    );

    let carols = all(app.admin.clone(), "carol@contoso.com").await.unwrap();
    assert_eq!(carols.len(), 1);
    assert_eq!(carols[0].subject, "carol@contoso.com");

    // Bob cannot revoke Carol's token; it does not exist for him.
    let carol_id = carols[0].id.clone();
    let r = app
        .tokens(&bob)
        .await
        .revoke(proto::RevokeRequest {
            id: carol_id.clone(),
        })
        .await;
    assert_code(r, Code::NotFound, "");
    assert!(app.validate(&carol, Namespace::Api, &[]).await.valid);
    // An admin can.
    app.tokens(&app.admin)
        .await
        .revoke(proto::RevokeRequest { id: carol_id })
        .await
        .unwrap();
    assert!(!app.validate(&carol, Namespace::Api, &[]).await.valid);
}

#[tokio::test]
async fn revocation_is_immediate_and_final() {
    let app = TestApp::spawn().await;
    let mut admin = app.tokens(&app.admin).await;
    let t = admin
        .generate(generate_req("agent", &[]))
        .await
        .unwrap()
        .into_inner();
    let id = t.token.unwrap().id;
    assert!(app.validate(&t.secret, Namespace::Api, &[]).await.valid);

    admin
        .revoke(proto::RevokeRequest { id: id.clone() })
        .await
        .unwrap();
    let v = app.validate(&t.secret, Namespace::Api, &[]).await;
    assert_eq!((v.valid, reason(&v)), (false, Reason::Revoked));
    assert!(v.token.is_none());
    let listed = app
        .list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Unspecified, ""),
        )
        .await
        .unwrap();
    assert!(!ids(&listed).contains(&id));
    assert_code(
        admin.revoke(proto::RevokeRequest { id: id.clone() }).await,
        Code::NotFound,
        "",
    );
    assert_code(
        app.tokens(&t.secret)
            .await
            .list(proto::ListRequest::default())
            .await,
        Code::Unauthenticated,
        "",
    );

    // A token revoking itself works, and its next call is refused.
    let mut selfish = app.tokens(&app.admin).await;
    let own_id = app
        .validate(&app.admin, Namespace::Api, &[])
        .await
        .token
        .unwrap()
        .id;
    selfish
        .revoke(proto::RevokeRequest { id: own_id })
        .await
        .unwrap();
    assert_code(
        selfish.list(proto::ListRequest::default()).await,
        Code::Unauthenticated,
        "",
    );
}

#[tokio::test]
async fn namespaces_are_separate_worlds() {
    let app = TestApp::spawn().await;
    let mut admin = app.tokens(&app.admin).await;
    let siem = admin
        .generate(proto::GenerateRequest {
            namespace: Namespace::Siem as i32,
            subject: "splunk-forwarder-1".into(),
            ..generate_req("splunk", &["read"])
        })
        .await
        .unwrap()
        .into_inner();
    assert!(siem.secret.starts_with("jts_"));
    let siem_token = siem.token.unwrap();
    assert_eq!(siem_token.subject, "splunk-forwarder-1");
    assert_eq!(siem_token.creator, ADMIN);

    let v = app
        .validate(&siem.secret, Namespace::Unspecified, &[])
        .await;
    assert_eq!((v.valid, reason(&v)), (false, Reason::WrongNamespace));
    let v = app
        .validate(&siem.secret, Namespace::LogCollector, &[])
        .await;
    assert_eq!((v.valid, reason(&v)), (false, Reason::WrongNamespace));
    let v = app.validate(&siem.secret, Namespace::Siem, &["read"]).await;
    assert!(v.valid);
    assert_eq!(v.effective_scopes, ["read"]);
    let v = app.validate(&app.admin, Namespace::Siem, &[]).await;
    assert_eq!((v.valid, reason(&v)), (false, Reason::WrongNamespace));

    let api = app
        .list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Unspecified, ""),
        )
        .await
        .unwrap();
    assert!(!ids(&api).contains(&siem_token.id));
    let siems = app
        .list(
            &app.admin,
            list_req(Namespace::Siem, TokenStatus::Unspecified, ""),
        )
        .await
        .unwrap();
    assert_eq!(ids(&siems), std::slice::from_ref(&siem_token.id));
    let by_subject = app
        .list(
            &app.admin,
            list_req(
                Namespace::Siem,
                TokenStatus::Unspecified,
                "splunk-forwarder-1",
            ),
        )
        .await
        .unwrap();
    assert_eq!(by_subject.len(), 1);

    // A SIEM token is not a caller credential.
    assert_code(
        app.tokens(&siem.secret)
            .await
            .list(proto::ListRequest::default())
            .await,
        Code::Unauthenticated,
        "",
    );

    // Only admins generate, list and revoke them, and only by naming the namespace.
    let op = app.user("oscar@contoso.com", Role::Operator).await;
    let mut as_op = app.tokens(&op).await;
    let r = as_op
        .generate(proto::GenerateRequest {
            namespace: Namespace::LogCollector as i32,
            subject: "collector".into(),
            ..generate_req("lc", &[])
        })
        .await;
    assert_code(r, Code::PermissionDenied, "admin");
    assert_code(
        app.list(&op, list_req(Namespace::Siem, TokenStatus::Unspecified, ""))
            .await,
        Code::PermissionDenied,
        "admin",
    );
    assert_code(
        as_op
            .revoke(proto::RevokeRequest {
                id: siem_token.id.clone(),
            })
            .await,
        Code::NotFound,
        "",
    );

    let r = admin
        .generate(proto::GenerateRequest {
            namespace: Namespace::LogCollector as i32,
            ..generate_req("lc", &[])
        })
        .await;
    assert_code(r, Code::InvalidArgument, "subject");

    // Tenant tokens do not lapse with their creator's role.
    let lc = admin
        .generate(proto::GenerateRequest {
            namespace: Namespace::LogCollector as i32,
            subject: "collector-eu".into(),
            ..generate_req("lc", &[])
        })
        .await
        .unwrap()
        .into_inner();
    app.put_principal(ADMIN, Role::Reader, Assignment::Active)
        .await;
    assert!(
        app.validate(&siem.secret, Namespace::Siem, &["read"])
            .await
            .valid
    );
    let v = app
        .validate(&lc.secret, Namespace::LogCollector, &["admin"])
        .await;
    assert!(v.valid, "{v:?}");

    // Demoted, the former admin no longer sees them.
    let r = admin
        .revoke(proto::RevokeRequest { id: siem_token.id })
        .await;
    assert_code(r, Code::NotFound, "");
}

#[tokio::test]
async fn an_api_token_belongs_to_its_caller() {
    let app = TestApp::spawn().await;
    let mut admin = app.tokens(&app.admin).await;
    let r = admin
        .generate(proto::GenerateRequest {
            subject: "someone-else@contoso.com".into(),
            ..generate_req("x", &[])
        })
        .await;
    assert_code(r, Code::InvalidArgument, "subject");
    let ok = admin
        .generate(proto::GenerateRequest {
            subject: ADMIN.into(),
            ..generate_req("x", &[])
        })
        .await
        .unwrap();
    assert_eq!(ok.into_inner().token.unwrap().subject, ADMIN);
}

#[tokio::test]
async fn tenants_are_sealed() {
    let app = TestApp::spawn().await;
    let fabrikam = app.bootstrap_tenant("fabrikam", "root@fabrikam.com").await;
    let contoso_token = app.mint(&app.admin, "contoso-only").await;
    let contoso_id = contoso_token.token.unwrap().id;

    let seen = app
        .list(
            &fabrikam,
            list_req(Namespace::Api, TokenStatus::Unspecified, ""),
        )
        .await
        .unwrap();
    // Fabrikam's bootstrap token only: an empty listing would pass the `all` below.
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen.iter().all(|t| t.tenant == "fabrikam"));
    assert!(!ids(&seen).contains(&contoso_id));
    let by_owner = app
        .list(
            &fabrikam,
            list_req(Namespace::Api, TokenStatus::Unspecified, ADMIN),
        )
        .await
        .unwrap();
    assert!(by_owner.is_empty());

    // A foreign id answers exactly like an id that does not exist.
    let mut f = app.tokens(&fabrikam).await;
    let foreign = f
        .revoke(proto::RevokeRequest {
            id: contoso_id.clone(),
        })
        .await
        .unwrap_err();
    let absent = f
        .revoke(proto::RevokeRequest {
            id: "0000000000000000000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (foreign.code(), foreign.message()),
        (absent.code(), absent.message())
    );
    assert_eq!(foreign.code(), Code::NotFound);
    assert!(
        app.validate(&contoso_token.secret, Namespace::Api, &[])
            .await
            .valid
    );

    let mut fdir = app.directory(&fabrikam).await;
    let r = fdir
        .get_principal(proto::GetPrincipalRequest { id: ADMIN.into() })
        .await;
    assert_code(r, Code::NotFound, "");
    let r = fdir
        .put_principal(proto::PutPrincipalRequest {
            principal: Some(proto::Principal {
                tenant: TENANT.into(),
                id: "mole@contoso.com".into(),
                role: Role::Admin as i32,
                ..Default::default()
            }),
        })
        .await;
    assert_code(r, Code::PermissionDenied, "");
    let r = fdir
        .delete_principal(proto::DeletePrincipalRequest { id: ADMIN.into() })
        .await;
    assert_code(r, Code::NotFound, "");
    assert!(
        app.validate(&app.admin, Namespace::Api, &["admin"])
            .await
            .valid
    );
}

#[tokio::test]
async fn expired_tokens_fail() {
    let app = TestApp::spawn().await;
    let mut admin = app.tokens(&app.admin).await;
    let in_an_hour = app.clock_ts_after(TimeDelta::hours(1));
    let t = admin
        .generate(proto::GenerateRequest {
            expire_time: Some(in_an_hour),
            ..generate_req("short-lived", &[])
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.token.unwrap().expire_time, Some(in_an_hour));
    app.clock.advance(TimeDelta::minutes(59));
    assert!(app.validate(&t.secret, Namespace::Api, &[]).await.valid);
    app.clock.advance(TimeDelta::minutes(1));
    let v = app.validate(&t.secret, Namespace::Api, &[]).await;
    assert_eq!((v.valid, reason(&v)), (false, Reason::Expired));
    assert_code(
        app.tokens(&t.secret)
            .await
            .list(proto::ListRequest::default())
            .await,
        Code::Unauthenticated,
        "",
    );

    let r = admin
        .generate(proto::GenerateRequest {
            expire_time: Some(app.clock_ts_after(TimeDelta::seconds(-1))),
            ..generate_req("past", &[])
        })
        .await;
    assert_code(r, Code::InvalidArgument, "expire_time");
}

#[tokio::test]
async fn required_scopes_beyond_the_grant_are_insufficient() {
    let app = TestApp::spawn().await;
    let ro = app
        .tokens(&app.admin)
        .await
        .generate(generate_req("ro", &["read"]))
        .await
        .unwrap()
        .into_inner()
        .secret;
    assert!(app.validate(&ro, Namespace::Api, &["read"]).await.valid);
    let v = app.validate(&ro, Namespace::Api, &["read", "write"]).await;
    assert_eq!((v.valid, reason(&v)), (false, Reason::InsufficientScope));
    assert!(v.effective_scopes.is_empty());
}

#[tokio::test]
async fn wrong_secret_or_unknown_id_is_not_found() {
    let app = TestApp::spawn().await;
    let id = app
        .validate(&app.admin, Namespace::Api, &[])
        .await
        .token
        .unwrap()
        .id;
    // A well-formed token with a real id but another secret.
    let forged = forge(&format!("jta_{id}{}", "A".repeat(43)));
    let v = app.validate(&forged, Namespace::Api, &[]).await;
    assert_eq!((v.valid, reason(&v)), (false, Reason::NotFound));
    let unknown = forge(&format!("jta_{}{}", "Z".repeat(22), "A".repeat(43)));
    let v = app.validate(&unknown, Namespace::Api, &[]).await;
    assert_eq!((v.valid, reason(&v)), (false, Reason::NotFound));
}

/// Appends a correct checksum to a token body, as a scanner-aware attacker would.
pub fn forge(body: &str) -> String {
    const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut crc = crc32(body.as_bytes());
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = A[(crc % 62) as usize];
        crc /= 62;
    }
    format!("{body}{}", std::str::from_utf8(&out).unwrap())
}

fn crc32(data: &[u8]) -> u32 {
    // Bitwise CRC-32 (IEEE), independent of the server's implementation.
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn pages_are_newest_first_without_gaps_or_repeats() {
    let app = TestApp::spawn().await;
    let mut admin = app.tokens(&app.admin).await;
    for i in 0..7 {
        app.clock.advance(TimeDelta::seconds(1));
        admin
            .generate(generate_req(&format!("t{i}"), &[]))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut sizes = Vec::new();
    loop {
        let r = admin
            .list(proto::ListRequest {
                page_size: 3,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        sizes.push(r.tokens.len());
        seen.extend(r.tokens);
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    assert_eq!(sizes, [3, 3, 2]);
    let names: Vec<_> = seen.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["t6", "t5", "t4", "t3", "t2", "t1", "t0", "bootstrap"]
    );

    // A page token is bound to its filters.
    let first = admin
        .list(proto::ListRequest {
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let r = admin
        .list(proto::ListRequest {
            page_size: 3,
            status: TokenStatus::Generated as i32,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await;
    assert_code(r, Code::InvalidArgument, "page_token");
}

#[tokio::test]
async fn last_use_is_written_behind_and_flushed_at_shutdown() {
    let mut app = TestApp::spawn().await;
    let t = app.mint(&app.admin, "agent").await;
    app.clock.advance(TimeDelta::minutes(5));
    assert!(app.validate(&t.secret, Namespace::Api, &[]).await.valid);
    let first_use = app.clock_now_ts();
    app.clock.advance(TimeDelta::minutes(5));
    assert!(app.validate(&t.secret, Namespace::Api, &[]).await.valid);
    let last_use = app.clock_now_ts();
    assert_ne!(first_use, last_use);

    // No List ran, so only the shutdown flush can have written it.
    app.restart().await;
    let listed = app
        .list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Unspecified, ""),
        )
        .await
        .unwrap();
    let row = listed.iter().find(|x| x.name == "agent").unwrap();
    assert_eq!(row.last_use_time, Some(last_use));

    // Stored to the minute; the Validate answer itself carries the exact time.
    app.clock.advance(TimeDelta::seconds(90));
    let v = app.validate(&t.secret, Namespace::Api, &[]).await;
    assert_eq!(v.token.unwrap().last_use_time, Some(app.clock_now_ts()));
    let listed = app
        .list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Unspecified, ""),
        )
        .await
        .unwrap();
    let row = listed.iter().find(|x| x.name == "agent").unwrap();
    assert_eq!(
        row.last_use_time,
        Some(app.clock_ts_after(TimeDelta::seconds(-30)))
    );
}

/// Rule 4: a token is used when it authenticates a call to jeton, not only when `Validate`
/// says it is good — even when the call is then refused. Neither token below is ever
/// validated; each is only the bearer of one DirectoryService call.
#[tokio::test]
async fn a_bearer_call_to_jeton_counts_as_a_use_of_the_callers_token() {
    let app = TestApp::spawn().await;
    let admin = app.tokens(&app.admin).await;
    let mint = |name: &'static str, scopes: &'static [&'static str]| {
        let mut admin = admin.clone();
        async move {
            admin
                .generate(generate_req(name, scopes))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let caller = mint("caller", &[]).await;
    let refused = mint("refused", &["read"]).await;
    let bystander = mint("bystander", &[]).await;
    let listed = |name: &str, tokens: &[proto::Token]| {
        tokens
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} listed"))
            .clone()
    };
    let all = app
        .list(&app.admin, proto::ListRequest::default())
        .await
        .unwrap();
    for name in ["caller", "refused", "bystander"] {
        let t = listed(name, &all);
        assert_eq!(
            (TokenStatus::try_from(t.status).unwrap(), t.last_use_time),
            (TokenStatus::Generated, None),
            "{name} before any call"
        );
    }

    app.clock.advance(TimeDelta::hours(1));
    let used_at = app.clock_now_ts();
    // An admin's token lists principals: allowed.
    let principals = app
        .directory(&caller.secret)
        .await
        .list_principals(proto::ListPrincipalsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .principals;
    assert!(!principals.is_empty());
    // A read-only token is not an admin: authenticated, then refused.
    assert_code(
        app.directory(&refused.secret)
            .await
            .list_principals(proto::ListPrincipalsRequest::default())
            .await,
        Code::PermissionDenied,
        "",
    );

    app.clock.advance(TimeDelta::minutes(5));
    // The admin's List writes this replica's pending uses first (docs/contract.md).
    let all = app
        .list(&app.admin, proto::ListRequest::default())
        .await
        .unwrap();
    for name in ["caller", "refused"] {
        let t = listed(name, &all);
        assert_eq!(
            (TokenStatus::try_from(t.status).unwrap(), t.last_use_time),
            (TokenStatus::Active, Some(used_at)),
            "{name} after one bearer call"
        );
    }
    let b = listed("bystander", &all);
    assert_eq!(
        (TokenStatus::try_from(b.status).unwrap(), b.last_use_time),
        (TokenStatus::Generated, None),
        "a token that made no call is still unused"
    );
    let active = app
        .list(
            &app.admin,
            list_req(Namespace::Api, TokenStatus::Active, ""),
        )
        .await
        .unwrap();
    for t in [&caller, &refused] {
        assert!(ids(&active).contains(&t.token.as_ref().unwrap().id));
    }
    assert!(!ids(&active).contains(&bystander.token.unwrap().id));
}

/// docs/contract.md, Listing and pagination: `page_size` 0 means 50 and anything above 1000
/// is 1000, observed with more than 1000 tokens in the listing; walking every page returns
/// each token exactly once.
#[tokio::test]
async fn page_sizes_default_to_50_and_stop_at_1000_with_more_tokens_than_that() {
    use jeton::domain::Clock;
    let app = TestApp::spawn_with(Transport::Tls, |s| s.max_tokens_per_owner = 100_000).await;
    let seeded = jeton_testkit::seed::seed_tokens(
        &app.db_url,
        &jeton_testkit::seed::Seed {
            tenant: TENANT,
            owner: ADMIN,
            count: 1_100,
            hashed: false,
            expiring_every: 0,
            expires_in: TimeDelta::zero(),
            now: app.clock.now() - TimeDelta::seconds(1),
        },
    )
    .await
    .unwrap();
    // Two more through the API, beyond the default quota of 100 per owner.
    let mut admin = app.tokens(&app.admin).await;
    let mut expected: std::collections::BTreeSet<String> =
        seeded.iter().map(|t| t[4..26].to_owned()).collect();
    expected.insert(app.admin[4..26].to_owned());
    for name in ["api-1", "api-2"] {
        app.clock.advance(TimeDelta::seconds(1));
        let g = admin
            .generate(generate_req(name, &[]))
            .await
            .unwrap()
            .into_inner();
        expected.insert(g.token.unwrap().id);
    }
    assert_eq!(expected.len(), 1_103);

    let page = |size: i32, page_token: String| {
        let mut admin = admin.clone();
        async move {
            admin
                .list(proto::ListRequest {
                    page_size: size,
                    page_token,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let first = page(0, String::new()).await;
    assert_eq!(first.tokens.len(), 50, "0 means the default, 50");
    assert!(!first.next_page_token.is_empty(), "more pages follow");
    assert_eq!(
        first.tokens[..2]
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["api-2", "api-1"],
        "newest first"
    );
    let huge = page(5_000, String::new()).await;
    assert_eq!(huge.tokens.len(), 1_000, "above 1000 is coerced to 1000");
    assert!(!huge.next_page_token.is_empty(), "more pages follow");
    assert_eq!(page(1_000, String::new()).await.tokens.len(), 1_000);
    assert_eq!(page(1_001, String::new()).await.tokens.len(), 1_000);
    assert_eq!(page(999, String::new()).await.tokens.len(), 999);

    for (size, pages) in [(0, 23), (5_000, 2), (7, 158)] {
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        let mut token = String::new();
        loop {
            let p = page(size, token).await;
            sizes.push(p.tokens.len());
            seen.extend(p.tokens.into_iter().map(|t| t.id));
            if p.next_page_token.is_empty() {
                break;
            }
            token = p.next_page_token;
        }
        assert_eq!(sizes.len(), pages, "page_size {size}: {sizes:?}");
        assert_eq!(seen.len(), expected.len(), "page_size {size}: no repeats");
        assert_eq!(
            seen.into_iter().collect::<std::collections::BTreeSet<_>>(),
            expected,
            "page_size {size}: every token exactly once"
        );
    }
}

/// `--max-tokens-per-owner`: at the cap a new token is `RESOURCE_EXHAUSTED` naming the
/// limit, and so is a rotation with a grace period (it leaves one more live token for that
/// long) — a rotation could otherwise grow an owner's live tokens without bound. A rotation
/// without grace, a revocation, or an expiry frees the place.
#[tokio::test]
async fn the_per_owner_quota_counts_generations_and_rotations_with_grace() {
    let app = TestApp::spawn_with(Transport::Plain, |s| s.max_tokens_per_owner = 3).await;
    let mut admin = app.tokens(&app.admin).await;
    // The bootstrap token is the first of three.
    let a = app.mint(&app.admin, "a").await.token.unwrap().id;
    admin
        .generate(proto::GenerateRequest {
            name: "b".into(),
            expire_time: Some(app.clock_ts_after(TimeDelta::hours(1))),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = admin.generate(generate_req("c", &[])).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("(3)"), "{}", refused.message());
    let rotate = |grace: i64| proto::GenerateRequest {
        rotate_id: a.clone(),
        grace_period: Some(prost_types::Duration {
            seconds: grace,
            nanos: 0,
        }),
        ..Default::default()
    };
    assert_code(
        admin.generate(rotate(3600)).await,
        Code::ResourceExhausted,
        "",
    );
    let a2 = admin
        .generate(rotate(0))
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap()
        .id;
    // Still three live: a2, b and the bootstrap token.
    assert_code(
        admin.generate(generate_req("c", &[])).await,
        Code::ResourceExhausted,
        "",
    );
    admin.revoke(proto::RevokeRequest { id: a2 }).await.unwrap();
    admin.generate(generate_req("c", &[])).await.unwrap();
    assert_code(
        admin.generate(generate_req("d", &[])).await,
        Code::ResourceExhausted,
        "",
    );
    // An expired token no longer counts.
    app.clock.advance(TimeDelta::hours(2));
    admin.generate(generate_req("d", &[])).await.unwrap();
}
