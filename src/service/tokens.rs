//! `jeton.v1.TokenService`.

use super::convert::{self, field};
use super::page::{self, Cursor};
use super::proto::{self, token_service_server::TokenService};
use super::status;
use crate::auth;
use crate::domain::MAX_GRACE;
use crate::domain::{Subject, TokenId, TokenName};
use crate::engine::{Engine, Error, GenerateInput, ListInput, Rotation};
use chrono::DateTime;
use tonic::{Request, Response, Status};

#[derive(Debug, Clone)]
pub struct TokenApi {
    engine: Engine,
}

impl TokenApi {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

/// Longest token string Validate looks at; anything longer is malformed without parsing.
const MAX_TOKEN_FIELD: usize = 4096;

#[tonic::async_trait]
impl TokenService for TokenApi {
    async fn generate(
        &self,
        req: Request<proto::GenerateRequest>,
    ) -> Result<Response<proto::GenerateResponse>, Status> {
        let actor = auth::caller(&self.engine, &req).await.map_err(status)?;
        let r = req.into_inner();
        let input = (|| -> Result<GenerateInput, Error> {
            let rotate = match r.rotate_id.as_str() {
                "" if r.grace_period.is_some() => {
                    return Err(Error::invalid("grace_period", "only with rotate_id"));
                }
                "" => None,
                id => {
                    let grace = match &r.grace_period {
                        Some(d) => convert::duration("grace_period", d)?,
                        None => chrono::TimeDelta::zero(),
                    };
                    if grace < chrono::TimeDelta::zero() || grace > MAX_GRACE {
                        return Err(Error::invalid(
                            "grace_period",
                            "must be between 0 and 7 days",
                        ));
                    }
                    Some(Rotation {
                        old: field("rotate_id", TokenId::parse(id))?,
                        grace,
                    })
                }
            };
            Ok(GenerateInput {
                name: match r.name.as_str() {
                    "" => None,
                    n => Some(field("name", TokenName::parse(n))?),
                },
                namespace: convert::namespace_opt("namespace", r.namespace)?,
                rotate,
                scopes: convert::scopes("scopes", &r.scopes)?,
                subject: match r.subject.as_str() {
                    "" => None,
                    s => Some(field("subject", Subject::parse(s))?),
                },
                expires_at: r
                    .expire_time
                    .as_ref()
                    .map(|t| convert::time("expire_time", t))
                    .transpose()?,
            })
        })()
        .map_err(status)?;
        let g = self.engine.generate(&actor, input).await.map_err(status)?;
        Ok(Response::new(proto::GenerateResponse {
            token: Some(convert::token_to(&self.engine, &g.generated.token)),
            secret: g.generated.string.expose().to_owned(),
            api_url: g.api_url,
            expire_time_clamped: g.expiry_clamped,
        }))
    }

    async fn list(
        &self,
        req: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        let actor = auth::caller(&self.engine, &req).await.map_err(status)?;
        let r = req.into_inner();
        let filters = format!(
            "{}|{}|{}|{}",
            r.namespace, r.status, r.owner, actor.principal
        );
        let input = (|| -> Result<ListInput, Error> {
            let after = page::decode(&filters, &r.page_token)?
                .map(|c| {
                    let t = DateTime::from_timestamp_micros(c.created_micros);
                    let id = TokenId::parse(&c.key).ok();
                    t.zip(id).ok_or_else(|| {
                        Error::invalid("page_token", "not a page token of this listing")
                    })
                })
                .transpose()?;
            Ok(ListInput {
                namespace: convert::namespace("namespace", r.namespace)?,
                status: convert::status_filter(r.status)?,
                owner: match r.owner.as_str() {
                    "" => None,
                    s => Some(field("owner", Subject::parse(s))?),
                },
                limit: page::page_size(r.page_size)?,
                after,
                expire_within: match &r.expire_within {
                    None => None,
                    Some(d) => {
                        let d = convert::duration("expire_within", d)?;
                        if d <= chrono::TimeDelta::zero() {
                            return Err(Error::invalid("expire_within", "must be positive"));
                        }
                        Some(d)
                    }
                },
            })
        })()
        .map_err(status)?;
        let (tokens, more) = self.engine.list(&actor, input).await.map_err(status)?;
        let next_page_token = match tokens.last() {
            Some(last) if more => page::encode(
                &filters,
                &Cursor {
                    created_micros: last.created_at.timestamp_micros(),
                    key: last.id.as_str().to_owned(),
                },
            ),
            _ => String::new(),
        };
        Ok(Response::new(proto::ListResponse {
            tokens: tokens
                .iter()
                .map(|t| convert::token_to(&self.engine, t))
                .collect(),
            next_page_token,
        }))
    }

    async fn revoke(
        &self,
        req: Request<proto::RevokeRequest>,
    ) -> Result<Response<proto::RevokeResponse>, Status> {
        let actor = auth::caller(&self.engine, &req).await.map_err(status)?;
        let id = field("id", TokenId::parse(&req.get_ref().id)).map_err(status)?;
        self.engine.revoke(&actor, &id).await.map_err(status)?;
        Ok(Response::new(proto::RevokeResponse {}))
    }

    async fn validate(
        &self,
        req: Request<proto::ValidateRequest>,
    ) -> Result<Response<proto::ValidateResponse>, Status> {
        let r = req.into_inner();
        let namespace = convert::namespace("namespace", r.namespace).map_err(status)?;
        let required = convert::scopes("required_scopes", &r.required_scopes).map_err(status)?;
        let presented = if r.token.len() > MAX_TOKEN_FIELD {
            ""
        } else {
            r.token.as_str()
        };
        let verdict = self
            .engine
            .validate(presented, namespace, required)
            .await
            .map_err(status)?;
        Ok(Response::new(match verdict {
            Ok(v) => proto::ValidateResponse {
                valid: true,
                reason: proto::Reason::Unspecified as i32,
                token: Some(convert::token_to(&self.engine, &v.token)),
                effective_scopes: convert::scope_names(v.effective),
            },
            Err(reason) => proto::ValidateResponse {
                valid: false,
                reason: convert::reason_to(reason) as i32,
                token: None,
                effective_scopes: Vec::new(),
            },
        }))
    }
}
