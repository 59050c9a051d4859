//! The use cases, by what they serve: [`tokens`] (generate, rotate, list, revoke),
//! [`access`] (validate, authenticate, act for a principal), [`directory`] (principals and
//! activations) and [`tenant`] (bootstrap, policy, audit trail).
//!
//! A use case receives parsed domain values (it parses no string), asks the domain for every
//! decision, and talks to the store, the hasher and the validate path. Every write ends the
//! same way, in [`Core::commit`]: the store writes the change with its change-log rows and
//! audit events in one transaction, "nothing matched" becomes the use case's not-found
//! answer, this replica drops what changed from its cache, and the change is logged.

mod access;
mod directory;
mod refusals;
mod tenant;
mod tokens;
mod watch;

pub(crate) use access::{Access, LeakReport, ValidateInput, Validated};
pub(crate) use directory::{ActivateInput, Directory, PrincipalInput, PrincipalQuery};
pub(crate) use refusals::Refusals;
pub(crate) use tenant::{AuditQuery, TenantUpdate, Tenants, bootstrap};
pub(crate) use tokens::{GenerateInput, Generated, ListInput, Rotation, Tokens};
pub(crate) use watch::AuditWatch;

use crate::domain::{AuditEvent, Clock, Denied, Principal, Token, TokenView, status_of};
use crate::hashing::{HashError, Hasher};
use crate::last_use::LastUse;
use crate::store::{Store, StoreError, Written};
use crate::validation::{LookupError, Validator};
use chrono::{DateTime, TimeDelta, Utc};
use std::future::Future;
use std::sync::Arc;

/// What can go wrong in a use case, one variant per answer a caller can get.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
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
    #[error("{0}")]
    Quota(String),
    #[error("database unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub(crate) fn invalid(field: &'static str, message: impl ToString) -> Self {
        Error::InvalidArgument {
            field,
            message: message.to_string(),
        }
    }

    pub(crate) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Internal(Box::new(e))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            Error::Unavailable(e)
        } else {
            Error::internal(e)
        }
    }
}

impl From<HashError> for Error {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Error::Busy,
            e => Error::internal(e),
        }
    }
}

impl From<LookupError> for Error {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::Store(e) => e.into(),
            LookupError::Hash(e) => e.into(),
        }
    }
}

impl From<Denied> for Error {
    fn from(d: Denied) -> Self {
        Error::PermissionDenied(d.to_string())
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// The parts of the server's configuration the use cases apply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// A token used within this window is `ACTIVE` (rule 4).
    pub(crate) activity_window: TimeDelta,
    /// Longest activation of an eligible role.
    pub(crate) max_activation: TimeDelta,
    /// Most live tokens per owner and namespace.
    pub(crate) max_tokens_per_owner: u64,
    /// How much longer than its tenant's `revoke_unused_after` a token is left unused before
    /// it is retired: the time a use on another replica may take to reach the database.
    pub(crate) retire_margin: TimeDelta,
}

/// What every use case works with.
pub(crate) struct Core {
    pub(crate) store: Store,
    pub(crate) hasher: Hasher,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) validator: Validator,
    pub(crate) last_use: Arc<LastUse>,
    pub(crate) policy: Policy,
    /// Woken when this server commits audit events (watchers of the trail look at once).
    pub(crate) audit_appended: Arc<tokio::sync::Notify>,
    /// Refused uses of known tokens, on their way to the audit trail.
    pub(crate) refusals: Refusals,
}

impl Core {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A token with its status (rule 4) at this moment.
    fn view(&self, token: Token) -> TokenView {
        let status = status_of(token.last_used_at, self.now(), self.policy.activity_window);
        TokenView { token, status }
    }

    /// A principal as shown to a caller: its activation end only while it runs.
    fn shown(&self, mut p: Principal) -> Principal {
        p.activation_end = p.current_activation_end(self.now());
        p
    }

    /// The end of every write: runs `write` (which stores the change, its change-log rows
    /// and `events` in one transaction), answers `gone` when it matched nothing, drops what
    /// changed from this replica's cache before the caller hears back, and logs the change.
    async fn commit<E>(
        &self,
        events: &[AuditEvent],
        write: impl Future<Output = Result<Written, E>>,
        gone: Error,
    ) -> Result<()>
    where
        Error: From<E>,
    {
        let changes = write.await?.ok_or(gone)?;
        for what in &changes {
            self.validator.invalidate(what);
        }
        for e in events {
            tracing::info!(tenant = %e.tenant, actor = %e.actor, action = ?e.action, target = %e.target, "change committed");
        }
        if !events.is_empty() {
            self.audit_appended.notify_waiters();
        }
        Ok(())
    }
}

/// The four groups of use cases of one server, sharing one [`Core`].
#[derive(Clone)]
pub(crate) struct UseCases {
    pub(crate) tokens: Tokens,
    pub(crate) access: Access,
    pub(crate) directory: Directory,
    pub(crate) tenants: Tenants,
}

impl UseCases {
    pub(crate) fn new(core: Core) -> Self {
        let core = Arc::new(core);
        Self {
            tokens: Tokens::new(core.clone()),
            access: Access::new(core.clone()),
            directory: Directory::new(core.clone()),
            tenants: Tenants::new(core),
        }
    }
}
