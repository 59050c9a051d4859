//! `jeton.v1.DirectoryService`: who is calling → parse → one use case → render.

use super::parse::{self, Listing};
use super::proto::{self, directory_service_server::DirectoryService};
use super::{auth, render};
use crate::readiness::State;
use crate::usecase::{
    Access, ActivateInput, AuditWatch, Directory, PrincipalInput, TenantUpdate, Tenants,
};
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub(crate) struct DirectoryApi {
    pub(super) directory: Directory,
    pub(super) tenants: Tenants,
    pub(super) access: Access,
    /// The server's state: streams end when it shuts down.
    pub(super) state: watch::Receiver<State>,
}

/// Events buffered per audit stream between the database and a slow client.
const STREAM_BUFFER: usize = 16;
/// How often a stream resolves its caller's credential again (a revoked token or a lost
/// admin role ends it).
const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a stream rides out a database that is away before it ends with `UNAVAILABLE`.
const DATABASE_PATIENCE: Duration = Duration::from_secs(10);

type AuditStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<proto::AuditEvent, Status>> + Send>>;

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

    type WatchAuditEventsStream = AuditStream;

    async fn watch_audit_events(
        &self,
        req: Request<proto::WatchAuditEventsRequest>,
    ) -> Result<Response<AuditStream>, Status> {
        let credential = auth::credential(&req)?;
        let actor = credential.actor(&self.access).await?;
        let after = parse::after_sequence(req.get_ref().after_sequence)?;
        let watch = self.tenants.watch_audit_events(&actor, after)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let stream = Stream {
            sent: watch.position(),
            watch,
            credential,
            access: self.access.clone(),
            state: self.state.clone(),
            tx,
        };
        tokio::spawn(stream.pump());
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// One `WatchAuditEvents` stream: reads the trail in order and sends it on, until the client
/// goes, the server shuts down, the caller may no longer watch, or the database stays away.
struct Stream {
    watch: AuditWatch,
    /// The sequence of the last event handed to the client's buffer.
    sent: i64,
    credential: auth::Credential,
    access: Access,
    state: watch::Receiver<State>,
    tx: mpsc::Sender<Result<proto::AuditEvent, Status>>,
}

impl Stream {
    async fn pump(mut self) {
        let end = self.run().await;
        if let Err(status) = end {
            // Every ending says where to resume.
            let status = if status.message().contains("resume with after_sequence=") {
                status
            } else {
                Status::new(
                    status.code(),
                    format!(
                        "{}; resume with after_sequence={}",
                        status.message(),
                        self.sent
                    ),
                )
            };
            let _ = self.tx.send(Err(status)).await;
        }
    }

    /// Runs until the stream ends: `Ok` when the client went, else the status to end with.
    async fn run(&mut self) -> Result<(), Status> {
        let mut checked = Instant::now();
        let mut away_since: Option<Instant> = None;
        loop {
            if *self.state.borrow() == State::ShuttingDown {
                return Err(self.ended("the server is shutting down"));
            }
            if checked.elapsed() >= RECHECK_EVERY {
                checked = Instant::now();
                match self.credential.actor(&self.access).await {
                    Ok(actor) => self.watch.still_allowed(&actor)?,
                    // The database away: checked again at the next round, within patience.
                    Err(crate::usecase::Error::Unavailable(e)) => {
                        patience(&mut away_since, e)?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let events = match self.watch.next().await {
                Ok(events) => {
                    away_since = None;
                    events
                }
                Err(crate::usecase::Error::Unavailable(e)) => {
                    patience(&mut away_since, e)?;
                    Vec::new()
                }
                Err(e) => return Err(e.into()),
            };
            let idle = events.is_empty();
            for e in &events {
                let shutting_down = tokio::select! {
                    sent = self.tx.send(Ok(e.into())) => {
                        if sent.is_err() {
                            return Ok(());
                        }
                        self.sent = e.sequence;
                        false
                    }
                    _ = self.state.wait_for(|s| *s == State::ShuttingDown) => true,
                };
                if shutting_down {
                    return Err(self.ended("the server is shutting down"));
                }
            }
            if idle {
                tokio::select! {
                    () = self.watch.more() => {}
                    () = self.tx.closed() => return Ok(()),
                    _ = self.state.wait_for(|s| *s == State::ShuttingDown) => {}
                }
            }
        }
    }

    /// The status a stream ends with (the position to resume from is added by `pump`).
    fn ended(&self, why: &str) -> Status {
        Status::unavailable(format!("{why}; resume with after_sequence={}", self.sent))
    }
}

/// Rides out a database that is away for [`DATABASE_PATIENCE`] from when it was first found
/// away (`since`), then ends the stream.
fn patience(since: &mut Option<Instant>, e: crate::store::StoreError) -> Result<(), Status> {
    let first = *since.get_or_insert_with(Instant::now);
    if first.elapsed() > DATABASE_PATIENCE {
        return Err(crate::usecase::Error::Unavailable(e).into());
    }
    Ok(())
}
