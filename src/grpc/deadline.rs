//! A call that needs the database answers `UNAVAILABLE` once the database's timeout has
//! passed, however many statements it was waiting on: a blackholed connection makes a call
//! fail within `--db-connect-timeout`, not a multiple of it. `Validate` is left out — its
//! cached answers need no database, and its slow path bounds its own reads — and so is
//! `RevokeLeaked`, whose work grows with its strings (up to a thousand Argon2
//! verifications): it bounds each string by the same timeout instead. The health and
//! reflection services are not bounded.

use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub(crate) struct DeadlineLayer {
    pub(crate) deadline: Duration,
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            deadline: self.deadline,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Deadline<S> {
    inner: S,
    deadline: Duration,
}

/// Whether calls of `path` are bounded: jeton's own methods but `Validate`.
fn bounded(path: &str) -> bool {
    path.starts_with("/jeton.v1.")
        && path != "/jeton.v1.TokenService/Validate"
        && path != "/jeton.v1.TokenService/RevokeLeaked"
}

impl<S, B, R> tower::Service<Request<B>> for Deadline<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let bounded = bounded(req.uri().path());
        let call = self.inner.call(req);
        if !bounded {
            return Box::pin(call);
        }
        let deadline = self.deadline;
        Box::pin(async move {
            match tokio::time::timeout(deadline, call).await {
                Ok(res) => res,
                Err(_) => {
                    tracing::warn!(?deadline, "no answer from the database in time");
                    Ok(tonic::Status::unavailable(format!(
                        "the database did not answer within {}; retry later",
                        humantime::format_duration(deadline)
                    ))
                    .into_http())
                }
            }
        })
    }
}
