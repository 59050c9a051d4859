//! Who is calling: turns request metadata and the connection's client certificate into an
//! [`Actor`]. Never logs a credential.
//!
//! - `authorization: Bearer <token>` (or the scheme `Token`) with an `API` token: the
//!   token's owner, with the token's scopes narrowed to the owner's role now.
//! - `x-jeton-principal: <tenant>/<principal id>` on a connection that presented a client
//!   certificate signed by the configured client CA (the TLS layer has verified it): that
//!   principal with its stored role. On any other connection the header is ignored, and a
//!   warning is logged.

use crate::domain::{Actor, BadCredential, PrincipalId, TenantId, TokenString, bearer};
use crate::usecase::{Access, Error};
use tonic::Request;

const PRINCIPAL_HEADER: &str = "x-jeton-principal";

pub(super) async fn caller<T>(access: &Access, req: &Request<T>) -> Result<Actor, Error> {
    credential(req)?.actor(access).await
}

/// What a call presented to say who it is, kept to resolve again later (a stream checks
/// that its caller may still follow it). `Debug` never shows the token's secret.
#[derive(Debug, Clone)]
pub(super) enum Credential {
    /// A bearer API token, from the connection's address.
    Bearer(TokenString, Option<std::net::IpAddr>),
    /// A trusted frontend acting for a principal.
    Frontend(TenantId, PrincipalId),
}

impl Credential {
    /// Who the credential stands for now.
    pub(super) async fn actor(&self, access: &Access) -> Result<Actor, Error> {
        match self {
            Credential::Bearer(token, peer) => access.authenticate(token, *peer).await,
            Credential::Frontend(tenant, principal) => access.act_for(tenant, principal).await,
        }
    }
}

/// The credential a call presented.
pub(super) fn credential<T>(req: &Request<T>) -> Result<Credential, Error> {
    let meta = req.metadata();
    if let Some(on_behalf) = meta.get(PRINCIPAL_HEADER) {
        let from_frontend = req.peer_certs().is_some_and(|certs| !certs.is_empty());
        if from_frontend {
            let value = on_behalf
                .to_str()
                .map_err(|_| Error::Unauthenticated("malformed x-jeton-principal"))?;
            let (tenant, principal) = value.split_once('/').ok_or(Error::Unauthenticated(
                "x-jeton-principal must be <tenant>/<principal id>",
            ))?;
            let tenant = TenantId::parse(tenant)
                .map_err(|_| Error::Unauthenticated("malformed tenant in x-jeton-principal"))?;
            let principal = PrincipalId::parse(principal)
                .map_err(|_| Error::Unauthenticated("malformed principal in x-jeton-principal"))?;
            return Ok(Credential::Frontend(tenant, principal));
        }
        tracing::warn!(
            remote = ?req.remote_addr(),
            "x-jeton-principal ignored: the connection presented no trusted client certificate"
        );
    }
    let header = meta.get("authorization").ok_or(Error::Unauthenticated(
        "missing credential: send authorization: Bearer <token>",
    ))?;
    let header = header
        .to_str()
        .map_err(|_| Error::Unauthenticated("malformed authorization header"))?;
    let token = match bearer(header) {
        Ok(token) => token,
        Err(BadCredential::Malformed) => {
            return Err(Error::Unauthenticated("malformed authorization header"));
        }
        Err(BadCredential::Scheme) => {
            return Err(Error::Unauthenticated(
                "authorization scheme must be Bearer or Token",
            ));
        }
    };
    let token = TokenString::parse(token).ok_or(Error::Unauthenticated("invalid bearer token"))?;
    Ok(Credential::Bearer(
        token,
        req.remote_addr().map(|a| a.ip().to_canonical()),
    ))
}
