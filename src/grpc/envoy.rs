//! `envoy.service.auth.v3.Authorization/Check`: Envoy's external authorization, on the gRPC
//! port. The route's context extensions choose the namespace (`jeton.namespace`, default
//! `api`) and the scopes it needs (`jeton.required_scopes`, comma-separated); the token comes
//! from the `authorization` header (`Bearer` or `Token`); the answer is the front door's
//! [`Verdict`]. A route whose extensions name no known namespace or scope is refused with
//! `INVALID_ARGUMENT`, which Envoy turns into a denial (fail closed).

use crate::gate::{self, Verdict};
use crate::usecase::Access;
use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};

pub(crate) const NAMESPACE_KEY: &str = "jeton.namespace";
pub(crate) const SCOPES_KEY: &str = "jeton.required_scopes";

#[derive(Clone)]
pub(crate) struct EnvoyAuthz {
    pub(super) access: Access,
}

fn header(name: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            value,
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// gRPC codes of the `status` Envoy reads first.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

fn respond(verdict: Verdict, client_headers: Vec<String>) -> CheckResponse {
    match verdict {
        Verdict::Allow { headers } => CheckResponse {
            status: Some(rpc::Status {
                code: OK,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: headers.into_iter().map(|(k, v)| header(k, v)).collect(),
                // The credential, and every x-jeton-* header the client sent that jeton does
                // not set itself, never reach the upstream.
                headers_to_remove: client_headers,
                ..Default::default()
            })),
            ..Default::default()
        },
        Verdict::Deny {
            status,
            www_authenticate,
            body,
        } => CheckResponse {
            status: Some(rpc::Status {
                code: if status == 403 {
                    PERMISSION_DENIED
                } else {
                    UNAUTHENTICATED
                },
                ..Default::default()
            }),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: i32::from(status),
                }),
                headers: vec![
                    header("www-authenticate", www_authenticate),
                    header("content-type", "application/json".into()),
                ],
                body,
            })),
            ..Default::default()
        },
    }
}

#[tonic::async_trait]
impl Authorization for EnvoyAuthz {
    async fn check(&self, req: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let attributes = req.into_inner().attributes.unwrap_or_default();
        // The downstream client as Envoy saw it (Envoy resolves X-Forwarded-For itself, as
        // its own configuration says).
        let client = attributes
            .source
            .as_ref()
            .and_then(|s| s.address.as_ref())
            .and_then(|a| match &a.address {
                Some(
                    envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s),
                ) => s.address.parse::<std::net::IpAddr>().ok(),
                _ => None,
            })
            .map(|a| a.to_canonical());
        let extensions = &attributes.context_extensions;
        let extension = |key| extensions.get(key).map_or("", String::as_str);
        let namespace = gate::namespace(extension(NAMESPACE_KEY)).ok_or_else(|| {
            Status::invalid_argument(format!(
                "{NAMESPACE_KEY}: expected api, log_collector or siem"
            ))
        })?;
        let required = gate::scopes(extension(SCOPES_KEY)).ok_or_else(|| {
            Status::invalid_argument(format!("{SCOPES_KEY}: expected read, write, admin"))
        })?;
        let headers = attributes
            .request
            .and_then(|r| r.http)
            .map(|h| h.headers)
            .unwrap_or_default();
        let mut remove = vec!["authorization".to_owned()];
        remove.extend(
            headers
                .keys()
                .filter(|k| k.to_ascii_lowercase().starts_with(gate::PREFIX))
                .filter(|k| !gate::IDENTITY.contains(&k.to_ascii_lowercase().as_str()))
                .cloned(),
        );
        let verdict = match headers.get("authorization").and_then(|h| gate::bearer(h)) {
            None => Verdict::missing(),
            Some(token) => {
                let input = gate::input(Some(token), namespace, required, client);
                self.access.validate(&input).await?.into()
            }
        };
        Ok(Response::new(respond(verdict, remove)))
    }
}
