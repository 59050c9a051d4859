//! Tokens: generate (rules 1, 2, 7, 9 and the tenant's expiry policy), rotate, list
//! (rules 4, 5) and revoke (rules 6, 8).

use super::{Core, Error, Result};
use crate::background::{Rounds, Task};
use crate::domain::{
    Actor, AuditAction, AuditEvent, GeneratedToken, LiveAt, Namespace, Networks, Page, PrincipalId,
    ScopeSet, Spelled, Subject, TIME_ACTOR, Tenant, TenantId, Token, TokenId, TokenName,
    TokenStatus, TokenString, TokenView, rotated_scopes, scopes_for_new_token,
};
use crate::hashing::Hasher;
use crate::store::TokenQuery;
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;

/// What `Generate` was asked for, already parsed. `None` stands for a field left empty.
#[derive(Debug)]
pub(crate) struct GenerateInput {
    pub(crate) name: Option<TokenName>,
    pub(crate) namespace: Option<Namespace>,
    pub(crate) scopes: ScopeSet,
    pub(crate) subject: Option<Subject>,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    pub(crate) rotate: Option<Rotation>,
    /// Networks to bind the token to; empty: none.
    pub(crate) allowed: Networks,
}

/// Which token a `Generate` rotates, and how long the old one keeps working.
#[derive(Debug, Clone)]
pub(crate) struct Rotation {
    pub(crate) old: TokenId,
    pub(crate) grace: TimeDelta,
}

/// The answer of `Generate`.
#[derive(Debug)]
pub(crate) struct Generated {
    pub(crate) token: TokenView,
    /// The whole token string, shown this once.
    pub(crate) string: TokenString,
    pub(crate) api_url: String,
    pub(crate) expiry_clamped: bool,
}

/// What `List` was asked for, already parsed.
#[derive(Debug)]
pub(crate) struct ListInput {
    pub(crate) namespace: Namespace,
    pub(crate) status: Option<TokenStatus>,
    pub(crate) owner: Option<Subject>,
    pub(crate) limit: u64,
    /// Keyset position: only tokens older than this `(create time, id)`.
    pub(crate) after: Option<(DateTime<Utc>, TokenId)>,
    /// Only tokens not yet expired that expire within this duration.
    pub(crate) expire_within: Option<TimeDelta>,
    /// Only tokens the tenant's `revoke_unused_after` policy retires within this duration.
    pub(crate) retire_within: Option<TimeDelta>,
}

/// Everything a new token is made of.
pub(super) struct NewToken {
    pub(crate) tenant: TenantId,
    pub(crate) namespace: Namespace,
    pub(crate) name: TokenName,
    pub(crate) subject: Subject,
    pub(crate) creator: PrincipalId,
    pub(crate) scopes: ScopeSet,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    pub(crate) replaces: Option<TokenId>,
    pub(crate) allowed: Networks,
}

/// Makes a token string and its hash; writes nothing.
pub(super) async fn mint(
    hasher: &Hasher,
    new: NewToken,
    now: DateTime<Utc>,
) -> Result<(GeneratedToken, String)> {
    let string = TokenString::generate(new.namespace).map_err(Error::internal)?;
    let hash = hasher.hash(string.secret().to_vec()).await?;
    let token = Token {
        id: string.id(),
        tenant: new.tenant,
        namespace: new.namespace,
        name: new.name,
        subject: new.subject,
        creator: new.creator,
        scopes: new.scopes,
        created_at: now,
        last_used_at: None,
        expires_at: new.expires_at,
        revoked_at: None,
        replaces: new.replaces,
        allowed: new.allowed,
    };
    Ok((GeneratedToken { token, string }, hash))
}

/// The audit event of a token made by `Generate` or bootstrap.
pub(super) fn generated_event(t: &Token, now: DateTime<Utc>) -> AuditEvent {
    AuditEvent::new(
        &t.tenant,
        now,
        t.creator.as_str(),
        AuditAction::TokenGenerated,
        t.id.as_str(),
        format!(
            "namespace={} subject={} scopes={} expires={}{}",
            t.namespace.proto_name(),
            t.subject.as_str(),
            t.scopes.names().join(","),
            t.expires_at.map_or("never".to_owned(), |e| e.to_rfc3339()),
            if t.allowed.is_empty() {
                String::new()
            } else {
                format!(" networks={}", t.allowed)
            }
        ),
    )
}

/// Most tokens retired in one round of the sweeper.
const RETIRE_BATCH: u64 = 1000;

const TENANT_GONE: Error = Error::Unauthenticated("the caller's tenant no longer exists");

#[derive(Clone)]
pub(crate) struct Tokens {
    core: Arc<Core>,
}

impl Tokens {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Rules 1, 2, 7 and 9, the tenant's expiry policy, and rotation. Returns the new token
    /// (shown once), the tenant's API URL and whether the expiry was clamped.
    pub(crate) async fn generate(&self, actor: &Actor, input: GenerateInput) -> Result<Generated> {
        let core = &self.core;
        let now = core.now();
        if input.expires_at.is_some_and(|t| t <= now) {
            return Err(Error::invalid("expire_time", "must be in the future"));
        }
        let tenant = core.store.tenant(&actor.tenant).await?.ok_or(TENANT_GONE)?;
        let (expires_at, clamped) = tenant.clamp_expiry(input.expires_at, now);
        let generated = match input.rotate.clone() {
            None => {
                self.generate_new(actor, &tenant, input, expires_at, now)
                    .await?
            }
            Some(rotation) => self.rotate(actor, input, rotation, expires_at, now).await?,
        };
        Ok(Generated {
            token: core.view(generated.token),
            string: generated.string,
            api_url: tenant.api_url.as_str().to_owned(),
            expiry_clamped: clamped,
        })
    }

    async fn generate_new(
        &self,
        actor: &Actor,
        tenant: &Tenant,
        input: GenerateInput,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<GeneratedToken> {
        let namespace = input.namespace.unwrap_or(Namespace::Api);
        let name = input
            .name
            .ok_or_else(|| Error::invalid("name", "must not be empty"))?;
        let scopes = scopes_for_new_token(actor, namespace, input.scopes)?;
        if tenant.require_allowed_cidrs && namespace != Namespace::Api && input.allowed.is_empty() {
            return Err(Error::invalid(
                "allowed_cidrs",
                "this tenant binds log-collector and SIEM tokens to networks: give at least one",
            ));
        }
        let subject = match (namespace, input.subject) {
            (Namespace::Api, None) => actor.principal.clone().into(),
            (Namespace::Api, Some(s)) if s.is(&actor.principal) => s,
            (Namespace::Api, Some(_)) => {
                return Err(Error::invalid(
                    "subject",
                    "an API token always belongs to its caller: leave subject empty or name yourself",
                ));
            }
            (_, Some(s)) => s,
            (_, None) => {
                return Err(Error::invalid(
                    "subject",
                    "log-collector and SIEM tokens need the collector or agent name",
                ));
            }
        };
        self.check_quota(&actor.tenant, namespace, &subject, now)
            .await?;
        let new = NewToken {
            tenant: actor.tenant.clone(),
            namespace,
            name,
            subject,
            creator: actor.principal.clone(),
            scopes,
            expires_at,
            replaces: None,
            allowed: input.allowed,
        };
        let (generated, hash) = mint(&self.core.hasher, new, now).await?;
        let audit = [generated_event(&generated.token, now)];
        let write = self
            .core
            .store
            .insert_token(&generated.token, &hash, &audit);
        self.core
            .commit(&audit, write, Error::NotFound("token vanished"))
            .await?;
        Ok(generated)
    }

    /// `--max-tokens-per-owner`: refuses one more live token for `subject` in `namespace`
    /// when it holds the most allowed already.
    async fn check_quota(
        &self,
        tenant: &TenantId,
        namespace: Namespace,
        subject: &Subject,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let live = self
            .core
            .store
            .count_tokens_of(tenant, namespace, subject, LiveAt(now))
            .await?;
        let max = self.core.policy.max_tokens_per_owner;
        if live >= max {
            return Err(Error::Quota(format!(
                "{subject} holds {live} live tokens in this namespace, the most allowed ({max}): revoke some first",
                subject = subject.as_str()
            )));
        }
        Ok(())
    }

    /// Rotation: a new token with the old one's name, namespace, subject and (possibly
    /// narrowed) scopes; the old one expires after the grace period. A rotation with a grace
    /// period leaves one more live token for that long, so it counts against the owner's
    /// quota; one without (the old token ends now) does not.
    async fn rotate(
        &self,
        actor: &Actor,
        input: GenerateInput,
        rotation: Rotation,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<GeneratedToken> {
        const GONE: Error = Error::NotFound("no such token to rotate");
        let old = self.core.store.token(&rotation.old).await?.ok_or(GONE)?;
        // Only whoever may revoke it may rotate it; anything else does not exist.
        if !actor.can_see(&old) {
            return Err(GONE);
        }
        actor.may_rotate(&old)?;
        let must_match =
            |field: &'static str| Error::invalid(field, "must be empty or the rotated token's");
        if input.namespace.is_some_and(|ns| ns != old.namespace) {
            return Err(must_match("namespace"));
        }
        if input.name.as_ref().is_some_and(|n| n != &old.name) {
            return Err(must_match("name"));
        }
        if input.subject.as_ref().is_some_and(|s| s != &old.subject) {
            return Err(must_match("subject"));
        }
        if !input.allowed.is_empty() {
            return Err(Error::invalid(
                "allowed_cidrs",
                "a rotation keeps the networks of the token it replaces: leave it empty",
            ));
        }
        let scopes = rotated_scopes(actor, &old, input.scopes)?;
        if rotation.grace > TimeDelta::zero() {
            self.check_quota(&old.tenant, old.namespace, &old.subject, now)
                .await?;
        }
        let grace_end = now + rotation.grace;
        let old_expiry = match old.expires_at {
            Some(t) if t < grace_end => t,
            _ => grace_end,
        };
        let new = NewToken {
            tenant: old.tenant.clone(),
            namespace: old.namespace,
            name: old.name.clone(),
            subject: old.subject.clone(),
            creator: actor.principal.clone(),
            scopes,
            expires_at,
            replaces: Some(old.id.clone()),
            allowed: old.allowed.clone(),
        };
        let (generated, hash) = mint(&self.core.hasher, new, now).await?;
        let audit = [actor.event(
            now,
            AuditAction::TokenRotated,
            generated.token.id.as_str(),
            format!(
                "replaces={} grace={}s scopes={}",
                old.id,
                rotation.grace.num_seconds(),
                generated.token.scopes.names().join(",")
            ),
        )];
        let write =
            self.core
                .store
                .rotate_token(&generated.token, &hash, &old.id, old_expiry, &audit);
        self.core.commit(&audit, write, GONE).await?;
        Ok(generated)
    }

    /// Rule 5: one page of the tokens the actor may see, newest first.
    pub(crate) async fn list(&self, actor: &Actor, input: ListInput) -> Result<Page<TokenView>> {
        let core = &self.core;
        let visible = actor.visible(input.namespace, input.owner)?;
        // Listings on this replica include uses seen here up to this moment.
        core.last_use.flush().await?;
        let now = core.now();
        // Retired within d: last used (or, never used, generated) at or before
        // now − policy + d. No policy: nothing will be retired.
        let unused_since = match input.retire_within {
            None => None,
            Some(within) => {
                let tenant = core.store.tenant(&actor.tenant).await?.ok_or(TENANT_GONE)?;
                match tenant.unused_cutoff(now, core.policy.retire_margin) {
                    None => {
                        return Ok(Page {
                            items: Vec::new(),
                            more: false,
                        });
                    }
                    Some(cutoff) => Some(cutoff + within),
                }
            }
        };
        let page = core
            .store
            .list_tokens(&TokenQuery {
                visible: &visible,
                status: input.status.map(|s| (s, now - core.policy.activity_window)),
                after: input.after.as_ref().map(|(t, id)| (*t, id)),
                expiring: input.expire_within.map(|d| (now, now + d)),
                unused_since,
                limit: input.limit,
            })
            .await?;
        Ok(Page {
            items: page.items.into_iter().map(|t| core.view(t)).collect(),
            more: page.more,
        })
    }

    /// Starts retiring tokens left unused for their tenant's `revoke_unused_after` every
    /// `every` (at most [`RETIRE_BATCH`] a round; whichever replica gets to a token first
    /// revokes it, once), until the returned task is stopped. A round leaves alone the
    /// tokens with a use this replica holds and has not written yet (a use a flush is writing
    /// counts until its write has committed, and the revoking update re-checks the stored
    /// last use, so no use falls between the two) — without writing them
    /// out, so that `--last-use-flush-interval` stays the only thing that paces last-use
    /// writes (a flush here each round wrote every pending use once a minute); uses seen by
    /// other replicas reach the database within their flush interval, which is why a token
    /// is retired only once it has been unused for the policy's time plus that interval.
    pub(crate) fn start_retiring(&self, every: std::time::Duration, rounds: Rounds) -> Task {
        let tokens = self.clone();
        Task::every_counted("retirement sweeper", every, rounds, move || {
            let tokens = tokens.clone();
            async move {
                match tokens.retire_unused(RETIRE_BATCH).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(tokens = n, "retired tokens left unused"),
                    Err(e) => {
                        tracing::warn!(error = %e, "retiring unused tokens failed; will retry");
                    }
                }
            }
        })
    }

    /// One round of the retirement sweeper: revokes at most `limit` live tokens that their
    /// tenant's `revoke_unused_after` policy retires now, each through the commit path of
    /// every write (one `AUDIT_ACTION_TOKEN_REVOKED` event by "jeton", this replica's cache at
    /// once). A token whose use this replica holds unwritten is left for a later round; the
    /// revoking update re-checks the stored last use, so a use that reached the database
    /// after the token was picked keeps it alive. Returns how many it revoked.
    async fn retire_unused(&self, limit: u64) -> Result<u64> {
        let core = &self.core;
        let mut retired = 0;
        for tenant in core.store.tenants_retiring_unused().await? {
            let now = core.now();
            let (Some(cutoff), Some(after)) = (
                tenant.unused_cutoff(now, core.policy.retire_margin),
                tenant.revoke_unused_after,
            ) else {
                continue;
            };
            let due = core
                .store
                .unused_tokens(&tenant.id, cutoff, LiveAt(now), limit - retired)
                .await?;
            for token in due {
                if core.last_use.is_pending(&token.id) {
                    continue;
                }
                let audit = [AuditEvent::new(
                    &tenant.id,
                    now,
                    TIME_ACTOR,
                    AuditAction::TokenRevoked,
                    token.id.as_str(),
                    format!(
                        "revoke_unused_after={}s: unused since {}",
                        after.num_seconds(),
                        token.last_used_at.unwrap_or(token.created_at).to_rfc3339()
                    ),
                )];
                let by = PrincipalId::from_parsed(TIME_ACTOR);
                let write =
                    core.store
                        .revoke_token(&tenant.id, &token.id, &by, now, Some(cutoff), &audit);
                // Used or revoked meanwhile: nothing to do.
                match core.commit(&audit, write, Error::NotFound("")).await {
                    Ok(()) => retired += 1,
                    Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            if retired >= limit {
                break;
            }
        }
        Ok(retired)
    }

    /// Rules 6 and 8: revokes a token the actor can see; anything else is "not found".
    pub(crate) async fn revoke(&self, actor: &Actor, id: &TokenId) -> Result<()> {
        const GONE: Error = Error::NotFound("no such token");
        let core = &self.core;
        let token = core.store.token(id).await?.ok_or(GONE)?;
        if !actor.can_see(&token) {
            return Err(GONE);
        }
        let now = core.now();
        let audit = [actor.event(now, AuditAction::TokenRevoked, id.as_str(), "")];
        let write = core
            .store
            .revoke_token(&actor.tenant, id, &actor.principal, now, None, &audit);
        // This replica answers from the database from now on; the others within a poll.
        core.commit(&audit, write, GONE).await
    }
}
