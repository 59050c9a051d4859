//! The rules of jeton's contract (`docs/contract.md`), with no I/O and no knowledge of
//! protobuf or SQL.
//!
//! Values that cross the edge are parsed into the types of this module once (`TenantId`,
//! `PrincipalId`, `TokenName`, `TokenString`, `Justification`, …); once such a value exists
//! it is valid. The decisions — which scopes a new token may have, what a token grants now,
//! who sees and revokes what, which status a token is in — are plain functions over these
//! types.

mod audit;
mod clock;
mod names;
mod principal;
mod rules;
mod scope;
mod token;

pub use audit::{AuditAction, AuditEvent, TIME_ACTOR};
pub use clock::{Clock, ManualClock, SystemClock};
pub use names::{
    ApiUrl, AuditTarget, DisplayName, Justification, NameError, PrincipalId, Subject, TenantId,
    TokenName,
};
pub use principal::{Assignment, Principal, Role, Tenant};
pub use rules::{
    Actor, Denied, MAX_GRACE, activation_end, judge, rotated_scopes, scopes_for_new_token,
};
pub use scope::{Scope, ScopeSet, UnknownScope};
pub use token::{
    GeneratedToken, Namespace, Reason, TOKEN_LEN, Token, TokenId, TokenStatus, TokenString,
    TokenView, status_of,
};

/// One page of a listing, and whether another follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}
