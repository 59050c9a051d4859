//! The authorization matrix: every RPC × every kind of caller × every kind of target, each
//! cell run against a real server, and the whole compared with the tables of SECURITY.md —
//! which are therefore exactly what jeton does. When the behaviour changes on purpose, the
//! test prints the new tables (and writes them to `target/security-matrix.md`) to paste in.

use crate::helpers::*;
use chrono::TimeDelta;
use jeton::grpc::proto::{
    self, Assignment, Namespace, Role, directory_service_client::DirectoryServiceClient,
    token_service_client::TokenServiceClient,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

const OTHER_TENANT: &str = "fabrikam";
const OTHER_ADMIN: &str = "boss@fabrikam.com";
/// A principal that exists only in the other tenant.
const STRANGER: &str = "fiona@fabrikam.com";
/// The other tenant's second admin, which puts back its first after a cell changed it.
const KEEPER: &str = "keeper@fabrikam.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    None,
    Garbage,
    Revoked,
    Expired,
    SiemToken,
    LogCollectorToken,
    Reader,
    Operator,
    Admin,
    EligibleNotActivated,
    FrontendReader,
    FrontendOperator,
    FrontendAdmin,
    OtherTenantAdmin,
}

const CALLERS: [Caller; 14] = [
    Caller::None,
    Caller::Garbage,
    Caller::Revoked,
    Caller::Expired,
    Caller::SiemToken,
    Caller::LogCollectorToken,
    Caller::Reader,
    Caller::Operator,
    Caller::Admin,
    Caller::EligibleNotActivated,
    Caller::FrontendReader,
    Caller::FrontendOperator,
    Caller::FrontendAdmin,
    Caller::OtherTenantAdmin,
];

impl Caller {
    fn name(self) -> &'static str {
        match self {
            Caller::None => "no credential",
            Caller::Garbage => "garbage bearer",
            Caller::Revoked => "revoked token",
            Caller::Expired => "expired token",
            Caller::SiemToken => "SIEM token as bearer",
            Caller::LogCollectorToken => "log-collector token as bearer",
            Caller::Reader => "reader",
            Caller::Operator => "operator",
            Caller::Admin => "admin",
            Caller::EligibleNotActivated => "eligible operator, not activated",
            Caller::FrontendReader => "trusted frontend for a reader",
            Caller::FrontendOperator => "trusted frontend for an operator",
            Caller::FrontendAdmin => "trusted frontend for an admin",
            Caller::OtherTenantAdmin => "another tenant's admin",
        }
    }

    /// The principal behind the caller, when there is one.
    fn principal(self) -> Option<&'static str> {
        match self {
            Caller::Revoked | Caller::Expired | Caller::Admin => Some("ada@contoso.com"),
            Caller::Reader => Some("rita@contoso.com"),
            Caller::Operator => Some("otto@contoso.com"),
            Caller::EligibleNotActivated => Some("eve@contoso.com"),
            Caller::FrontendReader => Some("fred@contoso.com"),
            Caller::FrontendOperator => Some("flo@contoso.com"),
            Caller::FrontendAdmin => Some("fay@contoso.com"),
            Caller::OtherTenantAdmin => Some(OTHER_ADMIN),
            _ => None,
        }
    }

    fn role(self) -> (Role, Assignment) {
        match self {
            Caller::Reader | Caller::FrontendReader => (Role::Reader, Assignment::Active),
            Caller::Operator | Caller::FrontendOperator => (Role::Operator, Assignment::Active),
            Caller::EligibleNotActivated => (Role::Operator, Assignment::Eligible),
            _ => (Role::Admin, Assignment::Active),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Own,
    AnotherUsers,
    AnotherTenants,
    Absent,
}

const TARGETS: [Target; 4] = [
    Target::Own,
    Target::AnotherUsers,
    Target::AnotherTenants,
    Target::Absent,
];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Own => "own",
            Target::AnotherUsers => "another user's",
            Target::AnotherTenants => "another tenant's",
            Target::Absent => "absent",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Generate,
    List,
    Revoke,
    Validate,
    RevokeLeaked,
    PutPrincipal,
    GetPrincipal,
    ListPrincipals,
    DeletePrincipal,
    ActivateRole,
    DeactivateRole,
    GetTenant,
    UpdateTenant,
    ListAuditEvents,
    WatchAuditEvents,
}

const RPCS: [Rpc; 15] = [
    Rpc::Generate,
    Rpc::List,
    Rpc::Revoke,
    Rpc::Validate,
    Rpc::RevokeLeaked,
    Rpc::PutPrincipal,
    Rpc::GetPrincipal,
    Rpc::ListPrincipals,
    Rpc::DeletePrincipal,
    Rpc::ActivateRole,
    Rpc::DeactivateRole,
    Rpc::GetTenant,
    Rpc::UpdateTenant,
    Rpc::ListAuditEvents,
    Rpc::WatchAuditEvents,
];

impl Rpc {
    /// What the target is, for the table's heading; `None` when the RPC has no target.
    fn target_is(self) -> Option<&'static str> {
        match self {
            Rpc::Generate => Some("the token to rotate (`rotate_id`)"),
            Rpc::List => Some("the owner listed (`owner`)"),
            Rpc::Revoke => Some("the token revoked"),
            Rpc::Validate => {
                Some("the token presented (no credential needed: the caller's is ignored)")
            }
            Rpc::RevokeLeaked => Some(
                "the token string given (no credential needed: whoever holds a token may kill it)",
            ),
            Rpc::PutPrincipal => {
                Some("the principal put (another tenant's: `principal.tenant` names it)")
            }
            Rpc::GetPrincipal | Rpc::DeletePrincipal => Some("the principal"),
            Rpc::ActivateRole | Rpc::DeactivateRole => {
                Some("the principal (own: the caller; another user's: an eligible operator)")
            }
            _ => None,
        }
    }

    fn name(self) -> String {
        let service = match self {
            Rpc::Generate | Rpc::List | Rpc::Revoke | Rpc::Validate | Rpc::RevokeLeaked => {
                "TokenService"
            }
            _ => "DirectoryService",
        };
        format!("{service}/{self:?}")
    }
}

type Client<T> = T;
type Tokens = Client<TokenServiceClient<InterceptedService<Channel, Meta>>>;
type Dir = Client<DirectoryServiceClient<InterceptedService<Channel, Meta>>>;

/// The world of one RPC's cells: a tenant with its callers, another tenant, and the root
/// admin that sets things up (and puts back what a cell changed).
struct World {
    app: TestApp,
    root: String,
    other_admin: String,
    keeper: String,
    /// The bearer of each caller that has one.
    bearers: Vec<(Caller, String)>,
}

async fn frontend(app: &TestApp, principal: &str) -> (Channel, Meta) {
    let ch = app.frontend_channel(false).await.unwrap();
    (
        ch,
        Meta::default().with("x-jeton-principal", format!("{TENANT}/{principal}")),
    )
}

impl World {
    async fn new() -> Self {
        let app = TestApp::spawn().await;
        let root = app.admin.clone();
        let other_admin = app.bootstrap_tenant(OTHER_TENANT, OTHER_ADMIN).await;
        let mut boss = app.directory(&other_admin).await;
        boss.put_principal(proto::PutPrincipalRequest {
            principal: Some(proto::Principal {
                id: STRANGER.into(),
                role: Role::Operator as i32,
                assignment: Assignment::Eligible as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
        boss.put_principal(proto::PutPrincipalRequest {
            principal: Some(proto::Principal {
                id: KEEPER.into(),
                role: Role::Admin as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
        let keeper = app
            .portal(OTHER_TENANT, KEEPER)
            .await
            .generate(generate_req("keeper", &[]))
            .await
            .unwrap()
            .into_inner()
            .secret;
        let mut w = World {
            app,
            root,
            other_admin,
            keeper,
            bearers: Vec::new(),
        };
        for c in CALLERS {
            if let Some(p) = c.principal().filter(|p| !p.ends_with(OTHER_TENANT_DOMAIN)) {
                let (role, _) = c.role();
                w.app.put_principal(p, role, Assignment::Active).await;
            }
        }
        w.app
            .put_principal("olga@contoso.com", Role::Operator, Assignment::Active)
            .await;
        let mut root_tokens = w.app.tokens(&w.root).await;
        let tenant_token = |ns: Namespace| proto::GenerateRequest {
            namespace: ns as i32,
            subject: "agent-1".into(),
            ..generate_req("agent", &[])
        };
        let siem = root_tokens
            .generate(tenant_token(Namespace::Siem))
            .await
            .unwrap()
            .into_inner()
            .secret;
        let lc = root_tokens
            .generate(tenant_token(Namespace::LogCollector))
            .await
            .unwrap()
            .into_inner()
            .secret;
        w.bearers.push((Caller::SiemToken, siem));
        w.bearers.push((Caller::LogCollectorToken, lc));
        for c in [
            Caller::Admin,
            Caller::Reader,
            Caller::Operator,
            Caller::EligibleNotActivated,
            Caller::Revoked,
            Caller::Expired,
        ] {
            let mut portal = w.app.portal(TENANT, c.principal().unwrap()).await;
            let mut req = generate_req("bearer", &[]);
            if c == Caller::Expired {
                req.expire_time = Some(w.app.clock_ts_after(TimeDelta::minutes(1)));
            }
            let g = portal.generate(req).await.unwrap().into_inner();
            if c == Caller::Revoked {
                w.app
                    .tokens(&w.root)
                    .await
                    .revoke(proto::RevokeRequest {
                        id: g.token.unwrap().id,
                    })
                    .await
                    .unwrap();
            }
            w.bearers.push((c, g.secret));
        }
        w.bearers
            .push((Caller::OtherTenantAdmin, w.other_admin.clone()));
        w.app
            .put_principal("eve@contoso.com", Role::Operator, Assignment::Eligible)
            .await;
        w.app.clock.advance(TimeDelta::minutes(2));
        w
    }

    async fn meta(&self, c: Caller) -> (Channel, Meta) {
        match c {
            Caller::None => (self.app.channel().await, Meta::default()),
            Caller::Garbage => (self.app.channel().await, Meta::bearer("garbage")),
            Caller::FrontendReader | Caller::FrontendOperator | Caller::FrontendAdmin => {
                frontend(&self.app, c.principal().unwrap()).await
            }
            _ => {
                let b = &self.bearers.iter().find(|(k, _)| *k == c).unwrap().1;
                (self.app.channel().await, Meta::bearer(b))
            }
        }
    }

    async fn tokens(&self, c: Caller) -> Tokens {
        let (ch, m) = self.meta(c).await;
        TokenServiceClient::with_interceptor(ch, m)
    }

    async fn directory(&self, c: Caller) -> Dir {
        let (ch, m) = self.meta(c).await;
        DirectoryServiceClient::with_interceptor(ch, m)
    }

    /// A fresh API token of `principal` of this tenant (made through the portal).
    async fn token_of(&self, principal: &str) -> proto::GenerateResponse {
        // An eligible principal holds nothing: its token is made while it is permanent.
        let eligible = principal == "eve@contoso.com";
        if eligible {
            self.app
                .put_principal(principal, Role::Operator, Assignment::Active)
                .await;
        }
        let g = self
            .app
            .portal(TENANT, principal)
            .await
            .generate(generate_req("target", &[]))
            .await
            .unwrap()
            .into_inner();
        if eligible {
            self.app
                .put_principal(principal, Role::Operator, Assignment::Eligible)
                .await;
        }
        g
    }

    /// A fresh token of the other tenant.
    async fn foreign_token(&self) -> proto::GenerateResponse {
        self.app.mint(&self.other_admin, "foreign").await
    }

    /// The token a cell is about.
    async fn target_token(&self, c: Caller, t: Target) -> (String, String) {
        let g = match t {
            Target::Own => match c.principal() {
                Some(OTHER_ADMIN) => self.foreign_token().await,
                Some(p) => self.token_of(p).await,
                None => self.token_of("ada@contoso.com").await,
            },
            Target::AnotherUsers if c == Caller::OtherTenantAdmin => self
                .app
                .portal(OTHER_TENANT, KEEPER)
                .await
                .generate(generate_req("target", &[]))
                .await
                .unwrap()
                .into_inner(),
            Target::AnotherUsers => self.token_of("olga@contoso.com").await,
            Target::AnotherTenants => match c {
                Caller::OtherTenantAdmin => self.token_of("olga@contoso.com").await,
                _ => self.foreign_token().await,
            },
            Target::Absent => {
                let s = crate::tokens::forge(&format!("jta_{}{}", "A".repeat(22), "B".repeat(43)));
                return (s[4..26].to_owned(), s);
            }
        };
        (g.token.unwrap().id, g.secret)
    }

    /// The principal a cell is about: for "another user's", a fresh eligible operator.
    async fn target_principal(&self, c: Caller, t: Target, n: usize) -> (String, String) {
        match t {
            Target::Own => (
                c.principal().unwrap_or("nobody@contoso.com").to_owned(),
                String::new(),
            ),
            Target::AnotherUsers if c == Caller::OtherTenantAdmin => {
                (STRANGER.to_owned(), String::new())
            }
            Target::AnotherUsers => {
                let id = format!("user{n}@contoso.com");
                self.app
                    .put_principal(&id, Role::Operator, Assignment::Eligible)
                    .await;
                (id, String::new())
            }
            Target::AnotherTenants => match c {
                Caller::OtherTenantAdmin => {
                    let id = format!("user{n}@contoso.com");
                    self.app
                        .put_principal(&id, Role::Operator, Assignment::Eligible)
                        .await;
                    (id, TENANT.to_owned())
                }
                _ => (STRANGER.to_owned(), OTHER_TENANT.to_owned()),
            },
            Target::Absent => (format!("nobody{n}@contoso.com"), String::new()),
        }
    }

    /// Puts back what a cell may have changed: the callers' principals as they were.
    async fn repair(&self) {
        let mut dir = self.app.directory(&self.root).await;
        for c in CALLERS {
            let Some(p) = c.principal().filter(|p| !p.ends_with(OTHER_TENANT_DOMAIN)) else {
                continue;
            };
            let (role, assignment) = c.role();
            self.app.put_principal(p, role, assignment).await;
            if assignment == Assignment::Eligible {
                dir.deactivate_role(proto::DeactivateRoleRequest { id: p.into() })
                    .await
                    .unwrap();
            }
        }
        let mut keeper = self.app.directory(&self.keeper).await;
        for (id, role, assignment) in [
            (OTHER_ADMIN, Role::Admin, Assignment::Active),
            (STRANGER, Role::Operator, Assignment::Eligible),
        ] {
            keeper
                .put_principal(proto::PutPrincipalRequest {
                    principal: Some(proto::Principal {
                        id: id.into(),
                        role: role as i32,
                        assignment: assignment as i32,
                        ..Default::default()
                    }),
                })
                .await
                .unwrap();
        }
    }
}

const OTHER_TENANT_DOMAIN: &str = "@fabrikam.com";

/// The text of a cell: the code, or for OK what came back.
fn code<T>(r: &Result<T, Status>) -> String {
    match r {
        Ok(_) => "OK".into(),
        Err(s) => code_name(s.code()).into(),
    }
}

fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Unauthenticated => "UNAUTHENTICATED",
        Code::Unavailable => "UNAVAILABLE",
        _ => "OTHER",
    }
}

impl Caller {
    /// The tenant the caller acts in (callers with no credential: the tenant they knock at).
    fn tenant(self) -> &'static str {
        if self == Caller::OtherTenantAdmin {
            OTHER_TENANT
        } else {
            TENANT
        }
    }
}

impl World {
    /// How `secret` validates now, in the API namespace.
    async fn validation(&self, secret: &str) -> proto::ValidateResponse {
        self.app.validate(secret, Namespace::Api, &[]).await
    }

    /// Principal `id` of `tenant` as its admin reads it (`None`: there is none).
    async fn principal(&self, tenant: &str, id: &str) -> Option<proto::Principal> {
        let admin = if tenant == TENANT {
            &self.root
        } else {
            &self.keeper
        };
        match self
            .app
            .directory(admin)
            .await
            .get_principal(proto::GetPrincipalRequest { id: id.into() })
            .await
        {
            Ok(p) => Some(p.into_inner()),
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => panic!("reading {tenant}/{id}: {s:?}"),
        }
    }

    /// Both tenants' display names, read by their admins.
    async fn tenant_names(&self) -> [String; 2] {
        let mut names = [String::new(), String::new()];
        for (i, admin) in [&self.root, &self.keeper].into_iter().enumerate() {
            names[i] = self
                .app
                .directory(admin)
                .await
                .get_tenant(proto::GetTenantRequest {})
                .await
                .unwrap()
                .into_inner()
                .display_name;
        }
        names
    }
}

/// The other tenant of the two.
fn other_than(tenant: &str) -> &'static str {
    if tenant == TENANT {
        OTHER_TENANT
    } else {
        TENANT
    }
}

/// Fails the test when a cell's answer and its effect disagree: an `OK` must have done
/// exactly what was asked, to the object named, in the caller's tenant; a refusal must have
/// changed nothing.
fn effect(rpc: Rpc, c: Caller, t: Target, ok: bool, held: bool, what: &str) {
    assert!(
        held,
        "{rpc:?}, {}, {} target: answered {} but {what}",
        c.name(),
        t.name(),
        if ok { "OK" } else { "a refusal" }
    );
}

/// A refused call on a token changed nothing: it validates as it did before.
fn untouched(
    rpc: Rpc,
    c: Caller,
    t: Target,
    before: &proto::ValidateResponse,
    after: &proto::ValidateResponse,
) {
    effect(rpc, c, t, false, after == before, "the target changed");
}

async fn cell(w: &World, rpc: Rpc, c: Caller, t: Target, n: usize) -> String {
    match rpc {
        Rpc::Generate => {
            let (id, secret) = w.target_token(c, t).await;
            let before = w.validation(&secret).await;
            let r = w
                .tokens(c)
                .await
                .generate(proto::GenerateRequest {
                    rotate_id: id,
                    ..Default::default()
                })
                .await;
            let after = w.validation(&secret).await;
            match &r {
                Ok(g) => {
                    let (old, new) = (
                        before.token.clone().unwrap(),
                        g.get_ref().token.clone().unwrap(),
                    );
                    effect(
                        rpc,
                        c,
                        t,
                        true,
                        after.reason() == proto::Reason::Expired,
                        "the old token still works",
                    );
                    effect(
                        rpc,
                        c,
                        t,
                        true,
                        new.tenant == old.tenant
                            && new.subject == old.subject
                            && new.name == old.name,
                        "the new token is not the old one's successor",
                    );
                    effect(
                        rpc,
                        c,
                        t,
                        true,
                        w.validation(&g.get_ref().secret).await.valid,
                        "the new token does not work",
                    );
                }
                Err(_) => untouched(rpc, c, t, &before, &after),
            }
            code(&r)
        }
        Rpc::List => {
            let (owner, _) = w.target_principal(c, t, n).await;
            let r = w
                .tokens(c)
                .await
                .list(proto::ListRequest {
                    owner: owner.clone(),
                    ..Default::default()
                })
                .await;
            match r {
                Ok(page) => {
                    let tokens = page.into_inner().tokens;
                    let tenant = if c == Caller::OtherTenantAdmin {
                        OTHER_TENANT
                    } else {
                        TENANT
                    };
                    if tokens
                        .iter()
                        .any(|t| t.tenant != tenant || t.subject != owner)
                    {
                        "OK, LEAKING".into()
                    } else {
                        format!("OK ({})", if tokens.is_empty() { "none" } else { "theirs" })
                    }
                }
                Err(e) => code_name(e.code()).into(),
            }
        }
        Rpc::Revoke => {
            let (id, secret) = w.target_token(c, t).await;
            let before = w.validation(&secret).await;
            let r = w.tokens(c).await.revoke(proto::RevokeRequest { id }).await;
            let after = w.validation(&secret).await;
            match &r {
                Ok(_) => effect(
                    rpc,
                    c,
                    t,
                    true,
                    after.reason() == proto::Reason::Revoked,
                    "the token named is not revoked",
                ),
                Err(_) => untouched(rpc, c, t, &before, &after),
            }
            code(&r)
        }
        Rpc::RevokeLeaked => {
            let (_, secret) = w.target_token(c, t).await;
            let r = w
                .tokens(c)
                .await
                .revoke_leaked(proto::RevokeLeakedRequest {
                    tokens: vec![secret.clone()],
                })
                .await;
            match r {
                Ok(_) => {
                    let v = w.app.validate(&secret, Namespace::Api, &[]).await;
                    if v.reason() == proto::Reason::Revoked {
                        "OK (revoked)".into()
                    } else {
                        "OK (nothing revoked)".into()
                    }
                }
                Err(e) => code_name(e.code()).into(),
            }
        }
        Rpc::Validate => {
            let (_, secret) = w.target_token(c, t).await;
            match w
                .tokens(c)
                .await
                .validate(proto::ValidateRequest {
                    token: secret,
                    ..Default::default()
                })
                .await
            {
                Ok(v) if v.get_ref().valid => "valid".into(),
                Ok(v) => format!("invalid: {:?}", v.get_ref().reason()),
                Err(e) => code_name(e.code()).into(),
            }
        }
        Rpc::PutPrincipal
        | Rpc::GetPrincipal
        | Rpc::DeletePrincipal
        | Rpc::ActivateRole
        | Rpc::DeactivateRole => {
            let (id, tenant) = w.target_principal(c, t, n).await;
            let home = c.tenant();
            let before = w.principal(home, &id).await;
            let elsewhere = w.principal(other_than(home), &id).await;
            let mut dir = w.directory(c).await;
            // Oneself as one is (a demotion would change the caller); others as readers.
            let (role, assignment) = if t == Target::Own {
                c.role()
            } else {
                (Role::Reader, Assignment::Active)
            };
            let r: Result<Option<proto::Principal>, Status> = match rpc {
                Rpc::PutPrincipal => dir
                    .put_principal(proto::PutPrincipalRequest {
                        principal: Some(proto::Principal {
                            tenant,
                            id: id.clone(),
                            role: role as i32,
                            assignment: assignment as i32,
                            ..Default::default()
                        }),
                    })
                    .await
                    .map(|p| Some(p.into_inner())),
                Rpc::GetPrincipal => dir
                    .get_principal(proto::GetPrincipalRequest { id: id.clone() })
                    .await
                    .map(|p| Some(p.into_inner())),
                Rpc::DeletePrincipal => dir
                    .delete_principal(proto::DeletePrincipalRequest { id: id.clone() })
                    .await
                    .map(|_| None),
                Rpc::ActivateRole => dir
                    .activate_role(proto::ActivateRoleRequest {
                        id: id.clone(),
                        duration: Some(prost_types::Duration {
                            seconds: 3600,
                            nanos: 0,
                        }),
                        justification: "matrix".into(),
                    })
                    .await
                    .map(|p| Some(p.into_inner())),
                _ => dir
                    .deactivate_role(proto::DeactivateRoleRequest { id: id.clone() })
                    .await
                    .map(|p| Some(p.into_inner())),
            };
            let after = w.principal(home, &id).await;
            effect(
                rpc,
                c,
                t,
                r.is_ok(),
                w.principal(other_than(home), &id).await == elsewhere,
                "the other tenant's principal of that id changed",
            );
            match &r {
                Err(_) => effect(rpc, c, t, false, after == before, "the principal changed"),
                Ok(answer) => {
                    let held = match rpc {
                        Rpc::PutPrincipal => after.as_ref().is_some_and(|p| {
                            p.tenant == home
                                && p.role == role as i32
                                && p.assignment == assignment as i32
                        }),
                        Rpc::GetPrincipal => {
                            answer == &after && after.as_ref().is_some_and(|p| p.tenant == home)
                        }
                        Rpc::DeletePrincipal => before.is_some() && after.is_none(),
                        Rpc::ActivateRole => after
                            .as_ref()
                            .is_some_and(|p| p.activation_end_time.is_some()),
                        _ => after
                            .as_ref()
                            .is_some_and(|p| p.activation_end_time.is_none()),
                    };
                    effect(
                        rpc,
                        c,
                        t,
                        true,
                        held,
                        "the principal named in the caller's tenant is not as asked",
                    );
                }
            }
            code(&r)
        }
        Rpc::ListPrincipals => {
            let r = w
                .directory(c)
                .await
                .list_principals(proto::ListPrincipalsRequest::default())
                .await;
            match r {
                Ok(page) => {
                    let tenant = if c == Caller::OtherTenantAdmin {
                        OTHER_TENANT
                    } else {
                        TENANT
                    };
                    if page.get_ref().principals.iter().any(|p| p.tenant != tenant) {
                        "OK, LEAKING".into()
                    } else {
                        "OK (own tenant)".into()
                    }
                }
                Err(e) => code_name(e.code()).into(),
            }
        }
        Rpc::GetTenant => match w
            .directory(c)
            .await
            .get_tenant(proto::GetTenantRequest {})
            .await
        {
            Ok(t) => format!("OK ({})", t.get_ref().id),
            Err(e) => code_name(e.code()).into(),
        },
        Rpc::UpdateTenant => {
            let before = w.tenant_names().await;
            let r = w
                .directory(c)
                .await
                .update_tenant(proto::UpdateTenantRequest {
                    tenant: Some(proto::Tenant {
                        display_name: "Renamed".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["display_name".into()],
                    }),
                })
                .await;
            let after = w.tenant_names().await;
            match &r {
                Ok(_) => {
                    let mine = usize::from(c.tenant() != TENANT);
                    effect(
                        rpc,
                        c,
                        t,
                        true,
                        after[mine] == "Renamed" && after[1 - mine] == before[1 - mine],
                        "not exactly the caller's tenant was renamed",
                    );
                    // Put back, so that the next cell's rename shows.
                    let admin = if mine == 0 { &w.root } else { &w.keeper };
                    w.app
                        .directory(admin)
                        .await
                        .update_tenant(proto::UpdateTenantRequest {
                            tenant: Some(proto::Tenant {
                                display_name: before[mine].clone(),
                                ..Default::default()
                            }),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["display_name".into()],
                            }),
                        })
                        .await
                        .unwrap();
                }
                Err(_) => effect(rpc, c, t, false, after == before, "a tenant changed"),
            }
            match r {
                Ok(t) => format!("OK ({})", t.get_ref().id),
                Err(e) => code_name(e.code()).into(),
            }
        }
        Rpc::ListAuditEvents => {
            match w
                .directory(c)
                .await
                .list_audit_events(proto::ListAuditEventsRequest::default())
                .await
            {
                Ok(page) => {
                    let tenant = if c == Caller::OtherTenantAdmin {
                        OTHER_TENANT
                    } else {
                        TENANT
                    };
                    if page.get_ref().events.iter().any(|e| e.tenant != tenant) {
                        "OK, LEAKING".into()
                    } else {
                        "OK (own tenant)".into()
                    }
                }
                Err(e) => code_name(e.code()).into(),
            }
        }
        Rpc::WatchAuditEvents => {
            let opened = w
                .directory(c)
                .await
                .watch_audit_events(proto::WatchAuditEventsRequest { after_sequence: 0 })
                .await;
            match opened {
                Ok(stream) => {
                    // The tenant's trail is never empty (its creation is its first event).
                    let first = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        stream.into_inner().message(),
                    )
                    .await
                    .expect("a first event within 10 s");
                    match first {
                        Ok(Some(e)) => {
                            let tenant = if c == Caller::OtherTenantAdmin {
                                OTHER_TENANT
                            } else {
                                TENANT
                            };
                            if e.tenant != tenant {
                                "OK, LEAKING".into()
                            } else {
                                "OK (own tenant)".into()
                            }
                        }
                        Ok(None) => "OK, EMPTY".into(),
                        Err(e) => code_name(e.code()).into(),
                    }
                }
                Err(e) => code_name(e.code()).into(),
            }
        }
    }
}

/// The markdown of one RPC's table.
fn render(rpc: Rpc, rows: &[(Caller, Vec<String>)]) -> String {
    let mut s = format!("### `{}`\n\n", rpc.name());
    match rpc.target_is() {
        Some(what) => {
            s.push_str(&format!("Target: {what}.\n\n| caller | "));
            s.push_str(&TARGETS.map(Target::name).join(" | "));
            s.push_str(" |\n| --- |");
            s.push_str(&" --- |".repeat(TARGETS.len()));
        }
        None => s.push_str("| caller | result |\n| --- | --- |"),
    }
    s.push('\n');
    for (c, cells) in rows {
        s.push_str(&format!("| {} | {} |\n", c.name(), cells.join(" | ")));
    }
    s
}

/// One RPC's table: every caller × every target, each cell in the world as `repair` leaves it.
async fn table(rpc: Rpc) -> String {
    let world = World::new().await;
    let mut rows = Vec::new();
    let mut n = 0;
    for c in CALLERS {
        let mut cells = Vec::new();
        let targets: &[Target] = if rpc.target_is().is_some() {
            &TARGETS
        } else {
            &[Target::Own]
        };
        for &t in targets {
            n += 1;
            cells.push(cell(&world, rpc, c, t, n).await);
            world.repair().await;
        }
        rows.push((c, cells));
    }
    render(rpc, &rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_caller_and_target_answers_as_security_md_says() {
    // Each RPC's table in a world of its own (server, database, tenants), all at once: the
    // cells are round trips and commits, which overlap well.
    let tables = futures_util::future::join_all(RPCS.map(table)).await;
    let observed = tables.join("\n");
    assert!(
        !observed.contains("LEAKING"),
        "a listing shows what it must not:\n{observed}"
    );
    let security =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SECURITY.md")).unwrap();
    let start = "<!-- matrix: begin -->\n";
    let end = "<!-- matrix: end -->";
    let documented = security
        .split_once(start)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(m, _)| m.trim().to_owned())
        .unwrap_or_default();
    if documented != observed.trim() {
        let out = concat!(env!("CARGO_MANIFEST_DIR"), "/target/security-matrix.md");
        let _ = std::fs::write(out, &observed);
        panic!(
            "SECURITY.md's matrix is not what jeton does (the observed matrix is in {out}):\n{observed}"
        );
    }
}
