//! The one mapping from use-case errors to gRPC status codes. Internal causes are logged
//! with their chain; the caller gets a plain message.

use crate::telemetry::chain;
use crate::usecase::Error;
use tonic::Status;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument { field, message } => {
                Status::invalid_argument(format!("{field}: {message}"))
            }
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Busy => Status::resource_exhausted(e.to_string()),
            Error::Quota(m) => Status::resource_exhausted(m),
            Error::Unavailable(crate::store::StoreError::FailingOver(ref hosts)) => {
                tracing::warn!(hosts = %hosts, "no database host takes writes: failing over");
                Status::unavailable(
                    "the database is failing over (no host takes writes yet); retry shortly",
                )
            }
            Error::Unavailable(ref cause) => {
                tracing::warn!(error = %chain(cause), "database unavailable");
                Status::unavailable("database unavailable; retry later")
            }
            Error::Internal(ref cause) => {
                tracing::error!(error = %chain(cause.as_ref()), "internal error");
                Status::internal("internal error")
            }
        }
    }
}
