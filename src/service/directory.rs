//! `jeton.v1.DirectoryService`.

use super::convert;
use super::page::{self, Cursor};
use super::proto::{self, directory_service_server::DirectoryService};
use super::status;
use crate::auth;
use crate::domain::{Principal, PrincipalId, TenantId};
use crate::engine::{Engine, Error};
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
}
