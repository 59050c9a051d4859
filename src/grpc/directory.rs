//! `jeton.v1.DirectoryService`: who is calling → parse → one use case → render.

use super::parse::{self, Listing};
use super::proto::{self, directory_service_server::DirectoryService};
use super::{auth, render};
use crate::usecase::{Access, ActivateInput, Directory, PrincipalInput, TenantUpdate, Tenants};
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub(crate) struct DirectoryApi {
    pub(super) directory: Directory,
    pub(super) tenants: Tenants,
    pub(super) access: Access,
}

#[tonic::async_trait]
impl DirectoryService for DirectoryApi {
    async fn put_principal(
        &self,
        req: Request<proto::PutPrincipalRequest>,
    ) -> Result<Response<proto::Principal>, Status> {
        let actor = auth::caller(&self.access, &req).await?;
        let input = PrincipalInput::try_from(req.into_inner())?;
        let p = self.directory.put_principal(&actor, input).await?;
        Ok(Response::new((&p).into()))
    }

    async fn get_principal(
        &self,
        req: Request<proto::GetPrincipalRequest>,
    ) -> Result<Response<proto::Principal>, Status> {
        let actor = auth::caller(&self.access, &req).await?;
        let id = parse::principal_id("id", &req.get_ref().id)?;
        let p = self.directory.get_principal(&actor, &id).await?;
        Ok(Response::new((&p).into()))
    }

    async fn list_principals(
        &self,
        req: Request<proto::ListPrincipalsRequest>,
    ) -> Result<Response<proto::ListPrincipalsResponse>, Status> {
        let actor = auth::caller(&self.access, &req).await?;
        let Listing { input, pager } = Listing::try_from((req.into_inner(), &actor))?;
        let page = self.directory.list_principals(&actor, &input).await?;
        Ok(Response::new(render::principal_page(page, &pager)))
    }

    async fn delete_principal(
        &self,
        req: Request<proto::DeletePrincipalRequest>,
    ) -> Result<Response<proto::DeletePrincipalResponse>, Status> {
        let actor = auth::caller(&self.access, &req).await?;
        let id = parse::principal_id("id", &req.get_ref().id)?;
        self.directory.delete_principal(&actor, &id).await?;
        Ok(Response::new(proto::DeletePrincipalResponse {}))
    }

    async fn activate_role(
        &self,
        req: Request<proto::ActivateRoleRequest>,
    ) -> Result<Response<proto::Principal>, Status> {
        let actor = auth::caller(&self.access, &req).await?;
        let input = ActivateInput::try_from(req.into_inner())?;
        let p = self.directory.activate_role(&actor, input).await?;
        Ok(Response::new((&p).into()))
    }

    async fn deactivate_role(
        &self,
        req: Request<proto::DeactivateRoleRequest>,
    ) -> Result<Response<proto::Principal>, Status> {
        let actor = auth::caller(&self.access, &req).await?;
        let id = parse::principal_id("id", &req.get_ref().id)?;
        let p = self.directory.deactivate_role(&actor, &id).await?;
        Ok(Response::new((&p).into()))
    }

    async fn get_tenant(
        &self,
        req: Request<proto::GetTenantRequest>,
    ) -> Result<Response<proto::Tenant>, Status> {
        let actor = auth::caller(&self.access, &req).await?;
        let t = self.tenants.get(&actor).await?;
        Ok(Response::new((&t).into()))
    }

    async fn update_tenant(
        &self,
        req: Request<proto::UpdateTenantRequest>,
    ) -> Result<Response<proto::Tenant>, Status> {
        let actor = auth::caller(&self.access, &req).await?;
        let update = TenantUpdate::try_from(req.into_inner())?;
        let t = self.tenants.update(&actor, update).await?;
        Ok(Response::new((&t).into()))
    }

    async fn list_audit_events(
        &self,
        req: Request<proto::ListAuditEventsRequest>,
    ) -> Result<Response<proto::ListAuditEventsResponse>, Status> {
        let actor = auth::caller(&self.access, &req).await?;
        let Listing { input, pager } = Listing::try_from((req.into_inner(), &actor))?;
        let page = self.tenants.audit_events(&actor, &input).await?;
        Ok(Response::new(render::audit_page(page, &pager)))
    }
}
