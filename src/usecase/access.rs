//! Access: whether a presented token is good now (`Validate`, rules 3, 6, 7, 9, and network
//! binding), who is calling jeton itself (a bearer token's owner, or the principal a trusted
//! frontend acts for) — both kinds of use count as a use of the token (rule 4) — and the
//! revocation of leaked tokens by whoever holds them.

use super::{Core, Error, Result};
use crate::domain::{
    Actor, AuditAction, AuditEvent, LiveAt, Namespace, PrincipalId, Reason, ReportText, ScopeSet,
    TIME_ACTOR, TenantId, Token, TokenId, TokenString, judge, live,
};
use crate::last_use;
use crate::validation::Verified;
use std::net::IpAddr;
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
    /// The address of the client that presented the token, when the caller knows it.
    pub(crate) client: Option<IpAddr>,
}

/// Where a leak was reported from, for the audit trail (never the token).
#[derive(Debug, Clone)]
pub(crate) enum LeakReport {
    /// A secret-scanning report: where the token was found and by which scanner, when the
    /// report says.
    Scanner {
        url: Option<ReportText>,
        source: Option<ReportText>,
    },
    /// `RevokeLeaked`, from this address.
    Holder { peer: Option<IpAddr> },
}

impl LeakReport {
    fn detail(&self) -> String {
        let or_none = |t: &Option<ReportText>| t.as_ref().map_or("", |t| t.as_str()).to_owned();
        match self {
            LeakReport::Scanner { url, source } => {
                format!(
                    "secret scanning: url={} source={}",
                    or_none(url),
                    or_none(source)
                )
            }
            LeakReport::Holder { peer: Some(p) } => format!("RevokeLeaked from {p}"),
            LeakReport::Holder { peer: None } => "RevokeLeaked".to_owned(),
        }
    }
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

    /// Starts recording refused uses of known tokens in the audit trail (see `refusals`).
    pub(crate) fn start_recording_refusals(&self) -> Option<crate::background::Task> {
        super::Refusals::start_reporting(self.core.clone())
    }

    /// Notes that `presented` was refused for `reason`, for the audit trail: with the
    /// token's tenant when it is known here, else to be looked up (and forgotten if the id
    /// does not exist). An id this replica knows does not exist is not noted.
    fn refused(
        &self,
        presented: &TokenString,
        tenant: Option<&TenantId>,
        reason: Reason,
        client: Option<IpAddr>,
    ) {
        if !super::refusals::recorded(reason) {
            return;
        }
        let id = presented.id();
        let tenant = match tenant {
            Some(t) => Some(t.clone()),
            None => match self.core.validator.cached_tenant(&id) {
                Some(None) => return,
                Some(Some(t)) => Some(t),
                // The wrong namespace is refused before any lookup: a string naming an id
                // this replica has not seen costs nothing to send, so it is not looked up
                // either (a flood of them would crowd out the lookups of wrong secrets).
                None if reason == Reason::WrongNamespace => return,
                None => None,
            },
        };
        self.core.refusals.note(super::refusals::Refused {
            token: id,
            tenant,
            reason,
            client,
        });
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
            self.refused(presented, None, Reason::WrongNamespace, input.client);
            return Ok(Err(Reason::WrongNamespace));
        }
        let Some(entry) = core.validator.verified(presented).await? else {
            self.refused(presented, None, Reason::NotFound, input.client);
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
                input.client,
                now,
            ) {
                Ok(effective) => {
                    note_use(core, &entry, &token.id, now);
                    token.last_used_at = Some(now);
                    Ok(Validated {
                        token: core.view(token),
                        effective,
                    })
                }
                Err(r) => {
                    self.refused(presented, Some(&token.tenant), r, input.client);
                    Err(r)
                }
            },
        )
    }

    /// Who is calling with the bearer token `presented` from `peer`: the owner of a live API
    /// token (bound to networks: from inside one of them), with the token's scopes narrowed
    /// to the owner's now (possibly none, for an eligible owner that is not activated: such a
    /// caller is known but may do nothing that needs a scope).
    pub(crate) async fn authenticate(
        &self,
        presented: &TokenString,
        peer: Option<IpAddr>,
    ) -> Result<Actor> {
        const BAD: Error = Error::Unauthenticated("invalid bearer token");
        let core = &self.core;
        if presented.namespace() != Namespace::Api {
            self.refused(presented, None, Reason::WrongNamespace, peer);
            return Err(BAD);
        }
        note_token(presented);
        let Some(entry) = core.validator.verified(presented).await? else {
            self.refused(presented, None, Reason::NotFound, peer);
            return Err(BAD);
        };
        let token: Token = entry.token();
        let now = core.now();
        if let Err(reason) = live(&token, now, peer) {
            self.refused(presented, Some(&token.tenant), reason, peer);
            return Err(match reason {
                Reason::AddressNotAllowed => {
                    Error::Unauthenticated("this token may not be used from this address")
                }
                _ => BAD,
            });
        }
        let owner = core.validator.owner(&token).await?.ok_or(BAD)?;
        note_use(core, &entry, &token.id, now);
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

impl Access {
    /// Revokes each of `strings` that is a live token (its secret verified), wherever its
    /// tenant, with an `AUDIT_ACTION_TOKEN_LEAKED` event in that tenant. Returns, for each
    /// string, whether this call revoked it. A string that is not a token, an unknown id,
    /// and a token already revoked or expired cost no Argon2; a wrong secret for a real id
    /// revokes nothing (a string that merely names a real id is not a leak of its secret).
    pub(crate) async fn revoke_leaked(
        &self,
        strings: &[String],
        report: &LeakReport,
    ) -> Result<Vec<bool>> {
        let mut revoked = Vec::with_capacity(strings.len());
        for s in strings {
            revoked.push(self.revoke_one_leaked(s, report).await?);
        }
        Ok(revoked)
    }

    async fn revoke_one_leaked(&self, s: &str, report: &LeakReport) -> Result<bool> {
        let core = &self.core;
        let Some(presented) = TokenString::parse(s) else {
            return Ok(false);
        };
        let id = presented.id();
        let now = core.now();
        // The row first: a dead or unknown token is a false positive, at the cost of a read.
        match core.store.token(&id).await? {
            Some(t) if LiveAt(now).holds(&t) => {}
            _ => return Ok(false),
        }
        let Some(entry) = core.validator.verified(&presented).await? else {
            return Ok(false);
        };
        let token = entry.token();
        if token.namespace != presented.namespace() {
            return Ok(false);
        }
        let event = AuditEvent::new(
            &token.tenant,
            now,
            TIME_ACTOR,
            AuditAction::TokenLeaked,
            id.as_str(),
            report.detail(),
        );
        let by = PrincipalId::from_parsed(TIME_ACTOR);
        let audit = [event];
        let write = core
            .store
            .revoke_token(&token.tenant, &id, &by, now, None, &audit);
        // Revoked meanwhile by someone else: not this call's revocation.
        match core.commit(&audit, write, Error::NotFound("")).await {
            Ok(()) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Records a good use of `token` for the last-use buffer: once a minute per cached entry,
/// since stored last-use times are kept to the minute (rule 4).
fn note_use(core: &Core, entry: &Verified, id: &TokenId, now: chrono::DateTime<chrono::Utc>) {
    if entry.first_use_in(last_use::minute(now)) {
        core.last_use.record(id, now);
    }
}

/// Notes on the current call's span which token it is about (its public id only).
fn note_token(t: &TokenString) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::Span::current().record("token.id", t.id().as_str());
    }
}
