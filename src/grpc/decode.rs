//! A request that does not decode (truncated, invalid UTF-8 in a string field, wrong wire
//! types, random bytes) is the caller's mistake: `INVALID_ARGUMENT`, not the `INTERNAL` that
//! tonic's codec answers (as the gRPC status-code guide prescribes for parse errors). The
//! message says so without echoing what was sent. One layer for every service served here,
//! Envoy's included, whose code jeton does not generate.

use http::{HeaderValue, Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Beginnings of the messages tonic and prost give a request that does not decode.
const DECODE_ERRORS: [&str; 3] = [
    "failed to decode Protobuf message",
    "Unexpected EOF decoding stream",
    "protocol error: received message",
];

const INTERNAL: &str = "13";
const INVALID_ARGUMENT: &str = "3";

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DecodeErrorLayer;

impl<S> tower::Layer<S> for DecodeErrorLayer {
    type Service = DecodeError<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DecodeError { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DecodeError<S> {
    inner: S,
}

/// Turns a decode failure's `INTERNAL` into `INVALID_ARGUMENT`.
fn reclassify<B>(res: &mut Response<B>) {
    let headers = res.headers_mut();
    let is_decode_error = headers.get("grpc-status").is_some_and(|c| c == INTERNAL)
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                DECODE_ERRORS
                    .iter()
                    .any(|d| m.starts_with(&d.replace(' ', "%20")) || m.starts_with(d))
            });
    if is_decode_error {
        headers.insert("grpc-status", HeaderValue::from_static(INVALID_ARGUMENT));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static(
                "request: not a valid message for this method (it does not decode)",
            ),
        );
    }
}

impl<S, B, R> tower::Service<Request<B>> for DecodeError<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let call = self.inner.call(req);
        Box::pin(async move {
            let mut res = call.await?;
            reclassify(&mut res);
            Ok(res)
        })
    }
}
