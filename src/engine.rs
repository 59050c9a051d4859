//! The use cases: generate, list, revoke, validate, and the directory. Each one parses
//! nothing (it receives domain types), asks the domain for the decision, and talks to the
//! store, the hasher and the last-use buffer. It knows neither protobuf nor SQL.

use crate::cache::{Lookup, ValidationCache, Verified};
use crate::domain::{
    Actor, Assignment, AuditAction, AuditEvent, Clock, Denied, GeneratedToken, Namespace,
    Principal, PrincipalId, Reason, Role, ScopeSet, Subject, Tenant, TenantId, Token, TokenId,
    TokenName, TokenStatus, TokenString, activation_end, judge, rotated_scopes,
    scopes_for_new_token, status_of,
};
use crate::hashing::{HashError, Hasher};
use crate::last_use::LastUse;
use crate::store::{Changed, Store, StoreError, TokenQuery};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// What can go wrong in a use case, one variant per answer a caller can get.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    AlreadyExists(&'static str),
    #[error("{0}")]
    FailedPrecondition(&'static str),
    #[error("too many secret verifications in progress; retry shortly")]
    Busy,
    #[error("database unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn invalid(field: &'static str, message: impl ToString) -> Self {
        Error::InvalidArgument {
            field,
            message: message.to_string(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Error::Unavailable(e),
            e => Error::Internal(Box::new(e)),
        }
    }
}

impl From<HashError> for Error {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Error::Busy,
            e => Error::Internal(Box::new(e)),
        }
    }
}

impl From<Denied> for Error {
    fn from(d: Denied) -> Self {
        Error::PermissionDenied(d.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A token that passed validation: its metadata (with this use recorded) and what it grants.
#[derive(Debug, Clone)]
pub struct Validated {
    pub token: Token,
    pub effective: ScopeSet,
}

/// What `Generate` was asked for, already parsed. `None` stands for a field left empty.
#[derive(Debug)]
pub struct GenerateInput {
    pub name: Option<TokenName>,
    pub namespace: Option<Namespace>,
    pub scopes: ScopeSet,
    pub subject: Option<Subject>,
    pub expires_at: Option<DateTime<Utc>>,
    pub rotate: Option<Rotation>,
}

/// Which token a `Generate` rotates, and how long the old one keeps working.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub old: TokenId,
    pub grace: TimeDelta,
}

/// The answer of `Generate`.
#[derive(Debug)]
pub struct Generated {
    pub generated: GeneratedToken,
    pub api_url: String,
    pub expiry_clamped: bool,
}

/// Everything a new token is made of.
struct NewToken {
    tenant: TenantId,
    namespace: Namespace,
    name: TokenName,
    subject: Subject,
    creator: PrincipalId,
    scopes: ScopeSet,
    expires_at: Option<DateTime<Utc>>,
    replaces: Option<TokenId>,
}

/// Changes to a tenant; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct TenantUpdate {
    pub display_name: Option<String>,
    pub api_url: Option<String>,
    pub max_token_lifetime: Option<Option<TimeDelta>>,
}

/// What `List` was asked for, already parsed.
#[derive(Debug)]
pub struct ListInput {
    pub namespace: Namespace,
    pub status: Option<TokenStatus>,
    pub owner: Option<Subject>,
    pub limit: u64,
    pub after: Option<(DateTime<Utc>, TokenId)>,
    /// Only tokens not yet expired that expire within this duration.
    pub expire_within: Option<TimeDelta>,
}

#[derive(Clone)]
pub struct Engine {
    store: Store,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
    window: TimeDelta,
    /// Longest activation of an eligible role.
    max_activation: TimeDelta,
    last_use: Arc<LastUse>,
    cache: Arc<ValidationCache>,
    /// First validations in progress, by digest of the presented secret: concurrent first
    /// uses of the same token share one database read and one Argon2 verification.
    inflight: Arc<Mutex<HashMap<[u8; 32], Arc<Flight>>>>,
}

/// The shared outcome of one first validation: the verified entry, or `None` for "no such
/// token or wrong secret".
type Flight = OnceCell<Option<Arc<Verified>>>;

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(
        store: Store,
        hasher: Hasher,
        clock: Arc<dyn Clock>,
        window: TimeDelta,
        cache: Arc<ValidationCache>,
    ) -> Self {
        let last_use = Arc::new(LastUse::new(store.clone()));
        Self {
            store,
            hasher,
            clock,
            window,
            max_activation: TimeDelta::hours(8),
            last_use,
            cache,
            inflight: Arc::default(),
        }
    }

    /// Sets the longest activation of an eligible role (8 hours by default).
    pub fn with_max_activation(mut self, max: TimeDelta) -> Self {
        self.max_activation = max;
        self
    }

    pub fn cache(&self) -> &Arc<ValidationCache> {
        &self.cache
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Rule 4, at this moment.
    pub fn status(&self, token: &Token) -> TokenStatus {
        status_of(token.last_used_at, self.now(), self.window)
    }

    pub fn last_use(&self) -> &LastUse {
        &self.last_use
    }

    /// Creates a tenant with its first admin and returns that admin's first token.
    pub async fn bootstrap(&self, tenant: Tenant, admin: PrincipalId) -> Result<GeneratedToken> {
        let now = self.now();
        let principal = Principal {
            tenant: tenant.id.clone(),
            display_name: admin.as_str().to_owned(),
            id: admin.clone(),
            role: Role::Admin,
            assignment: Assignment::Active,
            activation_end: None,
        };
        let name = TokenName::parse("bootstrap").map_err(|e| Error::Internal(Box::new(e)))?;
        let (generated, hash) = self
            .mint(
                NewToken {
                    tenant: tenant.id.clone(),
                    namespace: Namespace::Api,
                    name,
                    subject: admin.clone().into(),
                    creator: admin.clone(),
                    scopes: Role::Admin.scopes(),
                    expires_at: None,
                    replaces: None,
                },
                now,
            )
            .await?;
        let audit = [
            AuditEvent::new(
                &tenant.id,
                now,
                admin.as_str(),
                AuditAction::TenantCreated,
                tenant.id.as_str(),
                "",
            ),
            principal_event(
                &principal,
                now,
                admin.as_str(),
                AuditAction::PrincipalCreated,
            ),
            generated_event(&generated.token, now),
        ];
        match self
            .store
            .create_tenant(&tenant, &principal, &generated.token, &hash, now, &audit)
            .await
        {
            Err(StoreError::Conflict) => Err(Error::AlreadyExists("tenant already exists")),
            other => other.map_err(Error::from),
        }?;
        Ok(generated)
    }

    /// Makes a token string and its hash; writes nothing.
    async fn mint(&self, new: NewToken, now: DateTime<Utc>) -> Result<(GeneratedToken, String)> {
        let string =
            TokenString::generate(new.namespace).map_err(|e| Error::Internal(Box::new(e)))?;
        let hash = self.hasher.hash(string.secret().to_vec()).await?;
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
        };
        Ok((GeneratedToken { token, string }, hash))
    }

    /// Rules 1, 2, 7 and 9, the tenant's expiry policy, and rotation. Returns the new token
    /// (shown once), the tenant's API URL and whether the expiry was clamped.
    pub async fn generate(&self, actor: &Actor, input: GenerateInput) -> Result<Generated> {
        let now = self.now();
        if input.expires_at.is_some_and(|t| t <= now) {
            return Err(Error::invalid("expire_time", "must be in the future"));
        }
        let tenant = self
            .store
            .tenant(&actor.tenant)
            .await?
            .ok_or(Error::Unauthenticated(
                "the caller's tenant no longer exists",
            ))?;
        let (expires_at, clamped) = tenant.clamp_expiry(input.expires_at, now);
        let generated = match input.rotate.clone() {
            None => self.generate_new(actor, input, expires_at, now).await?,
            Some(rotation) => self.rotate(actor, input, rotation, expires_at, now).await?,
        };
        Ok(Generated {
            generated,
            api_url: tenant.api_url,
            expiry_clamped: clamped,
        })
    }

    async fn generate_new(
        &self,
        actor: &Actor,
        input: GenerateInput,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<GeneratedToken> {
        let namespace = input.namespace.unwrap_or(Namespace::Api);
        let name = input
            .name
            .ok_or_else(|| Error::invalid("name", "must not be empty"))?;
        let scopes = scopes_for_new_token(actor, namespace, input.scopes)?;
        let subject = match (namespace, input.subject) {
            (Namespace::Api, None) => actor.principal.clone().into(),
            (Namespace::Api, Some(s)) if s.as_str() == actor.principal.as_str() => s,
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
        let (generated, hash) = self
            .mint(
                NewToken {
                    tenant: actor.tenant.clone(),
                    namespace,
                    name,
                    subject,
                    creator: actor.principal.clone(),
                    scopes,
                    expires_at,
                    replaces: None,
                },
                now,
            )
            .await?;
        let audit = [generated_event(&generated.token, now)];
        self.store
            .insert_token(&generated.token, &hash, &audit)
            .await?;
        self.cache
            .invalidate(&Changed::Token(generated.token.id.clone()));
        tracing::info!(token.id = %generated.token.id, tenant = %actor.tenant, actor = %actor.principal, "token generated");
        Ok(generated)
    }

    /// Rotation: a new token with the old one's name, namespace, subject and (possibly
    /// narrowed) scopes; the old one expires after the grace period.
    async fn rotate(
        &self,
        actor: &Actor,
        input: GenerateInput,
        rotation: Rotation,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<GeneratedToken> {
        const GONE: Error = Error::NotFound("no such token to rotate");
        let old = self.store.token(&rotation.old).await?.ok_or(GONE)?;
        // Only whoever may revoke it may rotate it; anything else does not exist.
        if !actor.can_see(&old) {
            return Err(GONE);
        }
        if input.namespace.is_some_and(|ns| ns != old.namespace) {
            return Err(Error::invalid(
                "namespace",
                "must be empty or the rotated token's",
            ));
        }
        if input.name.as_ref().is_some_and(|n| n != &old.name) {
            return Err(Error::invalid(
                "name",
                "must be empty or the rotated token's",
            ));
        }
        if input.subject.as_ref().is_some_and(|s| s != &old.subject) {
            return Err(Error::invalid(
                "subject",
                "must be empty or the rotated token's",
            ));
        }
        let scopes = rotated_scopes(actor, &old, input.scopes)?;
        let grace_end = now + rotation.grace;
        let old_expiry = match old.expires_at {
            Some(t) if t < grace_end => t,
            _ => grace_end,
        };
        let (generated, hash) = self
            .mint(
                NewToken {
                    tenant: old.tenant.clone(),
                    namespace: old.namespace,
                    name: old.name.clone(),
                    subject: old.subject.clone(),
                    creator: actor.principal.clone(),
                    scopes,
                    expires_at,
                    replaces: Some(old.id.clone()),
                },
                now,
            )
            .await?;
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
        if !self
            .store
            .rotate_token(&generated.token, &hash, &old.id, old_expiry, &audit)
            .await?
        {
            return Err(GONE);
        }
        self.cache.invalidate(&Changed::Token(old.id.clone()));
        self.cache
            .invalidate(&Changed::Token(generated.token.id.clone()));
        tracing::info!(token.id = %generated.token.id, replaces = %old.id, tenant = %actor.tenant, actor = %actor.principal, "token rotated");
        Ok(generated)
    }

    /// Rule 5: one page of the tokens the actor may see, newest first, plus whether more
    /// follow.
    pub async fn list(&self, actor: &Actor, input: ListInput) -> Result<(Vec<Token>, bool)> {
        if input.namespace != Namespace::Api && !actor.is_admin() {
            return Err(Denied::NotAdmin.into());
        }
        let owner = match (actor.is_admin(), input.owner) {
            (true, owner) => owner,
            (false, None) => Some(actor.principal.clone().into()),
            (false, Some(o)) if o.as_str() == actor.principal.as_str() => Some(o),
            (false, Some(_)) => {
                return Err(Error::PermissionDenied(
                    "only admins list other principals' tokens".into(),
                ));
            }
        };
        // Listings on this replica include uses seen here up to this moment.
        self.last_use.flush().await?;
        let now = self.now();
        let mut tokens = self
            .store
            .list_tokens(&TokenQuery {
                tenant: &actor.tenant,
                namespace: input.namespace,
                subject: owner.as_ref().map(Subject::as_str),
                status: input.status.map(|s| (s, now - self.window)),
                after: input.after.as_ref().map(|(t, id)| (*t, id.as_str())),
                expiring: input.expire_within.map(|d| (now, now + d)),
                limit: input.limit + 1,
            })
            .await?;
        let more = tokens.len() as u64 > input.limit;
        tokens.truncate(input.limit as usize);
        Ok((tokens, more))
    }

    /// Rules 6 and 8: revokes a token the actor can see; anything else is "not found".
    pub async fn revoke(&self, actor: &Actor, id: &TokenId) -> Result<()> {
        const GONE: Error = Error::NotFound("no such token");
        let token = self.store.token(id).await?.ok_or(GONE)?;
        if !actor.can_see(&token) {
            return Err(GONE);
        }
        let now = self.now();
        let audit = [actor.event(now, AuditAction::TokenRevoked, id.as_str(), "")];
        if !self
            .store
            .revoke_token(&actor.tenant, id, &actor.principal, now, &audit)
            .await?
        {
            return Err(GONE);
        }
        // This replica answers from the database from now on; the others within a poll.
        self.cache.invalidate(&Changed::Token(id.clone()));
        tracing::info!(token.id = %id, tenant = %actor.tenant, actor = %actor.principal, "token revoked");
        Ok(())
    }

    /// The verified entry behind a presented token string, or `None` when there is no such
    /// token or the secret is wrong (indistinguishable on purpose). Revoked and expired tokens
    /// are returned too: the caller judges.
    async fn verified(&self, presented: &TokenString) -> Result<Option<Arc<Verified>>> {
        let id = presented.id();
        match self.cache.token(&id) {
            Lookup::Hit(v) => return Ok(v.matches(presented.secret()).then_some(v)),
            Lookup::Stale(v) => {
                if !v.matches(presented.secret()) {
                    return Ok(None);
                }
                // Verified before; only the row may have changed. Rows are never deleted.
                let epoch = self.cache.epoch();
                let row = self.store.token(&id).await?;
                return Ok(row.map(|t| self.cache.remember_token(epoch, &t, presented.secret())));
            }
            Lookup::Absent => return Ok(None),
            Lookup::Miss => {}
        }
        let digest = crate::cache::digest(presented.secret());
        let flight = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            inflight.entry(digest).or_default().clone()
        };
        let outcome = flight
            .get_or_try_init(|| self.load_verified(presented))
            .await
            .cloned();
        {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            if inflight
                .get(&digest)
                .is_some_and(|f| Arc::ptr_eq(f, &flight))
            {
                inflight.remove(&digest);
            }
        }
        outcome
    }

    /// The slow path of [`Self::verified`]: one database read and one Argon2 verification.
    async fn load_verified(&self, presented: &TokenString) -> Result<Option<Arc<Verified>>> {
        let epoch = self.cache.epoch();
        let id = presented.id();
        let found = self.store.token_with_hash(&id).await?;
        let (token, hash) = match found {
            Some((t, h)) => (Some(t), Some(h)),
            None => (None, None),
        };
        // An unknown id costs the same Argon2 work as a wrong secret.
        let good = self
            .hasher
            .verify(presented.secret().to_vec(), hash)
            .await?;
        Ok(match token {
            Some(t) if good && t.namespace == presented.namespace() => {
                Some(self.cache.remember_token(epoch, &t, presented.secret()))
            }
            Some(_) => None,
            None => {
                self.cache.remember_absent(epoch, &id);
                None
            }
        })
    }

    /// The owner of an API token as stored now; tenant tokens have none.
    async fn owner_of(&self, token: &Token) -> Result<Option<Arc<Principal>>> {
        if token.namespace != Namespace::Api {
            return Ok(None);
        }
        let key = crate::cache::owner_key(&token.tenant, token.subject.as_str());
        if let Some(p) = self.cache.principal(&key) {
            return Ok(p);
        }
        let epoch = self.cache.epoch();
        let p = self
            .store
            .principal(&token.tenant, token.subject.as_str())
            .await?;
        Ok(self.cache.remember_principal(epoch, key, p))
    }

    /// Rules 3, 6, 7 and 9: whether `presented` is good in `namespace` with `required`
    /// scopes now. A good token's use is recorded.
    pub async fn validate(
        &self,
        presented: &str,
        namespace: Namespace,
        required: ScopeSet,
    ) -> Result<Result<Validated, Reason>> {
        let Some(presented) = TokenString::parse(presented) else {
            return Ok(Err(Reason::Malformed));
        };
        if presented.namespace() != namespace {
            return Ok(Err(Reason::WrongNamespace));
        }
        let Some(entry) = self.verified(&presented).await? else {
            return Ok(Err(Reason::NotFound));
        };
        let mut token = entry.token();
        let owner = self.owner_of(&token).await?;
        let now = self.now();
        Ok(
            match judge(&token, owner.as_deref(), namespace, required, now) {
                Ok(effective) => {
                    self.last_use.record(&token.id, now);
                    token.last_used_at = Some(now);
                    Ok(Validated { token, effective })
                }
                Err(r) => Err(r),
            },
        )
    }

    /// Who is calling with bearer token `presented`: the owner of a live API token, with the
    /// token's scopes narrowed to the owner's now (possibly none, for an eligible owner
    /// that is not activated: such a caller is known but may do nothing that needs a scope).
    pub async fn authenticate(&self, presented: &str) -> Result<Actor> {
        const BAD: Error = Error::Unauthenticated("invalid bearer token");
        let presented = TokenString::parse(presented).ok_or(BAD)?;
        if presented.namespace() != Namespace::Api {
            return Err(BAD);
        }
        let entry = self.verified(&presented).await?.ok_or(BAD)?;
        let token = entry.token();
        let now = self.now();
        if token.revoked_at.is_some() || token.is_expired_at(now) {
            return Err(BAD);
        }
        let owner = self.owner_of(&token).await?.ok_or(BAD)?;
        self.last_use.record(&token.id, now);
        Ok(Actor {
            scopes: token.scopes.intersect(owner.scopes_at(now)),
            tenant: owner.tenant.clone(),
            principal: owner.id.clone(),
        })
    }

    /// A trusted frontend acting for `tenant/principal`: that principal's stored role now.
    pub async fn act_for(&self, tenant: &TenantId, principal: &PrincipalId) -> Result<Actor> {
        let p = self
            .store
            .principal(tenant, principal.as_str())
            .await?
            .ok_or(Error::Unauthenticated(
                "unknown principal in x-jeton-principal",
            ))?;
        Ok(Actor {
            scopes: p.scopes_at(self.now()),
            tenant: p.tenant,
            principal: p.id,
        })
    }

    fn require_admin(actor: &Actor) -> Result<()> {
        if actor.is_admin() {
            Ok(())
        } else {
            Err(Error::PermissionDenied(
                "the directory is managed by admins only".into(),
            ))
        }
    }

    /// Creates or replaces a principal of the actor's tenant. An eligible principal keeps a
    /// running activation across a replace.
    pub async fn put_principal(&self, actor: &Actor, mut p: Principal) -> Result<Principal> {
        Self::require_admin(actor)?;
        if p.tenant != actor.tenant {
            return Err(Error::PermissionDenied(
                "principals can be managed only in the caller's tenant".into(),
            ));
        }
        let existing = self.store.principal(&p.tenant, p.id.as_str()).await?;
        let action = if existing.is_some() {
            AuditAction::PrincipalChanged
        } else {
            AuditAction::PrincipalCreated
        };
        p.activation_end = match (p.assignment, existing) {
            (Assignment::Eligible, Some(old)) => old.activation_end,
            _ => None,
        };
        let now = self.now();
        let audit = [principal_event(&p, now, actor.principal.as_str(), action)];
        self.store.put_principal(&p, now, &audit).await?;
        self.cache
            .invalidate(&Changed::Principal(p.tenant.clone(), p.id.clone()));
        tracing::info!(tenant = %p.tenant, principal = %p.id, role = ?p.role, assignment = ?p.assignment, actor = %actor.principal, "principal put");
        Ok(p)
    }

    pub async fn get_principal(&self, actor: &Actor, id: &PrincipalId) -> Result<Principal> {
        Self::require_admin(actor)?;
        self.store
            .principal(&actor.tenant, id.as_str())
            .await?
            .ok_or(Error::NotFound("no such principal"))
    }

    pub async fn list_principals(
        &self,
        actor: &Actor,
        after: Option<&PrincipalId>,
        limit: u64,
    ) -> Result<(Vec<Principal>, bool)> {
        Self::require_admin(actor)?;
        let mut ps = self
            .store
            .principals(&actor.tenant, after.map(PrincipalId::as_str), limit + 1)
            .await?;
        let more = ps.len() as u64 > limit;
        ps.truncate(limit as usize);
        Ok((ps, more))
    }

    pub async fn delete_principal(&self, actor: &Actor, id: &PrincipalId) -> Result<()> {
        Self::require_admin(actor)?;
        let now = self.now();
        let audit = [actor.event(now, AuditAction::PrincipalDeleted, id.as_str(), "")];
        if !self
            .store
            .delete_principal(&actor.tenant, id, now, &audit)
            .await?
        {
            return Err(Error::NotFound("no such principal"));
        }
        self.cache
            .invalidate(&Changed::Principal(actor.tenant.clone(), id.clone()));
        tracing::info!(tenant = %actor.tenant, principal = %id, actor = %actor.principal, "principal deleted");
        Ok(())
    }
    /// Activates `id`'s eligible role for `duration` (self or admin), extending a running
    /// activation.
    pub async fn activate_role(
        &self,
        actor: &Actor,
        id: &PrincipalId,
        duration: TimeDelta,
        justification: &str,
    ) -> Result<Principal> {
        if duration <= TimeDelta::zero() {
            return Err(Error::invalid("duration", "must be positive"));
        }
        if duration > self.max_activation {
            return Err(Error::invalid(
                "duration",
                format!(
                    "must be at most {}",
                    humantime::format_duration(self.max_activation.to_std().unwrap_or_default())
                ),
            ));
        }
        let justification = justification.trim();
        if justification.is_empty() {
            return Err(Error::invalid("justification", "is required"));
        }
        if justification.chars().count() > 1000 || justification.chars().any(char::is_control) {
            return Err(Error::invalid(
                "justification",
                "must be at most 1000 characters, without control characters",
            ));
        }
        let mut target = self.role_target(actor, id).await?;
        let now = self.now();
        let end = activation_end(actor, &target, duration, now)?;
        let audit = [actor.event(
            now,
            AuditAction::RoleActivated,
            id.as_str(),
            format!("until={} justification={justification}", end.to_rfc3339()),
        )];
        if !self
            .store
            .set_activation(
                &actor.tenant,
                id,
                Some(end),
                Some(justification),
                now,
                &audit,
            )
            .await?
        {
            return Err(Error::NotFound("no such principal"));
        }
        self.cache
            .invalidate(&Changed::Principal(actor.tenant.clone(), id.clone()));
        tracing::info!(tenant = %actor.tenant, principal = %id, until = %end, actor = %actor.principal, "role activated");
        target.activation_end = Some(end);
        Ok(target)
    }

    /// Ends `id`'s activation at once (self or admin). Without a running activation, changes
    /// and records nothing.
    pub async fn deactivate_role(&self, actor: &Actor, id: &PrincipalId) -> Result<Principal> {
        let mut target = self.role_target(actor, id).await?;
        let now = self.now();
        if target.current_activation_end(now).is_none() {
            return Ok(target);
        }
        let audit = [actor.event(now, AuditAction::RoleDeactivated, id.as_str(), "")];
        if !self
            .store
            .set_activation(&actor.tenant, id, None, None, now, &audit)
            .await?
        {
            return Err(Error::NotFound("no such principal"));
        }
        self.cache
            .invalidate(&Changed::Principal(actor.tenant.clone(), id.clone()));
        tracing::info!(tenant = %actor.tenant, principal = %id, actor = %actor.principal, "role deactivated");
        target.activation_end = None;
        Ok(target)
    }

    /// The eligible principal whose activation `actor` wants to change: itself, or anyone of
    /// its tenant for an admin.
    async fn role_target(&self, actor: &Actor, id: &PrincipalId) -> Result<Principal> {
        if !actor.is_admin() && &actor.principal != id {
            return Err(Denied::NotSelfOrAdmin.into());
        }
        let target = self
            .store
            .principal(&actor.tenant, id.as_str())
            .await?
            .ok_or(Error::NotFound("no such principal"))?;
        if target.assignment == Assignment::Active {
            return Err(Error::FailedPrecondition(
                "the role is permanent (ASSIGNMENT_ACTIVE): there is nothing to activate",
            ));
        }
        Ok(target)
    }

    /// Records activations that ended by time (one audit event each, whichever replica
    /// gets there first).
    pub async fn expire_activations(&self) -> Result<u64> {
        Ok(self.store.expire_activations(self.now(), 100).await?)
    }

    pub async fn tenant(&self, actor: &Actor) -> Result<Tenant> {
        Self::require_admin(actor)?;
        self.store
            .tenant(&actor.tenant)
            .await?
            .ok_or(Error::Unauthenticated(
                "the caller's tenant no longer exists",
            ))
    }

    /// Changes the caller's tenant.
    pub async fn update_tenant(&self, actor: &Actor, update: TenantUpdate) -> Result<Tenant> {
        let mut tenant = self.tenant(actor).await?;
        if let Some(d) = update.display_name {
            tenant.display_name = d;
        }
        if let Some(u) = update.api_url {
            tenant.api_url = u;
        }
        if let Some(m) = update.max_token_lifetime {
            tenant.max_token_lifetime = m;
        }
        let now = self.now();
        let audit = [actor.event(
            now,
            AuditAction::TenantChanged,
            actor.tenant.as_str(),
            format!(
                "display_name={:?} api_url={:?} max_token_lifetime={}",
                tenant.display_name,
                tenant.api_url,
                tenant
                    .max_token_lifetime
                    .map_or("none".to_owned(), |d| format!("{}s", d.num_seconds()))
            ),
        )];
        if !self.store.update_tenant(&tenant, now, &audit).await? {
            return Err(Error::Unauthenticated(
                "the caller's tenant no longer exists",
            ));
        }
        Ok(tenant)
    }

    /// The tenant's audit trail, newest first.
    pub async fn audit_events(
        &self,
        actor: &Actor,
        target: Option<&str>,
        before: Option<i64>,
        limit: u64,
    ) -> Result<(Vec<AuditEvent>, bool)> {
        Self::require_admin(actor)?;
        let mut events = self
            .store
            .audit_events(&actor.tenant, target, before, limit + 1)
            .await?;
        let more = events.len() as u64 > limit;
        events.truncate(limit as usize);
        Ok((events, more))
    }
}

fn generated_event(t: &Token, now: DateTime<Utc>) -> AuditEvent {
    AuditEvent::new(
        &t.tenant,
        now,
        t.creator.as_str(),
        AuditAction::TokenGenerated,
        t.id.as_str(),
        format!(
            "namespace={:?} subject={} scopes={} expires={}",
            t.namespace,
            t.subject.as_str(),
            t.scopes.names().join(","),
            t.expires_at.map_or("never".to_owned(), |e| e.to_rfc3339())
        ),
    )
}

fn principal_event(
    p: &Principal,
    now: DateTime<Utc>,
    actor: &str,
    action: AuditAction,
) -> AuditEvent {
    AuditEvent::new(
        &p.tenant,
        now,
        actor,
        action,
        p.id.as_str(),
        format!("role={:?} assignment={:?}", p.role, p.assignment),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheSettings;
    use crate::domain::{ManualClock, Tenant};
    use crate::hashing::{HashSettings, Pepper};
    use crate::store::DbOptions;
    use std::time::Duration;

    fn contoso() -> Tenant {
        Tenant {
            id: TenantId::parse("contoso").unwrap(),
            display_name: "Contoso".into(),
            api_url: "https://contoso.test".into(),
            max_token_lifetime: None,
        }
    }

    async fn engine(url: &str, clock: Arc<ManualClock>) -> Engine {
        engine_with(url, clock, CacheSettings::default()).await
    }

    async fn engine_with(url: &str, clock: Arc<ManualClock>, cache: CacheSettings) -> Engine {
        let store = Store::connect(url, &DbOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let hashing = HashSettings {
            memory_kib: 256,
            iterations: 1,
            ..HashSettings::default()
        };
        let hasher = Hasher::new(&hashing, Pepper::default()).unwrap();
        let cache = Arc::new(ValidationCache::new(&cache));
        tokio::spawn(crate::cache::follow(
            store.clone(),
            cache.clone(),
            Duration::from_millis(20),
        ));
        Engine::new(store, hasher, clock, TimeDelta::days(7), cache)
    }

    /// A miss for an id is remembered, but a token created with that id just afterwards —
    /// on another replica — is found within the change-log deadline.
    #[tokio::test]
    async fn the_negative_cache_does_not_hide_a_token_created_after_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("j.db").display());
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let a = engine(&url, clock.clone()).await;
        let b = engine(&url, clock.clone()).await;
        let tenant = contoso();
        let admin = PrincipalId::parse("alice").unwrap();
        a.bootstrap(tenant, admin.clone()).await.unwrap();
        // Let the followers apply the bootstrap's own change rows first.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let string = TokenString::generate(Namespace::Api).unwrap();
        let check = |e: &Engine| {
            let e = e.clone();
            let s = string.expose().to_owned();
            async move {
                e.validate(&s, Namespace::Api, ScopeSet::EMPTY)
                    .await
                    .unwrap()
            }
        };
        assert!(matches!(check(&b).await, Err(Reason::NotFound)));
        assert!(
            matches!(b.cache.token(&string.id()), Lookup::Absent),
            "the miss is cached"
        );

        // Replica A stores a token with exactly that id.
        let hash = a.hasher.hash(string.secret().to_vec()).await.unwrap();
        let token = Token {
            id: string.id(),
            tenant: TenantId::parse("contoso").unwrap(),
            namespace: Namespace::Api,
            name: TokenName::parse("late").unwrap(),
            subject: admin.clone().into(),
            creator: admin,
            scopes: ScopeSet::ALL,
            created_at: clock.now(),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
            replaces: None,
        };
        a.store.insert_token(&token, &hash, &[]).await.unwrap();

        let start = std::time::Instant::now();
        while check(&b).await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "still hidden after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Concurrent first validations of one token share one Argon2 verification.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_validations_share_one_verification() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("j.db").display());
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let e = engine(&url, clock).await;
        let tenant = contoso();
        let g = e
            .bootstrap(tenant, PrincipalId::parse("alice").unwrap())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = e.hasher.verifications();
        let mut calls = Vec::new();
        for _ in 0..16 {
            let e = e.clone();
            let s = g.string.expose().to_owned();
            calls.push(tokio::spawn(async move {
                e.validate(&s, Namespace::Api, ScopeSet::EMPTY).await
            }));
        }
        for c in calls {
            assert!(c.await.unwrap().unwrap().is_ok());
        }
        assert_eq!(e.hasher.verifications() - before, 1);
    }

    /// The cache's time to live re-reads the row but does not pay Argon2 again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_entry_is_refreshed_without_argon2() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("j.db").display());
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let settings = CacheSettings {
            ttl: Duration::from_secs(1),
            ..CacheSettings::default()
        };
        let e = engine_with(&url, clock, settings).await;
        let tenant = contoso();
        let g = e
            .bootstrap(tenant, PrincipalId::parse("alice").unwrap())
            .await
            .unwrap();
        // Let the follower apply the bootstrap's own change rows before caching anything.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s = g.string.expose().to_owned();
        assert!(
            e.validate(&s, Namespace::Api, ScopeSet::EMPTY)
                .await
                .unwrap()
                .is_ok()
        );
        let verified = e.hasher.verifications();
        // The time to live is measured on the real clock; this is the one wait in the suite.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(matches!(e.cache.token(&g.string.id()), Lookup::Stale(_)));
        assert!(
            e.validate(&s, Namespace::Api, ScopeSet::EMPTY)
                .await
                .unwrap()
                .is_ok()
        );
        assert!(
            matches!(e.cache.token(&g.string.id()), Lookup::Hit(_)),
            "refreshed"
        );
        assert_eq!(
            e.hasher.verifications(),
            verified,
            "no Argon2 for a refresh"
        );
    }
}
