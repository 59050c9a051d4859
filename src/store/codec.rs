//! How domain values are spelled in columns: one codec for every enum, and the time format.
//!
//! Times are `i64` microseconds since the Unix epoch, so that ordering and comparison are
//! identical on SQLite and PostgreSQL, with no text format to keep in step.

use super::{Result, StoreError};
use crate::domain::{Assignment, AuditAction, Namespace, Role, Spelled};
use chrono::{DateTime, Utc};

/// A domain enum stored as text, in a form derived from its contract spelling
/// (`domain::Spelled`): the rows already written fix which form each column uses.
pub(super) trait Code: Spelled {
    /// What the column holds, for error messages.
    const WHAT: &'static str;

    /// The column's spelling of this value.
    fn code(self) -> &'static str;

    fn decode(s: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.code() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("{} {s:?}", Self::WHAT)))
    }
}

/// `namespace` columns: the bare proto name (`LOG_COLLECTOR`).
impl Code for Namespace {
    const WHAT: &'static str = "namespace";
    fn code(self) -> &'static str {
        self.bare_name()
    }
}

/// `role` columns: the lower-case form (`admin`).
impl Code for Role {
    const WHAT: &'static str = "role";
    fn code(self) -> &'static str {
        self.lower_name()
    }
}

/// `assignment` columns: the lower-case form (`eligible`).
impl Code for Assignment {
    const WHAT: &'static str = "assignment";
    fn code(self) -> &'static str {
        self.lower_name()
    }
}

/// `action` columns: the lower-case form (`token_generated`).
impl Code for AuditAction {
    const WHAT: &'static str = "audit action";
    fn code(self) -> &'static str {
        self.lower_name()
    }
}

/// A stored value that must parse back into a domain type.
pub(super) fn parsed<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T> {
    r.map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(super) fn time(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("time out of range: {micros}")))
}

pub(super) fn opt_time(micros: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    micros.map(time).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Code + std::fmt::Debug>() {
        for &v in T::ALL {
            assert_eq!(T::decode(v.code()).unwrap(), v);
        }
        assert!(T::decode("nonsense").is_err());
    }

    /// The spellings that rows written before the spelling tables hold: they must still
    /// decode.
    #[test]
    fn every_code_round_trips_and_old_rows_still_read() {
        round_trip::<Namespace>();
        round_trip::<Role>();
        round_trip::<Assignment>();
        round_trip::<AuditAction>();
        assert_eq!(
            Namespace::decode("LOG_COLLECTOR").unwrap(),
            Namespace::LogCollector
        );
        assert_eq!(Namespace::decode("API").unwrap(), Namespace::Api);
        assert_eq!(Role::decode("operator").unwrap(), Role::Operator);
        assert_eq!(
            Assignment::decode("eligible").unwrap(),
            Assignment::Eligible
        );
        assert_eq!(
            AuditAction::decode("activation_expired").unwrap(),
            AuditAction::ActivationExpired
        );
    }
}
