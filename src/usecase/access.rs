//! Access: whether a presented token is good now (`Validate`, rules 3, 6, 7, 9), and who is
//! calling jeton itself (a bearer token's owner, or the principal a trusted frontend acts
//! for). Both kinds of use count as a use of the token (rule 4).

use super::{Core, Error, Result};
use crate::domain::{
    Actor, Namespace, PrincipalId, Reason, ScopeSet, TenantId, Token, TokenString, judge,
};
use std::sync::Arc;

/// What `Validate` was asked, already parsed: `token` is `None` when the presented string is
/// not a jeton token at all.
#[derive(Debug)]
pub(crate) struct ValidateInput {
    pub(crate) token: Option<TokenString>,
    pub(crate) namespace: Namespace,
    pub(crate) required: ScopeSet,
    /// Only a token of this tenant is good (a caller that may look at its own tenant's
    /// tokens only); another tenant's answers as if it did not exist, and is not used.
    pub(crate) tenant: Option<TenantId>,
}

/// A token that passed validation: its metadata (with this use recorded) and what it grants.
#[derive(Debug, Clone)]
pub(crate) struct Validated {
    pub(crate) token: crate::domain::TokenView,
    pub(crate) effective: ScopeSet,
}

#[derive(Clone)]
pub(crate) struct Access {
    core: Arc<Core>,
}

impl Access {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Rules 3, 6, 7 and 9: whether the presented token is good in `namespace` with the
    /// `required` scopes now. A good token's use is recorded.
    pub(crate) async fn validate(
        &self,
        input: &ValidateInput,
    ) -> Result<Result<Validated, Reason>> {
        let verdict = self.judge(input).await?;
        if let Some(m) = crate::metrics::get() {
            m.validation(input.namespace, verdict.as_ref().map(drop).map_err(|r| *r));
        }
        Ok(verdict)
    }

    async fn judge(&self, input: &ValidateInput) -> Result<Result<Validated, Reason>> {
        let core = &self.core;
        let Some(presented) = &input.token else {
            return Ok(Err(Reason::Malformed));
        };
        note_token(presented);
        if presented.namespace() != input.namespace {
            return Ok(Err(Reason::WrongNamespace));
        }
        let Some(entry) = core.validator.verified(presented).await? else {
            return Ok(Err(Reason::NotFound));
        };
        let mut token = entry.token();
        if input.tenant.as_ref().is_some_and(|t| *t != token.tenant) {
            return Ok(Err(Reason::NotFound));
        }
        let owner = core.validator.owner(&token).await?;
        let now = core.now();
        Ok(
            match judge(
                &token,
                owner.as_deref(),
                input.namespace,
                input.required,
                now,
            ) {
                Ok(effective) => {
                    core.last_use.record(&token.id, now);
                    token.last_used_at = Some(now);
                    Ok(Validated {
                        token: core.view(token),
                        effective,
                    })
                }
                Err(r) => Err(r),
            },
        )
    }

    /// Who is calling with the bearer token `presented`: the owner of a live API token, with
    /// the token's scopes narrowed to the owner's now (possibly none, for an eligible owner
    /// that is not activated: such a caller is known but may do nothing that needs a scope).
    pub(crate) async fn authenticate(&self, presented: &TokenString) -> Result<Actor> {
        const BAD: Error = Error::Unauthenticated("invalid bearer token");
        let core = &self.core;
        if presented.namespace() != Namespace::Api {
            return Err(BAD);
        }
        note_token(presented);
        let entry = core.validator.verified(presented).await?.ok_or(BAD)?;
        let token: Token = entry.token();
        let now = core.now();
        if token.revoked_at.is_some() || token.is_expired_at(now) {
            return Err(BAD);
        }
        let owner = core.validator.owner(&token).await?.ok_or(BAD)?;
        core.last_use.record(&token.id, now);
        tracing::Span::current().record("tenant", owner.tenant.as_str());
        Ok(Actor {
            scopes: token.scopes.intersect(owner.scopes_at(now)),
            tenant: owner.tenant.clone(),
            principal: owner.id.clone(),
        })
    }

    /// A trusted frontend acting for `tenant/principal`: that principal's stored role now.
    pub(crate) async fn act_for(
        &self,
        tenant: &TenantId,
        principal: &PrincipalId,
    ) -> Result<Actor> {
        let core = &self.core;
        let p = core
            .store
            .principal(tenant, principal)
            .await?
            .ok_or(Error::Unauthenticated(
                "unknown principal in x-jeton-principal",
            ))?;
        tracing::Span::current().record("tenant", p.tenant.as_str());
        Ok(Actor {
            scopes: p.scopes_at(core.now()),
            tenant: p.tenant,
            principal: p.id,
        })
    }
}

/// Notes on the current call's span which token it is about (its public id only).
fn note_token(t: &TokenString) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::Span::current().record("token.id", t.id().as_str());
    }
}
