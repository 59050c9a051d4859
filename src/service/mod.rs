//! The gRPC edge: the only module that names generated protobuf types and `tonic::Status`.
//! Requests are parsed into domain types here (every refusal names its field), the engine
//! decides, and answers are converted back. Errors are mapped to status codes in one place,
//! [`status`].

mod convert;
mod directory;
mod page;
mod tokens;

pub use directory::DirectoryApi;
pub use tokens::TokenApi;

/// Code generated from `proto/jeton/v1/jeton.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("jeton.v1");

    /// Encoded descriptors of jeton's protos, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("jeton_descriptor");
}

use crate::engine::Error;
use tonic::Status;

/// The one mapping from engine errors to gRPC status codes. Internal causes are logged with
/// their chain; the caller gets a plain message.
pub(crate) fn status(e: Error) -> Status {
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

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
