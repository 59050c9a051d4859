//! `jeton.v1.DirectoryService`.

use super::convert;
use super::page::{self, Cursor};
use super::proto::{self, directory_service_server::DirectoryService};
use super::status;
use crate::auth;
use crate::domain::{Principal, PrincipalId, TenantId};
use crate::engine::{Engine, Error, TenantUpdate};
use tonic::{Request, Response, Status};

#[derive(Debug, Clone)]
pub struct DirectoryApi {
    engine: Engine,
}

impl DirectoryApi {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    fn answer(&self, p: &Principal) -> Response<proto::Principal> {
        Response::new(convert::principal_to(p, self.engine.now()))
    }
}

const DISPLAY_NAME_MAX: usize = 256;

#[tonic::async_trait]
impl DirectoryService for DirectoryApi {
    async fn put_principal(
        &self,
        req: Request<proto::PutPrincipalRequest>,
    ) -> Result<Response<proto::Principal>, Status> {
        let actor = auth::caller(&self.engine, &req).await.map_err(status)?;
        let p = req
            .into_inner()
            .principal
            .ok_or_else(|| status(Error::invalid("principal", "is required")))?;
        let principal = (|| -> Result<Principal, Error> {
            let tenant = match p.tenant.as_str() {
                "" => actor.tenant.clone(),
                t => convert::field("principal.tenant", TenantId::parse(t))?,
            };
            let id = convert::principal_id("principal.id", &p.id)?;
            let display_name = match p.display_name.as_str() {
                "" => id.as_str().to_owned(),
                d if d.chars().count() > DISPLAY_NAME_MAX || d.chars().any(char::is_control) => {
                    return Err(Error::invalid(
                        "principal.display_name",
                        "must be at most 256 characters, without control characters",
                    ));
                }
                d => d.to_owned(),
            };
            Ok(Principal {
                tenant,
                id,
                display_name,
                role: convert::role("principal.role", p.role)?,
                assignment: convert::assignment("principal.assignment", p.assignment)?,
                activation_end: None,
            })
        })()
        .map_err(status)?;
        let stored = self
            .engine
            .put_principal(&actor, principal)
            .await
            .map_err(status)?;
        Ok(self.answer(&stored))
    }

    async fn get_principal(
        &self,
        req: Request<proto::GetPrincipalRequest>,
    ) -> Result<Response<proto::Principal>, Status> {
        let actor = auth::caller(&self.engine, &req).await.map_err(status)?;
        let id = convert::principal_id("id", &req.get_ref().id).map_err(status)?;
        let p = self
            .engine
            .get_principal(&actor, &id)
            .await
            .map_err(status)?;
        Ok(self.answer(&p))
    }

    async fn list_principals(
        &self,
        req: Request<proto::ListPrincipalsRequest>,
    ) -> Result<Response<proto::ListPrincipalsResponse>, Status> {
        let actor = auth::caller(&self.engine, &req).await.map_err(status)?;
        let r = req.into_inner();
        let filters = format!("principals|{}", actor.tenant);
        let limit = page::page_size(r.page_size).map_err(status)?;
        let after = page::decode(&filters, &r.page_token)
            .and_then(|c| {
                c.map(|c| {
                    PrincipalId::parse(&c.key).map_err(|_| {
                        Error::invalid("page_token", "not a page token of this listing")
                    })
                })
                .transpose()
            })
            .map_err(status)?;
        let (ps, more) = self
            .engine
            .list_principals(&actor, after.as_ref(), limit)
            .await
            .map_err(status)?;
        let now = self.engine.now();
        let next_page_token = match ps.last() {
            Some(last) if more => page::encode(
                &filters,
                &Cursor {
                    created_micros: 0,
                    key: last.id.as_str().to_owned(),
                },
            ),
            _ => String::new(),
        };
        Ok(Response::new(proto::ListPrincipalsResponse {
            principals: ps.iter().map(|p| convert::principal_to(p, now)).collect(),
            next_page_token,
        }))
    }

    async fn delete_principal(
        &self,
        req: Request<proto::DeletePrincipalRequest>,
    ) -> Result<Response<proto::DeletePrincipalResponse>, Status> {
        let actor = auth::caller(&self.engine, &req).await.map_err(status)?;
        let id = convert::principal_id("id", &req.get_ref().id).map_err(status)?;
        self.engine
            .delete_principal(&actor, &id)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::DeletePrincipalResponse {}))
    }

    async fn activate_role(
        &self,
        req: Request<proto::ActivateRoleRequest>,
    ) -> Result<Response<proto::Principal>, Status> {
        let actor = auth::caller(&self.engine, &req).await.map_err(status)?;
        let r = req.into_inner();
        let id = convert::principal_id("id", &r.id).map_err(status)?;
        let duration = r
            .duration
            .as_ref()
            .ok_or_else(|| Error::invalid("duration", "is required"))
            .and_then(|d| convert::duration("duration", d))
            .map_err(status)?;
        let p = self
            .engine
            .activate_role(&actor, &id, duration, &r.justification)
            .await
            .map_err(status)?;
        Ok(self.answer(&p))
    }

    async fn deactivate_role(
        &self,
        req: Request<proto::DeactivateRoleRequest>,
    ) -> Result<Response<proto::Principal>, Status> {
        let actor = auth::caller(&self.engine, &req).await.map_err(status)?;
        let id = convert::principal_id("id", &req.get_ref().id).map_err(status)?;
        let p = self
            .engine
            .deactivate_role(&actor, &id)
            .await
            .map_err(status)?;
        Ok(self.answer(&p))
    }

    async fn get_tenant(
        &self,
        req: Request<proto::GetTenantRequest>,
    ) -> Result<Response<proto::Tenant>, Status> {
        let actor = auth::caller(&self.engine, &req).await.map_err(status)?;
        let t = self.engine.tenant(&actor).await.map_err(status)?;
        Ok(Response::new(convert::tenant_to(&t)))
    }

    async fn update_tenant(
        &self,
        req: Request<proto::UpdateTenantRequest>,
    ) -> Result<Response<proto::Tenant>, Status> {
        let actor = auth::caller(&self.engine, &req).await.map_err(status)?;
        let r = req.into_inner();
        let update = (|| -> Result<TenantUpdate, Error> {
            let t = r
                .tenant
                .ok_or_else(|| Error::invalid("tenant", "is required"))?;
            let paths: Vec<String> = match r.update_mask {
                Some(m) if !m.paths.is_empty() => m.paths,
                _ => vec![
                    "display_name".into(),
                    "api_url".into(),
                    "max_token_lifetime".into(),
                ],
            };
            let mut update = TenantUpdate::default();
            for path in paths {
                match path.as_str() {
                    "display_name" => {
                        if t.display_name.trim().is_empty()
                            || t.display_name.chars().count() > DISPLAY_NAME_MAX
                            || t.display_name.chars().any(char::is_control)
                        {
                            return Err(Error::invalid(
                                "tenant.display_name",
                                "must be 1 to 256 characters, without control characters",
                            ));
                        }
                        update.display_name = Some(t.display_name.clone());
                    }
                    "api_url" => {
                        let ok = (t.api_url.starts_with("https://")
                            || t.api_url.starts_with("http://"))
                            && t.api_url.len() <= 2048
                            && !t
                                .api_url
                                .chars()
                                .any(|c| c.is_control() || c.is_whitespace());
                        if !ok {
                            return Err(Error::invalid("tenant.api_url", "must be an http(s) URL"));
                        }
                        update.api_url = Some(t.api_url.clone());
                    }
                    "max_token_lifetime" => {
                        let max = match &t.max_token_lifetime {
                            None => None,
                            Some(d) => {
                                let d = convert::duration("tenant.max_token_lifetime", d)?;
                                if d < chrono::TimeDelta::zero() {
                                    return Err(Error::invalid(
                                        "tenant.max_token_lifetime",
                                        "must not be negative",
                                    ));
                                }
                                (d > chrono::TimeDelta::zero()).then_some(d)
                            }
                        };
                        update.max_token_lifetime = Some(max);
                    }
                    other => {
                        return Err(Error::invalid(
                            "update_mask",
                            format!("unknown or immutable field {other:?}"),
                        ));
                    }
                }
            }
            Ok(update)
        })()
        .map_err(status)?;
        let t = self
            .engine
            .update_tenant(&actor, update)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::tenant_to(&t)))
    }

    async fn list_audit_events(
        &self,
        req: Request<proto::ListAuditEventsRequest>,
    ) -> Result<Response<proto::ListAuditEventsResponse>, Status> {
        let actor = auth::caller(&self.engine, &req).await.map_err(status)?;
        let r = req.into_inner();
        let filters = format!("audit|{}|{}", actor.tenant, r.target);
        let limit = page::page_size(r.page_size).map_err(status)?;
        if r.target.chars().count() > 256 || r.target.chars().any(char::is_control) {
            return Err(status(Error::invalid(
                "target",
                "must be at most 256 characters, without control characters",
            )));
        }
        let before = page::decode(&filters, &r.page_token)
            .map_err(status)?
            .map(|c| c.created_micros);
        let target = (!r.target.is_empty()).then_some(r.target.as_str());
        let (events, more) = self
            .engine
            .audit_events(&actor, target, before, limit)
            .await
            .map_err(status)?;
        let next_page_token = match events.last() {
            Some(last) if more => page::encode(
                &filters,
                &Cursor {
                    created_micros: last.seq,
                    key: String::new(),
                },
            ),
            _ => String::new(),
        };
        Ok(Response::new(proto::ListAuditEventsResponse {
            events: events.iter().map(convert::audit_to).collect(),
            next_page_token,
        }))
    }
}
