//! `jeton.v1.TokenService`: who is calling → parse → one use case → render.

use super::parse::{self, Listing};
use super::proto::{self, token_service_server::TokenService};
use super::{auth, render};
use crate::usecase::{Access, GenerateInput, Tokens, ValidateInput};
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub(crate) struct TokenApi {
    pub(super) tokens: Tokens,
    pub(super) access: Access,
}

#[tonic::async_trait]
impl TokenService for TokenApi {
    async fn generate(
        &self,
        req: Request<proto::GenerateRequest>,
    ) -> Result<Response<proto::GenerateResponse>, Status> {
        let actor = auth::caller(&self.access, &req).await?;
        let input = GenerateInput::try_from(req.into_inner())?;
        let generated = self.tokens.generate(&actor, input).await?;
        Ok(Response::new(generated.into()))
    }

    async fn list(
        &self,
        req: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        let actor = auth::caller(&self.access, &req).await?;
        let Listing { input, pager } = Listing::try_from((req.into_inner(), &actor))?;
        let page = self.tokens.list(&actor, input).await?;
        Ok(Response::new(render::token_page(page, &pager)))
    }

    async fn revoke(
        &self,
        req: Request<proto::RevokeRequest>,
    ) -> Result<Response<proto::RevokeResponse>, Status> {
        let actor = auth::caller(&self.access, &req).await?;
        let id = parse::token_id("id", &req.get_ref().id)?;
        self.tokens.revoke(&actor, &id).await?;
        Ok(Response::new(proto::RevokeResponse {}))
    }

    async fn validate(
        &self,
        req: Request<proto::ValidateRequest>,
    ) -> Result<Response<proto::ValidateResponse>, Status> {
        let input = ValidateInput::try_from(req.into_inner())?;
        let verdict = self.access.validate(&input).await?;
        Ok(Response::new(verdict.into()))
    }
}
