//! The rules of jeton's contract (`docs/contract.md`), with no I/O and no knowledge of
//! protobuf or SQL.
//!
//! Values that cross the edge are parsed into the types of this module once (`TenantId`,
//! `PrincipalId`, `TokenName`, `TokenString`, `Justification`, …); once such a value exists
//! it is valid. The decisions — which scopes a new token may have, what a token grants now,
//! who sees and revokes what, which status a token is in — are plain functions over these
//! types.

mod audit;
mod authz;
mod clock;
mod credential;
mod names;
mod network;
mod principal;
mod rules;
mod scope;
mod spelling;
mod token;

// The public part: what the command line, the tests' clock and the test support use.
pub use clock::{Clock, ManualClock, SystemClock};
pub use names::{ApiUrl, DisplayName, NameError, PrincipalId, TenantId};
pub use token::{Namespace, TOKEN_LEN, TokenId, TokenString};

pub(crate) use audit::{AuditAction, AuditEvent, TIME_ACTOR};
pub(crate) use authz::{Actor, AdminArea, Denied, Visible};
pub(crate) use credential::{BadCredential, bearer};
pub(crate) use names::{AuditTarget, Justification, ReportText, Subject, TokenName};
pub(crate) use network::Networks;
pub(crate) use principal::{Assignment, Principal, Role, Tenant};
pub(crate) use rules::{
    LiveAt, MAX_GRACE, activation_end, judge, live, rotated_scopes, scopes_for_new_token,
};
pub(crate) use scope::{Scope, ScopeSet};
pub(crate) use spelling::Spelled;
pub(crate) use token::{GeneratedToken, Reason, Token, TokenStatus, TokenView, status_of};

/// One page of a listing, and whether another follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    pub(crate) more: bool,
}
