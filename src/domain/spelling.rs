//! How the contract's enums are spelled outside Rust, in one table per enum.
//!
//! Each value has one name, the proto's (`NAMESPACE_LOG_COLLECTOR`), and two forms derived
//! from it: the bare name without the enum's prefix (`LOG_COLLECTOR`), and the lower-case
//! form (`log_collector`) that routes, metrics labels and JSON bodies use. Audit details
//! use the proto name: that text is persisted and read by people and SIEMs for years, so it
//! must not depend on a Rust identifier (`{:?}`). Store columns use one of the derived forms
//! (see `store::codec`), fixed by the rows already written.
//!
//! Each table is a `match`, so a variant without a spelling does not compile; a unit test
//! checks that the lower-case form is the bare name in lower case, and the grpc layer's
//! tests that every proto name is the one protobuf generates.

use super::{Assignment, AuditAction, Namespace, Reason, Role, TokenStatus};

/// An enum of the contract, with its spellings.
pub(crate) trait Spelled: Copy + PartialEq + Sized + 'static {
    /// The proto enum's prefix, with its underscore: `NAMESPACE_`.
    const PREFIX: &'static str;
    /// Every value, in the proto's order.
    const ALL: &'static [Self];

    /// The proto name and the lower-case form.
    fn names(self) -> (&'static str, &'static str);

    /// The proto name: `NAMESPACE_LOG_COLLECTOR`.
    fn proto_name(self) -> &'static str {
        self.names().0
    }

    /// The proto name without the enum's prefix: `LOG_COLLECTOR`.
    fn bare_name(self) -> &'static str {
        &self.proto_name()[Self::PREFIX.len()..]
    }

    /// The lower-case form: `log_collector`.
    fn lower_name(self) -> &'static str {
        self.names().1
    }

    /// The value named `s` in its proto name or lower-case form, whatever the case, with
    /// `-` taken for `_`.
    fn from_name(s: &str) -> Option<Self> {
        let s = s.trim().replace('-', "_");
        Self::ALL.iter().copied().find(|v| {
            let (proto, lower) = v.names();
            s.eq_ignore_ascii_case(proto) || s.eq_ignore_ascii_case(lower)
        })
    }
}

/// `spelled!(Enum, "PREFIX_", { Variant => "PROTO_NAME", "lower"; … })`.
macro_rules! spelled {
    ($ty:ident, $prefix:literal, { $($v:ident => $proto:literal, $lower:literal;)* }) => {
        impl Spelled for $ty {
            const PREFIX: &'static str = $prefix;
            const ALL: &'static [Self] = &[$($ty::$v),*];

            fn names(self) -> (&'static str, &'static str) {
                match self {
                    $($ty::$v => ($proto, $lower),)*
                }
            }
        }
    };
}

spelled!(Namespace, "NAMESPACE_", {
    Api => "NAMESPACE_API", "api";
    LogCollector => "NAMESPACE_LOG_COLLECTOR", "log_collector";
    Siem => "NAMESPACE_SIEM", "siem";
});

spelled!(Reason, "REASON_", {
    Malformed => "REASON_MALFORMED", "malformed";
    NotFound => "REASON_NOT_FOUND", "not_found";
    Revoked => "REASON_REVOKED", "revoked";
    Expired => "REASON_EXPIRED", "expired";
    WrongNamespace => "REASON_WRONG_NAMESPACE", "wrong_namespace";
    RoleInactive => "REASON_ROLE_INACTIVE", "role_inactive";
    InsufficientScope => "REASON_INSUFFICIENT_SCOPE", "insufficient_scope";
    AddressNotAllowed => "REASON_ADDRESS_NOT_ALLOWED", "address_not_allowed";
});

spelled!(Role, "ROLE_", {
    Admin => "ROLE_ADMIN", "admin";
    Operator => "ROLE_OPERATOR", "operator";
    Reader => "ROLE_READER", "reader";
});

spelled!(Assignment, "ASSIGNMENT_", {
    Active => "ASSIGNMENT_ACTIVE", "active";
    Eligible => "ASSIGNMENT_ELIGIBLE", "eligible";
});

spelled!(TokenStatus, "TOKEN_STATUS_", {
    Generated => "TOKEN_STATUS_GENERATED", "generated";
    Active => "TOKEN_STATUS_ACTIVE", "active";
    Inactive => "TOKEN_STATUS_INACTIVE", "inactive";
});

spelled!(AuditAction, "AUDIT_ACTION_", {
    TokenGenerated => "AUDIT_ACTION_TOKEN_GENERATED", "token_generated";
    TokenRotated => "AUDIT_ACTION_TOKEN_ROTATED", "token_rotated";
    TokenRevoked => "AUDIT_ACTION_TOKEN_REVOKED", "token_revoked";
    PrincipalCreated => "AUDIT_ACTION_PRINCIPAL_CREATED", "principal_created";
    PrincipalChanged => "AUDIT_ACTION_PRINCIPAL_CHANGED", "principal_changed";
    PrincipalDeleted => "AUDIT_ACTION_PRINCIPAL_DELETED", "principal_deleted";
    RoleActivated => "AUDIT_ACTION_ROLE_ACTIVATED", "role_activated";
    RoleDeactivated => "AUDIT_ACTION_ROLE_DEACTIVATED", "role_deactivated";
    ActivationExpired => "AUDIT_ACTION_ACTIVATION_EXPIRED", "activation_expired";
    TenantCreated => "AUDIT_ACTION_TENANT_CREATED", "tenant_created";
    TenantChanged => "AUDIT_ACTION_TENANT_CHANGED", "tenant_changed";
    TokenLeaked => "AUDIT_ACTION_TOKEN_LEAKED", "token_leaked";
    TokenRefused => "AUDIT_ACTION_TOKEN_REFUSED", "token_refused";
});

#[cfg(test)]
mod tests {
    use super::*;

    fn table_is_consistent<T: Spelled + std::fmt::Debug>() {
        for &v in T::ALL {
            let (proto, lower) = v.names();
            assert!(proto.starts_with(T::PREFIX), "{proto}");
            assert_eq!(v.bare_name().to_ascii_lowercase(), lower, "{proto}");
            assert_eq!(T::from_name(proto), Some(v));
            assert_eq!(T::from_name(lower), Some(v));
            assert_eq!(T::from_name(&lower.to_ascii_uppercase()), Some(v));
        }
        let mut protos: Vec<_> = T::ALL.iter().map(|v| v.proto_name()).collect();
        protos.dedup();
        assert_eq!(protos.len(), T::ALL.len(), "{}: a name twice", T::PREFIX);
        assert_eq!(T::from_name("nonsense"), None);
    }

    #[test]
    fn every_value_has_its_spellings() {
        table_is_consistent::<Namespace>();
        table_is_consistent::<Reason>();
        table_is_consistent::<Role>();
        table_is_consistent::<Assignment>();
        table_is_consistent::<TokenStatus>();
        table_is_consistent::<AuditAction>();
        assert_eq!(
            Namespace::from_name("log-collector"),
            Some(Namespace::LogCollector)
        );
        assert_eq!(Namespace::LogCollector.bare_name(), "LOG_COLLECTOR");
    }
}
