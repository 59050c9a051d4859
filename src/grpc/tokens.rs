//! `jeton.v1.TokenService`: who is calling → parse → one use case → render.

use super::parse::{self, Listing};
use super::proto::{self, token_service_server::TokenService};
use super::{auth, render};
use crate::usecase::{Access, GenerateInput, LeakReport, Tokens, ValidateInput};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Most strings in one `RevokeLeaked`.
pub(crate) const MAX_LEAKED: usize = 1000;
/// Strings one client address may send to `RevokeLeaked` per minute (one full call).
/// Built without a fallible step: 1 + (MAX_LEAKED - 1), computed at compile time (a zero
/// MAX_LEAKED would be an overflow there, failing the build).
const LEAKED_PER_MINUTE: NonZeroU32 = NonZeroU32::MIN.saturating_add(MAX_LEAKED as u32 - 1);
/// Addresses remembered by the limiter before idle ones are forgotten.
const LIMITER_ADDRESSES: usize = 10_000;

#[derive(Clone)]
pub(crate) struct TokenApi {
    pub(super) tokens: Tokens,
    pub(super) access: Access,
    /// `RevokeLeaked`'s budget per client address (an IPv6 client by its /64).
    pub(super) leaked: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// How long one string of a `RevokeLeaked` may take (`--db-connect-timeout`): the call
    /// as a whole is bounded by its work, not by one database timeout.
    pub(super) step_deadline: Duration,
}

impl TokenApi {
    pub(super) fn new(tokens: Tokens, access: Access, step_deadline: Duration) -> Self {
        Self {
            tokens,
            access,
            leaked: Arc::new(RateLimiter::keyed(Quota::per_minute(LEAKED_PER_MINUTE))),
            step_deadline,
        }
    }
}

/// The key of a client address: IPv4 as is, IPv6 by its /64 (one host's usual share).
fn client_key(addr: Option<IpAddr>) -> IpAddr {
    match addr.map(|a| a.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        Some(v4) => v4,
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
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

    /// Each string is checked in turn, within its own deadline and charged to the client's
    /// budget as it is processed; a call that stops early (budget spent, Argon2 queue full,
    /// database away) says how many strings it processed — always the first ones — so the
    /// caller sends the rest again, and nothing about which strings were tokens.
    async fn revoke_leaked(
        &self,
        req: Request<proto::RevokeLeakedRequest>,
    ) -> Result<Response<proto::RevokeLeakedResponse>, Status> {
        let peer = req.remote_addr().map(|a| a.ip().to_canonical());
        let tokens = req.into_inner().tokens;
        if tokens.len() > MAX_LEAKED {
            return Err(Status::invalid_argument(format!(
                "tokens: at most {MAX_LEAKED} per call, got {}",
                tokens.len()
            )));
        }
        if self.leaked.len() > LIMITER_ADDRESSES {
            self.leaked.retain_recent();
        }
        let key = client_key(peer);
        let report = LeakReport::Holder { peer };
        let stopped = |done: usize, status: Status| {
            let rest = if done == 0 {
                "nothing was processed".to_owned()
            } else {
                format!(
                    "the first {done} of {} strings were processed: send the others again",
                    tokens.len()
                )
            };
            Status::new(status.code(), format!("{}; {rest}", status.message()))
        };
        for (done, s) in tokens.iter().enumerate() {
            if self.leaked.check_key(&key).is_err() {
                return Err(stopped(
                    done,
                    Status::resource_exhausted(format!(
                        "at most {MAX_LEAKED} strings per minute from one address"
                    )),
                ));
            }
            let one = self.access.revoke_leaked(std::slice::from_ref(s), &report);
            match tokio::time::timeout(self.step_deadline, one).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(stopped(done, e.into())),
                Err(_) => {
                    return Err(stopped(
                        done,
                        Status::unavailable(format!(
                            "the database did not answer within {}",
                            humantime::format_duration(self.step_deadline)
                        )),
                    ));
                }
            }
        }
        // The answer is the same whatever the strings were: no oracle.
        Ok(Response::new(proto::RevokeLeakedResponse {}))
    }
}
