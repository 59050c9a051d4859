//! Privileged roles (eligible assignments, time-boxed activation), rotation with a grace
//! period, the tenant's expiry policy, and the audit trail.

use crate::helpers::*;
use chrono::TimeDelta;
use jeton::grpc::proto::{self, Assignment, AuditAction, Namespace, Reason, Role};
use std::time::{Duration, Instant};
use tonic::Code;

fn dur(d: TimeDelta) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.num_seconds(),
        nanos: 0,
    }
}

fn activate(id: &str, d: Option<TimeDelta>, why: &str) -> proto::ActivateRoleRequest {
    proto::ActivateRoleRequest {
        id: id.into(),
        duration: d.map(dur),
        justification: why.into(),
    }
}

/// Unspecified when valid, else the reason.
async fn status(app: &TestApp, token: &str) -> Reason {
    let v = app.validate(token, Namespace::Api, &[]).await;
    if v.valid {
        Reason::Unspecified
    } else {
        reason(&v)
    }
}

/// A principal with a token of theirs, then made eligible: its token grants nothing yet.
async fn eligible_user(app: &TestApp, id: &str) -> String {
    let token = app.user(id, Role::Operator).await;
    app.put_principal(id, Role::Operator, Assignment::Eligible)
        .await;
    token
}

#[tokio::test]
async fn activation_life_cycle() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let eve = eligible_user(&app, "eve@contoso.com").await;
    assert_eq!(status(&app, &eve).await, Reason::RoleInactive);
    assert_eq!(status(&replica, &eve).await, Reason::RoleInactive);

    // Eve activates her own role, with the very token that grants nothing yet.
    let p = app
        .directory(&eve)
        .await
        .activate_role(activate(
            "eve@contoso.com",
            Some(TimeDelta::hours(1)),
            "incident INC-42",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        p.activation_end_time,
        Some(app.clock_ts_after(TimeDelta::hours(1)))
    );
    assert_eq!(status(&app, &eve).await, Reason::Unspecified);
    assert_eq!(
        app.validate(&eve, Namespace::Api, &["write"])
            .await
            .effective_scopes,
        ["read", "write"]
    );
    within_propagation(
        "activation on the other replica",
        Instant::now(),
        || async { status(&replica, &eve).await == Reason::Unspecified },
    )
    .await;

    app.clock.advance(TimeDelta::minutes(59));
    assert_eq!(status(&app, &eve).await, Reason::Unspecified);
    assert_eq!(
        status(&replica, &eve).await,
        Reason::Unspecified,
        "cached on the other replica"
    );
    app.clock.advance(TimeDelta::minutes(2));
    assert_eq!(status(&app, &eve).await, Reason::RoleInactive);
    assert_eq!(
        status(&replica, &eve).await,
        Reason::RoleInactive,
        "cached entries are judged against the clock"
    );

    app.directory(&eve)
        .await
        .activate_role(activate(
            "eve@contoso.com",
            Some(TimeDelta::hours(1)),
            "still INC-42",
        ))
        .await
        .unwrap();
    assert_eq!(status(&app, &eve).await, Reason::Unspecified);

    let p = app
        .directory(&eve)
        .await
        .deactivate_role(proto::DeactivateRoleRequest {
            id: "eve@contoso.com".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(p.activation_end_time.is_none());
    assert_eq!(
        status(&app, &eve).await,
        Reason::RoleInactive,
        "the very next call"
    );
    within_propagation(
        "deactivation on the other replica",
        Instant::now(),
        || async { status(&replica, &eve).await == Reason::RoleInactive },
    )
    .await;
}

#[tokio::test]
async fn activation_limits() {
    let app = TestApp::spawn().await;
    let eve = eligible_user(&app, "eve@contoso.com").await;
    let mut dir = app.directory(&eve).await;
    let cases = [
        (Some(TimeDelta::zero()), "why", "duration"),
        (Some(TimeDelta::seconds(-60)), "why", "duration"),
        (
            Some(TimeDelta::hours(8) + TimeDelta::seconds(1)),
            "why",
            "duration",
        ),
        (None, "why", "duration"),
        (Some(TimeDelta::hours(1)), "", "justification"),
        (Some(TimeDelta::hours(1)), "   ", "justification"),
        (Some(TimeDelta::hours(1)), "bad\u{7}", "justification"),
    ];
    for (d, why, field) in cases {
        assert_code(
            dir.activate_role(activate("eve@contoso.com", d, why)).await,
            Code::InvalidArgument,
            field,
        );
    }
    assert!(
        dir.activate_role(activate(
            "eve@contoso.com",
            Some(TimeDelta::hours(8)),
            "max"
        ))
        .await
        .is_ok()
    );

    // A non-admin cannot activate (or deactivate) someone else.
    app.put_principal("mallory@contoso.com", Role::Reader, Assignment::Eligible)
        .await;
    let op = app.user("oscar@contoso.com", Role::Operator).await;
    let mut as_op = app.directory(&op).await;
    let r = as_op
        .activate_role(activate(
            "mallory@contoso.com",
            Some(TimeDelta::hours(1)),
            "why",
        ))
        .await;
    assert_code(r, Code::PermissionDenied, "");
    let r = as_op
        .deactivate_role(proto::DeactivateRoleRequest {
            id: "eve@contoso.com".into(),
        })
        .await;
    assert_code(r, Code::PermissionDenied, "");
    // An admin can.
    let mut admin = app.directory(&app.admin).await;
    admin
        .activate_role(activate(
            "mallory@contoso.com",
            Some(TimeDelta::hours(1)),
            "on call",
        ))
        .await
        .unwrap();
    // A permanent role has nothing to activate.
    let r = admin
        .activate_role(activate(
            "oscar@contoso.com",
            Some(TimeDelta::hours(1)),
            "why",
        ))
        .await;
    assert_code(r, Code::FailedPrecondition, "permanent");
    let r = admin
        .activate_role(activate(
            "nobody@contoso.com",
            Some(TimeDelta::hours(1)),
            "why",
        ))
        .await;
    assert_code(r, Code::NotFound, "");

    // Extending never shortens.
    let p = admin
        .activate_role(activate(
            "mallory@contoso.com",
            Some(TimeDelta::minutes(10)),
            "shorter",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        p.activation_end_time,
        Some(app.clock_ts_after(TimeDelta::hours(1)))
    );
    let p = admin
        .activate_role(activate(
            "mallory@contoso.com",
            Some(TimeDelta::hours(3)),
            "longer",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        p.activation_end_time,
        Some(app.clock_ts_after(TimeDelta::hours(3)))
    );
}

#[tokio::test]
async fn max_activation_is_configurable() {
    let app = TestApp::spawn_with(Transport::Tls, |s| {
        s.max_activation = Duration::from_secs(1800)
    })
    .await;
    let eve = eligible_user(&app, "eve@contoso.com").await;
    let mut dir = app.directory(&eve).await;
    let r = dir
        .activate_role(activate(
            "eve@contoso.com",
            Some(TimeDelta::minutes(31)),
            "why",
        ))
        .await;
    assert_code(r, Code::InvalidArgument, "duration");
    assert!(
        dir.activate_role(activate(
            "eve@contoso.com",
            Some(TimeDelta::minutes(30)),
            "why"
        ))
        .await
        .is_ok()
    );
}

async fn generate(
    app: &TestApp,
    bearer: &str,
    req: proto::GenerateRequest,
) -> Result<proto::GenerateResponse, tonic::Status> {
    app.tokens(bearer)
        .await
        .generate(req)
        .await
        .map(|r| r.into_inner())
}

fn rotate(id: &str, grace: Option<TimeDelta>) -> proto::GenerateRequest {
    proto::GenerateRequest {
        rotate_id: id.into(),
        grace_period: grace.map(dur),
        ..Default::default()
    }
}

#[tokio::test]
async fn rotation_with_a_grace_period() {
    let app = TestApp::spawn().await;
    let old = generate(
        &app,
        &app.admin,
        proto::GenerateRequest {
            namespace: Namespace::Siem as i32,
            subject: "splunk-1".into(),
            ..generate_req("splunk", &["read", "write"])
        },
    )
    .await
    .unwrap();
    let old_id = old.token.as_ref().unwrap().id.clone();
    let new = generate(&app, &app.admin, rotate(&old_id, Some(TimeDelta::hours(1))))
        .await
        .unwrap();
    let t = new.token.as_ref().unwrap();
    assert_eq!(t.replaces_id, old_id);
    assert_eq!(
        (t.name.as_str(), t.subject.as_str(), t.namespace),
        ("splunk", "splunk-1", Namespace::Siem as i32)
    );
    assert_eq!(t.scopes, ["read", "write"]);
    assert!(new.secret.starts_with("jts_"));

    // Both work during the grace period; the old one shows its new expiry.
    assert!(app.validate(&old.secret, Namespace::Siem, &[]).await.valid);
    assert!(app.validate(&new.secret, Namespace::Siem, &[]).await.valid);
    let listed = app
        .list(
            &app.admin,
            proto::ListRequest {
                namespace: Namespace::Siem as i32,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let old_row = listed.iter().find(|x| x.id == old_id).unwrap();
    assert_eq!(
        old_row.expire_time,
        Some(app.clock_ts_after(TimeDelta::hours(1)))
    );

    app.clock.advance(TimeDelta::minutes(61));
    let v = app.validate(&old.secret, Namespace::Siem, &[]).await;
    assert_eq!(reason(&v), Reason::Expired);
    assert!(app.validate(&new.secret, Namespace::Siem, &[]).await.valid);

    // Narrowing is allowed, widening is not.
    let narrow = generate(
        &app,
        &app.admin,
        proto::GenerateRequest {
            scopes: vec!["read".into()],
            ..rotate(&t.id, None)
        },
    )
    .await
    .unwrap();
    assert_eq!(narrow.token.unwrap().scopes, ["read"]);
    let v = app.validate(&new.secret, Namespace::Siem, &[]).await;
    assert_eq!(
        reason(&v),
        Reason::Expired,
        "grace 0: the old token stops at once"
    );
    let ro_id = narrow.secret[4..26].to_owned();
    let r = generate(
        &app,
        &app.admin,
        proto::GenerateRequest {
            scopes: vec!["read".into(), "write".into()],
            ..rotate(&ro_id, None)
        },
    )
    .await;
    assert_code(r, Code::PermissionDenied, "narrow");
}

#[tokio::test]
async fn rotation_refusals() {
    let app = TestApp::spawn().await;
    let mut admin = app.tokens(&app.admin).await;
    let t = admin
        .generate(generate_req("x", &[]))
        .await
        .unwrap()
        .into_inner();
    let id = t.token.unwrap().id;

    for grace in [
        TimeDelta::days(7) + TimeDelta::seconds(1),
        TimeDelta::seconds(-1),
    ] {
        assert_code(
            admin.generate(rotate(&id, Some(grace))).await,
            Code::InvalidArgument,
            "grace_period",
        );
    }
    let r = admin
        .generate(proto::GenerateRequest {
            grace_period: Some(dur(TimeDelta::hours(1))),
            ..generate_req("no rotation", &[])
        })
        .await;
    assert_code(r, Code::InvalidArgument, "grace_period");
    assert_code(
        admin.generate(rotate("not-an-id", None)).await,
        Code::InvalidArgument,
        "rotate_id",
    );
    let r = admin
        .generate(proto::GenerateRequest {
            name: "another name".into(),
            ..rotate(&id, None)
        })
        .await;
    assert_code(r, Code::InvalidArgument, "name");

    // Foreign and revoked tokens do not exist for rotation.
    let fabrikam = app.bootstrap_tenant("fabrikam", "root@fabrikam.com").await;
    let r = app
        .tokens(&fabrikam)
        .await
        .generate(rotate(&id, None))
        .await;
    assert_code(r, Code::NotFound, "");
    let bob = app.user("bob@contoso.com", Role::Operator).await;
    let r = app.tokens(&bob).await.generate(rotate(&id, None)).await;
    assert_code(r, Code::NotFound, "");
    admin
        .revoke(proto::RevokeRequest { id: id.clone() })
        .await
        .unwrap();
    assert_code(admin.generate(rotate(&id, None)).await, Code::NotFound, "");

    // The old expiry is never pushed later.
    let short = admin
        .generate(proto::GenerateRequest {
            expire_time: Some(app.clock_ts_after(TimeDelta::minutes(10))),
            ..generate_req("short", &[])
        })
        .await
        .unwrap()
        .into_inner();
    let short_id = short.token.unwrap().id;
    admin
        .generate(rotate(&short_id, Some(TimeDelta::days(1))))
        .await
        .unwrap();
    let listed = app
        .list(&app.admin, proto::ListRequest::default())
        .await
        .unwrap();
    let row = listed.iter().find(|x| x.id == short_id).unwrap();
    assert_eq!(
        row.expire_time,
        Some(app.clock_ts_after(TimeDelta::minutes(10)))
    );
}

#[tokio::test]
async fn tenant_expiry_policy_and_expiring_filter() {
    let app = TestApp::spawn().await;
    let mut dir = app.directory(&app.admin).await;
    let before = dir
        .get_tenant(proto::GetTenantRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.id, TENANT);
    assert!(before.max_token_lifetime.is_none());
    let updated = dir
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(proto::Tenant {
                max_token_lifetime: Some(dur(TimeDelta::days(30))),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["max_token_lifetime".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.max_token_lifetime, Some(dur(TimeDelta::days(30))));
    assert_eq!(
        updated.api_url, before.api_url,
        "fields outside the mask are kept"
    );

    let never = generate(&app, &app.admin, generate_req("never", &[]))
        .await
        .unwrap();
    assert!(never.expire_time_clamped);
    assert_eq!(
        never.token.unwrap().expire_time,
        Some(app.clock_ts_after(TimeDelta::days(30)))
    );
    let soon = generate(
        &app,
        &app.admin,
        proto::GenerateRequest {
            expire_time: Some(app.clock_ts_after(TimeDelta::days(5))),
            ..generate_req("soon", &[])
        },
    )
    .await
    .unwrap();
    assert!(!soon.expire_time_clamped);
    let late = generate(
        &app,
        &app.admin,
        proto::GenerateRequest {
            expire_time: Some(app.clock_ts_after(TimeDelta::days(90))),
            ..generate_req("late", &[])
        },
    )
    .await
    .unwrap();
    assert!(late.expire_time_clamped);
    assert_eq!(
        late.token.unwrap().expire_time,
        Some(app.clock_ts_after(TimeDelta::days(30)))
    );

    let within = |d: TimeDelta| proto::ListRequest {
        expire_within: Some(dur(d)),
        ..Default::default()
    };
    // (All were created at the same instant of the test clock: compare as sets.)
    let names = |ts: Vec<proto::Token>| {
        let mut n = ts.into_iter().map(|t| t.name).collect::<Vec<_>>();
        n.sort();
        n
    };
    assert_eq!(
        names(
            app.list(&app.admin, within(TimeDelta::days(7)))
                .await
                .unwrap()
        ),
        ["soon"]
    );
    assert_eq!(
        names(
            app.list(&app.admin, within(TimeDelta::days(31)))
                .await
                .unwrap()
        ),
        ["late", "never", "soon"]
    );
    app.clock.advance(TimeDelta::days(6));
    assert!(
        app.list(&app.admin, within(TimeDelta::days(7)))
            .await
            .unwrap()
            .is_empty(),
        "expired ones are not 'expiring'"
    );
    assert_code(
        app.tokens(&app.admin)
            .await
            .list(within(TimeDelta::seconds(-5)))
            .await,
        Code::InvalidArgument,
        "expire_within",
    );
    let r = dir
        .update_tenant(proto::UpdateTenantRequest {
            tenant: Some(proto::Tenant::default()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["id".into()],
            }),
        })
        .await;
    assert_code(r, Code::InvalidArgument, "update_mask");
}

async fn audit(app: &TestApp, target: &str) -> Vec<proto::AuditEvent> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = app
            .directory(&app.admin)
            .await
            .list_audit_events(proto::ListAuditEventsRequest {
                target: target.into(),
                page_size: 3,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(r.events);
        if r.next_page_token.is_empty() {
            return out;
        }
        page_token = r.next_page_token;
    }
}

fn actions(events: &[proto::AuditEvent]) -> Vec<(AuditAction, String)> {
    events
        .iter()
        .map(|e| (AuditAction::try_from(e.action).unwrap(), e.actor.clone()))
        .collect()
}

#[tokio::test]
async fn every_security_event_is_audited_once() {
    let sweep = |s: &mut jeton::config::ServeConfig| {
        s.activation_sweep_interval = Duration::from_millis(20)
    };
    let app = TestApp::spawn_with(Transport::Tls, sweep).await;
    // A second sweeper as quick: each expiry must still be recorded once.
    let replica = app.replica_with(Transport::Tls, sweep).await;

    // Bootstrap wrote the tenant, its admin and the first token.
    let all = audit(&app, "").await;
    assert_eq!(
        actions(&all),
        [
            (AuditAction::TokenGenerated, ADMIN.to_owned()),
            (AuditAction::PrincipalCreated, ADMIN.to_owned()),
            (AuditAction::TenantCreated, ADMIN.to_owned()),
        ]
    );

    let g = generate(&app, &app.admin, generate_req("audited", &["read"]))
        .await
        .unwrap();
    let id = g.token.unwrap().id;
    let r = generate(&app, &app.admin, rotate(&id, Some(TimeDelta::hours(1))))
        .await
        .unwrap();
    let rotated_id = r.token.unwrap().id;
    app.tokens(&app.admin)
        .await
        .revoke(proto::RevokeRequest {
            id: rotated_id.clone(),
        })
        .await
        .unwrap();
    app.put_principal("eve@contoso.com", Role::Operator, Assignment::Eligible)
        .await;
    app.put_principal("eve@contoso.com", Role::Reader, Assignment::Eligible)
        .await;
    let mut dir = app.directory(&app.admin).await;
    dir.activate_role(activate(
        "eve@contoso.com",
        Some(TimeDelta::hours(1)),
        "ticket T-1",
    ))
    .await
    .unwrap();
    dir.deactivate_role(proto::DeactivateRoleRequest {
        id: "eve@contoso.com".into(),
    })
    .await
    .unwrap();
    dir.activate_role(activate(
        "eve@contoso.com",
        Some(TimeDelta::minutes(5)),
        "ticket T-2",
    ))
    .await
    .unwrap();
    app.clock.advance(TimeDelta::minutes(6));
    let start = Instant::now();
    while !audit(&app, "eve@contoso.com")
        .await
        .iter()
        .any(|e| e.action == AuditAction::ActivationExpired as i32)
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the expiry was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both sweepers have run again since: a second record of the expiry would be there now.
    after_a_full_sweep([
        app.sweeps.activation.clone(),
        replica.sweeps.activation.clone(),
    ])
    .await;
    dir.delete_principal(proto::DeletePrincipalRequest {
        id: "eve@contoso.com".into(),
    })
    .await
    .unwrap();

    assert_eq!(
        actions(&audit(&app, &id).await),
        [(AuditAction::TokenGenerated, ADMIN.to_owned())]
    );
    assert_eq!(
        actions(&audit(&app, &rotated_id).await),
        [
            (AuditAction::TokenRevoked, ADMIN.to_owned()),
            (AuditAction::TokenRotated, ADMIN.to_owned())
        ]
    );
    let eve = audit(&app, "eve@contoso.com").await;
    assert_eq!(
        actions(&eve),
        [
            (AuditAction::PrincipalDeleted, ADMIN.to_owned()),
            (AuditAction::ActivationExpired, "jeton".to_owned()),
            (AuditAction::RoleActivated, ADMIN.to_owned()),
            (AuditAction::RoleDeactivated, ADMIN.to_owned()),
            (AuditAction::RoleActivated, ADMIN.to_owned()),
            (AuditAction::PrincipalChanged, ADMIN.to_owned()),
            (AuditAction::PrincipalCreated, ADMIN.to_owned()),
        ]
    );
    assert!(
        eve[4].detail.contains("ticket T-1"),
        "the justification is recorded: {:?}",
        eve[4]
    );
    assert!(
        eve.iter()
            .all(|e| e.tenant == TENANT && e.outcome == "success" && e.event_time.is_some())
    );

    // Refused changes write nothing.
    let count = audit(&app, "").await.len();
    let _ = generate(&app, &app.admin, rotate(&rotated_id, None))
        .await
        .unwrap_err();
    let _ = generate(&app, &app.admin, generate_req("", &[]))
        .await
        .unwrap_err();
    let _ = app
        .tokens(&app.admin)
        .await
        .revoke(proto::RevokeRequest {
            id: rotated_id.clone(),
        })
        .await
        .unwrap_err();
    let _ = dir
        .activate_role(activate(
            "eve@contoso.com",
            Some(TimeDelta::hours(1)),
            "gone",
        ))
        .await
        .unwrap_err();
    let _ = dir
        .activate_role(activate(ADMIN, Some(TimeDelta::hours(9)), "too long"))
        .await
        .unwrap_err();
    let reader = app.user("rita@contoso.com", Role::Reader).await;
    let _ = app
        .tokens(&reader)
        .await
        .generate(generate_req("w", &["write"]))
        .await
        .unwrap_err();
    let after = audit(&app, "").await;
    assert_eq!(
        after.len(),
        count + 2,
        "only rita's creation and first token were added"
    );

    // No secret in the trail.
    let text = format!("{after:?}");
    for secret in [&g.secret, &r.secret, &app.admin, &reader] {
        assert!(!text.contains(&secret[26..69]));
    }
    // Admins only.
    let r = app
        .directory(&reader)
        .await
        .list_audit_events(proto::ListAuditEventsRequest::default())
        .await;
    assert_code(r, Code::PermissionDenied, "");
    drop(replica);
}
